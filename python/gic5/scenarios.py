"""gic5-diff's built-in scenarios: one per row of the spec's table 9.2, importable.

Rules this module keeps:
- Each scenario is a plain function ``scenario(kvm)`` against the public API, registered in
  ``BUILTINS`` under its name by ``@_builtin`` (with the host it needs, if any), in the order
  gic5-diff runs them. Its docstring says what it shows under each profile; the tests in
  tests/test_diff.py pin the kernel's values.
- A scenario makes no try/except of its own: it runs under a recorded ``kvm``
  (gic5.recording), which records kernel errors and goes on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

from . import uapi
from .kvm import Host

__all__ = ["Scenario", "BUILTINS"]

# --- scenarios -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """A named ``scenario(kvm)`` with the host the model profiles run it on."""

    name: str
    func: Callable[[Any], Any]
    host: Host | None = None
    doc: str = ""


BUILTINS: dict[str, Scenario] = {}


def _builtin(host: Host | None = None) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    def register(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        doc = " ".join((func.__doc__ or "").split("\n\n")[0].split())
        BUILTINS[func.__name__] = Scenario(func.__name__, func, host, doc)
        return func
    return register


GRP_CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
SW = uapi.GICV5_ARCH_PPI_SW_PPI
VT = uapi.GICV5_ARCH_PPI_CNTV
SW_INTID = uapi.ppi_intid(SW)
ALL = (1 << 64) - 1


def _ppi(num: int, vcpu_id: int = 0) -> int:
    return uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, vcpu_id, num)


def _get_userspace_ppis(dev: Any) -> None:
    dev.get_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, bytearray(16))


# Where a 7.4 VMM puts the IRS (the kernel selftest's GICV5_IRS_CONFIG_BASE_GPA).
IRS_GPA = 0x8000000


def _set_irs(dev: Any, base: int = IRS_GPA) -> None:
    # The same call under every column, so the tables line up: the PPI-only kernels have no
    # ADDR group (ENXIO); 7.4 needs the IRS base before the first KVM_RUN.
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                 base.to_bytes(8, sys.byteorder))


def _vm_with_device(kvm: Any, nr_vcpus: int = 1, init: bool = True,
                    irs: bool = True) -> tuple[Any, list[Any], Any]:
    vm = kvm.create_vm()
    vcpus = [vm.create_vcpu(i) for i in range(nr_vcpus)]
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    if irs:
        _set_irs(dev)
    if init:
        dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    return vm, vcpus, dev


@_builtin()
def userspace_ppis(kvm: Any) -> None:
    """USERSPACE_PPIS before and after CTRL_INIT (spec 5.1/5.2): v2 stores the PPI index 3 as
    a bitmap (bits 0 and 1) and ANDs it with the implemented mask, giving {0x0, 0x0} on the
    default host; v3, final and 7.4 report SW_PPI, {0x8, 0x0}."""
    vm, _, dev = _vm_with_device(kvm, init=False, irs=False)
    _get_userspace_ppis(dev)
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    _get_userspace_ppis(dev)


@_builtin()
def selftest_round_trip(kvm: Any) -> None:
    """The kernel selftest's SW_PPI round trip: the guest enables SW_PPI, userspace raises it,
    the guest acknowledges, deactivates and drops priority. On v2 SW_PPI is never exposed
    (inverted finalize test), so the enable reads back 0 and the guest never takes the edge.
    On v3 the taken edge comes back at the last run: its fold ORs into a latch that nothing
    clears (the fix, "Transfer edge pending state to ICH_PPI_PENDRx_EL2", came later)."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    _get_userspace_ppis(dev)
    with vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 0)
        cpu.write_ppi_enabler(0, 1 << SW)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        cpu.read_ppi_enabler(0)
    vm.irq_line(_ppi(SW), 1)
    with vcpu.run() as cpu:
        cpu.cdia()
        cpu.cddi(SW_INTID)
        cpu.cdeoi()
    vm.irq_line(_ppi(SW), 0)
    with vcpu.run() as cpu:
        cpu.cdia()


@_builtin()
def irq_line_gate(kvm: Any) -> None:
    """KVM_IRQ_LINE's PPI checks (spec 6.1, 10.12): v2 has no mask gate (any id below 128,
    EBUSY before INIT); v3 gates on USERSPACE_PPIS (only 3; EINVAL before INIT, the mask being
    empty); final also cuts the range to 64, and answers EBUSY before INIT (mainline 7.2 calls
    vgic_lazy_init before any check), as does 7.4."""
    vm, (vcpu,), dev = _vm_with_device(kvm, init=False, irs=False)
    vm.irq_line(_ppi(SW), 1)
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    for num in (0, SW, VT, 63, 64, 127, 128):
        vm.irq_line(_ppi(num), 1)
    vcpu.pending_ppis()


@_builtin()
def exposure(kvm: Any) -> None:
    """The exposed set computed at the first KVM_RUN (spec 7.1): v2's inverted test exposes
    every implemented PPI except the unowned SW_PPI; v3/final expose the PPIs vCPU 0 owns plus
    SW_PPI. The guest writes all-ones to both ENABLER words and reads back what stuck."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.write_ppi_enabler(1, ALL)
        cpu.read_ppi_enabler(0)
        cpu.read_ppi_enabler(1)
    vm.exposed_ppis()
    vcpu.enabled_ppis()


@_builtin()
def exposure_order(kvm: Any) -> None:
    """Run vCPU 1 before vCPU 0 (spec 7.1, Q5): final finalizes once, from vCPU 0 before its
    timers have owners (only SW_PPI); v3 recomputes at each vCPU's first run; v2 is per vCPU;
    7.4 finalizes once from the vCPU that runs first (vCPU 1, whose timers it exposes)."""
    vm, (vcpu0, vcpu1), dev = _vm_with_device(kvm, nr_vcpus=2)
    with vcpu1.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.read_ppi_enabler(0)
    vm.exposed_ppis()
    with vcpu0.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.read_ppi_enabler(0)
    vm.exposed_ppis()


@_builtin()
def wake_compare(kvm: Any) -> None:
    """The WFI block check (spec 7.6, 11): SW_PPI pending at priority VPMR + 1 (on v2, which
    never exposes SW_PPI, the level PPI 26 its userspace may drive; EINVAL elsewhere) wakes
    v2 and v3 (`<=`) but not final (`<`); at VPMR + 2 nothing wakes (v2 has no "nothing
    active" fast path); a vtimer line the guest never enabled still wakes v2 and v3, whose
    kvm_cpu_has_pending_timer wakes on a timer that should fire; with the CPU interface
    disabled (CR0.EN = 0) only final, which checks EN, stays asleep. The guest can take none
    of them (CDIA answers nothing)."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    vm.irq_line(_ppi(SW), 1)
    vm.irq_line(_ppi(uapi.GICV5_ARCH_PPI_CNTHP), 1)
    both = 1 << SW | 1 << uapi.GICV5_ARCH_PPI_CNTHP
    with vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 5)
        cpu.write_ppi_priority(uapi.GICV5_ARCH_PPI_CNTHP, 5)
        cpu.write_ppi_enabler(0, both)
        cpu.write_pcr(4)
        cpu.write_cr0(True)
        cpu.wfi()
        cpu.cdia()
        cpu.write_pcr(3)
        cpu.wfi()
        vcpu.timer_line("vtimer", True)
        cpu.wfi()
        cpu.write_pcr(31)
        cpu.write_cr0(False)
        cpu.wfi()
        cpu.cdia()
    vcpu.has_pending_irq()


@_builtin()
def edge_latch(kvm: Any) -> None:
    """A second SW_PPI edge raised while the guest runs, after it acknowledged the first
    (spec 7.4/7.5, 11): final moves the edge to hardware on entry and ORs it back on exit, so
    the new edge is kept; v3 ORs too, but its latch was never cleared at entry, so the edge
    is there whether or not the second one came (it re-delivers every taken edge). v2 never
    exposes SW_PPI: the guest never takes it, and the latch just sits."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    vm.irq_line(_ppi(SW), 1)
    with vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 0)
        cpu.write_ppi_enabler(0, 1 << SW)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        cpu.cdia()
        cpu.cddi(SW_INTID)
        cpu.cdeoi()
        vm.irq_line(_ppi(SW), 0)
        vm.irq_line(_ppi(SW), 1)
    vcpu.pending_ppis()
    with vcpu.run() as cpu:
        cpu.cdia()


@_builtin(host=Host(impl_ppis=(ALL, ALL)))
def ppi_count(kvm: Any) -> None:
    """128 PPIs (v2, v3) against 64 (final), on a host implementing all 128: a timer attribute
    naming PPI 64, KVM_IRQ_LINE of PPI 64, and the upper register bank (ENABLER1, PRIORITYR of
    PPI 64, SPENDR1). Final accepts and ignores ENABLER1 and has no upper bank; v3 has one but
    exposes none of it; v2 exposes everything implemented, and the level PPI 64 it accepted
    reaches the guest's PENDR1. The SPENDR1 write changes nothing: PPI 65 is Level (its
    pending bit is read-only), and v2's trap handler writes an image its flush rebuilds."""
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    _set_irs(dev)
    vcpu.set_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, uapi.KVM_ARM_VCPU_TIMER_IRQ_HVTIMER,
                  (uapi.ppi_intid(64)).to_bytes(4, sys.byteorder))
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    vm.irq_line(_ppi(64), 1)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(1, ALL)
        cpu.read_ppi_enabler(1)
        cpu.write_ppi_priority(64, 9)
        cpu.read_ppi_priority(64)
        cpu.write_ppi_spendr(1, 1 << 1)
        cpu.read_ppi_spendr(1)
    _get_userspace_ppis(dev)


@_builtin()
def trapped_regs(kvm: Any) -> None:
    """Guest register writes (spec 7.3, 11): v2 traps pending, active and priority writes and
    masks them by the exposed set (SW_PPI is not exposed there, PPI 26 is); its pending
    handler writes an entry image that the next flush rebuilds, so SPENDR does nothing. v3 and
    final send them to the hardware, which keeps the bits of every implemented PPI, except a
    Level PPI's pending bit (PPI 26), which is read-only."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    both = 1 << SW | 1 << uapi.GICV5_ARCH_PPI_CNTHP
    with vcpu.run() as cpu:
        cpu.write_ppi_spendr(0, both)
        cpu.read_ppi_spendr(0)
        cpu.write_ppi_cpendr(0, ALL)
        cpu.read_ppi_spendr(0)
        cpu.write_ppi_sactiver(0, both)
        cpu.read_ppi_sactiver(0)
        cpu.write_ppi_cactiver(0, ALL)
        cpu.read_ppi_sactiver(0)
        cpu.write_ppi_priority(SW, 7)
        cpu.read_ppi_priority(SW)
        cpu.write_ppi_priority(uapi.GICV5_ARCH_PPI_CNTHP, 7)
        cpu.read_ppi_priority(uapi.GICV5_ARCH_PPI_CNTHP)


@_builtin(host=Host(impl_ppis=(0x5C80000B, 0)))
def doorbell_probe(kvm: Any) -> None:
    """A host whose probe reports PPIs 0 and 1 (the doorbells; spec 3, 5.2, Q7): v2 then
    tells userspace that PPIs 0 and 1 are drivable ({0x3, 0x0}), accepts them on
    KVM_IRQ_LINE and exposes them to the guest; v3/final report and gate on SW_PPI only."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    _get_userspace_ppis(dev)
    vm.irq_line(_ppi(uapi.GICV5_ARCH_PPI_S_DB_PPI), 1)
    vm.irq_line(_ppi(SW), 1)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.read_ppi_enabler(0)
    vm.exposed_ppis()


# --- what 7.4 (kvm-arm64/gicv5-7.4) changed ---------------------------------------------------

@_builtin()
def vcpu1_first_timers(kvm: Any) -> None:
    """The vCPU-1-first hazard (7.4 spec 1.5, kvmtool starts every vCPU thread at once): both
    guests enable their vtimer and its line is high, but vCPU 1 runs first. final builds the
    VM's exposed set once from vCPU 0, whose timers get owners only at its own first run, so
    the set is SW_PPI alone and neither guest ever sees its timer; 7.4 builds it from the vCPU
    that runs first (vgic_v5_finalize_ppi_state(vcpu)), so both take it. v3 recomputes at
    every first run (vCPU 0's, later, fixes it); v2 exposes every implemented PPI but SW_PPI."""
    vm, (vcpu0, vcpu1), dev = _vm_with_device(kvm, nr_vcpus=2)
    for vcpu in (vcpu1, vcpu0):
        vcpu.timer_line("vtimer", True)
        with vcpu.run() as cpu:
            cpu.write_ppi_priority(VT, 0)
            cpu.write_ppi_enabler(0, 1 << VT)
            cpu.read_ppi_enabler(0)
            cpu.write_pcr(31)
            cpu.write_cr0(True)
        vm.exposed_ppis()
        with vcpu.run() as cpu:
            cpu.cdia()


@_builtin()
def init_without_vcpus(kvm: Any) -> None:
    """CTRL_INIT on a VM with no vCPU (7.4 spec 1.3): v2, v3 and final initialise it, and the
    VM can then never get a vCPU (EBUSY); 7.4's vgic_v5_init answers ENODEV before it
    allocates anything, so a vCPU can still be created and INIT retried."""
    vm = kvm.create_vm()
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    vm.create_vcpu(0)
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    _get_userspace_ppis(dev)


@_builtin()
def irs_address(kvm: Any) -> None:
    """The IRS base address (7.4 spec 1.3): GRP_ADDR / KVM_VGIC_V5_ADDR_TYPE_IRS reads
    all-ones before it is set, refuses a misaligned (EINVAL) or out-of-IPA (E2BIG) address,
    takes 0, refuses a second SET (EEXIST) and reads back what it took; a first KVM_RUN of a VM
    without one is ENXIO (and the VM is dead). The PPI-only kernels have no ADDR group
    (ENXIO) and run without one."""
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS, bytearray(8))
    _set_irs(dev, IRS_GPA + 0x1000)
    _set_irs(dev, 1 << 40)
    _set_irs(dev, 0)
    _set_irs(dev, IRS_GPA)
    dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS, bytearray(8))
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    with vcpu.run():
        pass
    vm2 = kvm.create_vm()
    vcpu2 = vm2.create_vcpu(0)
    dev2 = vm2.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev2.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    with vcpu2.run():
        pass
