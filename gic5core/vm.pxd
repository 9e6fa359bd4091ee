# VmCore: one VM's state, owned by a cdef class so the hot paths need no Python objects.
#
# Rules: the struct lives inside the object (no separate allocation); vCPUs are allocated one
# by one at creation (stable addresses, freed in __dealloc__); every method takes vm.lock
# for the whole of its C work. cpuif.pyx and storm.pyx reach the state through `vm`.

from libc.stdint cimport uint64_t
from gic5core.mask cimport mask128
from gic5core.state cimport vm_t, vcpu_t

cdef class VmCore:
    cdef vm_t vm                 # the whole VM: profile, masks, flags, vCPU table
    cdef str _profile            # the profile's name (the `profile` property)
    cdef vcpu_t* vcpu_at(self, int index) except NULL
    cdef tuple locked_mask(self, const mask128* m)
    cdef bint locked_check(self, int index, bint block) except -1
    cdef int _configure(self, str profile, bint host_pmu, uint64_t impl0, uint64_t impl1,
                        unsigned int max_vpes, bint lpi_domain, unsigned int ipa_bits,
                        bint gcie_legacy) except -1
    cdef int v5_vcpu_limits(self) noexcept nogil
    cdef int sysreg_access(self, uint64_t attr, bint write, bint readable,
                           uint64_t* val) noexcept nogil
    cdef bint any_running(self) noexcept nogil
    cdef int irs_regs_gate(self, bint write, bint readable) noexcept nogil
    cdef int lpi_id_bits(self, unsigned int* bits) noexcept nogil
    cdef int ist_validate(self, bint null, bint desc_ok, bint spi_null, uint64_t spi_size,
                          bint lpi_null, uint64_t lpi_size, unsigned int* bits) noexcept nogil
    cdef int spi_index(self, object spi) except -1
    cdef tuple spi_bits(self, object spi)
