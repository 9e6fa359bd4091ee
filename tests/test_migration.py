"""gic5.save_state / gic5.restore_state: a 7.4 VM migrated through the UAPI.

Covers issue 14's migration points: save_state returns every vCPU's CPU_SYSREGS and the
device attributes; restore_state replays them on a fresh VM in the documented order
(Documentation/virt/kvm/devices/arm-vgic-v5.rst, 7.4: vCPUs, ADDR, NR_IRQS, CTRL_INIT, the
registers) and returns the vCPUs it created in id order; save_state of the restored VM equals
the saved state; a VM migrated in the middle of a storm loses and duplicates nothing.

Rules kept: the storm's accounting is the test's own (which edges a guest must still take,
which timer raises it must still see), computed from what the test injected and what the
guests acknowledged, never read from the model; after the migration the source and the
destination run the same script and must answer call for call the same.
"""

from __future__ import annotations

import copy
import errno
import json
import random

import numpy as np
import pytest

import gic5
from gic5 import uapi

P = "7.4"
IRS_GPA = 0x8000000
SW = uapi.GICV5_ARCH_PPI_SW_PPI
VT = uapi.GICV5_ARCH_PPI_CNTV
PMU = uapi.GICV5_ARCH_PPI_PMUIRQ
SW_INTID = uapi.ppi_intid(SW)
VT_INTID = uapi.ppi_intid(VT)
PMU_INTID = uapi.ppi_intid(PMU)
IDS = (0, 5, 17, 300)  # sparse, and creation order = this order
PRIO = {SW: 8, VT: 4, PMU: 2}


def new_vm():
    return gic5.Kvm(profile=P).create_vm()


def build_source():
    vm = new_vm()
    vcpus = [vm.create_vcpu(i, pmu=(i == 0)) for i in IDS]
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                 np.array([IRS_GPA], np.uint64))
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, np.array([64], np.uint32))
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    vcpus[0].set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
    return vm, vcpus


def sw_word(vcpu_id):
    return uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, vcpu_id, SW)


# --- the round trip ---------------------------------------------------------------------------

def test_save_restore_round_trip_equal():
    """save_state after restore_state equals the saved state (the CPU_SYSREGS accessors of
    vgic-sys-reg-v5.c read back what their writes stored; ADDR and NR_IRQS too), and the
    restored vCPUs come back in id order with their features."""
    vm, vcpus = build_source()
    with vcpus[0].run() as cpu:
        cpu.write_ppi_priority(SW, 8)
        cpu.write_ppi_enabler(0, 1 << SW | 1 << PMU)
        cpu.write_pcr(20)
        cpu.write_cr0(True)
    vm.irq_line(sw_word(0), 1)
    state = gic5.save_state(vm)
    json.loads(json.dumps(state))  # plain data
    assert state["device"] == {"irs_base": IRS_GPA, "nr_irqs": 64}
    assert [v["vcpu_id"] for v in state["vcpus"]] == list(IDS)
    regs0 = state["vcpus"][0]["sysregs"]
    assert regs0["ICC_PPI_ENABLER0_EL1"] == 1 << SW | 1 << PMU
    assert regs0["ICC_PPI_SPENDR0_EL1"] == 1 << SW
    assert regs0["ICC_PCR_EL1"] == 20 and regs0["ICC_CR0_EL1"] == 0x7
    assert regs0["ICC_PPI_PRIORITYR0_EL1"] == 8 << 24
    dst = new_vm()
    restored = gic5.restore_state(dst, state)
    assert [v.vcpu_id for v in restored] == sorted(IDS)
    assert [v.vcpu_id for v in dst.vcpus] == list(IDS)  # creation order kept
    assert [v.pmu for v in dst.vcpus] == [True, False, False, False]
    assert gic5.save_state(dst) == state


def test_restore_order_is_the_documented_one():
    """restore_state makes the calls in the kernel's documented order: vCPUs, the device, ADDR,
    NR_IRQS, the vCPUs' PPI numbers, CTRL_INIT, PMU_V3_INIT, then CPU_SYSREGS."""
    vm, _ = build_source()
    state = gic5.save_state(vm)
    calls = []

    class Spy:
        def __init__(self, obj, name):
            self._obj, self._name = obj, name

        def __getattr__(self, attr):
            target = getattr(self._obj, attr)
            if not callable(target):
                return target

            def wrapped(*args, **kwargs):
                calls.append((self._name, attr, args[:2]))
                out = target(*args, **kwargs)
                if attr == "create_vcpu":
                    return Spy(out, f"vcpu{args[0]}")
                if attr == "create_device":
                    return Spy(out, "dev")
                return out
            return wrapped

    spy_vm = Spy(new_vm(), "vm")
    spy_vm.vcpus = ()
    spy_vm.device = None
    gic5.restore_state(spy_vm, state)
    kinds = []
    for who, what, args in calls:
        if what == "create_vcpu":
            kinds.append("vcpus")
        elif what == "create_device":
            kinds.append("device")
        elif who == "dev" and args[0] == uapi.KVM_DEV_ARM_VGIC_GRP_ADDR:
            kinds.append("ADDR")
        elif who == "dev" and args[0] == uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS:
            kinds.append("NR_IRQS")
        elif who == "dev" and args == (uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, 0):
            kinds.append("INIT")
        elif who == "dev" and args[0] == uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS:
            kinds.append("SYSREGS")
        elif args == (uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT):
            kinds.append("PMU_INIT")
        elif who == "dev" and args[0] == uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS:
            kinds.append("IRS_REGS")
        elif who == "dev" and args[0] == uapi.KVM_DEV_ARM_VGIC_GRP_IST:
            kinds.append("IST")
        else:
            kinds.append("PPI numbers")
    order = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert order == ["vcpus", "device", "ADDR", "NR_IRQS", "PPI numbers", "INIT", "PMU_INIT",
                     "SYSREGS", "IRS_REGS", "IST"]


def test_restore_misuse_and_kernel_refusals():
    """restore_state: a VM that has vCPUs or a state save_state cannot have produced is a
    ValueError before any call; the kernel's own refusals come out as its OSError (a
    register write after a destination vCPU ran: vgic_v5_attr_regs_access EBUSY)."""
    vm, _ = build_source()
    state = gic5.save_state(vm)
    with pytest.raises(ValueError, match="fresh VM"):
        gic5.restore_state(vm, state)
    v0 = state["vcpus"][0]
    for bad in ({}, {**state, "format": "x"}, {**state, "vcpus": "no"},
                {**state, "device": {"irs_base": 0}},
                {**state, "device": {"irs_base": -1, "nr_irqs": 64}},
                {**state, "vcpus": [v0, v0]},
                {**state, "vcpus": [{**v0, "pmu": 1}]},
                {**state, "vcpus": [{**v0, "sysregs": {**v0["sysregs"], "ICC_APR_EL1": 2**64}}]},
                {**state, "vcpus": [{**v0, "timer_irqs": {"vtimer": "27", "ptimer": 30}}]},
                {**state, "vcpus": [state["vcpus"][1], {**v0, "pmu_irq": 1.5}]}):
        target = new_vm()
        with pytest.raises(ValueError):
            gic5.restore_state(target, bad)
        assert target.vcpus == () and target.device is None  # nothing was created
    with pytest.raises(ValueError, match="V5 VGIC device"):
        gic5.save_state(new_vm())
    with pytest.raises(OSError) as info:
        gic5.save_state(_uninitialised())
    assert info.value.errno == errno.EBUSY  # CPU_SYSREGS before CTRL_INIT


def _uninitialised():
    vm = new_vm()
    vm.create_vcpu(0)
    vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    return vm


def test_save_needs_every_vcpu_out_of_run():
    """kvm_trylock_all_vcpus in vgic_v5_attr_regs_access: reading the registers while a vCPU
    is inside KVM_RUN is EBUSY."""
    vm, vcpus = build_source()
    with vcpus[1].run():
        with pytest.raises(OSError) as info:
            gic5.save_state(vm)
    assert info.value.errno == errno.EBUSY


def test_destination_first_run_order_matters_for_a_pmu():
    """vgic_v5_finalize_ppi_state(vcpu) (7.4): the destination builds its exposed set from the
    vCPU that runs there first. If a vCPU without the PMU runs first, the PMU PPI the source
    exposed (its vCPU 0 ran first) is hidden, and the restored PMU enable is masked off at
    vCPU 0's first run: the VMM must keep the first-run order (nothing in the state says it)."""
    vm, vcpus = build_source()
    with vcpus[0].run() as cpu:
        cpu.write_ppi_enabler(0, 1 << SW | 1 << PMU)
    state = gic5.save_state(vm)
    dst = new_vm()
    restored = {v.vcpu_id: v for v in gic5.restore_state(dst, state)}
    with restored[5].run():
        pass
    with restored[0].run() as cpu:
        assert cpu.read_ppi_enabler(0) == 1 << SW
    assert restored[0].enabled_ppis()[0] == 1 << SW


# --- migration in the middle of a storm -------------------------------------------------------

class Side:
    """One VM of the storm with the test's own accounting."""

    def __init__(self, vm, vcpus):
        self.vm = vm
        self.by_id = {v.vcpu_id: v for v in vcpus}
        self.timer = {i: False for i in IDS}  # the vtimer lines the host drives

    def vcpu(self, vid):
        return self.by_id[vid]


class Ledger:
    """What the guests must still take: the test's accounting, from injections and acks."""

    def __init__(self):
        self.sw_outstanding = {i: False for i in IDS}  # an accepted edge not yet taken
        self.sw_accepted = {i: 0 for i in IDS}
        self.sw_taken = {i: 0 for i in IDS}
        self.vt_raised = {i: 0 for i in IDS}
        self.vt_taken = {i: 0 for i in IDS}

    def inject_sw(self, vid):
        if not self.sw_outstanding[vid]:  # a second edge before the guest took the first
            self.sw_accepted[vid] += 1    # coalesces into the same latch
            self.sw_outstanding[vid] = True

    def took(self, vid, intid):
        if intid == SW_INTID:
            assert self.sw_outstanding[vid], f"vCPU {vid} took an SW_PPI edge twice"
            self.sw_outstanding[vid] = False
            self.sw_taken[vid] += 1
        elif intid == VT_INTID:
            self.vt_taken[vid] += 1
            assert self.vt_taken[vid] <= self.vt_raised[vid], f"vCPU {vid}: timer taken twice"


def guest_setup(cpu, vid):
    for ppi, prio in PRIO.items():
        cpu.write_ppi_priority(ppi, prio)
    cpu.write_ppi_enabler(0, (1 << SW | 1 << VT | (1 << PMU if vid == 0 else 0)))
    cpu.write_pcr(31)
    cpu.write_cr0(True)


def serve(side, ledger, vid, cpu, *, leave_active=False):
    """The guest takes what it can: acknowledge, then (unless told to leave it active) the
    timer handler rearms (the host lowers its line) and the guest deactivates and drops
    priority. Returns the acknowledged INTIDs, in order."""
    got = []
    while True:
        intid = cpu.cdia()
        if intid is None:
            return got
        got.append(intid)
        ledger.took(vid, intid)
        if leave_active:
            return got
        if intid == VT_INTID:
            side.timer[vid] = False
            side.vcpu(vid).timer_line("vtimer", False)
        cpu.cddi(intid)
        cpu.cdeoi()


def step(side, ledger, rng_choice, vid):
    """One storm event on one side; returns what the guest saw (for the call-by-call
    comparison of source and destination)."""
    v = side.vcpu(vid)
    if rng_choice == "sw":
        side.vm.irq_line(sw_word(vid), 1)
        side.vm.irq_line(sw_word(vid), 0)
        ledger.inject_sw(vid)
        return ("sw",)
    if rng_choice == "timer":
        if not side.timer[vid]:
            side.timer[vid] = True
            ledger.vt_raised[vid] += 1
            v.timer_line("vtimer", True)
        return ("timer",)
    with v.run() as cpu:
        wake = cpu.wfi()
        return ("run", wake, tuple(serve(side, ledger, vid, cpu)))


def drain(side, ledger):
    for _ in range(4):
        for vid in IDS:
            with side.vcpu(vid).run() as cpu:
                serve(side, ledger, vid, cpu)


def check_ledger(ledger):
    for vid in IDS:
        assert ledger.sw_taken[vid] == ledger.sw_accepted[vid], (vid, "SW_PPI edges")
        assert not ledger.sw_outstanding[vid]
        assert ledger.vt_taken[vid] == ledger.vt_raised[vid], (vid, "timer raises")


@pytest.mark.parametrize("seed", range(6))
def test_migration_in_the_middle_of_a_storm(seed):
    """A 7.4 VM migrated with save_state / restore_state mid-storm, with SW_PPI edges pending
    in KVM's latch (one raised while its guest ran, one flushed into PENDR at an entry and
    folded back at the exit: vgic_v5_flush_ppi_state / vgic_v5_fold_ppi_state), vtimer lines
    high, and an SW_PPI active at priority 8 with a new edge pending behind it
    (ICC_PPI_SACTIVER0, ICC_APR_EL1). The VMM re-drives the timer lines on the destination
    (they belong to the timer's own save/restore) and first-runs the vCPUs in the source's
    order. Afterwards source and destination answer the same script call for call, and each
    ends with every accepted edge and every timer raise taken exactly once."""
    rng = random.Random(seed)
    src = Side(*build_source())
    ledger = Ledger()
    for vid in IDS:  # first runs in creation order: vCPU 0 (PMU owner) first
        with src.vcpu(vid).run() as cpu:
            guest_setup(cpu, vid)
    for _ in range(150):
        step(src, ledger, rng.choice(["sw", "sw", "timer", "run", "run"]), rng.choice(IDS))
    # The middle of the storm, made to hold every kind of in-flight state at once:
    a, b, c, d = IDS
    for vid in IDS:  # every guest takes what it has, then waits (its WFI syncs KVM's shadow
        with src.vcpu(vid).run() as cpu:  # priorities, which a restore sets from the image)
            serve(src, ledger, vid, cpu)
            cpu.wfi()
    with src.vcpu(a).run() as cpu:  # an edge raised while the guest runs: KVM's latch
        step(src, ledger, "sw", a)
    step(src, ledger, "sw", b)  # pending at the entry: into PENDR, folded back at the exit
    with src.vcpu(b).run() as cpu:
        assert cpu.read_ppi_spendr(0) & 1 << SW
    step(src, ledger, "sw", c)  # taken and left active at priority 8, then a new edge
    with src.vcpu(c).run() as cpu:
        got = serve(src, ledger, c, cpu, leave_active=True)
        assert got == [SW_INTID], got
        step(src, ledger, "sw", c)
        assert cpu.read_ppi_sactiver(0) & 1 << SW
    for vid in (a, d):  # timer lines high
        step(src, ledger, "timer", vid)
    state = gic5.save_state(src.vm)
    assert state["vcpus"][IDS.index(c)]["sysregs"]["ICC_PPI_SACTIVER0_EL1"] & 1 << SW
    assert state["vcpus"][IDS.index(c)]["sysregs"]["ICC_APR_EL1"] & 1 << PRIO[SW]
    for vid in (a, b, c):
        assert state["vcpus"][IDS.index(vid)]["sysregs"]["ICC_PPI_SPENDR0_EL1"] & 1 << SW

    dst_vm = new_vm()
    dst_vcpus = gic5.restore_state(dst_vm, state)
    assert gic5.save_state(dst_vm) == state
    dst = Side(dst_vm, dst_vcpus)
    for vid in IDS:  # the timer's own restore drives its line again
        if src.timer[vid]:
            dst.timer[vid] = True
            dst.vcpu(vid).timer_line("vtimer", True)
    for vid in IDS:  # first runs in the source's order
        with dst.vcpu(vid).run():
            pass
    # (the source's vCPUs go through the same empty run, so both sides stay step for step)
    for vid in IDS:
        with src.vcpu(vid).run():
            pass
    dst_ledger = copy.deepcopy(ledger)  # what the destination's guests still owe
    for _ in range(150):
        choice, vid = rng.choice(["sw", "sw", "timer", "run", "run"]), rng.choice(IDS)
        assert step(src, ledger, choice, vid) == step(dst, dst_ledger, choice, vid)
        for vid_ in IDS:
            s, t = src.vcpu(vid_), dst.vcpu(vid_)
            assert (s.pending_ppis(), s.active_ppis(), s.enabled_ppis(), s.has_pending_irq()) \
                == (t.pending_ppis(), t.active_ppis(), t.enabled_ppis(), t.has_pending_irq())
    # vCPU c's active SW_PPI: deactivate and drop it (the guest finishes its handler)
    for side in (src, dst):
        with side.vcpu(c).run() as cpu:
            cpu.cddi(SW_INTID)
            cpu.cdeoi()
    drain(src, ledger)
    drain(dst, dst_ledger)
    check_ledger(ledger)
    check_ledger(dst_ledger)
    assert ledger.__dict__ == dst_ledger.__dict__
    assert sum(ledger.sw_accepted.values()) > 40 and sum(ledger.vt_raised.values()) > 10
