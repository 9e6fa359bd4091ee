"""The KVM-shaped front end: Host, Kvm, Vm, Vcpu, Device.

Rules this module keeps:
- Thin policy only: argument validation (TypeError / ValueError / OverflowError before any
  state changes), the config lock, the (group, attr) tables, user pointers and lifecycle. All
  state and every kernel decision live in gic5core; kernel errors come out of gic5core.check.
- One table per attribute surface drives has/get/set, so the three cannot drift:
  ``_DEVICE_ATTRS`` keyed by (group, attr) for the VGIC device, with (group, None) for a group
  whose attr is data the handler reads (7.4's ADDR, NR_IRQS, CPU_SYSREGS), ``_VCPU_GROUPS``
  keyed by group for the vCPU (the kernel dispatches vCPU attributes by group and checks the
  attr inside). An entry marked ``irs`` exists only on a profile with the IRS-era UAPI.
- Hot paths go straight to the core: ``Vm`` subclasses ``VmCore``, so ``vm.irq_line`` is the
  core's method found on the type, with no Python frame in between.
- The config lock (``Vm._config_lock``, the kernel's config_lock) is held for configuration:
  vCPU and device creation, attribute get/set, and KVM_RUN's entry work. Injection never
  takes it.
"""

from __future__ import annotations

import contextlib
import errno
import struct
import threading
from typing import Any, Callable, Iterator, NamedTuple, overload

from gic5core import PROFILE_DATA as _PROFILE_DATA
from gic5core import CpuIf, VmCore, check
from gic5core.vm import check_irs_host, check_irs_regs_host
from gic5core import PROFILES as _CORE_PROFILES
from gic5core import IRS_POLICY as _CORE_IRS_POLICY

from . import kvmdev, uapi
from ._args import attr_key as _attr_key
from ._args import flag as _flag
from ._args import index as _index
from ._args import ist_descriptor
from ._args import uint as _uint
from ._args import vcpu_id as _vcpu_id
from ._user import UserPtr

__all__ = ["Host", "Kvm", "Vm", "Vcpu", "Device", "PROFILES"]

PROFILES: tuple[str, ...] = tuple(_CORE_PROFILES)

# Profiles whose V5 device has the IRS-era UAPI (the irs_uapi switch): ADDR, NR_IRQS,
# CPU_SYSREGS, IRS_REGS, IST.
_IRS_PROFILES = frozenset(p for p in PROFILES if _PROFILE_DATA[p]["irs_uapi"])

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


def _irs_policy_arg(policy: Any) -> dict[str, bool]:
    # Host(irs_policy=...): a mapping of gic5core.IRS_POLICY names to bools, checked here so
    # a bad one fails before any VM exists.
    if policy is None:
        return {}
    if not isinstance(policy, dict):
        raise TypeError(f"irs_policy must be a dict, not {type(policy).__name__}")
    for name, value in policy.items():
        if name not in _CORE_IRS_POLICY:
            raise ValueError(f"unknown IRS policy {name!r}; known: {', '.join(_CORE_IRS_POLICY)}")
        if not isinstance(value, bool):
            raise TypeError(f"irs_policy[{name!r}] must be a bool, not {type(value).__name__}")
    return dict(policy)


class Host:
    """Host(pmu=True, impl_ppis=None, *, max_vpes=512, lpi_domain=True, ipa_bits=40,
    gcie_legacy=False, irs_pri_bits=5, ist_id_bits=16, min_lpi_id_bits=14, pa_range=5): the
    host capabilities KVM probes at boot.

    ``impl_ppis`` defaults to the final kernel's hard-coded set (0x5C800008 with a PMU,
    0x5C000008 without; word 1 = 0). ``impl_ppis=(word0, word1)`` overrides it on every
    profile (on v2 it plays the hardware probe); a 64-PPI profile ignores word 1.

    The IRS inputs matter on profile "7.4" only (the others ignore them):
    ``max_vpes`` is the host IRS's VPE count, 2 ** (IRS_IDR4.VPE_ID_BITS + 1), a power of two
    2..65536; ``max_gicv5_vcpus = min(max_vpes, 512)`` (vgic_v5_probe). ``lpi_domain`` False:
    the host GICv5 driver has no LPI domain, so neither the V5 nor the GICv3-legacy device
    registers (KVM_CREATE_DEVICE(V5) is ENODEV). ``ipa_bits`` is the guest IPA size the IRS
    address must fit in (32..52). ``gcie_legacy`` True: the GICv3-legacy device registers too,
    which keeps a new VM's vCPU limit at 512 until KVM_CREATE_DEVICE(V5) lowers it; False: the
    limit is max_gicv5_vcpus from the start. The host IRS's register inputs (7.4's emulated
    IRS copies them at CTRL_INIT, kvm_vgic_v5_irs_init): ``irs_pri_bits`` 1..5 (the IRS's
    priority bits: IRS_IDR1.PRIORITY_BITS + 1, and the bits CDPRI keeps), ``ist_id_bits``
    14..24 (the host IRS_IDR2.ID_BITS; the guest sees min(16, it)), ``min_lpi_id_bits``
    10..min(ist_id_bits, 15) (IRS_IDR2.MIN_LPI_ID_BITS, 4 bits), ``pa_range`` 0..7 (the sanitised
    ID_AA64MMFR0_EL1.PARange, IRS_IDR0.PA_RANGE). Their defaults are model choices.
    ``irs_policy`` overrides the virtual IRS's choices where the architecture leaves one
    (``gic5core.IRS_POLICY``: ppi_wins_irs_tie, irs_tie_lowest_id, vdpend_updates_hm,
    db_fires_if_pending, spi_ids_pow2; bools; the profile's values by default, see
    docs/profiles.md).

    >>> hex(Host().impl_ppis[0]), hex(Host(pmu=False).impl_ppis[0])
    ('0x5c800008', '0x5c000008')
    >>> Host(max_vpes=256).max_vpes
    256
    """

    __slots__ = ("_pmu", "_impl", "_max_vpes", "_lpi_domain", "_ipa_bits", "_gcie_legacy",
                 "_irs_regs", "_irs_policy")

    def __init__(self, pmu: bool = True, impl_ppis: tuple[int, int] | None = None, *,
                 max_vpes: int = 512, lpi_domain: bool = True, ipa_bits: int = 40,
                 gcie_legacy: bool = False, irs_pri_bits: int = 5, ist_id_bits: int = 16,
                 min_lpi_id_bits: int = 14, pa_range: int = 5,
                 irs_policy: dict[str, bool] | None = None) -> None:
        self._pmu = _flag(pmu, "pmu")
        self._irs_policy = _irs_policy_arg(irs_policy)
        irs_regs = (_index(irs_pri_bits, "irs_pri_bits"), _index(ist_id_bits, "ist_id_bits"),
                    _index(min_lpi_id_bits, "min_lpi_id_bits"), _index(pa_range, "pa_range"))
        check_irs_regs_host(*irs_regs)
        self._irs_regs = irs_regs
        max_vpes = _index(max_vpes, "max_vpes")
        ipa_bits = _index(ipa_bits, "ipa_bits")
        check_irs_host(max_vpes, ipa_bits)  # the core's rule, checked before any VM exists
        self._max_vpes = max_vpes
        self._ipa_bits = ipa_bits
        self._lpi_domain = _flag(lpi_domain, "lpi_domain")
        self._gcie_legacy = _flag(gcie_legacy, "gcie_legacy")
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

    @property
    def max_vpes(self) -> int:
        """The host IRS's VPE count (7.4: max_gicv5_vcpus = min(max_vpes, 512))."""
        return self._max_vpes

    @property
    def lpi_domain(self) -> bool:
        """The host GICv5 driver has an LPI domain (7.4: the V5 device registers only then)."""
        return self._lpi_domain

    @property
    def ipa_bits(self) -> int:
        """The guest IPA size in bits (7.4: the IRS region must fit below 1 << ipa_bits)."""
        return self._ipa_bits

    @property
    def gcie_legacy(self) -> bool:
        """The GICv3-legacy device registers too (7.4: VMs start with 512 vCPUs)."""
        return self._gcie_legacy

    @property
    def irs_policy(self) -> dict[str, bool]:
        """The overrides of the virtual IRS's policy switches (a copy; {} = the profile's)."""
        return dict(self._irs_policy)

    @property
    def irs_pri_bits(self) -> int:
        """The host IRS's priority bits (7.4: IRS_IDR1.PRIORITY_BITS + 1, CDPRI's width)."""
        return self._irs_regs[0]

    @property
    def ist_id_bits(self) -> int:
        """The host IRS_IDR2.ID_BITS (7.4: the guest's IRS_IDR2.ID_BITS is min(16, it))."""
        return self._irs_regs[1]

    @property
    def min_lpi_id_bits(self) -> int:
        """The host IRS_IDR2.MIN_LPI_ID_BITS (7.4: the guest's, and IDR2's restore floor)."""
        return self._irs_regs[2]

    @property
    def pa_range(self) -> int:
        """The sanitised ID_AA64MMFR0_EL1.PARange code (7.4: IRS_IDR0.PA_RANGE at reset)."""
        return self._irs_regs[3]

    def __repr__(self) -> str:
        return (f"Host(pmu={self._pmu}, impl_ppis=({self._impl[0]:#x}, {self._impl[1]:#x}), "
                f"max_vpes={self._max_vpes}, lpi_domain={self._lpi_domain}, "
                f"ipa_bits={self._ipa_bits}, gcie_legacy={self._gcie_legacy}, "
                f"irs_pri_bits={self.irs_pri_bits}, ist_id_bits={self.ist_id_bits}, "
                f"min_lpi_id_bits={self.min_lpi_id_bits}, pa_range={self.pa_range}, "
                f"irs_policy={self._irs_policy})")


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
        host = kvm.host
        w0, w1 = host.impl_ppis
        super().__init__(kvm.profile, host.pmu, w0, w1, host.max_vpes, host.lpi_domain,
                         host.ipa_bits, host.gcie_legacy)
        self._set_irs_host(host.irs_pri_bits, host.ist_id_bits, host.min_lpi_id_bits,
                           host.pa_range)
        self._set_irs_policy(host.irs_policy)
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

_Handler = Callable[["Device", int, Any], None]  # a UserPtr, or addr itself (raw_addr)


class _DeviceAttr(NamedTuple):
    get: _Handler | None          # None: the kernel answers ENXIO
    set: _Handler | None
    has: Callable[[Device, int], None] | None = None  # a data-attr group's own HAS check
    irs: bool = False             # only on a profile with the IRS-era UAPI (7.4)
    raw_addr: bool = False        # the handlers take addr itself (a struct with pointers)


def _set_ctrl_init(dev: Device, attr: int, ptr: UserPtr) -> None:
    dev.vm._device_init()  # addr is not read


def _get_userspace_ppis(dev: Device, attr: int, ptr: UserPtr) -> None:
    # Word 1 is the core's mask above PPI 63: always 0 on a 64-PPI profile (every mask is cut to
    # NR), which is the literal 0 the final kernel writes.
    w0, w1 = dev.vm.userspace_ppis()
    if not ptr.write_u64s(w0, w1):
        check(-errno.EFAULT)


def _has_addr(dev: Device, attr: int) -> None:
    # vgic_v5_has_attr: only the IRS base is an address of the V5 device.
    if attr != uapi.KVM_VGIC_V5_ADDR_TYPE_IRS:
        check(-errno.ENXIO)


def _set_addr(dev: Device, attr: int, ptr: UserPtr) -> None:
    readable, value = ptr.read_u64()
    dev.vm._irs_addr_set(attr, readable, value)


def _get_addr(dev: Device, attr: int, ptr: UserPtr) -> None:
    if not ptr.write_u64(dev.vm._irs_addr_get(attr, ptr.readable(8))):
        check(-errno.EFAULT)


def _set_nr_irqs(dev: Device, attr: int, ptr: UserPtr) -> None:
    readable, value = ptr.read_u32()  # a u32, whatever the attr
    dev.vm._nr_irqs_set(readable, value)


def _get_nr_irqs(dev: Device, attr: int, ptr: UserPtr) -> None:
    if not ptr.write_u32(dev.vm.nr_spis):
        check(-errno.EFAULT)


def _has_sysreg(dev: Device, attr: int) -> None:
    dev.vm._sysreg_has(attr)


def _set_sysreg(dev: Device, attr: int, ptr: UserPtr) -> None:
    readable, value = ptr.read_u64()
    dev.vm._sysreg_set(attr, readable, value)


def _get_sysreg(dev: Device, attr: int, ptr: UserPtr) -> None:
    if not ptr.write_u64(dev.vm._sysreg_get(attr)):
        check(-errno.EFAULT)


def _has_irs_regs(dev: Device, attr: int) -> None:
    dev.vm._irs_regs_has(attr)


def _set_irs_regs(dev: Device, attr: int, ptr: UserPtr) -> None:
    readable, value = ptr.read_u64()
    dev.vm._irs_regs_set(attr, readable, value)


def _get_irs_regs(dev: Device, attr: int, ptr: UserPtr) -> None:
    if not ptr.write_u64(dev.vm._irs_regs_get(attr)):
        check(-errno.EFAULT)


def _has_ist(dev: Device, attr: int) -> None:
    if attr != 0:
        check(-errno.ENXIO)  # vgic_v5_has_attr: the IST group has attr 0 only


_ISTE = struct.Struct("<I")  # one little-endian __u32 ISTE


def _ist_args(attr: int, addr: Any) -> tuple[bool, bool, UserPtr, int, UserPtr, int]:
    if attr != 0:
        check(-errno.ENXIO)  # vgic_v5_set_attr / get_attr, before the IST functions
    null, readable, spi, spi_size, lpi, lpi_size = ist_descriptor(addr)
    return null, readable, UserPtr(spi), spi_size, UserPtr(lpi), lpi_size


def _get_ist(dev: Device, attr: int, addr: Any) -> None:
    # vgic_v5_irs_save_ists: the SPI words go out one put_user each (an entry that does not
    # fit faults, the earlier ones stay written), then the LPI IST's.
    null, readable, spi, spi_size, lpi, lpi_size = _ist_args(attr, addr)
    spi_words, lpi_rc, lpi_words = dev.vm._ist_get(null, readable, spi.is_null, spi_size,
                                                   lpi.is_null, lpi_size)
    if not spi.write(_ISTE, tuple(int(w) for w in spi_words)):
        check(-errno.EFAULT)
    if lpi_rc:
        check(lpi_rc)
    if lpi_words is not None and not lpi.write(_ISTE, tuple(int(w) for w in lpi_words)):
        check(-errno.EFAULT)


def _set_ist(dev: Device, attr: int, addr: Any) -> None:
    # vgic_v5_irs_restore_ists: the words that can be read (get_user each) are handed over;
    # the core faults at the first one missing.
    null, readable, spi, spi_size, lpi, lpi_size = _ist_args(attr, addr)
    dev.vm._ist_set(null, readable, spi.is_null, spi_size, lpi.is_null, lpi_size,
                    spi.read_words(_ISTE, spi_size // 4), lpi.read_words(_ISTE, lpi_size // 4))


_DEVICE_ATTRS: dict[tuple[int, int | None], _DeviceAttr] = {
    (uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT):
        _DeviceAttr(get=None, set=_set_ctrl_init),
    (uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS):
        _DeviceAttr(get=_get_userspace_ppis, set=None),
    # 7.4 (vgic_v5_has_attr / _get_attr / _set_attr @ 2bc87b583a30): groups whose attr is data.
    (uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, None):
        _DeviceAttr(get=_get_addr, set=_set_addr, has=_has_addr, irs=True),
    (uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, None):
        _DeviceAttr(get=_get_nr_irqs, set=_set_nr_irqs, irs=True),
    (uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, None):
        _DeviceAttr(get=_get_sysreg, set=_set_sysreg, has=_has_sysreg, irs=True),
    # 7.4 (vgic_v5_attr_regs_access; vgic_v5_irs_save_ists / _restore_ists @ f9846846):
    (uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS, None):
        _DeviceAttr(get=_get_irs_regs, set=_set_irs_regs, has=_has_irs_regs, irs=True),
    (uapi.KVM_DEV_ARM_VGIC_GRP_IST, None):
        _DeviceAttr(get=_get_ist, set=_set_ist, has=_has_ist, irs=True, raw_addr=True),
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

    def _lookup(self, group: Any, attr: Any,
                addr: Any) -> tuple[_DeviceAttr | None, int, Any]:
        group, attr = _attr_key(group, attr)
        entry = _DEVICE_ATTRS.get((group, attr)) or _DEVICE_ATTRS.get((group, None))
        if entry is not None and entry.irs and self._vm.profile not in _IRS_PROFILES:
            entry = None  # a PPI-only device does not know the group
        if entry is not None and entry.raw_addr:
            ist_descriptor(addr)  # the argument rule, before anything runs
            ptr: Any = addr
        else:
            ptr = UserPtr(addr)
        self._vm._alive()
        return entry, attr, ptr

    def has_attr(self, group: int, attr: int) -> None:
        """KVM_HAS_DEVICE_ATTR: None, or OSError (ENXIO; on 7.4 CPU_SYSREGS also EINVAL)."""
        entry, attr, _ = self._lookup(group, attr, None)
        if entry is None:
            check(-errno.ENXIO)
        assert entry is not None
        if entry.has is not None:
            with self._vm._config_lock:
                entry.has(self, attr)

    def get_attr(self, group: int, attr: int, addr: Any) -> None:
        """KVM_GET_DEVICE_ATTR into the buffer ``addr``."""
        entry, attr, ptr = self._lookup(group, attr, addr)
        if entry is None or entry.get is None:
            check(-errno.ENXIO)
        assert entry is not None and entry.get is not None
        with self._vm._config_lock:
            entry.get(self, attr, ptr)

    def set_attr(self, group: int, attr: int, addr: Any = None) -> None:
        """KVM_SET_DEVICE_ATTR from the buffer ``addr``."""
        entry, attr, ptr = self._lookup(group, attr, addr)
        if entry is None or entry.set is None:
            check(-errno.ENXIO)
        assert entry is not None and entry.set is not None
        with self._vm._config_lock:
            entry.set(self, attr, ptr)

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

    @property
    def contextr(self) -> int:
        """ICH_CONTEXTR_EL2 as vgic_v5_load / vgic_v5_put last wrote it (7.4; 0 elsewhere):
        V 63, IRICHPPIDIS 61 (the guest's IRS was disabled at the load: no SPI is
        delivered), DB 60 and DBPM 59:55 (the doorbell a WFI put requested), VPE 47:32; the
        VM field 15:0 is always 0 (host VM ids are not modelled)."""
        return int(self._vm._contextr(self._index))

    @property
    def db_fired(self) -> bool:
        """The vCPU's VPE doorbell fired since it was made non-resident (7.4)."""
        return bool(self._vm._db_fired(self._index))

    def __repr__(self) -> str:
        return f"<gic5.Vcpu id={self._vcpu_id} index={self._index} of {self._vm!r}>"
