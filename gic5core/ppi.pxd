# KVM's PPI logic and the GICv5 virtual CPU interface, as inline C shared by every core module.
#
# Rules this file keeps:
# - This is where the behaviour lives, once: vm.pyx (per-call and batch paths), cpuif.pyx
#   (the guest's instructions) and storm.pyx (closed-loop storms) all compile these same
#   functions, so the storm measures exactly the code the API runs.
# - Every function is `noexcept nogil` and touches only vm_t / vcpu_t; callers hold vm.lock.
# - Return conventions: 0 / -errno for operations KVM can fail; a PPI index or -1 for CDIA.
# - Profile differences are read from vm.prof at the switch points named in profile.pxd.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.errno cimport EINVAL, EBUSY, ENXIO, EIO
from gic5core.mask cimport (mask128, mask_make, bitmap_zero, bit_mask, test_bit, set_bit,
                            clear_bit, assign_bit, bitmap_and, bitmap_or, bitmap_andnot,
                            bitmap_xor, bitmap_select, bitmap_empty, gic5_ctz64)
from gic5core.profile cimport (profile_t, UMASK_V2_INDEX_AS_BITMAP, EXPOSE_V2_PER_VCPU_INVERTED,
                               EXPOSE_VCPU0_EVERY_FIRST_RUN, EXPOSE_VCPU0_ONCE)
from gic5core.state cimport (vm_t, vcpu_t, SW_PPI, PPI_INTID_BASE, MAX_VCPUS, OWNER_USERSPACE,
                             IRQ_WORD_VCPU_IDS)

cdef enum:
    VMCR_EN = 1                  # ICH_VMCR_EL2.EN, bit 0
    VMCR_VPMR_SHIFT = 27         # ICH_VMCR_EL2.VPMR, bits 31:27
    PRIO_MASK = 0x1f             # 5 priority bits; bits 7:5 of each byte are RES0
    GICV5_SW_PPI_V2 = 0x20000003  # v1/v2's GICV5_SW_PPI (encoded INTID)
    GICV5_HWIRQ_ID_MASK = 0x00ffffff


# --- lookups ---------------------------------------------------------------------------------

cdef inline vcpu_t* vcpu_by_id(vm_t* vm, uint32_t vcpu_id) noexcept nogil:
    # kvm_get_vcpu_by_id: NULL when no vCPU has that id. vcpu_id < 4096 (12 bits of the irq
    # word), the size of id_to_index, whose entries >= 512 are always -1.
    cdef int idx = vm.id_to_index[vcpu_id & (IRQ_WORD_VCPU_IDS - 1)]
    if idx < 0:
        return NULL
    return vm.vcpus[idx]


cdef inline mask128 exposed_of(const vm_t* vm, const vcpu_t* v) noexcept nogil:
    # v2 keeps the exposed set per vCPU; v3 and final per VM.
    if vm.prof.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED:
        return v.exposed
    return vm.exposed


cdef inline mask128 kvm_pending(const vm_t* vm, const vcpu_t* v) noexcept nogil:
    # KVM's idea of pending: edge -> latch; level -> latch | line (hw PPIs are level, and their
    # input-level callback samples the same line).
    return bitmap_or(v.pending_latch, bitmap_andnot(v.line_level, vm.edge_cfg))


cdef inline unsigned int image_priority(const vm_t* vm, const vcpu_t* v,
                                        unsigned int ppi) noexcept nogil:
    # The image's priority byte of PPI ppi (< nr_ppis), low 5 bits.
    return v.prio[vm.nr_ppis + ppi] & PRIO_MASK


cdef inline void image_set_priority(const vm_t* vm, vcpu_t* v, unsigned int ppi,
                                    unsigned int prio) noexcept nogil:
    v.prio[vm.nr_ppis + ppi] = <uint8_t>(prio & PRIO_MASK)  # bits 7:5 are RES0: dropped


cdef inline int best_priority_ppi(const uint8_t* prio, mask128 cand,
                                  unsigned int* best_p) noexcept nogil:
    # The PPI of cand whose byte in prio (low 5 bits) is lowest, ties to the lowest index; -1
    # when cand is empty. *best_p gets that priority (32 when empty). prio is the shadow
    # (v.prio) or the image (v.prio + nr_ppis). Word by word, lowest bit first (the kernel's
    # for_each_set_bit), so the walk never indexes the mask with a variable word number.
    cdef unsigned int k, i, p
    cdef uint64_t bits
    cdef int best = -1
    best_p[0] = 32
    for k in range(2):
        bits = cand.w[k]
        while bits:
            i = (k << 6) + <unsigned int>gic5_ctz64(bits)
            bits &= bits - 1
            p = prio[i] & PRIO_MASK
            if p < best_p[0]:
                best = <int>i
                best_p[0] = p
    return best


cdef inline mask128 guest_pending(const vcpu_t* v) noexcept nogil:
    # What the guest's CPU interface sees as pending while loaded: PENDR for software-injected
    # PPIs, the live physical line for directly injected ones.
    return bitmap_or(bitmap_andnot(v.ich_pendr, v.ich_dvir), bitmap_and(v.line_level, v.ich_dvir))


cdef inline unsigned int apr_highest(uint64_t apr) noexcept nogil:
    # Highest active priority = lowest set bit of the low 32 bits of APR; 32 when none.
    cdef uint64_t low = apr & 0xffffffffUL
    if low == 0:
        return 32
    return gic5_ctz64(low)


cdef inline void update_ppi_fast(vm_t* vm) noexcept nogil:
    # Every writer of dead / has_device / initialised calls this after the write.
    vm.ppi_fast = (not vm.dead) and vm.has_device and vm.initialised


# --- CTRL_INIT --------------------------------------------------------------------------------

cdef inline mask128 userspace_mask(const vm_t* vm) noexcept nogil:
    # spec 5.1. v2 used the *index* (GICV5_SW_PPI & GICV5_HWIRQ_ID = 3) as a bitmap.
    if vm.prof.umask_rule == UMASK_V2_INDEX_AS_BITMAP:
        return mask_make((GICV5_SW_PPI_V2 & GICV5_HWIRQ_ID_MASK) & vm.impl.w[0], 0)
    return mask_make(((<uint64_t>1) << SW_PPI) & vm.impl.w[0], 0)


# --- injection (kvm_vgic_inject_irq, PPI path) --------------------------------------------------

cdef inline int inject_ppi(vm_t* vm, vcpu_t* v, unsigned int ppi, bint level,
                           int owner) noexcept nogil:
    # Precondition: ppi < vm.nr_ppis. KVM_IRQ_LINE range-checks before it gets here, and the
    # in-kernel devices drive PPIs 23, 27 and 30 only; the lookup by index that KVM does next
    # (spec 6.2 step 3) can therefore never fail and is not repeated.
    if not vm.initialised:
        return -EBUSY
    return inject_ppi_initialised(vm, v, ppi, level, owner)


cdef inline int inject_ppi_initialised(vm_t* vm, vcpu_t* v, unsigned int ppi, bint level,
                                       int owner) noexcept nogil:
    # inject_ppi past its initialisation check (the caller has made it).
    # Branch-free on the level (random in storms and batches): all-ones when asserted.
    cdef uint64_t bit = (<uint64_t>1) << (ppi & 63)
    cdef uint64_t asserted = -(<uint64_t>(level != 0))
    cdef unsigned int word = ppi >> 6
    if ppi == SW_PPI:
        # The only edge-configured PPI (vm.edge_cfg), and never owned (state.pxd): the owner
        # test needs no load: userspace always matches, a kernel caller never does.
        if owner == OWNER_USERSPACE:
            v.pending_latch.w[word] |= bit & asserted   # one latch: a second edge coalesces
        return 0
    # Owner mismatch: a kernel-owned PPI driven by userspace (or the reverse) is dropped, 0.
    if test_bit(ppi, &v.owned) != (owner != OWNER_USERSPACE):
        return 0
    v.line_level.w[word] = (v.line_level.w[word] & ~bit) | (bit & asserted)
    return 0


cdef inline int irq_line_one(vm_t* vm, uint32_t irq, uint32_t level) noexcept nogil:
    # kvm_vm_ioctl_irq_line for a V5 VM (spec 6.1, 10.3, 10.12). Caller holds vm.lock.
    cdef unsigned int irq_type = (irq >> 24) & 0xf
    cdef uint32_t vcpu_id = ((irq >> 16) & 0xff) | (((irq >> 28) & 0xf) << 8)
    cdef unsigned int num = irq & 0xffff
    cdef vcpu_t* v
    if irq_type == 2 and vm.ppi_fast:
        # The common case in one test: alive, a device, initialised. The checks left are the
        # same as below, in the same order, minus the three vm.ppi_fast stands for.
        v = vcpu_by_id(vm, vcpu_id)
        if v == NULL or num >= vm.nr_ppis or not test_bit(num, &vm.irq_line_gate):
            return -EINVAL
        return inject_ppi_initialised(vm, v, num, level != 0, OWNER_USERSPACE)
    if vm.dead:
        return -EIO
    if irq_type == 2:  # KVM_ARM_IRQ_TYPE_PPI
        if not vm.has_device:
            return -ENXIO
        v = vcpu_by_id(vm, vcpu_id)
        # Unknown vCPU, num >= VGIC_V5_NR_PRIVATE_IRQS and (v3+) a PPI outside userspace_ppis
        # all answer EINVAL, so one test of the precomputed gate (empty bits >= nr) does all.
        if v == NULL or num >= vm.nr_ppis or not test_bit(num, &vm.irq_line_gate):
            return -EINVAL
        return inject_ppi(vm, v, num, level != 0, OWNER_USERSPACE)
    if irq_type == 0:  # KVM_ARM_IRQ_TYPE_CPU: only for userspace irqchips
        if vm.has_device:
            return -ENXIO
        v = vcpu_by_id(vm, vcpu_id)
        if v == NULL or num > 1:
            return -EINVAL
        if level:
            v.cpu_lines |= <uint8_t>(1 << num)
        else:
            v.cpu_lines &= <uint8_t>~(1 << num)
        return 0
    if irq_type == 1:  # KVM_ARM_IRQ_TYPE_SPI: a PPI-only V5 VM has no SPIs
        if not vm.has_device:
            return -ENXIO
        if not vm.initialised:
            return -EBUSY
        return -EINVAL
    return -EINVAL


# --- finalize (vgic_v5_finalize_ppi_state) ------------------------------------------------------

cdef inline void finalize(vm_t* vm, vcpu_t* v) noexcept nogil:
    cdef mask128 sw = bit_mask(SW_PPI)
    if vm.prof.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED:
        # v2's inverted test: skip "no owner AND intid == GICV5_SW_PPI", expose the rest.
        if test_bit(SW_PPI, &v.owned):
            v.exposed = vm.impl
        else:
            v.exposed = bitmap_andnot(vm.impl, sw)
        return
    if vm.prof.exposure_rule == EXPOSE_VCPU0_ONCE and test_bit(SW_PPI, &vm.exposed):
        return  # the SW_PPI bit doubles as "already finalized"
    vm.exposed = bitmap_and(vm.impl, bitmap_or(vm.vcpus[0].owned, sw))
    vm.hmr = bitmap_andnot(vm.exposed, vm.edge_cfg)


# --- entry flush / exit fold ----------------------------------------------------------------------

cdef inline void flush(vm_t* vm, vcpu_t* v) noexcept nogil:
    cdef mask128 e = exposed_of(vm, v)
    cdef mask128 pend = bitmap_and(kvm_pending(vm, v), e)
    if vm.prof.clear_edge_latch_on_entry:
        # final: ownership of the edge passes to ICH_PPI_PENDR; the latch is cleared.
        v.pending_latch = bitmap_andnot(v.pending_latch, bitmap_and(e, vm.edge_cfg))
    v.ich_dvir = bitmap_and(v.hw, e)
    v.ich_activer = bitmap_and(v.active, e)
    v.ich_enabler = bitmap_and(v.enabled, e)
    v.ich_pendr = bitmap_andnot(pend, v.ich_dvir)
    # A 64-PPI profile writes the upper bank (word 1, PRIORITYR8..15) as zero. Nothing has to
    # be done for it here: every path that writes the image masks by vm.impl or the exposed
    # set, both cut to nr_ppis, so those bits and bytes are never anything but zero.
    v.vmcr = v.saved_vmcr
    v.apr = v.saved_apr
    if vm.prof.fold_changed_only:
        # Only the changed-bits fold (v2/v3) compares the exit image with the entry image.
        v.pendr_entry = v.ich_pendr
        v.activer_entry = v.ich_activer
    v.loaded = 1


cdef inline void sync_priorities(vm_t* vm, vcpu_t* v) noexcept nogil:
    cdef unsigned int i
    for i in range(vm.nr_ppis):
        v.prio[i] = <uint8_t>image_priority(vm, v, i)


cdef inline void fold(vm_t* vm, vcpu_t* v) noexcept nogil:
    cdef mask128 e = exposed_of(vm, v)
    cdef mask128 sel
    if vm.prof.fold_changed_only:
        # v2/v3: only PPIs whose pending or active bit changed, written back by assignment.
        sel = bitmap_and(bitmap_or(bitmap_xor(v.ich_pendr, v.pendr_entry),
                                   bitmap_xor(v.ich_activer, v.activer_entry)), e)
        if vm.prof.fold_skips_dvi:
            sel = bitmap_andnot(sel, v.ich_dvir)
        v.active = bitmap_select(v.active, v.ich_activer, sel)
        sel = bitmap_and(sel, vm.edge_cfg)
        v.pending_latch = bitmap_select(v.pending_latch, v.ich_pendr, sel)
    else:
        # final: every exposed PPI; the edge latch ORs the exit pending bit back in, so an
        # edge injected while the guest ran is never lost.
        v.active = bitmap_select(v.active, v.ich_activer, e)
        v.pending_latch = bitmap_or(v.pending_latch,
                                    bitmap_and(bitmap_and(v.ich_pendr, e), vm.edge_cfg))
    v.saved_vmcr = v.vmcr
    v.saved_apr = v.apr
    v.ich_dvir = bitmap_zero()  # the host gets its physical PPIs back
    v.loaded = 0


# --- the wake-up predicate (kvm_vgic_vcpu_pending_irq for V5) -----------------------------------

cdef inline bint has_pending(vm_t* vm, vcpu_t* v) noexcept nogil:
    cdef mask128 e, pend
    cdef unsigned int limit, vpmr, p
    if not vm.initialised:
        return False
    e = exposed_of(vm, v)
    pend = bitmap_and(kvm_pending(vm, v), e)
    if vm.prof.sync_prio_on_check:
        if bitmap_empty(pend):
            return False  # v2's early-out on an empty shadow pending set
        sync_priorities(vm, v)
    if vm.prof.wake_fast_path and (v.saved_apr & 0xffffffffUL) == 0:
        return not bitmap_empty(pend)  # v2: something pending and nothing active
    if vm.prof.wake_checks_en and not (v.saved_vmcr & VMCR_EN):
        return False  # limit 0
    vpmr = (v.saved_vmcr >> VMCR_VPMR_SHIFT) & PRIO_MASK
    limit = apr_highest(v.saved_apr)
    if vpmr + 1 < limit:
        limit = vpmr + 1
    # The limit is an upper bound on the priority value: some pending, enabled PPI passes it
    # exactly when the best one (by the shadow priorities) does.
    if best_priority_ppi(v.prio, bitmap_and(pend, v.enabled), &p) < 0:
        return False
    return (p < limit) if vm.prof.wake_strict else (p <= limit)


cdef inline void put_wfi(vm_t* vm, vcpu_t* v) noexcept nogil:
    # vgic_v5_put with IN_WFI: the shadow priorities are synced only here (v3/final).
    if not vm.prof.sync_prio_on_check:
        sync_priorities(vm, v)


# --- the guest's CPU interface (hardware behaviour while loaded) -------------------------------

cdef inline int cpu_cdia(vm_t* vm, vcpu_t* v) noexcept nogil:
    # GICR CDIA: acknowledge the highest-priority pending, enabled, inactive PPI that beats both
    # the priority mask (prio <= VPMR) and the running priority (prio < highest active).
    # Ties go to the lowest PPI index. Returns the PPI index, or -1 when nothing qualifies.
    # Both bounds are upper limits on the priority value, so the best candidate is found first
    # (lowest value, then lowest index) and the bounds are tested once, on it alone: if it fails
    # them, every other candidate does too.
    cdef unsigned int best_p
    cdef int best
    if not (v.vmcr & VMCR_EN):
        return -1
    best = best_priority_ppi(&v.prio[vm.nr_ppis], bitmap_andnot(
        bitmap_and(guest_pending(v), v.ich_enabler), v.ich_activer), &best_p)
    if best < 0 or best_p > ((v.vmcr >> VMCR_VPMR_SHIFT) & PRIO_MASK) \
            or best_p >= apr_highest(v.apr):
        return -1
    set_bit(best, &v.ich_activer)
    v.apr |= (<uint64_t>1) << best_p
    if test_bit(best, &vm.edge_cfg):
        clear_bit(best, &v.ich_pendr)  # a level PPI stays pending while its line is high
    return best


cdef inline void cpu_cdeoi(vcpu_t* v) noexcept nogil:
    # GIC CDEOI: priority drop of the highest active priority.
    v.apr &= v.apr - 1


cdef inline void cpu_cddi(vm_t* vm, vcpu_t* v, uint32_t intid) noexcept nogil:
    # GIC CDDI: deactivate; anything that is not one of our PPIs is ignored.
    cdef uint32_t ppi = intid & GICV5_HWIRQ_ID_MASK
    if (intid >> 29) == 1 and ppi < vm.nr_ppis:
        clear_bit(ppi, &v.ich_activer)
