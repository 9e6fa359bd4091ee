"""A short tour of the model: the userspace side of the kernel selftest, printed step by step.

Run: ``python -m gic5.demo`` (or ``gic5-demo``). Every line printed is a real answer of the
model; the profile can be chosen with ``--profile``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import gic5
from gic5 import uapi


def _hexw(words: tuple[int, int]) -> str:
    return f"{{{words[0]:#x}, {words[1]:#x}}}"


def tour(profile: str, out: TextIO = sys.stdout) -> None:
    """Print the tour on profile ``profile`` (one of gic5.PROFILES) to ``out``."""

    def p(*a: object) -> None:
        print(*a, file=out)

    kvm = gic5.Kvm(profile=profile)
    p(f"profile {profile}: host implements PPIs {_hexw(kvm.host.impl_ppis)}")
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    p("KVM_CREATE_DEVICE(TEST):", vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5,
                                                   uapi.KVM_CREATE_DEVICE_TEST))
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None  # only KVM_CREATE_DEVICE_TEST returns None
    buf = bytearray(16)
    dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    p("USERSPACE_PPIS before INIT:", _hexw(vm.userspace_ppis()))
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    words = (int.from_bytes(buf[:8], sys.byteorder), int.from_bytes(buf[8:], sys.byteorder))
    p("USERSPACE_PPIS after INIT: ", _hexw(words))
    try:
        dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    except OSError as e:
        p("set USERSPACE_PPIS:        ", f"OSError {e.errno} ({e.strerror})")
    sw = uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, uapi.GICV5_ARCH_PPI_SW_PPI)
    with vcpu.run() as cpu:
        p("exposed PPIs after the first run:", _hexw(vm.exposed_ppis()))
        cpu.write_cr0(True)
        cpu.write_pcr(31)
        cpu.write_ppi_enabler(0, 1 << uapi.GICV5_ARCH_PPI_SW_PPI)
    for level in (1, 1, 0):
        try:
            vm.irq_line(sw, level)
            p(f"KVM_IRQ_LINE({sw:#010x}, {level}): ok; pending {_hexw(vcpu.pending_ppis())}")
        except OSError as e:
            p(f"KVM_IRQ_LINE({sw:#010x}, {level}): OSError {e.errno} ({e.strerror})")
    with vcpu.run() as cpu:
        intid = cpu.cdia()
        p("guest CDIA:", hex(intid) if intid is not None else None)
        if intid is not None:
            cpu.cddi(intid)
            cpu.cdeoi()
        p("guest CDIA again:", cpu.cdia())
    try:
        vm.irq_line(uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, uapi.GICV5_ARCH_PPI_CNTV), 1)
        p("KVM_IRQ_LINE(vtimer PPI 27): ok (dropped: the timer owns it)")
    except OSError as e:
        p(f"KVM_IRQ_LINE(vtimer PPI 27): OSError {e.errno} ({e.strerror})")


def main(argv: list[str] | None = None) -> int:
    """The gic5-demo entry point: parse ``argv`` (default sys.argv[1:]), run the tour."""
    ap = argparse.ArgumentParser(prog="gic5-demo", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    args = ap.parse_args(argv)
    tour(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
