"""The Python argument rules every KVM-facing entry point of both backends applies.

Rules this module keeps:
- One home for each rule: the model front end (kvm.py) and the real-KVM backend (kvmdev.py)
  call these functions and nothing else, so both accept and refuse exactly the same inputs.
- "Is an integer" is Python's own rule, ``operator.index`` (an int, a bool, a numpy integer:
  whatever has ``__index__``; never a float), the same rule as the core's ``need_int``
  (gic5core/args.pxd). A bool is an int here, as ``struct.pack`` and so ``fcntl.ioctl`` take
  it (docs/semantics.md section 2).
- Misuse raises before anything changes: TypeError for a non-integer, OverflowError for an
  integer outside its C type (what the core's C conversion raises), ValueError for a value
  outside a documented Python-level range.
- Pure functions with no state and no imports from the rest of gic5, so importing them can
  never form a cycle.
"""

from __future__ import annotations

import operator
import struct
from typing import Any

__all__ = ["index", "uint", "flag", "attr_key", "vcpu_id", "ist_descriptor"]


def index(value: Any, name: str) -> int:
    """``value`` as a Python int by ``operator.index``; TypeError naming ``name`` otherwise."""
    try:
        return int(operator.index(value))
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def uint(value: Any, bits: int, name: str) -> int:
    """An integer that fits an unsigned C type of ``bits`` bits (OverflowError otherwise)."""
    number = index(value, name)
    if not 0 <= number <= (1 << bits) - 1:
        raise OverflowError(f"{name} {number} does not fit in a __u{bits}")
    return number


def flag(value: Any, name: str) -> bool:
    """A truth value given as a bool or an integer (TypeError otherwise)."""
    return bool(index(value, name))


def attr_key(group: Any, attr: Any) -> tuple[int, int]:
    """``struct kvm_device_attr``'s (__u32 group, __u64 attr), checked."""
    return uint(group, 32, "group"), uint(attr, 64, "attr")


def vcpu_id(value: Any) -> int:
    """KVM_CREATE_VCPU's id: KVM takes an unsigned long, so a negative id is Python misuse
    (ValueError); any larger id is the kernel's to refuse (EINVAL)."""
    number = index(value, "vcpu_id")
    if number < 0:
        raise ValueError(f"vcpu_id {number} is negative (KVM takes an unsigned long)")
    return number


def ist_descriptor(addr: Any) -> tuple[bool, bool, Any, int, Any, int]:
    """KVM_DEV_ARM_VGIC_GRP_IST's addr, read as vgic_v5_copy_ist_attr reads the struct:
    (null, readable, spi_ist, spi_ist_size, lpi_ist, lpi_ist_size). ``addr`` is None / 0
    (NULL), an object with the four fields of ``gic5.uapi.kvm_vgic_v5_ist`` (the buffers are
    passed on as they are, None standing for a NULL address), or a buffer holding the raw
    struct: fewer than 32 bytes cannot be copied (readable False, EFAULT), and a non-zero
    address field is a TypeError (gic5 never dereferences a raw address; zero ones are NULL).
    Sizes are __u64 (OverflowError otherwise). Anything else is a TypeError."""
    if addr is None or (isinstance(addr, int) and addr == 0):  # False too, as UserPtr
        return True, False, None, 0, None, 0
    fields = ("spi_ist", "spi_ist_size", "lpi_ist", "lpi_ist_size")
    if all(hasattr(addr, f) for f in fields):
        spi_size = uint(addr.spi_ist_size, 64, "spi_ist_size")
        lpi_size = uint(addr.lpi_ist_size, 64, "lpi_ist_size")
        return False, True, addr.spi_ist, spi_size, addr.lpi_ist, lpi_size
    if isinstance(addr, int):
        raise TypeError("addr must be None, 0, a gic5.uapi.kvm_vgic_v5_ist or a buffer: gic5 "
                        f"never dereferences a raw address (got the int {addr:#x})")
    try:
        view = memoryview(addr).cast("B")
    except TypeError:
        raise TypeError("addr must be None, 0, a gic5.uapi.kvm_vgic_v5_ist or a buffer, not "
                        f"{type(addr).__name__}") from None
    if view.nbytes < 32:
        return False, False, None, 0, None, 0
    spi_addr, spi_size, lpi_addr, lpi_size = struct.unpack_from("=4Q", view, 0)
    if spi_addr or lpi_addr:
        raise TypeError("a raw struct kvm_vgic_v5_ist with a non-zero address: gic5 never "
                        "dereferences a raw address (pass a gic5.uapi.kvm_vgic_v5_ist "
                        "holding the buffers)")
    return False, True, None, spi_size, None, lpi_size
