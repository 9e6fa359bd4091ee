"""The guest's GICv5 CPU interface, the entry flush / exit fold, and the wake-up predicate.

Covers docs/semantics.md sections 9, 11, 12, 13 and spec 7.3 to 7.8, 8, 10.8 on profile
`final` (issue 4, "Must be shown by tests"): the kernel selftest's round trip, ENABLER
masking, priority selection, the priority mask and running priority, CR0.EN, edges across
the fold, level (timer/PMU) lines, 5-bit priorities, `wfi()` and `has_pending_irq()`.

Rule kept: whatever the guest acknowledges is checked by its exact INTID, and every scenario
also checks that nothing else is acknowledged (cdia() returns None once it is done).
"""

import pytest

import gic5
from gic5 import uapi

SW = uapi.GICV5_ARCH_PPI_SW_PPI
SW_INTID = 0x20000003
VT, PT, PMUIRQ = 27, 30, 23
ALL = 2**64 - 1


def eoi(cpu, intid):
    """Deactivate and drop priority, as the selftest's guest does."""
    cpu.cddi(intid)
    cpu.cdeoi()


# --- the selftest round trip ---------------------------------------------------------------

def test_selftest_round_trip(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() is None
        assert cpu.wfi() is False            # nothing pending: the guest would block
        s.vm.irq_line(sw_word(0), 1)         # the host raises the line
        assert cpu.cdia() is None            # reaches the guest only after the kick
        assert cpu.wfi() is True
        assert cpu.cdia() == SW_INTID
        assert cpu.read_ppi_sactiver(0) == 0x8
        assert cpu.cdia() is None
        eoi(cpu, SW_INTID)
        assert cpu.read_ppi_sactiver(0) == 0
        assert cpu.cdia() is None
        s.vm.irq_line(sw_word(0), 0)         # host lowers ...
        s.vm.irq_line(sw_word(0), 1)         # ... and raises again
        assert cpu.wfi() is True
        assert cpu.cdia() == SW_INTID         # taken a second time
        eoi(cpu, SW_INTID)
        assert cpu.cdia() is None
        assert cpu.wfi() is False
    assert s.vcpu.pending_ppis() == (0, 0)
    assert s.vcpu.active_ppis() == (0, 0)
    assert s.vcpu.enabled_ppis() == (0x8, 0)


def test_selftest_round_trip_across_runs(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
    for _ in range(3):
        s.vm.irq_line(sw_word(0), 1)
        assert s.vcpu.has_pending_irq() is True
        with s.vcpu.run() as cpu:
            assert cpu.cdia() == SW_INTID
            eoi(cpu, SW_INTID)
            assert cpu.cdia() is None
        s.vm.irq_line(sw_word(0), 0)
        assert s.vcpu.has_pending_irq() is False
        assert s.vcpu.pending_ppis() == (0, 0)


# --- ENABLER ------------------------------------------------------------------------------

@pytest.mark.parametrize("pmu, want", [([], 0x48000008), ([0], 0x48800008)])
def test_enabler0_all_ones_reads_back_the_exposed_mask(make_vm, pmu, want):
    s = make_vm("final", 1, pmu=pmu)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        assert cpu.read_ppi_enabler(0) == want
        # ENABLER1 writes are ignored on final.
        cpu.write_ppi_enabler(1, ALL)
        assert cpu.read_ppi_enabler(1) == 0
    # The trap updated KVM's own enable state at once.
    assert s.vcpu.enabled_ppis() == (want, 0)


def test_enabler_write_replaces_the_word(make_vm):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.write_ppi_enabler(0, 1 << VT | 1 << 5 | 1 << 63)
        assert cpu.read_ppi_enabler(0) == 1 << VT
        cpu.write_ppi_enabler(0, 0)
        assert cpu.read_ppi_enabler(0) == 0
    assert s.vcpu.enabled_ppis() == (0, 0)


@pytest.mark.parametrize("value", [2**64, -1])
def test_enabler_value_outside_u64(make_vm, value):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        with pytest.raises((OverflowError, ValueError)):  # Cython's C conversion
            cpu.write_ppi_enabler(0, value)
        assert cpu.read_ppi_enabler(0) == 0


@pytest.mark.parametrize("n", [2, -1, 64])
def test_register_index_must_be_0_or_1(make_vm, n):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        for call in (lambda: cpu.write_ppi_enabler(n, 1), lambda: cpu.read_ppi_enabler(n),
                     lambda: cpu.read_ppi_spendr(n), lambda: cpu.read_ppi_sactiver(n),
                     lambda: cpu.write_ppi_spendr(n, 8), lambda: cpu.write_ppi_cactiver(n, 8)):
            with pytest.raises(ValueError, match="register index must be 0 or 1"):
                call()


# --- priority selection -------------------------------------------------------------------

def raise_sw_and_timer(s, sw_word, cpu, timer="ptimer"):
    s.vcpu.timer_line(timer, 1)       # DVI: seen by the running guest at once
    s.vm.irq_line(sw_word(0), 1)      # a software edge: delivered at the next entry
    cpu.wfi()


@pytest.mark.parametrize("sw_prio, t_prio, first", [
    (10, 4, PT), (4, 10, SW), (0, 31, SW), (31, 0, PT), (1, 0, PT), (0, 1, SW),
    (5, 5, SW),     # tie: the lowest PPI index wins
])
def test_lower_priority_value_is_acknowledged_first(make_vm, sw_word, sw_prio, t_prio, first):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, sw_prio)
        cpu.write_ppi_priority(PT, t_prio)
        cpu.write_ppi_enabler(0, 1 << SW | 1 << PT)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        raise_sw_and_timer(s, sw_word, cpu)
        second = PT if first == SW else SW
        assert cpu.cdia() == 0x20000000 | first
        # The other one does not beat the running priority until the drop.
        assert cpu.cdia() is None
        cpu.cdeoi()
        assert cpu.cdia() == 0x20000000 | second
        assert cpu.cdia() is None


def test_tie_between_two_timers_goes_to_the_lower_index(make_vm):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(VT, 9)
        cpu.write_ppi_priority(PT, 9)
        cpu.write_ppi_enabler(0, 1 << VT | 1 << PT)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        s.vcpu.timer_line("ptimer", 1)
        s.vcpu.timer_line("vtimer", 1)
        assert cpu.cdia() == 0x2000001B
        assert cpu.cdia() is None
        cpu.cdeoi()
        assert cpu.cdia() == 0x2000001E


# --- the priority mask and the running priority --------------------------------------------------

@pytest.mark.parametrize("pcr, prio, taken", [
    (5, 5, True), (5, 6, False), (5, 31, False), (0, 0, True), (0, 1, False),
    (31, 31, True), (30, 31, False), (16, 15, True),
])
def test_priority_mask(make_vm, sw_word, guest_ready, pcr, prio, taken):
    # Deliverable iff prio <= VPMR; on final the wake-up test (prio < VPMR + 1) agrees.
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu, prio=prio, pcr=pcr)
        assert cpu.wfi() is taken
        assert cpu.cdia() == (SW_INTID if taken else None)
        assert cpu.cdia() is None
    # Taken: nothing is pending any more. Not taken: the WFI put synced the shadow
    # priority, so KVM agrees that it cannot be delivered.
    assert s.vcpu.has_pending_irq() is False


@pytest.mark.parametrize("pcr, prio, wakes", [(5, 5, True), (5, 6, False), (0, 1, False),
                                              (30, 31, False), (31, 31, True)])
def test_masked_ppi_does_not_wake(make_vm, sw_word, guest_ready, pcr, prio, wakes):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu, prio=prio, pcr=pcr)
        assert cpu.wfi() is wakes
    assert s.vcpu.has_pending_irq() is wakes
    assert s.vcpu.pending_ppis() == (0x8, 0)


@pytest.mark.parametrize("active_prio, sw_prio, taken", [
    (4, 4, False), (4, 5, False), (4, 3, True), (0, 0, False), (1, 0, True), (31, 30, True),
])
def test_running_priority(make_vm, sw_word, active_prio, sw_prio, taken):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(PT, active_prio)
        cpu.write_ppi_priority(SW, sw_prio)
        cpu.write_ppi_enabler(0, 1 << SW | 1 << PT)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        s.vcpu.timer_line("ptimer", 1)
        assert cpu.cdia() == 0x2000001E          # now active at active_prio
        s.vm.irq_line(sw_word(0), 1)
        assert cpu.wfi() is taken
        assert cpu.cdia() == (SW_INTID if taken else None)
        # Dropping the running priority lets a blocked one through.
        if not taken:
            cpu.cdeoi()
            assert cpu.wfi() is True
            assert cpu.cdia() == SW_INTID
        assert cpu.cdia() is None


def test_cr0_disabled_silences_everything(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1, pmu=[0])
    s.vm.irq_line(sw_word(0), 1)
    s.vcpu.pmu_line(1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu, ppis=(SW, VT, PT, PMUIRQ))
        s.vcpu.timer_line("vtimer", 1)
        s.vcpu.timer_line("ptimer", 1)
        cpu.write_cr0(False)
        assert cpu.cdia() is None
        assert cpu.wfi() is False
        assert cpu.cdia() is None
    assert s.vcpu.has_pending_irq() is False
    # Everything is still pending; enabling the interface delivers it all.
    assert s.vcpu.pending_ppis() == (0x8 | 1 << PMUIRQ | 1 << VT | 1 << PT, 0)
    with s.vcpu.run() as cpu:
        cpu.write_cr0(True)
        # Equal priorities: each is taken after the previous priority drop, lowest index first.
        for intid in (SW_INTID, 0x20000017, 0x2000001B, 0x2000001E):
            assert cpu.cdia() == intid
            cpu.cdeoi()
        assert cpu.cdia() is None


# --- edges across entry and exit ----------------------------------------------------------------

def test_edge_injected_while_running_survives_the_fold(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        s.vm.irq_line(sw_word(0), 1)
        assert cpu.read_ppi_spendr(0) == 0
        assert cpu.cdia() is None
    assert s.vcpu.pending_ppis() == (0x8, 0)
    assert s.vcpu.has_pending_irq() is True
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_spendr(0) == 0x8
        assert cpu.cdia() == SW_INTID
        eoi(cpu, SW_INTID)
        assert cpu.cdia() is None


def test_edge_injected_after_ack_in_the_same_run_survives(make_vm, sw_word, guest_ready):
    # The final kernel hands the latch to PENDR on entry and ORs it back on exit, so an edge
    # raised after the guest took the previous one is not lost.
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() == SW_INTID
        s.vm.irq_line(sw_word(0), 1)
    assert s.vcpu.pending_ppis() == (0x8, 0)
    assert s.vcpu.active_ppis() == (0x8, 0)
    with s.vcpu.run() as cpu:
        assert cpu.cdia() is None       # still active
        eoi(cpu, SW_INTID)
        assert cpu.cdia() == SW_INTID
        eoi(cpu, SW_INTID)
        assert cpu.cdia() is None


def test_acknowledged_and_deactivated_edge_does_not_come_back(make_vm, sw_word, guest_ready):
    """final vgic_v5_flush_ppi_state clears the edge latch it hands to PENDR (v3 re-delivers
    the edge instead: tests/test_fidelity.py)."""
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() == SW_INTID
        eoi(cpu, SW_INTID)
    assert s.vcpu.pending_ppis() == (0, 0)
    assert s.vcpu.active_ppis() == (0, 0)
    for _ in range(2):
        with s.vcpu.run() as cpu:
            assert cpu.read_ppi_spendr(0) == 0
            assert cpu.cdia() is None
            assert cpu.wfi() is False


def test_acknowledged_not_deactivated_edge_stays_active(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() == SW_INTID
    assert s.vcpu.active_ppis() == (0x8, 0)
    assert s.vcpu.pending_ppis() == (0, 0)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_sactiver(0) == 0x8
        cpu.cddi(SW_INTID)
    assert s.vcpu.active_ppis() == (0, 0)


# --- level lines: timers and PMU ---------------------------------------------------------------

def test_vtimer_pending_while_high_and_again_after_eoi(make_vm):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << VT)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        assert cpu.cdia() is None
        s.vcpu.timer_line("vtimer", 1)
        assert cpu.read_ppi_spendr(0) == 1 << VT     # DVI: the line, live
        for _ in range(3):
            assert cpu.cdia() == 0x2000001B
            assert cpu.cdia() is None
            eoi(cpu, 0x2000001B)
        s.vcpu.timer_line("vtimer", 0)
        assert cpu.read_ppi_spendr(0) == 0
        assert cpu.cdia() is None
        assert cpu.wfi() is False
    assert s.vcpu.pending_ppis() == (0, 0)


def test_pmu_pending_while_high_and_again_after_eoi(make_vm):
    s = make_vm("final", 1, pmu=[0])
    s.vcpu.pmu_line(1)
    assert s.vcpu.pending_ppis() == (1 << PMUIRQ, 0)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << PMUIRQ)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        for _ in range(3):
            assert cpu.cdia() == 0x20000017
            assert cpu.cdia() is None
            eoi(cpu, 0x20000017)
        assert cpu.wfi() is True
        # Lowered while the guest runs: the guest sees it after the next exit/entry.
        s.vcpu.pmu_line(0)
        assert s.vcpu.pending_ppis() == (0, 0)
        assert cpu.wfi() is False
        assert cpu.cdia() is None
    assert s.vcpu.pending_ppis() == (0, 0)


def test_level_ppi_active_while_high_stays_pending(make_vm):
    s = make_vm("final", 1, pmu=[0])
    s.vcpu.pmu_line(1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 1 << PMUIRQ)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        assert cpu.cdia() == 0x20000017
    assert s.vcpu.active_ppis() == (1 << PMUIRQ, 0)
    assert s.vcpu.pending_ppis() == (1 << PMUIRQ, 0)


# --- without a device -------------------------------------------------------------------------

CPU_CALLS = {
    "write_ppi_enabler": (0, 8), "read_ppi_enabler": (0,), "read_ppi_spendr": (0,),
    "read_ppi_sactiver": (0,), "write_ppi_spendr": (0, 8), "write_ppi_cpendr": (0, 8),
    "write_ppi_sactiver": (0, 8), "write_ppi_cactiver": (0, 8), "write_ppi_priority": (3, 1),
    "read_ppi_priority": (3,), "write_cr0": (True,), "write_pcr": (31,), "cdia": (),
    "cdeoi": (), "cddi": (SW_INTID,), "wfi": (),
}


@pytest.mark.parametrize("name", sorted(CPU_CALLS))
@pytest.mark.parametrize("how", ["no-device", "test-mode"])
def test_no_device_undefined_instruction(kvm, name, how):
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    if how == "test-mode":
        vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5, uapi.KVM_CREATE_DEVICE_TEST)
    with vcpu.run() as cpu:
        with pytest.raises(gic5.UndefinedInstruction):
            getattr(cpu, name)(*CPU_CALLS[name])


# --- 5-bit priorities ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, stored", [(0, 0), (1, 1), (31, 31), (32, 0), (0x25, 5),
                                           (0xFF, 31), (0xE0, 0), (0x7F, 31)])
@pytest.mark.parametrize("ppi", [SW, VT, PT])
def test_priority_bits_above_five_dropped(make_vm, value, stored, ppi):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(ppi, value)
        assert cpu.read_ppi_priority(ppi) == stored
    # The image persists across exit and entry.
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_priority(ppi) == stored


@pytest.mark.parametrize("prio, pcr, taken", [(0x21, 1, True), (0x22, 1, False),
                                              (0xE5, 5, True), (0x26, 0xE5, False),
                                              (0x25, 0xE5, True)])
def test_dropped_bits_have_no_effect_on_delivery(make_vm, sw_word, guest_ready, prio, pcr, taken):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu, prio=prio, pcr=pcr)
        assert cpu.cdia() == (SW_INTID if taken else None)


@pytest.mark.parametrize("ppi", [0, 5, 22, 63, 64, 100, 127])
def test_priority_of_an_unimplemented_ppi_stays_zero(make_vm, ppi):
    # Hardware write: the PPIs final does not implement (everything outside the host mask,
    # and all of 64..127) keep priority 0.
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(ppi, 9)
        assert cpu.read_ppi_priority(ppi) == 0


@pytest.mark.parametrize("ppi, prio", [(128, 0), (-1, 0), (3, 256), (3, -1), (1000, 1)])
def test_priority_arguments_out_of_range(make_vm, ppi, prio):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        with pytest.raises(ValueError, match="PPI index must be 0..127|priority must be 0..255"):
            cpu.write_ppi_priority(ppi, prio)
        assert cpu.read_ppi_priority(3) == 0


@pytest.mark.parametrize("pcr", [256, -1])
def test_pcr_out_of_range(make_vm, pcr):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        with pytest.raises(ValueError, match="priority must be 0..255"):
            cpu.write_pcr(pcr)


# --- set/clear pending and active (hardware writes on final) ------------------------------------

def test_guest_sets_and_clears_pending(make_vm, guest_ready):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        cpu.write_ppi_spendr(0, 0x8)
        assert cpu.read_ppi_spendr(0) & 0x8
        cpu.write_ppi_cpendr(0, 0x8)
        assert cpu.read_ppi_spendr(0) & 0x8 == 0
        assert cpu.cdia() is None
        cpu.write_ppi_spendr(0, 0x8)
        assert cpu.cdia() == SW_INTID
        eoi(cpu, SW_INTID)
        cpu.write_ppi_spendr(0, 0x8)
    # A guest-pended edge is folded into the latch.
    assert s.vcpu.pending_ppis() == (0x8, 0)


def test_guest_clears_a_host_edge(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        cpu.write_ppi_cpendr(0, ALL)
        assert cpu.cdia() is None
    assert s.vcpu.pending_ppis() == (0, 0)


def test_guest_sets_and_clears_active(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        cpu.write_ppi_sactiver(0, 0x8)
        assert cpu.read_ppi_sactiver(0) == 0x8
        assert cpu.cdia() is None          # active: not acknowledged again
    assert s.vcpu.active_ppis() == (0x8, 0)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_cactiver(0, 0x8)
        assert cpu.read_ppi_sactiver(0) == 0
        assert cpu.cdia() == SW_INTID


def test_set_pending_limited_to_implemented_ppis(make_vm):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_spendr(0, 1 << 5 | 1 << 40)
        assert cpu.read_ppi_spendr(0) == 0
        cpu.write_ppi_spendr(1, ALL)
        assert cpu.read_ppi_spendr(1) == 0
        cpu.write_ppi_sactiver(1, ALL)
        assert cpu.read_ppi_sactiver(1) == 0


# --- cdeoi / cddi edge cases -------------------------------------------------------------------

@pytest.mark.parametrize("intid", [0x20000003, 0x2000001B, 0x60000003, 0x40000003, 3, 0,
                                   0x20000040, 0xFFFFFFFF])
def test_cddi_and_cdeoi_with_nothing_to_do_are_no_ops(make_vm, guest_ready, intid):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cddi(intid) is None
        assert cpu.cdeoi() is None
        assert cpu.read_ppi_sactiver(0) == 0


@pytest.mark.parametrize("intid", [0x60000003, 0x40000003, 3, 0x00000003 | 0x80000000,
                                   0x20000043, 0x20000083])
def test_cddi_of_a_non_ppi_intid_does_not_deactivate(make_vm, sw_word, guest_ready, intid):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        assert cpu.cdia() == SW_INTID
        cpu.cddi(intid)
        assert cpu.read_ppi_sactiver(0) == 0x8


def test_cdeoi_drops_only_the_highest_active_priority(make_vm, sw_word):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(PT, 6)
        cpu.write_ppi_priority(VT, 4)
        cpu.write_ppi_priority(SW, 5)
        cpu.write_ppi_enabler(0, 1 << PT | 1 << VT | 1 << SW)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        s.vcpu.timer_line("ptimer", 1)
        assert cpu.cdia() == 0x2000001E          # APR = {6}
        s.vcpu.timer_line("vtimer", 1)
        assert cpu.cdia() == 0x2000001B          # 4 beats 6: APR = {4, 6}
        s.vcpu.timer_line("vtimer", 0)           # (still active, no longer pending)
        cpu.cdeoi()                              # drops 4, not 6
        s.vm.irq_line(sw_word(0), 1)
        assert cpu.wfi() is True
        assert cpu.cdia() == SW_INTID            # 5 beats 6 (it would not beat 4)
        cpu.cdeoi()                              # drops 5
        assert cpu.cdia() is None                # the ptimer is active, running 6
        cpu.cdeoi()                              # drops 6
        cpu.cddi(0x2000001E)
        assert cpu.cdia() == 0x2000001E          # line still high: taken again
        assert cpu.cdia() is None


# --- wfi() and has_pending_irq() -----------------------------------------------------------------

@pytest.mark.parametrize("case, want", [
    ("nothing-pending", False),
    ("pending-enabled", True),
    ("pending-not-enabled", False),
    ("cr0-off", False),
    ("above-mask", False),
    ("at-mask", True),
    ("active-same-priority", False),
    ("already-acked", False),
])
def test_wfi_results(make_vm, sw_word, case, want):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 4)
        cpu.write_ppi_priority(VT, 4)
        # (Enabled before the edge is raised: a trapped ENABLER write is an exit and an
        # entry, which would hand a raised edge to PENDR at once.)
        enable = 0 if case == "pending-not-enabled" else 0x8
        cpu.write_ppi_enabler(0, enable | (1 << VT if case == "active-same-priority" else 0))
        cpu.write_pcr(3 if case == "above-mask" else 4)
        cpu.write_cr0(case != "cr0-off")
        if case != "nothing-pending":
            s.vm.irq_line(sw_word(0), 1)
        if case == "active-same-priority":
            # a vtimer at the same priority is running
            s.vcpu.timer_line("vtimer", 1)
            assert cpu.cdia() == 0x2000001B
        if case == "already-acked":
            cpu.wfi()
            assert cpu.cdia() == SW_INTID
            eoi(cpu, SW_INTID)
        assert cpu.wfi() is want
    assert s.vcpu.has_pending_irq() is want


def test_has_pending_irq_uses_shadow_priorities_synced_only_at_wfi(make_vm, sw_word,
                                                                  guest_ready):
    # The final kernel folds the guest's priorities into KVM's shadow only when the vCPU is
    # put while in WFI; until then has_pending_irq() sees the reset priority 0.
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu, prio=10, pcr=5)
    s.vm.irq_line(sw_word(0), 1)
    assert s.vcpu.has_pending_irq() is True      # stale shadow 0 < VPMR + 1
    with s.vcpu.run() as cpu:
        assert cpu.cdia() is None                # the hardware uses the real priority 10
        assert cpu.wfi() is False                # the put synced the shadow to 10
    assert s.vcpu.has_pending_irq() is False
    assert s.vcpu.pending_ppis() == (0x8, 0)


def test_has_pending_irq_uses_the_saved_vmcr(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    s.vm.irq_line(sw_word(0), 1)
    # Before any run: VMCR.EN = 0 (reset), nothing enabled.
    assert s.vcpu.has_pending_irq() is False
    with s.vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, 0x8)
    assert s.vcpu.has_pending_irq() is False     # EN still 0
    with s.vcpu.run() as cpu:
        cpu.write_cr0(True)
    assert s.vcpu.has_pending_irq() is True      # priority 0 < min(32, 0 + 1)
    with s.vcpu.run() as cpu:
        cpu.write_cr0(False)
    assert s.vcpu.has_pending_irq() is False


def test_has_pending_irq_sees_dvi_line_level(make_vm, guest_ready):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu, ppis=(VT,))
    assert s.vcpu.has_pending_irq() is False
    s.vcpu.timer_line("vtimer", 1)
    assert s.vcpu.has_pending_irq() is True
    s.vcpu.timer_line("vtimer", 0)
    assert s.vcpu.has_pending_irq() is False


def test_has_pending_irq_only_exposed_ppis(make_vm, guest_ready):
    # Q5 set-up: only SW_PPI exposed; a raised vtimer does not count.
    s = make_vm("final", 2)
    with s.vcpus[1].run():
        pass
    with s.vcpus[0].run() as cpu:
        guest_ready(cpu, ppis=(VT, SW))
    s.vcpus[0].timer_line("vtimer", 1)
    assert s.vcpus[0].pending_ppis() == (1 << VT, 0)
    assert s.vcpus[0].has_pending_irq() is False


@pytest.mark.parametrize("how", ["no-device", "uninitialised"])
def test_has_pending_irq_false_without_an_initialised_device(make_vm, how):
    s = make_vm("final", 1, device=how != "no-device", init=False)
    s.vcpu.timer_line("vtimer", 1)
    assert s.vcpu.has_pending_irq() is False


def test_inspection_between_runs_reflects_the_last_exit(make_vm, sw_word, guest_ready):
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        guest_ready(cpu)
        s.vm.irq_line(sw_word(0), 1)
        # KVM's own view already has the edge (the latch); active/enabled are as held.
        assert s.vcpu.pending_ppis() == (0x8, 0)
        assert s.vcpu.enabled_ppis() == (0x8, 0)
        cpu.wfi()
        assert cpu.cdia() == SW_INTID
    assert s.vcpu.active_ppis() == (0x8, 0)
    assert s.vcpu.pending_ppis() == (0, 0)
