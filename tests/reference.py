"""Pure-Python reference model of gic5's public surface: the test oracle.

Rules this module keeps:
- Written from docs/semantics.md and the spec (shared/spec/gicv5-kvm-ppi.md) only; section
  numbers in comments point at semantics.md ("sem") or the spec ("spec").
- Imports neither gic5 nor gic5core: the few constants it needs are defined here, so a bug in
  the library's constants cannot hide in the oracle.
- Clarity over speed: masks are plain Python ints (bit i = PPI i, up to 128 bits), one flat
  attribute per piece of kernel state, no caching.
- Kernel paths return 0 or -errno internally; the public methods turn a negative result into
  ``OSError(errno, os.strerror(errno))`` in one place (``_check``). Python misuse (wrong type,
  out-of-range int) is raised before any state changes, as the library does.
- Mirrors the library's API shape: RefKvm(profile, host_pmu, impl_ppis).create_vm() -> RefVm
  with create_vcpu / create_device / irq_line / exposed_ppis / userspace_ppis; RefDevice and
  RefVcpu with has/get/set_attr; ``with vcpu.run() as cpu`` (or run_enter()/run_exit()) yields
  a RefCpuIf with the guest's CPU interface methods.
"""

from __future__ import annotations

import errno
import operator
import os
import sys

__all__ = [
    "PROFILES", "RefKvm", "RefVm", "RefVcpu", "RefDevice", "RefCpuIf", "UndefinedInstruction",
    "words", "join",
]

PROFILES = ("v2", "v3", "final")

# --- constants (values from spec section 2; deliberately not imported from gic5.uapi) -----
KVM_DEV_TYPE_ARM_VGIC_V5 = 16
KVM_CREATE_DEVICE_TEST = 1
GRP_CTRL = 4
CTRL_INIT = 0
USERSPACE_PPIS = 5
VCPU_PMU_V3_CTRL = 0
PMU_V3_IRQ = 0
PMU_V3_INIT = 1
VCPU_TIMER_CTRL = 1
IRQ_TYPE_CPU, IRQ_TYPE_SPI, IRQ_TYPE_PPI = 0, 1, 2
SW_PPI = 3
PMU_PPI = 23
VTIMER_PPI = 27
PTIMER_PPI = 30
PPI_INTID = 0x20000000  # GICV5_HWIRQ_TYPE_PPI << 29
PMU_INTID = PPI_INTID | PMU_PPI
# VTIMER, PTIMER, HVTIMER, HPTIMER: values before a V5 device exists (sem 7) and right after
# KVM_CREATE_DEVICE re-encodes them (sem 4).
TIMER_DEFAULTS = (27, 30, 28, 26)
TIMER_V5 = (0x2000001B, 0x2000001E, 0x2000001C, 0x2000001A)
MAX_VCPUS = 512  # KVM_MAX_VCPU_IDS and VGIC_V5_MAX_CPUS

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
EDGE = 1 << SW_PPI  # the only edge-triggered PPI (sem notation)


class UndefinedInstruction(Exception):
    """The guest executed a GICv5 instruction on a VM without a GICv5 device (sem 11)."""


# --- small helpers -------------------------------------------------------------------------

def words(mask: int) -> tuple[int, int]:
    """A 128-bit mask as (word0, word1)."""
    return (mask & M64, (mask >> 64) & M64)


def join(w0: int, w1: int) -> int:
    return (w0 & M64) | ((w1 & M64) << 64)


def bits(mask: int):
    """Indices of the set bits, ascending."""
    i = 0
    while mask:
        if mask & 1:
            yield i
        mask >>= 1
        i += 1


def lowest_bit(value: int, default: int) -> int:
    if value == 0:
        return default
    return (value & -value).bit_length() - 1


def _check(rc: int) -> None:
    """The one place a kernel result becomes an exception (sem 2)."""
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def _int(value, name: str) -> int:
    # Python misuse: a non-integer is a TypeError. Integers in Python's own sense pass: int,
    # bool, numpy integers (anything with __index__), never a float.
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def _uint(value, bits_: int, name: str) -> int:
    value = _int(value, name)  # a plain int from here (numpy scalars compare differently)
    if not 0 <= value < (1 << bits_):
        # Cython's conversion error for an out-of-range C integer (sem 2).
        raise OverflowError(f"{name} {value} does not fit in u{bits_}")
    return value


def _index(value, lo: int, hi: int, name: str) -> int:
    value = _int(value, name)
    if not lo <= value <= hi:
        raise ValueError(f"{name} {value} outside {lo}..{hi}")
    return value


def _reg_n(n) -> int:
    return _index(n, 0, 1, "n")


class _UserPtr:
    """``addr`` playing a user pointer (sem 5, "addr").

    None or 0 is NULL; another int is refused (gic5 never dereferences a raw address);
    anything with the buffer protocol is raw memory (C-contiguous only). Faults (EFAULT) are
    reported by get/put when the kernel would touch the memory, not here.
    """

    def __init__(self, addr):
        self.mem = None
        if addr is None:
            return
        if isinstance(addr, int):
            if addr == 0:
                return
            raise TypeError("addr must be None, 0 or a buffer, not a raw address")
        try:
            view = memoryview(addr)
        except TypeError:
            kind = type(addr).__name__
            raise TypeError(f"addr must be None, 0 or a buffer, not {kind}") from None
        if not view.c_contiguous:
            raise TypeError("addr must be a C-contiguous buffer")
        self.mem = view.cast("B") if view.ndim != 1 or view.format != "B" else view

    def put(self, offset: int, value: int, size: int) -> int:
        """One put_user: writes the whole value or faults, writing nothing."""
        mem = self.mem
        if mem is None or mem.readonly or offset + size > mem.nbytes:
            return -errno.EFAULT
        mem[offset:offset + size] = value.to_bytes(size, sys.byteorder)
        return 0

    def get(self, offset: int, size: int):
        """One get_user: (0, value) or (-EFAULT, None)."""
        mem = self.mem
        if mem is None or offset + size > mem.nbytes:
            return -errno.EFAULT, None
        return 0, int.from_bytes(bytes(mem[offset:offset + size]), sys.byteorder)


# --- objects -------------------------------------------------------------------------------

class RefKvm:
    """/dev/kvm with a host (sem 1): ``profile`` in PROFILES; host_pmu and impl_ppis as Host."""

    def __init__(self, profile: str = "final", host_pmu: bool = True, impl_ppis=None):
        if not isinstance(profile, str):
            raise TypeError("profile must be a str")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        self.profile = profile
        self.nr = 64 if profile == "final" else 128
        self.host_pmu = bool(host_pmu)
        if impl_ppis is None:
            # spec 3: {3, 23 if PMU, 26, 27, 28, 30}
            impl_ppis = (0x5C800008 if self.host_pmu else 0x5C000008, 0)
        w0, w1 = impl_ppis
        w0 = _uint(w0, 64, "impl_ppis[0]")
        w1 = _uint(w1, 64, "impl_ppis[1]")
        # "impl" is the host mask cut to the profile's PPI count (sem 10); a 64-PPI profile
        # ignores word 1.
        self.impl = join(w0, w1) & ((1 << self.nr) - 1)

    def create_vm(self) -> "RefVm":
        return RefVm(self)


class RefVm:
    def __init__(self, kvm: RefKvm):
        self.kvm = kvm
        self.profile = kvm.profile
        self.nr = kvm.nr
        self.nr_mask = (1 << kvm.nr) - 1
        self.impl = kvm.impl
        self.dead = False
        self.vcpus: list[RefVcpu] = []  # creation order = vCPU index
        self.device: RefDevice | None = None
        self.initialised = False
        self.userspace = 0
        self.exposed = 0  # VM-wide exposed set (v3/final); v2 keeps one per vCPU
        self.timer_ppis = list(TIMER_DEFAULTS)
        self.timers_frozen = False

    # -- helpers
    def _vcpu_by_id(self, vcpu_id: int):
        for v in self.vcpus:
            if v.vcpu_id == vcpu_id:
                return v
        return None

    def _any_running(self) -> bool:
        return any(v.cpu is not None for v in self.vcpus)

    def _any_has_run(self) -> bool:
        return any(v.has_run for v in self.vcpus)

    # -- KVM_CREATE_VCPU (sem 3)
    def create_vcpu(self, vcpu_id, *, el2=False, pmu=False) -> "RefVcpu":
        vcpu_id = _int(vcpu_id, "vcpu_id")  # a bool or numpy integer is an int, as everywhere
        if vcpu_id < 0:
            raise ValueError("vcpu_id must be >= 0")
        el2, pmu = bool(_int(el2, "el2")), bool(_int(pmu, "pmu"))
        if self.dead:
            _check(-errno.EIO)
        if vcpu_id >= MAX_VCPUS:
            _check(-errno.EINVAL)  # any id >= 512, however large (sem 2)
        if len(self.vcpus) >= MAX_VCPUS:
            _check(-errno.EINVAL)
        if self.initialised:
            _check(-errno.EBUSY)
        if self._vcpu_by_id(vcpu_id) is not None:
            _check(-errno.EEXIST)
        if pmu and not self.kvm.host_pmu:
            # KVM_ARM_VCPU_INIT refusing an unsupported feature; nothing created (sem 3)
            _check(-errno.EINVAL)
        vcpu = RefVcpu(self, vcpu_id, len(self.vcpus), el2, pmu)
        self.vcpus.append(vcpu)
        return vcpu

    # -- KVM_CREATE_DEVICE (sem 4)
    def create_device(self, type, flags=0):
        type = _uint(type, 32, "type")
        flags = _uint(flags, 32, "flags")
        if self.dead:
            _check(-errno.EIO)
        if type != KVM_DEV_TYPE_ARM_VGIC_V5:
            _check(-errno.ENODEV)
        if flags & KVM_CREATE_DEVICE_TEST:
            return None
        if self._any_running():
            _check(-errno.EBUSY)  # a vCPU mutex is held
        if self.device is not None:
            _check(-errno.EEXIST)
        if self._any_has_run():
            _check(-errno.EBUSY)
        self.device = RefDevice(self)
        for v in self.vcpus:
            v._reset_private()
        self.timer_ppis = list(TIMER_V5)
        return self.device

    # -- KVM_IRQ_LINE (sem 6)
    def irq_line(self, irq, level) -> None:
        irq = _uint(irq, 32, "irq")
        level = _uint(level, 32, "level")
        _check(self._irq_line(irq, level))

    def irq_line_batch(self, irqs, levels) -> list[int]:
        """0 / -errno per element, as irq_line one after the other (for baselines)."""
        if len(irqs) != len(levels):
            raise ValueError("irqs and levels differ in length")
        out = []
        for irq, level in zip(irqs, levels):
            _uint(int(irq), 32, "irq")
            _uint(int(level), 32, "level")
            out.append(self._irq_line(int(irq), int(level)))
        return out

    def _irq_line(self, irq: int, level: int) -> int:
        if self.dead:
            return -errno.EIO
        irq_type = (irq >> 24) & 0xF
        vcpu_id = ((irq >> 16) & 0xFF) + 256 * ((irq >> 28) & 0xF)
        num = irq & 0xFFFF
        if irq_type == IRQ_TYPE_CPU:
            if self.device is not None:
                return -errno.ENXIO
            vcpu = self._vcpu_by_id(vcpu_id)
            if vcpu is None or num > 1:
                return -errno.EINVAL
            vcpu.cpu_lines[num] = level != 0
            return 0
        if irq_type == IRQ_TYPE_PPI:
            if self.device is None:
                return -errno.ENXIO
            vcpu = self._vcpu_by_id(vcpu_id)
            if vcpu is None:
                return -errno.EINVAL
            if num >= self.nr:
                return -errno.EINVAL
            if self.profile != "v2" and not (self.userspace >> num) & 1:
                return -errno.EINVAL  # the USERSPACE_PPIS gate (v3 and later)
            return vcpu._inject(num, level != 0, owner=None)
        if irq_type == IRQ_TYPE_SPI:
            if self.device is None:
                return -errno.ENXIO
            if not self.initialised:
                return -errno.EBUSY
            return -errno.EINVAL  # a PPI-only VM has no SPIs
        return -errno.EINVAL

    # -- inspection (never raise, sem 2)
    def exposed_ppis(self) -> tuple[int, int]:
        if self.profile == "v2":
            # v2 computes the set per vCPU; the VM reports vCPU index 0's (sem 10)
            return words(self.vcpus[0].exposed) if self.vcpus else (0, 0)
        return words(self.exposed)

    def userspace_ppis(self) -> tuple[int, int]:
        return words(self.userspace)

    # -- finalize (sem 10), called from a vCPU's first run with a device
    def _finalize(self, vcpu: "RefVcpu") -> None:
        if self.profile == "v2":
            # inverted test: every implemented PPI except an unowned SW_PPI
            drop = 0 if vcpu.owned & EDGE else EDGE
            vcpu.exposed = self.impl & ~drop
            return
        if self.profile == "final" and self.exposed & EDGE:
            return  # once per VM: the SW_PPI bit doubles as "finalized"
        self.exposed = self.impl & (self.vcpus[0].owned | EDGE)


class RefDevice:
    """The V5 VGIC device fd (sem 5)."""

    def __init__(self, vm: RefVm):
        self.vm = vm

    @staticmethod
    def _args(group, attr) -> None:
        group = _uint(group, 32, "group")
        attr = _uint(attr, 64, "attr")

    def has_attr(self, group, attr) -> None:
        self._args(group, attr)
        if self.vm.dead:
            _check(-errno.EIO)
        if group == GRP_CTRL and attr in (CTRL_INIT, USERSPACE_PPIS):
            return
        _check(-errno.ENXIO)

    def get_attr(self, group, attr, addr=None) -> None:
        self._args(group, attr)
        ptr = _UserPtr(addr)
        vm = self.vm
        if vm.dead:
            _check(-errno.EIO)
        if group == GRP_CTRL and attr == USERSPACE_PPIS:
            w0, w1 = words(vm.userspace)
            if vm.profile == "final":
                w1 = 0  # literal 0: no storage above PPI 63
            # two separate put_user calls: word 0 may land before word 1 faults (spec 5.3)
            _check(ptr.put(0, w0, 8))
            _check(ptr.put(8, w1, 8))
            return
        _check(-errno.ENXIO)

    def set_attr(self, group, attr, addr=None) -> None:
        self._args(group, attr)
        _UserPtr(addr)  # validated only: no settable attribute reads it
        vm = self.vm
        if vm.dead:
            _check(-errno.EIO)
        if group == GRP_CTRL and attr == CTRL_INIT:
            _check(self._init())
            return
        _check(-errno.ENXIO)

    def _init(self) -> int:
        vm = self.vm
        if vm.initialised:
            return 0  # idempotent, nothing recomputed
        if any(v.el2 for v in vm.vcpus):
            return -errno.EINVAL  # nested virtualisation refused
        if vm.profile == "v2":
            # GICV5_SW_PPI & GICV5_HWIRQ_ID = 3, an index stored as a bitmap: PPIs 0 and 1
            vm.userspace = (0x20000003 & 0x00FFFFFF) & (vm.impl & M64)
        else:
            vm.userspace = (1 << SW_PPI) & vm.impl
        vm.initialised = True
        return 0


class RefVcpu:
    """One vCPU: KVM's per-PPI state, the ICH_PPI_* image and the run state (sem 8, 9)."""

    def __init__(self, vm: RefVm, vcpu_id: int, index: int, el2: bool, pmu: bool):
        self.vm = vm
        self.vcpu_id = vcpu_id
        self.index = index
        self.el2 = el2
        self.pmu = pmu
        self.cpu: RefCpuIf | None = None  # the CpuIf of the run() block we are inside
        self.has_run = False
        self.cpu_lines = [False, False]  # KVM_ARM_IRQ_CPU_IRQ / _FIQ (no observable effect)
        self.pmu_initialised = False
        self.pmu_irq = 0  # 0 = unset
        self.timer_levels = {"vtimer": False, "ptimer": False}  # recorded kernel lines
        self.pmu_level = False
        self.exposed = 0  # v2 only: this vCPU's exposed set
        # image (ICH_PPI_* registers, VMCR, APR); reset all zero (spec 10.9)
        self.dvir = 0
        self.enabler = 0
        self.pendr = 0
        self.activer = 0
        self.prio = [0] * 128
        self.en = False
        self.vpmr = 0
        self.apr = 0
        # v2/v3: the entry images the changed-bits fold compares against
        self.entry_pendr = 0
        self.entry_activer = 0
        # VMCR/APR as saved at the last exit: what the wake predicate reads
        self.saved_en = False
        self.saved_vpmr = 0
        self.saved_apr = 0
        self._reset_private()

    def _reset_private(self) -> None:
        """Private IRQs as allocated by the device (spec 4.2): all clear, no owner."""
        self.latch = 0
        self.line = 0
        self.enabled = 0
        self.active = 0
        self.owned = 0
        self.hw = 0
        self.shadow_prio = [0] * 128

    # -- derived state
    def _exposed_set(self) -> int:
        return self.exposed if self.vm.profile == "v2" else self.vm.exposed

    def _kvm_pending(self) -> int:
        # edge: latch; level: latch | line; hardware-mapped: the line itself (sem 9)
        p = (self.latch & EDGE) | ((self.latch | self.line) & ~EDGE)
        p = (p & ~self.hw) | (self.line & self.hw)
        return p & self.vm.nr_mask

    def _guest_pending(self) -> int:
        # non-DVI: the image's PENDR; DVI: the live physical line (sem 9)
        return (self.pendr & ~self.dvir) | (self.line & self.dvir)

    def _inject(self, ppi: int, level: bool, owner) -> int:
        """kvm_vgic_inject_irq for a PPI (sem 6); ``owner`` None = userspace."""
        vm = self.vm
        if not vm.initialised:
            return -errno.EBUSY
        bit = 1 << ppi
        is_owned = bool(self.owned & bit)
        if is_owned != (owner is not None):
            return 0  # owner mismatch: silently dropped
        if bit & EDGE:
            if level:
                self.latch |= bit
        elif level:
            self.line |= bit
        else:
            self.line &= ~bit
        return 0

    def _set_line_owned(self, ppi: int, level: bool) -> None:
        bit = 1 << ppi
        self.line = (self.line | bit) if level else (self.line & ~bit)

    # -- inspection (never raise)
    def pending_ppis(self) -> tuple[int, int]:
        if self.vm.device is None:
            return (0, 0)
        return words(self._kvm_pending())

    def active_ppis(self) -> tuple[int, int]:
        if self.vm.device is None:
            return (0, 0)
        return words(self.active & self.vm.nr_mask)

    def enabled_ppis(self) -> tuple[int, int]:
        if self.vm.device is None:
            return (0, 0)
        return words(self.enabled & self.vm.nr_mask)

    def has_pending_irq(self) -> bool:
        return self._wake()

    def _wake(self) -> bool:
        """The wake-up predicate (sem 12) on KVM's state and the VMCR/APR saved at exit."""
        vm = self.vm
        if vm.device is None or not vm.initialised:
            return False
        exposed = self._exposed_set()
        pending = self._kvm_pending() & exposed
        active_prio = lowest_bit(self.saved_apr & M32, 32)
        if vm.profile == "v2":
            if not pending:
                return False
            self.shadow_prio = list(self.prio)  # v2 syncs every priority register first
            if self.saved_apr == 0:
                return True  # fast path: something pending and nothing active
        limit = min(active_prio, self.saved_vpmr + 1)
        candidates = pending & self.enabled
        if vm.profile == "final":
            if not self.saved_en:
                return False  # L = 0
            return any(self.shadow_prio[i] < limit for i in bits(candidates))
        return any(self.shadow_prio[i] <= limit for i in bits(candidates))

    # -- kernel-driven lines (sem 13)
    def timer_line(self, name, level) -> None:
        if not isinstance(name, str):
            raise TypeError("timer name must be a str")
        if name not in ("vtimer", "ptimer"):
            # hvtimer/hptimer exist only with NV, which V5 refuses; anything else is unknown
            raise ValueError(f"timer {name!r} cannot be driven")
        level = _int(level, "level")
        level = level != 0
        self.timer_levels[name] = level
        if self.vm.dead:
            return
        ppi = VTIMER_PPI if name == "vtimer" else PTIMER_PPI
        if self.owned & (1 << ppi):
            self._inject(ppi, level, owner=name)

    def pmu_line(self, level) -> None:
        if not self.pmu:
            raise ValueError("this vCPU has no PMU")
        level = _int(level, "level")
        level = level != 0
        self.pmu_level = level
        if self.vm.dead:
            return
        if self.owned & (1 << PMU_PPI):
            self._inject(PMU_PPI, level, owner="pmu")

    # -- vCPU attributes (sem 7)
    @staticmethod
    def _args(group, attr) -> None:
        group = _uint(group, 32, "group")
        attr = _uint(attr, 64, "attr")

    def has_attr(self, group, attr) -> None:
        self._args(group, attr)
        if self.vm.dead:
            _check(-errno.EIO)
        if group == VCPU_TIMER_CTRL and attr <= 3:
            return
        if group == VCPU_PMU_V3_CTRL and attr in (PMU_V3_IRQ, PMU_V3_INIT) and self.pmu:
            return
        _check(-errno.ENXIO)

    def get_attr(self, group, attr, addr=None) -> None:
        self._args(group, attr)
        ptr = _UserPtr(addr)
        if self.vm.dead:
            _check(-errno.EIO)
        _check(self._get_attr(group, attr, ptr))

    def _get_attr(self, group: int, attr: int, ptr: _UserPtr) -> int:
        vm = self.vm
        if group == VCPU_TIMER_CTRL:
            if attr > 3:
                return -errno.ENXIO
            return ptr.put(0, vm.timer_ppis[attr], 4)
        if group == VCPU_PMU_V3_CTRL:
            if attr == PMU_V3_IRQ:
                if vm.device is None:
                    return -errno.EINVAL
                if not self.pmu:
                    return -errno.ENODEV
                if self.pmu_irq == 0:
                    return -errno.ENXIO
                return ptr.put(0, self.pmu_irq, 4)
            # semantics.md 7: INIT on a non-PMU vCPU is ENODEV (the rule); any other
            # attr is ENXIO, as the kernel's getter has no case for it.
            if attr == PMU_V3_INIT and not self.pmu:
                return -errno.ENODEV
            return -errno.ENXIO
        return -errno.ENXIO

    def set_attr(self, group, attr, addr=None) -> None:
        self._args(group, attr)
        ptr = _UserPtr(addr)
        if self.vm.dead:
            _check(-errno.EIO)
        _check(self._set_attr(group, attr, ptr))

    def _set_attr(self, group: int, attr: int, ptr: _UserPtr) -> int:
        vm = self.vm
        if group == VCPU_TIMER_CTRL:
            if vm.device is None:
                return -errno.EINVAL
            rc, value = ptr.get(0, 4)
            if rc:
                return rc
            if value >> 29 != 1 or (value & 0xFFFFFF) >= vm.nr:
                return -errno.EINVAL  # not a PPI in v5 form
            if vm.timers_frozen:
                return -errno.EBUSY
            if attr > 3:
                return -errno.ENXIO
            vm.timer_ppis[attr] = value
            return 0
        if group == VCPU_PMU_V3_CTRL:
            if not self.pmu:
                return -errno.ENODEV
            if self.pmu_initialised:
                return -errno.EBUSY
            if attr == PMU_V3_IRQ:
                if vm.device is None:
                    return -errno.EINVAL
                rc, value = ptr.get(0, 4)
                if rc:
                    return rc
                if value != PMU_INTID:
                    return -errno.EINVAL
                if self.pmu_irq != 0:
                    return -errno.EBUSY
                self.pmu_irq = value
                return 0
            if attr == PMU_V3_INIT:
                if vm.device is not None:
                    if not vm.initialised:
                        return -errno.ENODEV
                    if self.pmu_irq == 0:
                        self.pmu_irq = PMU_INTID  # V5 picks the architected PPI itself
                    self.owned |= 1 << PMU_PPI
                    self._set_line_owned(PMU_PPI, self.pmu_level)
                self.pmu_initialised = True
                return 0
            return -errno.ENXIO
        return -errno.ENXIO

    # -- KVM_RUN (sem 8)
    def run(self) -> "_RefRun":
        return _RefRun(self)

    def run_enter(self) -> "RefCpuIf":
        vm = self.vm
        if vm.dead:
            _check(-errno.EIO)
        if self.cpu is not None:
            raise RuntimeError("this vCPU is already inside run()")
        if not self.has_run:
            _check(self._first_run())
        cpu = RefCpuIf(self)
        self.cpu = cpu
        self._flush()
        return cpu

    def run_exit(self) -> None:
        if self.cpu is None:
            raise RuntimeError("this vCPU is not inside run()")
        self._fold()
        self.cpu.live = False
        self.cpu = None

    def _first_run(self) -> int:
        vm = self.vm
        if vm.device is not None:
            if not vm.initialised:
                vm.dead = True
                return -errno.EBUSY
            if vm.timer_ppis[0] != TIMER_V5[0] or vm.timer_ppis[1] != TIMER_V5[1]:
                return -errno.EINVAL
            vm.timers_frozen = True
            for name, ppi in (("vtimer", VTIMER_PPI), ("ptimer", PTIMER_PPI)):
                self.owned |= 1 << ppi
                self.hw |= 1 << ppi  # direct timers: hardware-mapped (DVI)
                self._set_line_owned(ppi, self.timer_levels[name])
        if self.pmu and not self.pmu_initialised:
            return -errno.EINVAL
        if vm.device is not None:
            vm._finalize(self)
        self.has_run = True
        return 0

    def _flush(self) -> None:
        """Entry: KVM state -> image (sem 9)."""
        vm = self.vm
        if vm.device is None:
            return
        exposed = self._exposed_set()
        pend = self._kvm_pending() & exposed
        if vm.profile == "final":
            self.latch &= ~(EDGE & exposed)  # the edge now lives in PENDR only
        self.dvir = self.hw & exposed
        self.pendr = pend & ~self.dvir
        self.activer = self.active & exposed
        self.enabler = self.enabled & exposed
        if vm.profile == "final":
            for i in range(64, 128):
                self.prio[i] = 0  # upper bank written as zero
        self.entry_pendr = self.pendr
        self.entry_activer = self.activer

    def _fold(self) -> None:
        """Exit: image -> KVM state (sem 9)."""
        vm = self.vm
        if vm.device is None:
            return
        exposed = self._exposed_set()
        if vm.profile == "final":
            self.active = (self.active & ~exposed) | (self.activer & exposed)
            self.latch |= self.pendr & exposed & EDGE
        else:
            changed = ((self.pendr ^ self.entry_pendr) | (self.activer ^ self.entry_activer))
            changed &= exposed
            if vm.profile == "v3":
                changed &= ~self.dvir
            self.active = (self.active & ~changed) | (self.activer & changed)
            edge = changed & EDGE
            self.latch = (self.latch & ~edge) | (self.pendr & edge)  # assignment, not OR
        self.dvir = 0
        self.saved_en = self.en
        self.saved_vpmr = self.vpmr
        self.saved_apr = self.apr


class _RefRun:
    """``with vcpu.run() as cpu:``: one KVM_RUN (enter = first-run steps + flush, exit = fold)."""

    def __init__(self, vcpu: RefVcpu):
        self.vcpu = vcpu
        self.cpu = None

    def __enter__(self) -> "RefCpuIf":
        self.cpu = self.vcpu.run_enter()
        return self.cpu

    def __exit__(self, *exc) -> bool:
        # leaving a block that is not (or no longer) open is a no-op [library choice]
        if self.cpu is not None and self.cpu.live:
            self.vcpu.run_exit()
        return False


class RefCpuIf:
    """The guest's GICv5 CPU interface while its vCPU is inside run() (sem 11)."""

    def __init__(self, vcpu: RefVcpu):
        self.vcpu = vcpu
        self.live = True

    def _usable(self) -> RefVcpu:
        if not self.live:
            raise RuntimeError("the run() block has ended")
        if self.vcpu.vm.device is None:
            raise UndefinedInstruction("no GICv5 CPU interface")
        return self.vcpu

    def _limit(self, v: RefVcpu) -> int:
        # v3/final: hardware writes, limited to what the hardware implements; v2: trapped,
        # limited to the exposed set
        return v._exposed_set() if v.vm.profile == "v2" else v.vm.impl

    # ENABLER
    def write_ppi_enabler(self, n, value) -> None:
        _reg_n(n)
        value = _uint(value, 64, "value")
        v = self._usable()
        if v.vm.profile == "final" and n == 1:
            return  # ENABLER1 writes accepted and ignored
        shift = 64 * n
        word = value & (v._exposed_set() >> shift) & M64
        keep = ~(M64 << shift)
        v.enabled = (v.enabled & keep) | (word << shift)
        v.enabler = (v.enabler & keep) | (word << shift)

    def read_ppi_enabler(self, n) -> int:
        _reg_n(n)
        return (self._usable().enabler >> (64 * n)) & M64

    # PENDR / ACTIVER
    def read_ppi_spendr(self, n) -> int:
        _reg_n(n)
        return (self._usable()._guest_pending() >> (64 * n)) & M64

    def read_ppi_sactiver(self, n) -> int:
        _reg_n(n)
        return (self._usable().activer >> (64 * n)) & M64

    def _bits(self, n, value) -> tuple[RefVcpu, int]:
        _reg_n(n)
        value = _uint(value, 64, "value")
        v = self._usable()
        return v, (value << (64 * n)) & self._limit(v)

    def write_ppi_spendr(self, n, value) -> None:
        v, b = self._bits(n, value)
        v.pendr |= b

    def write_ppi_cpendr(self, n, value) -> None:
        v, b = self._bits(n, value)
        v.pendr &= ~b

    def write_ppi_sactiver(self, n, value) -> None:
        v, b = self._bits(n, value)
        v.activer |= b

    def write_ppi_cactiver(self, n, value) -> None:
        v, b = self._bits(n, value)
        v.activer &= ~b

    # PRIORITYR
    def write_ppi_priority(self, ppi, prio) -> None:
        ppi = _index(ppi, 0, 127, "ppi")
        prio = _index(prio, 0, 255, "prio")
        v = self._usable()
        if (self._limit(v) >> ppi) & 1:
            v.prio[ppi] = prio & 0x1F  # 5 priority bits; the rest is RES0

    def read_ppi_priority(self, ppi) -> int:
        ppi = _index(ppi, 0, 127, "ppi")
        return self._usable().prio[ppi]

    # ICC_CR0_EL1 / ICC_PCR_EL1
    def write_cr0(self, enable) -> None:
        _int(enable, "enable")  # a truth value given as a bool or an integer
        v = self._usable()
        v.en = bool(enable)

    def write_pcr(self, prio) -> None:
        prio = _index(prio, 0, 255, "prio")
        v = self._usable()
        v.vpmr = prio & 0x1F

    # GICR CDIA / GIC CDEOI / GIC CDDI
    def cdia(self):
        v = self._usable()
        if not v.en:
            return None
        running = lowest_bit(v.apr & M32, 32)
        best = None
        for i in bits(v._guest_pending() & v.enabler & ~v.activer):
            p = v.prio[i]
            if p <= v.vpmr and p < running and (best is None or p < v.prio[best]):
                best = i  # ascending scan: a tie keeps the lower index
        if best is None:
            return None
        v.activer |= 1 << best
        v.apr |= 1 << v.prio[best]
        if (1 << best) & EDGE:
            v.pendr &= ~(1 << best)
        return PPI_INTID | best

    def cdeoi(self) -> None:
        v = self._usable()
        if v.apr:
            v.apr &= v.apr - 1  # drop the highest active priority (lowest set bit)

    def cddi(self, intid) -> None:
        intid = _uint(intid, 32, "intid")
        v = self._usable()
        if intid >> 29 == 1 and (intid & 0xFFFFFF) < v.vm.nr:
            v.activer &= ~(1 << (intid & 0xFFFFFF))

    # WFI
    def wfi(self) -> bool:
        v = self._usable()
        v._fold()
        if v.vm.profile != "v2":
            v.shadow_prio = list(v.prio)  # put with IN_WFI syncs the priorities
        woke = v._wake()
        v._flush()
        return woke
