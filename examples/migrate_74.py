"""Migrating a 7.4 VM's interrupt state: save on one VM, restore on another, through the UAPI.

What it shows: the save/restore sequence of the IRS-era V5 device (kvm-arm64/gicv5-7.4), as a
VMM runs it, each step answered the way KVM answers it:

1. the source VM as kvmtool builds it on 7.4: vCPUs (sparse ids 0 and 17), the device, the
   IRS base (``KVM_VGIC_V5_ADDR_TYPE_IRS``), ``NR_IRQS`` (an SPI count), ``CTRL_INIT``;
2. the guest state of vCPU 17 written through ``KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS`` (SW_PPI
   enabled and pending at priority 8, the priority mask, CR0.EN), as an earlier restore would;
3. ``gic5.save_state``: every vCPU's CPU_SYSREGS plus the device attributes;
4. ``gic5.restore_state`` on a fresh VM, in the kernel's documented order, and ``save_state``
   of the destination compared with the saved state;
5. (model only: the kvm backend cannot run guest code) the destination's vCPU 17 runs, and
   its guest takes the SW_PPI edge that travelled in ICC_PPI_SPENDR0_EL1, once.

Run: ``python examples/migrate_74.py [--backend model|kvm] [--json FILE]``. Exit status 0
when the destination's state equals the source's (and, on the model, the edge arrives exactly
once); 1 when it does not; 2 when the backend cannot be opened or the kernel is not a 7.4 one.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from typing import Any

import numpy as np

import gic5
from gic5 import uapi

IRS_BASE = 0x8000000  # the kernel selftest's GICV5_IRS_CONFIG_BASE_GPA
SW = uapi.GICV5_ARCH_PPI_SW_PPI


def step(what: str, call: Any, *args: Any) -> Any:
    """One UAPI call, printed with the kernel's answer."""
    try:
        out = call(*args)
    except OSError as e:
        print(f"  {what:<58} {errno.errorcode.get(e.errno or 0, e.errno)}")
        raise
    print(f"  {what:<58} ok")
    return out


def build(kvm: gic5.Kvm) -> Any:
    vm = kvm.create_vm()
    for vid in (0, 17):
        step(f"KVM_CREATE_VCPU({vid})", vm.create_vcpu, vid)
    dev = step("KVM_CREATE_DEVICE(KVM_DEV_TYPE_ARM_VGIC_V5)", vm.create_device,
               uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    step(f"SET GRP_ADDR / KVM_VGIC_V5_ADDR_TYPE_IRS = {IRS_BASE:#x}", dev.set_attr,
         uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
         np.array([IRS_BASE], np.uint64))
    step("SET GRP_NR_IRQS = 64 SPIs", dev.set_attr, uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0,
         np.array([64], np.uint32))
    step("SET GRP_CTRL / CTRL_INIT", dev.set_attr, uapi.KVM_DEV_ARM_VGIC_GRP_CTRL,
         uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    return vm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--backend", choices=gic5.BACKENDS, default="model")
    ap.add_argument("--json", help="write the saved state to this file")
    args = ap.parse_args(argv)
    try:
        kvm = (gic5.Kvm(profile="7.4") if args.backend == "model"
               else gic5.Kvm(backend="kvm"))
    except (OSError, NotImplementedError) as e:
        print(f"migrate_74: the {args.backend} backend is unavailable: {e}", file=sys.stderr)
        return 2
    print("source:")
    try:
        src = build(kvm)
    except OSError as e:
        print(f"migrate_74: not a 7.4 kernel ({e})", file=sys.stderr)
        return 2
    dev = src.device
    regs = {uapi.SYS_ICC_PPI_PRIORITYR[0]: 8 << 24, uapi.SYS_ICC_PPI_ENABLER0_EL1: 1 << SW,
            uapi.SYS_ICC_PPI_SPENDR0_EL1: 1 << SW, uapi.SYS_ICC_PCR_EL1: 31,
            uapi.SYS_ICC_CR0_EL1: 1}
    names = {enc: name for name, enc in uapi.CPU_SYSREGS_74.items()}
    for enc, value in regs.items():
        step(f"SET GRP_CPU_SYSREGS vCPU 17 {names[enc]} = {value:#x}", dev.set_attr,
             uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, uapi.cpu_sysreg_attr(17, enc),
             np.array([value], np.uint64))
    state = gic5.save_state(src)
    print(f"saved: device {state['device']}, {len(state['vcpus'])} vCPUs x "
          f"{len(uapi.CPU_SYSREGS_74)} registers")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(state, f, indent=1)
    print("destination:")
    dst = kvm.create_vm()
    vcpus = gic5.restore_state(dst, state)
    print(f"  restore_state -> vCPUs {[v.vcpu_id for v in vcpus]}")
    same = gic5.save_state(dst) == state
    print(f"save_state(destination) == saved state: {same}")
    if not same:
        return 1
    if args.backend == "kvm":
        return 0
    v17 = next(v for v in vcpus if v.vcpu_id == 17)
    taken = []
    for _ in range(2):
        with v17.run() as cpu:
            intid = cpu.cdia()
            if intid is not None:
                taken.append(intid)
                cpu.cddi(intid)
                cpu.cdeoi()
    print(f"destination vCPU 17's guest took: {[hex(i) for i in taken]}")
    return 0 if taken == [uapi.ppi_intid(SW)] else 1


if __name__ == "__main__":
    sys.exit(main())
