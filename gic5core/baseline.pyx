# Benchmark baselines: what the model's hot paths are measured against (bench/).
#
# Rules this file keeps:
# - Nothing here is part of the model: each baseline does the least work its comparison
#   defines, and none is used by the API, the storms or the tests' oracles.
# - bare_inject_loop is the speed of light for KVM_IRQ_LINE batches (decode, vCPU lookup,
#   range and mask gate, edge latch; no errno bookkeeping, no lock, no per-element result);
#   bare_storm_loop is the speed of light for the closed-loop storm of SW_PPI edges on the
#   final rules, served after every injection (the same per-event work, no accounting, no
#   profile switch, no load / put); CallFloor.two is the floor of any compiled call from
#   Python.

"""Benchmark baselines: bare_inject_loop (the speed-of-light injection loop) and CallFloor
(the floor of a compiled call); see bench/.
"""

from libc.stdint cimport uint32_t, uint64_t
cimport cython

from gic5core.mask cimport (mask128, mask_cut, mask_store, test_bit, set_bit, clear_bit,
                            bitmap_and, bitmap_andnot, bitmap_or, bitmap_select)
from gic5core.state cimport vm_t, vcpu_t, SW_PPI
from gic5core.ppi cimport (vcpu_by_id, edge_cfg_of, best_priority_ppi, apr_highest, VMCR_EN,
                           VMCR_VPMR_SHIFT)
from gic5core.rng cimport splitmix64, reduce_range
from gic5core.vm cimport VmCore


def bare_inject_loop(VmCore core not None, const uint32_t[::1] irqs not None):
    """bare_inject_loop(core, irqs) -> accepted: the speed-of-light baseline.

    Only decode + vCPU lookup + range and mask gate + edge latch, with no errno bookkeeping, no
    owner or level handling, no per-element result and no lock: what a C loop must at least do.
    """
    cdef vm_t* vm = &core.vm
    cdef Py_ssize_t i, n = irqs.shape[0]
    cdef uint32_t w, num
    cdef vcpu_t* v
    cdef uint64_t accepted = 0
    with nogil:
        for i in range(n):
            w = irqs[i]
            num = w & 0xffff
            v = vcpu_by_id(vm, ((w >> 16) & 0xff) | (((w >> 28) & 0xf) << 8))
            if ((w >> 24) & 0xf) == 2 and v != NULL and num < vm.nr_ppis \
                    and test_bit(num, &vm.irq_line_gate):
                v.pending_latch.w[num >> 6] |= (<uint64_t>1) << (num & 63)
                accepted += 1
    return accepted


cdef inline uint64_t bare_events(vm_t* vm, int vcpus, uint64_t events, uint64_t seed,
                                 bint wide) noexcept nogil:
    # The loop of bare_storm_loop; wide as in ppi.pxd (a constant False on a 64-PPI VM, as the
    # storm compiles it there), so both sides of the comparison do the same word-1 work.
    cdef uint64_t _, rng = seed, delivered = 0, r
    cdef uint32_t w, num
    cdef vcpu_t* v
    cdef mask128 e = vm.exposed, edge
    cdef unsigned int p
    cdef int best
    edge = bitmap_and(e, edge_cfg_of(vm))
    for _ in range(events):
        r = splitmix64(&rng)
        v = vm.vcpus[reduce_range(r, <uint64_t>vcpus)]
        w = ((v.vcpu_id >> 8) << 28) | (2u << 24) | ((v.vcpu_id & 0xff) << 16) | SW_PPI
        num = w & 0xffff
        v = vcpu_by_id(vm, ((w >> 16) & 0xff) | (((w >> 28) & 0xf) << 8))
        if ((w >> 24) & 0xf) != 2 or v == NULL or num >= vm.nr_ppis \
                or not test_bit(num, &vm.irq_line_gate):
            continue
        set_bit(num, &v.pending_latch)
        # entry
        mask_store(&v.ich_pendr, bitmap_and(bitmap_or(v.pending_latch, bitmap_andnot(
            v.line_level, edge_cfg_of(vm))), e), wide)
        mask_store(&v.pending_latch, bitmap_andnot(v.pending_latch, edge), wide)
        # the guest: acknowledge, deactivate, priority drop, until nothing qualifies
        while v.vmcr & VMCR_EN:
            best = best_priority_ppi(&v.prio[vm.nr_ppis], mask_cut(bitmap_andnot(
                bitmap_and(v.ich_pendr, v.ich_enabler), v.ich_activer), wide), &p)
            if best < 0 or p > ((v.vmcr >> VMCR_VPMR_SHIFT) & 0x1f) \
                    or p >= apr_highest(v.apr):
                break
            v.apr |= (<uint64_t>1) << p
            set_bit(best, &v.ich_activer)
            if best == SW_PPI:
                clear_bit(best, &v.ich_pendr)
            delivered += 1
            clear_bit(best, &v.ich_activer)
            v.apr &= v.apr - 1
        # exit
        mask_store(&v.active, bitmap_select(v.active, v.ich_activer, e), wide)
        mask_store(&v.pending_latch, bitmap_or(v.pending_latch, bitmap_and(v.ich_pendr, edge)),
                   wide)
    return delivered


def bare_storm_loop(VmCore core not None, int vcpus, uint64_t events, uint64_t seed=1):
    """bare_storm_loop(core, vcpus, events, seed=1) -> delivered: the closed-loop baseline.

    ``events`` SW_PPI edges on vCPUs 0..vcpus-1 of ``core`` (uniform targets from the storm's
    generator), each followed by a run of its vCPU's guest, on the final rules only: decode
    and gate the KVM_IRQ_LINE word, latch; entry: the exposed pending set into PENDR, the edge
    latch cleared; acknowledge by priority under the mask and the running priority,
    deactivate, priority drop, until nothing qualifies; exit: ACTIVER back, an unacknowledged
    edge folded into the latch. No accounting, no lock, no profile switch, no load / put:
    what a C closed loop must at least do. The VM must be initialised and its vCPUs run once.
    On a 64-PPI VM it does no word-1 work, as the storm does there.
    """
    cdef vm_t* vm = &core.vm
    cdef uint64_t delivered
    if vcpus <= 0 or vcpus > vm.nr_vcpus or not vm.initialised:
        raise ValueError("bare_storm_loop needs an initialised VM with that many vCPUs")
    with nogil:
        if vm.nr_ppis > 64:
            delivered = bare_events(vm, vcpus, events, seed, True)
        else:
            delivered = bare_events(vm, vcpus, events, seed, False)
    return delivered


@cython.final
cdef class CallFloor:
    """The floor of any compiled call from Python: an empty cdef-class method taking two
    C ints, converted exactly as VmCore.irq_line converts its arguments (benchmark baseline)."""

    def two(self, uint32_t a, uint32_t b):
        pass
