"""The public API as a typed user writes it: a normal test, and the input of `mypy --strict`.

Covers: every public entry point of gic5 and gic5core used once with full annotations
(Host, Kvm, Vm, Vcpu, Device, CpuIf, uapi, check, UndefinedInstruction, the storm API and the
core's exported helpers), with ``assert_type`` pinning the types the stubs (gic5core/*.pyi)
and the front end's annotations promise.

Rules kept:
- The file is checked twice: pytest runs it (each value asserted is a literal from
  docs/semantics.md, never read back from gic5), and CI runs `mypy --strict` over it, where
  ``assert_type`` fails the check if a promised type drifts (at run time it does nothing).
- Only public names are used: what mypy accepts here is what a user's script may rely on.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import gic5
import gic5core
from gic5 import uapi
from gic5.storm import StormConfig, build_vms, run_storm, summarize

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - Python 3.10
    from typing_extensions import assert_type

SW = uapi.GICV5_ARCH_PPI_SW_PPI
CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL


@pytest.fixture
def ready() -> Iterator[tuple[gic5.Vm, gic5.Vcpu, gic5.Device]]:
    """An initialised final VM with one vCPU (id 0) and its device."""
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None  # None only in KVM_CREATE_DEVICE_TEST mode
    dev.set_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    yield vm, vcpu, dev


def test_host_kvm_and_profiles() -> None:
    host = gic5.Host(pmu=False, impl_ppis=None)
    assert_type(host.impl_ppis, tuple[int, int])
    assert host.impl_ppis == (0x5C000008, 0)
    kvm = gic5.Kvm(host=host, profile="v3")
    assert_type(kvm.profile, str)
    assert kvm.profile == "v3"
    assert_type(gic5.PROFILES, tuple[str, ...])
    assert gic5.PROFILES == ("v2", "v3", "final", "7.4")
    host74 = gic5.Host(max_vpes=64, lpi_domain=True, ipa_bits=48, gcie_legacy=True)
    assert_type(host74.max_vpes, int)
    assert_type(host74.gcie_legacy, bool)
    vm74 = gic5.Kvm(host=host74, profile="7.4").create_vm()
    assert_type(vm74.nr_spis, int)
    assert_type(vm74.max_vcpus, int)
    assert vm74.max_vcpus == 512
    assert_type(kvm.create_vm(), gic5.Vm)


def test_device_attributes(ready: tuple[gic5.Vm, gic5.Vcpu, gic5.Device]) -> None:
    vm, _, dev = ready
    assert_type(dev.has_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS), None)
    buf = bytearray(16)
    dev.get_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    assert int.from_bytes(buf[:8], sys.byteorder) == 0x8
    words = np.zeros(2, dtype=np.uint64)  # any writable buffer plays the user pointer
    dev.get_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, words)
    assert words.tolist() == [0x8, 0]
    assert_type(vm.userspace_ppis(), tuple[int, int])
    assert vm.userspace_ppis() == (0x8, 0)
    with pytest.raises(OSError) as info:
        dev.set_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
    assert info.value.errno == errno.ENXIO
    assert vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5, uapi.KVM_CREATE_DEVICE_TEST) is None


def test_irq_line_and_batch(ready: tuple[gic5.Vm, gic5.Vcpu, gic5.Device]) -> None:
    vm, vcpu, _ = ready
    word = uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, SW)
    assert_type(word, int)
    assert word == 0x02000003
    assert_type(vm.irq_line(word, 1), None)
    assert_type(vcpu.pending_ppis(), tuple[int, int])
    assert vcpu.pending_ppis() == (0x8, 0)
    ppi64 = uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, 64)
    irqs: npt.NDArray[np.uint32] = np.array([word, ppi64], dtype=np.uint32)
    codes = vm.irq_line_batch(irqs, [1, 1])
    assert_type(codes, npt.NDArray[np.int32])
    assert codes.tolist() == [0, -errno.EINVAL]  # PPI 64 on final: EINVAL
    with pytest.raises(OSError) as info:
        vm.irq_line(uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 7, SW), 1)  # no vCPU 7
    assert info.value.errno == errno.EINVAL


def test_guest_round_trip(ready: tuple[gic5.Vm, gic5.Vcpu, gic5.Device]) -> None:
    vm, vcpu, _ = ready
    with vcpu.run() as cpu:
        assert_type(cpu, gic5.CpuIf)
        cpu.write_cr0(True)
        cpu.write_pcr(31)
        cpu.write_ppi_priority(SW, 4)
        assert_type(cpu.read_ppi_priority(SW), int)
        cpu.write_ppi_enabler(0, 1 << SW)
        assert_type(cpu.read_ppi_enabler(0), int)
        assert_type(cpu.wfi(), bool)
    assert_type(vcpu.enabled_ppis(), tuple[int, int])
    assert vcpu.enabled_ppis() == (0x8, 0)
    vm.irq_line(uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, SW), 1)
    assert_type(vcpu.has_pending_irq(), bool)
    assert vcpu.has_pending_irq() is True
    with vcpu.run() as cpu:
        assert_type(cpu.read_ppi_spendr(0), int)
        assert cpu.read_ppi_spendr(0) == 0x8
        intid = cpu.cdia()
        assert_type(intid, int | None)
        assert intid == 0x20000003
        assert cpu.read_ppi_sactiver(0) == 0x8
        cpu.cddi(intid)
        cpu.cdeoi()
        assert cpu.cdia() is None
    assert_type(vcpu.active_ppis(), tuple[int, int])
    assert vcpu.active_ppis() == (0, 0)


def test_vcpu_attributes_and_lines() -> None:
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0, pmu=True)
    value = bytearray(4)
    vcpu.get_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER, value)
    assert int.from_bytes(value, sys.byteorder) == 27  # before a V5 device: the v3-style number
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None
    dev.set_attr(CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    vcpu.has_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
    vcpu.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
    with vcpu.run():
        pass
    vcpu.timer_line("vtimer", True)
    vcpu.pmu_line(True)
    assert vcpu.pending_ppis() == (1 << 27 | 1 << 23, 0)
    assert_type(vcpu.cpu_lines(), tuple[bool, bool])
    assert_type(uapi.ppi_intid(uapi.GICV5_ARCH_PPI_CNTV), int)
    assert uapi.ppi_intid(uapi.GICV5_ARCH_PPI_CNTV) == 0x2000001B


def test_errors() -> None:
    assert_type(gic5.check(0), int)
    with pytest.raises(FileExistsError):
        gic5.check(-errno.EEXIST)
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0)
    with vcpu.run() as cpu:
        with pytest.raises(gic5.UndefinedInstruction):  # no GICv5 device: the guest UNDEFs
            cpu.cdia()


def test_core_exports() -> None:
    switches = gic5core.profile_switches("final")
    assert_type(switches["nr_ppis"], int)
    assert_type(switches["clear_edge_latch_on_entry"], bool)
    assert switches["nr_ppis"] == 64
    assert_type(gic5core.vcpu_state_size(), int)
    assert gic5core.vcpu_state_size() > 0
    assert_type(gic5core.PATTERNS, dict[str, int])
    assert sorted(gic5core.PATTERNS) == ["burst", "sorted", "uniform"]


def test_storm_api() -> None:
    cfg = StormConfig(vms=1, vcpus=2, injections=1_000, repeat=1)
    vms = build_vms(cfg)
    assert_type(vms, list[gic5.Vm])
    counters = gic5core.storm_run(vms, cfg.vcpus, 500)
    assert_type(counters, dict[str, Any])
    assert isinstance(counters["injections"], int) and counters["latency"].shape[0] == 2
    assert counters["injections"] >= 500
    result = run_storm(cfg, vms, progress=None)
    summary = summarize(result)
    assert summary["rounds"] == 1
