# CpuIf: the guest's view of its GICv5 CPU interface while a vCPU is inside run().
#
# Rules this file keeps:
# - A CpuIf is valid only between its run()'s entry and exit (RuntimeError after), and only
#   on a VM with a GICv5 device (UndefinedInstruction otherwise, as the guest would UNDEF).
# - Each method is one guest instruction or register access: it takes vm.lock, acts on the
#   ICH_* image through ppi.pxd, and releases the lock. No Python loop over bits anywhere.
# - Trapped writes (ENABLER everywhere; SPENDR/CPENDR/SACTIVER/CACTIVER/PRIORITYR on v2) are
#   masked by the exposed set; untrapped ones go to the "hardware", which only holds the PPIs
#   the host implements.

from libc.stdint cimport uint32_t, uint64_t
cimport cython

from gic5core.mask cimport mask128, test_bit, bitmap_and
from gic5core.state cimport vm_t, vcpu_t, gic5_lock, gic5_unlock, PPI_INTID_BASE
from gic5core.ppi cimport (exposed_of, guest_pending, image_priority, image_set_priority,
                           cpu_cdia, cpu_cdeoi, cpu_cddi, fold, put_wfi, has_pending, flush,
                           VMCR_EN, VMCR_VPMR_SHIFT, PRIO_MASK)
from gic5core.vm cimport VmCore
from gic5core.errors import UndefinedInstruction

cdef enum reg_t:
    REG_PENDR = 0
    REG_ACTIVER = 1


cdef inline int check_n(int n) except -1:
    if n != 0 and n != 1:
        raise ValueError(f"register index must be 0 or 1, not {n}")
    return 0


cdef inline int check_ppi(int ppi) except -1:
    if ppi < 0 or ppi > 127:
        raise ValueError(f"PPI index must be 0..127, not {ppi}")
    return 0


cdef inline int check_prio(int prio) except -1:
    if prio < 0 or prio > 255:
        raise ValueError(f"priority must be 0..255 (a byte), not {prio}")
    return 0


@cython.final
cdef class CpuIf:
    """The GICv5 CPU interface a guest sees; yielded by ``with vcpu.run() as cpu``."""

    cdef VmCore core      # keeps the VM alive while the guest runs
    cdef int index        # vCPU index within the VM
    cdef bint closed      # set when the run() that produced this object ended

    def __cinit__(self, VmCore core, int index):
        core.vcpu_at(index)  # IndexError for a bad index
        self.core = core
        self.index = index
        self.closed = False

    def _close(self):
        self.closed = True

    @property
    def vcpu_index(self):
        return self.index

    cdef vcpu_t* enter(self) except NULL:
        # Validate, then take vm.lock; the caller must call leave().
        if self.closed:
            raise RuntimeError("the guest is not running: this CpuIf's run() has ended")
        if not self.core.vm.has_device:
            raise UndefinedInstruction(
                "no GICv5 CPU interface: the VM has no KVM_DEV_TYPE_ARM_VGIC_V5 device")
        gic5_lock(&self.core.vm.lock)
        return self.core.vm.vcpus[self.index]

    cdef inline void leave(self) noexcept:
        gic5_unlock(&self.core.vm.lock)

    # --- ICC_PPI_ENABLERx_EL1 (writes trap to KVM) ----------------------------------------------

    def write_ppi_enabler(self, int n, uint64_t value):
        """write_ppi_enabler(n, value): trapped; masked by the exposed PPIs."""
        check_n(n)
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef mask128 e
        if not (n == 1 and vm.nr_ppis == 64):  # final: ENABLER1 writes accepted and ignored
            e = exposed_of(vm, v)
            v.enabled.w[n] = value & e.w[n]
            v.ich_enabler.w[n] = v.enabled.w[n]
        self.leave()

    def read_ppi_enabler(self, int n):
        """read_ppi_enabler(n) -> word n of ICH_PPI_ENABLER (not trapped)."""
        check_n(n)
        cdef vcpu_t* v = self.enter()
        cdef uint64_t r = v.ich_enabler.w[n]
        self.leave()
        return r

    # --- pending / active ------------------------------------------------------------------------

    def read_ppi_spendr(self, int n):
        """read_ppi_spendr(n) -> word n of the pending state the guest sees."""
        check_n(n)
        cdef vcpu_t* v = self.enter()
        cdef uint64_t r = guest_pending(v).w[n]
        self.leave()
        return r

    def read_ppi_sactiver(self, int n):
        """read_ppi_sactiver(n) -> word n of ICH_PPI_ACTIVER."""
        check_n(n)
        cdef vcpu_t* v = self.enter()
        cdef uint64_t r = v.ich_activer.w[n]
        self.leave()
        return r

    cdef void write_state(self, int reg, int n, uint64_t value, bint set_bits) except *:
        check_n(n)
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef mask128* target = &v.ich_pendr if reg == REG_PENDR else &v.ich_activer
        cdef uint64_t limit
        if vm.prof.trap_wide:
            limit = exposed_of(vm, v).w[n]   # v2: trapped and masked by the exposed set
        else:
            limit = vm.impl.w[n]             # hardware: only implemented PPIs hold state
        value &= limit
        if set_bits:
            target.w[n] |= value
        else:
            target.w[n] &= ~value
        self.leave()

    def write_ppi_spendr(self, int n, uint64_t value):
        """write_ppi_spendr(n, value): set pending bits."""
        self.write_state(REG_PENDR, n, value, True)

    def write_ppi_cpendr(self, int n, uint64_t value):
        """write_ppi_cpendr(n, value): clear pending bits."""
        self.write_state(REG_PENDR, n, value, False)

    def write_ppi_sactiver(self, int n, uint64_t value):
        """write_ppi_sactiver(n, value): set active bits."""
        self.write_state(REG_ACTIVER, n, value, True)

    def write_ppi_cactiver(self, int n, uint64_t value):
        """write_ppi_cactiver(n, value): clear active bits."""
        self.write_state(REG_ACTIVER, n, value, False)

    # --- priorities, CR0, PCR ------------------------------------------------------------------

    def write_ppi_priority(self, int ppi, int prio):
        """write_ppi_priority(ppi, prio): 5-bit priority, 0 highest; bits 7:5 are RES0."""
        check_ppi(ppi)
        check_prio(prio)
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef mask128 holder
        if vm.prof.trap_wide:
            holder = exposed_of(vm, v)
        else:
            holder = vm.impl
        if test_bit(ppi, &holder):
            image_set_priority(v, ppi, prio)
        self.leave()

    def read_ppi_priority(self, int ppi):
        """read_ppi_priority(ppi) -> the 5-bit priority in ICH_PPI_PRIORITYR."""
        check_ppi(ppi)
        cdef vcpu_t* v = self.enter()
        cdef unsigned int r = image_priority(v, ppi)
        self.leave()
        return r

    def write_cr0(self, enable):
        """write_cr0(enable): ICC_CR0_EL1.EN, the guest's CPU interface enable."""
        if not isinstance(enable, int):
            raise TypeError(f"enable must be a bool or int, not {type(enable).__name__}")
        cdef bint en = bool(enable)
        cdef vcpu_t* v = self.enter()
        if en:
            v.vmcr |= VMCR_EN
        else:
            v.vmcr &= ~(<uint64_t>VMCR_EN)
        self.leave()

    def write_pcr(self, int prio):
        """write_pcr(prio): ICC_PCR_EL1, the priority mask (VPMR); passes priority <= VPMR."""
        check_prio(prio)
        cdef vcpu_t* v = self.enter()
        v.vmcr = ((v.vmcr & ~((<uint64_t>PRIO_MASK) << VMCR_VPMR_SHIFT))
                  | ((<uint64_t>(prio & PRIO_MASK)) << VMCR_VPMR_SHIFT))
        self.leave()

    # --- acknowledge, priority drop, deactivate ------------------------------------------------

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

    def cddi(self, uint32_t intid):
        """cddi(intid): deactivate the PPI with that INTID; anything else is ignored."""
        cdef vcpu_t* v = self.enter()
        cpu_cddi(&self.core.vm, v, intid)
        self.leave()

    def wfi(self):
        """wfi() -> bool: exit, put as blocking, evaluate the wake-up predicate, re-enter."""
        cdef vcpu_t* v = self.enter()
        cdef vm_t* vm = &self.core.vm
        cdef bint wake
        fold(vm, v)
        put_wfi(vm, v)
        wake = has_pending(vm, v)
        flush(vm, v)
        self.leave()
        return wake
