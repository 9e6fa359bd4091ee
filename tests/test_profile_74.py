"""Profile "7.4": the V5 device of branch kvm-arm64/gicv5-7.4 (the IRS series, kvmarm/next).

Each test states the kernel's answer and names, in its docstring, the kernel function whose
rule it checks (sources: analogdevicesinc/linux at the commits docs/notes/7.4-*.md list;
the spec's sections 1.3-1.5 of ../shared/spec/gicv5-kvm-7.4.md). Values the selftest
tools/testing/selftests/kvm/arm64/vgic_v5.c asserts are used where it has them.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

import gic5
from gic5 import uapi

P = "7.4"
IRS_GPA = 0x8000000  # the selftest's GICV5_IRS_CONFIG_BASE_GPA
GRP_ADDR = uapi.KVM_DEV_ARM_VGIC_GRP_ADDR
GRP_NR = uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS
GRP_CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
GRP_SYS = uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS
IRS = uapi.KVM_VGIC_V5_ADDR_TYPE_IRS
INIT = uapi.KVM_DEV_ARM_VGIC_CTRL_INIT
SW = uapi.GICV5_ARCH_PPI_SW_PPI
SW_BIT = 1 << SW


def u64(v):
    return np.array([v], dtype=np.uint64)


def u32(v):
    return np.array([v], dtype=np.uint32)


def get64(dev, group, attr):
    b = np.zeros(1, dtype=np.uint64)
    dev.get_attr(group, attr, b)
    return int(b[0])


def get32(dev, group, attr):
    b = np.zeros(1, dtype=np.uint32)
    dev.get_attr(group, attr, b)
    return int(b[0])


def sysreg(vcpu_id, reg):
    return uapi.cpu_sysreg_attr(vcpu_id, reg)


def err(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return 0


def vm74(vcpus=(0,), *, host=None, device=True, irs=IRS_GPA, init=True, pmu=()):
    vm = gic5.Kvm(host=host, profile=P).create_vm()
    cpus = [vm.create_vcpu(i, pmu=i in pmu) for i in vcpus]
    dev = None
    if device:
        dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
        if irs is not None:
            dev.set_attr(GRP_ADDR, IRS, u64(irs))
        if init:
            dev.set_attr(GRP_CTRL, INIT)
            for i, c in zip(vcpus, cpus, strict=True):
                if i in pmu:
                    c.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
    return vm, dev, cpus


# --- the profile -------------------------------------------------------------------------------

def test_profile_listed_and_final_still_default():
    """7.4 is a fourth profile (gic5.PROFILES, series order); final stays the default."""
    assert gic5.PROFILES == ("v2", "v3", "final", "7.4")
    assert gic5.Kvm().profile == "final"
    assert gic5.Kvm(profile=P).create_vm().nr_ppis == uapi.VGIC_V5_NR_PRIVATE_IRQS


# --- GRP_ADDR / KVM_VGIC_V5_ADDR_TYPE_IRS -------------------------------------------------------

def test_addr_rules_as_the_selftest():
    """kvm_vgic_addr / vgic_check_iorange (selftest test_vgic_v5_addr_attrs): GET before SET
    is VGIC_ADDR_UNDEF; not 64 KiB aligned EINVAL; at or beyond the IPA size E2BIG, also a
    region that only half fits; 0 is accepted; a second SET EEXIST."""
    vm, dev, _ = vm74(irs=None, init=False)
    dev.has_attr(GRP_ADDR, IRS)
    assert get64(dev, GRP_ADDR, IRS) == uapi.VGIC_ADDR_UNDEF
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(0x8001000)) == "EINVAL"
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(1 << 40)) == "E2BIG"
    assert err(dev.set_attr, GRP_ADDR, IRS, u64((1 << 40) - 0x10000)) == "E2BIG"
    assert err(dev.set_attr, GRP_ADDR, IRS, u64((1 << 40) - 0x20000)) == 0
    assert get64(dev, GRP_ADDR, IRS) == (1 << 40) - 0x20000
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(0)) == "EEXIST"
    vm, dev, _ = vm74(irs=None, init=False)
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(0)) == 0
    assert get64(dev, GRP_ADDR, IRS) == 0


def test_addr_eexist_comes_before_the_value_checks():
    """vgic_check_iorange: the "already set" test (EEXIST) precedes alignment and range, so a
    second SET of a misaligned or out-of-range address is EEXIST, not EINVAL / E2BIG."""
    _, dev, _ = vm74(init=False)
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(0x1234)) == "EEXIST"
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(1 << 60)) == "EEXIST"


def test_addr_wrapping_region_is_einval_and_ipa_bits_moves_the_limit():
    """vgic_check_iorange: addr + size wrapping past 2**64 is EINVAL (before E2BIG); the IPA
    limit is 1 << ipa_bits (kvm_phys_size): with 48 bits 1 << 40 fits."""
    _, dev, _ = vm74(irs=None, init=False)
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(0xFFFFFFFFFFFF0000)) == "EINVAL"
    _, dev, _ = vm74(irs=None, init=False, host=gic5.Host(ipa_bits=48))
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(1 << 40)) == 0
    _, dev, _ = vm74(irs=None, init=False, host=gic5.Host(ipa_bits=32))
    assert err(dev.set_attr, GRP_ADDR, IRS, u64(1 << 32)) == "E2BIG"


def test_addr_other_attrs_and_bad_buffers():
    """vgic_v5_has_attr answers ENXIO for an ADDR attr other than IRS; kvm_vgic_addr's ENODEV
    for a type V5 lacks comes back as ENXIO from get and set; vgic_set_common_attr reads the
    value first, so a NULL buffer is EFAULT even for an unknown attr; GET copies out last."""
    _, dev, _ = vm74(irs=None, init=False)
    for attr in (0, 1, 2, 3, 4, 5, 7):
        assert err(dev.has_attr, GRP_ADDR, attr) == "ENXIO"
        assert err(dev.get_attr, GRP_ADDR, attr, np.zeros(1, np.uint64)) == "ENXIO"
        assert err(dev.set_attr, GRP_ADDR, attr, u64(0)) == "ENXIO"
        assert err(dev.set_attr, GRP_ADDR, attr, None) == "EFAULT"
    assert err(dev.get_attr, GRP_ADDR, 5, None) == "EFAULT"  # REDIST_REGION reads an index
    assert err(dev.get_attr, GRP_ADDR, 4, None) == "ENXIO"
    assert err(dev.get_attr, GRP_ADDR, IRS, None) == "EFAULT"
    assert err(dev.set_attr, GRP_ADDR, IRS, bytearray(4)) == "EFAULT"  # 4 of 8 bytes
    assert get64(dev, GRP_ADDR, IRS) == uapi.VGIC_ADDR_UNDEF  # nothing changed


def test_addr_group_unknown_on_final():
    """final: vgic_v5_has_attr of mainline has no ADDR (or NR_IRQS, CPU_SYSREGS) group: ENXIO."""
    vm = gic5.Kvm(profile="final").create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    for group in (GRP_ADDR, GRP_NR, GRP_SYS, uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS,
                  uapi.KVM_DEV_ARM_VGIC_GRP_IST):
        assert err(dev.has_attr, group, IRS) == "ENXIO"
        assert err(dev.set_attr, group, IRS, u64(IRS_GPA)) == "ENXIO"


# --- GRP_NR_IRQS ------------------------------------------------------------------------------

def test_nr_irqs_rules_as_the_selftest():
    """vgic_set_common_attr / vgic_get_common_attr, V5 branch (selftest
    test_vgic_v5_nr_irqs_attrs): the SPI count, 32..1024 in steps of 32; GET 0 before any
    SET; settable once (EBUSY); then CTRL_INIT works and keeps it."""
    _, dev, _ = vm74(init=False)
    dev.has_attr(GRP_NR, 0)
    dev.has_attr(GRP_NR, 12345)  # any attr
    assert get32(dev, GRP_NR, 0) == 0
    for bad in (0, 31, 33, 1024 + 32, 0xFFFFFFFF):
        assert err(dev.set_attr, GRP_NR, 0, u32(bad)) == "EINVAL"
    assert err(dev.set_attr, GRP_NR, 0, u32(1024)) == 0
    assert get32(dev, GRP_NR, 0) == 1024
    assert err(dev.set_attr, GRP_NR, 0, u32(64)) == "EBUSY"
    assert err(dev.set_attr, GRP_NR, 0, u32(31)) == "EINVAL"  # range before EBUSY
    dev.set_attr(GRP_CTRL, INIT)
    assert get32(dev, GRP_NR, 0) == 1024


def test_nr_irqs_default_at_init_and_ebusy_after():
    """vgic_init (7.4): with NR_IRQS never set the SPI count becomes VGIC_V5_DEFAULT_NR_SPIS
    (32); a SET after INIT is EBUSY; a NULL buffer is EFAULT before anything else."""
    vm, dev, _ = vm74()
    assert get32(dev, GRP_NR, 0) == uapi.VGIC_V5_DEFAULT_NR_SPIS == vm.nr_spis
    assert err(dev.set_attr, GRP_NR, 0, u32(64)) == "EBUSY"
    assert err(dev.set_attr, GRP_NR, 0, None) == "EFAULT"
    assert err(dev.get_attr, GRP_NR, 0, None) == "EFAULT"


def test_failed_init_leaves_the_default_spi_count():
    """vgic_init applies the default SPI count before vgic_v5_init's ENODEV (no vCPU), and a
    failed INIT does not undo it: NR_IRQS then reads 32 and a SET is EBUSY."""
    vm, dev, _ = vm74(vcpus=(), init=False)
    assert err(dev.set_attr, GRP_CTRL, INIT) == "ENODEV"
    assert get32(dev, GRP_NR, 0) == 32
    assert err(dev.set_attr, GRP_NR, 0, u32(64)) == "EBUSY"


# --- CTRL_INIT ----------------------------------------------------------------------------------

def test_init_with_no_vcpu_is_enodev_and_retryable():
    """vgic_v5_init (7.4): no online vCPU is ENODEV before anything is allocated, so INIT can
    be retried once a vCPU exists (final: 0, and the VM can no longer get vCPUs)."""
    vm, dev, _ = vm74(vcpus=(), init=False)
    assert err(dev.set_attr, GRP_CTRL, INIT) == "ENODEV"
    assert not vm.initialised
    vm.create_vcpu(0)
    dev.set_attr(GRP_CTRL, INIT)
    assert vm.initialised
    fvm = gic5.Kvm(profile="final").create_vm()
    fdev = fvm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert err(fdev.set_attr, GRP_CTRL, INIT) == 0


def test_userspace_ppis_unchanged():
    """vgic_v5_get_userspace_ppis: {SW_PPI} & impl, word 1 zero, SET ENXIO, as final."""
    _, dev, _ = vm74()
    buf = np.full(2, 0xBAD, dtype=np.uint64)
    dev.get_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    assert list(buf) == [SW_BIT, 0]
    assert err(dev.set_attr, GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf) == "ENXIO"


# --- the first KVM_RUN ---------------------------------------------------------------------

def test_first_run_without_irs_address_is_enxio_and_kills_the_vm():
    """kvm_vgic_map_resources (7.4, e3db95b1bc28): an IRS base never set fails the first
    KVM_RUN with ENXIO and marks the VM dead (kvm_vm_dead): every later ioctl is EIO."""
    vm, dev, (v,) = vm74(irs=None)
    with pytest.raises(OSError) as info:
        with v.run():
            pass
    assert info.value.errno == errno.ENXIO
    assert vm.dead
    assert err(vm.irq_line, uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, SW), 1) == "EIO"
    assert err(dev.has_attr, GRP_ADDR, IRS) == "EIO"


def test_first_run_before_init_is_ebusy_first():
    """kvm_vgic_map_resources: vgic_v5_map_resources' EBUSY (no CTRL_INIT) comes before the
    IRS-base ENXIO."""
    vm, _, (v,) = vm74(irs=None, init=False)
    with pytest.raises(OSError) as info:
        with v.run():
            pass
    assert info.value.errno == errno.EBUSY and vm.dead


def _pmu_failed_first_run_then_restore_pending(vcpus=(0,)):
    # vCPU 0 has a PMU its VMM never initialised: its first KVM_RUN maps the vGIC, then fails
    # at kvm_arm_pmu_v3_enable (EINVAL, the VM alive, not "ran"); IRS_REGS is still writable
    # and a valid IST_BASER then makes a restore pending.
    vm = gic5.Kvm(profile=P).create_vm()
    cpus = [vm.create_vcpu(i, pmu=i == 0) for i in vcpus]
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev.set_attr(GRP_ADDR, IRS, u64(IRS_GPA))
    dev.set_attr(GRP_CTRL, INIT)
    with pytest.raises(OSError) as info:
        with cpus[0].run():
            pass
    assert info.value.errno == errno.EINVAL and not vm.dead
    regs = uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS
    dev.set_attr(regs, uapi.GICV5_IRS_IST_CFGR, u64(14))
    dev.set_attr(regs, uapi.GICV5_IRS_IST_BASER, u64(0x20000 | 1))  # VALID: restore pending
    return vm, dev, cpus


def test_restore_made_pending_after_the_map_is_not_checked_again():
    """kvm_vgic_map_resources (vgic-init.c) returns 0 at once once dist->ready is set, so
    vgic_v5_map_resources' lpi_ist_restore_pending EINVAL is only looked at by the VM's
    first map. A first run that got past the map and failed at the PMU
    (kvm_arch_vcpu_run_pid_change: map, timers, then kvm_arm_pmu_v3_enable) leaves the VM
    mapped but not ran, so IRS_REGS takes a valid IST_BASER (restore pending); the next run
    fails only at the PMU (EINVAL, the VM alive), and once the PMU is initialised the vCPU
    runs with the restore still pending."""
    vm, dev, (v,) = _pmu_failed_first_run_then_restore_pending()
    with pytest.raises(OSError) as info:
        with v.run():
            pass
    assert info.value.errno == errno.EINVAL and not vm.dead
    assert get64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS, uapi.GICV5_IRS_CR0) == 0x2  # IDLE
    v.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
    with v.run():
        pass
    assert not vm.dead


def test_restore_made_pending_after_the_map_does_not_stop_another_vcpu():
    """kvm_vgic_map_resources: the map is the VM's, done once (dist->ready); vCPU 1's first
    run after vCPU 0's PMU failure and the pending restore skips it and runs."""
    vm, _, (_, v1) = _pmu_failed_first_run_then_restore_pending((0, 1))
    with v1.run():
        pass
    assert not vm.dead


def test_restore_pending_before_the_map_still_kills_the_vm():
    """vgic_v5_map_resources: a restore pending at the VM's first map is EINVAL and
    kvm_vgic_map_resources marks the VM dead (every later ioctl EIO); a first run refused
    at the map leaves dist->ready clear."""
    vm, dev, (v,) = vm74()
    regs = uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS
    dev.set_attr(regs, uapi.GICV5_IRS_IST_CFGR, u64(14))
    dev.set_attr(regs, uapi.GICV5_IRS_IST_BASER, u64(0x20000 | 1))
    with pytest.raises(OSError) as info:
        with v.run():
            pass
    assert info.value.errno == errno.EINVAL and vm.dead
    with pytest.raises(OSError) as info:
        with v.run():
            pass
    assert info.value.errno == errno.EIO


def test_vcpu1_first_template_final_vs_74():
    """vgic_v5_finalize_ppi_state: final builds the VM mask from vCPU 0's owners at any
    vCPU's first run (vCPU 0's timers are owned only at its own first run, so vCPU 1 running
    first exposes {SW_PPI} alone); 7.4 (589d6072f25d) builds it from the vCPU that runs
    first, so its timers are exposed."""
    masks = {}
    for profile in ("final", P):
        vm = gic5.Kvm(profile=profile).create_vm()
        vm.create_vcpu(0)
        v1 = vm.create_vcpu(1)
        dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
        if profile == P:
            dev.set_attr(GRP_ADDR, IRS, u64(IRS_GPA))
        dev.set_attr(GRP_CTRL, INIT)
        with v1.run():
            pass
        masks[profile] = vm.exposed_ppis()[0]
    timers = 1 << uapi.GICV5_ARCH_PPI_CNTV | 1 << uapi.GICV5_ARCH_PPI_CNTP
    assert masks == {"final": SW_BIT, P: SW_BIT | timers}


def test_every_first_run_masks_restored_state():
    """vgic_v5_finalize_ppi_state (7.4, 589d6072f25d): at each vCPU's own first run its
    ENABLER / ACTIVER are ANDed with the VM mask and a hidden PPI loses enabled, active,
    pending latch and line level, while a visible PPI keeps its pending state."""
    vm, dev, (v0, v1) = vm74(vcpus=(0, 1))
    hidden = 1 << uapi.GICV5_ARCH_PPI_CNTHP | 1 << 5  # implemented-but-hidden, unimplemented
    for vid in (0, 1):
        dev.set_attr(GRP_SYS, sysreg(vid, uapi.SYS_ICC_PPI_ENABLER0_EL1), u64(SW_BIT | hidden))
        dev.set_attr(GRP_SYS, sysreg(vid, uapi.SYS_ICC_PPI_SACTIVER0_EL1), u64(hidden))
        dev.set_attr(GRP_SYS, sysreg(vid, uapi.SYS_ICC_PPI_SPENDR0_EL1), u64(SW_BIT | hidden))
    assert v1.enabled_ppis()[0] == SW_BIT | hidden  # raw until the first run
    assert v1.pending_ppis()[0] == SW_BIT | hidden
    with v0.run():
        pass
    assert v0.enabled_ppis()[0] == SW_BIT and v0.active_ppis()[0] == 0
    assert v0.pending_ppis()[0] == SW_BIT
    assert v1.enabled_ppis()[0] == SW_BIT | hidden  # not yet: its own first run does it
    with v1.run():
        pass
    assert v1.enabled_ppis()[0] == SW_BIT and v1.pending_ppis()[0] == SW_BIT


# --- vCPU ids and limits -----------------------------------------------------------------------

def test_vcpu_limit_without_legacy_device():
    """vgic_v5_probe: max_gicv5_vcpus = min(max_vpes, 512); without the GICv3-legacy device
    the VM starts with it (kvm_arch_init_vm), so kvm_arch_vcpu_precreate refuses a too-large
    id with EINVAL before any device, and kvm_vm_ioctl_create_vcpu a vCPU past the count."""
    vm = gic5.Kvm(host=gic5.Host(max_vpes=4), profile=P).create_vm()
    assert vm.max_vcpus == 4
    assert err(vm.create_vcpu, 4) == "EINVAL"
    for i in range(4):
        vm.create_vcpu(3 - i)
    assert err(vm.create_vcpu, 0) == "EINVAL"  # created_vcpus >= max_vcpus before EEXIST


def test_vcpu_limit_with_legacy_device_e2big_at_create_device():
    """kvm_vgic_create (7.4, 21fd40005fb3): with the GICv3-legacy device the VM starts at 512;
    KVM_CREATE_DEVICE(V5) sets max_vcpus to max_gicv5_vcpus and fails E2BIG for an existing
    vCPU id at or above it, keeping the lowered limit; KVM_CREATE_VCPU then refuses EINVAL."""
    vm = gic5.Kvm(host=gic5.Host(max_vpes=4, gcie_legacy=True), profile=P).create_vm()
    assert vm.max_vcpus == 512
    vm.create_vcpu(100)
    assert err(vm.create_device, uapi.KVM_DEV_TYPE_ARM_VGIC_V5) == "E2BIG"
    assert vm.device is None and vm.max_vcpus == 4
    assert err(vm.create_vcpu, 5) == "EINVAL"
    vm2 = gic5.Kvm(host=gic5.Host(max_vpes=4, gcie_legacy=True), profile=P).create_vm()
    vm2.create_vcpu(3)
    vm2.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert err(vm2.create_vcpu, 4) == "EINVAL"
    vm2.create_vcpu(0)


def test_no_lpi_domain_no_v5_device():
    """vgic_v5_probe (7.4): no host LPI domain is ENODEV before either device registers, so
    KVM_CREATE_DEVICE(V5) is ENODEV (also as a TEST probe) and no vGIC limits the VM."""
    for legacy in (False, True):
        vm = gic5.Kvm(host=gic5.Host(lpi_domain=False, gcie_legacy=legacy, max_vpes=4),
                      profile=P).create_vm()
        assert vm.max_vcpus == 512
        assert err(vm.create_device, uapi.KVM_DEV_TYPE_ARM_VGIC_V5) == "ENODEV"
        assert err(vm.create_device, uapi.KVM_DEV_TYPE_ARM_VGIC_V5,
                   uapi.KVM_CREATE_DEVICE_TEST) == "ENODEV"
        vm.create_vcpu(100)


def test_host_inputs_ignored_by_other_profiles():
    """The IRS host inputs exist only for 7.4's probe: final keeps 512 vCPUs and its device."""
    vm = gic5.Kvm(host=gic5.Host(max_vpes=2, lpi_domain=False), profile="final").create_vm()
    assert vm.max_vcpus == 512
    vm.create_vcpu(300)
    vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)


@pytest.mark.parametrize("kwargs, exc", [
    ({"max_vpes": 3}, ValueError), ({"max_vpes": 1}, ValueError),
    ({"max_vpes": 1 << 17}, ValueError), ({"max_vpes": "4"}, TypeError),
    ({"ipa_bits": 31}, ValueError), ({"ipa_bits": 53}, ValueError),
    ({"ipa_bits": 40.0}, TypeError), ({"lpi_domain": None}, TypeError),
    ({"gcie_legacy": "yes"}, TypeError),
])
def test_host_input_misuse(kwargs, exc):
    """Host's IRS inputs: max_vpes a power of two 2..65536 (2 ** (VPE_ID_BITS + 1)), ipa_bits
    32..52; wrong types TypeError."""
    with pytest.raises(exc):
        gic5.Host(**kwargs)


def test_sparse_vcpu_ids_iaffid():
    """access_gicv5_iaffid (selftest test_vgic_v5_sparse_vcpu_ids): vCPUs 17 and 3, created in
    that order, read their own id as ICC_IAFFIDR_EL1.IAFFID (bits 15:0)."""
    vm, dev, (a, b) = vm74(vcpus=(17, 3))
    for v in (a, b):
        with v.run() as cpu:
            assert cpu.read_iaffidr() == v.vcpu_id


# --- CPU_SYSREGS -------------------------------------------------------------------------------

def test_sysregs_has_attr_and_errno_split():
    """vgic_v5_has_cpu_sysregs_attr / vgic_v5_attr_regs_access (selftest
    test_vgic_v5_cpu_sysreg_attrs): HAS of a GICv3 register ENXIO, GET of it ENOENT; an MPIDR
    naming no vCPU EINVAL (HAS and GET); NULL buffer EFAULT."""
    _, dev, _ = vm74()
    for enc in uapi.CPU_SYSREGS_74.values():
        dev.has_attr(GRP_SYS, sysreg(0, enc))
    for enc in (uapi.SYS_ICC_CTLR_EL1, uapi.SYS_ICC_IAFFIDR_EL1, uapi.SYS_ICC_HAPR_EL1,
                uapi.SYS_ICC_PPI_CPENDR0_EL1, uapi.SYS_ICC_PPI_CACTIVER0_EL1):
        assert err(dev.has_attr, GRP_SYS, sysreg(0, enc)) == "ENXIO"
        assert err(dev.get_attr, GRP_SYS, sysreg(0, enc), np.zeros(1, np.uint64)) == "ENOENT"
        assert err(dev.set_attr, GRP_SYS, sysreg(0, enc), u64(0)) == "ENOENT"
        assert err(dev.set_attr, GRP_SYS, sysreg(0, enc), None) == "EFAULT"  # read first
    attr = sysreg(1, uapi.SYS_ICC_PCR_EL1)
    assert err(dev.has_attr, GRP_SYS, attr) == "EINVAL"
    assert err(dev.get_attr, GRP_SYS, attr, np.zeros(1, np.uint64)) == "EINVAL"
    assert err(dev.get_attr, GRP_SYS, sysreg(0, uapi.SYS_ICC_PCR_EL1), None) == "EFAULT"


def test_sysregs_ebusy_before_init_after_run_and_while_running():
    """vgic_v5_attr_regs_access: EBUSY before CTRL_INIT (GET and SET, even with a NULL
    buffer), EBUSY while a vCPU is inside KVM_RUN (kvm_trylock_all_vcpus), and EBUSY for a
    write once any vCPU ran (vgic_v5_vm_has_run_once); reads then still work."""
    _, dev, (v0, v1) = vm74(vcpus=(0, 1), init=False)
    a = sysreg(1, uapi.SYS_ICC_APR_EL1)
    assert err(dev.get_attr, GRP_SYS, a, np.zeros(1, np.uint64)) == "EBUSY"
    assert err(dev.get_attr, GRP_SYS, a, None) == "EBUSY"
    assert err(dev.set_attr, GRP_SYS, a, u64(1)) == "EBUSY"
    dev.set_attr(GRP_CTRL, INIT)
    with v0.run():
        assert err(dev.get_attr, GRP_SYS, a, np.zeros(1, np.uint64)) == "EBUSY"
    assert err(dev.set_attr, GRP_SYS, a, u64(1)) == "EBUSY"  # vCPU 0 ran: vCPU 1 is frozen too
    assert get64(dev, GRP_SYS, a) == 0


def test_sysregs_register_rules():
    """The accessors of vgic-sys-reg-v5.c: ENABLER0 / SACTIVER0 raw; their upper halves and
    PRIORITYR8..15 ignored and read 0; SPENDR0 sets the latch of the edge PPI and the line of
    level PPIs, both ways, and reads irq_is_pending; PRIORITYR bytes cut to 5 bits; APR keeps
    the low 32 bits; CR0 stores EN and reads EN | LINK | LINK_IDLE; PCR is VMCR.VPMR; ICSR
    drops its RES0 bits."""
    _, dev, (v,) = vm74()

    def rt(enc, value):
        dev.set_attr(GRP_SYS, sysreg(0, enc), u64(value))
        return get64(dev, GRP_SYS, sysreg(0, enc))

    assert rt(uapi.SYS_ICC_PPI_ENABLER0_EL1, 0xFFFF_FFFF_FFFF_FFFF) == 0xFFFF_FFFF_FFFF_FFFF
    assert rt(uapi.SYS_ICC_PPI_ENABLER1_EL1, 0xFF) == 0
    assert rt(uapi.SYS_ICC_PPI_SACTIVER0_EL1, 0x1234) == 0x1234
    assert rt(uapi.SYS_ICC_PPI_SACTIVER1_EL1, 0xFF) == 0
    assert rt(uapi.SYS_ICC_PPI_SPENDR0_EL1, SW_BIT | 1 << 26) == SW_BIT | 1 << 26
    assert v.pending_ppis()[0] == SW_BIT | 1 << 26
    assert rt(uapi.SYS_ICC_PPI_SPENDR0_EL1, 1 << 26) == 1 << 26  # clears the latch too
    assert rt(uapi.SYS_ICC_PPI_SPENDR1_EL1, 0xFF) == 0
    assert rt(uapi.SYS_ICC_PPI_PRIORITYR[0], 0xFFFF_FFFF_FFFF_FFFF) == 0x1F1F_1F1F_1F1F_1F1F
    assert rt(uapi.SYS_ICC_PPI_PRIORITYR[8], 0x0101) == 0
    assert rt(uapi.SYS_ICC_APR_EL1, 0xFFFF_FFFF_0000_0101) == 0x101
    assert rt(uapi.SYS_ICC_CR0_EL1, 0xFFFF_FFFF_FFFF_FFFF) == 0x7
    assert rt(uapi.SYS_ICC_CR0_EL1, 0) == 0x6
    assert rt(uapi.SYS_ICC_PCR_EL1, 0xFF) == 0x1F
    assert rt(uapi.SYS_ICC_ICSR_EL1, 0xFFFF_FFFF_FFFF_FFFF) == 0x0000_FFFF_0000_F83F


def test_sysregs_round_trip_every_register():
    """Selftest test_vgic_v5_cpu_sysreg_attrs: after INIT, GET then SET of every listed
    register succeeds and leaves the value unchanged."""
    _, dev, _ = vm74(vcpus=(0, 17))
    for vid in (0, 17):
        for enc in uapi.CPU_SYSREGS_74.values():
            a = sysreg(vid, enc)
            value = get64(dev, GRP_SYS, a)
            dev.set_attr(GRP_SYS, a, u64(value))
            assert get64(dev, GRP_SYS, a) == value


def test_restored_registers_drive_the_guest_and_the_wake_check(guest_ready):
    """The registers land where the guest and the wake check read them: vgic_v5_load restores
    VMCR (CR0.EN, PCR) and APR; the entry writes ICSR and the PRIORITYR image; the PRIORITYR
    write also sets the shadow priorities vgic_v5_has_pending_ppi reads."""
    vm, dev, (v,) = vm74()

    def put(enc, value):
        dev.set_attr(GRP_SYS, sysreg(0, enc), u64(value))

    put(uapi.SYS_ICC_PPI_ENABLER0_EL1, SW_BIT)
    put(uapi.SYS_ICC_PPI_SPENDR0_EL1, SW_BIT)
    put(uapi.SYS_ICC_PPI_PRIORITYR[0], 5 << 24)  # PPI 3 at priority 5
    put(uapi.SYS_ICC_PCR_EL1, 4)
    put(uapi.SYS_ICC_CR0_EL1, 1)
    put(uapi.SYS_ICC_ICSR_EL1, 0x21)
    with v.run() as cpu:
        assert cpu.read_ppi_priority(SW) == 5 and cpu.read_icsr() == 0x21
        assert cpu.read_ppi_spendr(0) == SW_BIT
        assert cpu.cdia() is None  # 5 > VPMR 4
    assert not v.has_pending_irq()  # shadow 5, limit min(32, 4 + 1)
    with v.run() as cpu:
        cpu.write_pcr(5)
    assert v.has_pending_irq()
    with v.run() as cpu:
        assert cpu.cdia() == 0x20000003


# --- SPIs through KVM_IRQ_LINE ----------------------------------------------------------------

def spi(n, vcpu=0):
    return uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_SPI, vcpu, n)


def test_spi_line_order_and_range():
    """kvm_vm_ioctl_irq_line, SPI branch (7.4): no irqchip ENXIO, vgic_lazy_init EBUSY before
    CTRL_INIT, then vgic_get_irq: an id at or above nr_spis is EINVAL (selftest
    test_vgic_v5_spis: id == nr_spis for 32 and 1024)."""
    vm = gic5.Kvm(profile=P).create_vm()
    vm.create_vcpu(0)
    assert err(vm.irq_line, spi(0), 1) == "ENXIO"
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert err(vm.irq_line, spi(0), 1) == "EBUSY"
    dev.set_attr(GRP_NR, 0, u32(1024))
    assert err(vm.irq_line, spi(0), 1) == "EBUSY"
    dev.set_attr(GRP_CTRL, INIT)
    assert err(vm.irq_line, spi(1023), 1) == 0
    assert err(vm.irq_line, spi(1024), 1) == "EINVAL"
    vm2, _, _ = vm74()
    assert err(vm2.irq_line, spi(31), 1) == 0
    assert err(vm2.irq_line, spi(32), 1) == "EINVAL"


def test_edge_spi_cannot_be_recalled():
    """kvm_vgic_inject_irq / vgic_validate_injection for an EDGE SPI (KVM's default config):
    level 1 latches it; a later level 0 is ignored, so the edge stays pending (selftest: an
    edge SPI lowered before the run is still delivered). The vCPU fields are not examined."""
    vm, _, _ = vm74()
    assert not vm.spi_pending(7)
    vm.irq_line(spi(7, vcpu=200), 1)  # vCPU 200 does not exist: not looked at
    vm.irq_line(spi(7), 0)
    assert vm.spi_pending(7) and vm.spi_state(7) == (False, True)
    vm.irq_line(spi(7), 1)
    assert vm.spi_state(7) == (False, True)


def test_spi_inspection_misuse():
    """spi_pending / spi_state: an SPI the VM does not have is a ValueError, a non-int a
    TypeError; on final a VM has no SPIs at all."""
    vm, _, _ = vm74()
    for bad in (-1, 32):
        with pytest.raises(ValueError):
            vm.spi_pending(bad)
    with pytest.raises(TypeError):
        vm.spi_state("1")
    fvm = gic5.Kvm(profile="final").create_vm()
    assert fvm.nr_spis == 0
    with pytest.raises(ValueError):
        fvm.spi_pending(0)


def test_spi_words_on_final_unchanged():
    """final: a PPI-only V5 VM has no SPIs: after INIT every SPI word is EINVAL."""
    vm = gic5.Kvm(profile="final").create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert err(vm.irq_line, spi(0), 1) == "EBUSY"
    dev.set_attr(GRP_CTRL, INIT)
    assert err(vm.irq_line, spi(0), 1) == "EINVAL"


def test_spi_batch_equals_per_call():
    """irq_line_batch runs irq_line_one for SPI words too: the same codes and state."""
    rng = np.random.default_rng(7)
    words = rng.choice([spi(n) for n in (0, 5, 31, 32, 1023)]
                       + [uapi.irq_word(2, 0, SW), uapi.irq_word(2, 0, 5)], 400)
    levels = rng.integers(0, 2, 400)
    a, _, _ = vm74()
    b, _, _ = vm74()
    codes = a.irq_line_batch(words, levels)
    expected = []
    for w, lv in zip(words, levels, strict=True):
        try:
            b.irq_line(int(w), int(lv))
            expected.append(0)
        except OSError as exc:
            expected.append(-exc.errno)
    assert list(codes) == expected and -errno.EINVAL in expected and 0 in expected
    assert [a.spi_state(n) for n in range(32)] == [b.spi_state(n) for n in range(32)]
    assert a.spi_pending(0) and a.spi_pending(5) and a.spi_pending(31)


def test_priorityr_restore_keeps_only_implemented_ppis_after_the_entry():
    """set_gic_ppi_priorityr stores the raw (5-bit) bytes; __vgic_v5_restore_ppi_state writes
    them to ICH_PPI_PRIORITYRn_EL2, whose fields of unimplemented PPIs are RES0, and the exit
    saves the register back: before the first run the GET shows the raw bytes, the guest
    reads 0 for an unimplemented PPI (PPI 0), and after the run the GET shows the cut value."""
    _, dev, (v,) = vm74()
    a = sysreg(0, uapi.SYS_ICC_PPI_PRIORITYR[0])
    dev.set_attr(GRP_SYS, a, u64(0x0505050505050505))
    assert get64(dev, GRP_SYS, a) == 0x0505050505050505
    with v.run() as cpu:
        assert cpu.read_ppi_priority(0) == 0 and cpu.read_ppi_priority(SW) == 5
    assert get64(dev, GRP_SYS, a) == 0x05 << 24  # only PPI 3 of PPIs 0..7 is implemented


def test_direct_timer_line_is_not_injected_into_kvm():
    """kvm_timer_update_irq (v3 and later): "Skip injecting on GICv5 for directly injected
    (DVI'd) timers". After a vCPU's first run its vtimer is direct, so raising the timer's
    line leaves KVM's line_level alone: the CPU_SYSREGS SPENDR0 read (irq_is_pending, which
    reads line_level) stays clear, while the pending view shows the physical line. (The state
    machine found the library injecting it: a difference only 7.4's SPENDR0 read can see.)"""
    _, dev, (v,) = vm74()
    with v.run():
        pass
    v.timer_line("vtimer", 1)
    assert v.pending_ppis() == (1 << 27, 0)
    assert get64(dev, GRP_SYS, sysreg(0, uapi.SYS_ICC_PPI_SPENDR0_EL1)) == 0
