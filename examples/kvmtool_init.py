"""kvmtool-style VGIC setup: probe before you set, device after the vCPUs, INIT, then ask.

What it shows: the order a VMM such as kvmtool uses to bring up an in-kernel GICv5, each step
answered by the model exactly as KVM would answer it:

1. ``KVM_CREATE_DEVICE`` with ``KVM_CREATE_DEVICE_TEST``: is the V5 VGIC there at all?
2. ``KVM_CREATE_VCPU`` for every vCPU (before the device is initialised: after INIT a new
   vCPU is EBUSY, shown at the end);
3. ``KVM_CREATE_DEVICE`` for real;
4. for each control attribute, ``KVM_HAS_DEVICE_ATTR`` first and ``KVM_SET_DEVICE_ATTR`` only
   when the kernel says it has it (an older or newer kernel may not);
5. ``KVM_GET_DEVICE_ATTR(USERSPACE_PPIS)``: the PPIs userspace may drive (SW_PPI only, on a
   correct kernel; the v2 profile shows that revision's wrong answer);
6. the timer PPI numbers the vCPUs now carry (encoded GICv5 INTIDs).

Run: ``python examples/kvmtool_init.py [--profile final|v3|v2] [--vcpus N]``. Exit status 0
when the VM came up with SW_PPI drivable, 1 when the kernel revision cannot drive it.
"""

from __future__ import annotations

import argparse
import errno
import sys

import gic5
from gic5 import uapi

CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL


def has_attr(target: gic5.Device | gic5.Vcpu, group: int, attr: int) -> bool:
    """KVM_HAS_DEVICE_ATTR as a VMM uses it: ENXIO means "not supported", anything else is
    a real error and propagates."""
    try:
        target.has_attr(group, attr)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return False
        raise
    return True


def errname(e: OSError) -> str:
    """The kernel's name for the errno of ``e`` (EBUSY, ENXIO, ...)."""
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def bits(word: int) -> list[int]:
    """The set bit numbers of ``word``, lowest first."""
    return [i for i in range(word.bit_length()) if word >> i & 1]


def bring_up(profile: str, nr_vcpus: int) -> int:
    """Bring a VM up the kvmtool way, printing each step; returns the exit status."""
    kvm = gic5.Kvm(profile=profile)
    vm = kvm.create_vm()

    # 1. Probe the device type without creating anything.
    try:
        vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5, uapi.KVM_CREATE_DEVICE_TEST)
    except OSError as e:
        print(f"KVM_CREATE_DEVICE(V5, TEST): {errname(e)}: no GICv5 VGIC here")
        return 1
    print("KVM_CREATE_DEVICE(V5, TEST): supported")

    # 2. The vCPUs, before INIT.
    vcpus = [vm.create_vcpu(i) for i in range(nr_vcpus)]
    print(f"KVM_CREATE_VCPU: ids 0..{nr_vcpus - 1}")

    # 3. The device itself (one per VM).
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None  # None only in test mode
    print("KVM_CREATE_DEVICE(V5): ok")

    # 4. Probe, then set. SAVE_PENDING_TABLES is what a GICv3 VMM would also try: the
    #    PPI-only V5 device does not have it, and a careful VMM just skips it.
    for name in ("KVM_DEV_ARM_VGIC_CTRL_INIT", "KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES"):
        attr = getattr(uapi, name)
        if not has_attr(dev, CTRL, attr):
            print(f"KVM_HAS_DEVICE_ATTR(CTRL, {name}): ENXIO, skipped")
            continue
        print(f"KVM_HAS_DEVICE_ATTR(CTRL, {name}): yes")
        if name == "KVM_DEV_ARM_VGIC_CTRL_INIT":
            dev.set_attr(CTRL, attr)
            print(f"KVM_SET_DEVICE_ATTR(CTRL, {name}): ok")

    # 5. Which PPIs may userspace drive with KVM_IRQ_LINE?
    if not has_attr(dev, CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS):
        print("KVM_HAS_DEVICE_ATTR(CTRL, USERSPACE_PPIS): ENXIO: a pre-V5 kernel")
        return 1
    buf = bytearray(16)  # two native-endian __u64
    dev.get_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    w0 = int.from_bytes(buf[:8], sys.byteorder)
    w1 = int.from_bytes(buf[8:], sys.byteorder)
    print(f"USERSPACE_PPIS: {{{w0:#x}, {w1:#x}}} -> PPIs {bits(w0) + [64 + b for b in bits(w1)]}")

    # 6. The timer PPIs each vCPU now reports (encoded INTIDs once a V5 device exists).
    value = bytearray(4)
    for timer in ("VTIMER", "PTIMER"):
        vcpus[0].get_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL,
                          getattr(uapi, f"KVM_ARM_VCPU_TIMER_IRQ_{timer}"), value)
        print(f"vCPU 0 KVM_ARM_VCPU_TIMER_IRQ_{timer}: {int.from_bytes(value, sys.byteorder):#x}")

    # The lifecycle rule kvmtool follows for a reason: no vCPU after INIT.
    try:
        vm.create_vcpu(nr_vcpus)
    except OSError as e:
        print(f"KVM_CREATE_VCPU({nr_vcpus}) after INIT: {errname(e)}")

    if not w0 >> uapi.GICV5_ARCH_PPI_SW_PPI & 1:
        print("SW_PPI is not drivable on this kernel revision")
        return 1
    print("ready: SW_PPI (PPI 3) is drivable with KVM_IRQ_LINE")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and bring the VM up."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    ap.add_argument("--vcpus", type=int, default=4, help="vCPUs to create (default 4)")
    args = ap.parse_args(argv)
    if not 1 <= args.vcpus <= uapi.KVM_MAX_VCPU_IDS - 1:
        ap.error(f"--vcpus must be 1..{uapi.KVM_MAX_VCPU_IDS - 1}")
    return bring_up(args.profile, args.vcpus)


if __name__ == "__main__":
    raise SystemExit(main())
