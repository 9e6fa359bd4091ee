# The storms' random numbers: one home for the generator the storm engine and its bench
# baseline share, so the baseline draws the very target sequence the storm does.
#
# Invariants: splitmix64 is a bijection of its state step (a full period of 2^64); reduce_range
# maps the top 32 bits of a word to 0..n-1 by multiply-shift (no division; n < 2^32).

from libc.stdint cimport uint64_t


cdef inline uint64_t splitmix64(uint64_t* s) noexcept nogil:
    s[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = s[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t reduce_range(uint64_t r, uint64_t n) noexcept nogil:
    # A uniform index in 0..n-1 from the top 32 bits of r.
    return ((r >> 32) * n) >> 32
