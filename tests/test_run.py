"""KVM_RUN: the first-run steps, the reset state of the CPU interface, and exposure.

Covers docs/semantics.md sections 8, 9 (reset), 10 and 13, spec 4.5, 7.1 (with the Q5
hazard), 10.2, 10.7 and 10.9: what entering `vcpu.run()` checks and in which order, what a
failed first run leaves behind, which PPIs are exposed and when that is decided.

Rule kept: exposure is read twice, from `vm.exposed_ppis()` and from what the guest reads
back after writing all ones to ENABLER0, and both must equal the literal mask.
"""

import errno

import pytest

import gic5
from gic5 import uapi
from vmsetup import set_irs_base

TIMER = uapi.KVM_ARM_VCPU_TIMER_CTRL
VTIMER = uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER
PTIMER = uapi.KVM_ARM_VCPU_TIMER_IRQ_PTIMER
PMU = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
PMU_INIT = uapi.KVM_ARM_VCPU_PMU_V3_INIT
V5 = uapi.KVM_DEV_TYPE_ARM_VGIC_V5
ALL = 2**64 - 1


def guest_enabler_readback(vcpu):
    """Run once; the guest writes all ones to ENABLER0/1 and reads them back."""
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.write_ppi_enabler(1, ALL)
        return cpu.read_ppi_enabler(0), cpu.read_ppi_enabler(1)


# --- without a device ----------------------------------------------------------------------

def test_run_without_a_device(kvm, run_once):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    run_once(vcpu)
    run_once(vcpu)
    assert vcpu.pending_ppis() == (0, 0)
    assert vcpu.has_pending_irq() is False
    assert vm.exposed_ppis() == (0, 0)


def test_kernel_lines_without_a_device_have_no_effect(make_vm, run_once):
    s = make_vm("final", 1, device=False)
    s.vcpu.timer_line("vtimer", 1)
    run_once(s.vcpu)
    s.vcpu.timer_line("ptimer", 1)
    assert s.vcpu.pending_ppis() == (0, 0)


# --- step 1: not initialised -------------------------------------------------------------------

def test_first_run_before_init_ebusy_and_dead(kvm, fails):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    vm.create_device(V5)
    with fails(errno.EBUSY):
        with vcpu.run():
            pytest.fail("entered")
    # The failing run answered EBUSY; from now on it is EIO (the VM is dead).
    with fails(errno.EIO):
        with vcpu.run():
            pytest.fail("entered")


def test_not_initialised_comes_before_timer_and_pmu_checks(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0], init=False)
    mem.vcpu_set(s.vcpu, TIMER, VTIMER, 0x2000001F)
    with fails(errno.EBUSY):
        with s.vcpu.run():
            pass


# --- step 2: timers --------------------------------------------------------------------------

@pytest.mark.parametrize("attr, value", [
    (VTIMER, 0x2000001F), (VTIMER, 0x2000001E), (VTIMER, 0x2000001C),
    (PTIMER, 0x2000001B), (PTIMER, 0x2000001A), (PTIMER, 0x20000003),
])
def test_non_architected_timer_ppi_fails_the_first_run(kvm, fails, mem, run_once, attr, value,
                                                       sw_word):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(V5)
    set_irs_base(dev)
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    mem.vcpu_set(vcpu, TIMER, attr, value)
    with fails(errno.EINVAL):
        with vcpu.run():
            pytest.fail("entered")
    # The VM is alive, the timers are not frozen, nothing was exposed.
    assert vm.exposed_ppis() == (0, 0)
    assert vm.irq_line(sw_word(0), 1) is None
    assert mem.vcpu_set(vcpu, TIMER, attr, 0x2000001B if attr == VTIMER else 0x2000001E) is None
    run_once(vcpu)
    assert vm.exposed_ppis() != (0, 0)


def test_timer_owner_is_taken_at_each_vcpus_own_first_run(make_vm, run_once):
    s = make_vm("final", 2)
    v0, v1 = s.vcpus
    v1.timer_line("vtimer", 1)
    v1.timer_line("ptimer", 1)
    # Recorded, no owner yet: nothing pending.
    assert v1.pending_ppis() == (0, 0)
    run_once(v0)
    assert v1.pending_ppis() == (0, 0)
    run_once(v1)
    # Owned and hardware-mapped: the line level is what pending_ppis() reports.
    assert v1.pending_ppis() == (1 << 27 | 1 << 30, 0)
    v1.timer_line("ptimer", 0)
    assert v1.pending_ppis() == (1 << 27, 0)
    assert v0.pending_ppis() == (0, 0)


@pytest.mark.parametrize("name", ["hvtimer", "hptimer", "vtimer0", "", "VTIMER"])
def test_timer_line_names(make_vm, name):
    s = make_vm("final", 1)
    with pytest.raises(ValueError, match="nested virtualisation" if name in ("hvtimer", "hptimer")
                       else "unknown timer"):
        s.vcpu.timer_line(name, 1)


# --- step 3: PMU ------------------------------------------------------------------------------

def test_uninitialised_pmu_fails_after_the_timer_step(make_vm, fails, mem):
    s = make_vm("final", 1, pmu=[0], pmu_init=False)
    with fails(errno.EINVAL):
        with s.vcpu.run():
            pytest.fail("entered")
    # Step 2 ran (the timers are frozen), step 4 did not (nothing exposed).
    with fails(errno.EBUSY):
        mem.vcpu_set(s.vcpu, TIMER, VTIMER, 0x2000001B)
    assert s.vm.exposed_ppis() == (0, 0)


def test_failed_first_run_does_not_count_as_run(make_vm, fails, run_once):
    # Without a device: the PMU check fails the run, and a device can still be created
    # afterwards ("a vCPU has run" is not set by a failed first run).
    s = make_vm("final", 1, pmu=[0], device=False)
    with fails(errno.EINVAL):
        with s.vcpu.run():
            pass
    assert s.vm.create_device(V5) is not None


# --- the run context itself ---------------------------------------------------------------------

def test_run_is_not_reentrant(make_vm, run_once):
    s = make_vm("final", 1)
    with s.vcpu.run():
        with pytest.raises(RuntimeError, match="already inside run"):
            with s.vcpu.run():
                pass
    run_once(s.vcpu)


def test_two_vcpus_can_be_inside_run_together(make_vm):
    s = make_vm("final", 2)
    with s.vcpus[0].run() as c0, s.vcpus[1].run() as c1:
        assert c0.read_ppi_enabler(0) == 0
        assert c1.read_ppi_enabler(0) == 0


def test_cpu_is_unusable_after_the_block(make_vm):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        pass
    with pytest.raises(RuntimeError, match="run\\(\\) has ended"):
        cpu.cdia()
    with pytest.raises(RuntimeError, match="run\\(\\) has ended"):
        cpu.read_ppi_enabler(0)


def test_exit_fold_happens_on_exception(make_vm, sw_word, guest_ready, run_once):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with pytest.raises(KeyError):
        with s.vcpu.run() as cpu:
            guest_ready(cpu)
            assert cpu.cdia() == 0x20000003
            raise KeyError("guest crashed")
    # The acknowledge made inside the block was folded back (active, no longer pending),
    # and the vCPU is not stuck inside run().
    assert s.vcpu.active_ppis() == (0x8, 0)
    assert s.vcpu.pending_ppis() == (0, 0)
    run_once(s.vcpu)


# --- reset state of the CPU interface (spec 10.9) ------------------------------------------------

def test_reset_state_is_all_zero(make_vm, sw_word):
    s = make_vm("final", 1)
    for word in (s.vcpu.pending_ppis(), s.vcpu.active_ppis(), s.vcpu.enabled_ppis()):
        assert word == (0, 0)
    assert s.vcpu.has_pending_irq() is False
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        assert (cpu.read_ppi_enabler(0), cpu.read_ppi_enabler(1)) == (0, 0)
        assert (cpu.read_ppi_sactiver(0), cpu.read_ppi_sactiver(1)) == (0, 0)
        assert [cpu.read_ppi_priority(i) for i in range(128)] == [0] * 128
        # Only the injected edge is pending.
        assert (cpu.read_ppi_spendr(0), cpu.read_ppi_spendr(1)) == (0x8, 0)
        cpu.write_ppi_enabler(0, 0x8)
        # VMCR.EN = 0: nothing is acknowledged, even an enabled pending PPI.
        assert cpu.cdia() is None
        cpu.write_cr0(True)
        # VPMR = 0, priority 0, APR = 0: priority 0 passes the mask (prio <= VPMR).
        assert cpu.cdia() == 0x20000003


def test_reset_vpmr_is_zero(make_vm, sw_word):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(3, 1)
        cpu.write_ppi_enabler(0, 0x8)
        cpu.write_cr0(True)
        assert cpu.cdia() is None  # 1 > VPMR 0
        cpu.write_pcr(1)
        assert cpu.cdia() == 0x20000003


def test_reset_state_is_per_vcpu(make_vm, run_once, guest_ready):
    # One vCPU's guest configuration is not another's.
    s = make_vm("final", 2)
    with s.vcpus[0].run() as cpu:
        guest_ready(cpu, prio=7, pcr=9)
    with s.vcpus[1].run() as cpu:
        assert cpu.read_ppi_enabler(0) == 0
        assert cpu.read_ppi_priority(3) == 0


# --- step 4: exposure (final) ----------------------------------------------------------------

@pytest.mark.parametrize("vcpus, pmu, host, want", [
    ([0], [], None, 0x48000008),
    ([0], [0], None, 0x48800008),
    ([0, 1], [1], None, 0x48000008),          # the PMU is on vCPU index 1, not 0
    ([0, 1], [0, 1], None, 0x48800008),
    ([5, 0], [5], None, 0x48800008),          # index 0 is the first created (id 5)
    ([5, 0], [0], None, 0x48000008),
    ([0], [], gic5.Host(pmu=False), 0x48000008),
    ([0], [], gic5.Host(impl_ppis=(ALL, ALL)), 0x48000008),   # 26/28 have no owner
    ([0], [0], gic5.Host(impl_ppis=(0x8 | 1 << 27, 0)), 0x08000008),
    ([0], [], gic5.Host(impl_ppis=(1 << 27 | 1 << 30, 0)), 0x48000000),
    ([0], [], gic5.Host(impl_ppis=(0, 0)), 0),
])
def test_exposure_final(make_vm, vcpus, pmu, host, want):
    s = make_vm("final", vcpus, pmu=pmu, host=host)
    assert s.vm.exposed_ppis() == (0, 0)  # not computed before the first run
    assert guest_enabler_readback(s.vcpus[0]) == (want, 0)
    assert s.vm.exposed_ppis() == (want, 0)
    # VM-wide: every other vCPU sees the same set.
    for cpu in s.vcpus[1:]:
        assert guest_enabler_readback(cpu) == (want, 0)
    assert s.vm.exposed_ppis() == (want, 0)


def test_exposure_is_computed_at_the_first_run_not_at_init(make_vm):
    s = make_vm("final", 1, pmu=[0], pmu_init=False)
    # PMU_V3_INIT after device INIT but before the first run still counts.
    s.vcpu.set_attr(PMU, PMU_INIT)
    assert guest_enabler_readback(s.vcpu) == (0x48800008, 0)


def test_q5_running_vcpu1_first_exposes_only_sw_ppi_final(make_vm):
    # Spec 7.1 hazard / Q5: vCPU 0's timers get their owners at vCPU 0's own first run,
    # but the final kernel computes the VM-wide set once, at the first run of any vCPU.
    s = make_vm("final", 2)
    v0, v1 = s.vcpus
    assert guest_enabler_readback(v1) == (0x8, 0)
    assert s.vm.exposed_ppis() == (0x8, 0)
    # Not recomputed when vCPU 0 runs later.
    assert guest_enabler_readback(v0) == (0x8, 0)
    assert s.vm.exposed_ppis() == (0x8, 0)


def test_q5_with_pmu_owned_at_pmu_init(make_vm):
    # The PMU owns PPI 23 from PMU_V3_INIT, so it is exposed even when vCPU 1 runs first.
    s = make_vm("final", 2, pmu=[0, 1])
    assert guest_enabler_readback(s.vcpus[1]) == (0x00800008, 0)
    assert s.vm.exposed_ppis() == (0x00800008, 0)


def test_q5_unexposed_timer_is_never_delivered(make_vm, guest_ready):
    # Q5 consequence: with only SW_PPI exposed, vCPU 0's raised vtimer is never delivered.
    s = make_vm("final", 2)
    with s.vcpus[1].run():
        pass
    with s.vcpus[0].run() as cpu:
        guest_ready(cpu, ppis=(3, 27))
        s.vcpus[0].timer_line("vtimer", 1)
        assert cpu.wfi() is False
        assert cpu.cdia() is None


def test_a_cpuif_made_by_hand_is_not_a_running_guest():
    # Only run() loads the register image; a CpuIf built directly must not act on it.
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    cpu = gic5.CpuIf(vm, 0)
    with pytest.raises(RuntimeError, match="use the CpuIf that run\\(\\) yields"):
        cpu.write_ppi_enabler(0, 1 << 3)
    assert vm.vcpus[0].enabled_ppis() == (0, 0)
    with pytest.raises(IndexError, match="no vCPU with index 1"):
        gic5.CpuIf(vm, 1)
