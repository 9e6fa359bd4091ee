"""The KVM-shaped front end: Host, Kvm, Vm, Vcpu, Device.

Rules this module keeps:
- Thin policy only: argument validation (TypeError / ValueError / OverflowError before any
  state changes), the config lock, the (group, attr) tables, user pointers and lifecycle. All
  state and every kernel decision live in gic5core; kernel errors come out of gic5core.check.
- One table per attribute surface drives has/get/set, so the three cannot drift:
  ``_DEVICE_ATTRS`` keyed by (group, attr) for the VGIC device, ``_VCPU_GROUPS`` keyed by group
  for the vCPU (the kernel dispatches vCPU attributes by group and checks the attr inside).
- Hot paths go straight to the core: ``Vm`` subclasses ``VmCore``, so ``vm.irq_line`` is the
  core's method found on the type, with no Python frame in between.
- The config lock (``Vm._config_lock``, the kernel's config_lock) is held for configuration:
  vCPU and device creation, attribute get/set, and KVM_RUN's entry work. Injection never
  takes it.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from typing import Any, Callable, Iterator, NamedTuple, overload

from gic5core import CpuIf, VmCore, check
from gic5core import PROFILES as _CORE_PROFILES

from . import kvmdev, uapi
from ._args import attr_key as _attr_key
from ._args import flag as _flag
from ._args import index as _index
from ._args import uint as _uint
from ._args import vcpu_id as _vcpu_id
from ._user import UserPtr

__all__ = ["Host", "Kvm", "Vm", "Vcpu", "Device", "PROFILES"]

PROFILES: tuple[str, ...] = tuple(_CORE_PROFILES)

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1

# The final kernel's hard-coded implemented-PPI set (spec 3): SW_PPI, the four timers and,
# with PMUv3, the PMU overflow PPI.
_IMPL_BASE = (1 << uapi.GICV5_ARCH_PPI_SW_PPI | 1 << uapi.GICV5_ARCH_PPI_CNTHP
              | 1 << uapi.GICV5_ARCH_PPI_CNTV | 1 << uapi.GICV5_ARCH_PPI_CNTHV
              | 1 << uapi.GICV5_ARCH_PPI_CNTP)
_IMPL_PMU = 1 << uapi.GICV5_ARCH_PPI_PMUIRQ

_TIMERS = {"vtimer": 0, "ptimer": 1}
_NV_TIMERS = ("hvtimer", "hptimer")


class Host:
    """Host(pmu=True, impl_ppis=None): the host capabilities KVM probes at boot.

    ``impl_ppis`` defaults to the final kernel's hard-coded set (0x5C800008 with a PMU,
    0x5C000008 without; word 1 = 0). ``impl_ppis=(word0, word1)`` overrides it on every
    profile (on v2 it plays the hardware probe); a 64-PPI profile ignores word 1.

    >>> hex(Host().impl_ppis[0]), hex(Host(pmu=False).impl_ppis[0])
    ('0x5c800008', '0x5c000008')
    """

    __slots__ = ("_pmu", "_impl")

    def __init__(self, pmu: bool = True, impl_ppis: tuple[int, int] | None = None) -> None:
        self._pmu = _flag(pmu, "pmu")
        if impl_ppis is None:
            self._impl = (_IMPL_BASE | (_IMPL_PMU if self._pmu else 0), 0)
        else:
            if not isinstance(impl_ppis, (tuple, list)) or len(impl_ppis) != 2:
                raise TypeError("impl_ppis must be a (word0, word1) pair of ints")
            w0, w1 = impl_ppis
            w0, w1 = (_index(w, f"impl_ppis word {i}") for i, w in enumerate((w0, w1)))
            for i, w in enumerate((w0, w1)):
                if not 0 <= w <= _U64_MAX:
                    raise ValueError(f"impl_ppis word {i} ({w}) is not a 64-bit mask word")
            self._impl = (w0, w1)

    @property
    def pmu(self) -> bool:
        """The host has PMUv3 (vCPUs may ask for ``pmu=True``)."""
        return self._pmu

    @property
    def impl_ppis(self) -> tuple[int, int]:
        """The implemented-PPI mask as (word0, word1), before a 64-PPI profile cuts word 1."""
        return self._impl

    def __repr__(self) -> str:
        return f"Host(pmu={self._pmu}, impl_ppis=({self._impl[0]:#x}, {self._impl[1]:#x}))"


class Kvm:
    """Kvm(host=None, profile="final", backend="model"): /dev/kvm.

    ``backend="model"`` (the default) is a GICv5 host running revision ``profile``, simulated.
    ``backend="kvm"`` opens the real /dev/kvm (the OSError the OS gives when it is missing or
    not accessible, e.g. ENOENT or EACCES) and ``create_vm()`` returns a
    ``gic5.kvmdev.KvmVm`` with the same methods (see docs/kvm-backend.md). The real kernel is
    what it is: with ``backend="kvm"`` a ``host`` other than None or a ``profile`` other than
    "final" is a ValueError, ``.profile`` is "kvm" and ``.host`` raises NotImplementedError.
    ``close()`` (or ``with``) closes /dev/kvm and the VMs made through it; a no-op on the model.
    """

    __slots__ = ("_host", "_profile", "_backend", "_system")

    def __init__(self, host: Host | None = None, profile: str = "final",
                 backend: str = "model") -> None:
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, not {type(backend).__name__}")
        if backend not in kvmdev.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(kvmdev.BACKENDS)}")
        if host is not None and not isinstance(host, Host):
            raise TypeError(f"host must be a gic5.Host, not {type(host).__name__}")
        if not isinstance(profile, str):
            raise TypeError(f"profile must be a str, not {type(profile).__name__}")
        self._backend = backend
        self._host: Host | None = None
        self._system: kvmdev.KvmSystem | None = None
        if backend == "kvm":
            if host is not None:
                raise ValueError("backend='kvm' drives the real kernel: its host is the machine "
                                 "itself, so host must be None")
            if profile != "final":
                raise ValueError("backend='kvm' drives the real kernel, whatever revision it "
                                 f"is: profile {profile!r} cannot be chosen")
            self._profile = "kvm"
            self._system = kvmdev.KvmSystem()
            return
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        self._host = Host() if host is None else host
        self._profile = profile

    @property
    def backend(self) -> str:
        """"model" (the simulated GICv5 host) or "kvm" (the real /dev/kvm)."""
        return self._backend

    @property
    def host(self) -> Host:
        """The simulated Host (NotImplementedError with backend="kvm")."""
        if self._host is None:
            raise NotImplementedError("Kvm.host: backend='kvm' has no gic5.Host; the real "
                                      "host's capabilities are the kernel's")
        return self._host

    @property
    def profile(self) -> str:
        """The model's profile, or "kvm" for the real kernel."""
        return self._profile

    def create_vm(self) -> Vm:
        """KVM_CREATE_VM."""
        if self._system is not None:
            return self._system.create_vm(self)  # type: ignore[return-value]  # same methods
        return Vm(self)

    def close(self) -> None:
        """Close /dev/kvm and every VM created through it (backend="kvm"; no-op otherwise)."""
        if self._system is not None:
            self._system.close()

    def __enter__(self) -> Kvm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._backend == "kvm":
            return "Kvm(backend='kvm')"
        return f"Kvm(host={self._host!r}, profile={self._profile!r})"


class Vm(VmCore):
    """A VM (the VM fd). Create it with ``Kvm.create_vm()``.

    A Vm *is* its compiled core (a Python subclass of ``gic5core.VmCore``): the hot paths
    ``irq_line`` and ``irq_line_batch`` are the core's own methods, found on the type, so a call
    costs what any compiled method call costs.
    """

    __slots__ = ("_kvm", "_config_lock", "_vcpus", "_device", "__weakref__")

    def __init__(self, kvm: Kvm) -> None:
        if not isinstance(kvm, Kvm):
            raise TypeError(f"kvm must be a gic5.Kvm, not {type(kvm).__name__}")
        w0, w1 = kvm.host.impl_ppis
        super().__init__(kvm.profile, kvm.host.pmu, w0, w1)
        self._kvm = kvm
        self._config_lock = threading.Lock()
        self._vcpus: list[Vcpu] = []
        self._device: Device | None = None

    @property
    def kvm(self) -> Kvm:
        """The Kvm that created this VM."""
        return self._kvm

    @property
    def vcpus(self) -> tuple[Vcpu, ...]:
        """The vCPUs in creation (index) order."""
        return tuple(self._vcpus)

    @property
    def device(self) -> Device | None:
        """The V5 VGIC device, or None before KVM_CREATE_DEVICE."""
        return self._device

    def create_vcpu(self, vcpu_id: int, *, el2: bool = False, pmu: bool = False) -> Vcpu:
        """KVM_CREATE_VCPU + KVM_ARM_VCPU_INIT with the EL2 (nested) and PMUv3 features."""
        vcpu_id = _vcpu_id(vcpu_id)
        el2 = _flag(el2, "el2")
        pmu = _flag(pmu, "pmu")
        with self._config_lock:
            index = self._create_vcpu(min(vcpu_id, _U64_MAX), el2, pmu)
            vcpu = Vcpu(self, index, vcpu_id, el2, pmu)
            self._vcpus.append(vcpu)
        return vcpu

    # Typing: without flags the answer is always a Device (or an OSError); only a call that
    # passes flags can be the KVM_CREATE_DEVICE_TEST probe that returns None.
    @overload
    def create_device(self, type: int) -> Device: ...  # noqa: A002 (uapi name)
    @overload
    def create_device(self, type: int, flags: int) -> Device | None: ...  # noqa: A002

    def create_device(self, type: int, flags: int = 0) -> Device | None:  # noqa: A002 (uapi name)
        """KVM_CREATE_DEVICE: the Device, or None with KVM_CREATE_DEVICE_TEST."""
        _uint(type, 32, "type")
        _uint(flags, 32, "flags")
        with self._config_lock:
            if not self._create_device(type, flags):
                return None
            self._device = Device(self)
        return self._device

    def __repr__(self) -> str:
        return (f"<gic5.Vm profile={self.profile} vcpus={len(self._vcpus)} "
                f"device={self._device is not None} dead={self.dead}>")


# --- device attributes -----------------------------------------------------------------------

class _DeviceAttr(NamedTuple):
    get: Callable[[Device, UserPtr], None] | None
    set: Callable[[Device, UserPtr], None] | None


def _set_ctrl_init(dev: Device, ptr: UserPtr) -> None:
    dev.vm._device_init()  # addr is not read


def _get_userspace_ppis(dev: Device, ptr: UserPtr) -> None:
    # Word 1 is the core's mask above PPI 63: always 0 on a 64-PPI profile (every mask is cut to
    # NR), which is the literal 0 the final kernel writes.
    w0, w1 = dev.vm.userspace_ppis()
    if not ptr.write_u64s(w0, w1):
        check(-errno.EFAULT)


_DEVICE_ATTRS: dict[tuple[int, int], _DeviceAttr] = {
    (uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT):
        _DeviceAttr(get=None, set=_set_ctrl_init),
    (uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS):
        _DeviceAttr(get=_get_userspace_ppis, set=None),
}


class Device:
    """The V5 VGIC device (the device fd)."""

    __slots__ = ("_vm",)

    def __init__(self, vm: Vm) -> None:
        self._vm = vm

    @property
    def vm(self) -> Vm:
        """The VM this device belongs to."""
        return self._vm

    def _lookup(self, group: Any, attr: Any, addr: Any) -> tuple[_DeviceAttr | None, UserPtr]:
        key = _attr_key(group, attr)
        ptr = UserPtr(addr)
        self._vm._alive()
        return _DEVICE_ATTRS.get(key), ptr

    def has_attr(self, group: int, attr: int) -> None:
        """KVM_HAS_DEVICE_ATTR: None, or OSError(ENXIO)."""
        entry, _ = self._lookup(group, attr, None)
        if entry is None:
            check(-errno.ENXIO)

    def get_attr(self, group: int, attr: int, addr: Any) -> None:
        """KVM_GET_DEVICE_ATTR into the buffer ``addr``."""
        entry, ptr = self._lookup(group, attr, addr)
        if entry is None or entry.get is None:
            check(-errno.ENXIO)
        assert entry is not None and entry.get is not None
        with self._vm._config_lock:
            entry.get(self, ptr)

    def set_attr(self, group: int, attr: int, addr: Any = None) -> None:
        """KVM_SET_DEVICE_ATTR from the buffer ``addr``."""
        entry, ptr = self._lookup(group, attr, addr)
        if entry is None or entry.set is None:
            check(-errno.ENXIO)
        assert entry is not None and entry.set is not None
        with self._vm._config_lock:
            entry.set(self, ptr)

    def __repr__(self) -> str:
        return f"<gic5.Device KVM_DEV_TYPE_ARM_VGIC_V5 of {self._vm!r}>"


# --- vCPU attributes -------------------------------------------------------------------------

def _timer_get(vcpu: Vcpu, attr: int, ptr: UserPtr) -> None:
    value = vcpu.vm._timer_get(vcpu.index, attr)
    if not ptr.write_u32(value):
        check(-errno.EFAULT)


def _timer_set(vcpu: Vcpu, attr: int, ptr: UserPtr) -> None:
    readable, value = ptr.read_u32()
    vcpu.vm._timer_set(vcpu.index, attr, readable, value)


def _pmu_get(vcpu: Vcpu, attr: int, ptr: UserPtr) -> None:
    value = vcpu.vm._pmu_get(vcpu.index, attr)
    if not ptr.write_u32(value):
        check(-errno.EFAULT)


def _pmu_set(vcpu: Vcpu, attr: int, ptr: UserPtr) -> None:
    readable, value = ptr.read_u32()
    vcpu.vm._pmu_set(vcpu.index, attr, readable, value)


class _VcpuGroup(NamedTuple):
    has: Callable[[Vcpu, int], bool]
    get: Callable[[Vcpu, int, UserPtr], None]
    set: Callable[[Vcpu, int, UserPtr], None]


_TIMER_ATTRS = frozenset((uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER, uapi.KVM_ARM_VCPU_TIMER_IRQ_PTIMER,
                          uapi.KVM_ARM_VCPU_TIMER_IRQ_HVTIMER, uapi.KVM_ARM_VCPU_TIMER_IRQ_HPTIMER))
_PMU_ATTRS = frozenset((uapi.KVM_ARM_VCPU_PMU_V3_IRQ, uapi.KVM_ARM_VCPU_PMU_V3_INIT))

_VCPU_GROUPS: dict[int, _VcpuGroup] = {
    uapi.KVM_ARM_VCPU_TIMER_CTRL: _VcpuGroup(
        has=lambda vcpu, attr: attr in _TIMER_ATTRS, get=_timer_get, set=_timer_set),
    uapi.KVM_ARM_VCPU_PMU_V3_CTRL: _VcpuGroup(
        has=lambda vcpu, attr: vcpu.pmu and attr in _PMU_ATTRS, get=_pmu_get, set=_pmu_set),
}


class Vcpu:
    """A vCPU (the vCPU fd). Create it with ``Vm.create_vcpu()``."""

    __slots__ = ("_vm", "_index", "_vcpu_id", "_el2", "_pmu")

    def __init__(self, vm: Vm, index: int, vcpu_id: int, el2: bool, pmu: bool) -> None:
        self._vm = vm
        self._index = index
        self._vcpu_id = vcpu_id
        self._el2 = el2
        self._pmu = pmu

    # Typed properties (not property(lambda ...)): mypy cannot infer a lambda property's type,
    # which made vcpu.vm, vcpu.pmu etc. Any for users and broke `mypy --strict` on this file.
    @property
    def vm(self) -> Vm:
        """The VM this vCPU belongs to."""
        return self._vm

    @property
    def index(self) -> int:
        """KVM's vCPU index: creation order."""
        return self._index

    @property
    def vcpu_id(self) -> int:
        """The id given to KVM_CREATE_VCPU."""
        return self._vcpu_id

    @property
    def el2(self) -> bool:
        """Created with the EL2 (nested virt) feature."""
        return self._el2

    @property
    def pmu(self) -> bool:
        """Created with the PMUv3 feature."""
        return self._pmu

    # --- attributes ---

    def _group(self, group: Any, attr: Any, addr: Any) -> tuple[_VcpuGroup | None, int, UserPtr]:
        group, attr = _attr_key(group, attr)
        ptr = UserPtr(addr)
        self._vm._alive()
        return _VCPU_GROUPS.get(group), attr, ptr

    def has_attr(self, group: int, attr: int) -> None:
        """KVM_HAS_DEVICE_ATTR on the vCPU fd: None, or OSError(ENXIO)."""
        entry, attr, _ = self._group(group, attr, None)
        if entry is None or not entry.has(self, attr):
            check(-errno.ENXIO)

    def get_attr(self, group: int, attr: int, addr: Any) -> None:
        """KVM_GET_DEVICE_ATTR on the vCPU fd; the value is a 4-byte int written to ``addr``."""
        entry, attr, ptr = self._group(group, attr, addr)
        if entry is None:
            check(-errno.ENXIO)
        assert entry is not None
        with self._vm._config_lock:
            entry.get(self, attr, ptr)

    def set_attr(self, group: int, attr: int, addr: Any = None) -> None:
        """KVM_SET_DEVICE_ATTR on the vCPU fd; the value is a 4-byte int read from ``addr``."""
        entry, attr, ptr = self._group(group, attr, addr)
        if entry is None:
            check(-errno.ENXIO)
        assert entry is not None
        with self._vm._config_lock:
            entry.set(self, attr, ptr)

    # --- KVM_RUN ---

    @contextlib.contextmanager
    def run(self) -> Iterator[CpuIf]:
        """One KVM_RUN: entering does the first-run work and the entry flush, the block is the
        guest running (the yielded CpuIf is its GICv5 CPU interface), leaving folds the state
        back (also when the block raises)."""
        with self._vm._config_lock:
            self._vm._run_enter(self._index)
        cpu = CpuIf(self._vm, self._index)
        try:
            yield cpu
        finally:
            cpu._close()
            self._vm._run_exit(self._index)

    # --- in-kernel devices ---

    def timer_line(self, name: str, level: bool) -> None:
        """Drive the output line of the arch timer ``name`` ("vtimer" or "ptimer")."""
        if not isinstance(name, str):
            raise TypeError(f"timer name must be a str, not {type(name).__name__}")
        if name in _NV_TIMERS:
            raise ValueError(f"{name} exists only with nested virtualisation, which a "
                             "GICv5 VM refuses")
        if name not in _TIMERS:
            raise ValueError(f"unknown timer {name!r}; the GICv5 VM has 'vtimer' and 'ptimer'")
        self._vm._timer_line(self._index, _TIMERS[name], _flag(level, "level"))

    def pmu_line(self, level: bool) -> None:
        """Drive the PMU overflow line (PPI 23) of a PMU vCPU."""
        self._vm._pmu_line(self._index, _flag(level, "level"))

    # --- inspection: never raises ---

    def pending_ppis(self) -> tuple[int, int]:
        """KVM's pending view: edge latch, or latch/line for level PPIs, for every PPI."""
        return self._vm._pending_ppis(self._index)

    def active_ppis(self) -> tuple[int, int]:
        """Active as folded back at the last exit."""
        return self._vm._active_ppis(self._index)

    def enabled_ppis(self) -> tuple[int, int]:
        """The guest's enables as KVM holds them (masked by the exposed set)."""
        return self._vm._enabled_ppis(self._index)

    def has_pending_irq(self) -> bool:
        """What the kernel's block check (kvm_vcpu_check_block) would wake on now.

        kvm_arch_vcpu_runnable (the IRQ/FIQ lines of a userspace irqchip, or
        ``vgic_pending_irq()``), then kvm_cpu_has_pending_timer: on v2/v3 a timer that should
        fire (its recorded line is high) wakes the vCPU, on final only the WFIT deadline,
        which the model has no clock for. The same answer ``cpu.wfi()`` returns.
        """
        return self._vm._has_pending_irq(self._index)

    def vgic_pending_irq(self) -> bool:
        """kvm_vgic_vcpu_pending_irq alone (vgic_v5_has_pending_ppi) on the saved state."""
        return self._vm._vgic_pending_irq(self._index)

    def cpu_lines(self) -> tuple[bool, bool]:
        """The (IRQ, FIQ) lines driven by KVM_ARM_IRQ_TYPE_CPU words (no in-kernel GIC)."""
        return self._vm._cpu_lines(self._index)

    def __repr__(self) -> str:
        return f"<gic5.Vcpu id={self._vcpu_id} index={self._index} of {self._vm!r}>"
