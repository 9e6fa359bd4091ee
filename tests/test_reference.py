"""Direct checks of the reference model (tests/reference.py) against the spec's key facts.

Rules this file keeps:
- Only the reference is exercised here: the oracle must be right on its own before the state
  machine trusts it to judge the library.
- Every expected value is a literal taken from the spec / docs/semantics.md (section given in
  the test), never something the reference computed.
"""

import errno
import pathlib
import sys

import pytest

# pytest runs with --import-mode=importlib: make the sibling module importable by name.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

PPI = 2  # KVM_ARM_IRQ_TYPE_PPI
SPI = 1


def irq(irq_type, vcpu_id, num):
    return (vcpu_id >> 8) << 28 | irq_type << 24 | (vcpu_id & 0xFF) << 16 | num


def errno_of(fn, *args, **kw):
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    return info.value.errno


def inited_vm(profile, *, vcpus=(0,), pmu=False, **host):
    vm = ref.RefKvm(profile, **host).create_vm()
    cpus = [vm.create_vcpu(i, pmu=pmu) for i in vcpus]
    dev = vm.create_device(16)
    if profile == "7.4":
        dev.set_attr(0, 6, (0x8000000).to_bytes(8, sys.byteorder))  # the IRS base
    dev.set_attr(4, 0)
    return vm, dev, cpus


def userspace_ppis_bytes(dev, size=16):
    buf = bytearray(b"\xaa" * size)
    dev.get_attr(4, 5, buf)
    return buf


def u64s(w0, w1):
    return w0.to_bytes(8, sys.byteorder) + w1.to_bytes(8, sys.byteorder)


# --- USERSPACE_PPIS (spec 5.1, 5.2; issue 5) ------------------------------------------------

def test_v2_userspace_ppis_bug_default_host():
    _, dev, _ = inited_vm("v2")
    assert userspace_ppis_bytes(dev) == u64s(0, 0)


def test_v2_userspace_ppis_bug_host_reporting_ppis_0_and_1():
    vm, dev, _ = inited_vm("v2", impl_ppis=(0x5C80000B, 0))
    assert userspace_ppis_bytes(dev) == u64s(0x3, 0)
    assert vm.userspace_ppis() == (0x3, 0)


@pytest.mark.parametrize("profile", ["v3", "final"])
def test_userspace_ppis_single_bit(profile):
    vm, dev, _ = inited_vm(profile)
    assert userspace_ppis_bytes(dev) == u64s(0x8, 0)
    assert vm.userspace_ppis() == (0x8, 0)


@pytest.mark.parametrize("profile", ref.PROFILES)
def test_userspace_ppis_before_init_and_faults(profile):
    vm = ref.RefKvm(profile).create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(16)
    assert userspace_ppis_bytes(dev) == u64s(0, 0)  # zero before INIT, copy succeeds
    dev.set_attr(4, 0)
    assert errno_of(dev.get_attr, 4, 5, None) == errno.EFAULT
    assert errno_of(dev.get_attr, 4, 5, bytes(16)) == errno.EFAULT  # read-only
    # an 8..15-byte buffer receives word 0, then the second put_user faults (sem 5)
    buf = bytearray(b"\xaa" * 12)
    assert errno_of(dev.get_attr, 4, 5, buf) == errno.EFAULT
    w0 = 0x3 & 0x5C800008 if profile == "v2" else 0x8
    assert buf == w0.to_bytes(8, sys.byteorder) + b"\xaa" * 4
    assert errno_of(dev.set_attr, 4, 5, bytearray(16)) == errno.ENXIO
    assert errno_of(dev.get_attr, 4, 0, bytearray(16)) == errno.ENXIO
    assert errno_of(dev.has_attr, 4, 3) == errno.ENXIO
    with pytest.raises(TypeError):
        dev.get_attr(4, 5, 0x1000)


# --- IRQ_LINE gate (spec 6.1, 10.12; issue 5) ----------------------------------------------

def test_irq_line_gate_per_profile():
    vm, _, _ = inited_vm("v2")
    vm.irq_line(irq(PPI, 0, 64), 1)  # v2: any id below 128
    assert errno_of(vm.irq_line, irq(PPI, 0, 128), 1) == errno.EINVAL
    vm, _, _ = inited_vm("v3")
    assert errno_of(vm.irq_line, irq(PPI, 0, 64), 1) == errno.EINVAL
    assert errno_of(vm.irq_line, irq(PPI, 0, 127), 1) == errno.EINVAL
    vm, _, _ = inited_vm("final")
    assert errno_of(vm.irq_line, irq(PPI, 0, 64), 1) == errno.EINVAL
    vm.irq_line(irq(PPI, 0, 3), 0xFFFFFFFF)  # any nonzero level asserts
    assert vm.vcpus[0].pending_ppis() == (0x8, 0)


@pytest.mark.parametrize("profile", ref.PROFILES)
def test_injection_before_init_and_spi(profile):
    vm = ref.RefKvm(profile).create_vm()
    vm.create_vcpu(0)
    assert errno_of(vm.irq_line, irq(PPI, 0, 3), 1) == errno.ENXIO  # no irqchip yet
    dev = vm.create_device(16)
    # kvm_vm_ioctl_irq_line: v3 fails the still-empty mask gate; v2 (no gate) reaches
    # kvm_vgic_inject_irq's vgic_lazy_init; final (mainline 7.2, 1a8685ed8cd1) calls
    # vgic_lazy_init before every other check.
    want = errno.EINVAL if profile == "v3" else errno.EBUSY
    assert errno_of(vm.irq_line, irq(PPI, 0, 3), 1) == want
    assert errno_of(vm.irq_line, irq(SPI, 0, 40), 1) == errno.EBUSY
    dev.set_attr(4, 0)
    assert errno_of(vm.irq_line, irq(SPI, 0, 40), 1) == errno.EINVAL
    assert errno_of(vm.irq_line, irq(PPI, 1, 3), 1) == errno.EINVAL  # no vCPU 1
    assert errno_of(vm.irq_line, irq(0, 0, 0), 1) == errno.ENXIO  # CPU line with irqchip


# --- exposure (spec 7.1; issue 4 and 5) ---------------------------------------------------

@pytest.mark.parametrize("profile", ["v3", "final"])
def test_exposure_after_first_run(profile):
    vm, _, (vcpu,) = inited_vm(profile)
    assert vm.exposed_ppis() == (0, 0)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 2**64 - 1)
        assert cpu.read_ppi_enabler(0) == 0x48000008
    assert vm.exposed_ppis() == (0x48000008, 0)
    assert vcpu.enabled_ppis() == (0x48000008, 0)


def test_exposure_with_initialised_pmu_on_vcpu0():
    vm, _, (vcpu,) = inited_vm("final", pmu=True)
    vcpu.set_attr(0, 1)  # PMU_V3_INIT: owner of PPI 23
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 2**64 - 1)
        assert cpu.read_ppi_enabler(0) == 0x48800008
    assert vm.exposed_ppis() == (0x48800008, 0)


def test_v2_exposure_is_implemented_minus_sw_ppi():
    vm, _, (vcpu,) = inited_vm("v2")
    with vcpu.run():
        pass
    assert vm.exposed_ppis() == (0x5C800000, 0)


def test_final_exposure_from_vcpu0_when_another_runs_first():
    # spec 7.1 hazard / Q5: vCPU 0's timer owners are not set yet, only SW_PPI is exposed
    vm, _, (_, v1) = inited_vm("final", vcpus=(0, 1))
    with v1.run():
        pass
    assert vm.exposed_ppis() == (0x8, 0)


# --- selftest round trip (issue 4) --------------------------------------------------------

def test_selftest_round_trip_final():
    vm, _, (vcpu,) = inited_vm("final")
    sw = irq(PPI, 0, 3)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << 3)
        cpu.write_cr0(True)
        cpu.write_pcr(0x1F)
        vm.irq_line(sw, 1)
        assert cpu.cdia() is None  # the injection reaches the guest after the next exit
        assert cpu.wfi() is True
        assert cpu.cdia() == 0x20000003
        cpu.cddi(0x20000003)
        cpu.cdeoi()
        vm.irq_line(sw, 0)
        vm.irq_line(sw, 1)
        assert cpu.wfi() is True
        assert cpu.cdia() == 0x20000003
        cpu.cddi(0x20000003)
        cpu.cdeoi()
        assert cpu.cdia() is None
        assert cpu.wfi() is False
        assert cpu.cdia() is None
    assert vcpu.pending_ppis() == (0, 0)
    assert vcpu.active_ppis() == (0, 0)


def test_v3_fold_redelivers_a_taken_edge():
    # v3 19/36 vgic_v5_fold_ppi_state ORs the exit PENDR into the latch and the shadow, and
    # nothing clears either: the edge raised after the ack is kept, and so is the taken one.
    vm, _, (vcpu,) = inited_vm("v3")
    sw = irq(PPI, 0, 3)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << 3)
        cpu.write_cr0(True)
        cpu.write_pcr(0x1F)
        vm.irq_line(sw, 1)
        assert cpu.wfi() is True
        assert cpu.cdia() == 0x20000003
        cpu.cddi(0x20000003)
        cpu.cdeoi()
        vm.irq_line(sw, 1)
        assert vcpu.pending_ppis() == (0x8, 0)
        assert cpu.wfi() is True
        assert cpu.cdia() == 0x20000003
        cpu.cddi(0x20000003)
        cpu.cdeoi()
        assert cpu.wfi() is True  # re-delivery: the shadow still holds it
    assert vcpu.pending_ppis() == (0x8, 0)


# --- wake-up compare (spec 7.6; issue 5) --------------------------------------------------

def _pending_at_priority(profile, prio, vpmr):
    """A pending, enabled, exposed PPI at ``prio`` with VPMR = ``vpmr``; returns wfi()."""
    vm, _, (vcpu,) = inited_vm(profile)
    # v2 hides SW_PPI but exposes (and lets userspace drive) the unowned level PPI 28
    ppi = 28 if profile == "v2" else 3
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << ppi)
        cpu.write_cr0(True)
        cpu.write_pcr(vpmr)
        vm.irq_line(irq(PPI, 0, ppi), 1)
        # after the injection: on v2 this write traps (an exit and an entry), which carries
        # the level into PENDR, the image v2's wake check reads
        cpu.write_ppi_priority(ppi, prio)
        return cpu.wfi()


@pytest.mark.parametrize("profile,wakes", [("v2", True), ("v3", True), ("final", False)])
def test_wake_at_priority_vpmr_plus_one(profile, wakes):
    assert _pending_at_priority(profile, prio=6, vpmr=5) is wakes


@pytest.mark.parametrize("profile", ref.PROFILES)
def test_wake_at_priority_vpmr(profile):
    assert _pending_at_priority(profile, prio=5, vpmr=5) is True


@pytest.mark.parametrize("profile,wakes", [("v2", True), ("v3", True), ("final", False)])
def test_wake_with_cpu_interface_disabled(profile, wakes):
    vm, _, (vcpu,) = inited_vm(profile)
    ppi = 28 if profile == "v2" else 3
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << ppi)
        cpu.write_pcr(31)
        vm.irq_line(irq(PPI, 0, ppi), 1)
        cpu.write_ppi_priority(ppi, 0)  # v2: trapped, carries the level into PENDR
        assert cpu.wfi() is wakes  # final checks VMCR.EN; v2/v3 do not


def test_v2_wake_compare_without_fast_path():
    # With a priority active the v2 fast path is off and the `<=` compare decides.
    vm, _, (vcpu,) = inited_vm("v2")
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << 28 | 1 << 26)
        cpu.write_cr0(True)
        cpu.write_pcr(31)
        vm.irq_line(irq(PPI, 0, 26), 1)
        cpu.write_ppi_priority(26, 20)  # trapped: the entry after it carries 26 into PENDR
        cpu.write_ppi_priority(28, 6)
        assert cpu.wfi() is True
        assert cpu.cdia() == 0x2000001A  # APR now has priority 20 active
        cpu.write_pcr(5)
        vm.irq_line(irq(PPI, 0, 28), 1)
        assert cpu.wfi() is False  # v2 19/36 reads the exit images: 28 came after the entry
        assert cpu.wfi() is True  # that WFI's entry carried it: 6 <= min(20, 5 + 1)
        cpu.write_pcr(4)
        assert cpu.wfi() is False  # 6 > min(20, 4 + 1)


# --- vCPU attributes and lifecycle (spec 8, 10) --------------------------------------------

@pytest.mark.parametrize("profile", ref.PROFILES)
def test_timer_attrs_and_dead_vm(profile):
    vm = ref.RefKvm(profile).create_vm()
    vcpu = vm.create_vcpu(0)
    buf = bytearray(4)
    got = []
    for attr in range(4):
        vcpu.get_attr(1, attr, buf)
        got.append(int.from_bytes(buf, sys.byteorder))
    assert got == [27, 30, 28, 26]
    vm.create_device(16)
    got = []
    for attr in range(4):
        vcpu.get_attr(1, attr, buf)
        got.append(int.from_bytes(buf, sys.byteorder))
    assert got == [0x2000001B, 0x2000001E, 0x2000001C, 0x2000001A]
    assert errno_of(vcpu.set_attr, 1, 0, (27).to_bytes(4, sys.byteorder)) == errno.EINVAL
    vcpu.set_attr(1, 0, (0x2000001B).to_bytes(4, sys.byteorder))
    # running before INIT kills the VM (spec 10.1)
    assert errno_of(vcpu.run().__enter__) == errno.EBUSY
    assert errno_of(vm.create_vcpu, 1) == errno.EIO
    assert errno_of(vcpu.get_attr, 1, 0, buf) == errno.EIO
    assert errno_of(vm.irq_line, irq(PPI, 0, 3), 1) == errno.EIO
    assert vcpu.pending_ppis() == (0, 0)  # inspection never raises


def test_create_errors():
    vm = ref.RefKvm("final", host_pmu=False).create_vm()
    assert errno_of(vm.create_vcpu, 512) == errno.EINVAL
    assert errno_of(vm.create_vcpu, 0, pmu=True) == errno.EINVAL  # host has no PMU
    vm.create_vcpu(0)
    with pytest.raises(FileExistsError):
        vm.create_vcpu(0)
    assert vm.create_device(16, 1) is None
    assert errno_of(vm.create_device, 15) == errno.ENODEV
    dev = vm.create_device(16)
    assert errno_of(vm.create_device, 16) == errno.EEXIST
    dev.set_attr(4, 0)
    assert errno_of(vm.create_vcpu, 1) == errno.EBUSY


def test_irq_line_batch_matches_single_calls():
    vm, _, _ = inited_vm("final")
    words = [irq(PPI, 0, 3), irq(PPI, 0, 64), irq(SPI, 0, 1), irq(PPI, 5, 3), irq(3, 0, 0)]
    assert vm.irq_line_batch(words, [1] * 5) == [
        0, -errno.EINVAL, -errno.EINVAL, -errno.EINVAL, -errno.EINVAL]
    assert vm.vcpus[0].pending_ppis() == (0x8, 0)


def test_vcpu_limit():
    # spec 10.11: as many vCPUs as max_vcpus (512) already -> EINVAL, before the id check
    vm = ref.RefKvm("final").create_vm()
    for i in range(512):
        vm.create_vcpu(i)
    assert errno_of(vm.create_vcpu, 511) == errno.EINVAL  # not EEXIST: the count comes first
    assert errno_of(vm.create_vcpu, 512) == errno.EINVAL


def test_timer_line_is_seen_live_by_the_guest():
    vm, _, (vcpu,) = inited_vm("final")
    with vcpu.run() as cpu:
        vcpu.timer_line("vtimer", 1)
        assert cpu.read_ppi_spendr(0) == 1 << 27  # DVI: hardware delivery, no exit needed
        assert vcpu.pending_ppis() == (1 << 27, 0)
        # gated on final: 27 is not userspace-drivable
        assert errno_of(vm.irq_line, irq(PPI, 0, 27), 0) == errno.EINVAL
    with pytest.raises(ValueError):
        vcpu.timer_line("hvtimer", 1)
