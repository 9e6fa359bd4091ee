# 128-bit PPI masks and the kernel bitmap verbs that act on them.
#
# Rules this file keeps:
# - A mask is two uint64 words: w[0] = PPIs 0..63, w[1] = PPIs 64..127; PPI n is bit (n % 64)
#   of word (n // 64), exactly the layout of the kernel's 128-bit PPI bitmaps and of the
#   two __u64 that KVM_DEV_ARM_VGIC_USERSPACE_PPIS copies out.
# - Every helper is `cdef inline ... noexcept nogil`: none can fail, all are usable from the
#   storm loops. Callers guarantee nr < 128 for the single-bit verbs (the checked build traps
#   a violation through boundscheck on w[]).
# - Names follow include/linux/bitmap.h (test_bit, set_bit, clear_bit, assign_bit,
#   bitmap_and, bitmap_or, bitmap_andnot, bitmap_xor, bitmap_empty, bitmap_equal,
#   bitmap_weight); the two-operand verbs return a new mask rather than
#   writing through a destination pointer, which keeps call sites to one line.
# - mask_cut(m, wide) with wide false is only for a mask that cannot hold a bit >= 64 (a
#   64-PPI profile: state.pxd's invariant); it changes no value, it only lets the compiler
#   drop the word-1 work behind a constant wide. mask_store(dst, m, wide) with wide false
#   likewise writes word 0 only: word 1 of dst is zero already, by the same invariant.

from libc.stdint cimport uint64_t

cdef extern from *:
    """
    static inline int gic5_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    static inline int gic5_popcount64(unsigned long long x) { return __builtin_popcountll(x); }
    """
    int gic5_ctz64(unsigned long long x) noexcept nogil  # undefined for x == 0
    int gic5_popcount64(unsigned long long x) noexcept nogil

ctypedef struct mask128:
    uint64_t w[2]  # w[0]: PPIs 0..63, w[1]: PPIs 64..127


cdef inline mask128 mask_make(uint64_t w0, uint64_t w1) noexcept nogil:
    cdef mask128 m
    m.w[0] = w0
    m.w[1] = w1
    return m


cdef inline mask128 mask_cut(mask128 m, bint wide) noexcept nogil:
    # m as it is when wide; else word 0 and a zero word 1. A caller that stores or consumes a
    # mask through this with a constant False (a storm over 64-PPI VMs) makes every operation
    # on word 1 that led to m dead code, loads included.
    if wide:
        return m
    return mask_make(m.w[0], 0)


cdef inline void mask_store(mask128* dst, mask128 m, bint wide) noexcept nogil:
    # *dst = m when wide; else word 0 only (see the rule above): storing word 1's zero again
    # on every entry and exit of a 64-PPI storm is work with no effect (callgrind: ~1
    # instruction per mask stored).
    dst.w[0] = m.w[0]
    if wide:
        dst.w[1] = m.w[1]


cdef inline mask128 bitmap_zero() noexcept nogil:
    return mask_make(0, 0)


cdef inline mask128 bitmap_fill(unsigned int nbits) noexcept nogil:
    # The first nbits bits set (nbits in 0..128): the PPI space of a profile.
    if nbits >= 128:
        return mask_make(<uint64_t>-1, <uint64_t>-1)
    if nbits >= 64:
        return mask_make(<uint64_t>-1, ((<uint64_t>1) << (nbits - 64)) - 1 if nbits > 64 else 0)
    return mask_make(((<uint64_t>1) << nbits) - 1 if nbits > 0 else 0, 0)


cdef inline mask128 bit_mask(unsigned int nr) noexcept nogil:
    cdef mask128 m = mask_make(0, 0)
    m.w[nr >> 6] = (<uint64_t>1) << (nr & 63)
    return m


cdef inline bint test_bit(unsigned int nr, const mask128* m) noexcept nogil:
    return (m.w[nr >> 6] >> (nr & 63)) & 1


cdef inline void set_bit(unsigned int nr, mask128* m) noexcept nogil:
    m.w[nr >> 6] |= (<uint64_t>1) << (nr & 63)


cdef inline void clear_bit(unsigned int nr, mask128* m) noexcept nogil:
    m.w[nr >> 6] &= ~((<uint64_t>1) << (nr & 63))


cdef inline void assign_bit(unsigned int nr, mask128* m, bint value) noexcept nogil:
    if value:
        set_bit(nr, m)
    else:
        clear_bit(nr, m)


cdef inline mask128 bitmap_and(mask128 a, mask128 b) noexcept nogil:
    return mask_make(a.w[0] & b.w[0], a.w[1] & b.w[1])


cdef inline mask128 bitmap_or(mask128 a, mask128 b) noexcept nogil:
    return mask_make(a.w[0] | b.w[0], a.w[1] | b.w[1])


cdef inline mask128 bitmap_andnot(mask128 a, mask128 b) noexcept nogil:
    return mask_make(a.w[0] & ~b.w[0], a.w[1] & ~b.w[1])


cdef inline mask128 bitmap_xor(mask128 a, mask128 b) noexcept nogil:
    return mask_make(a.w[0] ^ b.w[0], a.w[1] ^ b.w[1])


cdef inline mask128 bitmap_select(mask128 a, mask128 b, mask128 sel) noexcept nogil:
    # Bits of b where sel is set, bits of a elsewhere: one assignment per selected bit.
    return bitmap_or(bitmap_andnot(a, sel), bitmap_and(b, sel))


cdef inline bint bitmap_empty(mask128 a) noexcept nogil:
    return (a.w[0] | a.w[1]) == 0


cdef inline bint bitmap_equal(mask128 a, mask128 b) noexcept nogil:
    return a.w[0] == b.w[0] and a.w[1] == b.w[1]


cdef inline int bitmap_weight(mask128 a) noexcept nogil:
    return gic5_popcount64(a.w[0]) + gic5_popcount64(a.w[1])
