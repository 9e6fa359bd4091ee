# The virtual SPI IST of a 7.4 VM: the hardware IRS's table of SPI state, as inline C.
#
# Rules this file keeps:
# - KVM keeps almost no SPI state (config, line level, edge latch: state.pxd); pending,
#   active, enable, priority, target and handling mode live here, in the ISTEs the hardware
#   virtual IRS owns. Only the hardware changes them: KVM's VDPEND (injection, IST restore
#   replay), the guest's GIC CD* instructions and its acknowledge.
# - Every write of an ISTE goes through ist_store, which keeps the derived bitmaps
#   vm.spi_ready exact: per vCPU, the SPIs that are ENABLE and PENDING and not ACTIVE and
#   target it, with a summary word (bit k: word k has a bit). The IRS candidate of a vCPU is
#   then a scan of its own ready SPIs, never of the whole table, of empty words, or of SPIs
#   ready for other vCPUs (callgrind, SPI storm on 256 SPIs: the scan of four words, twice
#   per guest run, was ~60 of its ~600 instructions per delivery; with one VM-wide bitmap a
#   vCPU's acknowledge walked every SPI ready anywhere in the VM, O(SPIs pending) when
#   the guests are served less often than SPIs arrive).
# - The table has 2 ** spi_id_bits entries (vgic_v5_spi_ist_alloc: the power of two at or
#   above nr_spis, what KVM tells the hardware in the VMTE); ids in [nr_spis, 2 ** bits) exist
#   in hardware (spec Q4, model choice "pow2") but KVM never touches them.
# - Callers hold vm.lock; every function is noexcept nogil.

from libc.stdint cimport uint32_t, uint64_t
from gic5core.mask cimport gic5_ctz64
from gic5core.state cimport vm_t, vcpu_t, SPI_READY_ROW

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


cdef inline bint iste_ready(uint32_t w) noexcept nogil:
    # What the IRS can offer: enabled, pending, not active.
    return (w & (ISTE_ENABLE | ISTE_PENDING | ISTE_ACTIVE)) == (ISTE_ENABLE | ISTE_PENDING)


cdef inline uint64_t* ready_row(const vm_t* vm, uint32_t vcpu_id) noexcept nogil:
    # The spi_ready row of vcpu_id, NULL above the highest vcpu_id or before the IST exists
    # (an SPI targeting such an id is offered to no one, as the hardware offers it to no VPE).
    # The row of an id below it that no vCPU has is written but never read.
    if vcpu_id >= vm.spi_ready_ids:
        return NULL
    return vm.spi_ready + <size_t>vcpu_id * SPI_READY_ROW


cdef inline void ist_store(vm_t* vm, unsigned int id, uint32_t w) noexcept nogil:
    # The one writer of an ISTE: the word, then its bit in the ready row of the vCPU it
    # targeted before (cleared) and of the one it targets now (set), with the rows' summary
    # bits. Caller: id < vm.ist_entries (so vm.spi_ready exists).
    cdef uint64_t bit = (<uint64_t>1) << (id & 63), word
    cdef unsigned int k = id >> 6
    cdef uint32_t old = vm.ist[id]
    cdef uint64_t* row
    vm.ist[id] = w
    if iste_ready(old):
        row = ready_row(vm, old >> ISTE_IAFFID_SHIFT)
        if row != NULL:
            word = row[1 + k] & ~bit
            row[1 + k] = word
            if word == 0:  # (a branch: cheaper than a branch-free update, callgrind)
                row[0] &= ~((<uint64_t>1) << k)
    if iste_ready(w):
        row = ready_row(vm, w >> ISTE_IAFFID_SHIFT)
        if row != NULL:
            row[1 + k] |= bit
            row[0] |= (<uint64_t>1) << k


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
    cdef const uint64_t* row = ready_row(vm, v.vcpu_id)
    cdef uint64_t m, words
    if row == NULL:
        prio[0] = best_p
        return best  # no IST yet: nothing is ready
    words = row[0]
    while words:  # v's non-empty words, ascending
        k = <unsigned int>gic5_ctz64(words)
        words &= words - 1
        m = row[1 + k]
        while m:
            id = (k << 6) + <unsigned int>gic5_ctz64(m)
            m &= m - 1
            p = iste_priority(vm.ist[id])
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
