"""The kernel selftest's SW_PPI round trip (arm64 vgic_v5), host and guest side by side.

What it shows: the whole path of one userspace interrupt through the model, as the selftest
drives it on hardware. The guest enables its CPU interface and SW_PPI; the host raises the
SW_PPI line with KVM_IRQ_LINE; the guest acknowledges with CDIA (INTID 0x20000003),
deactivates with CDDI and drops priority with CDEOI; the host lowers the line and raises it
again; the guest takes it a second time; nothing else is ever acknowledged. Every step is
printed with the state KVM holds between runs.

On the v2 profile the round trip fails (the revision's inverted exposure test hides SW_PPI
from the guest); on v3 every round works but the taken edge comes back at the next run (v3's
exit fold ORs into an edge latch that nothing clears, so it re-delivers). The script reports
where and exits 1, which is the point of those profiles.

Run: ``python examples/selftest_round_trip.py [--profile final|v3|v2] [--rounds N]``.
Exit status 0 when every round delivered SW_PPI exactly once.
"""

from __future__ import annotations

import argparse

import gic5
from gic5 import uapi

SW_PPI = uapi.GICV5_ARCH_PPI_SW_PPI
SW_INTID = uapi.ppi_intid(SW_PPI)  # 0x20000003


def fmt(words: tuple[int, int]) -> str:
    """A mask pair as the kernel would print it."""
    return f"{{{words[0]:#x}, {words[1]:#x}}}"


def round_trip(profile: str, rounds: int) -> int:
    """Run the selftest's sequence ``rounds`` times; returns the exit status."""
    vm = gic5.Kvm(profile=profile).create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    sw = uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, SW_PPI)

    # Guest setup: CR0.EN, the priority mask wide open, SW_PPI at priority 0 and enabled.
    with vcpu.run() as cpu:
        cpu.write_cr0(True)
        cpu.write_pcr(31)
        cpu.write_ppi_priority(SW_PPI, 0)
        cpu.write_ppi_enabler(0, 1 << SW_PPI)
        enabled = cpu.read_ppi_enabler(0)
    print(f"guest: ENABLER0 reads {enabled:#x} (exposed {fmt(vm.exposed_ppis())})")

    for n in range(1, rounds + 1):
        vm.irq_line(sw, 1)
        print(f"round {n}: host KVM_IRQ_LINE({sw:#010x}, 1); KVM pending "
              f"{fmt(vcpu.pending_ppis())}, wake {vcpu.has_pending_irq()}")
        with vcpu.run() as cpu:
            intid = cpu.cdia()
            print(f"round {n}: guest CDIA -> {intid:#x}" if intid is not None
                  else f"round {n}: guest CDIA -> nothing")
            if intid != SW_INTID:
                print(f"FAILED: expected {SW_INTID:#x} on profile {profile}")
                return 1
            cpu.cddi(intid)
            cpu.cdeoi()
            again = cpu.cdia()
            print(f"round {n}: guest CDDI + CDEOI; CDIA again -> {again}")
            if again is not None:
                print("FAILED: a second acknowledgement without a second edge")
                return 1
        vm.irq_line(sw, 0)
        print(f"round {n}: host KVM_IRQ_LINE({sw:#010x}, 0); KVM pending "
              f"{fmt(vcpu.pending_ppis())}, active {fmt(vcpu.active_ppis())}")
    with vcpu.run() as cpu:  # nothing left over after the last round
        left = cpu.cdia()
    if left is not None:
        print(f"FAILED: {left:#x} acknowledged after the last round")
        return 1
    print(f"ok: {rounds} round(s), SW_PPI delivered exactly once each")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the round trip."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    ap.add_argument("--rounds", type=int, default=2, help="raise/take rounds (default 2)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return round_trip(args.profile, args.rounds)


if __name__ == "__main__":
    raise SystemExit(main())
