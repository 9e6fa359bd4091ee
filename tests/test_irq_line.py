"""KVM_IRQ_LINE: decode order and errnos, and what an accepted injection does.

Covers docs/semantics.md section 6 and spec 6.1, 6.2, 10.3, 10.12: every irq type 0..15,
the vCPU field (vcpu_index and vcpu2_index), representative ids, before/after CTRL_INIT, a
VM without a device and a dead VM, under every profile; then the SW_PPI edge latch, level
lines, the range of `level`, and owner-mismatch injections.

Rule kept: the expected errno of each word comes from the order written in the spec
(`expected` below restates section 6.1 as a table walk, nothing more); state after an
injection is read through the inspection calls and, for delivery, through the guest.
"""

import errno

import pytest

import gic5
from gic5 import uapi

PPI = uapi.KVM_ARM_IRQ_TYPE_PPI
SPI = uapi.KVM_ARM_IRQ_TYPE_SPI
CPU = uapi.KVM_ARM_IRQ_TYPE_CPU
SW = uapi.GICV5_ARCH_PPI_SW_PPI
V5 = uapi.KVM_DEV_TYPE_ARM_VGIC_V5

# vCPUs that exist in the sweep, and the vCPU fields tried. 257 has vcpu_index 1 (which
# exists) and vcpu2_index 1: a decoder ignoring vcpu2 would find vCPU 1.
EXISTING = (0, 1, 256)
VCPU_FIELDS = (0, 1, 7, 255, 256, 257, 511, 4095)
IDS = (0, 1, 2, 3, 63, 64, 127, 128, 0xFFFF)
STATES = ("no-device", "test-mode-only", "before-init", "after-init", "dead")


def expected(profile, state, irq_type, vcpu_id, num):
    """kvm_vm_ioctl_irq_line in order (v2 23/36, v3 23/36 + 36/36, final as mainline 7.2);
    0 = accepted, else -errno."""
    if state == "dead":
        return -errno.EIO
    has_dev = state in ("before-init", "after-init")
    inited = state == "after-init"
    nr = 64 if profile in ("final", "7.4") else 128
    if irq_type == CPU:
        if has_dev:
            return -errno.ENXIO
        if vcpu_id not in EXISTING or num > 1:
            return -errno.EINVAL
        return 0
    if irq_type == PPI:
        if not has_dev:
            return -errno.ENXIO
        if profile in ("final", "7.4") and not inited:
            return -errno.EBUSY  # 1a8685ed8cd1: vgic_lazy_init before every other check
        if vcpu_id not in EXISTING or num >= nr:
            return -errno.EINVAL
        if profile != "v2":
            # the mask gate: empty before INIT, {3} after
            return 0 if inited and num == SW else -errno.EINVAL
        # v2: no gate; the injection's own initialisation check
        return 0 if inited else -errno.EBUSY
    if irq_type == SPI:
        if not has_dev:
            return -errno.ENXIO
        if not inited:
            return -errno.EBUSY
        # 7.4: vgic_get_irq finds SPIs below nr_spis (32 by default); the vCPU field is not
        # looked at. PPI-only profiles have none.
        return 0 if profile == "7.4" and num < 32 else -errno.EINVAL
    return -errno.EINVAL


def build(profile, state, fails):
    kvm = gic5.Kvm(profile=profile)
    vm = kvm.create_vm()
    cpus = {i: vm.create_vcpu(i) for i in EXISTING}
    if state == "test-mode-only":
        assert vm.create_device(V5, uapi.KVM_CREATE_DEVICE_TEST) is None
    elif state != "no-device":
        dev = vm.create_device(V5)
        if state == "after-init":
            dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
        if state == "dead":
            with fails(errno.EBUSY):
                with cpus[0].run():
                    pass
    return vm, cpus


@pytest.mark.parametrize("irq_type", range(16))
@pytest.mark.parametrize("state", STATES)
def test_irq_line_order_sweep(profile, state, irq_type, fails, outcome):
    vm, _ = build(profile, state, fails)
    got, want = {}, {}
    for vcpu_id in VCPU_FIELDS:
        for num in IDS:
            word = uapi.irq_word(irq_type, vcpu_id, num)
            key = f"{word:#010x}"
            want[key] = expected(profile, state, irq_type, vcpu_id, num)
            got[key] = outcome(vm.irq_line, word, 1)
    assert got == want


@pytest.mark.parametrize("level", [0, 1])
def test_level_does_not_change_the_errno(profile, level, fails, outcome):
    # The order is decided before the level is looked at.
    for state in STATES:
        vm, _ = build(profile, state, fails)
        for irq_type in (CPU, SPI, PPI, 3):
            for vcpu_id, num in ((0, SW), (0, 64), (7, SW), (0, 2)):
                word = uapi.irq_word(irq_type, vcpu_id, num)
                assert outcome(vm.irq_line, word, level) == \
                    expected(profile, state, irq_type, vcpu_id, num), (state, hex(word))


# --- explicit cases the sweep also covers, spelled out ------------------------------------------

def test_cpu_lines_without_a_device(make_vm, fails):
    s = make_vm("final", [0, 300], device=False)
    for word in (uapi.irq_word(CPU, 0, uapi.KVM_ARM_IRQ_CPU_IRQ),
                 uapi.irq_word(CPU, 0, uapi.KVM_ARM_IRQ_CPU_FIQ),
                 uapi.irq_word(CPU, 300, uapi.KVM_ARM_IRQ_CPU_IRQ)):
        assert s.vm.irq_line(word, 1) is None
        assert s.vm.irq_line(word, 0) is None
    with fails(errno.EINVAL):
        s.vm.irq_line(uapi.irq_word(CPU, 0, 2), 1)
    with fails(errno.EINVAL):
        s.vm.irq_line(uapi.irq_word(CPU, 1, 0), 1)


@pytest.mark.parametrize("initialised", [False, True])
@pytest.mark.parametrize("vcpu_id, num", [(0, 0), (0, 1), (0, 2), (9, 0)])
def test_cpu_lines_with_a_device_enxio(make_vm, fails, initialised, vcpu_id, num):
    s = make_vm("final", 1, init=initialised)
    with fails(errno.ENXIO):
        s.vm.irq_line(uapi.irq_word(CPU, vcpu_id, num), 1)


@pytest.mark.parametrize("vcpu_id", [0, 5, 4095])
@pytest.mark.parametrize("num", [0, 3, 32, 0xFFFF])
def test_spi_words_ebusy_then_einval(kvm, fails, vcpu_id, num):
    # No range check and no vCPU lookup on the SPI path: only INIT decides (7.4: then the SPI
    # range, 32 SPIs by default).
    vm = kvm.create_vm()
    vm.create_vcpu(0)
    word = uapi.irq_word(SPI, vcpu_id, num)
    with fails(errno.ENXIO):
        vm.irq_line(word, 1)
    dev = vm.create_device(V5)
    with fails(errno.EBUSY):
        vm.irq_line(word, 1)
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    if kvm.profile == "7.4" and num < 32:
        assert vm.irq_line(word, 1) is None
        return
    with fails(errno.EINVAL):
        vm.irq_line(word, 1)


@pytest.mark.parametrize("profile_, code", [("final", errno.EBUSY), ("v3", errno.EINVAL),
                                            ("v2", errno.EBUSY)])
def test_ppi_before_init(make_vm, fails, sw_word, profile_, code):
    """kvm_vm_ioctl_irq_line before CTRL_INIT: final (mainline 7.2, 1a8685ed8cd1) calls
    vgic_lazy_init first: EBUSY; v3: the still-empty mask refuses it (EINVAL); v2 has no gate
    and kvm_vgic_inject_irq's vgic_lazy_init answers EBUSY."""
    s = make_vm(profile_, 1, init=False)
    with fails(code):
        s.vm.irq_line(sw_word(0), 1)
    assert s.vcpu.pending_ppis() == (0, 0)


def test_ppi_targets_the_vcpu_named_by_both_fields(make_vm, sw_word):
    s = make_vm("final", [0, 1, 256])
    assert s.vm.irq_line(sw_word(256), 1) is None
    assert s.by_id[256].pending_ppis() == (0x8, 0)
    assert s.by_id[0].pending_ppis() == (0, 0)
    assert s.by_id[1].pending_ppis() == (0, 0)


# --- the SW_PPI edge latch -------------------------------------------------------------------

def test_sw_ppi_rising_edge_latches(make_vm, profile, sw_word):
    s = make_vm(profile, 2)
    assert s.vm.irq_line(sw_word(0), 1) is None
    assert s.vcpus[0].pending_ppis() == (0x8, 0)
    assert s.vcpus[1].pending_ppis() == (0, 0)
    # Not a level: it is not active, and nothing else changed.
    assert s.vcpus[0].active_ppis() == (0, 0)
    assert s.vcpus[0].enabled_ppis() == (0, 0)


def test_sw_ppi_level_zero_ignored(make_vm, profile, sw_word):
    s = make_vm(profile, 1)
    assert s.vm.irq_line(sw_word(0), 0) is None
    assert s.vcpu.pending_ppis() == (0, 0)
    s.vm.irq_line(sw_word(0), 1)
    # Lowering an edge line does not take the latched edge back.
    assert s.vm.irq_line(sw_word(0), 0) is None
    assert s.vcpu.pending_ppis() == (0x8, 0)


@pytest.mark.parametrize("level", [1, 2, 0x80000000, 0xFFFFFFFF])
def test_sw_ppi_any_nonzero_level_asserts(make_vm, sw_word, level):
    s = make_vm("final", 1)
    assert s.vm.irq_line(sw_word(0), level) is None
    assert s.vcpu.pending_ppis() == (0x8, 0)


@pytest.mark.parametrize("profile_", ["v3", "final"])
@pytest.mark.parametrize("levels", [(1, 1), (1, 2), (1, 0, 1), (1, 1, 0)])
def test_sw_ppi_two_rising_edges_leave_one_pending(make_vm, sw_word, guest_ready, profile_,
                                                    levels):
    # The latch is one bit: the guest acknowledges exactly one interrupt.
    s = make_vm(profile_, 1)
    for level in levels:
        s.vm.irq_line(sw_word(0), level)
    assert s.vcpu.pending_ppis() == (0x8, 0)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() == 0x20000003
        cpu.cddi(0x20000003)
        cpu.cdeoi()
        assert cpu.cdia() is None
    # final's flush cleared the latch it moved to PENDR; v3's fold never clears it (the taken
    # edge is pending again at the next entry: tests/test_fidelity.py).
    assert s.vcpu.pending_ppis() == ((0x8, 0) if profile_ == "v3" else (0, 0))


# --- level lines (v2 lets userspace reach them) -------------------------------------------------

@pytest.mark.parametrize("num", [0, 5, 22, 63, 64, 127])
def test_v2_level_ppi_follows_the_line(make_vm, num):
    s = make_vm("v2", 1)
    word = uapi.irq_word(PPI, 0, num)
    bit = (1 << num % 64, 0) if num < 64 else (0, 1 << num % 64)
    assert s.vm.irq_line(word, 1) is None
    assert s.vcpu.pending_ppis() == bit
    assert s.vm.irq_line(word, 3) is None
    assert s.vcpu.pending_ppis() == bit
    assert s.vm.irq_line(word, 0) is None
    assert s.vcpu.pending_ppis() == (0, 0)


# --- Python-level misuse: refused before any state changes ---------------------------------------

@pytest.mark.parametrize("level", [-1, 2**32, 2**32 + 1, 2**64])
def test_level_outside_u32(make_vm, sw_word, level):
    s = make_vm("final", 1)
    with pytest.raises((OverflowError, ValueError)):  # Cython's C conversion
        s.vm.irq_line(sw_word(0), level)
    assert s.vcpu.pending_ppis() == (0, 0)


@pytest.mark.parametrize("word_delta", [2**32, -(2**32), 2**64])
def test_irq_word_outside_u32(make_vm, sw_word, word_delta):
    # SW_PPI's word plus a multiple of 2**32: truncating would inject SW_PPI.
    s = make_vm("final", 1)
    with pytest.raises((OverflowError, ValueError)):  # Cython's C conversion
        s.vm.irq_line(sw_word(0) + word_delta, 1)
    with pytest.raises((OverflowError, ValueError)):  # Cython's C conversion
        s.vm.irq_line(-1, 1)
    assert s.vcpu.pending_ppis() == (0, 0)


@pytest.mark.parametrize("irq, level", [
    ("0x02000003", 1), (None, 1), (0x02000003, "1"), (0x02000003, None), (b"\x03", 1),
    pytest.param(float(0x02000003), 1, id="float-irq"),      # never truncated to an int
    pytest.param(0x02000003, 1.0, id="float-level"),
])
def test_irq_line_wrong_types(make_vm, irq, level):
    s = make_vm("final", 1)
    with pytest.raises(TypeError, match="must be an int"):
        s.vm.irq_line(irq, level)
    assert s.vcpu.pending_ppis() == (0, 0)


# --- owner mismatch: silently dropped ---------------------------------------------------------

def test_v2_owned_timer_injection_dropped(make_vm, run_once):
    s = make_vm("v2", 1)
    run_once(s.vcpu)  # the vCPU's first run gives its timers their owner
    before = (s.vcpu.pending_ppis(), s.vcpu.active_ppis(), s.vcpu.enabled_ppis())
    for ppi in (uapi.GICV5_ARCH_PPI_CNTV, uapi.GICV5_ARCH_PPI_CNTP):
        assert s.vm.irq_line(uapi.irq_word(PPI, 0, ppi), 1) is None
    assert (s.vcpu.pending_ppis(), s.vcpu.active_ppis(), s.vcpu.enabled_ppis()) == before
    assert before[0] == (0, 0)


def test_v2_owned_timer_cannot_be_lowered_by_userspace(make_vm, run_once):
    s = make_vm("v2", 1)
    run_once(s.vcpu)
    s.vcpu.timer_line("vtimer", 1)
    assert s.vcpu.pending_ppis() == (1 << 27, 0)
    assert s.vm.irq_line(uapi.irq_word(PPI, 0, 27), 0) is None
    assert s.vcpu.pending_ppis() == (1 << 27, 0)


def test_v2_timer_ppi_unowned_before_first_run_is_injected(make_vm):
    # Contrast: before the first run the timer PPI has no owner, so the same word acts.
    s = make_vm("v2", 1)
    assert s.vm.irq_line(uapi.irq_word(PPI, 0, 27), 1) is None
    assert s.vcpu.pending_ppis() == (1 << 27, 0)


def test_v2_owned_pmu_injection_dropped(make_vm):
    # The PMU takes PPI 23 at PMU_V3_INIT, before any run.
    s = make_vm("v2", 1, pmu=[0])
    assert s.vm.irq_line(uapi.irq_word(PPI, 0, 23), 1) is None
    assert s.vcpu.pending_ppis() == (0, 0)
    # An unowned PPI on the same vCPU still acts.
    assert s.vm.irq_line(uapi.irq_word(PPI, 0, 22), 1) is None
    assert s.vcpu.pending_ppis() == (1 << 22, 0)


@pytest.mark.parametrize("profile_", ["v3", "final"])
@pytest.mark.parametrize("ppi", [23, 26, 27, 28, 30])
def test_gate_refuses_kernel_ppis(make_vm, fails, run_once, profile_, ppi):
    # Layer 1 (the mask) stops these before the owner check is ever reached.
    s = make_vm(profile_, 1, pmu=[0])
    run_once(s.vcpu)
    with fails(errno.EINVAL):
        s.vm.irq_line(uapi.irq_word(PPI, 0, ppi), 1)
