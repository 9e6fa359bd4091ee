"""The revision profiles v2 / v3 / final / 7.4, side by side.

Covers issue 5 ("Must be shown by tests") and spec tables 5.1, 7.1, 7.6, 9.2 with
docs/semantics.md sections 6, 9 to 12: USERSPACE_PPIS (the v2 bit-index-as-bitmap bug), the
KVM_IRQ_LINE gate and PPI count, the exposure rule (v2's inverted test), the wake-up compare,
the fold rule and v2's wider trapping.

Rule kept: each test runs the same calls under the profiles it names and states every
profile's expected value next to the others, so a difference is always shown against its
counterpart.
"""

import errno

import pytest

import gic5
from gic5 import uapi

PPI = uapi.KVM_ARM_IRQ_TYPE_PPI
SW, VT, PT = 3, 27, 30
SW_INTID = 0x20000003
ALL = 2**64 - 1


def test_profiles_tuple():
    assert gic5.PROFILES == ("v2", "v3", "final", "7.4")


def test_default_profile_is_final(mem, outcome):
    # USERSPACE_PPIS tells final from v2; the 64-PPI timer-attribute range tells it from v3.
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert outcome(mem.vcpu_set, vcpu, uapi.KVM_ARM_VCPU_TIMER_CTRL,
                   uapi.KVM_ARM_VCPU_TIMER_IRQ_HVTIMER, 0x20000040) == -errno.EINVAL
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    assert mem.userspace_ppis(dev) == (0x8, 0)


@pytest.mark.parametrize("bad", ["v4", "V2", "FINAL", "", "merged"])
def test_unknown_profile_value_error(bad):
    with pytest.raises(ValueError, match="unknown profile"):
        gic5.Kvm(profile=bad)


@pytest.mark.parametrize("bad", [3, b"final", ("final",)])
def test_non_str_profile_type_error(bad):
    with pytest.raises(TypeError, match="profile must be a str"):
        gic5.Kvm(profile=bad)


# --- USERSPACE_PPIS (table 5.1) -----------------------------------------------------------------

@pytest.mark.parametrize("host, want", [
    (None,                                   {"v2": (0, 0),   "v3": (0x8, 0), "final": (0x8, 0), "7.4": (0x8, 0)}),
    (gic5.Host(pmu=False),                   {"v2": (0, 0),   "v3": (0x8, 0), "final": (0x8, 0), "7.4": (0x8, 0)}),
    # a probe that reports PPIs 0 and 1 (Q7): v2 tells userspace the doorbells are drivable
    (gic5.Host(impl_ppis=(0x5C80000B, 0)),   {"v2": (0x3, 0), "v3": (0x8, 0), "final": (0x8, 0), "7.4": (0x8, 0)}),
    (gic5.Host(impl_ppis=(0x1, 0)),          {"v2": (0x1, 0), "v3": (0, 0),   "final": (0, 0), "7.4": (0, 0)}),
    (gic5.Host(impl_ppis=(ALL, ALL)),        {"v2": (0x3, 0), "v3": (0x8, 0), "final": (0x8, 0), "7.4": (0x8, 0)}),
    (gic5.Host(impl_ppis=(0x5C800000, 0)),   {"v2": (0, 0),   "v3": (0, 0),   "final": (0, 0), "7.4": (0, 0)}),
])
def test_userspace_ppis_per_profile(make_vm, mem, profile, host, want):
    s = make_vm(profile, 1, host=host, init=False)
    assert mem.userspace_ppis(s.dev) == (0, 0)
    s.dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    assert mem.userspace_ppis(s.dev) == want[profile]
    assert s.vm.userspace_ppis() == want[profile]


# --- the KVM_IRQ_LINE gate and the PPI count ----------------------------------------------------

GATE = {
    #      id:  0             3     63             64             127            128
    "v2":    {0: 0,             3: 0, 63: 0,             64: 0,             127: 0,
              128: errno.EINVAL},
    "v3":    {0: errno.EINVAL,  3: 0, 63: errno.EINVAL,  64: errno.EINVAL,  127: errno.EINVAL,
              128: errno.EINVAL},
    "final": {0: errno.EINVAL,  3: 0, 63: errno.EINVAL,  64: errno.EINVAL,  127: errno.EINVAL,
              128: errno.EINVAL},
    "7.4":   {0: errno.EINVAL,  3: 0, 63: errno.EINVAL,  64: errno.EINVAL,  127: errno.EINVAL,
              128: errno.EINVAL},
}


@pytest.mark.parametrize("num", [0, 3, 63, 64, 127, 128])
def test_irq_line_gate(make_vm, outcome, profile, num):
    s = make_vm(profile, 1)
    assert outcome(s.vm.irq_line, uapi.irq_word(PPI, 0, num), 1) == -GATE[profile][num]


@pytest.mark.parametrize("num, bits", [(64, (0, 1)), (100, (0, 1 << 36)), (127, (0, 1 << 63))])
def test_v2_upper_bank_ppis_are_real(make_vm, num, bits):
    s = make_vm("v2", 1)
    assert s.vm.irq_line(uapi.irq_word(PPI, 0, num), 1) is None
    assert s.vcpu.pending_ppis() == bits


def test_v2_gate_ignores_its_own_buggy_mask(make_vm, outcome):
    # v2 reports {0, 1} as drivable with this host, but does not use the mask at all.
    s = make_vm("v2", 1, host=gic5.Host(impl_ppis=(0x5C80000B, 0)))
    for num in (0, 1, 3, 64):
        assert outcome(s.vm.irq_line, uapi.irq_word(PPI, 0, num), 1) == 0


def test_v3_gate_follows_the_mask(make_vm, outcome):
    s = make_vm("v3", 1, host=gic5.Host(impl_ppis=(0x5C800000, 0)))
    assert outcome(s.vm.irq_line, uapi.irq_word(PPI, 0, SW), 1) == -errno.EINVAL


@pytest.mark.parametrize("num", [3, 64, 127])
def test_ppi_before_init_per_profile(make_vm, outcome, profile, num):
    s = make_vm(profile, 1, init=False)
    # v3: the empty mask gate comes first; v2 (no gate) and final (mainline 7.2's
    # vgic_lazy_init before the checks, 1a8685ed8cd1) answer EBUSY.
    want = -errno.EINVAL if profile == "v3" else -errno.EBUSY
    assert outcome(s.vm.irq_line, uapi.irq_word(PPI, 0, num), 1) == want


# --- exposure (table 7.1) --------------------------------------------------------------------

def readback(vcpu):
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.write_ppi_enabler(1, ALL)
        return cpu.read_ppi_enabler(0), cpu.read_ppi_enabler(1)


@pytest.mark.parametrize("host, pmu, want", [
    (None, [],
     {"v2": (0x5C800000, 0), "v3": (0x48000008, 0), "final": (0x48000008, 0), "7.4": (0x48000008, 0)}),
    (None, [0],
     {"v2": (0x5C800000, 0), "v3": (0x48800008, 0), "final": (0x48800008, 0), "7.4": (0x48800008, 0)}),
    (gic5.Host(pmu=False), [],
     {"v2": (0x5C000000, 0), "v3": (0x48000008, 0), "final": (0x48000008, 0), "7.4": (0x48000008, 0)}),
    (gic5.Host(impl_ppis=(ALL, ALL)), [],
     {"v2": (ALL & ~0x8, ALL), "v3": (0x48000008, 0), "final": (0x48000008, 0), "7.4": (0x48000008, 0)}),
    (gic5.Host(impl_ppis=(0x8, 0)), [],
     {"v2": (0, 0), "v3": (0x8, 0), "final": (0x8, 0), "7.4": (0x8, 0)}),
    (gic5.Host(impl_ppis=(0x5C80000B, 0)), [],
     {"v2": (0x5C800003, 0), "v3": (0x48000008, 0), "final": (0x48000008, 0), "7.4": (0x48000008, 0)}),
])
def test_exposure_per_profile(make_vm, profile, host, pmu, want):
    # v2: every implemented PPI but the unowned SW_PPI (the inverted test);
    # v3/final: the owned PPIs of vCPU 0 plus SW_PPI.
    s = make_vm(profile, 1, host=host, pmu=pmu)
    assert readback(s.vcpu) == want[profile]
    assert s.vm.exposed_ppis() == want[profile]
    # v2 22/36 access_gicv5_ppi_enabler writes only the entry image, and the changed-bits
    # fold never sees ENABLER differ between entry and exit: irq->enabled stays clear.
    assert s.vcpu.enabled_ppis() == ((0, 0) if profile == "v2" else want[profile])


def test_exposure_order_of_first_runs(make_vm, profile):
    # Running vCPU 1 first: final decides once (only SW_PPI, the Q5 hazard); 7.4 decides once
    # from the running vCPU's owners (vgic_v5_finalize_ppi_state(vcpu)); v3 recomputes at
    # each vCPU's first run; v2 (21/36) computes every vCPU's own set at any vCPU's first run
    # (kvm_for_each_vcpu) and reports vCPU 0's.
    s = make_vm(profile, 2)
    v0, v1 = s.vcpus
    first = readback(v1)
    after_v1 = s.vm.exposed_ppis()
    readback(v0)
    after_v0 = s.vm.exposed_ppis()
    again = readback(v1)
    want = {
        "v2":    ((0x5C800000, 0), (0x5C800000, 0), (0x5C800000, 0), (0x5C800000, 0)),
        "v3":    ((0x8, 0),        (0x8, 0),    (0x48000008, 0), (0x48000008, 0)),
        "final": ((0x8, 0),        (0x8, 0),    (0x8, 0),        (0x8, 0)),
        # 7.4 (589d6072f25d): once, from the vCPU that runs first (vCPU 1: its own timers)
        "7.4":   ((0x48000008, 0), (0x48000008, 0), (0x48000008, 0), (0x48000008, 0)),
    }
    assert (first, after_v1, after_v0, again) == want[profile]


# --- the wake-up compare (table 7.6) -----------------------------------------------------------

def wake_setup(s, sw_word, cpu, ppi, prio, pcr, cr0=True):
    # The interrupt is raised first: the trapped ENABLER write that follows is an exit and an
    # entry, which hands it to PENDR (v2's wake check reads the images of the last exit).
    if ppi == VT:
        s.vcpu.timer_line("vtimer", 1)
    elif ppi == SW:
        s.vm.irq_line(sw_word(0), 1)
    else:
        s.vm.irq_line(uapi.irq_word(PPI, 0, ppi), 1)  # v2: userspace drives a level PPI
    cpu.write_ppi_priority(ppi, prio)
    cpu.write_ppi_enabler(0, 1 << ppi)
    cpu.write_pcr(pcr)
    cpu.write_cr0(cr0)


# A PPI the vGIC check can see on each profile: SW_PPI is not exposed on v2, so v2 uses the
# level PPI 26 that its userspace may drive. (v2/v3 also wake on a timer that should fire.)
VGIC_PPI = {"v2": 26, "v3": SW, "final": SW, "7.4": SW}


# v2/v3 vgic_v5_has_pending_ppi compare "<=" against VPMR + 1; the vtimer also wakes them
# through kvm_cpu_has_pending_timer; final compares "<" (a4a645584793).
@pytest.mark.parametrize("profile_, ppi", [("v2", VT), ("v3", VT), ("final", VT),
                                           ("v2", 26), ("v3", SW), ("final", SW)])
@pytest.mark.parametrize("vpmr", [0, 4, 30])
def test_priority_vpmr_plus_one_wakes_v2_v3_not_final(make_vm, sw_word, profile_, ppi, vpmr):
    profile = profile_
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        wake_setup(s, sw_word, cpu, ppi, vpmr + 1, vpmr)
        assert cpu.wfi() is {"v2": True, "v3": True, "final": False, "7.4": False}[profile]
        # The guest cannot take it on any profile: v2/v3 wake the vCPU for nothing.
        assert cpu.cdia() is None


def test_priority_at_vpmr_wakes_everywhere(make_vm, sw_word, profile):
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        wake_setup(s, sw_word, cpu, VT, 4, 4)
        assert cpu.wfi() is True
        assert cpu.cdia() == 0x2000001B


def test_priority_vpmr_plus_two(make_vm, sw_word, profile):
    """vgic_v5_has_pending_ppi: no profile wakes for a priority two above VPMR. (v2 19/36
    has no "nothing active" fast path: its shortcut needs a limit of 32.)"""
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        wake_setup(s, sw_word, cpu, VGIC_PPI[profile], 6, 4)
        assert cpu.wfi() is False
        assert cpu.cdia() is None


def test_cr0_disabled_wakes_only_without_the_en_check(make_vm, sw_word, profile):
    """vgic_v5_get_effective_priority_mask: final answers 0 when ICH_VMCR_EL2.EN is clear;
    v2/v3 do not look at EN."""
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        wake_setup(s, sw_word, cpu, VGIC_PPI[profile], 0, 31, cr0=False)
        assert cpu.wfi() is {"v2": True, "v3": True, "final": False, "7.4": False}[profile]
        assert cpu.cdia() is None
    assert s.vcpu.has_pending_irq() is {"v2": True, "v3": True, "final": False, "7.4": False}[profile]


def test_priority_equal_to_the_running_priority(make_vm, profile):
    # final: the strict `<` against min(APR, VPMR + 1) refuses it. v2/v3 wake: both timer
    # lines are high, and their kvm_cpu_has_pending_timer wakes on a timer that should fire
    # (their vGIC check never sees a DVI timer; tests/test_fidelity.py has the `<=` itself).
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(PT, 4)
        cpu.write_ppi_priority(VT, 4)
        cpu.write_ppi_enabler(0, 1 << PT | 1 << VT)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        s.vcpu.timer_line("ptimer", 1)
        assert cpu.cdia() == 0x2000001E
        s.vcpu.timer_line("vtimer", 1)
        assert cpu.wfi() is {"v2": True, "v3": True, "final": False, "7.4": False}[profile]
        assert cpu.cdia() is None


# --- the fold rule and the edge latch (tables 7.4/7.5, 9.2) ------------------------------------

@pytest.mark.parametrize("profile_, survives", [("v3", True), ("final", True)])
def test_second_edge_while_running_after_an_ack(make_vm, sw_word, guest_ready, profile_,
                                                survives):
    """vgic_v5_fold_ppi_state ORs the exit PENDR into the edge latch on both profiles, so the
    edge raised meanwhile survives. (On v3 the latch was never cleared at entry either: the
    edge would be there again even without the second injection.)"""
    s = make_vm(profile_, 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() == SW_INTID
        cpu.cddi(SW_INTID)
        cpu.cdeoi()
        s.vm.irq_line(sw_word(0), 0)
        s.vm.irq_line(sw_word(0), 1)
    assert s.vcpu.pending_ppis() == ((0x8, 0) if survives else (0, 0))
    with s.vcpu.run() as cpu:
        assert cpu.cdia() == (SW_INTID if survives else None)


@pytest.mark.parametrize("profile_", ["v3", "final"])
def test_edge_raised_while_running_without_an_ack_survives(make_vm, sw_word, guest_ready,
                                                          profile_):
    s = make_vm(profile_, 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        s.vm.irq_line(sw_word(0), 1)
    assert s.vcpu.pending_ppis() == (0x8, 0)


# --- trapped guest registers (table 9.2) ------------------------------------------------------

@pytest.mark.parametrize("ppi, want", [
    (SW, {"v2": 0, "v3": 0x8, "final": 0x8, "7.4": 0x8}),
    (26, {"v2": 0, "v3": 0, "final": 0, "7.4": 0}),                      # Level: pending is read-only
    (22, {"v2": 0, "v3": 0, "final": 0, "7.4": 0}),                      # not implemented
])
def test_set_pending_write(make_vm, profile, ppi, want):
    """v2 22/36 access_gicv5_ppi_pendr writes the entry image, which the next flush rebuilds
    from the shadow: no effect. v3/final: untrapped, and the hardware keeps a Level PPI's
    pending bit read-only (QEMU gic_ppi_spend_write)."""
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_spendr(0, 1 << ppi)
        assert cpu.read_ppi_spendr(0) == want[profile]


def test_set_active_write(make_vm, profile):
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_sactiver(0, 1 << SW | 1 << 26)
        want = {"v2": 1 << 26, "v3": 1 << SW | 1 << 26, "final": 1 << SW | 1 << 26, "7.4": 1 << SW | 1 << 26}
        assert cpu.read_ppi_sactiver(0) == want[profile]
        cpu.write_ppi_cactiver(0, ALL)
        assert cpu.read_ppi_sactiver(0) == 0


@pytest.mark.parametrize("ppi, want", [
    (SW, {"v2": 0, "v3": 7, "final": 7, "7.4": 7}),
    (VT, {"v2": 7, "v3": 7, "final": 7, "7.4": 7}),
    (26, {"v2": 7, "v3": 7, "final": 7, "7.4": 7}),
    (5, {"v2": 0, "v3": 0, "final": 0, "7.4": 0}),
])
def test_priority_write(make_vm, profile, ppi, want):
    s = make_vm(profile, 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(ppi, 7)
        assert cpu.read_ppi_priority(ppi) == want[profile]


def test_upper_bank(make_vm, profile):
    # A host implementing all 128 PPIs: only the 128-PPI profiles have an upper bank, and
    # only v2 exposes it (its exposure is the implemented set).
    s = make_vm(profile, 1, host=gic5.Host(impl_ppis=(ALL, ALL)))
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(1, ALL)
        cpu.write_ppi_priority(64, 9)
        cpu.write_ppi_spendr(1, 1 << 1)
        got = (cpu.read_ppi_enabler(1), cpu.read_ppi_priority(64), cpu.read_ppi_spendr(1))
    # The SPENDR write changes nothing: PPI 65 is Level (read-only pending on v3) and v2's
    # handler writes an entry image the flush rebuilds.
    want = {"v2": (ALL, 9, 0), "v3": (0, 9, 0), "final": (0, 0, 0), "7.4": (0, 0, 0)}
    assert got == want[profile]
