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
                           vcpu_load,
                           VMCR_EN, VMCR_VPMR_SHIFT, PRIO_MASK)
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
        fold(vm, v)  # the trap is an exit
        e = exposed_of(vm, v)
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
        flush(vm, v)  # and the guest is entered again
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
            fold(vm, v)
            val = val & exposed_of(vm, v).w[k] if reg == REG_ACTIVER else 0
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
            flush(vm, v)
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
            fold(vm, v)
            e = exposed_of(vm, v)
            if test_bit(p, &e):
                image_set_priority(vm, v, p, pr)
            flush(vm, v)
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
        fold(vm, v)   # the trap is an exit (every profile traps it: v2, v3 ignore writes,
        flush(vm, v)  # final and 7.4 UNDEF them), the handler, an entry
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
        """cdia() -> INTID or None: acknowledge the best deliverable PPI."""
        cdef vcpu_t* v = self.enter()
        cdef int ppi = cpu_cdia(&self.core.vm, v)
        self.leave()
        if ppi < 0:
            return None
        return PPI_INTID_BASE + ppi

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
        fold(vm, v)
        put_wfi(vm, v)
        wake = has_pending(vm, v)
        vcpu_load(vm, v)
        flush(vm, v)
        self.leave()
        return wake
