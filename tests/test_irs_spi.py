"""The kernel-value tests of 7.4's SPIs and virtual IRS (tests/test_reference_irs.py), run on
gic5 itself.

test_reference_irs.py asserts, of the reference model, the values the kernel selftest and the
kernel / QEMU source give (each test names its function: kvm_vm_ioctl_irq_line,
vgic_v5_mmio_*_irs_*, vgic_v5_attr_regs_access, vgic_v5_irs_save_ists / _restore_ists,
vgic_v5_load / vgic_v5_put, GICR CDIA, ...). This module collects the same test functions
and runs them with that module's ``RefKvm`` replaced by a factory of ``gic5.Kvm`` on a
``gic5.Host`` with the same host inputs, so every literal expected value is checked against
the library too. The reference's ``Vcpu.run_enter`` / ``run_exit`` (an unbracketed run)
are played by ``Vcpu.run()``'s context manager.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

import gic5

sys.path.insert(0, os.path.dirname(__file__))

import test_reference_irs as spec_tests  # noqa: E402

_RUNS: dict[int, Any] = {}


def _kvm(profile: str = "final", host_pmu: bool = True, impl_ppis: Any = None,
         **host: Any) -> gic5.Kvm:
    return gic5.Kvm(gic5.Host(host_pmu, impl_ppis, **host), profile=profile)


def _run_enter(vcpu: gic5.Vcpu) -> Any:
    ctx = vcpu.run()
    cpu = ctx.__enter__()
    _RUNS[id(vcpu)] = ctx
    return cpu


def _run_exit(vcpu: gic5.Vcpu) -> None:
    _RUNS.pop(id(vcpu)).__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _on_gic5(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(spec_tests, "RefKvm", _kvm)
    monkeypatch.setattr(gic5.Vcpu, "run_enter", _run_enter, raising=False)
    monkeypatch.setattr(gic5.Vcpu, "run_exit", _run_exit, raising=False)
    yield
    for ctx in list(_RUNS.values()):  # a failed test may leave a run open
        ctx.__exit__(None, None, None)
    _RUNS.clear()


for _name in dir(spec_tests):
    if _name.startswith("test_"):
        globals()[_name] = getattr(spec_tests, _name)
