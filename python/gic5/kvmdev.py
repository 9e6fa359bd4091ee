"""The real-KVM backend: the model's Vm / Vcpu / Device methods, answered by /dev/kvm.

``gic5.Kvm(backend="kvm")`` builds on this module, so a VMM-side script written against gic5
runs unchanged against the model or against the running kernel, and the two can be diffed.

Rules this module keeps:
- Only the userspace ABI is driven: KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CREATE_VCPU,
  KVM_ARM_PREFERRED_TARGET + KVM_ARM_VCPU_INIT, KVM_CREATE_DEVICE, KVM_{HAS,GET,SET}_DEVICE_ATTR
  on the device and vCPU fds, KVM_IRQ_LINE. Everything that needs guest code (KVM_RUN, the guest
  CPU interface, the timer and PMU lines a running guest drives) or kernel-internal state (the
  per-vCPU PPI state, the exposed set, the host's implemented mask, vm_dead) raises
  NotImplementedError naming what is missing, instead of inventing an answer.
- Ioctl numbers are computed with the asm-generic ``_IOC`` rules (nr 8 bits, type 8, size 14,
  dir 2: the layout of x86 and arm64; powerpc, mips, sparc and alpha use another one) and the
  struct sizes come from the ctypes layouts below; tests check both against the known values.
- Kernel failures are the OSError that ``fcntl.ioctl`` raises, with the kernel's errno, never
  re-wrapped (a failed mmap/mprotect of the bounce window below, the only other system call,
  goes through gic5core.check like every model error). Python arguments follow
  gic5/_args.py and gic5core.vm.batch_arrays, the model's own rules: misuse is refused before
  any ioctl (TypeError / ValueError / OverflowError), and what the model accepts (numpy
  scalars, bools) is accepted here too.
- ``addr`` (struct kvm_device_attr.addr) follows the model's rules: None or 0 is NULL (the
  kernel sees 0 and faults), any other int is a TypeError, a buffer must be C-contiguous. A
  buffer is never handed to the kernel by its own address: the kernel does not know its length
  and would write past the end of a short one. It goes through a bounce window instead (see
  ``_UserWindow``): a private mapping whose bytes end exactly where the buffer ends, followed
  by an inaccessible guard page, and mapped read-only when the buffer is read-only. The kernel
  thus faults exactly where it would fault on a user mapping of that size and protection (a
  short buffer gets the put_user()s that fit, then EFAULT; a read-only one EFAULT on the
  first write), and whatever the kernel wrote is copied back into the buffer, also on failure.
- Every fd is owned by one object and closed by its ``close()``, by ``with``, or when the
  object is collected (weakref.finalize); a VM's close() closes its vCPUs and devices too.
  Calls on a closed object are ValueError (Python misuse), as on a closed Python file.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct
import sys
import weakref
from typing import Any, NoReturn

import numpy as np
from gic5core import check
from gic5core.vm import batch_arrays

from . import uapi
from ._user import UserPtr
from ._args import attr_key as _attr_key
from ._args import flag as _flag
from ._args import ist_descriptor as _ist_descriptor
from ._args import uint as _uint
from ._args import vcpu_id as _vcpu_id

__all__ = [
    "BACKENDS", "KVM_PATH", "KVM_API_VERSION", "KVMIO",
    "IOC_NONE", "IOC_WRITE", "IOC_READ", "IOC", "IO", "IOR", "IOW", "IOWR",
    "kvm_irq_level", "kvm_create_device", "kvm_device_attr", "kvm_vcpu_init",
    "KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_CREATE_VCPU", "KVM_RUN",
    "KVM_IRQ_LINE", "KVM_CREATE_DEVICE", "KVM_SET_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR",
    "KVM_HAS_DEVICE_ATTR", "KVM_ARM_VCPU_INIT", "KVM_ARM_PREFERRED_TARGET",
    "KVM_ARM_VCPU_PMU_V3", "KVM_ARM_VCPU_HAS_EL2", "KVM_VM_TYPE_DEFAULT", "KVM_CAP_MAX_VCPUS",
    "KvmSystem", "KvmVm", "KvmVcpu", "KvmDevice", "EXTRA_NAMES",
]

BACKENDS: tuple[str, ...] = ("model", "kvm")
KVM_PATH = "/dev/kvm"  # a module attribute so tests can point it at a path that does not exist
KVM_API_VERSION = 12   # the only version the kvm API has ever answered (KVM_GET_API_VERSION)

# Public names the kvm backend's objects have beyond the model's: fd lifecycle only. A script
# that uses them is not portable to the model (which has no fds); everything else is shared.
EXTRA_NAMES = frozenset({"close", "closed", "fileno"})

# --- include/uapi/asm-generic/ioctl.h -------------------------------------------------------

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS, _IOC_DIRBITS = 8, 8, 14, 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2


def IOC(dir: int, type: int, nr: int, size: int) -> int:  # noqa: A002 (the kernel's names)
    """``_IOC(dir, type, nr, size)``; a field that does not fit is a ValueError (the C macro
    would silently corrupt the neighbouring field)."""
    for name, value, bits in (("dir", dir, _IOC_DIRBITS), ("type", type, _IOC_TYPEBITS),
                              ("nr", nr, _IOC_NRBITS), ("size", size, _IOC_SIZEBITS)):
        if not 0 <= value < 1 << bits:
            raise ValueError(f"_IOC {name} {value} does not fit in {bits} bits")
    return (dir << _IOC_DIRSHIFT | type << _IOC_TYPESHIFT | nr << _IOC_NRSHIFT
            | size << _IOC_SIZESHIFT)


def IO(type: int, nr: int) -> int:  # noqa: A002
    """``_IO(type, nr)``: an ioctl number with no argument struct (dir NONE, size 0).

    ValueError when ``type`` or ``nr`` does not fit its 8-bit field (see ``IOC``). KVM_RUN,
    KVM_CREATE_VM and KVM_CREATE_VCPU are such numbers: their argument, if any, is passed by
    value in the ioctl's third argument.

    >>> hex(IO(KVMIO, 0x80))  # KVM_RUN
    '0xae80'
    """
    return IOC(IOC_NONE, type, nr, 0)


def IOR(type: int, nr: int, ctype: Any) -> int:  # noqa: A002
    """``_IOR``: the kernel writes a ``ctype`` back (dir READ is from userspace's view)."""
    return IOC(IOC_READ, type, nr, ctypes.sizeof(ctype))


def IOW(type: int, nr: int, ctype: Any) -> int:  # noqa: A002
    """``_IOW``: the kernel reads a ``ctype``."""
    return IOC(IOC_WRITE, type, nr, ctypes.sizeof(ctype))


def IOWR(type: int, nr: int, ctype: Any) -> int:  # noqa: A002
    """``_IOWR``: the kernel reads a ``ctype`` and writes (part of) it back (dir READ|WRITE).

    The size field is ``ctypes.sizeof(ctype)``; ValueError when a field does not fit (see
    ``IOC``). KVM_CREATE_DEVICE is one: the kernel reads struct kvm_create_device (12 bytes)
    and writes the new device's fd into its ``fd`` member.

    >>> hex(IOWR(KVMIO, 0xE0, kvm_create_device))  # KVM_CREATE_DEVICE
    '0xc00caee0'
    """
    return IOC(IOC_READ | IOC_WRITE, type, nr, ctypes.sizeof(ctype))


# --- include/uapi/linux/kvm.h and arch/arm64/include/uapi/asm/kvm.h ----------------------------
# ctypes.Structure lays fields out with the C compiler's natural alignment, which is what the
# kernel headers rely on (none of these structs is packed).

class _kvm_irq_level_u(ctypes.Union):
    _fields_ = [("irq", ctypes.c_uint32), ("status", ctypes.c_int32)]


class kvm_irq_level(ctypes.Structure):
    """struct kvm_irq_level { union { __u32 irq; __s32 status; }; __u32 level; }"""
    _anonymous_ = ("_u",)
    _fields_ = [("_u", _kvm_irq_level_u), ("level", ctypes.c_uint32)]


class kvm_create_device(ctypes.Structure):
    """struct kvm_create_device { __u32 type; __u32 fd; __u32 flags; } (fd is written back)"""
    _fields_ = [("type", ctypes.c_uint32), ("fd", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class kvm_device_attr(ctypes.Structure):
    """struct kvm_device_attr { __u32 flags; __u32 group; __u64 attr; __u64 addr; }"""
    _fields_ = [("flags", ctypes.c_uint32), ("group", ctypes.c_uint32),
                ("attr", ctypes.c_uint64), ("addr", ctypes.c_uint64)]


class kvm_vcpu_init(ctypes.Structure):
    """struct kvm_vcpu_init { __u32 target; __u32 features[7]; } (arm64)"""
    _fields_ = [("target", ctypes.c_uint32), ("features", ctypes.c_uint32 * 7)]


KVMIO = 0xAE

KVM_GET_API_VERSION = IO(KVMIO, 0x00)
KVM_CREATE_VM = IO(KVMIO, 0x01)
KVM_CHECK_EXTENSION = IO(KVMIO, 0x03)
KVM_CREATE_VCPU = IO(KVMIO, 0x41)
KVM_IRQ_LINE = IOW(KVMIO, 0x61, kvm_irq_level)
KVM_RUN = IO(KVMIO, 0x80)
KVM_ARM_VCPU_INIT = IOW(KVMIO, 0xAE, kvm_vcpu_init)
KVM_ARM_PREFERRED_TARGET = IOR(KVMIO, 0xAF, kvm_vcpu_init)
KVM_CREATE_DEVICE = IOWR(KVMIO, 0xE0, kvm_create_device)
KVM_SET_DEVICE_ATTR = IOW(KVMIO, 0xE1, kvm_device_attr)
KVM_GET_DEVICE_ATTR = IOW(KVMIO, 0xE2, kvm_device_attr)  # _IOW: the kernel only reads the struct
KVM_HAS_DEVICE_ATTR = IOW(KVMIO, 0xE3, kvm_device_attr)

KVM_VM_TYPE_DEFAULT = 0      # arm64: bits 7:0 = IPA size, 0 = the default (40 bits)
KVM_CAP_MAX_VCPUS = 66       # KVM_CHECK_EXTENSION on the VM fd: kvm->max_vcpus
KVM_ARM_VCPU_PMU_V3 = 3      # kvm_vcpu_init.features[0] bits
KVM_ARM_VCPU_HAS_EL2 = 7

# The same layouts as struct formats, for the hot path (one pack per KVM_IRQ_LINE) and for the
# tests that check the ctypes layouts byte for byte. "=" is native order, standard sizes, no
# padding, so a size mismatch with ctypes would show a hidden padding difference.
IRQ_LEVEL = struct.Struct("=II")
DEVICE_ATTR = struct.Struct("=IIQQ")
CREATE_DEVICE = struct.Struct("=III")
VCPU_INIT = struct.Struct("=I7I")

# fcntl.ioctl passes an int argument as a C int; the kernel's vCPU id is an unsigned long.
# Every id above INT_MAX is >= KVM_MAX_VCPU_IDS on every architecture, so clamping keeps the
# kernel's answer (EINVAL) without an OverflowError the model would not raise.
_INT_MAX = (1 << 31) - 1
_U64_MAX = (1 << 64) - 1


def _missing(what: str, why: str) -> NoReturn:
    raise NotImplementedError(f"{what}: {why}; the kvm backend drives the userspace ABI only "
                              "(use backend='model' for this)")


_NEEDS_GUEST = "needs guest code (memory slots, an entry point, a kvm_run mmap) running in the VM"
_KERNEL_STATE = "is kernel-internal state that no GICv5 uapi reports"


# --- the user pointer --------------------------------------------------------------------------

_PAGE = mmap.PAGESIZE
_PROT_NONE = 0  # <sys/mman.h>; the mmap module exports PROT_READ/WRITE only
_libc: Any = None


def _libc_mm() -> Any:
    """libc's mmap/mprotect/munmap (ctypes), loaded on first use."""
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.mprotect.restype = ctypes.c_int
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = libc
    return _libc


def _libc_failed() -> NoReturn:
    """A failed mmap/mprotect: its errno as OSError, built by the project's single check()."""
    check(-(ctypes.get_errno() or errno.ENOMEM))
    raise AssertionError("check() returned for a negative code")


_IST_DESC = struct.Struct("=4Q")  # struct kvm_vgic_v5_ist: four __u64


def _user_view(addr: Any) -> memoryview | None:
    """The model's user-pointer rules (UserPtr refuses the same things), then the bytes."""
    if UserPtr(addr).is_null:
        return None
    view = memoryview(addr)
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


class _UserWindow:
    """A user address for ``view`` at which the kernel sees exactly ``view``'s bytes.

    The bytes are copied to the end of a private anonymous mapping followed by a PROT_NONE
    guard page, so an access past ``len(view)`` faults (EFAULT from the kernel, not a write
    into whatever follows the Python buffer), and the data pages are made read-only when the
    buffer is. ``finish()`` copies the window back into a writable buffer (what the kernel
    wrote before it returned, whether it succeeded or faulted) and unmaps it.
    """

    __slots__ = ("addr", "_view", "_base", "_length")

    def __init__(self, view: memoryview | None) -> None:
        self._view = view
        self._base = 0
        self._length = 0
        if view is None:
            self.addr = 0  # NULL: the kernel faults on its own
            return
        n = view.nbytes
        data = max(1, -(-n // _PAGE)) * _PAGE
        libc = _libc_mm()
        base = libc.mmap(None, data + _PAGE, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base is None or base == ctypes.c_void_p(-1).value:
            _libc_failed()
        self._base, self._length = base, data + _PAGE
        try:
            if libc.mprotect(base + data, _PAGE, _PROT_NONE) != 0:
                _libc_failed()
            self.addr = base + data - n
            if n:
                ctypes.memmove(self.addr, bytes(view), n)
            if view.readonly and libc.mprotect(base, data, mmap.PROT_READ) != 0:
                _libc_failed()
        except BaseException:
            self._unmap()
            raise

    def _unmap(self) -> None:
        if self._base:
            _libc_mm().munmap(self._base, self._length)
            self._base = 0

    def finish(self) -> None:
        try:
            view = self._view
            if view is not None and not view.readonly and view.nbytes:
                view[:] = ctypes.string_at(self.addr, view.nbytes)
        finally:
            self._unmap()
            if self._view is not None:
                self._view.release()  # so a bytearray can be resized again at once


# --- fds -------------------------------------------------------------------------------------

class _Fd:
    """One owned fd: close() / with / garbage collection close it exactly once."""

    __slots__ = ("_fd", "_finalizer", "__weakref__")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    def fileno(self) -> int:
        """The fd, for ioctls of your own (ValueError once closed)."""
        if not self._finalizer.alive:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """True once the fd has been closed (close(), the with block, or garbage collection)."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Close the fd (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ioctl(self, request: int, arg: Any = 0) -> Any:
        return fcntl.ioctl(self.fileno(), request, arg)

    def _attr(self, request: int, group: Any, attr: Any, addr: Any) -> None:
        """KVM_{HAS,GET,SET}_DEVICE_ATTR on this fd, ``addr`` through a _UserWindow."""
        group, attr = _attr_key(group, attr)
        if group == uapi.KVM_DEV_ARM_VGIC_GRP_IST and isinstance(self, KvmDevice):
            self._ist_attr(request, attr, addr)
            return
        view = _user_view(addr)
        fd = self.fileno()
        window = _UserWindow(view)
        try:
            fcntl.ioctl(fd, request, DEVICE_ATTR.pack(0, group, attr, window.addr))
        finally:
            window.finish()

    def _ist_attr(self, request: int, attr: int, addr: Any) -> None:
        # KVM_DEV_ARM_VGIC_GRP_IST's addr is a struct kvm_vgic_v5_ist of user pointers: the
        # argument rule is the model's (gic5._args.ist_descriptor); each buffer gets its own
        # window and the struct holds their addresses.
        null, readable, spi, spi_size, lpi, lpi_size = _ist_descriptor(addr)
        fd = self.fileno()
        if null or not readable:
            raw = None if null else memoryview(addr).cast("B")
            window = _UserWindow(raw)
            try:
                fcntl.ioctl(fd, request, DEVICE_ATTR.pack(0, uapi.KVM_DEV_ARM_VGIC_GRP_IST,
                                                          attr, window.addr))
            finally:
                window.finish()
            return
        windows = [_UserWindow(_user_view(spi)), _UserWindow(_user_view(lpi))]
        try:
            desc = bytearray(_IST_DESC.pack(windows[0].addr, spi_size, windows[1].addr,
                                            lpi_size))
            windows.append(_UserWindow(memoryview(desc)))
            fcntl.ioctl(fd, request, DEVICE_ATTR.pack(0, uapi.KVM_DEV_ARM_VGIC_GRP_IST, attr,
                                                      windows[2].addr))
        finally:
            for w in windows:
                w.finish()


class _AttrFd(_Fd):
    """An fd that takes device attributes: the V5 device fd and the vCPU fd share these."""

    __slots__ = ()

    def has_attr(self, group: int, attr: int) -> None:
        """KVM_HAS_DEVICE_ATTR on this fd: None, or the kernel's OSError."""
        self._attr(KVM_HAS_DEVICE_ATTR, group, attr, None)

    def get_attr(self, group: int, attr: int, addr: Any) -> None:
        """KVM_GET_DEVICE_ATTR on this fd into the buffer ``addr``."""
        self._attr(KVM_GET_DEVICE_ATTR, group, attr, addr)

    def set_attr(self, group: int, attr: int, addr: Any = None) -> None:
        """KVM_SET_DEVICE_ATTR on this fd from the buffer ``addr``."""
        self._attr(KVM_SET_DEVICE_ATTR, group, attr, addr)


class KvmSystem(_Fd):
    """/dev/kvm: opened with O_RDWR | O_CLOEXEC, API version checked (12)."""

    __slots__ = ("_vms",)

    def __init__(self) -> None:
        super().__init__(os.open(KVM_PATH, os.O_RDWR | os.O_CLOEXEC))
        self._vms: weakref.WeakSet[KvmVm] = weakref.WeakSet()
        try:
            version = self._ioctl(KVM_GET_API_VERSION)
        except BaseException:
            self.close()  # e.g. ENOTTY: the path is not a kvm device
            raise
        if version != KVM_API_VERSION:
            self.close()
            raise RuntimeError(f"{KVM_PATH} answers KVM_GET_API_VERSION {version}, "
                               f"not {KVM_API_VERSION}")

    def create_vm(self, kvm: Any) -> KvmVm:
        """KVM_CREATE_VM with the default machine type; ``kvm`` is the owning gic5.Kvm."""
        vm = KvmVm(kvm, self._ioctl(KVM_CREATE_VM, KVM_VM_TYPE_DEFAULT))
        self._vms.add(vm)
        return vm

    def close(self) -> None:
        """Close /dev/kvm and every VM created through it (the kernel VM goes with its last fd)."""
        for vm in list(self._vms):
            vm.close()
        super().close()


class KvmVm(_Fd):
    """A VM fd, behind the model Vm's methods. Create it with ``gic5.Kvm(backend="kvm")``."""

    __slots__ = ("_kvm", "_vcpus", "_device", "_others", "_initialised", "_next_index")

    def __init__(self, kvm: Any, fd: int) -> None:
        super().__init__(fd)
        self._kvm = kvm
        self._vcpus: list[KvmVcpu] = []
        self._device: KvmDevice | None = None
        self._others: list[KvmDevice] = []  # devices of other types, closed with the VM
        self._initialised = False
        self._next_index = 0

    # --- what this process did through the VM (not kernel internals) ---

    @property
    def kvm(self) -> Any:
        """The ``gic5.Kvm`` (backend "kvm") whose ``create_vm()`` made this VM.

        Kept so the VM answers ``vm.kvm`` as the model's Vm does; the /dev/kvm fd itself is
        the KvmSystem's, which closes this VM when it is closed.
        """
        return self._kvm

    @property
    def vcpus(self) -> tuple[KvmVcpu, ...]:
        """The vCPUs created (and initialised) through this object, in creation order."""
        return tuple(self._vcpus)

    @property
    def device(self) -> KvmDevice | None:
        """The V5 VGIC device created through this object, if any."""
        return self._device

    @property
    def has_device(self) -> bool:
        """True once a KVM_DEV_TYPE_ARM_VGIC_V5 device was created through this object.

        What the model reports as irqchip_in_kernel(), seen from userspace: the kernel has no
        ioctl that answers it, so this is what this process did (a KVM_CREATE_DEVICE_TEST
        probe creates nothing and does not count). It stays True after the device's fd is
        closed, as the kernel keeps the VGIC until the VM goes.
        """
        return self._device is not None

    @property
    def initialised(self) -> bool:
        """True once a KVM_DEV_ARM_VGIC_CTRL_INIT set_attr succeeded through this object
        (INIT is idempotent, so its success means the VGIC is initialised)."""
        return self._initialised

    @property
    def nr_vcpus(self) -> int:
        """How many vCPUs were created *and initialised* through this object (``len(vcpus)``).

        Not kvm->created_vcpus: a vCPU whose KVM_ARM_VCPU_INIT failed stays in the kernel
        (and its id answers EEXIST) but is not counted here; ``KvmVcpu.index`` does count it
        (see ``create_vcpu``). The model refuses before creating, so there the two agree.
        """
        return len(self._vcpus)

    @property
    def profile(self) -> str:
        """"kvm": the running kernel, whatever revision it is."""
        return "kvm"

    # --- kernel internals the uapi does not report ---

    @property
    def dead(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        kvm->vm_dead (set when a first KVM_RUN fails in kvm_vgic_map_resources(), for V5
        because the VGIC was not initialised) has no uapi getter; it shows only as EIO from
        every later VM, device and vCPU ioctl.
        """
        _missing("Vm.dead", "kvm->vm_dead " + _KERNEL_STATE + " (a dead VM answers EIO to "
                 "every ioctl)")

    @property
    def nr_ppis(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        VGIC_V5_NR_PRIVATE_IRQS (64 on the final code, 128 before) is a compile-time constant
        of the running kernel that no GICv5 uapi reports.
        """
        _missing("Vm.nr_ppis", "the VGIC's private IRQ count " + _KERNEL_STATE)

    @property
    def impl_ppis(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        The host's implemented-PPI mask (vgic_v5_ppi_caps.impl_ppi_mask, in
        kvm_vgic_global_state on the final code) is never copied out; only its effect shows,
        e.g. in KVM_DEV_ARM_VGIC_USERSPACE_PPIS (``userspace_ppis()``).
        """
        _missing("Vm.impl_ppis", "the host's implemented-PPI mask " + _KERNEL_STATE)

    def exposed_ppis(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        The exposed set (vgic_ppi_mask in struct vgic_v5_vm, per vCPU on v2; computed by
        vgic_v5_finalize_ppi_state() at the first KVM_RUN and programmed into the ICH_PPI_*
        registers at EL2) has no uapi getter.
        """
        _missing("Vm.exposed_ppis()", "the exposed PPI set (ICH_PPI_* state at EL2) "
                 + _KERNEL_STATE)

    def spi_pending(self, spi: int) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        KVM's per-SPI vgic_irq (line_level, pending_latch) has no uapi getter; what a 7.4 VMM
        can read back is the guest's IST through KVM_DEV_ARM_VGIC_GRP_IST.
        """
        _missing("Vm.spi_pending()", "KVM's SPI state (struct vgic_irq) " + _KERNEL_STATE)

    def spi_state(self, spi: int) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError (see ``spi_pending``)."""
        _missing("Vm.spi_state()", "KVM's SPI state (struct vgic_irq) " + _KERNEL_STATE)

    def spi_iste(self, spi: int) -> NoReturn:
        """Hardware state: always raises NotImplementedError (the virtual IST belongs to the
        host IRS; save it with KVM_DEV_ARM_VGIC_GRP_IST, as gic5.save_state does)."""
        _missing("Vm.spi_iste()", "the virtual SPI IST is the host IRS's memory, read only "
                 "through KVM_DEV_ARM_VGIC_GRP_IST (gic5.save_state)")

    def spi_level_config(self, spi: int) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError (see ``spi_pending``)."""
        _missing("Vm.spi_level_config()", "KVM's SPI config (struct vgic_irq) " + _KERNEL_STATE)

    @property
    def spi_ist_entries(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError (the host IST's size)."""
        _missing("Vm.spi_ist_entries", "the host SPI IST's size " + _KERNEL_STATE)

    @property
    def irs_enabled(self) -> bool:
        """The guest's IRS_CR0.IRSEN as KVM_DEV_ARM_VGIC_GRP_IRS_REGS reads it (7.4); False
        without a V5 device or before CTRL_INIT (the group answers EBUSY then)."""
        if self._device is None:
            return False
        buf = bytearray(8)
        try:
            self._device.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS, 0x80, buf)
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENXIO, errno.EINVAL):
                return False
            raise
        return bool(int.from_bytes(buf, sys.byteorder) & 1)

    @property
    def nr_spis(self) -> int:
        """The SPI count as KVM_DEV_ARM_VGIC_GRP_NR_IRQS reads it on the V5 device (7.4); 0
        without a V5 device or on a kernel whose V5 device has no NR_IRQS group (ENXIO)."""
        if self._device is None:
            return 0
        buf = bytearray(4)
        try:
            self._device.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, buf)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return 0
        return int(struct.unpack("=I", buf)[0])

    @property
    def max_vcpus(self) -> int:
        """KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPUS) on the VM fd: kvm->max_vcpus."""
        return int(self._ioctl(KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS))

    # --- ioctls ---

    def create_vcpu(self, vcpu_id: int, *, el2: bool = False, pmu: bool = False) -> KvmVcpu:
        """KVM_CREATE_VCPU, then KVM_ARM_PREFERRED_TARGET and KVM_ARM_VCPU_INIT with
        KVM_ARM_VCPU_HAS_EL2 / KVM_ARM_VCPU_PMU_V3 as asked (the kvmtool / QEMU order).

        If the target query or INIT fails, the vCPU fd is closed and the kernel's OSError
        propagates; the kernel keeps the vCPU it created (vCPUs are never destroyed before
        their VM), so the same id then answers EEXIST. The model checks everything first and
        creates nothing, so this is where the two can differ.
        """
        vcpu_id = _vcpu_id(vcpu_id)
        el2 = _flag(el2, "el2")
        pmu = _flag(pmu, "pmu")
        fd = self._ioctl(KVM_CREATE_VCPU, min(vcpu_id, _INT_MAX))
        index = self._next_index  # kvm->created_vcpus order, failed INITs included
        self._next_index += 1
        try:
            init = kvm_vcpu_init()
            self._ioctl(KVM_ARM_PREFERRED_TARGET, init)
            init.features[0] |= (el2 << KVM_ARM_VCPU_HAS_EL2) | (pmu << KVM_ARM_VCPU_PMU_V3)
            fcntl.ioctl(fd, KVM_ARM_VCPU_INIT, init)
        except BaseException:
            os.close(fd)
            raise
        vcpu = KvmVcpu(self, fd, index, vcpu_id, el2, pmu)
        self._vcpus.append(vcpu)
        return vcpu

    def create_device(self, type: int, flags: int = 0) -> KvmDevice | None:  # noqa: A002
        """KVM_CREATE_DEVICE: the device, or None with KVM_CREATE_DEVICE_TEST."""
        _uint(type, 32, "type")
        _uint(flags, 32, "flags")
        cd = kvm_create_device(type=type, fd=0, flags=flags)
        self._ioctl(KVM_CREATE_DEVICE, cd)
        if flags & uapi.KVM_CREATE_DEVICE_TEST:
            return None
        dev = KvmDevice(self, cd.fd, type)
        if type == uapi.KVM_DEV_TYPE_ARM_VGIC_V5:
            self._device = dev
        else:
            self._others.append(dev)
        return dev

    def irq_line(self, irq: int, level: int) -> None:
        """KVM_IRQ_LINE; irq and level are __u32s (any nonzero level asserts)."""
        fcntl.ioctl(self.fileno(), KVM_IRQ_LINE, IRQ_LEVEL.pack(_uint(irq, 32, "irq"),
                                                                 _uint(level, 32, "level")))

    def irq_line_batch(self, irqs: Any, levels: Any) -> np.ndarray:
        """One KVM_IRQ_LINE per (irq, level) pair, in order, collecting 0 / -errno in an int32
        array as the model's batch does (same argument checks: the model's own converter)."""
        w, lv = batch_arrays(irqs, levels)
        out = np.zeros(w.shape[0], dtype=np.int32)
        fd = self.fileno()
        pack = IRQ_LEVEL.pack
        for i, (irq, level) in enumerate(zip(w.tolist(), lv.tolist(), strict=True)):
            try:
                fcntl.ioctl(fd, KVM_IRQ_LINE, pack(irq, level))
            except OSError as exc:
                out[i] = -(exc.errno if exc.errno is not None else errno.EIO)
        return out

    def userspace_ppis(self) -> tuple[int, int]:
        """KVM_DEV_ARM_VGIC_USERSPACE_PPIS through the V5 device's get_attr.

        Without a V5 device there is no fd to ask; a VM without a VGIC has no PPI userspace
        may drive, so this is (0, 0), as the model answers. Kernel errors (EIO on a dead VM)
        propagate, where the model's inspection call never raises.
        """
        if self._device is None:
            return (0, 0)
        buf = bytearray(16)
        self._device.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL,
                              uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, buf)
        w0, w1 = struct.unpack("=QQ", buf)
        return (w0, w1)

    def close(self) -> None:
        """Close the VM fd and every vCPU and device fd created through it."""
        for obj in (*self._vcpus, *self._others, *(() if self._device is None
                                                    else (self._device,))):
            obj.close()
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return (f"<gic5.kvmdev.KvmVm {state} vcpus={len(self._vcpus)} "
                f"device={self._device is not None}>")


class KvmDevice(_AttrFd):
    """A device fd (the V5 VGIC, or any other type the kernel created)."""

    __slots__ = ("_vm", "_type")

    def __init__(self, vm: KvmVm, fd: int, type: int) -> None:  # noqa: A002
        super().__init__(fd)
        self._vm = vm
        self._type = type

    @property
    def vm(self) -> KvmVm:
        """The KvmVm whose KVM_CREATE_DEVICE made this device (its close() closes this too)."""
        return self._vm

    def set_attr(self, group: int, attr: int, addr: Any = None) -> None:
        """KVM_SET_DEVICE_ATTR from the buffer ``addr`` (and note a successful CTRL_INIT)."""
        super().set_attr(group, attr, addr)
        if (self._type == uapi.KVM_DEV_TYPE_ARM_VGIC_V5 and group == uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
                and attr == uapi.KVM_DEV_ARM_VGIC_CTRL_INIT):
            self._vm._initialised = True

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<gic5.kvmdev.KvmDevice type={self._type} {state}>"


class KvmVcpu(_AttrFd):
    """A vCPU fd, behind the model Vcpu's methods. Create it with ``KvmVm.create_vcpu()``."""

    __slots__ = ("_vm", "_index", "_vcpu_id", "_el2", "_pmu")

    def __init__(self, vm: KvmVm, fd: int, index: int, vcpu_id: int, el2: bool,
                 pmu: bool) -> None:
        super().__init__(fd)
        self._vm = vm
        self._index = index
        self._vcpu_id = vcpu_id
        self._el2 = el2
        self._pmu = pmu

    vm = property(lambda self: self._vm, doc="The VM this vCPU belongs to.")
    index = property(lambda self: self._index,
                     doc="KVM's vCPU index: KVM_CREATE_VCPU order (failed INITs count).")
    vcpu_id = property(lambda self: self._vcpu_id, doc="The id given to KVM_CREATE_VCPU.")
    el2 = property(lambda self: self._el2, doc="Initialised with KVM_ARM_VCPU_HAS_EL2.")
    pmu = property(lambda self: self._pmu, doc="Initialised with KVM_ARM_VCPU_PMU_V3.")

    # --- needs guest code ---

    def run(self) -> NoReturn:
        """KVM_RUN: not available, always raises NotImplementedError.

        Running the vCPU needs guest code: memory slots, an entry point and the mmap of its
        struct kvm_run, none of which this backend sets up. The model's ``Vcpu.run()`` (a
        context manager yielding the guest's CpuIf) has no counterpart here.
        """
        _missing("KVM_RUN (Vcpu.run())", _NEEDS_GUEST)

    def timer_line(self, name: str, level: bool) -> NoReturn:
        """Not available: always raises NotImplementedError (arguments are not checked).

        The arch timer's output lines (CNTV, PPI 27; CNTP, PPI 30) are raised by the kernel
        when a running guest's timer fires, which needs guest code. Userspace cannot drive
        them through KVM_IRQ_LINE either (EINVAL from v3 on; v2 ignores a line of a PPI the
        kernel owns).
        """
        _missing("Vcpu.timer_line()", "the arch timer lines are driven by the guest "
                 "programming its timers, which " + _NEEDS_GUEST)

    def pmu_line(self, level: bool) -> NoReturn:
        """Not available: always raises NotImplementedError (``level`` is not checked).

        The PMU overflow line (GICV5_ARCH_PPI_PMUIRQ, PPI 23) is raised by the kernel's PMU
        emulation when a running guest's counters overflow, which needs guest code.
        """
        _missing("Vcpu.pmu_line()", "the PMU overflow line is driven by guest counters, "
                 "which " + _NEEDS_GUEST)

    # --- kernel internals ---

    def pending_ppis(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        KVM's pending view (pending_latch, or line_level for a level PPI, in each struct
        vgic_irq of the vCPU) has no uapi getter.
        """
        _missing("Vcpu.pending_ppis()", "KVM's per-vCPU PPI state (struct vgic_irq) "
                 + _KERNEL_STATE)

    def active_ppis(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        The ``active`` flag of each of the vCPU's struct vgic_irq (folded back from the
        hardware at each exit) has no uapi getter.
        """
        _missing("Vcpu.active_ppis()", "KVM's per-vCPU PPI state (struct vgic_irq) "
                 + _KERNEL_STATE)

    def enabled_ppis(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        The guest's enables as KVM holds them (the vCPU's vgic_ppi_enabler bitmap and each
        struct vgic_irq's ``enabled`` flag) have no uapi getter.
        """
        _missing("Vcpu.enabled_ppis()", "KVM's per-vCPU PPI state (struct vgic_irq) "
                 + _KERNEL_STATE)

    def has_pending_irq(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        kvm_vcpu_check_block() (the WFI wake-up test on the saved VGIC state and the timers)
        runs only inside the kernel; userspace cannot ask it.
        """
        _missing("Vcpu.has_pending_irq()", "kvm_vgic_vcpu_pending_irq() on the saved VGIC "
                 "state " + _KERNEL_STATE)

    def vgic_pending_irq(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        kvm_vgic_vcpu_pending_irq() (the vGIC's part of the block check) is called only
        inside the kernel; userspace cannot ask it.
        """
        _missing("Vcpu.vgic_pending_irq()", "kvm_vgic_vcpu_pending_irq() on the saved VGIC "
                 "state " + _KERNEL_STATE)

    def cpu_lines(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError.

        The (IRQ, FIQ) lines that KVM_IRQ_LINE with KVM_ARM_IRQ_TYPE_CPU drives live in
        vcpu->arch.irq_lines, which no uapi reports (driving them with ``irq_line`` works).
        """
        _missing("Vcpu.cpu_lines()", "the IRQ/FIQ lines KVM_ARM_IRQ_TYPE_CPU drives "
                 "(vcpu->arch.irq_lines) " + _KERNEL_STATE)

    @property
    def contextr(self) -> NoReturn:
        """Hardware state: always raises NotImplementedError (ICH_CONTEXTR_EL2 is EL2's)."""
        _missing("Vcpu.contextr", "ICH_CONTEXTR_EL2 is an EL2 register " + _KERNEL_STATE)

    @property
    def db_fired(self) -> NoReturn:
        """Kernel-internal: always raises NotImplementedError (vgic_v5 db_fired)."""
        _missing("Vcpu.db_fired", "the VPE doorbell state " + _KERNEL_STATE)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<gic5.kvmdev.KvmVcpu id={self._vcpu_id} index={self._index} {state}>"
