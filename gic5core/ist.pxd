# The virtual SPI IST of a 7.4 VM: the hardware IRS's table of SPI state, as inline C.
#
# Rules this file keeps:
# - KVM keeps almost no SPI state (config, line level, edge latch: state.pxd); pending,
#   active, enable, priority, target and handling mode live here, in the ISTEs the hardware
#   virtual IRS owns. Only the hardware changes them: KVM's VDPEND (injection, IST restore
#   replay), the guest's GIC CD* instructions and its acknowledge.
# - Every write of an ISTE goes through ist_store, which keeps the derived bitmap
#   vm.spi_ready (ENABLE and PENDING and not ACTIVE) and its summary vm.spi_ready_words (bit
#   k: word k has a bit) exact, so the IRS candidate is a scan of set bits of non-empty
#   words, never of the whole table nor of empty words (callgrind, SPI storm on 256 SPIs:
#   the scan of four words, twice per guest run, was ~60 of its ~600 instructions per
#   delivery).
# - The table has 2 ** spi_id_bits entries (vgic_v5_spi_ist_alloc: the power of two at or
#   above nr_spis, what KVM tells the hardware in the VMTE); ids in [nr_spis, 2 ** bits) exist
#   in hardware (spec Q4, model choice "pow2") but KVM never touches them.
# - Callers hold vm.lock; every function is noexcept nogil.

from libc.stdint cimport uint32_t, uint64_t
from gic5core.mask cimport gic5_ctz64
from gic5core.state cimport vm_t, vcpu_t

cdef enum:
    # ISTE fields (GICV5_ISTL2E_*, vgic-v5-tables.c; QEMU L2_ISTE): one 32-bit word per SPI
    ISTE_PENDING = 1 << 0
    ISTE_ACTIVE = 1 << 1
    ISTE_HM = 1 << 2          # handling mode: 0 edge (acknowledge consumes pending), 1 level
    ISTE_ENABLE = 1 << 3
    ISTE_IRM = 1 << 4         # routing mode; KVM guests are targeted only (always stored 0)
    ISTE_HWU = 3 << 9         # hardware use; stripped on restore
    ISTE_PRIO_SHIFT = 11      # PRIORITY 15:11
    ISTE_IAFFID_SHIFT = 16    # IAFFID 31:16 = the target VPE = vcpu_id
    SPI_INTID_BASE = 0x60000000  # GICV5_HWIRQ_TYPE_SPI << 29 (vgic_v5_make_spi)


cdef inline void ist_store(vm_t* vm, unsigned int id, uint32_t w) noexcept nogil:
    # The one writer of an ISTE: the word, its bit of spi_ready and that word's summary bit.
    cdef uint64_t bit = (<uint64_t>1) << (id & 63), word
    vm.ist[id] = w
    if (w & (ISTE_ENABLE | ISTE_PENDING | ISTE_ACTIVE)) == (ISTE_ENABLE | ISTE_PENDING):
        vm.spi_ready[id >> 6] |= bit
        vm.spi_ready_words |= (<uint64_t>1) << (id >> 6)
    else:
        word = vm.spi_ready[id >> 6] & ~bit
        vm.spi_ready[id >> 6] = word
        if word == 0:  # (a branch: cheaper than a branch-free update, callgrind)
            vm.spi_ready_words &= ~((<uint64_t>1) << (id >> 6))


cdef inline void vdpend(vm_t* vm, unsigned int id, bint pending) noexcept nogil:
    # GIC VDPEND (the hypervisor's set/clear pending of a virtual interrupt; KVM's
    # __vgic_v5_vdpend(intid, pending, vm) from vgic_v5_set_irq_pend, 7.4): ISTE.PENDING :=
    # pending. The operand has no HM field (irs-spi-source-check.md Q1/Q3), so HM is untouched,
    # unless the policy vdpend_updates_hm says the IRS takes it from KVM's config (TM).
    cdef uint32_t w = vm.ist[id]
    cdef uint64_t bit
    w = (w | ISTE_PENDING) if pending else (w & ~(<uint32_t>ISTE_PENDING))
    if vm.prof.vdpend_updates_hm and id < vm.nr_spis:
        bit = (<uint64_t>1) << (id & 63)
        w = (w | ISTE_HM) if vm.spi_cfg_level[id >> 6] & bit else (w & ~(<uint32_t>ISTE_HM))
    ist_store(vm, id, w)


cdef inline unsigned int iste_priority(uint32_t w) noexcept nogil:
    return (w >> ISTE_PRIO_SHIFT) & 0x1f


cdef inline int ist_candidate(const vm_t* vm, const vcpu_t* v, unsigned int* prio) noexcept nogil:
    # The IRS's highest-priority pending interrupt for VPE v (QEMU irs_recalc_hppi, the
    # physical IRS; spec 4.5 item 1): among SPIs that are enabled, pending, not active and
    # target v (IAFFID == vcpu_id), the lowest priority value; a tie keeps the lowest id (the
    # scan is ascending and replaces only on a strictly lower priority), or with the policy
    # irs_tie_lowest_id off the highest. LPIs
    # are out of scope (never delivered). Returns the SPI id, or -1.
    cdef int best = -1
    cdef unsigned int best_p = 32, p, k, id
    cdef uint64_t m, words = vm.spi_ready_words
    cdef uint32_t w
    while words:  # the non-empty words, ascending
        k = <unsigned int>gic5_ctz64(words)
        words &= words - 1
        m = vm.spi_ready[k]
        while m:
            id = (k << 6) + <unsigned int>gic5_ctz64(m)
            m &= m - 1
            w = vm.ist[id]
            if (w >> ISTE_IAFFID_SHIFT) != v.vcpu_id:
                continue
            p = iste_priority(w)
            if p < best_p or (p == best_p and not vm.prof.irs_tie_lowest_id):
                best_p = p
                best = <int>id
    prio[0] = best_p
    return best


cdef inline bint ist_doorbell_eligible(const vm_t* vm, const vcpu_t* v,
                                       unsigned int dbpm) noexcept nogil:
    # The VPE doorbell condition (spec W-2, an inference: no source states the hardware rule):
    # some interrupt targeting v is enabled, pending, not active and has priority <= DBPM.
    cdef unsigned int p
    return ist_candidate(vm, v, &p) >= 0 and p <= dbpm
