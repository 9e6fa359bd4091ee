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
from typing import Any

__all__ = ["index", "uint", "flag", "attr_key", "vcpu_id"]


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
