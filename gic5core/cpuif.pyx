# CpuIf: the guest's view of its GICv5 CPU interface while a vCPU is inside run().
#
# Rules this file keeps:
# - A CpuIf is valid only between its run()'s entry and exit (RuntimeError after), and only
#   on a VM with a GICv5 device (UndefinedInstruction otherwise, as the guest would UNDEF).
# - Each method is one guest instruction or register access: it takes vm.lock, acts on the
#   ICH_* image through ppi.pxd, and releases the lock. No Python loop over bits anywhere.
# - A trapped write (ENABLER everywhere; SPENDR/CPENDR/SACTIVER/CACTIVER/PRIORITYR too on v2)
#   is what the kernel makes of it: an exit (save + fold), the trap handler, an entry (flush +
#   restore), all under one hold of vm.lock. Untrapped writes go to the "hardware" image,
#   which holds only the PPIs the host implements, and whose pending bits of Level PPIs are
#   read-only (every PPI but SW_PPI has the Level handling mode).

"""CpuIf: the guest's GICv5 CPU interface while its vCPU is inside run().
"""

from libc.stdint cimport uint32_t, uint64_t
cimport cython

from gic5core.mask cimport mask128, test_bit
from gic5core.state cimport vm_t, vcpu_t, gic5_lock, gic5_unlock, PPI_INTID_BASE
from gic5core.ppi cimport (exposed_of, guest_pending, image_priority, image_set_priority,
                           cpu_cdia, cpu_cdeoi, cpu_cddi, fold, put_wfi, has_pending, flush,
                           vcpu_load, serve_requests,
                           VMCR_EN, VMCR_VPMR_SHIFT, PRIO_MASK, SHAPE_ANY)
from gic5core.ist cimport ISTE_ENABLE, ISTE_PENDING, ISTE_HM, SPI_INTID_BASE
from gic5core.irs cimport (cd_spi, cd_priority, cd_affinity, cd_flag, cd_rcfg, irs_mmio_read,
                           irs_mmio_write, irs_region, IRS_FRAME)
from gic5core.vm cimport VmCore
from gic5core.args cimport need_int
from gic5core.errors import UndefinedInstruction

cdef enum reg_t:
    REG_PENDR = 0
    REG_ACTIVER = 1
    REG_ENABLER = 2


cdef inline int check_n(object n) except -1:  # returns n
    need_int(n, "n")
    if n != 0 and n != 1:
        raise ValueError(f"register index must be 0 or 1, not {n}")
    return n


cdef inline int check_ppi(object ppi) except -1:
    need_int(ppi, "ppi")
    if ppi < 0 or ppi > 127:
        raise ValueError(f"PPI index must be 0..127, not {ppi}")
    return ppi


cdef inline int check_prio(object prio) except -1:
    need_int(prio, "prio")
    if prio < 0 or prio > 255:
        raise ValueError(f"priority must be 0..255 (a byte), not {prio}")
    return prio


@cython.final
cdef class CpuIf:
    """The GICv5 CPU interface a guest sees; yielded by ``with vcpu.run() as cpu``."""

    cdef VmCore core      # keeps the VM alive while the guest runs
    cdef int index        # vCPU index within the VM
    cdef bint closed      # set when the run() that produced this object ended

    def __cinit__(self, VmCore core not None, int index):
        core.vcpu_at(index)  # IndexError for a bad index
        self.core = core
        self.index = index
        self.closed = False

    def _close(self):
        self.closed = True

    @property
    def vcpu_index(self):
        """KVM's index (creation order) of the vCPU whose guest this is."""
        return self.index

    cdef vcpu_t* enter(self) except NULL:
        # Validate, then take vm.lock; the caller must call leave().
        if self.closed:
            raise RuntimeError("the guest is not running: this CpuIf's run() has ended")
        if not self.core.vm.has_device:
            raise UndefinedInstruction(
                "no GICv5 CPU interface: the VM has no KVM_DEV_TYPE_ARM_VGIC_V5 device")
        gic5_lock(&self.core.vm.lock)
        if not self.core.vm.vcpus[self.index].loaded:
            # A CpuIf made by hand, not by run(): there is no loaded image to act on.
            gic5_unlock(&self.core.vm.lock)
            raise RuntimeError("the guest is not running: use the CpuIf that run() yields")
        return self.core.vm.vcpus[self.index]

    cdef inline void leave(self) noexcept:
        gic5_unlock(&self.core.vm.lock)

    # --- ICC_PPI_ENABLERx_EL1 (writes trap to KVM) ----------------------------------------------

    def write_ppi_enabler(self, n, value):
        """write_ppi_enabler(n, value): trapped; masked by the exposed PPIs."""
        cdef int k = check_n(n)
        need_int(value, "value")
        cdef uint64_t val = value
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef mask128 e
        fold(vm, v, SHAPE_ANY)  # the trap is an exit
        e = exposed_of(vm, v, SHAPE_ANY)
        if vm.prof.trap_wide:
            # v2 22/36 access_gicv5_ppi_enabler: the entry image only (irq->enabled follows
            # from the fold, and only for bits whose image changed).
            v.ich_enabler.w[k] = val & e.w[k]
        elif not (k == 1 and vm.nr_ppis == 64):
            # v3 22/36 / final access_gicv5_ppi_enabler: vgic_ppi_enabler := value & exposed,
            # and irq->enabled of the exposed PPIs follows (v3 sets all 64 bits of the word;
            # the two agree: a PPI outside the exposed set, which only grows, was never
            # enabled). final: ENABLER1 (an odd Op2) is accepted and ignored.
            v.ich_enabler.w[k] = val & e.w[k]
            v.enabled.w[k] = (v.enabled.w[k] & ~e.w[k]) | v.ich_enabler.w[k]
        serve_requests(vm, v, SHAPE_ANY)
        flush(vm, v, SHAPE_ANY)  # and the guest is entered again
        self.leave()

    cdef uint64_t read_word(self, int reg, object n) except? 0:
        # Word n of an untrapped register read: ENABLER, the pending state the guest sees
        # (PENDR, or the line of a DVI PPI), or ACTIVER.
        cdef int k = check_n(n)
        cdef vcpu_t* v = self.enter()
        cdef uint64_t r
        if reg == REG_ENABLER:
            r = v.ich_enabler.w[k]
        elif reg == REG_PENDR:
            r = guest_pending(v).w[k]
        else:
            r = v.ich_activer.w[k]
        self.leave()
        return r

    def read_ppi_enabler(self, n):
        """read_ppi_enabler(n) -> word n of ICH_PPI_ENABLER (not trapped)."""
        return self.read_word(REG_ENABLER, n)

    # --- pending / active ------------------------------------------------------------------------

    def read_ppi_spendr(self, n):
        """read_ppi_spendr(n) -> word n of the pending state the guest sees."""
        return self.read_word(REG_PENDR, n)

    def read_ppi_sactiver(self, n):
        """read_ppi_sactiver(n) -> word n of ICH_PPI_ACTIVER."""
        return self.read_word(REG_ACTIVER, n)

    cdef void write_state(self, int reg, object n, object value, bint set_bits) except *:
        cdef int k = check_n(n)
        need_int(value, "value")
        cdef uint64_t val = value
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef mask128* target = &v.ich_pendr if reg == REG_PENDR else &v.ich_activer
        if vm.prof.trap_wide:
            # v2 22/36 access_gicv5_ppi_pendr / _activer: an exit, then the handler ORs into /
            # clears from the entry image (masked by the exposed set), then an entry. The
            # flush rebuilds the entry PENDR from the shadow, so a SPENDR/CPENDR write has no
            # effect at all; an ACTIVER write reaches the guest at that entry.
            fold(vm, v, SHAPE_ANY)
            val = val & exposed_of(vm, v, SHAPE_ANY).w[k] if reg == REG_ACTIVER else 0
        else:
            # v3/final: not trapped. The hardware holds implemented PPIs only, and a Level
            # PPI's pending bit is read-only (QEMU gic_ppi_spend_write / gic_ppi_cpend_write;
            # handling modes as in PPI_HMR0_RESET: Edge for SW_PPI alone). ACTIVER: any
            # implemented PPI (gic_ppi_sactive_write / gic_ppi_cactive_write).
            val &= vm.impl.w[k]
            if reg == REG_PENDR:
                val &= vm.edge_cfg.w[k]
        if set_bits:
            target.w[k] |= val
        else:
            target.w[k] &= ~val
        if vm.prof.trap_wide:
            serve_requests(vm, v, SHAPE_ANY)
            flush(vm, v, SHAPE_ANY)
        self.leave()

    def write_ppi_spendr(self, n, value):
        """write_ppi_spendr(n, value): set pending bits."""
        self.write_state(REG_PENDR, n, value, True)

    def write_ppi_cpendr(self, n, value):
        """write_ppi_cpendr(n, value): clear pending bits."""
        self.write_state(REG_PENDR, n, value, False)

    def write_ppi_sactiver(self, n, value):
        """write_ppi_sactiver(n, value): set active bits."""
        self.write_state(REG_ACTIVER, n, value, True)

    def write_ppi_cactiver(self, n, value):
        """write_ppi_cactiver(n, value): clear active bits."""
        self.write_state(REG_ACTIVER, n, value, False)

    # --- priorities, CR0, PCR ------------------------------------------------------------------

    def write_ppi_priority(self, ppi, prio):
        """write_ppi_priority(ppi, prio): 5-bit priority, 0 highest; bits 7:5 are RES0."""
        cdef int p = check_ppi(ppi)
        cdef int pr = check_prio(prio)
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef mask128 e
        if vm.prof.trap_wide:
            # v2 22/36 access_gicv5_ppi_priorityr: an exit, the saved register := value with
            # only the exposed PPIs' 5-bit fields kept (the guest's read-modify-write of the
            # register leaves the other bytes as they were), an entry.
            fold(vm, v, SHAPE_ANY)
            e = exposed_of(vm, v, SHAPE_ANY)
            if test_bit(p, &e):
                image_set_priority(vm, v, p, pr)
            serve_requests(vm, v, SHAPE_ANY)
            flush(vm, v, SHAPE_ANY)
        elif test_bit(p, &vm.impl):
            image_set_priority(vm, v, p, pr)  # v3/final: hardware, implemented PPIs only
        self.leave()

    def read_ppi_priority(self, ppi):
        """read_ppi_priority(ppi) -> the 5-bit priority in ICH_PPI_PRIORITYR."""
        cdef int p = check_ppi(ppi)
        cdef vcpu_t* v = self.enter()
        cdef unsigned int r = 0
        if p < self.core.vm.nr_ppis:  # final: PRIORITYR8..15 are written as zero, read 0
            r = image_priority(&self.core.vm, v, p)
        self.leave()
        return r

    def write_cr0(self, enable):
        """write_cr0(enable): ICC_CR0_EL1.EN, the guest's CPU interface enable."""
        need_int(enable, "enable")  # a truth value given as a bool or an integer
        cdef bint en = bool(enable)
        cdef vcpu_t* v = self.enter()
        if en:
            v.vmcr |= VMCR_EN
        else:
            v.vmcr &= ~(<uint64_t>VMCR_EN)
        self.leave()

    def write_pcr(self, prio):
        """write_pcr(prio): ICC_PCR_EL1, the priority mask (VPMR); passes priority <= VPMR."""
        cdef int pr = check_prio(prio)
        cdef vcpu_t* v = self.enter()
        v.vmcr = ((v.vmcr & ~((<uint64_t>PRIO_MASK) << VMCR_VPMR_SHIFT))
                  | ((<uint64_t>(pr & PRIO_MASK)) << VMCR_VPMR_SHIFT))
        self.leave()

    # --- acknowledge, priority drop, deactivate ------------------------------------------------

    def read_iaffidr(self):
        """MRS ICC_IAFFIDR_EL1: trapped (an exit, the handler, an entry, like a trapped write);
        KVM answers the vCPU's id as IAFFID (bits 15:0; access_gicv5_iaffid, every profile),
        so sparse vCPU ids are the guest's interrupt affinity ids."""
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef uint64_t r = v.vcpu_id & 0xffff
        fold(vm, v, SHAPE_ANY)  # the trap is an exit (every profile traps it: v2, v3 ignore
        serve_requests(vm, v, SHAPE_ANY)  # writes, final and 7.4 UNDEF them), the handler, an entry
        flush(vm, v, SHAPE_ANY)
        self.leave()
        return r

    def read_icsr(self):
        """MRS ICC_ICSR_EL1: the hardware's interrupt-config status (the result of a GIC
        CDRCFG); KVM saves it at every exit and restores it at every entry (vgic_icsr), so a
        CPU_SYSREGS write of it is what the guest reads (7.4)."""
        cdef vcpu_t* v = self.enter()
        cdef uint64_t r = v.icsr
        self.leave()
        return r

    def cdia(self):
        """cdia() -> INTID or None: GICR CDIA, acknowledge the best deliverable interrupt: a
        PPI (0x20000000 | n) or, on 7.4 with the guest's IRS enabled, an SPI (0x60000000 | n);
        the PPI wins a priority tie."""
        cdef vcpu_t* v = self.enter()
        cdef int r = cpu_cdia(&self.core.vm, v, SHAPE_ANY)
        self.leave()
        if r < 0:
            return None
        if r >= SPI_INTID_BASE:
            return r
        return PPI_INTID_BASE + r

    # --- the IRS's interrupts: GIC CD* (hardware; 7.4 has a virtual IRS) --------------------------
    # Each takes the instruction's INTID (TYPE 31:29, ID 23:0). Only SPIs of the VM's virtual
    # SPI IST are acted on; LPIs (out of scope), PPIs (not the IRS's) and ids beyond the table
    # change nothing, and on a profile without the IRS every one is a no-op (CDRCFG: ICSR.F).

    cdef int cd_target(self, object intid, vcpu_t** vp) except -2:
        need_int(intid, "intid")
        if intid < 0 or intid > 0xffffffff:
            raise ValueError(f"intid must be a 32-bit INTID, not {intid}")
        vp[0] = self.enter()
        return cd_spi(&self.core.vm, <uint32_t>intid)

    cdef void cd_set(self, object intid, unsigned int flag, object on) except *:
        need_int(on, "value")
        cdef bint b = bool(on)
        cdef vcpu_t* v
        cdef int spi = self.cd_target(intid, &v)
        if spi >= 0:
            cd_flag(&self.core.vm, spi, flag, b)
        self.leave()

    def cdpri(self, intid, prio):
        """cdpri(intid, prio): GIC CDPRI, the priority (0..31, 0 highest) of an SPI; the IRS
        keeps its implemented high-order bits (host irs_pri_bits)."""
        need_int(prio, "prio")
        if prio < 0 or prio > 31:
            raise ValueError(f"prio must be 0..31 (GIC CDPRI's 5-bit PRIORITY), not {prio}")
        cdef unsigned int p = prio
        cdef vcpu_t* v
        cdef int spi = self.cd_target(intid, &v)
        if spi >= 0:
            cd_priority(&self.core.vm, spi, p)
        self.leave()

    def cdaff(self, intid, iaffid, irm=0):
        """cdaff(intid, iaffid, irm=0): GIC CDAFF, target an SPI at the vCPU whose vcpu_id is
        ``iaffid`` (0..0xffff); irm 1 (1-of-N) is not offered and acts as 0."""
        need_int(iaffid, "iaffid")
        need_int(irm, "irm")
        if iaffid < 0 or iaffid > 0xffff:
            raise ValueError(f"iaffid must be 0..0xffff (16 bits), not {iaffid}")
        if irm not in (0, 1):
            raise ValueError(f"irm must be 0 or 1, not {irm}")
        cdef uint32_t a = iaffid
        cdef vcpu_t* v
        cdef int spi = self.cd_target(intid, &v)
        if spi >= 0:
            cd_affinity(&self.core.vm, spi, a)
        self.leave()

    def cden(self, intid):
        """cden(intid): GIC CDEN, enable an SPI."""
        self.cd_set(intid, ISTE_ENABLE, True)

    def cddis(self, intid):
        """cddis(intid): GIC CDDIS, disable an SPI."""
        self.cd_set(intid, ISTE_ENABLE, False)

    def cdpend(self, intid, pending):
        """cdpend(intid, pending): GIC CDPEND, set or clear an SPI's pending state."""
        self.cd_set(intid, ISTE_PENDING, pending)

    def cdhm(self, intid, level):
        """cdhm(intid, level): GIC CDHM, the handling mode (level true: HM level, the
        acknowledge leaves it pending; false: edge, the acknowledge consumes it)."""
        self.cd_set(intid, ISTE_HM, level)

    def cdrcfg(self, intid):
        """cdrcfg(intid): GIC CDRCFG, ICC_ICSR_EL1 := the interrupt's configuration (F 0,
        ENABLED 1, PENDING 2, IRM 3, ACTIVE 4, HM 5, PRIORITY 15:11, IAFFID 47:32); F alone
        for an interrupt the IRS cannot reach. Read it back with read_icsr()."""
        cdef vcpu_t* v
        self.cd_target(intid, &v)
        v.icsr = cd_rcfg(&self.core.vm, <uint32_t>intid)
        self.leave()

    # --- the IRS config frame by MMIO (7.4) ---------------------------------------------------

    def irs_read(self, offset, size=None):
        """irs_read(offset, size=None) -> int: a guest load from the IRS region (offset from
        the IRS base, 0..0x1ffff; size 1, 2, 4 or 8, None = the register's width). An access
        the region refuses, a gap or the SETLPI frame reads 0. An exit handled in KVM."""
        return self.irs_access(offset, size, False, 0)

    def irs_write(self, offset, value, size=None):
        """irs_write(offset, value, size=None): a guest store to the IRS region (as
        irs_read); refused accesses, read-only registers and gaps ignore it. An IRS_CR0
        write that changes IRSEN reloads every vCPU (KVM_REQ_RELOAD_GICv5): this one before
        it re-enters, the others at their next entry."""
        need_int(value, "value")
        return self.irs_access(offset, size, True, value)

    cdef object irs_access(self, object offset, object size, bint write, object value):
        cdef unsigned int base = 0, sz, off
        cdef uint64_t val = 0, r = 0
        cdef vcpu_t* v
        cdef vm_t* vm = &self.core.vm
        need_int(offset, "offset")
        if size is None:
            sz = 4
            if 0 <= offset < IRS_FRAME and irs_region(offset, &base) == 8 and offset == base:
                sz = 8
        else:
            need_int(size, "size")
            if size not in (1, 2, 4, 8):
                raise ValueError(f"size must be 1, 2, 4 or 8 bytes, not {size}")
            sz = size
        if offset < 0 or offset + sz > 0x20000:
            raise ValueError(f"offset {offset} + size {sz} is outside the 128 KiB IRS region "
                             "(KVM_VGIC_V5_IRS_SIZE)")
        if write:
            if value < 0 or value >= (<object>1) << (8 * <object>sz):
                raise ValueError(f"value {value} does not fit a {sz}-byte access")
            val = value
        off = offset
        if self.closed:
            raise RuntimeError("the guest is not running: this CpuIf's run() has ended")
        if not vm.prof.irs_uapi or not vm.has_device:
            # No IRS iodev (a PPI-only profile, or no V5 device): a guest access to this
            # address is not KVM's, it exits to userspace (KVM_EXIT_MMIO).
            raise RuntimeError(f"this VM has no IRS region (profile {self.core.profile!r}"
                               f"{'' if vm.has_device else ', no V5 device'}): the access "
                               "would exit to userspace as KVM_EXIT_MMIO")
        v = self.enter()
        # the data abort is an exit; io_mem_abort runs the IRS iodev's handler
        fold(vm, v, SHAPE_ANY)
        if write:
            irs_mmio_write(vm, off, sz, val)
        else:
            r = irs_mmio_read(vm, off, sz)
        serve_requests(vm, v, SHAPE_ANY)
        flush(vm, v, SHAPE_ANY)
        self.leave()
        return None if write else r

    def cdeoi(self):
        """cdeoi(): priority drop (clears the highest active priority in APR)."""
        cdef vcpu_t* v = self.enter()
        cpu_cdeoi(v)
        self.leave()

    def cddi(self, intid):
        """cddi(intid): deactivate the PPI with that INTID; anything else is ignored."""
        need_int(intid, "intid")
        cdef uint32_t iid = intid
        cdef vcpu_t* v = self.enter()
        cpu_cddi(&self.core.vm, v, iid)
        self.leave()

    def wfi(self):
        """wfi() -> bool: the trapped WFI: exit, put with IN_WFI, the block check, load, entry.

        kvm_vcpu_wfi: the answer is what kvm_vcpu_check_block would wake on (the vGIC's
        pending check; on v2/v3 also a timer that should fire).
        """
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef bint wake
        fold(vm, v, SHAPE_ANY)
        put_wfi(vm, v)
        wake = has_pending(vm, v)
        vcpu_load(vm, v, SHAPE_ANY)
        serve_requests(vm, v, SHAPE_ANY)  # check_vcpu_requests in the run loop, after kvm_vcpu_wfi
        flush(vm, v, SHAPE_ANY)
        self.leave()
        return wake
