# KVM's PPI logic and the GICv5 virtual CPU interface, as inline C shared by every core module.
#
# Rules this file keeps:
# - This is where the behaviour lives, once: vm.pyx (per-call and batch paths), cpuif.pyx
#   (the guest's instructions) and storm.pyx (closed-loop storms) all compile these same
#   functions, so the storm measures exactly the code the API runs.
# - Every function is `noexcept nogil` and touches only vm_t / vcpu_t; callers hold vm.lock.
# - Return conventions: 0 / -errno for operations KVM can fail; a PPI index or -1 for CDIA.
# - Profile differences are read from vm.prof at the switch points named in profile.pxd.
# - flush, fold, cpu_cdia, exposed_of, vcpu_load, vcpu_put and serve_requests take `shape`, a
#   promise about every VM they can run on, as bits: SHAPE_WIDE (a VM may have 128 PPIs),
#   SHAPE_LEGACY (a VM's profile may have one of the v2/v3 switches legacy_profile names set),
#   SHAPE_IRS (a VM's profile may have irs_uapi: without it, the 7.4-only state prio_raw,
#   reload_req and irs_enabled is known clear). SHAPE_ANY (every caller but a storm) promises
#   nothing and runs the code as written. A storm whose VMs all lack a bit passes a constant
#   without it: mask_cut and mask_store then drop the word-1 work, and a switch behind a
#   missing bit is not read, because its value is known (False) for every VM. The values are
#   the same (state.pxd: word 1 of every mask is zero on a 64-PPI VM; storm_loop checks the
#   profiles).
# - Every function names the kernel function(s) it models and for which profiles: "v2" is the
#   v2 posting (20251219155222.1383109), "v3" the v3 posting (20260109170400.1585048), "final"
#   mainline 7.2/7.3, the 7.1 code with its fix batches (vgic-v5.c, hyp/vgic-v5-sr.c,
#   arch_timer.c, arm.c), "7.4" branch kvm-arm64/gicv5-7.4 (kvmarm/next, merged by
#   fccdedadc23f; commits as in analogdevicesinc/linux). Where a posting and the later merged
#   code differ, the posting is followed (docs/profiles.md).

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.errno cimport EINVAL, EBUSY, ENXIO, EIO
from gic5core.mask cimport (mask128, mask_make, mask_cut, mask_store, bitmap_zero, bit_mask,
                            test_bit, set_bit, clear_bit, assign_bit, bitmap_and, bitmap_or,
                            bitmap_andnot, bitmap_xor, bitmap_select, bitmap_empty, gic5_ctz64)
from gic5core.profile cimport (profile_t, UMASK_V2_INDEX_AS_BITMAP, EXPOSE_V2_PER_VCPU_INVERTED,
                               EXPOSE_VCPU0_EVERY_FIRST_RUN, EXPOSE_VCPU0_ONCE,
                               EXPOSE_FIRST_RUN_MASKED,
                               WAKE_V2_EXIT_IMAGES, WAKE_V3_SHADOW, PRIO_SYNC_EXPOSED_AT_PUT)
from gic5core.ist cimport vdpend, ist_candidate, ist_doorbell_eligible, ISTE_ACTIVE, \
    ISTE_PENDING, ISTE_HM, ist_store, SPI_INTID_BASE
from gic5core.state cimport (vm_t, vcpu_t, SW_PPI, PPI_INTID_BASE, MAX_VCPUS, OWNER_USERSPACE,
                             NR_PPIS_MAX,
                             OWNER_KERNEL,
                             IRQ_WORD_VCPU_IDS, TIMER_VTIMER, TIMER_PTIMER, PPI_CNTV, PPI_CNTP)

cdef enum:
    CONTEXTR_V_SHIFT = 63        # ICH_CONTEXTR_EL2.V
    CONTEXTR_IRICHPPIDIS_SHIFT = 61  # the IRS gives no HPPI (the guest's IRS is disabled)
    CONTEXTR_DB_SHIFT = 60       # request the VPE doorbell while non-resident
    CONTEXTR_DBPM_SHIFT = 55     # DBPM 59:55: doorbell for priority <= DBPM
    CONTEXTR_VPE_SHIFT = 32      # VPE 47:32

cdef extern from *:
    """
    /* ppi.pxd phys_lines: timer_level bits 1:0 (ptimer, vtimer) -> PPI 30 / PPI 27. */
    static const unsigned long long gic5_phys_line_bits[4] = {
        0, 1ULL << 27, 1ULL << 30, (1ULL << 27) | (1ULL << 30)};
    """
    const unsigned long long* PHYS_LINE_BITS "gic5_phys_line_bits"

cdef enum:
    SHAPE_WIDE = 1               # some VM may have 128 PPIs (v2, v3): both mask words
    SHAPE_LEGACY = 2             # some VM's profile may be a legacy_profile (v2, v3)
    SHAPE_IRS = 4                # some VM's profile may have irs_uapi (7.4)
    SHAPE_ANY = 7                # the `shape` of every caller that is not specialised

cdef enum:
    VMCR_EN = 1                  # ICH_VMCR_EL2.EN, bit 0
    VMCR_VPMR_SHIFT = 27         # ICH_VMCR_EL2.VPMR, bits 31:27
    PRIO_MASK = 0x1f             # 5 priority bits; bits 7:5 of each byte are RES0
    GICV5_SW_PPI_V2 = 0x20000003  # v1/v2's GICV5_SW_PPI (encoded INTID)
    GICV5_HWIRQ_ID_MASK = 0x00ffffff


# --- lookups ---------------------------------------------------------------------------------

cdef inline vcpu_t* vcpu_by_id(const vm_t* vm, uint32_t vcpu_id) noexcept nogil:
    # kvm_get_vcpu_by_id: NULL when no vCPU has that id. vcpu_id < 4096 (12 bits of the irq
    # word), the size of id_to_index, whose entries >= 512 are always NO_VCPU (the NULL slot).
    return vm.vcpus[vm.id_to_index[vcpu_id & (IRQ_WORD_VCPU_IDS - 1)]]


cdef inline bint legacy_profile(const profile_t* p) noexcept nogil:
    # The switches a shape without SHAPE_LEGACY promises are off (clear_edge_latch_on_entry:
    # on): all of them v2/v3 only.
    return p.pendr_shadow or p.fold_changed_only or p.fold_changed_enabler or \
        p.fold_skips_dvi or p.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED or \
        not p.clear_edge_latch_on_entry


cdef inline mask128 exposed_of(const vm_t* vm, const vcpu_t* v, int shape) noexcept nogil:
    # vgic_ppi_mask, the exposed set vgic_v5_finalize_ppi_state computes: v2 keeps it per vCPU
    # (cpu_if->vgic_ppi_mask); v3 and final per VM (kvm->arch.vgic.gicv5_vm.vgic_ppi_mask).
    if (shape & SHAPE_LEGACY) and vm.prof.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED:
        return v.exposed
    return vm.exposed


cdef inline mask128 edge_cfg_of(const vm_t* vm) noexcept nogil:
    # vm.edge_cfg, which is {SW_PPI} on every VM (state.pxd): as a constant, so the compiler
    # folds it into the masks that use it (the hot paths: entry, exit, CDIA, the pending view).
    return mask_make((<uint64_t>1) << SW_PPI, 0)


cdef inline mask128 phys_lines(const vcpu_t* v) noexcept nogil:
    # vgic_get_phys_line_level of the hardware-mapped PPIs: the direct timers' output lines
    # (vtimer -> PPI 27, ptimer -> PPI 30), as recorded in timer_level.
    # (a table of the four combinations: one load)
    return mask_make(PHYS_LINE_BITS[v.timer_level & 3], 0)


cdef inline mask128 irq_is_pending(const vm_t* vm, const vcpu_t* v) noexcept nogil:
    # irq_is_pending (vgic.h), all profiles: edge -> latch; level -> latch | line_level, as
    # stored (a hw PPI's line_level too: the CPU_SYSREGS SPENDR read of 7.4 reports it).
    return bitmap_or(v.pending_latch, bitmap_andnot(v.line_level, edge_cfg_of(vm)))


cdef inline mask128 kvm_pending(const vm_t* vm, const vcpu_t* v) noexcept nogil:
    # KVM's pending view: irq_is_pending, but a hardware-mapped PPI's state is its physical
    # line (final's wake check: irq->hw ? vgic_get_phys_line_level(irq) : irq_is_pending(irq)).
    # The two differ only where something other than the timer wrote a hw PPI's line_level
    # (7.4: a CPU_SYSREGS SPENDR0 restore after a failed first run mapped the timers).
    return bitmap_select(irq_is_pending(vm, v), phys_lines(v), v.hw)


cdef inline unsigned int image_priority(const vm_t* vm, const vcpu_t* v,
                                        unsigned int ppi) noexcept nogil:
    # The ICH_PPI_PRIORITYRn_EL2 field of PPI ppi (< nr_ppis): the low 5 bits of its byte.
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
    # The hardware (QEMU gicv5-cpuif.c, ICC_PPI_SPENDR reads): what the guest sees as pending
    # while loaded: PENDR for software-injected PPIs, the live physical line for directly
    # injected (ICH_PPI_DVIR) ones.
    return bitmap_or(bitmap_andnot(v.ich_pendr, v.ich_dvir), bitmap_and(phys_lines(v), v.ich_dvir))


cdef inline unsigned int apr_highest(uint64_t apr) noexcept nogil:
    # vgic_v5_get_effective_priority_mask's "highest_ap": the lowest set bit of the low 32 bits
    # of APR (final: "Cast vgic_apr to u32", 42d7eac8291d), 32 when none is active.
    cdef uint64_t low = apr & 0xffffffffUL
    if low == 0:
        return 32
    return gic5_ctz64(low)


cdef inline void update_ppi_fast(vm_t* vm) noexcept nogil:
    # Every writer of dead / has_device / initialised calls this after the write.
    vm.ppi_fast = (not vm.dead) and vm.has_device and vm.initialised


# --- CTRL_INIT --------------------------------------------------------------------------------

cdef inline mask128 userspace_mask(const vm_t* vm) noexcept nogil:
    # userspace_ppis as vgic_v5_init computes it at CTRL_INIT (v2 36/36, v3 36/36, final):
    # v2 used the *index* (GICV5_SW_PPI & GICV5_HWIRQ_ID = 3) as a bitmap; v3 and final the bit
    # of SW_PPI; both ANDed with impl_ppi_mask word 0.
    if vm.prof.umask_rule == UMASK_V2_INDEX_AS_BITMAP:
        return mask_make((GICV5_SW_PPI_V2 & GICV5_HWIRQ_ID_MASK) & vm.impl.w[0], 0)
    return mask_make(((<uint64_t>1) << SW_PPI) & vm.impl.w[0], 0)


# --- injection (kvm_vgic_inject_irq, PPI path) --------------------------------------------------

cdef inline int inject_ppi(vm_t* vm, vcpu_t* v, unsigned int ppi, bint level,
                           int owner) noexcept nogil:
    # kvm_vgic_inject_irq's vgic_lazy_init (v2/v3; final's kvm_vm_ioctl_irq_line has already
    # made it, and its kvm_vgic_inject_irq answers 0 for the in-kernel devices, which cannot
    # run before CTRL_INIT here), then the injection.
    # Precondition: ppi < vm.nr_ppis. KVM_IRQ_LINE range-checks before it gets here, and the
    # in-kernel devices drive PPIs 23, 27 and 30 only; the lookup by index that KVM does next
    # (spec 6.2 step 3) can therefore never fail and is not repeated.
    if not vm.initialised:
        return -EBUSY
    return inject_ppi_initialised(vm, v, ppi, level, owner)


cdef inline int inject_ppi_initialised(vm_t* vm, vcpu_t* v, unsigned int ppi, bint level,
                                       int owner) noexcept nogil:
    # kvm_vgic_inject_irq past its initialisation check (the caller has made it), all
    # profiles: inject_ppi_level with the profile's shadow rule read from the VM.
    return inject_ppi_level(vm, v, ppi, level, owner, vm.prof.pendr_shadow)


cdef inline int inject_ppi_level(vm_t* vm, vcpu_t* v, unsigned int ppi, bint level,
                                 int owner, bint pendr_shadow) noexcept nogil:
    # kvm_vgic_inject_irq past its initialisation check, all profiles: vgic_validate_injection
    # (owner, edge needs level, level needs a change), then line_level / pending_latch. v2/v3
    # (pendr_shadow, vm.prof.pendr_shadow passed in so a batch can hold it in a register):
    # then set_pending_state (v2 18/36, v3 19/36) assigns the shadow bit irq_is_pending, except
    # for a directly injected PPI ("Skip injecting the state altogether"; v3's timer never
    # injects a direct timer at all).
    # Branch-free on the level (random in storms and batches): all-ones when asserted.
    cdef uint64_t asserted = -(<uint64_t>(level != 0))
    cdef uint64_t bit, new
    cdef unsigned int word
    if ppi == SW_PPI:
        # The only edge-configured PPI (vm.edge_cfg), and never owned (state.pxd): the owner
        # test needs no load: userspace always matches, a kernel caller never does. Its bit
        # is a constant (word 0).
        if owner == OWNER_USERSPACE:
            # one latch: a second edge coalesces
            v.pending_latch.w[0] |= ((<uint64_t>1) << SW_PPI) & asserted
            if pendr_shadow:
                # irq_is_pending(edge) = latch = 1
                v.pendr_shadow.w[0] |= ((<uint64_t>1) << SW_PPI) & asserted
        return 0
    bit = (<uint64_t>1) << (ppi & 63)
    word = ppi >> 6
    # Owner mismatch: a kernel-owned PPI driven by userspace (or the reverse) is dropped, 0.
    if test_bit(ppi, &v.owned) != (owner != OWNER_USERSPACE):
        return 0
    new = bit & asserted
    if pendr_shadow and (v.line_level.w[word] & bit) != new \
            and not (v.hw.w[word] & bit):
        # A valid level injection (the line changes): irq_is_pending(level) = line_level, as
        # level PPIs never hold a latch.
        v.pendr_shadow.w[word] = (v.pendr_shadow.w[word] & ~bit) | new
    v.line_level.w[word] = (v.line_level.w[word] & ~bit) | new
    return 0


cdef inline int inject_spi(vm_t* vm, unsigned int spi, bint level) noexcept nogil:
    # kvm_vgic_inject_irq for a V5 SPI (7.4, vgic.c @ fccdedadc23f, SPI ops c9e4010b4b22):
    # vgic_get_irq finds no IRQ at or above nr_spis (EINVAL); vgic_validate_injection lets an
    # EDGE SPI through only on level 1 and a LEVEL SPI only on a change (anything else is 0
    # with no effect); then line_level (LEVEL) or pending_latch := 1 (EDGE), and the
    # set_pending_state op (vgic_v5_set_irq_pend) issues one VDPEND into the virtual IST with
    # irq_is_pending (EDGE: the latch; LEVEL: latch | line). pending_latch is never cleared for
    # an SPI (the sticky-latch quirk, spec S-11). No kick, no request.
    cdef unsigned int word = spi >> 6
    cdef uint64_t bit
    if spi >= vm.nr_spis:
        return -EINVAL
    bit = (<uint64_t>1) << (spi & 63)
    if vm.spi_cfg_level[word] & bit:
        if ((vm.spi_level[word] & bit) != 0) == level:
            return 0
        if level:
            vm.spi_level[word] |= bit
        else:
            vm.spi_level[word] &= ~bit
        vdpend(vm, spi, ((vm.spi_latch[word] | vm.spi_level[word]) & bit) != 0)
    elif level:
        vm.spi_latch[word] |= bit
        vdpend(vm, spi, True)
    return 0


cdef inline void apply_recorded_timer(vm_t* vm, vcpu_t* v, int timer) noexcept nogil:
    # kvm_timer_update_irq with the timer's recorded line: the injection as the timer's owner
    # (kvm_timer_enable at the first run, and every later change of the line). v3, final and
    # 7.4 skip it for a directly injected (DVI) timer ("Skip injecting on GICv5 for directly
    # injected (DVI'd) timers": its line is the hardware's, phys_lines); v2 still injects.
    cdef unsigned int ppi = vm.timer_ppi[timer] & 0xffffff
    if not vm.prof.dvi_timer_injects and test_bit(ppi & 127, &v.hw):
        return
    inject_ppi(vm, v, ppi, (v.timer_level >> timer) & 1, OWNER_KERNEL)


cdef inline void drive_timer_line(vm_t* vm, vcpu_t* v, int timer, bint level) noexcept nogil:
    # The arch timer's output line (timer TIMER_VTIMER or TIMER_PTIMER), all profiles: recorded
    # (for a direct timer it is the physical line the guest sees, phys_lines), and once the
    # vCPU's timers are enabled injected by the timer (on a live VM). The API's timer_line and
    # the storm both drive timers through here.
    if level:
        v.timer_level |= <uint8_t>(1 << timer)
    else:
        v.timer_level &= <uint8_t>~(1 << timer)
    if v.timers_enabled and not vm.dead:
        apply_recorded_timer(vm, v, timer)


cdef inline int irq_line_one(vm_t* vm, uint32_t irq, uint32_t level) noexcept nogil:
    # kvm_vm_ioctl_irq_line (arch/arm64/kvm/arm.c) for a V5 VM, one call. Caller holds vm.lock.
    return irq_line_gated(vm, &vm.irq_line_gate, vm.ppi_fast, vm.prof.pendr_shadow, irq, level)


cdef inline int irq_line_gated(vm_t* vm, const mask128* gate, bint fast, bint pendr_shadow,
                               uint32_t irq, uint32_t level) noexcept nogil:
    # kvm_vm_ioctl_irq_line (arch/arm64/kvm/arm.c) for a V5 VM: v2 23/36, v3 23/36 + 36/36,
    # final as mainline 7.2 (the lazy init first). gate, fast and pendr_shadow are
    # vm.irq_line_gate, vm.ppi_fast and vm.prof.pendr_shadow, passed in so that a batch can
    # hold them in registers (or as constants, in a loop specialised on them) while it holds
    # vm.lock and runs only injections, none of which writes them: read through vm they would
    # be reloaded after the injection's stores (vm.ppi_fast is a uint8_t, a character type
    # that gcc lets alias every store). The common case is here, small enough to inline into
    # every loop; the rest is irq_line_slow, in the kernel's order. Caller holds vm.lock.
    cdef unsigned int num = irq & 0xffff
    cdef vcpu_t* v
    if (irq & 0x0f000000) == 0x02000000 and fast:
        # A PPI on a VM alive, with a device, initialised. The checks left are the same as
        # irq_line_slow's, in the same order, minus the three vm.ppi_fast stands for. The gate
        # holds no bit at or above nr_ppis (state.pxd), so it answers the range check, once
        # num is known to index it (< NR_PPIS_MAX).
        v = vcpu_by_id(vm, ((irq >> 16) & 0xff) | (((irq >> 28) & 0xf) << 8))
        if v == NULL or num >= NR_PPIS_MAX or not test_bit(num, gate):
            return -EINVAL
        return inject_ppi_level(vm, v, num, level != 0, OWNER_USERSPACE, pendr_shadow)
    return irq_line_slow(vm, irq, level)


cdef inline int irq_line_slow(vm_t* vm, uint32_t irq, uint32_t level) noexcept nogil:
    # kvm_vm_ioctl_irq_line for a V5 VM, every case (irq_line_gated's common one included).
    cdef unsigned int irq_type = (irq >> 24) & 0xf
    cdef uint32_t vcpu_id = ((irq >> 16) & 0xff) | (((irq >> 28) & 0xf) << 8)
    cdef unsigned int num = irq & 0xffff
    cdef vcpu_t* v
    if vm.dead:
        return -EIO
    if irq_type == 2:  # KVM_ARM_IRQ_TYPE_PPI
        if not vm.has_device:
            return -ENXIO
        if vm.prof.irq_line_lazy_init_first and not vm.initialised:
            # final (mainline 7.2, 1a8685ed8cd1 "Force vgic init on injection outside the run
            # loop"): vgic_lazy_init answers EBUSY for an uninitialised V5 VGIC before the vCPU,
            # range and mask checks. v2/v3: the checks first (v3's empty mask gate: EINVAL; v2
            # reaches kvm_vgic_inject_irq's lazy init: EBUSY).
            return -EBUSY
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
    if irq_type == 1:  # KVM_ARM_IRQ_TYPE_SPI
        # kvm_vm_ioctl_irq_line, SPI branch (all profiles): no in-kernel irqchip ENXIO, then
        # vgic_lazy_init (EBUSY: a V5 VGIC is never initialised lazily), then
        # kvm_vgic_inject_irq. The vCPU fields of the word are not looked at.
        if not vm.has_device:
            return -ENXIO
        if not vm.initialised:
            return -EBUSY
        if not vm.prof.irs_uapi:
            return -EINVAL  # a PPI-only V5 VM has no SPIs: vgic_get_irq finds none
        return inject_spi(vm, num, level != 0)
    return -EINVAL


# --- finalize (vgic_v5_finalize_ppi_state) ------------------------------------------------------

cdef inline void finalize(vm_t* vm, vcpu_t* v) noexcept nogil:
    # vgic_v5_finalize_ppi_state, from kvm_arch_vcpu_run_pid_change at a vCPU's first run.
    cdef mask128 sw = bit_mask(SW_PPI)
    cdef int i
    cdef vcpu_t* w
    if vm.prof.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED:
        # v2 21/36: vgic_v5_finalize_state for every vCPU of the VM (kvm_for_each_vcpu), each
        # from its own IRQs, with the inverted skip test "!irq->owner && intid ==
        # GICV5_SW_PPI": every implemented PPI but an unowned SW_PPI (it never has an owner).
        for i in range(vm.nr_vcpus):
            w = vm.vcpus[i]
            if test_bit(SW_PPI, &w.owned):
                w.exposed = vm.impl
            else:
                w.exposed = bitmap_andnot(vm.impl, sw)
        return
    if vm.prof.exposure_rule == EXPOSE_FIRST_RUN_MASKED:
        # 7.4 (589d6072f25d "Mask per-vcpu PPI state in vgic_v5_finalize_ppi_state()"): called
        # with the running vCPU. The VM mask is built once (SW_PPI bit = "finalized") from the
        # owners of the vCPU that runs first; then, at every vCPU's own first run, its ENABLER
        # and ACTIVER images are ANDed with the mask, a hidden PPI loses enabled, active,
        # pending_latch and line_level, and a visible one reloads enabled / active from the
        # masked images (which a CPU_SYSREGS restore wrote raw).
        if not test_bit(SW_PPI, &vm.exposed):
            vm.exposed = bitmap_and(vm.impl, bitmap_or(v.owned, sw))
            vm.hmr = bitmap_andnot(vm.exposed, vm.edge_cfg)
        v.ich_enabler = bitmap_and(v.ich_enabler, vm.exposed)
        v.ich_activer = bitmap_and(v.ich_activer, vm.exposed)
        v.enabled = v.ich_enabler
        v.active = v.ich_activer
        v.pending_latch = bitmap_and(v.pending_latch, vm.exposed)
        v.line_level = bitmap_and(v.line_level, vm.exposed)
        return
    if vm.prof.exposure_rule == EXPOSE_VCPU0_ONCE and test_bit(SW_PPI, &vm.exposed):
        return  # final: the SW_PPI bit doubles as "already finalized"
    # v3 17/36 (every first run, no lock) and final (once): from vCPU 0's owners.
    vm.exposed = bitmap_and(vm.impl, bitmap_or(vm.vcpus[0].owned, sw))
    vm.hmr = bitmap_andnot(vm.exposed, vm.edge_cfg)


# --- entry flush / exit fold ----------------------------------------------------------------------

cdef inline void flush(vm_t* vm, vcpu_t* v, int shape) noexcept nogil:
    # Guest entry: vgic_v5_flush_ppi_state, then __vgic_v5_restore_ppi_state (hyp/vgic-v5-sr.c).
    # The image is hardware: it holds only implemented PPIs, so every register written here is
    # cut to vm.impl.
    cdef mask128 e, pend
    cdef unsigned int i
    cdef bint wide = shape & SHAPE_WIDE
    if (shape & SHAPE_IRS) and v.prio_raw:
        # 7.4: ICH_PPI_PRIORITYRn_EL2 restored from the raw bytes a CPU_SYSREGS write stored:
        # the hardware keeps the fields of implemented PPIs only, and the exit saves that
        # back (so a later CPU_SYSREGS read sees the cut register).
        for i in range(vm.nr_ppis):
            if not test_bit(i, &vm.impl):
                v.prio[vm.nr_ppis + i] = 0
        v.prio_raw = 0
    # All profiles: ICH_PPI_DVIR := the vCPU's DVI bitmap as vgic_v5_set_ppi_dvi left it,
    # not cut to the exposed set.
    mask_store(&v.ich_dvir, bitmap_and(v.hw, vm.impl), wide)
    if (shape & SHAPE_LEGACY) and vm.prof.pendr_shadow:
        # v2 18/36, v3 19/36: the entry pending image is the raw shadow (every PPI, exposed or
        # not; the latch is left as it is), and v2 presets pendr_exit with it.
        pend = v.pendr_shadow
        v.pendr_entry = pend
        v.pendr_exit = pend
    else:
        # final: for_each_visible_v5_ppi, bit := irq_is_pending; an edge's latch is then
        # cleared (170a77b4185a "Transfer edge pending state to ICH_PPI_PENDRx_EL2").
        # irq_is_pending, not kvm_pending: a hw PPI's bit is dropped below (~DVIR) either way.
        e = exposed_of(vm, v, shape)
        pend = bitmap_and(irq_is_pending(vm, v), e)
        if not (shape & SHAPE_LEGACY) or vm.prof.clear_edge_latch_on_entry:
            mask_store(&v.pending_latch, bitmap_andnot(v.pending_latch,
                                                       bitmap_and(e, edge_cfg_of(vm))), wide)
    # All profiles: ICH_PPI_PENDR := entry pending & ~DVIR ("the NON-DVI'd PPIs, only").
    mask_store(&v.ich_pendr, bitmap_and(bitmap_andnot(pend, v.ich_dvir), vm.impl), wide)
    # ICH_PPI_ACTIVER and ICH_PPI_ENABLER are restored from the images as they stand: ACTIVER
    # is the last exit's (the fold copies it: "Re-inject the exit state as entry state next
    # time!"), ENABLER what the trapped write handler left. Nothing rebuilds either from KVM's
    # active / enabled flags. A 64-PPI profile writes the upper bank as zero: every mask here
    # is cut to vm.impl, itself cut to nr_ppis, so those bits and bytes are always zero.
    # VMCR and APR are not touched: vcpu_load restores them (a trapped exit has no put/load).
    if (shape & SHAPE_LEGACY) and vm.prof.fold_changed_only:
        # The changed-bits fold (v2/v3) compares the exit image with these entry images.
        v.activer_entry = v.ich_activer
        v.enabler_entry = v.ich_enabler
    v.loaded = 1


cdef inline mask128 hmr_of(const vm_t* vm, const vcpu_t* v) noexcept nogil:
    # vgic_ppi_hmr as vgic_v5_finalize_ppi_state computes it: the exposed level PPIs (v2 per
    # vCPU, v3/final per VM; empty before the first run).
    if vm.prof.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED:
        return bitmap_andnot(v.exposed, vm.edge_cfg)
    return vm.hmr


cdef inline void sync_priorities(vm_t* vm, vcpu_t* v, bint exposed_only) noexcept nogil:
    # vgic_v5_sync_ppi_priorities: irq->priority := the low 5 bits of the saved PRIORITYR byte.
    # v2 (at the wake check): all 128 PPIs; v3/final (at a WFI put): the exposed PPIs.
    cdef unsigned int i
    cdef mask128 e = exposed_of(vm, v, SHAPE_ANY)
    for i in range(vm.nr_ppis):
        if not exposed_only or test_bit(i, &e):
            v.prio[i] = <uint8_t>image_priority(vm, v, i)


cdef inline void fold(vm_t* vm, vcpu_t* v, int shape) noexcept nogil:
    # Guest exit: __vgic_v5_save_ppi_state and __vgic_v5_save_state (hyp), then
    # vgic_v5_fold_ppi_state. The image fields keep the exit values (the exit ACTIVER becomes
    # the next entry's).
    cdef mask128 e, changed
    cdef bint wide = shape & SHAPE_WIDE
    if (shape & SHAPE_LEGACY) and vm.prof.fold_changed_only:
        # v2 18/36, v3 19/36: only PPIs whose entry and exit images differ (pending, active;
        # v2 also enable), minus the DVI PPIs; irq->active (v2: and irq->enabled) assigned
        # from the exit image; an edge's latch ORed ("This is an OR to avoid losing incoming
        # edges!"), never cleared: a taken SW_PPI edge is pending again at the next entry.
        changed = bitmap_or(bitmap_xor(v.ich_pendr, v.pendr_entry),
                            bitmap_xor(v.ich_activer, v.activer_entry))
        if vm.prof.fold_changed_enabler:
            changed = bitmap_or(changed, bitmap_xor(v.ich_enabler, v.enabler_entry))
        if vm.prof.fold_skips_dvi:
            changed = bitmap_andnot(changed, v.ich_dvir)
        v.active = bitmap_select(v.active, v.ich_activer, changed)
        if vm.prof.fold_changed_enabler:
            v.enabled = bitmap_select(v.enabled, v.ich_enabler, changed)
        v.pending_latch = bitmap_or(v.pending_latch,
                                    bitmap_and(bitmap_and(v.ich_pendr, changed),
                                               edge_cfg_of(vm)))
    else:
        # final: for_each_visible_v5_ppi: irq->active := exit bit; an edge's latch ORs the
        # exit pending bit back in, so an edge injected while the guest ran is never lost.
        e = exposed_of(vm, v, shape)
        mask_store(&v.active, bitmap_select(v.active, v.ich_activer, e), wide)
        mask_store(&v.pending_latch, bitmap_or(v.pending_latch,
                                               bitmap_and(bitmap_and(v.ich_pendr, e),
                                                          edge_cfg_of(vm))), wide)
    if (shape & SHAPE_LEGACY) and vm.prof.pendr_shadow:
        # v2/v3: vgic_ppi_pendr |= exit PENDR & ~HMR (edge and unexposed bits); v2 keeps the
        # exit images its wake check reads.
        v.pendr_shadow = bitmap_or(v.pendr_shadow, bitmap_andnot(v.ich_pendr, hmr_of(vm, v)))
        v.pendr_exit = v.ich_pendr
        v.enabler_exit = v.ich_enabler
    v.saved_vmcr = v.vmcr       # __vgic_v5_save_state: VMCR at every exit (APR: at the put)
    mask_store(&v.ich_dvir, bitmap_zero(), wide)  # "Now that we are done, disable DVI"
    v.loaded = 0


cdef inline void vcpu_load(vm_t* vm, vcpu_t* v, int shape) noexcept nogil:
    # vgic_v5_load (all profiles): __vgic_v5_restore_vmcr_apr writes ICH_VMCR_EL2 and
    # ICH_APR_EL2 from the saved copies. 7.4 (vgic-v5.c @ f9846846): the VPE is made resident
    # with ICH_CONTEXTR_EL2 = V | IRICHPPIDIS while the guest's IRS is disabled | VPE (a load
    # while resident is skipped). Then the entry proper (flush), after serve_requests.
    v.vmcr = v.saved_vmcr
    v.apr = v.saved_apr
    if (shape & SHAPE_IRS) and vm.prof.irs_uapi and not v.resident:
        v.contextr = ((<uint64_t>1) << CONTEXTR_V_SHIFT) | \
            ((<uint64_t>(not vm.irs_enabled)) << CONTEXTR_IRICHPPIDIS_SHIFT) | \
            ((<uint64_t>v.vcpu_id) << CONTEXTR_VPE_SHIFT)
        v.resident = 1


cdef inline void make_non_resident(vcpu_t* v, uint64_t contextr) noexcept nogil:
    # __vgic_v5_make_non_resident (hyp, 7.4): db_fired cleared first, then ICH_CONTEXTR_EL2
    # written (0, or the doorbell request of a WFI put).
    v.db_fired = 0
    v.resident = 0
    v.contextr = contextr


cdef inline void vcpu_put(vm_t* vm, vcpu_t* v, int shape) noexcept nogil:
    # vgic_v5_put without IN_WFI (all profiles): __vgic_v5_save_apr, the only place APR is
    # saved. A trapped exit handled inside KVM_RUN (a trapped register write) has no put, so
    # the wake check keeps reading the APR of the last put. 7.4: non-resident, no doorbell.
    v.saved_apr = v.apr
    if (shape & SHAPE_IRS) and vm.prof.irs_uapi and v.resident:
        make_non_resident(v, 0)


cdef inline void serve_requests(vm_t* vm, vcpu_t* v, int shape) noexcept nogil:
    # check_vcpu_requests before a re-entry (arm.c @ 589d6072, 7.4): KVM_REQ_RELOAD_GICv5 is
    # vgic_v5_put + vgic_v5_load, which re-derives IRICHPPIDIS (and, as a put, clears
    # db_fired). Called before every entry: after the load of a KVM_RUN or a WFI, and between
    # the fold and the flush of an exit handled in the kernel. Only the IRS's enable and
    # disable (7.4) set reload_req: a shape without SHAPE_IRS knows it clear.
    if (shape & SHAPE_IRS) and v.reload_req:
        v.reload_req = 0
        vcpu_put(vm, v, SHAPE_ANY)
        vcpu_load(vm, v, SHAPE_ANY)


# --- the block check (kvm_vcpu_check_block) -----------------------------------------------------

cdef inline bint vgic_pending(vm_t* vm, vcpu_t* v) noexcept nogil:
    # kvm_vgic_vcpu_pending_irq for V5 = vgic_v5_has_pending_ppi, on the state saved at the
    # last exit (VMCR) and put (APR).
    cdef mask128 cand
    cdef unsigned int limit, vpmr, p
    if not vm.initialised:
        return False  # no V5 VGIC (or never initialised: nothing can be pending yet)
    if v.db_fired:
        return True   # 7.4: the VPE doorbell fired (kvm_vgic_vcpu_pending_irq, V5 branch)
    if vm.prof.pendr_shadow and bitmap_empty(v.pendr_shadow):
        return False  # v2/v3: "if (likely(!cpu_if->vgic_ppi_pendr[0] && ..."
    # vgic_v5_get_effective_priority_mask: 0 when EN is clear (final), else
    # min(ctz(APR) or 32, VPMR + 1); all profiles: "if (!priority_mask) return false;".
    if vm.prof.wake_checks_en and not (v.saved_vmcr & VMCR_EN):
        return False
    vpmr = (v.saved_vmcr >> VMCR_VPMR_SHIFT) & PRIO_MASK
    limit = apr_highest(v.saved_apr)
    if vpmr + 1 < limit:
        limit = vpmr + 1
    if limit == 0:
        return False
    if vm.prof.wake_rule == WAKE_V2_EXIT_IMAGES:
        # v2 19/36: the priorities of all 128 PPIs are synced first, then the exit images.
        sync_priorities(vm, v, False)
        cand = bitmap_and(v.enabler_exit, v.pendr_exit)
    elif vm.prof.wake_rule == WAKE_V3_SHADOW:
        # v3 21/36: the trap-maintained ENABLER image and the shadow (a DVI PPI is never in the
        # shadow: the check cannot see a directly injected timer).
        cand = bitmap_and(v.ich_enabler, v.pendr_shadow)
    else:
        # final: for_each_visible_v5_ppi with irq->enabled, and pending = irq->hw ?
        # vgic_get_phys_line_level(irq) : irq_is_pending(irq) (kvm_pending has both).
        cand = bitmap_and(bitmap_and(kvm_pending(vm, v), exposed_of(vm, v, SHAPE_ANY)),
                          v.enabled)
    # The limit is an upper bound on the priority value: some candidate passes it exactly
    # when the best one (by the shadow priorities) does. v2/v3 "<=" (v2's shortcut for a
    # limit of 32 answers as the loop does); final "<" (a4a645584793).
    if best_priority_ppi(v.prio, cand, &p) < 0:
        return False
    return (p < limit) if vm.prof.wake_strict else (p <= limit)


cdef inline bint has_pending(vm_t* vm, vcpu_t* v) noexcept nogil:
    # What kvm_vcpu_check_block wakes on, as far as the model has state for it:
    # kvm_arch_vcpu_runnable (the HCR_EL2 VI/VF lines of a userspace irqchip, or
    # kvm_vgic_vcpu_pending_irq), then kvm_cpu_has_pending_timer: v2/v3 26/36 true when the
    # vtimer or ptimer should fire (a recorded timer line is high); final only the WFIT
    # deadline, which the model has no clock for (fbcbf259d97d removed the timer state).
    if v.cpu_lines or vgic_pending(vm, v):
        return True
    return vm.prof.wake_on_timer and \
        (v.timer_level & ((1 << TIMER_VTIMER) | (1 << TIMER_PTIMER))) != 0


cdef inline unsigned int effective_priority_mask(const vcpu_t* v) noexcept nogil:
    # vgic_v5_get_effective_priority_mask (final, 7.4): 0 when ICH_VMCR_EL2.EN is clear, else
    # min(ctz(APR) or 32, VPMR + 1), on the saved VMCR and APR.
    cdef unsigned int vpmr, limit
    if not (v.saved_vmcr & VMCR_EN):
        return 0
    vpmr = (v.saved_vmcr >> VMCR_VPMR_SHIFT) & PRIO_MASK
    limit = apr_highest(v.saved_apr)
    return vpmr + 1 if vpmr + 1 < limit else limit


cdef inline void put_wfi(vm_t* vm, vcpu_t* v) noexcept nogil:
    # vgic_v5_put with IN_WFI: APR saved, then v3/final sync the exposed PPIs' shadow
    # priorities (v2 at its wake check instead). 7.4 (vgic-v5.c @ f9846846, spec W-1/W-2):
    # with the guest's IRS enabled and a non-zero effective mask M, the VPE is made
    # non-resident with DB | DBPM = M - 1; the doorbell then fires for an eligible interrupt,
    # one already pending included (knob doorbell_fires_if_already_pending: the model's
    # choice, no source states the hardware rule).
    cdef unsigned int m
    cdef uint64_t ctx = 0
    v.saved_apr = v.apr
    if vm.prof.prio_sync == PRIO_SYNC_EXPOSED_AT_PUT:
        sync_priorities(vm, v, True)
    if vm.prof.irs_uapi and v.resident:
        m = effective_priority_mask(v) if vm.irs_enabled else 0
        if m != 0:
            ctx = ((<uint64_t>1) << CONTEXTR_DB_SHIFT) | \
                ((<uint64_t>(m - 1)) << CONTEXTR_DBPM_SHIFT)
        make_non_resident(v, ctx)
        if m != 0 and vm.prof.db_fires_if_pending and ist_doorbell_eligible(vm, v, m - 1):
            v.db_fired = 1  # db_handler: db_fired, KVM_REQ_IRQ_PENDING, kick


# --- the guest's CPU interface (hardware behaviour while loaded) -------------------------------

cdef inline int cpu_cdia(vm_t* vm, vcpu_t* v, int shape) noexcept nogil:
    # GICR CDIA, the hardware's (KVM does not trap it; QEMU gicr_cdia_read, gic_hppi), every
    # profile: acknowledge the highest-priority pending, enabled, inactive PPI that beats both
    # the priority mask (prio <= VPMR) and the running priority (prio < highest active).
    # Ties go to the lowest PPI index. Both bounds are upper limits on the priority value, so
    # the best candidate is found first (lowest value, then lowest index) and the bounds are
    # tested once, on it alone: if it fails them, every other candidate does too.
    # 7.4: the IRS candidate (ist_candidate) competes while the VPE is resident with
    # IRICHPPIDIS clear; the PPI wins a tie (QEMU's choice for the IMPDEF R_VVBPS: knob
    # ppi_vs_irs_tie). An SPI is acknowledged by the IRS's Activate: ACTIVE := 1, PENDING := 0
    # when its HM is edge. Priority 0 is acknowledged too (the model runs with SCTLR_EL1.NMI
    # = 0). Returns the PPI index, SPI_INTID_BASE | n for SPI n, or -1 when nothing qualifies.
    cdef unsigned int best_p, spi_p
    cdef int best, spi = -1
    cdef uint32_t w
    if not (v.vmcr & VMCR_EN):
        return -1
    best = best_priority_ppi(&v.prio[vm.nr_ppis], mask_cut(bitmap_andnot(
        bitmap_and(guest_pending(v), v.ich_enabler), v.ich_activer), shape & SHAPE_WIDE),
        &best_p)
    if (shape & SHAPE_IRS) and vm.prof.irs_uapi and v.resident and \
            not ((v.contextr >> CONTEXTR_IRICHPPIDIS_SHIFT) & 1):
        spi = ist_candidate(vm, v, &spi_p)
        if spi >= 0 and (best < 0 or spi_p < best_p
                         or (spi_p == best_p and not vm.prof.ppi_wins_irs_tie)):
            best_p = spi_p
        else:
            spi = -1
    if (best < 0 and spi < 0) or best_p > ((v.vmcr >> VMCR_VPMR_SHIFT) & PRIO_MASK) \
            or best_p >= apr_highest(v.apr):
        return -1
    v.apr |= (<uint64_t>1) << best_p
    if spi >= 0:
        w = vm.ist[spi] | ISTE_ACTIVE
        if not (w & ISTE_HM):
            w &= ~(<uint32_t>ISTE_PENDING)
        ist_store(vm, spi, w)
        return SPI_INTID_BASE | spi
    set_bit(best, &v.ich_activer)
    if best == SW_PPI:  # the only edge PPI (edge_cfg_of)
        clear_bit(best, &v.ich_pendr)  # a level PPI stays pending while its line is high
    return best


cdef inline void cpu_cdeoi(vcpu_t* v) noexcept nogil:
    # GIC CDEOI, the hardware's (QEMU gic_cdeoi_write: "apr &= apr - 1"), every profile: the
    # priority drop of the highest active priority only.
    v.apr &= v.apr - 1


cdef inline void cpu_cddi(vm_t* vm, vcpu_t* v, uint32_t intid) noexcept nogil:
    # GIC CDDI, the hardware's (QEMU gic_cddi_write -> gicv5_deactivate for the IRS's), every
    # profile: deactivate the PPI, or (7.4) the SPI in the virtual IST; anything else is
    # ignored.
    cdef uint32_t id = intid & GICV5_HWIRQ_ID_MASK
    if (intid >> 29) == 1:
        if id < vm.nr_ppis:
            clear_bit(id, &v.ich_activer)
    elif (intid >> 29) == 3 and id < vm.ist_entries:
        ist_store(vm, id, vm.ist[id] & ~(<uint32_t>ISTE_ACTIVE))
