"""QEMU-style KVM_IRQ_LINE words: SW_PPI on several vCPUs, ids past 255 through vcpu2.

What it shows: a VMM builds the ``irq`` field of ``struct kvm_irq_level`` itself, the way
QEMU's arm code does (type in bits 27:24, the vCPU id split into vcpu_index 23:16 and, since
KVM_CAP_ARM_IRQ_LINE_LAYOUT_2, vcpu2_index 31:28, the PPI index in 15:0). The script builds
each word by hand, checks it against ``gic5.uapi.irq_word``, raises SW_PPI on every vCPU
through ``vm.irq_line`` and shows that exactly the addressed vCPU got the edge. It then shows
the classic bug: a builder that forgets vcpu2 addresses ``id % 256`` instead (EINVAL when no
such vCPU exists, or the wrong vCPU when one does), and what one batch call returns.

Run: ``python examples/qemu_irq_words.py [--profile final|v3|v2] [--ids 0,1,255,256,300,511]``.
Exit status 0 when every vCPU saw exactly its own edge.
"""

from __future__ import annotations

import argparse
import errno

import numpy as np

import gic5
from gic5 import uapi

SW_PPI = uapi.GICV5_ARCH_PPI_SW_PPI


def kvm_arm_irq(irq_type: int, cpu: int, irq: int) -> int:
    """The word as a VMM assembles it from the uapi shifts (no range checks: the VMM's own
    caller guarantees them; gic5.uapi.irq_word is the checked version)."""
    return ((irq_type << uapi.KVM_ARM_IRQ_TYPE_SHIFT)
            | ((cpu % 256) << uapi.KVM_ARM_IRQ_VCPU_SHIFT)
            | ((cpu // 256) << uapi.KVM_ARM_IRQ_VCPU2_SHIFT)
            | (irq << uapi.KVM_ARM_IRQ_NUM_SHIFT))


def kvm_arm_irq_no_vcpu2(irq_type: int, cpu: int, irq: int) -> int:
    """The pre-LAYOUT_2 builder: only 8 bits of vCPU id (the bug this example warns about)."""
    return ((irq_type << uapi.KVM_ARM_IRQ_TYPE_SHIFT)
            | ((cpu & uapi.KVM_ARM_IRQ_VCPU_MASK) << uapi.KVM_ARM_IRQ_VCPU_SHIFT)
            | (irq << uapi.KVM_ARM_IRQ_NUM_SHIFT))


def run(profile: str, ids: list[int]) -> int:
    """Build a VM with vCPUs ``ids``, drive SW_PPI on each; returns the exit status."""
    vm = gic5.Kvm(profile=profile).create_vm()
    vcpus = {i: vm.create_vcpu(i) for i in ids}
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)

    ok = True
    print(f"{'vcpu id':>7}  {'word':>10}  {'vcpu2':>5}  {'vcpu':>4}  result")
    for i in ids:
        word = kvm_arm_irq(uapi.KVM_ARM_IRQ_TYPE_PPI, i, SW_PPI)
        if word != uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, i, SW_PPI):
            print(f"{i:>7}  {word:#010x}  differs from gic5.uapi.irq_word")
            ok = False
            continue
        vm.irq_line(word, 1)  # raise ...
        vm.irq_line(word, 0)  # ... and lower: SW_PPI is an edge, the latch stays set
        pending = {j: v.pending_ppis()[0] >> SW_PPI & 1 for j, v in vcpus.items()}
        hit = sorted(j for j, p in pending.items() if p)
        _, vcpu_id, _ = uapi.irq_fields(word)  # vcpu2_index:vcpu_index, as KVM decodes it
        print(f"{i:>7}  {word:#010x}  {vcpu_id >> 8:>5}  {vcpu_id & 0xff:>4}  "
              f"SW_PPI pending on {hit}")
        # Every vCPU raised so far is pending (a latch holds until the guest takes it), and
        # none that has not been raised yet.
        expected = ids[: ids.index(i) + 1]
        ok &= hit == sorted(expected)

    # The same words, all at once: one batch call, one result code per word.
    words = np.array([kvm_arm_irq(uapi.KVM_ARM_IRQ_TYPE_PPI, i, SW_PPI) for i in ids],
                     dtype=np.uint32)
    codes = vm.irq_line_batch(words, np.ones(len(ids), dtype=np.uint32))
    print(f"irq_line_batch over {len(ids)} words: codes {codes.tolist()}")
    ok &= not codes.any()

    # Forgetting vcpu2: ids >= 256 land on id % 256.
    for i in ids:
        if i < 256:
            continue
        wrong = kvm_arm_irq_no_vcpu2(uapi.KVM_ARM_IRQ_TYPE_PPI, i, SW_PPI)
        try:
            vm.irq_line(wrong, 1)
            print(f"without vcpu2, vCPU {i}'s word {wrong:#010x} hits vCPU {i % 256} instead")
        except OSError as e:
            assert e.errno == errno.EINVAL
            print(f"without vcpu2, vCPU {i}'s word {wrong:#010x}: EINVAL "
                  f"(no vCPU {i % 256})")
    print("all vCPUs got exactly their own edge" if ok else "MISMATCH")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    ap.add_argument("--ids", default="0,1,255,256,300,511",
                    help="comma-separated vCPU ids, each 0..511 (default 0,1,255,256,300,511)")
    args = ap.parse_args(argv)
    try:
        ids = [int(x) for x in args.ids.split(",")]
    except ValueError:
        ap.error("--ids must be comma-separated integers")
    if len(set(ids)) != len(ids) or not all(0 <= i < uapi.KVM_MAX_VCPU_IDS for i in ids):
        ap.error(f"--ids must be distinct ids in 0..{uapi.KVM_MAX_VCPU_IDS - 1}")
    return run(args.profile, ids)


if __name__ == "__main__":
    raise SystemExit(main())
