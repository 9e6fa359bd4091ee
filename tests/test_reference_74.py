"""Self-tests of the reference model's "7.4" profile (tests/reference.py).

The expected values are the ones the kernel selftest asserts
(tools/testing/selftests/kvm/arm64/vgic_v5.c, gicv5-7.4 version: test_vgic_v5_addr_attrs,
test_vgic_v5_nr_irqs_attrs, test_vgic_v5_userspace_ppis_attrs, test_vgic_v5_cpu_sysreg_attrs,
test_vgic_v5_sparse_vcpu_ids, test_vgic_v5_ppis, test_vgic_v5_spis, test_kvm_device), plus
orderings and rules read in the kernel source (named per test). Imports only the reference.
"""

from __future__ import annotations

import errno
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import reference as ref  # noqa: E402
from reference import RefKvm, UndefinedInstruction  # noqa: E402

V5 = ref.KVM_DEV_TYPE_ARM_VGIC_V5
ADDR, NR_IRQS, CTRL, SYSREGS = ref.GRP_ADDR, ref.GRP_NR_IRQS, ref.GRP_CTRL, ref.GRP_CPU_SYSREGS
IRS = ref.ADDR_TYPE_IRS
IRS_GPA = 0x8000000  # GICV5_IRS_CONFIG_BASE_GPA
MAX_PHYS = 1 << 40   # the default ipa_bits
CR0 = ref.sysreg_attr(3, 1, 12, 0, 1)
CTLR_V3 = ref.sysreg_attr(3, 0, 12, 12, 4)  # ICC_CTLR_EL1, a GICv3 register
ENABLER0 = ref.sysreg_attr(3, 0, 12, 10, 6)
SACTIVER0 = ref.sysreg_attr(3, 0, 12, 13, 2)
SPENDR0 = ref.sysreg_attr(3, 0, 12, 13, 6)
PRIORITYR0 = ref.sysreg_attr(3, 0, 12, 14, 0)
APR = ref.sysreg_attr(3, 1, 12, 0, 0)
PCR = ref.sysreg_attr(3, 1, 12, 0, 2)
ICSR = ref.sysreg_attr(3, 0, 12, 10, 4)


def errno_of(fn, *args, **kw):
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    return info.value.errno


def u64(value=0):
    return bytearray(value.to_bytes(8, sys.byteorder))


def u32(value=0):
    return bytearray(value.to_bytes(4, sys.byteorder))


def val(buf):
    return int.from_bytes(bytes(buf), sys.byteorder)


def vm74(**host):
    return RefKvm("7.4", **host).create_vm()


def ready_vm(nvcpus=1, ids=None, irs=True, nr_spis=None):
    vm = vm74()
    dev = vm.create_device(V5)
    for i in (ids if ids is not None else range(nvcpus)):
        vm.create_vcpu(i)
    if nr_spis is not None:
        dev.set_attr(NR_IRQS, 0, u32(nr_spis))
    if irs:
        dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    dev.set_attr(CTRL, ref.CTRL_INIT)
    return vm, dev


# -- test_kvm_device ------------------------------------------------------------------------

def test_kvm_device():
    vm = vm74()
    vm.create_vcpu(0)
    assert errno_of(vm.create_device, 0, ref.KVM_CREATE_DEVICE_TEST) == errno.ENODEV
    assert vm.create_device(V5, ref.KVM_CREATE_DEVICE_TEST) is None
    vm.create_device(V5)
    assert errno_of(vm.create_device, V5) == errno.EEXIST


# -- test_vgic_v5_addr_attrs ----------------------------------------------------------------

def test_addr_attrs():
    vm = vm74()
    dev = vm.create_device(V5)
    dev.has_attr(ADDR, IRS)
    assert errno_of(dev.has_attr, ADDR, ref.M64) == errno.ENXIO
    buf = u64(0xbad)
    dev.get_attr(ADDR, IRS, buf)
    assert val(buf) == ref.M64
    assert errno_of(dev.set_attr, ADDR, IRS, u64(0x10000 // 0x10)) == errno.EINVAL
    assert errno_of(dev.set_attr, ADDR, IRS, u64(MAX_PHYS)) == errno.E2BIG
    assert errno_of(dev.set_attr, ADDR, IRS, u64(MAX_PHYS - 0x10000)) == errno.E2BIG
    dev.set_attr(ADDR, IRS, u64(0))
    buf = u64(0xbad)
    dev.get_attr(ADDR, IRS, buf)
    assert val(buf) == 0
    assert errno_of(dev.set_attr, ADDR, IRS, u64(0xE0000)) == errno.EEXIST


def test_addr_order_from_source():
    # vgic_check_iorange: EEXIST comes before the alignment/range checks; kvm_vgic_addr reads
    # the user value before looking at the attr; other types are ENXIO
    vm = vm74(ipa_bits=32)
    dev = vm.create_device(V5)
    assert errno_of(dev.set_attr, ADDR, IRS, None) == errno.EFAULT
    assert errno_of(dev.set_attr, ADDR, 2, None) == errno.EFAULT
    assert errno_of(dev.set_attr, ADDR, 2, u64(0)) == errno.ENXIO
    assert errno_of(dev.get_attr, ADDR, 2, None) == errno.ENXIO
    assert errno_of(dev.get_attr, ADDR, 5, None) == errno.EFAULT  # REDIST_REGION reads first
    assert errno_of(dev.get_attr, ADDR, IRS, None) == errno.EFAULT
    assert errno_of(dev.set_attr, ADDR, IRS, u64(ref.M64 & ~0xFFFF)) == errno.EINVAL  # wraps
    assert errno_of(dev.set_attr, ADDR, IRS, u64((1 << 32) - 0x20000 + 0x10000)) == errno.E2BIG
    dev.set_attr(ADDR, IRS, u64((1 << 32) - 0x20000))
    assert errno_of(dev.set_attr, ADDR, IRS, u64(0x1234)) == errno.EEXIST


def test_run_without_irs_base_is_enxio_and_kills_the_vm():
    vm, dev = ready_vm(irs=False)
    vcpu = vm.vcpus[0]
    assert errno_of(vcpu.run_enter) == errno.ENXIO
    assert errno_of(vcpu.run_enter) == errno.EIO
    assert errno_of(dev.has_attr, CTRL, ref.CTRL_INIT) == errno.EIO
    assert errno_of(vm.irq_line, (2 << 24) | 3, 1) == errno.EIO


def test_run_before_init_is_ebusy_first():
    vm = vm74()
    vm.create_device(V5)
    vcpu = vm.create_vcpu(0)
    assert errno_of(vcpu.run_enter) == errno.EBUSY  # vgic_v5_map_resources before ENXIO
    assert errno_of(vcpu.run_enter) == errno.EIO


# -- test_vgic_v5_nr_irqs_attrs -------------------------------------------------------------

def test_nr_irqs_attrs():
    vm = vm74()
    dev = vm.create_device(V5)
    dev.has_attr(NR_IRQS, 0)
    buf = u32(0xbad)
    dev.get_attr(NR_IRQS, 0, buf)
    assert val(buf) == 0 and vm.nr_spis == 0
    for bad in (31, 33, 1024 + 32):
        assert errno_of(dev.set_attr, NR_IRQS, 0, u32(bad)) == errno.EINVAL
    dev.set_attr(NR_IRQS, 0, u32(1024))
    dev.get_attr(NR_IRQS, 0, buf)
    assert val(buf) == 1024 and vm.nr_spis == 1024
    assert errno_of(dev.set_attr, NR_IRQS, 0, u32(32)) == errno.EBUSY
    assert errno_of(dev.set_attr, NR_IRQS, 0, u32(31)) == errno.EINVAL  # range before EBUSY
    vm.create_vcpu(0)
    dev.set_attr(CTRL, ref.CTRL_INIT)

    vm = vm74()
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    dev.set_attr(CTRL, ref.CTRL_INIT)
    buf = u32(0xbad)
    dev.get_attr(NR_IRQS, 0, buf)
    assert val(buf) == 32
    assert errno_of(dev.set_attr, NR_IRQS, 0, u32(64)) == errno.EBUSY
    assert errno_of(dev.set_attr, NR_IRQS, 0, None) == errno.EFAULT


def test_init_without_vcpus_is_enodev_and_keeps_the_default():
    # vgic_init applies the default before vgic_v5_init's ENODEV
    vm = vm74()
    dev = vm.create_device(V5)
    assert errno_of(dev.set_attr, CTRL, ref.CTRL_INIT) == errno.ENODEV
    assert vm.nr_spis == 32
    assert errno_of(dev.set_attr, NR_IRQS, 0, u32(64)) == errno.EBUSY
    vm.create_vcpu(0)
    dev.set_attr(CTRL, ref.CTRL_INIT)  # retryable


# -- test_vgic_v5_userspace_ppis_attrs ------------------------------------------------------

def test_userspace_ppis_attrs():
    vm = vm74()
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    dev.has_attr(CTRL, ref.CTRL_INIT)
    dev.has_attr(CTRL, ref.USERSPACE_PPIS)
    dev.set_attr(CTRL, ref.CTRL_INIT)
    buf = bytearray(16)
    buf[8:] = u64(0xbad)
    dev.get_attr(CTRL, ref.USERSPACE_PPIS, buf)
    assert val(buf[:8]) & (1 << 3) and val(buf[8:]) == 0
    assert errno_of(dev.set_attr, CTRL, ref.USERSPACE_PPIS, buf) == errno.ENXIO
    assert errno_of(dev.get_attr, CTRL, ref.USERSPACE_PPIS, None) == errno.EFAULT


# -- test_vgic_v5_cpu_sysreg_attrs ----------------------------------------------------------

def test_cpu_sysreg_attrs():
    vm = vm74()
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    dev.has_attr(SYSREGS, CR0)
    assert errno_of(dev.get_attr, SYSREGS, CR0, u64()) == errno.EBUSY
    assert errno_of(dev.set_attr, SYSREGS, CR0, u64()) == errno.EBUSY
    dev.set_attr(CTRL, ref.CTRL_INIT)
    assert len(ref.SYSREGS_V5) == 26
    for enc in ref.SYSREGS_V5:
        dev.has_attr(SYSREGS, enc)
        buf = u64(0xbad)
        dev.get_attr(SYSREGS, enc, buf)
        dev.set_attr(SYSREGS, enc, buf)
    assert errno_of(dev.has_attr, SYSREGS, CTLR_V3) == errno.ENXIO
    assert errno_of(dev.get_attr, SYSREGS, CTLR_V3, u64()) == errno.ENOENT
    bad_mpidr = CR0 | (1 << 32)
    assert errno_of(dev.has_attr, SYSREGS, bad_mpidr) == errno.EINVAL
    assert errno_of(dev.get_attr, SYSREGS, bad_mpidr, u64()) == errno.EINVAL
    assert errno_of(dev.get_attr, SYSREGS, CR0, None) == errno.EFAULT
    assert errno_of(dev.set_attr, SYSREGS, CR0, None) == errno.EFAULT


def test_cpu_sysreg_orders_from_source():
    vm, dev = ready_vm()
    # SET reads the buffer before the lookup; GET looks up first
    assert errno_of(dev.set_attr, SYSREGS, CTLR_V3, None) == errno.EFAULT
    assert errno_of(dev.get_attr, SYSREGS, CTLR_V3, None) == errno.ENOENT
    # bits 31:16 are ignored
    dev.get_attr(SYSREGS, CR0 | (0xABCD << 16), u64())
    # MPIDR before the INIT check
    vm2 = vm74()
    dev2 = vm2.create_device(V5)
    vm2.create_vcpu(0)
    assert errno_of(dev2.get_attr, SYSREGS, CR0 | (1 << 32), None) == errno.EINVAL
    assert errno_of(dev2.get_attr, SYSREGS, CR0, None) == errno.EBUSY
    # a vCPU inside run(): the vCPU locks fail
    cpu = vm.vcpus[0].run_enter()
    assert errno_of(dev.get_attr, SYSREGS, CR0, u64()) == errno.EBUSY
    vm.vcpus[0].run_exit()
    del cpu
    # after a run: reads work, writes EBUSY (before EFAULT)
    dev.get_attr(SYSREGS, CR0, u64())
    assert errno_of(dev.set_attr, SYSREGS, CR0, None) == errno.EBUSY


def test_cpu_sysreg_values():
    vm, dev = ready_vm()
    buf = u64()
    dev.get_attr(SYSREGS, CR0, buf)
    assert val(buf) == 0b110  # LINK | LINK_IDLE, EN clear
    dev.set_attr(SYSREGS, CR0, u64(ref.M64))
    dev.get_attr(SYSREGS, CR0, buf)
    assert val(buf) == 0b111
    dev.set_attr(SYSREGS, APR, u64(ref.M64))
    dev.get_attr(SYSREGS, APR, buf)
    assert val(buf) == ref.M32
    dev.set_attr(SYSREGS, PCR, u64(0xFF))
    dev.get_attr(SYSREGS, PCR, buf)
    assert val(buf) == 0x1F
    dev.set_attr(SYSREGS, ICSR, u64(ref.M64))
    dev.get_attr(SYSREGS, ICSR, buf)
    assert val(buf) == 0x0000FFFF0000F83F
    dev.set_attr(SYSREGS, PRIORITYR0, u64(ref.M64))
    dev.get_attr(SYSREGS, PRIORITYR0, buf)
    assert val(buf) == ref.PRIORITYR_MASK
    prio8 = ref.sysreg_attr(3, 0, 12, 15, 0)  # PRIORITYR8: ignored / 0
    dev.set_attr(SYSREGS, prio8, u64(ref.M64))
    dev.get_attr(SYSREGS, prio8, buf)
    assert val(buf) == 0
    enabler1 = ref.sysreg_attr(3, 0, 12, 10, 7)
    dev.set_attr(SYSREGS, enabler1, u64(ref.M64))
    dev.get_attr(SYSREGS, enabler1, buf)
    assert val(buf) == 0
    # SPENDR0: LEVEL PPIs line_level, SW_PPI latch; GET is irq_is_pending
    dev.set_attr(SYSREGS, SPENDR0, u64((1 << 3) | (1 << 23)))
    dev.get_attr(SYSREGS, SPENDR0, buf)
    assert val(buf) == (1 << 3) | (1 << 23)
    assert vm.vcpus[0].pending_ppis() == ((1 << 3) | (1 << 23), 0)
    dev.set_attr(SYSREGS, SPENDR0, u64(0))
    assert vm.vcpus[0].pending_ppis() == (0, 0)


def test_finalize_masks_restored_state_at_each_first_run():
    vm, dev = ready_vm(nvcpus=2)
    for v in vm.vcpus:
        dev.set_attr(SYSREGS, ref.mpidr_attr(v.vcpu_id) | ENABLER0, u64(ref.M64))
        dev.set_attr(SYSREGS, ref.mpidr_attr(v.vcpu_id) | SACTIVER0, u64(ref.M64))
        dev.set_attr(SYSREGS, ref.mpidr_attr(v.vcpu_id) | SPENDR0, u64(ref.M64))
    with vm.vcpus[1].run():  # vCPU 1 runs first: the mask comes from its owners
        pass
    mask, _ = vm.exposed_ppis()
    assert mask == (1 << 3) | (1 << 27) | (1 << 30)
    buf = u64()
    dev.get_attr(SYSREGS, ref.mpidr_attr(1) | ENABLER0, buf)
    assert val(buf) == mask
    dev.get_attr(SYSREGS, ref.mpidr_attr(1) | SACTIVER0, buf)
    assert val(buf) & ~mask == 0
    # vCPU 0 has not run yet: its raw state is still there
    dev.get_attr(SYSREGS, ref.mpidr_attr(0) | ENABLER0, buf)
    assert val(buf) == ref.M64
    with vm.vcpus[0].run():
        pass
    dev.get_attr(SYSREGS, ref.mpidr_attr(0) | ENABLER0, buf)
    assert val(buf) == mask
    dev.get_attr(SYSREGS, ref.mpidr_attr(0) | SPENDR0, buf)
    assert val(buf) & ~mask == 0


def test_save_restore_round_trip():
    src, sdev = ready_vm()
    with src.vcpus[0].run() as cpu:
        cpu.write_cr0(1)
        cpu.write_pcr(0x10)
        cpu.write_ppi_enabler(0, 1 << 3)
        cpu.write_ppi_priority(3, 4)
    src.irq_line((2 << 24) | 3, 1)
    saved = {}
    for enc in ref.SYSREGS_V5:
        buf = u64()
        sdev.get_attr(SYSREGS, enc, buf)
        saved[enc] = val(buf)
    dst, ddev = ready_vm()
    for enc, value in saved.items():
        ddev.set_attr(SYSREGS, enc, u64(value))
    for enc, value in saved.items():
        buf = u64()
        ddev.get_attr(SYSREGS, enc, buf)
        assert val(buf) == value, hex(enc)
    # before its first run the restored VM exposes nothing yet (the VM mask is built at
    # the first run), so its block check differs until then
    assert dst.vcpus[0].has_pending_irq() is False
    with src.vcpus[0].run(), dst.vcpus[0].run():
        pass
    assert dst.vcpus[0].has_pending_irq() == src.vcpus[0].has_pending_irq() is True
    with src.vcpus[0].run() as a, dst.vcpus[0].run() as b:
        assert a.read_ppi_enabler(0) == b.read_ppi_enabler(0) == 1 << 3
        assert a.read_ppi_priority(3) == b.read_ppi_priority(3) == 4
        assert a.cdia() == b.cdia() == ref.PPI_INTID | 3


# -- test_vgic_v5_sparse_vcpu_ids -----------------------------------------------------------

def test_sparse_vcpu_ids():
    vm, dev = ready_vm(ids=(17, 3))
    for v in vm.vcpus:
        with v.run() as cpu:
            assert cpu.read_iaffidr() == v.vcpu_id
    # the MPIDR of vCPU 17: Aff0 1, Aff1 1
    assert ref.mpidr_attr(17) == (1 << 32) | (1 << 40)
    dev.get_attr(SYSREGS, ref.mpidr_attr(17) | CR0, u64())
    assert errno_of(dev.get_attr, SYSREGS, ref.mpidr_attr(1) | CR0, u64()) == errno.EINVAL


@pytest.mark.parametrize("profile", ["v2", "v3", "final", "7.4"])
def test_iaffidr_all_profiles(profile):
    vm = RefKvm(profile).create_vm()
    vcpu = vm.create_vcpu(5)
    with vcpu.run() as cpu:
        with pytest.raises(UndefinedInstruction):
            cpu.read_iaffidr()
    vm = RefKvm(profile).create_vm()
    dev = vm.create_device(V5)
    vcpu = vm.create_vcpu(5)
    if profile == "7.4":
        dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    dev.set_attr(CTRL, ref.CTRL_INIT)
    with vcpu.run() as cpu:
        assert cpu.read_iaffidr() == 5


# -- test_vgic_v5_ppis / test_vgic_v5_spis --------------------------------------------------

def test_ppi_line_gate():
    vm, dev = ready_vm()
    user = vm.userspace_ppis()[0]
    for i in range(64):
        if not user >> i & 1:
            assert errno_of(vm.irq_line, (2 << 24) | i, 1) == errno.EINVAL
    assert errno_of(vm.irq_line, (2 << 24) | 64, 1) == errno.EINVAL
    vm.irq_line((2 << 24) | 3, 1)


def test_spis():
    vm, dev = ready_vm(nr_spis=32)
    assert errno_of(vm.irq_line, (1 << 24) | 32, 1) == errno.EINVAL
    vm.irq_line((1 << 24) | 0, 1)
    assert vm.spi_pending(0) and vm.spi_state(0) == (False, True)
    vm, dev = ready_vm(nr_spis=1024)
    vm.irq_line((1 << 24) | 1023, 1)
    assert vm.spi_pending(1023)
    assert errno_of(vm.irq_line, (1 << 24) | 1024, 1) == errno.EINVAL
    # an edge SPI lowered before the run stays pending
    vm, dev = ready_vm()
    vm.irq_line((1 << 24) | 1, 1)
    vm.irq_line((1 << 24) | 1, 0)
    assert vm.spi_pending(1)
    # vCPU fields of the word are ignored
    vm.irq_line((1 << 24) | (7 << 16) | 2, 1)
    assert vm.spi_pending(2)


def test_spi_order_from_source():
    vm = vm74()
    assert errno_of(vm.irq_line, (1 << 24) | 0, 1) == errno.ENXIO
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    assert errno_of(vm.irq_line, (1 << 24) | 5000, 1) == errno.EBUSY
    dev.set_attr(CTRL, ref.CTRL_INIT)
    assert errno_of(vm.irq_line, (1 << 24) | 5000, 1) == errno.EINVAL
    vm.irq_line((1 << 24) | 4, 0)  # edge, level 0: nothing
    assert vm.spi_state(4) == (False, False)
    with pytest.raises(ValueError):
        vm.spi_state(32)
    with pytest.raises(ValueError):
        vm.spi_pending(-1)
    with pytest.raises(TypeError):
        vm.spi_state(1.0)


@pytest.mark.parametrize("profile", ["v2", "v3", "final"])
def test_other_profiles_have_no_spis(profile):
    vm = RefKvm(profile).create_vm()
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    dev.set_attr(CTRL, ref.CTRL_INIT)
    assert vm.nr_spis == 0
    with pytest.raises(ValueError):
        vm.spi_state(0)
    assert errno_of(vm.irq_line, (1 << 24) | 0, 1) == errno.EINVAL
    for group in (ref.GRP_IRS_REGS, ref.GRP_IST, SYSREGS, ADDR, NR_IRQS):
        assert errno_of(dev.has_attr, group, 0) == errno.ENXIO


def test_irs_groups_are_modelled():
    # vgic_v5_has_attr: IRS_REGS -> vgic_v5_has_attr_regs, IST attr 0 -> 0 (the groups
    # themselves are checked in tests/test_reference_irs.py)
    vm, dev = ready_vm()
    dev.has_attr(ref.GRP_IRS_REGS, 0)
    dev.has_attr(ref.GRP_IST, 0)
    buf = u64(0xbad)
    dev.get_attr(ref.GRP_IRS_REGS, 0, buf)
    assert val(buf) == 0x1 | (5 << 2)  # IRS_IDR0: Non-secure, PA_RANGE 5
    assert errno_of(dev.get_attr, ref.GRP_IST, 0, None) == errno.EINVAL


# -- vCPU-count rules (vgic_v5_probe, kvm_vgic_create, kvm_arch_vcpu_precreate) --------------

def test_vcpu_limits_without_legacy():
    vm = vm74(max_vpes=16)
    assert errno_of(vm.create_vcpu, 16) == errno.EINVAL  # before any device
    vm.create_vcpu(15)
    vm.create_device(V5)
    assert errno_of(vm.create_vcpu, 16) == errno.EINVAL


def test_vcpu_limits_with_legacy():
    vm = vm74(max_vpes=16, gcie_legacy=True)
    vm.create_vcpu(16)
    assert errno_of(vm.create_device, V5) == errno.E2BIG
    assert vm.device is None
    assert errno_of(vm.create_vcpu, 17) == errno.EINVAL  # the lowered limit stays
    vm = vm74(max_vpes=4, gcie_legacy=True)
    for i in range(3):
        vm.create_vcpu(i)
    vm.create_device(V5)
    vm.create_vcpu(3)
    assert errno_of(vm.create_vcpu, 4) == errno.EINVAL
    # max_vpes above 512 is capped
    assert RefKvm("7.4", max_vpes=65536).max_gicv5_vcpus == 512


def test_no_lpi_domain():
    vm = vm74(lpi_domain=False)
    assert errno_of(vm.create_device, V5, ref.KVM_CREATE_DEVICE_TEST) == errno.ENODEV
    assert errno_of(vm.create_device, V5) == errno.ENODEV
    vm.create_vcpu(511)  # no vgic: KVM_MAX_VCPUS
    assert errno_of(vm.create_vcpu, 512) == errno.EINVAL


@pytest.mark.parametrize("profile", ref.PROFILES)
def test_host_input_validation(profile):
    for bad in (0, 1, 3, 1024 + 1, 131072):
        with pytest.raises(ValueError):
            RefKvm(profile, max_vpes=bad)
    with pytest.raises(TypeError):
        RefKvm(profile, max_vpes=2.0)
    for bad in (31, 53):
        with pytest.raises(ValueError):
            RefKvm(profile, ipa_bits=bad)
    with pytest.raises(TypeError):
        RefKvm(profile, ipa_bits="40")
    with pytest.raises(TypeError):
        RefKvm(profile, lpi_domain=1)
    with pytest.raises(TypeError):
        RefKvm(profile, gcie_legacy=None)
    RefKvm(profile, max_vpes=2, ipa_bits=52, lpi_domain=False, gcie_legacy=True)


def test_ppi_flow_like_the_selftest():
    vm, dev = ready_vm()
    vcpu = vm.vcpus[0]
    with vcpu.run() as cpu:
        cpu.write_cr0(1)
        cpu.write_pcr(0x1F)
        cpu.write_ppi_enabler(0, 1 << 3)
    for _ in range(2):
        vm.irq_line((2 << 24) | 3, 1)
        with vcpu.run() as cpu:
            assert cpu.wfi() is True
            intid = cpu.cdia()
            assert intid == ref.PPI_INTID | 3
            cpu.cddi(intid)
            cpu.cdeoi()
        vm.irq_line((2 << 24) | 3, 0)
