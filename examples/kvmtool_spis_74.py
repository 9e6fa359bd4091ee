"""kvmtool's GICv5 series on a 7.4 kernel: a VM brought up its way, then device interrupts as SPIs.

What it shows: the ioctl sequence of Arm's posted kvmtool series for GICv5 guests (v2, with the
IRS patches) against the 7.4 (IRS-era) V5 device, each step printed with the kernel's answer:

1. ``KVM_CREATE_DEVICE(V5)`` before any vCPU (kvmtool's ``gic__create`` runs in ``kvm__init``),
   then ``KVM_SET_DEVICE_ATTR(ADDR, KVM_VGIC_V5_ADDR_TYPE_IRS)`` with the IRS frames at the top
   of the MMIO area (``ARM_AXI_AREA - 0x20000`` = 0x3ffe0000);
2. ``KVM_CREATE_VCPU`` for ids 0..n-1;
3. ``gic__init_gic``: ``KVM_HAS_DEVICE_ATTR(NR_IRQS)`` then ``SET`` with
   ``roundup_pow_of_two(lines)`` (kvmtool's rule: fewer than 32 lines give a count the merged
   kernel refuses with EINVAL, and the VM does not start; ``--lines 16`` shows it), then
   ``HAS`` / ``SET(CTRL, CTRL_INIT)``;
4. the guest (vCPU 0's first run) does what a Linux GICv5 guest does with the FDT kvmtool
   wrote: ``IRS_CR0.IRSEN``, per device SPI ``IRS_SPI_SELR`` / ``IRS_SPI_CFGR`` (virtio-mmio:
   edge; the 8250 serial port: level), ``GIC CDPRI`` / ``CDAFF`` / ``CDEN``;
5. device interrupts the way kvmtool raises them: ``kvm__irq_trigger`` (virtio: line 1 then
   0, an edge) and ``kvm__irq_line`` (serial: the line held high until the guest's handler
   services the UART, whose MMIO exit lets the VMM lower it); each one taken by the guest
   with ``GICR CDIA`` (the INTID 0x60000000 | n), ``GIC CDDI``, ``GIC CDEOI``;
6. an edge raised and lowered while the guest sleeps in WFI: the VPE doorbell wakes it.

Run: ``python examples/kvmtool_spis_74.py [--vcpus N] [--lines L]``. ``--profile final`` runs
the same sequence on the PPI-only kernel, where every SPI word is EINVAL (kvmtool only prints
"Could not KVM_IRQ_LINE"). Exit status 0 when every device interrupt reached the guest once,
1 otherwise.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any, Callable

import gic5
from gic5 import uapi

ARM_AXI_AREA = 0x40000000                                # kvmtool arm64 memory map
IRS_BASE = ARM_AXI_AREA - uapi.KVM_VGIC_V5_IRS_SIZE     # CONFIG + SETLPI frames at the top
# The device lines kvmtool allocated (SPI ids from 0, "irq: Add interface to override the
# default irq offset"): three virtio-mmio devices and the serial port.
DEVICES = [("virtio-net", 0, "edge"), ("virtio-blk", 1, "edge"), ("virtio-rng", 2, "edge"),
           ("ttyS0", 3, "level")]
GUEST_PRIORITY = 0x10  # GICV5_IRQ_DEFAULT_PRI


def answer(fn: Callable[[], Any]) -> str:
    """Run one kernel call: "ok", or the errno's name."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))
    return "ok"


def step(text: str, fn: Callable[[], Any]) -> str:
    result = answer(fn)
    print(f"{text:<58} {result}")
    return result


def roundup_pow_of_two(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def irq_line(vm: gic5.Vm, spi: int, level: int) -> str:
    # kvm__irq_line: KVM_IRQ_LINE((KVM_ARM_IRQ_TYPE_SPI << 24) | spi, level)
    word = uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_SPI, 0, spi)
    return step(f"  KVM_IRQ_LINE({word:#010x}, {level})", lambda: vm.irq_line(word, level))


def take(cpu: gic5.CpuIf, vm: gic5.Vm, name: str, spi: int, trigger: str) -> list[int]:
    """The guest's interrupt handler: acknowledge, service the device, deactivate, drop."""
    taken = []
    while True:
        intid = cpu.cdia()
        if intid is None:
            break
        print(f"  guest: GICR CDIA -> {intid:#x}")
        taken.append(intid)
        if intid == uapi.spi_intid(spi) and trigger == "level":
            # the handler reads the UART; that MMIO exit lets kvmtool drop the line
            irq_line(vm, spi, 0)
        cpu.cddi(intid)
        cpu.cdeoi()
    return taken


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="7.4", choices=gic5.PROFILES)
    ap.add_argument("--vcpus", type=int, default=2, help="vCPUs (ids 0..n-1)")
    ap.add_argument("--lines", type=int, default=40,
                    help="IRQ lines kvmtool allocated (NR_IRQS = roundup_pow_of_two(lines))")
    args = ap.parse_args(argv)
    if not 1 <= args.vcpus <= 512 or not 1 <= args.lines <= 1024:
        ap.error("--vcpus must be 1..512 and --lines 1..1024")

    vm = gic5.Kvm(profile=args.profile).create_vm()
    print(f"profile {args.profile}: kvmtool --irqchip=gicv5, {args.vcpus} vCPUs")
    dev_box: list[gic5.Device] = []

    def create() -> None:
        dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
        assert dev is not None
        dev_box.append(dev)

    if step("KVM_CREATE_DEVICE(KVM_DEV_TYPE_ARM_VGIC_V5)", create) != "ok":
        return 1
    dev = dev_box[0]
    step(f"SET ADDR/KVM_VGIC_V5_ADDR_TYPE_IRS = {IRS_BASE:#x}",
         lambda: dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                              IRS_BASE.to_bytes(8, sys.byteorder)))
    vcpus = [vm.create_vcpu(i) for i in range(args.vcpus)]
    print(f"{'KVM_CREATE_VCPU x ' + str(args.vcpus):<58} ok")
    nr_irqs = roundup_pow_of_two(args.lines)
    if step("HAS NR_IRQS", lambda: dev.has_attr(uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0)) == "ok":
        if step(f"SET NR_IRQS = roundup_pow_of_two({args.lines}) = {nr_irqs}",
                lambda: dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0,
                                     nr_irqs.to_bytes(4, sys.byteorder))) != "ok":
            print("gic__init_gic fails: the VM does not start")
            return 1
    step("HAS CTRL/KVM_DEV_ARM_VGIC_CTRL_INIT",
         lambda: dev.has_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT))
    step("SET CTRL/KVM_DEV_ARM_VGIC_CTRL_INIT",
         lambda: dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT))
    print(f"vm.nr_spis = {vm.nr_spis}")

    irs = args.profile in ("7.4",)
    got: dict[str, list[int]] = {}
    run = vcpus[0].run()
    try:
        cpu = run.__enter__()
    except OSError as e:
        print(f"KVM_RUN(vCPU 0): {errno.errorcode.get(e.errno or 0)}")
        return 1
    try:
        print("guest (vCPU 0): CPU interface on, PCR 0x10")
        cpu.write_cr0(True)
        cpu.write_pcr(GUEST_PRIORITY)
        if irs:
            cpu.irs_write(uapi.GICV5_IRS_CR0, uapi.GICV5_IRS_CR0_IRSEN)
            print(f"guest: IRS_CR0 <- IRSEN; IRS_CR0 reads {cpu.irs_read(uapi.GICV5_IRS_CR0):#x}")
            for name, spi, trigger in DEVICES:
                intid = uapi.spi_intid(spi)
                cpu.irs_write(uapi.GICV5_IRS_SPI_SELR, spi)
                cpu.irs_write(uapi.GICV5_IRS_SPI_CFGR, 1 if trigger == "level" else 0)
                cpu.cdpri(intid, GUEST_PRIORITY)
                cpu.cdaff(intid, vcpus[0].vcpu_id)
                cpu.cden(intid)
                print(f"guest: SPI {spi} ({name}, {trigger}): SPI_CFGR.TM="
                      f"{cpu.irs_read(uapi.GICV5_IRS_SPI_CFGR)}, prio {GUEST_PRIORITY:#x}, "
                      f"target vCPU 0, enabled; ISTE {vm.spi_iste(spi):#010x}")
        for name, spi, trigger in DEVICES:
            print(f"{name} raises SPI {spi} ({'kvm__irq_trigger' if trigger == 'edge' else 'kvm__irq_line'})")
            irq_line(vm, spi, 1)
            if trigger == "edge":
                irq_line(vm, spi, 0)
            got[name] = take(cpu, vm, name, spi, trigger)
        if irs:
            print("virtio-net raises SPI 0 while the guest waits in WFI")
            irq_line(vm, 0, 1)
            irq_line(vm, 0, 0)
            print(f"  guest: WFI -> woken {cpu.wfi()} (doorbell fired: {vcpus[0].db_fired})")
            got["virtio-net"] += take(cpu, vm, "virtio-net", 0, "edge")
    finally:
        run.__exit__(None, None, None)
    ok = all(got.get(name) == [uapi.spi_intid(spi)] * (2 if name == "virtio-net" else 1)
             for name, spi, _ in DEVICES)
    print("every device interrupt reached the guest once" if ok
          else "some device interrupts never reached the guest")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
