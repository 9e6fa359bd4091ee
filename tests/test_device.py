"""KVM_CREATE_DEVICE, KVM_CREATE_VCPU, the V5 device's attributes and the dead VM.

Covers docs/semantics.md sections 1 to 5 and spec 4.2 to 4.4, 5.3, 10.1, 10.6, 10.11:
create orders and errnos, CTRL_INIT, the full has/get/set matrix, USERSPACE_PPIS and the
user-pointer (buffer) rules, and what a dead VM still answers.

Rule kept: every failure is checked by its exact errno, every mask by its exact words, and
each buffer is pre-filled with 0xff so a test sees exactly which bytes a call wrote.
"""

import array
import errno

import numpy as np
import pytest

import gic5
import gic5core.errors
from gic5 import uapi

V5 = uapi.KVM_DEV_TYPE_ARM_VGIC_V5
TEST = uapi.KVM_CREATE_DEVICE_TEST
CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
INIT = uapi.KVM_DEV_ARM_VGIC_CTRL_INIT
UPPIS = uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS


def init(dev):
    return dev.set_attr(CTRL, INIT)


# --- errors are made in one place -------------------------------------------------------------

def test_check_is_reexported_from_the_core():
    # semantics 2: one place, gic5core.errors.check, re-exported as gic5.check.
    assert gic5.check is gic5core.errors.check


def test_eexist_arrives_as_file_exists_error():
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    with pytest.raises(FileExistsError) as info:
        vm.create_vcpu(0)
    assert info.value.errno == errno.EEXIST


# --- Host ---------------------------------------------------------------------------------

def test_host_default_impl_masks():
    # spec 3: bits 3, 23, 26, 27, 28, 30 with a PMU; without one no bit 23.
    assert gic5.Host().impl_ppis == (0x5C800008, 0)
    assert gic5.Host(pmu=True).impl_ppis == (0x5C800008, 0)
    assert gic5.Host(pmu=False).impl_ppis == (0x5C000008, 0)


@pytest.mark.parametrize("words", [(0, 0), (1, 2), (2**64 - 1, 2**64 - 1), (0x5C80000B, 0)])
def test_host_impl_override(words):
    assert gic5.Host(impl_ppis=words).impl_ppis == words


@pytest.mark.parametrize("words", [(2**64, 0), (0, 2**64), (-1, 0)])
def test_host_impl_override_outside_u64(words):
    with pytest.raises((OverflowError, ValueError), match="is not a 64-bit mask word"):
        gic5.Host(impl_ppis=words)


# --- KVM_CREATE_DEVICE ------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [TEST, TEST | 2, 0xFFFFFFFF])
def test_create_device_test_mode_creates_nothing(kvm, flags):
    vm = kvm.create_vm()
    assert vm.create_device(V5, flags) is None
    # Nothing was created: a real create still succeeds, and a second test-mode probe
    # still answers None (test mode stops before the EEXIST check).
    dev = vm.create_device(V5)
    assert dev is not None
    assert vm.create_device(V5, flags) is None


def test_create_device_other_flag_bits_ignored():
    # kvm_main only looks at the TEST bit.
    vm = gic5.Kvm().create_vm()
    assert vm.create_device(V5, 2) is not None


@pytest.mark.parametrize("dev_type", [0, 1, 5, 7, 10, 15, 17, 0xFFFFFFFF])
@pytest.mark.parametrize("flags", [0, TEST])
def test_create_device_unknown_type_enodev(kvm, dev_type, flags, fails):
    # Type 0 included, test mode included: the lookup fails before test mode answers.
    vm = kvm.create_vm()
    with fails(errno.ENODEV):
        vm.create_device(dev_type, flags)
    assert vm.create_device(V5) is not None


def test_create_device_type_outside_u32():
    vm = gic5.Kvm().create_vm()
    with pytest.raises((OverflowError, ValueError), match="does not fit in a __u32"):
        vm.create_device(2**32 + V5)
    with pytest.raises((OverflowError, ValueError), match="does not fit in a __u32"):
        vm.create_device(-1)
    # ... and nothing was created.
    assert vm.create_device(V5) is not None


def test_second_gic_eexist(kvm, fails):
    vm = kvm.create_vm()
    vm.create_device(V5)
    with fails(errno.EEXIST):
        vm.create_device(V5)
    # Also after INIT.
    vm2 = kvm.create_vm()
    vm2.create_vcpu(0)
    init(vm2.create_device(V5))
    with fails(errno.EEXIST):
        vm2.create_device(V5)


def test_create_device_after_a_vcpu_ran_ebusy(kvm, fails, run_once):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    run_once(vcpu)  # no in-kernel GIC: a plain run works
    with fails(errno.EBUSY):
        vm.create_device(V5)
    # Test mode still just reports that the type exists.
    assert vm.create_device(V5, TEST) is None


def test_create_device_after_one_of_several_vcpus_ran_ebusy(fails, run_once):
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    v1 = vm.create_vcpu(1)
    run_once(v1)
    with fails(errno.EBUSY):
        vm.create_device(V5)


def test_create_device_while_a_vcpu_is_running_ebusy(fails):
    # The try-lock of every vCPU mutex comes before everything else in kvm_vgic_create.
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0)
    with vcpu.run():
        with fails(errno.EBUSY):
            vm.create_device(V5)
        # The type lookup and test mode come before the vCPU try-lock.
        assert vm.create_device(V5, TEST) is None
        with fails(errno.ENODEV):
            vm.create_device(7)


def test_running_vcpu_ebusy_comes_before_eexist(make_vm, fails):
    s = make_vm("final", 1)
    with s.vcpu.run():
        with fails(errno.EBUSY):
            s.vm.create_device(V5)
    # Outside the run the same call meets "irqchip exists" before "a vCPU has run".
    with fails(errno.EEXIST):
        s.vm.create_device(V5)


def test_failed_device_create_leaves_vm_usable(fails):
    vm = gic5.Kvm().create_vm()
    with fails(errno.ENODEV):
        vm.create_device(7)
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    assert init(dev) is None


# --- creation orders -------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["vcpus-then-device", "device-then-vcpus", "interleaved"])
def test_both_creation_orders(kvm, order, mem, sw_word):
    vm = kvm.create_vm()
    if order == "vcpus-then-device":
        cpus = [vm.create_vcpu(0), vm.create_vcpu(1)]
        dev = vm.create_device(V5)
    elif order == "device-then-vcpus":
        dev = vm.create_device(V5)
        cpus = [vm.create_vcpu(0), vm.create_vcpu(1)]
    else:
        cpus = [vm.create_vcpu(0)]
        dev = vm.create_device(V5)
        cpus.append(vm.create_vcpu(1))
    assert init(dev) is None
    # Every vCPU, whenever it was created, has its private IRQs and v5 timer numbers.
    for cpu in cpus:
        assert mem.vcpu_get(cpu, uapi.KVM_ARM_VCPU_TIMER_CTRL,
                            uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER) == 0x2000001B
    # SW_PPI reaches the vCPU created last (v2 has no gate, v3/final allow bit 3) and
    # lands on its target only.
    assert vm.irq_line(sw_word(1), 1) is None
    assert cpus[1].pending_ppis() == (0x8, 0)
    assert cpus[0].pending_ppis() == (0, 0)


# --- KVM_CREATE_VCPU -----------------------------------------------------------------------

@pytest.mark.parametrize("vcpu_id", [512, 513, 4096, 2**32 - 1, 2**32])
def test_create_vcpu_id_too_large_einval(vcpu_id, fails):
    vm = gic5.Kvm().create_vm()
    with fails(errno.EINVAL):
        vm.create_vcpu(vcpu_id)


@pytest.mark.parametrize("call", [
    lambda vm: vm.create_vcpu(0.0),
    lambda vm: vm.create_vcpu("0"),
    lambda vm: vm.create_vcpu(None),
    lambda vm: vm.create_device(16.0),
    lambda vm: vm.create_device("16"),
    lambda vm: vm.create_device(16, 0.0),
], ids=["vcpu-float", "vcpu-str", "vcpu-none", "dev-float", "dev-str", "flags-float"])
def test_wrong_argument_types(call):
    vm = gic5.Kvm().create_vm()
    with pytest.raises(TypeError):
        call(vm)
    # Nothing was created.
    assert vm.create_vcpu(0) is not None
    assert vm.create_device(V5) is not None


@pytest.mark.parametrize("group, attr", [(4.0, 0), (4, 0.0), ("4", 0), (4, None)])
@pytest.mark.parametrize("op", ["has", "get", "set"])
def test_attr_wrong_types(group, attr, op, mem):
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    with pytest.raises(TypeError):
        if op == "has":
            dev.has_attr(group, attr)
        elif op == "get":
            dev.get_attr(group, attr, mem.filled(16))
        else:
            dev.set_attr(group, attr)
    assert mem.userspace_ppis(dev) == (0, 0)


def test_create_vcpu_negative_id_value_error():
    vm = gic5.Kvm().create_vm()
    with pytest.raises(ValueError, match="is negative"):
        vm.create_vcpu(-1)
    assert vm.create_vcpu(0) is not None


@pytest.mark.parametrize("vcpu_id", [0, 1, 255, 256, 511])
def test_create_vcpu_valid_ids(vcpu_id):
    vm = gic5.Kvm().create_vm()
    assert vm.create_vcpu(vcpu_id) is not None


def test_create_vcpu_duplicate_eexist(kvm, fails):
    vm = kvm.create_vm()
    vm.create_vcpu(7)
    with fails(errno.EEXIST):
        vm.create_vcpu(7)
    assert vm.create_vcpu(8) is not None


def test_513th_vcpu_einval_before_eexist(fails):
    # With all 512 ids in use the only ids left to try are duplicates: the count check
    # (EINVAL) comes before the duplicate check (EEXIST).
    vm = gic5.Kvm().create_vm()
    for i in range(512):
        vm.create_vcpu(i)
    with fails(errno.EINVAL):
        vm.create_vcpu(0)
    with fails(errno.EINVAL):
        vm.create_vcpu(511)
    with fails(errno.EINVAL):
        vm.create_vcpu(512)


def test_512_vcpus_then_device_and_init():
    # E2BIG cannot be reached by counting vCPUs (spec 10.11): 512 vCPUs fit.
    vm = gic5.Kvm().create_vm()
    for i in range(512):
        vm.create_vcpu(i)
    assert init(vm.create_device(V5)) is None


def test_create_vcpu_after_init_ebusy(kvm, fails):
    vm = kvm.create_vm()
    vm.create_vcpu(0)
    init(vm.create_device(V5))
    with fails(errno.EBUSY):
        vm.create_vcpu(1)
    # EBUSY comes before EEXIST; the id range check comes before EBUSY.
    with fails(errno.EBUSY):
        vm.create_vcpu(0)
    with fails(errno.EINVAL):
        vm.create_vcpu(512)


def test_create_vcpu_after_device_before_init_ok(kvm):
    vm = kvm.create_vm()
    vm.create_device(V5)
    assert vm.create_vcpu(0) is not None


def test_init_with_zero_vcpus_freezes_the_vm(kvm, fails, mem):
    """vgic_v5_init: v2 / v3 / final initialise a VM without vCPUs, which then can never get
    one (kvm_arch_vcpu_precreate: EBUSY); 7.4 refuses with ENODEV and stays open."""
    vm = kvm.create_vm()
    dev = vm.create_device(V5)
    if kvm.profile == "7.4":
        with fails(errno.ENODEV):
            init(dev)
        assert vm.create_vcpu(511) is not None
        return
    assert init(dev) is None
    for vid in (0, 1, 511):
        with fails(errno.EBUSY):
            vm.create_vcpu(vid)


def test_pmu_vcpu_on_host_without_pmu_einval(fails):
    vm = gic5.Kvm(host=gic5.Host(pmu=False)).create_vm()
    with fails(errno.EINVAL):
        vm.create_vcpu(0, pmu=True)
    # Nothing was created: the id is still free.
    assert vm.create_vcpu(0) is not None


def test_pmu_check_is_last(fails):
    # An unsupported feature is what KVM_ARM_VCPU_INIT answers, after KVM_CREATE_VCPU's
    # own checks: a duplicate id is still EEXIST.
    vm = gic5.Kvm(host=gic5.Host(pmu=False)).create_vm()
    vm.create_vcpu(0)
    with fails(errno.EEXIST):
        vm.create_vcpu(0, pmu=True)


# --- CTRL_INIT ------------------------------------------------------------------------------

def test_init_is_idempotent(kvm, mem):
    vm = kvm.create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    assert init(dev) is None
    first = mem.userspace_ppis(dev)
    assert init(dev) is None
    assert init(dev) is None
    assert mem.userspace_ppis(dev) == first


@pytest.mark.parametrize("addr", [None, 0, bytearray(8), bytes(8), bytearray()])
def test_init_does_not_read_addr(addr):
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    assert dev.set_attr(CTRL, INIT, addr) is None


@pytest.mark.parametrize("el2_ids", [[0], [1], [0, 1]])
def test_init_with_el2_vcpu_einval(kvm, el2_ids, fails, mem):
    vm = kvm.create_vm()
    for vid in (0, 1):
        vm.create_vcpu(vid, el2=vid in el2_ids)
    dev = vm.create_device(V5)
    with fails(errno.EINVAL):
        init(dev)
    with fails(errno.EINVAL):
        init(dev)
    # Still not initialised: the mask is still {0, 0} and vCPUs can still be created.
    assert mem.userspace_ppis(dev) == (0, 0)
    assert vm.create_vcpu(2) is not None


# --- the attribute matrix (spec 4.3, semantics 5) --------------------------------------------

GROUPS = range(17)
ATTRS = range(17)


NOT_MODELLED = "not modelled"  # a NotImplementedError (no group answers so any more)


def expected_cell(op, group, attr, profile="final", initialised=False):
    if group == CTRL and op == "has" and attr in (INIT, UPPIS):
        return 0
    if group == CTRL and op == "get" and attr == UPPIS:
        return 0
    if group == CTRL and op == "set" and attr == INIT:
        return 0
    if profile == "7.4":
        # vgic_v5_has_attr / _get_attr / _set_attr (2bc87b583a30), with the sweep's buffers:
        # 16 readable bytes, zeros for set.
        if group == uapi.KVM_DEV_ARM_VGIC_GRP_ADDR:
            # only the IRS base exists; SET 0 is accepted (0 is aligned and in range)
            return 0 if attr == uapi.KVM_VGIC_V5_ADDR_TYPE_IRS else -errno.ENXIO
        if group == uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS:
            return -errno.EINVAL if op == "set" else 0  # SET 0 is below 32 SPIs
        if group == uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS:
            # attrs 0..16 name vCPU 0 (MPIDR 0) and no register of the table
            if op == "has":
                return -errno.ENXIO
            return -errno.ENOENT if initialised else -errno.EBUSY
        if group == uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS:
            # vgic_v5_has_attr_regs: attr is the CONFIG_FRAME offset; 0, 4, .., 16 are IDR0..4,
            # the offsets between them misaligned (EINVAL). GET / SET: not initialised EBUSY,
            # then (vgic_v5_irs_attr_regs_access) no IRS base set ENXIO.
            if op == "has":
                return 0 if attr % 4 == 0 else -errno.EINVAL
            return -errno.ENXIO if initialised else -errno.EBUSY
        if group == uapi.KVM_DEV_ARM_VGIC_GRP_IST:
            # vgic_v5_has_attr / _get_attr / _set_attr: attr 0 only (ENXIO); then
            # vgic_v5_irs_save_ists / _restore_ists: not initialised EBUSY, then the 16-byte
            # buffer is too short to copy a struct kvm_vgic_v5_ist (EFAULT).
            if attr != 0:
                return -errno.ENXIO
            if op == "has":
                return 0
            return -errno.EFAULT if initialised else -errno.EBUSY
    return -errno.ENXIO


@pytest.mark.parametrize("initialised", [False, True], ids=["before-init", "after-init"])
@pytest.mark.parametrize("op", ["has", "get", "set"])
@pytest.mark.parametrize("group", GROUPS)
def test_attr_matrix(kvm, group, op, initialised, outcome, mem):
    vm = kvm.create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    if initialised:
        init(dev)
    got, want, untouched = {}, {}, {}

    def call(fn, *args):
        try:
            return outcome(fn, *args)
        except NotImplementedError:
            return NOT_MODELLED

    for attr in ATTRS:
        want[attr] = expected_cell(op, group, attr, kvm.profile, initialised)
        if op == "has":
            got[attr] = call(dev.has_attr, group, attr)
        elif op == "get":
            buf = mem.filled(16)
            got[attr] = call(dev.get_attr, group, attr, buf)
            if want[attr] != 0:
                # A refused get writes nothing.
                untouched[attr] = buf == mem.filled(16)
        else:
            got[attr] = call(dev.set_attr, group, attr, bytes(16))
    assert got == want
    assert all(untouched.values()), untouched


@pytest.mark.parametrize("op", ["has", "get", "set"])
@pytest.mark.parametrize("group, attr", [
    (CTRL, 2**32 + INIT),      # attr is a u64: no truncation to 32 bits
    (CTRL, 2**32 + UPPIS),
    (CTRL, 2**64 - 1),
    (CTRL, uapi.KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES),
    (2**32 - 1, INIT),
    (uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, 0),
    (uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0),
    (uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, 0),
])
def test_attr_far_cells_enxio(op, group, attr, fails, mem):
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    with fails(errno.ENXIO):
        if op == "has":
            dev.has_attr(group, attr)
        elif op == "get":
            dev.get_attr(group, attr, mem.filled(16))
        else:
            dev.set_attr(group, attr, bytes(16))
    # set on any of these cells must not have initialised the device.
    assert mem.userspace_ppis(dev) == (0, 0)


@pytest.mark.parametrize("op", ["has", "get", "set"])
@pytest.mark.parametrize("group, attr", [(2**32 + CTRL, INIT), (-1, INIT), (CTRL, 2**64),
                                         (CTRL, -1)])
def test_attr_group_attr_outside_their_c_types(op, group, attr, mem):
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    with pytest.raises((OverflowError, ValueError)):
        if op == "has":
            dev.has_attr(group, attr)
        elif op == "get":
            dev.get_attr(group, attr, mem.filled(16))
        else:
            dev.set_attr(group, attr, bytes(16))
    # In particular group 2**32 + 4 did not run CTRL_INIT.
    assert mem.userspace_ppis(dev) == (0, 0)


def test_enxio_comes_before_the_pointer_fault(fails):
    vm = gic5.Kvm().create_vm()
    dev = vm.create_device(V5)
    with fails(errno.ENXIO):
        dev.get_attr(CTRL, INIT, None)
    with fails(errno.ENXIO):
        dev.get_attr(CTRL, 7, None)
    with fails(errno.ENXIO):
        dev.set_attr(CTRL, UPPIS, None)
    with fails(errno.ENXIO):
        dev.get_attr(0, 0, None)


# --- USERSPACE_PPIS --------------------------------------------------------------------------

def test_userspace_ppis_before_init_zero(kvm, mem):
    vm = kvm.create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    # Both words are written (over the 0xff fill) and the copy succeeds.
    assert mem.userspace_ppis(dev) == (0, 0)
    assert vm.userspace_ppis() == (0, 0)


def test_userspace_ppis_after_init_final(make_vm, mem):
    s = make_vm("final", 2)
    buf = mem.filled(16)
    assert s.dev.get_attr(CTRL, UPPIS, buf) is None
    # Word 1 is overwritten with a literal 0 (no storage for PPIs 64..127 on final).
    assert mem.u64s(buf) == (0x8, 0)
    assert bytes(buf[8:]) == bytes(8)
    assert s.vm.userspace_ppis() == (0x8, 0)


def test_userspace_ppis_is_per_vm_and_fixed(make_vm, mem, run_once):
    s = make_vm("final", 2)
    run_once(s.vcpus[0])
    run_once(s.vcpus[1])
    assert mem.userspace_ppis(s.dev) == (0x8, 0)
    other = make_vm("final", 1, init=False)
    assert mem.userspace_ppis(other.dev) == (0, 0)


@pytest.mark.parametrize("impl, want", [
    ((0x5C800008, 0), (0x8, 0)),
    ((0x5C000008, 0), (0x8, 0)),
    ((0x8, 0), (0x8, 0)),
    ((0x5C800000, 0), (0, 0)),            # SW_PPI not implemented: nothing is drivable
    ((0xFFFFFFFFFFFFFFF7, 2**64 - 1), (0, 0)),
    ((2**64 - 1, 2**64 - 1), (0x8, 0)),   # word 1 of the host is ignored on a 64-PPI profile
    ((0, 0), (0, 0)),
])
def test_userspace_ppis_impl_intersection(impl, want, make_vm, mem, fails, sw_word):
    s = make_vm("final", 1, host=gic5.Host(impl_ppis=impl))
    assert mem.userspace_ppis(s.dev) == want
    assert s.vm.userspace_ppis() == want
    # The mask is the gate of KVM_IRQ_LINE: without bit 3, SW_PPI is refused.
    if want == (0, 0):
        with fails(errno.EINVAL):
            s.vm.irq_line(sw_word(0), 1)
    else:
        assert s.vm.irq_line(sw_word(0), 1) is None


def test_set_userspace_ppis_enxio(make_vm, fails, mem):
    s = make_vm("final", 1)
    with fails(errno.ENXIO):
        s.dev.set_attr(CTRL, UPPIS, mem.filled(16))
    assert mem.userspace_ppis(s.dev) == (0x8, 0)


# --- the user pointer -----------------------------------------------------------------------

@pytest.mark.parametrize("initialised", [False, True])
@pytest.mark.parametrize("addr", [None, 0])
def test_userspace_ppis_null_efault(make_vm, fails, addr, initialised):
    s = make_vm("final", 1, init=initialised)
    with fails(errno.EFAULT):
        s.dev.get_attr(CTRL, UPPIS, addr)


@pytest.mark.parametrize("size", [8, 9, 15])
def test_userspace_ppis_short_buffer_gets_word0_then_efault(make_vm, fails, mem, size):
    s = make_vm("final", 1)
    buf = mem.filled(size)
    with fails(errno.EFAULT):
        s.dev.get_attr(CTRL, UPPIS, buf)
    # The first put_user fitted and is visible; the second faulted and wrote nothing.
    assert mem.u64s(buf[:8]) == (0x8,)
    assert bytes(buf[8:]) == b"\xff" * (size - 8)


@pytest.mark.parametrize("size", [0, 1, 7])
def test_userspace_ppis_buffer_below_one_word_efault_nothing_written(make_vm, fails, mem, size):
    s = make_vm("final", 1)
    buf = mem.filled(size)
    with fails(errno.EFAULT):
        s.dev.get_attr(CTRL, UPPIS, buf)
    assert buf == mem.filled(size)


def test_userspace_ppis_longer_buffer_only_16_bytes_written(make_vm, mem):
    s = make_vm("final", 1)
    buf = mem.filled(24)
    assert s.dev.get_attr(CTRL, UPPIS, buf) is None
    assert mem.u64s(buf[:16]) == (0x8, 0)
    assert bytes(buf[16:]) == b"\xff" * 8


def readonly_buffers():
    ro_np = np.full(2, 0xFF, dtype=np.uint64)
    ro_np.flags.writeable = False
    return [
        pytest.param(lambda: bytes(16), id="bytes"),
        pytest.param(lambda: memoryview(bytearray(b"\xff" * 16)).toreadonly(), id="ro-memoryview"),
        pytest.param(lambda: ro_np, id="ro-numpy"),
    ]


@pytest.mark.parametrize("make_buf", readonly_buffers())
def test_get_into_readonly_buffer_efault(make_vm, fails, make_buf, mem):
    s = make_vm("final", 1)
    buf = make_buf()
    before = bytes(memoryview(buf).cast("B"))
    with fails(errno.EFAULT):
        s.dev.get_attr(CTRL, UPPIS, buf)
    assert bytes(memoryview(buf).cast("B")) == before


@pytest.mark.parametrize("make_buf", readonly_buffers())
def test_set_from_readonly_buffer_fine(make_buf):
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(V5)
    assert dev.set_attr(CTRL, INIT, make_buf()) is None


@pytest.mark.parametrize("addr", [1, 0x1000, -1, 2**64 - 1, True])
@pytest.mark.parametrize("op", ["get", "set"])
def test_nonzero_int_addr_type_error(make_vm, addr, op, mem):
    # gic5 never dereferences a raw address; True is an int too.
    s = make_vm("final", 1, init=False)
    with pytest.raises(TypeError, match="never dereferences a raw address"):
        if op == "get":
            s.dev.get_attr(CTRL, UPPIS, addr)
        else:
            s.dev.set_attr(CTRL, INIT, addr)
    # The set did not initialise the device.
    assert mem.userspace_ppis(s.dev) == (0, 0)


@pytest.mark.parametrize("addr", ["0x1000", 1.0, [0] * 16, object()])
def test_non_buffer_addr_type_error(make_vm, addr):
    s = make_vm("final", 1)
    with pytest.raises(TypeError, match="addr must be None, 0 or"):
        s.dev.get_attr(CTRL, UPPIS, addr)


@pytest.mark.parametrize("make_buf", [
    pytest.param(lambda: np.zeros(4, dtype=np.uint64)[::2], id="strided"),
    pytest.param(lambda: np.zeros((2, 2), dtype=np.uint64, order="F"), id="fortran"),
    pytest.param(lambda: np.zeros((4, 4), dtype=np.uint8)[:, :2], id="2d-slice"),
    pytest.param(lambda: memoryview(bytearray(32))[::2], id="memoryview-step"),
])
def test_non_contiguous_buffer_type_error(make_vm, make_buf):
    s = make_vm("final", 1)
    buf = make_buf()
    with pytest.raises(TypeError, match="C-contiguous"):
        s.dev.get_attr(CTRL, UPPIS, buf)
    # Nothing was written through the view.
    assert not np.asarray(buf).any()


@pytest.mark.parametrize("make_buf", [
    pytest.param(lambda: bytearray(b"\xff" * 16), id="bytearray"),
    pytest.param(lambda: memoryview(bytearray(b"\xff" * 16)), id="memoryview"),
    pytest.param(lambda: memoryview(bytearray(b"\xff" * 16)).cast("Q"), id="memoryview-Q"),
    pytest.param(lambda: np.full(2, 2**64 - 1, dtype=np.uint64), id="np-uint64"),
    pytest.param(lambda: np.full(16, 0xFF, dtype=np.uint8), id="np-uint8"),
    pytest.param(lambda: np.full(4, -1, dtype=np.int32), id="np-int32"),
    pytest.param(lambda: np.full(2, -1.0, dtype=np.float64), id="np-float64"),
    pytest.param(lambda: np.full((2, 2), 0xFFFFFFFF, dtype=np.uint32), id="np-2d"),
    pytest.param(lambda: array.array("Q", [2**64 - 1, 2**64 - 1]), id="array-Q"),
    pytest.param(lambda: array.array("B", b"\xff" * 16), id="array-B"),
])
def test_buffer_kinds_receive_raw_native_u64s(make_vm, make_buf, mem):
    # The dtype is ignored: the buffer is raw bytes receiving native-endian u64s.
    s = make_vm("final", 1)
    buf = make_buf()
    assert s.dev.get_attr(CTRL, UPPIS, buf) is None
    assert mem.u64s(buf) == (0x8, 0)


def test_numpy_uint64_reads_as_words(make_vm):
    s = make_vm("final", 1)
    arr = np.full(2, 7, dtype=np.uint64)
    s.dev.get_attr(CTRL, UPPIS, arr)
    assert arr.tolist() == [0x8, 0]


# --- the dead VM (spec 10.1) -----------------------------------------------------------------

@pytest.fixture
def dead(kvm, fails):
    """A VM killed by running a vCPU before CTRL_INIT (the failing run answers EBUSY)."""
    vm = kvm.create_vm()
    v0 = vm.create_vcpu(0)
    v1 = vm.create_vcpu(1, pmu=True)
    dev = vm.create_device(V5)
    with fails(errno.EBUSY):
        with v0.run():
            pytest.fail("entered the guest of an uninitialised VM")
    return vm, dev, v0, v1


def test_dead_vm_calls_eio(dead, fails, mem, sw_word):
    vm, dev, v0, v1 = dead
    calls = {
        "create_vcpu": lambda: vm.create_vcpu(2),
        "create_vcpu-dup": lambda: vm.create_vcpu(0),
        "create_vcpu-bad-id": lambda: vm.create_vcpu(512),
        "create_device": lambda: vm.create_device(V5),
        "create_device-test": lambda: vm.create_device(V5, TEST),
        "create_device-bad-type": lambda: vm.create_device(3),
        "irq_line-sw": lambda: vm.irq_line(sw_word(0), 1),
        "irq_line-cpu": lambda: vm.irq_line(0, 1),
        "irq_line-type-15": lambda: vm.irq_line(0x0F000000, 0),
        "dev.has_attr": lambda: dev.has_attr(CTRL, INIT),
        "dev.has_attr-bad": lambda: dev.has_attr(99, 99),
        "dev.get_attr": lambda: dev.get_attr(CTRL, UPPIS, mem.filled(16)),
        "dev.set_attr-init": lambda: dev.set_attr(CTRL, INIT),
        "v0.run": lambda: v0.run().__enter__(),
        "v1.run": lambda: v1.run().__enter__(),
        "vcpu.has_attr": lambda: v0.has_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, 0),
        "vcpu.get_attr": lambda: v0.get_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, 0, mem.filled(4)),
        "vcpu.set_attr": lambda: mem.vcpu_set(v0, uapi.KVM_ARM_VCPU_TIMER_CTRL, 0, 0x2000001B),
        "pmu.set_attr-init": lambda: v1.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL,
                                                 uapi.KVM_ARM_VCPU_PMU_V3_INIT),
        "vcpu.has_attr-bad": lambda: v0.has_attr(9, 9),
    }
    got = {}
    for name, call in calls.items():
        try:
            call()
            got[name] = "ok"
        except OSError as exc:
            got[name] = errno.errorcode.get(exc.errno, exc.errno)
    assert got == {name: "EIO" for name in calls}


def test_dead_vm_inspection_still_answers(dead):
    vm, dev, v0, v1 = dead
    for cpu in (v0, v1):
        assert cpu.pending_ppis() == (0, 0)
        assert cpu.active_ppis() == (0, 0)
        assert cpu.enabled_ppis() == (0, 0)
        assert cpu.has_pending_irq() is False
    assert vm.exposed_ppis() == (0, 0)
    assert vm.userspace_ppis() == (0, 0)


def test_dead_vm_kernel_lines_recorded_without_effect(dead):
    vm, dev, v0, v1 = dead
    assert v0.timer_line("vtimer", 1) is None
    assert v1.pmu_line(1) is None
    assert v0.pending_ppis() == (0, 0)
    assert v1.pending_ppis() == (0, 0)


def test_dead_vm_other_vms_unaffected(dead, kvm, mem):
    other = kvm.create_vm()
    other.create_vcpu(0)
    dev = other.create_device(V5)
    assert init(dev) is None
    assert mem.userspace_ppis(dev) == other.userspace_ppis()
