"""vCPU device attributes: the arch-timer PPIs and the PMU overflow PPI.

Covers docs/semantics.md section 7 and spec 8, 10.4, 10.5, 10.10: has/get/set of
KVM_ARM_VCPU_TIMER_CTRL and KVM_ARM_VCPU_PMU_V3_CTRL, in the kernel's check order, and the
other groups (ENXIO).

Rule kept: values travel as 4-byte native ints in the buffer, as in the kernel; each check
asserts the exact errno and, where a value is stored, reads it back through get_attr.
"""

import errno

import numpy as np
import pytest

import gic5
from gic5 import uapi

TIMER = uapi.KVM_ARM_VCPU_TIMER_CTRL
VTIMER = uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER
PTIMER = uapi.KVM_ARM_VCPU_TIMER_IRQ_PTIMER
HVTIMER = uapi.KVM_ARM_VCPU_TIMER_IRQ_HVTIMER
HPTIMER = uapi.KVM_ARM_VCPU_TIMER_IRQ_HPTIMER
PMU = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
PMU_IRQ = uapi.KVM_ARM_VCPU_PMU_V3_IRQ
PMU_INIT = uapi.KVM_ARM_VCPU_PMU_V3_INIT
V5 = uapi.KVM_DEV_TYPE_ARM_VGIC_V5

TIMER_ATTRS = (VTIMER, PTIMER, HVTIMER, HPTIMER)
LEGACY = {VTIMER: 27, PTIMER: 30, HVTIMER: 28, HPTIMER: 26}
ENCODED = {VTIMER: 0x2000001B, PTIMER: 0x2000001E, HVTIMER: 0x2000001C, HPTIMER: 0x2000001A}


# --- timer attributes ------------------------------------------------------------------------

@pytest.mark.parametrize("attr", TIMER_ATTRS)
def test_timer_has_attr(kvm, attr):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    assert vcpu.has_attr(TIMER, attr) is None
    vm.create_device(V5)
    assert vcpu.has_attr(TIMER, attr) is None


@pytest.mark.parametrize("attr", [4, 5, 16, 2**32, 2**64 - 1])
def test_timer_unknown_attr_enxio(make_vm, fails, mem, attr):
    s = make_vm("final", 1)
    with fails(errno.ENXIO):
        s.vcpu.has_attr(TIMER, attr)
    buf = mem.filled(4)
    with fails(errno.ENXIO):
        s.vcpu.get_attr(TIMER, attr, buf)
    assert buf == mem.filled(4)
    # get: the attribute is looked up before the pointer is touched
    with fails(errno.ENXIO):
        s.vcpu.get_attr(TIMER, attr, None)
    # set: a valid value is read first, then the attribute is looked up
    with fails(errno.ENXIO):
        mem.vcpu_set(s.vcpu, TIMER, attr, 0x2000001B)


def test_timer_attrs_before_a_v5_device(kvm, mem):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    assert {a: mem.vcpu_get(vcpu, TIMER, a) for a in TIMER_ATTRS} == LEGACY
    # Test mode creates nothing, so nothing is re-encoded.
    vm.create_device(V5, uapi.KVM_CREATE_DEVICE_TEST)
    assert {a: mem.vcpu_get(vcpu, TIMER, a) for a in TIMER_ATTRS} == LEGACY


@pytest.mark.parametrize("initialised", [False, True])
def test_timer_attrs_after_the_v5_device(kvm, mem, initialised):
    vm = kvm.create_vm()
    before = vm.create_vcpu(0)
    dev = vm.create_device(V5)
    after = vm.create_vcpu(1)
    if initialised:
        dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    for vcpu in (before, after):
        assert {a: mem.vcpu_get(vcpu, TIMER, a) for a in TIMER_ATTRS} == ENCODED


def test_timer_get_writes_exactly_four_bytes(make_vm, mem):
    s = make_vm("final", 1)
    buf = mem.filled(8)
    assert s.vcpu.get_attr(TIMER, VTIMER, buf) is None
    assert mem.read_u32(buf) == 0x2000001B
    assert bytes(buf[4:]) == b"\xff" * 4


@pytest.mark.parametrize("buf", [None, 0, bytearray(3), bytes(4)],
                         ids=["NULL", "zero", "short", "read-only"])
def test_timer_get_bad_pointer_efault(make_vm, fails, buf):
    s = make_vm("final", 1)
    with fails(errno.EFAULT):
        s.vcpu.get_attr(TIMER, VTIMER, buf)


def test_timer_get_into_numpy_and_array(make_vm):
    s = make_vm("final", 1)
    arr = np.zeros(1, dtype=np.uint32)
    assert s.vcpu.get_attr(TIMER, PTIMER, arr) is None
    assert int(arr[0]) == 0x2000001E


@pytest.mark.parametrize("attr", TIMER_ATTRS)
def test_timer_set_without_device_einval(kvm, fails, mem, attr):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    with fails(errno.EINVAL):
        mem.vcpu_set(vcpu, TIMER, attr, ENCODED[attr])
    # "no irqchip" comes before reading the buffer
    with fails(errno.EINVAL):
        vcpu.set_attr(TIMER, attr, None)
    assert mem.vcpu_get(vcpu, TIMER, attr) == LEGACY[attr]


@pytest.mark.parametrize("value", [27, 0x1B, 30, 0, 0x0000001B, 0x4000001B, 0x6000001B,
                                   0xA000001B, 0xE000001B, 0x2000FF1B, 0x20FFFFFF, 0xFFFFFFFF])
@pytest.mark.parametrize("attr", TIMER_ATTRS)
def test_timer_set_rejects_non_v5_ppi(make_vm, fails, mem, attr, value):
    # Only a PPI in v5 form (type field 1, id below the profile's PPI count) is accepted:
    # plain 27 is refused.
    s = make_vm("final", 1, init=False)
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpu, TIMER, attr, value)
    assert mem.vcpu_get(s.vcpu, TIMER, attr) == ENCODED[attr]


@pytest.mark.parametrize("profile_, value, code", [
    ("final", 0x2000003F, 0), ("final", 0x20000040, errno.EINVAL),
    ("v3", 0x20000040, 0), ("v3", 0x2000007F, 0), ("v3", 0x20000080, errno.EINVAL),
    ("v2", 0x2000007F, 0), ("v2", 0x20000080, errno.EINVAL),
])
def test_timer_set_ppi_range_follows_the_profile(make_vm, outcome, mem, profile_, value, code):
    s = make_vm(profile_, 1, init=False)
    assert outcome(mem.vcpu_set, s.vcpu, TIMER, VTIMER, value) == -code


@pytest.mark.parametrize("attr", TIMER_ATTRS)
@pytest.mark.parametrize("value", [0x2000001B, 0x2000001E, 0x2000001F, 0x20000000])
def test_timer_set_encoded_value_stored_vm_wide(make_vm, mem, attr, value):
    # The id itself is only checked at the first run; the value is VM-wide.
    s = make_vm("final", 2, init=False)
    assert mem.vcpu_set(s.vcpus[0], TIMER, attr, value) is None
    assert mem.vcpu_get(s.vcpus[0], TIMER, attr) == value
    assert mem.vcpu_get(s.vcpus[1], TIMER, attr) == value


def test_timer_set_reads_only_four_bytes(make_vm, mem):
    s = make_vm("final", 1)
    buf = mem.u32_bytes(0x2000001B) + b"\xff" * 4
    assert s.vcpu.set_attr(TIMER, VTIMER, buf) is None
    assert s.vcpu.set_attr(TIMER, PTIMER, np.array([0x2000001E], dtype=np.uint32)) is None
    assert mem.vcpu_get(s.vcpu, TIMER, PTIMER) == 0x2000001E


@pytest.mark.parametrize("buf", [None, 0, bytearray(3), b""], ids=["NULL", "zero", "short", "empty"])
def test_timer_set_bad_pointer_efault(make_vm, fails, buf):
    s = make_vm("final", 1)
    with fails(errno.EFAULT):
        s.vcpu.set_attr(TIMER, VTIMER, buf)


def test_timer_set_ebusy_after_the_first_run(make_vm, fails, mem, run_once):
    s = make_vm("final", 2)
    run_once(s.vcpus[1])  # any vCPU's successful first run freezes the VM's timer PPIs
    for attr in TIMER_ATTRS:
        # even the value already stored
        with fails(errno.EBUSY):
            mem.vcpu_set(s.vcpus[0], TIMER, attr, ENCODED[attr])
    # Order: the pointer and the value are checked before the freeze, the attr after.
    with fails(errno.EFAULT):
        s.vcpus[0].set_attr(TIMER, VTIMER, None)
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpus[0], TIMER, VTIMER, 27)
    with fails(errno.EBUSY):
        mem.vcpu_set(s.vcpus[0], TIMER, 9, 0x2000001B)
    assert {a: mem.vcpu_get(s.vcpus[0], TIMER, a) for a in TIMER_ATTRS} == ENCODED


def test_timer_value_check_comes_before_the_attr_check(make_vm, fails, mem):
    s = make_vm("final", 1)
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpu, TIMER, 9, 27)


def test_timer_set_on_no_device_vm_after_run_still_einval(make_vm, fails, mem, run_once):
    s = make_vm("final", 1, device=False)
    run_once(s.vcpu)
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpu, TIMER, VTIMER, 0x2000001B)


# --- PMU attributes --------------------------------------------------------------------------

@pytest.mark.parametrize("device", [False, True])
@pytest.mark.parametrize("attr", [PMU_IRQ, PMU_INIT])
def test_pmu_attrs_on_a_vcpu_without_pmu(make_vm, fails, mem, device, attr):
    s = make_vm("final", 1, device=device, init=False)
    with fails(errno.ENXIO):
        s.vcpu.has_attr(PMU, attr)
    # set: "no PMU feature" is the first check, before the buffer and the irqchip
    with fails(errno.ENODEV):
        mem.vcpu_set(s.vcpu, PMU, attr, 0x20000017)
    with fails(errno.ENODEV):
        s.vcpu.set_attr(PMU, attr, None)


@pytest.mark.parametrize("attr", [PMU_IRQ, PMU_INIT])
def test_pmu_get_on_a_vcpu_without_pmu(make_vm, fails, mem, attr):
    s = make_vm("final", 1)
    with fails(errno.ENODEV):
        s.vcpu.get_attr(PMU, attr, mem.filled(4))


def test_pmu_set_other_attr_on_a_vcpu_without_pmu(make_vm, fails, mem):
    # set: "no PMU feature" is checked before the attribute is looked at.
    s = make_vm("final", 1)
    with fails(errno.ENODEV):
        mem.vcpu_set(s.vcpu, PMU, 7, 0)


def test_pmu_get_other_attr_on_a_vcpu_without_pmu(make_vm, fails, mem):
    # semantics.md 7: the kernel's PMU getter has no case for attrs other than IRQ, so an
    # unknown attr is ENXIO even without the PMU feature (only IRQ and INIT answer ENODEV).
    s = make_vm("final", 1)
    with fails(errno.ENXIO):
        s.vcpu.get_attr(PMU, 7, mem.filled(4))
    with fails(errno.ENODEV):
        s.vcpu.get_attr(PMU, PMU_INIT, mem.filled(4))


def test_pmu_get_irq_without_device_einval_first(make_vm, fails, mem):
    # kvm_arm_pmu_v3_get_attr: no irqchip (EINVAL) is checked before the PMU feature.
    for pmu in ([], [0]):
        s = make_vm("final", 1, device=False, pmu=pmu)
        with fails(errno.EINVAL):
            s.vcpu.get_attr(PMU, PMU_IRQ, mem.filled(4))


@pytest.mark.parametrize("attr", [PMU_IRQ, PMU_INIT])
def test_pmu_has_attr_on_a_pmu_vcpu(make_vm, attr):
    s = make_vm("final", 1, pmu=[0], device=False)
    assert s.vcpu.has_attr(PMU, attr) is None


@pytest.mark.parametrize("attr", [2, 3, 4, 16, 2**64 - 1])
def test_pmu_other_attrs_enxio_on_a_pmu_vcpu(make_vm, fails, mem, attr):
    s = make_vm("final", 1, pmu=[0], init=False)
    with fails(errno.ENXIO):
        s.vcpu.has_attr(PMU, attr)
    with fails(errno.ENXIO):
        s.vcpu.get_attr(PMU, attr, mem.filled(4))
    with fails(errno.ENXIO):
        mem.vcpu_set(s.vcpu, PMU, attr, 0x20000017)


def test_pmu_irq_set_without_device_einval(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0], device=False)
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017)
    with fails(errno.EINVAL):
        s.vcpu.set_attr(PMU, PMU_IRQ, None)


@pytest.mark.parametrize("value", [23, 0x17, 0x20000018, 0x2000001B, 0x40000017, 0x60000017,
                                   0x60000020, 0xA0000017, 0])
def test_pmu_irq_only_the_v5_pmu_ppi(make_vm, fails, mem, value):
    s = make_vm("final", 1, pmu=[0], init=False)
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, value)
    # Still unset.
    with fails(errno.ENXIO):
        s.vcpu.get_attr(PMU, PMU_IRQ, mem.filled(4))
    assert mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017) is None
    assert mem.vcpu_get(s.vcpu, PMU, PMU_IRQ) == 0x20000017


@pytest.mark.parametrize("buf", [None, 0, bytearray(2)], ids=["NULL", "zero", "short"])
def test_pmu_irq_bad_pointer_efault(make_vm, fails, buf):
    s = make_vm("final", 1, pmu=[0], init=False)
    with fails(errno.EFAULT):
        s.vcpu.set_attr(PMU, PMU_IRQ, buf)


def test_pmu_irq_set_twice_ebusy(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0], init=False)
    assert mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017) is None
    with fails(errno.EBUSY):
        mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017)
    # the value check comes before "already set"
    with fails(errno.EINVAL):
        mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 23)


def test_pmu_irq_is_per_vcpu(make_vm, fails, mem):
    s = make_vm("final", 2, pmu=[0, 1], init=False)
    mem.vcpu_set(s.vcpus[0], PMU, PMU_IRQ, 0x20000017)
    with fails(errno.ENXIO):
        s.vcpus[1].get_attr(PMU, PMU_IRQ, mem.filled(4))
    assert mem.vcpu_set(s.vcpus[1], PMU, PMU_IRQ, 0x20000017) is None


def test_pmu_init_before_device_init_enodev(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0], init=False)
    with fails(errno.ENODEV):
        s.vcpu.set_attr(PMU, PMU_INIT)
    # The PMU is still not initialised: the IRQ can still be set.
    assert mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017) is None


def test_pmu_init_defaults_the_irq(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0], pmu_init=False)
    with fails(errno.ENXIO):
        s.vcpu.get_attr(PMU, PMU_IRQ, mem.filled(4))
    assert s.vcpu.set_attr(PMU, PMU_INIT) is None
    assert mem.vcpu_get(s.vcpu, PMU, PMU_IRQ) == 0x20000017


def test_pmu_init_with_irq_set_keeps_it(make_vm, mem):
    s = make_vm("final", 1, pmu=[0], init=False)
    mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017)
    s.dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    assert s.vcpu.set_attr(PMU, PMU_INIT) is None
    assert mem.vcpu_get(s.vcpu, PMU, PMU_IRQ) == 0x20000017


def test_pmu_after_init_ebusy(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0])
    with fails(errno.EBUSY):
        s.vcpu.set_attr(PMU, PMU_INIT)
    with fails(errno.EBUSY):
        mem.vcpu_set(s.vcpu, PMU, PMU_IRQ, 0x20000017)
    # "initialised" is checked before the pointer and before the attribute
    with fails(errno.EBUSY):
        s.vcpu.set_attr(PMU, PMU_IRQ, None)
    with fails(errno.EBUSY):
        mem.vcpu_set(s.vcpu, PMU, 9, 0)
    # get of INIT is not a readable attribute
    with fails(errno.ENXIO):
        s.vcpu.get_attr(PMU, PMU_INIT, mem.filled(4))


def test_pmu_init_without_device_marks_initialised(make_vm, fails, mem, run_once):
    s = make_vm("final", 1, pmu=[0], device=False)
    assert s.vcpu.set_attr(PMU, PMU_INIT) is None
    with fails(errno.EBUSY):
        s.vcpu.set_attr(PMU, PMU_INIT)
    run_once(s.vcpu)


@pytest.mark.parametrize("device", [False, True])
def test_uninitialised_pmu_vcpu_run_einval_vm_alive(make_vm, fails, sw_word, run_once, mem,
                                                    device):
    s = make_vm("final", 2, pmu=[0], pmu_init=False, device=device)
    for _ in range(2):
        with fails(errno.EINVAL):
            with s.vcpus[0].run():
                pytest.fail("entered the guest with an uninitialised PMU")
    # The VM is not dead: other calls work, another vCPU runs.
    if device:
        assert s.vm.irq_line(sw_word(1), 1) is None
        assert mem.userspace_ppis(s.dev) == (0x8, 0)
    run_once(s.vcpus[1])
    # Once initialised, the same vCPU runs.
    assert s.vcpus[0].set_attr(PMU, PMU_INIT) is None
    run_once(s.vcpus[0])


def test_pmu_line_takes_effect_at_pmu_init(make_vm):
    # The PMU owns PPI 23 from PMU_V3_INIT on; a level recorded before it takes effect then.
    s = make_vm("final", 1, pmu=[0], pmu_init=False)
    s.vcpu.pmu_line(1)
    assert s.vcpu.pending_ppis() == (0, 0)
    s.vcpu.set_attr(PMU, PMU_INIT)
    assert s.vcpu.pending_ppis() == (1 << 23, 0)
    s.vcpu.pmu_line(0)
    assert s.vcpu.pending_ppis() == (0, 0)


def test_pmu_line_on_a_vcpu_without_pmu_value_error(make_vm):
    s = make_vm("final", 1)
    with pytest.raises(ValueError, match="has no PMU"):
        s.vcpu.pmu_line(1)


def test_pmu_vcpu_attrs_on_every_profile(kvm, mem):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0, pmu=True)
    vm.create_device(V5).set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    assert vcpu.set_attr(PMU, PMU_INIT) is None
    assert mem.vcpu_get(vcpu, PMU, PMU_IRQ) == 0x20000017


# --- other groups ---------------------------------------------------------------------------

@pytest.mark.parametrize("group", [2, 3, 4, 5, 8, 16, 0xFFFFFFFF])
@pytest.mark.parametrize("pmu", [False, True])
def test_other_groups_enxio(make_vm, fails, mem, group, pmu):
    s = make_vm("final", 1, pmu=[0] if pmu else [])
    for attr in (0, 1, 2, 3):
        with fails(errno.ENXIO):
            s.vcpu.has_attr(group, attr)
        buf = mem.filled(4)
        with fails(errno.ENXIO):
            s.vcpu.get_attr(group, attr, buf)
        assert buf == mem.filled(4)
        with fails(errno.ENXIO):
            mem.vcpu_set(s.vcpu, group, attr, 0x2000001B)


@pytest.mark.parametrize("group, attr", [(2**32 + TIMER, VTIMER), (-1, 0), (TIMER, -1),
                                         (TIMER, 2**64)])
def test_vcpu_attr_arguments_outside_their_c_types(make_vm, mem, group, attr):
    s = make_vm("final", 1)
    with pytest.raises((OverflowError, ValueError), match="does not fit in a __u"):
        s.vcpu.has_attr(group, attr)
    with pytest.raises((OverflowError, ValueError), match="does not fit in a __u"):
        mem.vcpu_set(s.vcpu, group, attr, 0x2000001E)
    assert mem.vcpu_get(s.vcpu, TIMER, VTIMER) == 0x2000001B


@pytest.mark.parametrize("addr", [1, 0x1000, True])
def test_vcpu_attr_nonzero_int_addr_type_error(make_vm, addr):
    s = make_vm("final", 1)
    with pytest.raises(TypeError, match="never dereferences a raw address"):
        s.vcpu.get_attr(TIMER, VTIMER, addr)
    with pytest.raises(TypeError, match="never dereferences a raw address"):
        s.vcpu.set_attr(TIMER, VTIMER, addr)


def test_vcpu_attr_numpy_non_contiguous_type_error(make_vm):
    s = make_vm("final", 1)
    with pytest.raises(TypeError, match="C-contiguous"):
        s.vcpu.get_attr(TIMER, VTIMER, np.zeros(4, dtype=np.uint32)[::2])


def test_hv_timer_attrs_are_not_validated_at_run(make_vm, mem, run_once):
    # Only the vtimer and ptimer are checked at the first run (the EL2 timers need NV,
    # which V5 refuses): an unusual HVTIMER value does not stop the run.
    s = make_vm("final", 1)
    assert mem.vcpu_set(s.vcpu, TIMER, HVTIMER, 0x20000005) is None
    run_once(s.vcpu)


def test_vm_wide_timer_values_across_kvm_instances(mem):
    # "VM-wide" stops at the VM: another VM keeps its own value.
    a = gic5.Kvm().create_vm()
    b = gic5.Kvm().create_vm()
    va, vb = a.create_vcpu(0), b.create_vcpu(0)
    a.create_device(V5)
    b.create_device(V5)
    assert mem.vcpu_set(va, TIMER, VTIMER, 0x2000001F) is None
    assert mem.vcpu_get(vb, TIMER, VTIMER) == 0x2000001B
