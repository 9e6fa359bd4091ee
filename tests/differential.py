"""The differential harness: gic5 against the reference model (tests/reference.py), call by call.

Rules this module keeps:
- One home for what every differential test compares and how: the Hypothesis state machine
  (tests/test_state_machine.py), the Hypothesis fuzz tests (tests/test_fuzz.py) and the
  atheris harness (fuzz/atheris_gic5.py) all classify outcomes, build user buffers, read the
  observable state and look up known discrepancies here, so they cannot disagree.
- An outcome is ``((status, payload), raw)``: ``("ok", normalised value)`` or ``("raise",
  kind)``. Kinds: the OSError's errno and subclass (EEXIST -> FileExistsError is part of the
  contract), TypeError, RuntimeError, NotImplementedError, UndefinedInstruction, and ValueError / OverflowError
  as one kind (docs/semantics.md section 2 allows either for an int outside its C type). Any
  other exception (IndexError, SystemError, BufferError, ...) is a bug on whichever side
  raised it: it propagates, it is never compared.
- Values compare by what they are, not by which side made them: ints (numpy integers
  included) as ints, tuples element by element, lists and arrays as tuples of ints, objects
  (a Vm, a Vcpu, a CpuIf) by their kind only.
- A buffer spec is ``(kind, size, u32 value)``; ``make_buffer`` builds a fresh buffer from it
  for each side, so both start byte for byte equal, and ``buffer_bytes`` reads back what a
  call left in it.
- Known library discrepancies live in ``KNOWN`` and nowhere else; each entry hides exactly
  one (call label, library outcome, reference outcome) shape, names the semantics.md section
  it breaks, and is reported to the library's author. It is empty.
"""

from __future__ import annotations

import array
import re
import sys
from typing import Any, Callable

import numpy as np

import gic5
import reference as ref

__all__ = ["MISUSE_VALUE", "kind", "normalise", "outcome", "failed", "BUF_KINDS",
           "make_buffer", "buffer_bytes", "VCPU_VIEWS", "vcpu_view", "PRIO_PROBE", "CPU_READS",
           "cpu_view",
           "KNOWN", "known"]

MISUSE_VALUE = ("ValueError/OverflowError",)


# --- outcomes -------------------------------------------------------------------------------

def kind(exc: BaseException) -> tuple | None:
    """The comparable kind of an exception, or None for one no call may raise."""
    if isinstance(exc, (gic5.UndefinedInstruction, ref.UndefinedInstruction)):
        return ("UndefinedInstruction",)
    if isinstance(exc, OSError):
        return ("OSError", exc.errno, type(exc).__name__)
    if isinstance(exc, (ValueError, OverflowError)) and not isinstance(exc, UnicodeError):
        return MISUSE_VALUE
    if type(exc) is TypeError:
        return ("TypeError",)
    if type(exc) is RuntimeError:
        return ("RuntimeError",)
    if type(exc) is NotImplementedError:
        return ("NotImplementedError",)  # 7.4's IRS_REGS / IST: not modelled, on both sides
    return None


def normalise(value: Any) -> Any:
    """A return value in a form both sides can produce equally."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return ("int", int(value))
    if isinstance(value, tuple):
        return ("tuple", tuple(normalise(v) for v in value))
    if isinstance(value, (list, np.ndarray)):
        return ("seq", tuple(int(v) for v in value))
    return ("object", type(value).__name__.replace("Ref", "").lstrip("_"))


def outcome(fn: Callable[[], Any]) -> tuple[tuple, Any]:
    """Run one call: ``((status, payload), raw value)``; an unexpected exception propagates."""
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 (classified; anything unknown is re-raised)
        k = kind(e)
        if k is None:
            raise
        return ("raise", k), None
    return ("ok", normalise(value)), value


def failed(o: tuple) -> bool:
    return o[0] == "raise"


# --- user buffers -----------------------------------------------------------------------------

BUF_KINDS = ["bytearray", "bytes", "mv_ro", "mv_rw", "array_B", "array_I", "array_Q",
             "array_d", "np_u8", "np_u32", "np_u64", "np_f64", "np_bool", "np_ro",
             "np_noncontig", "np_2d", "np_fortran", "np_empty", "none", "zero", "false", "true",
             "one", "neg", "huge", "raw", "str", "list", "float", "bytes_list"]


def make_buffer(spec: tuple[str, int, int]) -> Any:
    """A fresh buffer of ``spec`` = (kind, size, value): ``size`` bytes starting with the u32
    ``value`` (native order; kind "u64": the u64 ``value``), then a recognisable filler.
    Non-buffer kinds give the object."""
    kind_, size, value = spec
    if kind_ == "u64":
        # a bytearray starting with the u64 ``value`` (the 7.4 ADDR / CPU_SYSREGS attrs)
        return bytearray((value.to_bytes(8, sys.byteorder) + bytes(range(0xA0, 0xC0)))[:size])
    prefix = (value & 0xFFFFFFFF).to_bytes(4, sys.byteorder)
    data = (prefix + bytes(range(0xA0, 0xC0)) * 2)[:size]
    if kind_ == "bytearray":
        return bytearray(data)
    if kind_ == "bytes":
        return bytes(data)                       # read-only
    if kind_ == "mv_ro":
        return memoryview(bytes(data))
    if kind_ == "mv_rw":
        return memoryview(bytearray(data))
    if kind_.startswith("array_"):
        code = kind_[-1]
        a = array.array(code)
        a.frombytes(data[:len(data) - len(data) % a.itemsize])
        return a
    if kind_ in ("np_u8", "np_u32", "np_u64", "np_f64"):
        dt = np.dtype({"np_u8": np.uint8, "np_u32": np.uint32, "np_u64": np.uint64,
                       "np_f64": np.float64}[kind_])
        # the dtype is ignored: the same bytes as raw memory (a short tail is dropped)
        return np.frombuffer(bytearray(data[:len(data) - len(data) % dt.itemsize]),
                             dtype=dt).copy()
    if kind_ == "np_bool":
        return np.frombuffer(bytearray(data), dtype=np.uint8).astype(bool)
    if kind_ == "np_ro":
        a = np.frombuffer(bytearray(data), dtype=np.uint8).copy()
        a.setflags(write=False)
        return a
    if kind_ == "np_noncontig":
        return np.frombuffer(bytearray(data * 2 + b"\0\0"), dtype=np.uint8).copy()[::2]
    if kind_ == "np_2d":
        return np.frombuffer(bytearray((data + b"\0" * 32)[:32]), dtype=np.uint8).copy() \
            .reshape(4, 8)
    if kind_ == "np_fortran":
        return np.asfortranarray(np.arange(32, dtype=np.uint8).reshape(4, 8))
    if kind_ == "np_empty":
        return np.zeros(0, dtype=np.uint32)
    return {"none": None, "zero": 0, "false": False, "true": True, "one": 1, "neg": -1,
            "huge": 2**70, "raw": 0x7F000000, "str": "buffer", "list": [0] * 16,
            "float": 0.0, "bytes_list": [b"\0" * 16]}[kind_]


def buffer_bytes(buf: Any) -> bytes | None:
    """What a buffer holds after a call (None for non-buffers and non-contiguous views)."""
    if not isinstance(buf, (bytearray, bytes, memoryview, array.array, np.ndarray)):
        return None
    if isinstance(buf, np.ndarray):
        return buf.tobytes(order="A")
    return bytes(memoryview(buf).cast("B")) if memoryview(buf).c_contiguous else None


# --- the observable state ---------------------------------------------------------------------

# Per vCPU, between or during runs (inspection calls never raise for a vCPU that exists).
VCPU_VIEWS = ("pending_ppis", "active_ppis", "enabled_ppis", "has_pending_irq",
              "vgic_pending_irq")
# What the guest of a running vCPU reads: (method, argument) pairs.
# The priorities: every PPI the drawing pools of the three harnesses touch, both banks' edges.
PRIO_PROBE = (0, 1, 2, 3, 23, 26, 27, 28, 30, 31, 62, 63, 64, 65, 100, 126, 127)
CPU_READS = tuple((m, n) for m in ("read_ppi_enabler", "read_ppi_spendr", "read_ppi_sactiver")
                  for n in (0, 1)) + tuple(("read_ppi_priority", p) for p in PRIO_PROBE)


def vcpu_view(v: Any) -> tuple:
    """The observables of one vCPU (VCPU_VIEWS, in order)."""
    return tuple(getattr(v, name)() for name in VCPU_VIEWS)


def cpu_view(cpu: Any) -> tuple:
    """What a running guest reads (CPU_READS), as outcomes (a CpuIf may raise UNDEF)."""
    return tuple(outcome(lambda m=m, n=n: getattr(cpu, m)(n))[0] for m, n in CPU_READS)


# --- known discrepancies ----------------------------------------------------------------------

# label: a regex on the call's label; lib / ref: the two outcomes (the (status, payload) part).
KNOWN: dict[str, dict] = {
}


def known(label: str, lib_o: tuple, ref_o: tuple) -> str | None:
    """The KNOWN entry this mismatch is, if any."""
    for name, k in KNOWN.items():
        if re.search(k["label"], label) and lib_o == k["lib"] and ref_o == k["ref"]:
            return name
    return None
