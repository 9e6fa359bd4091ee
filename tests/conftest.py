"""Shared fixtures for the gic5 test suite.

Covers: a session-start check that the compiled core is what gets tested, a kvm per
profile, a factory for (initialised) VMs with N vCPUs, and helpers for the user-pointer
buffers and the exact-errno checks every test file uses.

Rule kept: fixtures build state only through gic5's public API; nothing here computes an
expected result (each test states its own, from docs/semantics.md and the spec).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.machinery
import pathlib
import pkgutil
import struct
import sys
from types import SimpleNamespace

import pytest

import gic5
from gic5 import uapi

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # the tests' own helpers
from vmsetup import IRS_GPA, set_irs_base  # noqa: E402

# Modules the semantics document names in the core; the check also covers every other
# module found in the package, so a stray pure-Python stand-in cannot slip through.
REQUIRED_CORE_MODULES = ("errors",)


def _core_problems() -> list[str]:
    """Why gic5core would not be the compiled core (empty list when it is)."""
    try:
        core = importlib.import_module("gic5core")
    except ImportError as exc:
        return [f"gic5core is not importable: {exc!r}"]
    names = sorted(m.name for m in pkgutil.iter_modules(core.__path__) if not m.name.startswith("_"))
    problems = [f"gic5core has no module {n!r}" for n in REQUIRED_CORE_MODULES if n not in names]
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in names:
        try:
            mod = importlib.import_module(f"gic5core.{name}")
        except ImportError as exc:
            problems.append(f"gic5core.{name} does not import: {exc!r}")
            continue
        path = getattr(mod, "__file__", None) or ""
        if not path.endswith(suffixes):
            problems.append(f"gic5core.{name} is not an extension module: {path!r}")
    return problems


def pytest_sessionstart(session):
    # Fail the whole run, not a single test: testing a pure-Python stand-in (or a stale
    # source tree without the built core) would make every other result meaningless.
    problems = _core_problems()
    if problems:
        raise pytest.UsageError("gic5core is not the compiled core:\n  " + "\n  ".join(problems))


# --- errno helpers ---------------------------------------------------------------------------

@contextlib.contextmanager
def _fails(code: int):
    """Expect an OSError whose errno is exactly ``code``."""
    with pytest.raises(OSError) as info:
        yield info
    assert info.value.errno == code, (
        f"expected errno {code} ({errno_name(code)}), got {info.value.errno} "
        f"({errno_name(info.value.errno)}): {info.value!r}")


def errno_name(code):
    return errno.errorcode.get(code, str(code))


def _outcome(fn, *args, **kwargs):
    """0 for a call that returns None, -errno for an OSError, ("returned", x) otherwise.

    Lets a test sweep many inputs and compare a whole dict of outcomes at once, so one
    failure report shows every cell that differs.
    """
    try:
        result = fn(*args, **kwargs)
    except OSError as exc:
        return -exc.errno
    return 0 if result is None else ("returned", result)


@pytest.fixture
def fails():
    return _fails


@pytest.fixture
def outcome():
    return _outcome


# --- buffers (the user pointer) --------------------------------------------------------------

class Mem:
    """Helpers for the raw native-endian buffers that stand for ``attr.addr``."""

    @staticmethod
    def filled(nbytes: int, fill: int = 0xFF) -> bytearray:
        # Pre-filled with a pattern so a test sees exactly which bytes a call wrote.
        return bytearray([fill]) * nbytes

    @staticmethod
    def u64s(buf) -> tuple[int, ...]:
        raw = bytes(memoryview(buf).cast("B"))
        n = len(raw) // 8
        return struct.unpack(f"={n}Q", raw[: 8 * n])

    @staticmethod
    def u32_bytes(value: int) -> bytes:
        return struct.pack("=I", value)

    @staticmethod
    def read_u32(buf) -> int:
        return struct.unpack("=I", bytes(memoryview(buf).cast("B"))[:4])[0]

    @staticmethod
    def userspace_ppis(dev) -> tuple[int, int]:
        """USERSPACE_PPIS through get_attr, into a buffer pre-filled with 0xff."""
        buf = Mem.filled(16)
        assert dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS,
                            buf) is None
        return Mem.u64s(buf)

    @staticmethod
    def vcpu_get(vcpu, group: int, attr: int) -> int:
        buf = Mem.filled(4)
        assert vcpu.get_attr(group, attr, buf) is None
        return Mem.read_u32(buf)

    @staticmethod
    def vcpu_set(vcpu, group: int, attr: int, value: int):
        return vcpu.set_attr(group, attr, Mem.u32_bytes(value))


@pytest.fixture
def mem():
    return Mem


# --- kvm / vm factories ----------------------------------------------------------------------

@pytest.fixture(params=gic5.PROFILES)
def profile(request):
    return request.param


@pytest.fixture
def kvm(profile):
    """A /dev/kvm of each profile (tests using it run once per profile)."""
    return gic5.Kvm(profile=profile)


def _make_vm(profile="final", vcpus=1, *, host=None, device=True, init=True, pmu=(), el2=(),
             pmu_init=True, irs_base=IRS_GPA):
    """Build a VM the usual way: vCPUs, then the V5 device (on 7.4 with its IRS base, unless
    ``irs_base`` is None), then CTRL_INIT, then PMU_V3_INIT.

    ``vcpus`` is a count (ids 0..n-1) or a list of ids in creation order; ``pmu`` and ``el2``
    name the ids that get those features. Returns a namespace with kvm, vm, dev, vcpus (list
    in creation order), by_id (dict) and vcpu (the first one).
    """
    kvm = gic5.Kvm(host=host, profile=profile)
    vm = kvm.create_vm()
    ids = list(range(vcpus)) if isinstance(vcpus, int) else list(vcpus)
    cpus = [vm.create_vcpu(i, pmu=i in pmu, el2=i in el2) for i in ids]
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5) if device else None
    if device and irs_base is not None:
        set_irs_base(dev, irs_base)
    if device and init:
        assert dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT) is None
        if pmu_init:
            for vid, cpu in zip(ids, cpus, strict=True):
                if vid in pmu:
                    assert cpu.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL,
                                        uapi.KVM_ARM_VCPU_PMU_V3_INIT) is None
    return SimpleNamespace(kvm=kvm, vm=vm, dev=dev, vcpus=cpus, by_id=dict(zip(ids, cpus, strict=True)),
                           vcpu=cpus[0] if cpus else None)


@pytest.fixture
def make_vm():
    return _make_vm


def _run_once(vcpu):
    """One KVM_RUN in which the guest does nothing."""
    with vcpu.run():
        pass


@pytest.fixture
def run_once():
    return _run_once


@pytest.fixture
def guest_ready():
    """Put a running guest's CPU interface into the state the selftest uses.

    CR0.EN on, priority mask 31 (everything passes), the given PPIs enabled in ENABLER0
    at the given priorities. Returns the cpu for chaining.
    """
    def ready(cpu, ppis=(uapi.GICV5_ARCH_PPI_SW_PPI,), prio=0, pcr=31):
        mask = 0
        for ppi in ppis:
            cpu.write_ppi_priority(ppi, prio)
            mask |= 1 << ppi
        cpu.write_ppi_enabler(0, mask)
        cpu.write_pcr(pcr)
        cpu.write_cr0(True)
        return cpu
    return ready


@pytest.fixture
def sw_word():
    """KVM_IRQ_LINE word for SW_PPI on a given vCPU id (default 0)."""
    return lambda vcpu_id=0: uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, vcpu_id,
                                            uapi.GICV5_ARCH_PPI_SW_PPI)


# --- stress tests: run only when selected -------------------------------------------------------
# Tests marked @pytest.mark.stress (test_concurrency_accounting.py, test_fuzz.py) are long; a plain `pytest`
# leaves them out (reported as deselected) and `pytest -m stress` runs them (GIC5_STRESS_OPS
# sets their size). Any -m expression that names the marker decides for itself.

def pytest_collection_modifyitems(config, items):
    if "stress" in (config.getoption("markexpr") or ""):
        return
    stress = [item for item in items if item.get_closest_marker("stress") is not None]
    if stress:
        config.hook.pytest_deselected(items=stress)
        items[:] = [item for item in items if item.get_closest_marker("stress") is None]


@pytest.fixture
def fast_switching():
    """Make the GIL change hands often, so GIL-holding calls interleave finely (the
    concurrency tests)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)

