"""Limits: a full VM of 512 vCPUs that works, and thousands of VMs in one process.

Rules this file keeps:
- The id / count errnos at the limit (id >= 512, the 513th vCPU: EINVAL) are tested in
  test_device.py; here the limit is *used*: every one of 512 vCPUs (ids 256..511 need the
  vcpu2 field of the KVM_IRQ_LINE word) is reached by injection, runs, and acknowledges.
- Many VMs: each is independent (an injection into one is seen by that one only) and is
  freed when dropped (no reference leaks through the VM / vCPU / device cycle).
- Memory is measured by scripts/measure_memory.py and reported in docs/stress.md, not
  asserted here (RSS depends on the machine).
"""

from __future__ import annotations

import errno
import gc
import weakref

import numpy as np
import pytest

import gic5
import gic5core
from gic5 import uapi
from vmsetup import set_irs_base

V5 = uapi.KVM_DEV_TYPE_ARM_VGIC_V5
SW = uapi.GICV5_ARCH_PPI_SW_PPI
SW_INTID = uapi.ppi_intid(SW)


def init(vm):
    dev = vm.create_device(V5)
    set_irs_base(dev)
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)


@pytest.mark.parametrize("profile", gic5.PROFILES)
def test_512_vcpus_all_reachable(profile):
    vm = gic5.Kvm(profile=profile).create_vm()
    # Ids in a scrambled order, so index != id for most vCPUs.
    ids = list(range(511, 255, -1)) + list(range(256))
    vcpus = [vm.create_vcpu(i) for i in ids]
    assert vm.nr_vcpus == 512
    init(vm)
    for v in vcpus:
        with v.run() as cpu:
            cpu.write_cr0(True)
            cpu.write_pcr(31)
            cpu.write_ppi_enabler(0, 1 << SW)
    # One batch with one SW_PPI edge per vCPU, every word with its vcpu2 field.
    words = np.array([uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, i, SW) for i in ids],
                     dtype=np.uint32)
    assert not vm.irq_line_batch(words, np.ones(512, dtype=np.uint32)).any()
    # v2 does not expose SW_PPI (spec: the inverted finalize test), so nothing is delivered
    # there; v3/final deliver exactly one edge to each vCPU.
    want = None if profile == "v2" else SW_INTID
    for v in vcpus:
        assert v.pending_ppis()[0] & (1 << SW)
        with v.run() as cpu:
            assert cpu.cdia() == want
            assert cpu.cdia() is None
    # Ids beyond the table are still refused, and the table is untouched.
    with pytest.raises(OSError) as info:
        vm.create_vcpu(512)
    assert info.value.errno == errno.EINVAL  # kvm_vm_ioctl_create_vcpu: id >= KVM_MAX_VCPU_IDS
    assert vm.nr_vcpus == 512 and [v.vcpu_id for v in vm.vcpus] == ids


def test_storm_over_512_vcpus():
    from gic5.storm import StormConfig, build_vms
    vm, = build_vms(StormConfig(vms=1, vcpus=512))
    c = gic5core.storm_run([vm], 512, 500_000)
    assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"]
    assert c["lost"] == c["redelivered"] == c["model_mismatch"] == c["level_stuck"] == 0, c


def test_two_thousand_vms():
    kvm = gic5.Kvm()
    vms, refs = [], []
    for k in range(2000):
        vm = kvm.create_vm()
        vm.create_vcpu(k % 512)
        init(vm)
        with vm.vcpus[0].run() as cpu:
            cpu.write_cr0(True)
            cpu.write_pcr(31)
            cpu.write_ppi_enabler(0, 1 << SW)
        vms.append(vm)
        refs.append(weakref.ref(vm))
    # Inject into every third VM only: exactly those have the edge, and deliver it.
    for k in range(0, 2000, 3):
        vms[k].irq_line(uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, k % 512, SW), 1)
    for k, vm in enumerate(vms):
        v = vm.vcpus[0]
        assert v.pending_ppis() == ((1 << SW) if k % 3 == 0 else 0, 0), k
        with v.run() as cpu:
            assert cpu.cdia() == (SW_INTID if k % 3 == 0 else None), k
    del vms, vm, v, cpu
    gc.collect()
    assert sum(r() is not None for r in refs) == 0
