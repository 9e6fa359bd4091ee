"""The guest-side rules as the kernel's own code has them (issue 12), one test per defect.

Rules this file keeps:
- Each test asserts the value the kernel code gives and names, in its docstring, the kernel
  function that settles it and the revision: "v2" is the v2 posting
  (20251219155222.1383109), "v3" the v3 posting (20260109170400.1585048), "final" mainline
  after the 7.1 fix batches (arch/arm64/kvm/vgic/vgic-v5.c, hyp/vgic-v5-sr.c, arch_timer.c).
- The values come from the kernel source, not from gic5's docs or code; where gic5 answered
  differently before, the docstring says what it answered.
- The last section holds the tests a mutation run showed missing: each one fails on a
  plausible wrong model (named in its docstring) that passed the rest of the suite.
"""

from __future__ import annotations

import errno

import pytest

from gic5 import uapi

PPI = uapi.KVM_ARM_IRQ_TYPE_PPI
SW = uapi.GICV5_ARCH_PPI_SW_PPI      # 3, edge
PMU = uapi.GICV5_ARCH_PPI_PMUIRQ     # 23
HP = uapi.GICV5_ARCH_PPI_CNTHP       # 26, implemented, no owner without NV
VT = uapi.GICV5_ARCH_PPI_CNTV        # 27, direct (DVI)
HV = uapi.GICV5_ARCH_PPI_CNTHV       # 28, implemented, never exposed on v3/final
PT = uapi.GICV5_ARCH_PPI_CNTP        # 30, direct (DVI)
SW_INTID = uapi.ppi_intid(SW)


def word(num, vcpu_id=0):
    return uapi.irq_word(PPI, vcpu_id, num)


def ready(cpu, ppis, prio=0, pcr=31):
    """CR0.EN on, PCR, the PPIs at priority prio, enabled (the ENABLER write traps)."""
    for ppi in ppis:
        cpu.write_ppi_priority(ppi, prio)
    cpu.write_ppi_enabler(0, sum(1 << p for p in ppis))
    cpu.write_pcr(pcr)
    cpu.write_cr0(True)


# --- 1. DVIR is the vCPU's DVI bitmap, not cut to the exposed set ------------------------------

@pytest.mark.parametrize("profile_", ["v2", "v3", "final"])
def test_1_dvir_is_not_masked_by_the_exposed_set(make_vm, profile_):
    """__vgic_v5_restore_ppi_state writes ICH_PPI_DVIR0 from vgic_ppi_dvir as it is (all
    revisions); vgic_v5_set_ppi_dvi set the vtimer's bit at vCPU 1's own first run
    (kvm_timer_enable -> kvm_vgic_map_phys_irq). On final, vCPU 1 running first exposes only
    SW_PPI for the VM, yet its guest sees its own vtimer line. (gic5 answered 0: DVIR was
    hw & exposed.)"""
    s = make_vm(profile_, 2)
    v0, v1 = s.vcpus
    v1.timer_line("vtimer", True)
    with v1.run() as cpu:
        assert cpu.read_ppi_spendr(0) & (1 << VT)
    if profile_ == "final":
        assert s.vm.exposed_ppis() == (1 << SW, 0)


# --- 2. ACTIVER at entry is the last exit's image -----------------------------------------------

def test_2_v3_acknowledged_vtimer_stays_active_across_exits(make_vm):
    """v3 19/36 vgic_v5_fold_ppi_state copies the exit ACTIVER into vgic_ppi_activer ("Re-inject
    the exit state as entry state next time!") and the restore writes it back: the guest's
    acknowledged vtimer is still active after an exit and an entry. (gic5 rebuilt ACTIVER from
    KVM's active flags, which v3's fold never sets for a DVI PPI: 0.)"""
    s = make_vm("v3", 1)
    s.vcpu.timer_line("vtimer", True)
    with s.vcpu.run() as cpu:
        ready(cpu, [VT])
        assert cpu.cdia() == uapi.ppi_intid(VT)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_sactiver(0) == 1 << VT


def test_2_final_sactiver_of_an_unexposed_ppi_survives_exit_and_entry(make_vm):
    """final vgic_v5_fold_ppi_state: bitmap_copy(vgic_ppi_activer, activer_exit) for the next
    entry; the untrapped SACTIVER write of the implemented, unexposed PPI 28 is in the exit
    image, so it reads active again after exit and entry. KVM's own active flag is folded
    only for exposed PPIs. (gic5 answered 0.)"""
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        cpu.write_ppi_sactiver(0, 1 << HV)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_sactiver(0) == 1 << HV
    assert s.vcpu.active_ppis() == (0, 0)


# --- 3. v2's wake check has no "anything pending, nothing active" shortcut -----------------------

def test_3_v2_level_ppi_not_enabled_does_not_wake(make_vm):
    """v2 19/36 vgic_v5_has_pending_ppi: its shortcut needs enabler_exit & pendr_exit non-empty
    and a limit above 0x1f. PPI 23 raised by userspace on a vCPU without a PMU (v2 has no
    mask gate), the guest enabling nothing, EN = 0: nothing wakes. (gic5 answered True.)"""
    s = make_vm("v2", 1)
    s.vm.irq_line(word(PMU), 1)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_spendr(0) == 1 << PMU
        assert cpu.wfi() is False
    assert s.vcpu.has_pending_irq() is False


# --- 4. v2 and v3: an effective priority limit of 0 means nothing is pending ---------------------

@pytest.mark.parametrize("profile_", ["v2", "v3", "final"])
def test_4_limit_zero_means_nothing_pending(make_vm, profile_):
    """vgic_v5_has_pending_ppi, every revision: "if (!priority_mask) return false;" before the
    loop. With priority 0 active the limit min(ctz(APR), VPMR + 1) is 0, so a pending, enabled
    PPI of priority 0 does not wake v2/v3 either, although their compare is `<=`. (gic5
    answered True on v2 and v3.)"""
    s = make_vm(profile_, 1)
    if profile_ == "v2":
        # v2: a level PPI userspace drives, taken at priority 0, stays pending (Level)
        s.vm.irq_line(word(HP), 1)
        with s.vcpu.run() as cpu:
            ready(cpu, [HP])
            assert cpu.cdia() == uapi.ppi_intid(HP)
            assert cpu.wfi() is False
    else:
        # v3/final: the vtimer taken at priority 0 (its line then drops), SW_PPI raised
        s.vcpu.timer_line("vtimer", True)
        with s.vcpu.run() as cpu:
            ready(cpu, [SW, VT])
            assert cpu.cdia() == uapi.ppi_intid(VT)
            s.vcpu.timer_line("vtimer", False)
            s.vm.irq_line(word(SW), 1)
            assert cpu.wfi() is False
            assert cpu.cdia() is None
    assert s.vcpu.vgic_pending_irq() is False
    assert s.vcpu.has_pending_irq() is False


# --- 5. v2 and v3 re-deliver a taken edge --------------------------------------------------------

def test_5_v3_redelivers_a_taken_sw_ppi_edge(make_vm):
    """v3 19/36: vgic_v5_fold_ppi_state ORs the exit PENDR into the latch ("This is an OR to
    avoid losing incoming edges!") and vgic_v5_flush_ppi_state never clears it (fixes-1
    170a77b4185a added the clear), so the edge the guest took is pending again at every later
    entry. (gic5 folded by assignment: nothing pending.)"""
    s = make_vm("v3", 1)
    with s.vcpu.run() as cpu:
        ready(cpu, [SW])
    s.vm.irq_line(word(SW), 1)
    with s.vcpu.run() as cpu:
        assert cpu.cdia() == SW_INTID
        cpu.cddi(SW_INTID)
        cpu.cdeoi()
        assert cpu.cdia() is None
    for _ in range(2):
        with s.vcpu.run() as cpu:
            assert cpu.read_ppi_spendr(0) == 1 << SW
            assert cpu.cdia() == SW_INTID
            cpu.cddi(SW_INTID)
            cpu.cdeoi()
    assert s.vcpu.pending_ppis() == (1 << SW, 0)


def test_5_v2_sw_ppi_is_never_taken_and_stays_pending(make_vm):
    """v2: the same OR fold, but SW_PPI is not exposed (21/36's inverted test): the guest
    cannot enable it, so the edge is never taken and stays pending in the shadow."""
    s = make_vm("v2", 1)
    s.vm.irq_line(word(SW), 1)
    for _ in range(2):
        with s.vcpu.run() as cpu:
            ready(cpu, [SW])
            assert cpu.read_ppi_enabler(0) == 0
            assert cpu.cdia() is None
    assert s.vcpu.pending_ppis() == (1 << SW, 0)


# --- 6. the changed-bits fold skips DVI PPIs (v2 as v3) -------------------------------------------

@pytest.mark.parametrize("profile_, folded", [("v2", False), ("v3", False), ("final", True)])
def test_6_changed_bits_fold_skips_dvi_ppis(make_vm, profile_, folded):
    """vgic_v5_fold_ppi_state: v2 18/36 and v3 19/36 remove DVI PPIs from the changed bits
    ("changed_bits &= ~cpu_if->vgic_ppi_dvir"), so KVM's active flag of the acknowledged
    vtimer stays clear; final's fold has no DVI case and folds it. (gic5's v2 folded it.)"""
    s = make_vm(profile_, 1)
    s.vcpu.timer_line("vtimer", True)
    with s.vcpu.run() as cpu:
        ready(cpu, [VT])
        assert cpu.cdia() == uapi.ppi_intid(VT)
    assert s.vcpu.active_ppis() == ((1 << VT, 0) if folded else (0, 0))


# --- 7. v2's wake check reads the exit images ------------------------------------------------------

def test_7_v2_level_raised_after_the_exit_counts_from_the_next_run(make_vm):
    """v2 19/36 vgic_v5_has_pending_ppi tests vgic_ich_ppi_enabler_exit & vgic_ppi_pendr_exit,
    the images of the last exit: a level PPI raised after it does not count until a run has
    carried it into PENDR. (gic5 read KVM's current state: True at once.)"""
    s = make_vm("v2", 1)
    with s.vcpu.run() as cpu:
        ready(cpu, [HP])
    s.vm.irq_line(word(HP), 1)
    assert s.vcpu.has_pending_irq() is False
    with s.vcpu.run():
        pass
    assert s.vcpu.has_pending_irq() is True


# --- 8. v2 and v3 wake on a timer that should fire -------------------------------------------------

@pytest.mark.parametrize("profile_, wakes", [("v2", True), ("v3", True), ("final", False)])
@pytest.mark.parametrize("timer", ["vtimer", "ptimer"])
def test_8_a_firing_timer_wakes_v2_and_v3(make_vm, profile_, wakes, timer):
    """kvm_vcpu_check_block -> kvm_cpu_has_pending_timer: v2/v3 26/36 return true when the
    vtimer or the ptimer should fire, whatever the vGIC says (the guest enabled nothing);
    fixes-1 fbcbf259d97d ("Remove evaluation of timer state in kvm_cpu_has_pending_timer()")
    left only the WFIT deadline. (gic5 answered False on every profile.)"""
    s = make_vm(profile_, 1)
    with s.vcpu.run() as cpu:
        s.vcpu.timer_line(timer, True)
        assert cpu.wfi() is wakes
    assert s.vcpu.has_pending_irq() is wakes
    assert s.vcpu.vgic_pending_irq() is False
    s.vcpu.timer_line(timer, False)
    assert s.vcpu.has_pending_irq() is False


# --- 9. v2 and v3: the vGIC check never sees a directly injected timer ----------------------------

@pytest.mark.parametrize("profile_, sees", [("v2", False), ("v3", False), ("final", True)])
def test_9_vgic_check_and_the_dvi_timer(make_vm, profile_, sees):
    """kvm_vgic_vcpu_pending_irq (vgic_v5_has_pending_ppi): v2's set_pending_state skips DVI
    PPIs ("Skip injecting the state altogether") and v3's timer never injects a direct timer,
    so their shadow never holds the vtimer; final samples the physical line
    (irq->hw ? vgic_get_phys_line_level(irq) : irq_is_pending(irq)). The vtimer enabled at
    priority 0: only final's vGIC check sees it (v2/v3 still wake, through the timer)."""
    s = make_vm(profile_, 1)
    with s.vcpu.run() as cpu:
        ready(cpu, [VT])
        s.vcpu.timer_line("vtimer", True)
        assert cpu.wfi() is True
    assert s.vcpu.vgic_pending_irq() is sees
    assert s.vcpu.has_pending_irq() is True


# --- 10. v2 and v3: the entry PENDR is the unmasked shadow --------------------------------------

def test_10_v2_sw_ppi_reads_pending_although_not_exposed(make_vm):
    """v2 14/36 __vgic_v5_restore_ppi_state writes vgic_ppi_pendr_entry & ~vgic_ppi_dvir, the
    raw shadow: the SW_PPI userspace raised (no gate on v2) reads pending in the guest's
    SPENDR although v2 does not expose it. (gic5 cut PENDR to the exposed set: 0.)"""
    s = make_vm("v2", 1)
    s.vm.irq_line(word(SW), 1)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_spendr(0) == 1 << SW
    assert s.vm.exposed_ppis()[0] & (1 << SW) == 0


@pytest.mark.parametrize("profile_, seen", [("v3", True), ("final", False)])
def test_10_v3_posting_pendr_is_not_cut_to_the_exposed_set(make_vm, profile_, seen):
    """v3 19/36 vgic_v5_flush_ppi_state copies the raw shadow to pendr_entry (the merged code
    and final iterate the exposed PPIs instead). vCPU 1 with a PMU runs first, so the VM
    exposes only SW_PPI (vCPU 0 owns no PMU), and its PMU line is high: v3's guest sees PPI 23
    pending, final's does not."""
    s = make_vm(profile_, 2, pmu=[1])
    v0, v1 = s.vcpus
    v1.pmu_line(True)
    with v1.run() as cpu:
        assert bool(cpu.read_ppi_spendr(0) & (1 << PMU)) is seen
    assert s.vm.exposed_ppis() == (1 << SW, 0)


# --- 11. a Level PPI's pending bit is read-only to the guest -------------------------------------

@pytest.mark.parametrize("profile_", ["v3", "final"])
def test_11_spendr_cpendr_cannot_change_a_level_ppi(make_vm, profile_):
    """v3/final trap only ENABLER writes (__compute_ich_hfgwtr), so SPENDR/CPENDR reach the
    hardware, where every PPI but SW_PPI has the Level handling mode (QEMU PPI_HMR0_RESET)
    and a Level PPI's pending bit is read-only (gic_ppi_spend_write / gic_ppi_cpend_write
    mask the write with the HM bits). SW_PPI (Edge) is writable. (gic5 set and cleared the
    level bits too.)"""
    s = make_vm(profile_, 1, pmu=[0])
    s.vcpu.pmu_line(True)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_spendr(0) == 1 << PMU
        cpu.write_ppi_cpendr(0, 1 << PMU)
        cpu.write_ppi_spendr(0, 1 << HP)
        assert cpu.read_ppi_spendr(0) == 1 << PMU
        cpu.write_ppi_spendr(0, 1 << SW)
        assert cpu.read_ppi_spendr(0) == 1 << PMU | 1 << SW
        cpu.write_ppi_cpendr(0, 1 << SW)
        assert cpu.read_ppi_spendr(0) == 1 << PMU


def test_11_v2_pending_writes_have_no_effect(make_vm):
    """v2 22/36 access_gicv5_ppi_pendr ORs into / clears from vgic_ppi_pendr_entry after the
    trap's exit, and the next vgic_v5_flush_ppi_state overwrites pendr_entry with the shadow:
    neither write changes what the guest sees, Level or not."""
    s = make_vm("v2", 1)
    s.vm.irq_line(word(HP), 1)
    with s.vcpu.run() as cpu:
        assert cpu.read_ppi_spendr(0) == 1 << HP
        cpu.write_ppi_cpendr(0, 1 << HP)
        assert cpu.read_ppi_spendr(0) == 1 << HP
        cpu.write_ppi_spendr(0, 1 << PMU)
        assert cpu.read_ppi_spendr(0) == 1 << HP


# --- 12. KVM_IRQ_LINE for a PPI before CTRL_INIT ----------------------------------------------------

@pytest.mark.parametrize("profile_, code", [("v2", errno.EBUSY), ("v3", errno.EINVAL),
                                            ("final", errno.EBUSY)])
@pytest.mark.parametrize("vcpu_id, num", [(0, SW), (9, SW), (0, 64), (0, 0xFFFF)])
def test_12_ppi_before_ctrl_init(make_vm, fails, profile_, code, vcpu_id, num):
    """kvm_vm_ioctl_irq_line (arch/arm64/kvm/arm.c) with a V5 device but no CTRL_INIT. final
    follows mainline 7.2/7.3, where 1a8685ed8cd1 ("KVM: arm64: vgic-v2: Force vgic init on
    injection outside the run loop", merged with the kvmarm-7.2 tag, 751d041a13bd) calls
    vgic_lazy_init first, which answers EBUSY for any model but V2: before the vCPU lookup,
    the range and the mask gate. v3's 36/36 gates on the still-empty mask first (EINVAL, a
    missing vCPU or a range error being EINVAL too); v2 has no gate, and its
    kvm_vgic_inject_irq's vgic_lazy_init answers EBUSY once the lookup and the range pass.
    (gic5 answered EINVAL on final.)"""
    s = make_vm(profile_, 1, init=False)
    if profile_ != "final" and (vcpu_id != 0 or num >= s.vm.nr_ppis):
        code = errno.EINVAL
    with fails(code):
        s.vm.irq_line(word(num, vcpu_id), 1)
    assert s.vcpu.pending_ppis() == (0, 0)


# --- the tests a mutation run showed missing ------------------------------------------------------

def test_cdeoi_drops_only_the_highest_of_nested_active_priorities(make_vm):
    """GIC CDEOI (QEMU gic_cdeoi_write: "apr &= apr - 1"): with priorities {4, 8} active after
    nested acknowledges, one CDEOI leaves 8 running, so SW_PPI at priority 10 is neither
    acknowledged nor wakes the vCPU (final vgic_v5_has_pending_ppi: 10 < min(8, 32) fails).
    Mutant that passed before: a CDEOI clearing the whole APR."""
    s = make_vm("final", 1)
    with s.vcpu.run() as cpu:
        ready(cpu, [SW])
        cpu.write_ppi_priority(SW, 10)
        cpu.write_ppi_priority(VT, 8)
        cpu.write_ppi_priority(PT, 4)
        cpu.write_ppi_enabler(0, 1 << SW | 1 << VT | 1 << PT)
        s.vcpu.timer_line("vtimer", True)
        assert cpu.cdia() == uapi.ppi_intid(VT)      # APR {8}
        s.vcpu.timer_line("ptimer", True)
        assert cpu.cdia() == uapi.ppi_intid(PT)      # 4 preempts 8: APR {4, 8}
        s.vcpu.timer_line("vtimer", False)
        s.vcpu.timer_line("ptimer", False)
        cpu.cddi(uapi.ppi_intid(PT))
        cpu.cdeoi()                                  # drops 4 only
        s.vm.irq_line(word(SW), 1)
        assert cpu.wfi() is False                    # 8 still running
        assert cpu.cdia() is None
        cpu.cddi(uapi.ppi_intid(VT))
        cpu.cdeoi()                                  # drops 8
        assert cpu.cdia() == SW_INTID


def test_v2_syncs_priorities_at_the_check_not_at_the_put(make_vm):
    """v2 19/36 vgic_v5_has_pending_ppi calls vgic_v5_sync_ppi_priorities itself (v2's
    vgic_v5_put has no sync): has_pending_irq() outside any WFI, with priority 5 active, uses
    the priority the guest wrote last. Mutant that passed before: v2 syncing only at the WFI
    put (the shadow stays 0, which would pass the limit 5)."""
    s = make_vm("v2", 1)
    s.vm.irq_line(word(HP), 1)
    s.vcpu.timer_line("vtimer", True)
    with s.vcpu.run() as cpu:
        ready(cpu, [HP, VT])
        cpu.write_ppi_priority(VT, 5)
        cpu.write_ppi_priority(HP, 10)
        assert cpu.cdia() == uapi.ppi_intid(VT)      # APR {5}
        s.vcpu.timer_line("vtimer", False)
    assert s.vcpu.has_pending_irq() is False         # 10 <= 5 fails
    with s.vcpu.run() as cpu:
        cpu.write_ppi_priority(HP, 3)
    assert s.vcpu.has_pending_irq() is True          # 3 <= 5, no WFI in between


@pytest.mark.parametrize("profile_", ["v3", "final"])
def test_v3_final_sync_priorities_only_at_a_wfi_put(make_vm, profile_):
    """vgic_v5_put with IN_WFI (v3 21/36, final) syncs the exposed PPIs' shadow priorities;
    outside WFI the check uses the stale shadow. SW_PPI at image priority 10 with priority 5
    active: the stale shadow 0 wakes, the synced 10 does not."""
    s = make_vm(profile_, 1)
    s.vcpu.timer_line("vtimer", True)
    with s.vcpu.run() as cpu:
        ready(cpu, [SW, VT])
        cpu.write_ppi_priority(VT, 5)
        cpu.write_ppi_priority(SW, 10)
        assert cpu.cdia() == uapi.ppi_intid(VT)      # APR {5}
        s.vcpu.timer_line("vtimer", False)
        s.vm.irq_line(word(SW), 1)
    assert s.vcpu.vgic_pending_irq() is True         # shadow priority still 0
    with s.vcpu.run() as cpu:
        assert cpu.wfi() is False                    # the put synced 10
    assert s.vcpu.vgic_pending_irq() is False


@pytest.mark.parametrize("profile_", ["v2", "v3"])
def test_changed_bits_fold_ors_pending_only_for_edge_ppis(make_vm, profile_):
    """v2 18/36 / v3 19/36 vgic_v5_fold_ppi_state: "if (irq->config == VGIC_CONFIG_EDGE)
    irq->pending_latch |= ...". The guest takes the PMU's level PPI (its active bit changes,
    its PENDR bit stays set), then the PMU line drops: KVM holds nothing pending. Mutant that
    passed before: the fold latching a changed level PPI's PENDR bit."""
    s = make_vm(profile_, 1, pmu=[0])
    s.vcpu.pmu_line(True)
    with s.vcpu.run() as cpu:
        ready(cpu, [PMU])
        assert cpu.cdia() == uapi.ppi_intid(PMU)
        assert cpu.read_ppi_spendr(0) & (1 << PMU)   # Level: still pending after CDIA
        s.vcpu.pmu_line(False)
    assert s.vcpu.pending_ppis() == (0, 0)
    assert s.vcpu.active_ppis() == (1 << PMU, 0)   # the active bit changed: folded


def test_v2_enable_reaches_kvm_only_through_a_changed_bit(make_vm):
    """v2 22/36 access_gicv5_ppi_enabler writes vgic_ich_ppi_enabler_entry only, and the fold
    assigns irq->enabled only for bits whose image changed (18/36): an enable KVM never sees
    until the PPI's active or pending bit changes at an exit."""
    s = make_vm("v2", 1)
    s.vm.irq_line(word(HP), 1)
    with s.vcpu.run() as cpu:
        ready(cpu, [HP])
        assert cpu.read_ppi_enabler(0) == 1 << HP
    assert s.vcpu.enabled_ppis() == (0, 0)
    with s.vcpu.run() as cpu:
        assert cpu.cdia() == uapi.ppi_intid(HP)      # ACTIVER changes
    assert s.vcpu.enabled_ppis() == (1 << HP, 0)
    assert s.vcpu.active_ppis() == (1 << HP, 0)


@pytest.mark.parametrize("profile_", ["v3", "final"])
def test_apr_is_saved_at_the_put_not_at_a_trapped_exit(make_vm, profile_):
    """__vgic_v5_save_state saves ICH_VMCR_EL2 at every exit, but ICH_APR_EL2 is saved only by
    vgic_v5_put (__vgic_v5_save_apr), and a trapped register write is an exit handled inside
    KVM_RUN, with no put: the vGIC check keeps reading the APR of the last put. SW_PPI taken
    at priority 0, then a trapped ENABLER write: the saved APR is still empty, so the vtimer
    (priority 0, line high) counts; once the run ends (a put), priority 0 active makes the
    limit 0."""
    s = make_vm(profile_, 1)
    s.vm.irq_line(word(SW), 1)
    with s.vcpu.run() as cpu:
        ready(cpu, [SW, VT])
        assert cpu.cdia() == SW_INTID                # APR {0}, live
        s.vcpu.timer_line("vtimer", True)
        cpu.write_ppi_enabler(0, 1 << SW | 1 << VT)  # trapped: exit, handler, entry
        # final: the vtimer's line; v3: SW_PPI, whose shadow bit nothing clears
        assert s.vcpu.vgic_pending_irq() is True
        assert cpu.read_ppi_sactiver(0) == 1 << SW
    assert s.vcpu.vgic_pending_irq() is False        # the put saved APR {0}: limit 0
