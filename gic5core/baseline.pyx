# Benchmark baselines: what the model's hot paths are measured against (bench/).
#
# Rules this file keeps:
# - Nothing here is part of the model: each baseline does the least work its comparison
#   defines, and none is used by the API, the storms or the tests' oracles.
# - bare_inject_loop is the speed of light for KVM_IRQ_LINE batches (decode, vCPU lookup,
#   range and mask gate, edge latch; no errno bookkeeping, no lock, no per-element result);
#   CallFloor.two is the floor of any compiled call from Python.

"""Benchmark baselines: bare_inject_loop (the speed-of-light injection loop) and CallFloor
(the floor of a compiled call); see bench/.
"""

from libc.stdint cimport uint32_t, uint64_t
cimport cython

from gic5core.mask cimport test_bit
from gic5core.state cimport vm_t, vcpu_t
from gic5core.ppi cimport vcpu_by_id
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


@cython.final
cdef class CallFloor:
    """The floor of any compiled call from Python: an empty cdef-class method taking two
    C ints, converted exactly as VmCore.irq_line converts its arguments (benchmark baseline)."""

    def two(self, uint32_t a, uint32_t b):
        pass
