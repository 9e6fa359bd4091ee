"""gic5-diff: run the same VMM-side code under every revision profile and show where they differ.

Usage: ``gic5-diff [SCENARIO ...] [--json] [--profiles v2,v3,final] [--against kvm] [--list]``
(also ``python -m gic5.diff``). A SCENARIO is a built-in name (``--list`` shows them) or the
path of a Python file that defines ``scenario(kvm)``; with none, every built-in runs.

Rules this module keeps:
- A scenario is plain Python against the public API. It gets a *recorded* ``kvm``: every
  method call on it, and on the Vm / Vcpu / Device / CpuIf objects that come out of it, is
  one STEP ``{"call": str, "result": 0 or -errno, "value": ... or null}``. An OSError from a
  call becomes ``result = -errno`` (the call then returns None) and the scenario goes on, so a
  scenario never needs try/except to survive a kernel error. A failed ``create_*`` returns a
  falsy stand-in whose calls are recorded as -EBADF (an ioctl on an fd that was never opened),
  so the scenario keeps its shape under every column.
- ``value`` is what the call returned, made JSON-shaped (tuples of mask words -> lists of
  ints, numpy arrays -> lists, handles such as a new Vm -> null). ``get_attr`` returns None,
  like the ioctl; its value is what the call wrote into the user buffer (u32 for a 4-byte
  buffer, else the u64 words), recorded when the call succeeded or wrote something before it
  failed. ``kvm.rec.note(name, value)`` / ``kvm.rec.mask(name, words)`` record a value the
  scenario computed itself.
- ``with vcpu.run() as cpu:`` records one step, ``<vcpu>.run()``, when the block is entered.
  If KVM_RUN fails there the guest block cannot run: the step is recorded with its errno and
  the scenario stops under that column (``ScenarioStopped``, which a scenario may catch).
- A scenario file may set ``HOST = gic5.Host(...)``: the model profiles then run on that
  host (built-ins that need a special host carry one too). The ``kvm`` column always runs on
  the machine it is on.
- ``--against kvm`` adds a column (JSON key ``"kvm"``, not listed in ``"profiles"``) that runs
  each scenario on ``gic5.Kvm(backend="kvm")``. There, a call the backend cannot perform
  (NotImplementedError, e.g. guest-side calls that need guest code, or a model-only
  inspection method the backend lacks) is recorded as ``result -ENOSYS`` with the message as
  its value, and that column's scenario stops. If the backend cannot be opened at all (no
  /dev/kvm, no backend in this gic5), nothing could be compared: a note goes to stderr,
  nothing to stdout, exit status 2.
- Exit status: 0 whenever the scenarios ran, whether or not the columns differ (differences
  are the output). 2 only for gic5-diff's own errors: bad arguments, an unknown scenario
  name, a scenario file that does not load or has no callable ``scenario``, a non-OSError
  exception escaping a scenario, the kvm backend unavailable with ``--against kvm``. Errors
  are reported on stderr and nothing is printed on stdout.
- ``--json`` prints exactly one JSON object: ``{"profiles": [...], "scenarios": {NAME:
  {COLUMN: [STEP, ...]}}}``. A built-in's NAME is its name; a file's is the path as given.
- Text output: per scenario a table, one row per step (matched by position) and one column
  per profile (hex for every integer value, errno names for failures, ``-`` where a column
  had already stopped); ``*`` marks rows where the profiles disagree, ``k`` rows where the kvm
  column differs from ``final`` (or the last profile shown); then one summary line per
  scenario and one for the whole run.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import sys
import textwrap
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import uapi
from .kvm import PROFILES, Host, Kvm

__all__ = ["Recorder", "Scenario", "ScenarioStopped", "BUILTINS", "run_scenario",
           "load_scenario_file", "main"]

KVM_COLUMN = "kvm"


class ScenarioStopped(Exception):
    """The scenario cannot go on under this column (KVM_RUN failed on entry, or the real-KVM
    backend cannot perform a call). The runner ends the column's step list here."""


class DiffError(Exception):
    """One of gic5-diff's own errors: reported on stderr, exit status 2."""


# --- formatting of calls -------------------------------------------------------------------------

_IRQ_TYPES = {uapi.KVM_ARM_IRQ_TYPE_CPU: "CPU", uapi.KVM_ARM_IRQ_TYPE_SPI: "SPI",
              uapi.KVM_ARM_IRQ_TYPE_PPI: "PPI"}
_DEV_GROUPS = {getattr(uapi, n): n[len("KVM_DEV_ARM_VGIC_GRP_"):]
               for n in dir(uapi) if n.startswith("KVM_DEV_ARM_VGIC_GRP_")}
_DEV_CTRL_ATTRS = {uapi.KVM_DEV_ARM_VGIC_CTRL_INIT: "CTRL_INIT",
                   uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS: "USERSPACE_PPIS"}
_VCPU_GROUPS = {uapi.KVM_ARM_VCPU_PMU_V3_CTRL: "PMU_V3_CTRL",
                uapi.KVM_ARM_VCPU_TIMER_CTRL: "TIMER_CTRL"}
_VCPU_ATTRS = {
    uapi.KVM_ARM_VCPU_PMU_V3_CTRL: {uapi.KVM_ARM_VCPU_PMU_V3_IRQ: "PMU_V3_IRQ",
                                    uapi.KVM_ARM_VCPU_PMU_V3_INIT: "PMU_V3_INIT"},
    uapi.KVM_ARM_VCPU_TIMER_CTRL: {uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER: "VTIMER",
                                   uapi.KVM_ARM_VCPU_TIMER_IRQ_PTIMER: "PTIMER",
                                   uapi.KVM_ARM_VCPU_TIMER_IRQ_HVTIMER: "HVTIMER",
                                   uapi.KVM_ARM_VCPU_TIMER_IRQ_HPTIMER: "HPTIMER"},
}
# Calls that return a new handle (fd): when they fail, the scenario gets an _Unopened.
_CREATORS = frozenset(("create_vm", "create_vcpu", "create_device"))
# CpuIf register writes whose second argument is a mask word: shown in hex.
_MASK_WRITES = frozenset(("write_ppi_enabler", "write_ppi_spendr", "write_ppi_cpendr",
                          "write_ppi_sactiver", "write_ppi_cactiver"))


def _int_arg(v: int) -> str:
    # Small numbers (ids, levels, indices) read best in decimal, anything mask-like in hex.
    return str(v) if -4096 < v < 4096 else hex(v)


def _buffer_bytes(obj: Any) -> bytes | None:
    """The bytes of a C-contiguous buffer, or None for anything else."""
    if obj is None or isinstance(obj, int):
        return None
    try:
        view = memoryview(obj)
    except TypeError:
        return None
    if not view.c_contiguous:
        return None
    return bytes(view.cast("B")) if view.ndim != 1 or view.format != "B" else bytes(view)


def _buffer_writable(obj: Any) -> bool:
    try:
        return not memoryview(obj).readonly
    except TypeError:
        return False


def _decode_buffer(raw: bytes) -> Any:
    """Native-endian words: one u32 for a 4-byte buffer, else u64 words (hex text if neither)."""
    if len(raw) == 4:
        return int.from_bytes(raw, sys.byteorder)
    if raw and len(raw) % 8 == 0:
        return [int.from_bytes(raw[i:i + 8], sys.byteorder) for i in range(0, len(raw), 8)]
    return raw.hex()


def _fmt_arg(v: Any) -> str:
    if isinstance(v, _Proxy):
        return v._label
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return _int_arg(v)
    if isinstance(v, str):
        return repr(v)
    raw = _buffer_bytes(v)
    if raw is not None:
        return f"buf[{len(raw)}]"
    if isinstance(v, (tuple, list)):
        inner = ", ".join(_fmt_arg(x) for x in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    text = repr(v)
    return text if len(text) <= 24 else f"<{type(v).__name__}>"


def _fmt_irq_word(word: Any) -> str:
    if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word < 1 << 32:
        return _fmt_arg(word)
    kind = (word >> uapi.KVM_ARM_IRQ_TYPE_SHIFT) & uapi.KVM_ARM_IRQ_TYPE_MASK
    vcpu = (((word >> uapi.KVM_ARM_IRQ_VCPU_SHIFT) & uapi.KVM_ARM_IRQ_VCPU_MASK)
            + 256 * ((word >> uapi.KVM_ARM_IRQ_VCPU2_SHIFT) & uapi.KVM_ARM_IRQ_VCPU2_MASK))
    num = word & uapi.KVM_ARM_IRQ_NUM_MASK
    if kind not in _IRQ_TYPES:
        return hex(word)
    return f"{_IRQ_TYPES[kind]} {num} on vcpu {vcpu}"


def _fmt_attr_call(kind: str, name: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> list[str]:
    group = args[0] if args else kwargs.pop("group", None)
    attr = args[1] if len(args) > 1 else kwargs.pop("attr", None)
    has_addr = len(args) > 2 or "addr" in kwargs
    addr = args[2] if len(args) > 2 else kwargs.pop("addr", None)
    if kind == "dev":
        g = _DEV_GROUPS.get(group, _fmt_arg(group))
        a = (_DEV_CTRL_ATTRS.get(attr) if group == uapi.KVM_DEV_ARM_VGIC_GRP_CTRL else None)
    else:
        g = _VCPU_GROUPS.get(group, _fmt_arg(group))
        a = _VCPU_ATTRS.get(group, {}).get(attr)
    out = [str(g), a or _fmt_arg(attr)]
    if has_addr:
        raw = _buffer_bytes(addr)
        if addr is None or addr == 0:
            out.append("NULL")
        elif name == "set_attr" and raw is not None and len(raw) in (4, 8, 16):
            value = _decode_buffer(raw)
            out.append("=" + (hex(value) if isinstance(value, int)
                              else ",".join(hex(w) for w in value)))
        else:
            out.append(_fmt_arg(addr))
    out.extend(f"{k}={_fmt_arg(v)}" for k, v in kwargs.items())
    return out


def format_call(label: str, kind: str, name: str, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> str:
    """``label.name(args)`` with kernel names for attribute groups, irq words and device types."""
    if name in ("get_attr", "set_attr", "has_attr") and kind in ("dev", "vcpu"):
        parts = _fmt_attr_call(kind, name, args, dict(kwargs))
    elif name == "irq_line" and args:
        parts = [_fmt_irq_word(args[0])] + [_fmt_arg(a) for a in args[1:]]
        parts += [f"{k}={_fmt_arg(v)}" for k, v in kwargs.items()]
    elif name == "create_device" and args:
        parts = ["VGIC_V5" if args[0] == uapi.KVM_DEV_TYPE_ARM_VGIC_V5 else _fmt_arg(args[0])]
        for a in args[1:]:
            parts.append("TEST" if a == uapi.KVM_CREATE_DEVICE_TEST else _fmt_arg(a))
        parts += [f"{k}={_fmt_arg(v)}" for k, v in kwargs.items()]
    else:
        parts = []
        for i, a in enumerate(args):
            if (name in _MASK_WRITES and i == 1 or name == "cddi") and isinstance(a, int) \
                    and not isinstance(a, bool):
                parts.append(hex(a))
            else:
                parts.append(_fmt_arg(a))
        parts += [f"{k}={_fmt_arg(v)}" for k, v in kwargs.items()]
    return f"{label}.{name}({', '.join(parts)})"


# --- values ----------------------------------------------------------------------------------

_DATA_SCALARS = (type(None), bool, int, float, str, bytes)


def _is_data(v: Any) -> bool:
    if isinstance(v, _DATA_SCALARS):
        return True
    if isinstance(v, (tuple, list)):
        return all(_is_data(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_data(x) for k, x in v.items())
    return hasattr(v, "tolist") and hasattr(v, "dtype")  # numpy arrays and scalars


def to_json_value(v: Any) -> Any:
    """A returned value in JSON shape: tuples -> lists, numpy -> Python, bytes -> hex text."""
    if hasattr(v, "tolist") and hasattr(v, "dtype"):
        return to_json_value(v.tolist())
    if isinstance(v, (tuple, list)):
        return [to_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (type(None), bool, int, float, str)):
        return v
    raise TypeError(f"cannot record a value of type {type(v).__name__}")


# --- the recorder ------------------------------------------------------------------------------

class Recorder:
    """Collects the STEPs of one scenario run under one column.

    ``backend`` is ``"model"`` or ``"kvm"``; on ``"kvm"`` a call the backend cannot perform is
    recorded as -ENOSYS and stops the scenario. Use ``wrap`` to start, ``note``/``mask`` to
    record a value the scenario computed.
    """

    def __init__(self, backend: str = "model") -> None:
        if backend not in ("model", KVM_COLUMN):
            raise ValueError(f"backend must be 'model' or 'kvm', not {backend!r}")
        self.backend = backend
        self.steps: list[dict[str, Any]] = []
        self.current_call: str | None = None  # the call in progress (for error messages)
        self._handles: dict[int, _Proxy] = {}
        self._keep: list[Any] = []            # keeps wrapped objects alive so ids stay unique
        self._nvms = 0

    def wrap(self, raw: Any, label: str = "kvm", kind: str = "kvm", prefix: str = "") -> _Proxy:
        """The recorded stand-in for ``raw`` (the same proxy every time for the same object)."""
        proxy = self._handles.get(id(raw))
        if proxy is None:
            proxy = _Proxy(self, raw, label, kind, prefix)
            self._handles[id(raw)] = proxy
            self._keep.append(raw)
        return proxy

    def record(self, call: str, result: int, value: Any = None) -> None:
        """Append one STEP ``{"call": call, "result": result, "value": ...}`` to ``steps``.

        The recorded calls use this for every call (and ``note`` / ``mask`` for values the
        scenario computed); a scenario rarely needs it directly. ``value`` is stored through
        ``to_json_value`` (tuples -> lists, numpy -> Python, bytes -> hex text). ValueError
        when ``result`` is not 0 or a negative int (a bool is refused too), TypeError when
        ``value`` cannot be made JSON-shaped; either way nothing is appended.

        >>> rec = Recorder()
        >>> rec.record("vm.userspace_ppis()", 0, (0x8, 0))
        >>> rec.steps
        [{'call': 'vm.userspace_ppis()', 'result': 0, 'value': [8, 0]}]
        >>> rec.record("vm.userspace_ppis()", 22)
        Traceback (most recent call last):
            ...
        ValueError: a step's result is 0 or -errno, not 22
        """
        if isinstance(result, bool) or not isinstance(result, int) or result > 0:
            raise ValueError(f"a step's result is 0 or -errno, not {result!r}")
        self.steps.append({"call": call, "result": result, "value": to_json_value(value)})

    def note(self, name: str, value: Any) -> Any:
        """Record a value the scenario computed (result 0); returns ``value``."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        self.record(name, 0, value)
        return value

    def mask(self, name: str, words: Sequence[int]) -> tuple[int, ...]:
        """Record mask words (e.g. a (word0, word1) pair) under ``name``; returns them."""
        words = tuple(words)
        if not words or any(isinstance(w, bool) or not isinstance(w, int) or w < 0
                            for w in words):
            raise ValueError(f"mask words must be non-negative ints, not {words!r}")
        self.record(name, 0, list(words))
        return words

    # Handles that calls return get labels from the call that made them, so the labels do not
    # depend on the backend's class names and match across columns.
    # ``ret`` None means the create_* call failed: the stand-in answers EBADF (see _Unopened).
    def _child(self, parent: _Proxy | _Unopened, name: str, args: tuple[Any, ...],
               ret: Any) -> _Proxy | _Unopened:
        if ret is not None and id(ret) in self._handles:
            return self._handles[id(ret)]
        if name == "create_vm":
            self._nvms += 1
            label = "vm" if self._nvms == 1 else f"vm{self._nvms}"
            kind, prefix = "vm", "" if self._nvms == 1 else label + "."
        elif name == "create_vcpu":
            vid = args[0] if args and isinstance(args[0], int) else "?"
            label, kind, prefix = f"{parent._prefix}vcpu{vid}", "vcpu", parent._prefix
        elif name == "create_device":
            label, kind, prefix = f"{parent._prefix}dev", "dev", parent._prefix
        else:
            label, kind, prefix = f"{parent._label}.{name}()", "obj", parent._prefix
        if ret is None:
            return _Unopened(self, label, kind, prefix)
        return self.wrap(ret, label, kind, prefix)

    def _unsupported(self, call: str, exc: BaseException) -> None:
        self.record(call, -errno.ENOSYS, f"{type(exc).__name__}: {exc}")
        raise ScenarioStopped(f"{call}: the {self.backend} backend cannot do this: {exc}")

    def _call(self, proxy: _Proxy, name: str, method: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        call = format_call(proxy._label, proxy._kind, name, args, kwargs)
        raw_args = tuple(_unwrap(a) for a in args)
        raw_kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        buf = None
        if name == "get_attr":
            addr = raw_args[2] if len(raw_args) > 2 else raw_kwargs.get("addr")
            if _buffer_writable(addr):
                buf = addr
        before = _buffer_bytes(buf)
        self.current_call = call
        try:
            ret = method(*raw_args, **raw_kwargs)
        except OSError as exc:
            if not isinstance(exc.errno, int) or exc.errno <= 0:
                raise
            self.current_call = None
            after = _buffer_bytes(buf)
            self.record(call, -exc.errno,
                        _decode_buffer(after) if after is not None and after != before else None)
            if name in _CREATORS:
                return self._child(proxy, name, args, None)
            return None
        except NotImplementedError as exc:
            if self.backend != KVM_COLUMN:
                raise
            self._unsupported(call, exc)
        self.current_call = None
        if _is_data(ret):
            value = ret
            if buf is not None and ret is None:
                after = _buffer_bytes(buf)
                value = _decode_buffer(after) if after is not None else None
            self.record(call, 0, value)
            return ret
        self.record(call, 0, None)
        return self._child(proxy, name, args, ret)

    def _run(self, proxy: _Proxy | _Unopened, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> _RunBlock:
        return _RunBlock(self, proxy, args, kwargs)


def _unwrap(v: Any) -> Any:
    if isinstance(v, _Proxy):
        return v._raw
    if isinstance(v, tuple):
        return tuple(_unwrap(x) for x in v)
    if isinstance(v, list):
        return [_unwrap(x) for x in v]
    return v


class _Proxy:
    """A recorded Kvm / Vm / Vcpu / Device / CpuIf: public method calls become steps;
    attributes pass through (handles among them come back as their proxies)."""

    __slots__ = ("_rec", "_raw", "_label", "_kind", "_prefix")

    def __init__(self, rec: Recorder, raw: Any, label: str, kind: str, prefix: str) -> None:
        self._rec = rec
        self._raw = raw
        self._label = label
        self._kind = kind
        self._prefix = prefix

    @property
    def rec(self) -> Recorder:
        """The Recorder (for ``note`` / ``mask``)."""
        return self._rec

    @property
    def raw(self) -> Any:
        """The object behind the proxy (calls on it are not recorded)."""
        return self._raw

    def __getattr__(self, name: str) -> Any:
        rec = self._rec
        try:
            attr = getattr(self._raw, name)
        except NotImplementedError as exc:
            # e.g. ``kvm.host`` on the real backend: recorded as unsupported, column stops.
            if rec.backend != KVM_COLUMN:
                raise
            rec._unsupported(f"{self._label}.{name}", exc)
        except AttributeError as exc:
            if rec.backend != KVM_COLUMN or name.startswith("_"):
                raise
            # A model-only method the real backend does not have: recorded, column stops.
            # (Bound now: ``exc`` itself is unbound when the except block ends.)
            label, kind, why = self._label, self._kind, exc

            def missing(*args: Any, **kwargs: Any) -> Any:
                rec._unsupported(format_call(label, kind, name, args, kwargs), why)
            return missing
        if name.startswith("_"):
            return attr
        if name == "run" and self._kind == "vcpu" and callable(attr):
            return lambda *args, **kwargs: rec._run(self, args, kwargs)
        if callable(attr) and not isinstance(attr, type):
            return lambda *args, **kwargs: rec._call(self, name, attr, args, kwargs)
        return _rewrap(rec, attr)

    def __repr__(self) -> str:
        return f"<recorded {self._label}: {self._raw!r}>"


class _Unopened:
    """What a failed ``create_*`` call returns: a handle whose fd was never opened. Every call
    on it is recorded as -EBADF (what an ioctl on fd -1 answers) and returns None, so the
    scenario keeps its shape under every column; ``run()`` on it stops the scenario. It is
    falsy, so ``if dev:`` tells it from a real handle."""

    __slots__ = ("_rec", "_label", "_kind", "_prefix")

    def __init__(self, rec: Recorder, label: str, kind: str, prefix: str) -> None:
        self._rec, self._label, self._kind, self._prefix = rec, label, kind, prefix

    @property
    def rec(self) -> Recorder:
        return self._rec

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        rec = self._rec
        if name == "run" and self._kind == "vcpu":
            return lambda *args, **kwargs: rec._run(self, args, kwargs)

        def call(*args: Any, **kwargs: Any) -> Any:
            rec.record(format_call(self._label, self._kind, name, args, kwargs), -errno.EBADF)
            return rec._child(self, name, args, None) if name in _CREATORS else None
        return call

    def __repr__(self) -> str:
        return f"<unopened {self._label}>"


def _rewrap(rec: Recorder, value: Any) -> Any:
    if id(value) in rec._handles:
        return rec._handles[id(value)]
    if isinstance(value, tuple):
        return tuple(_rewrap(rec, v) for v in value)
    return value


class _RunBlock:
    """``with vcpu.run() as cpu``: KVM_RUN is recorded on entry; the CpuIf is recorded too."""

    __slots__ = ("_rec", "_vcpu", "_args", "_kwargs", "_cm")

    def __init__(self, rec: Recorder, vcpu: _Proxy | _Unopened, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self._rec, self._vcpu, self._args, self._kwargs = rec, vcpu, args, kwargs
        self._cm: Any = None

    def __enter__(self) -> _Proxy:
        rec, vcpu = self._rec, self._vcpu
        call = format_call(vcpu._label, "vcpu", "run", self._args, self._kwargs)
        if isinstance(vcpu, _Unopened):
            rec.record(call, -errno.EBADF)
            raise ScenarioStopped(f"{call}: the vCPU was never created")
        rec.current_call = call
        try:
            cm = vcpu._raw.run(*(_unwrap(a) for a in self._args), **self._kwargs)
            cpu = cm.__enter__()
        except OSError as exc:
            if not isinstance(exc.errno, int) or exc.errno <= 0:
                raise
            rec.record(call, -exc.errno, None)
            raise ScenarioStopped(f"{call} failed with {errno.errorcode.get(exc.errno)}: "
                                  "the guest block cannot run") from None
        except NotImplementedError as exc:
            if rec.backend != KVM_COLUMN:
                raise
            rec._unsupported(call, exc)
        rec.current_call = None
        self._cm = cm
        rec.record(call, 0, None)
        cpu_label = vcpu._prefix + "cpu" + vcpu._label[len(vcpu._prefix) + len("vcpu"):]
        # A fresh proxy per run: each run yields its own CpuIf.
        return rec.wrap(cpu, cpu_label, "cpu", vcpu._prefix)

    def __exit__(self, *exc_info: Any) -> Any:
        return self._cm.__exit__(*exc_info)


# --- scenarios -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """A named ``scenario(kvm)`` with the host the model profiles run it on."""

    name: str
    func: Callable[[Any], Any]
    host: Host | None = None
    doc: str = ""


BUILTINS: dict[str, Scenario] = {}


def _builtin(host: Host | None = None) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    def register(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        doc = " ".join((func.__doc__ or "").split("\n\n")[0].split())
        BUILTINS[func.__name__] = Scenario(func.__name__, func, host, doc)
        return func
    return register


GRP_CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
SW = uapi.GICV5_ARCH_PPI_SW_PPI
VT = uapi.GICV5_ARCH_PPI_CNTV
SW_INTID = uapi.ppi_intid(SW)
ALL = (1 << 64) - 1


def _ppi(num: int, vcpu_id: int = 0) -> int:
    return uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, vcpu_id, num)


def _get_userspace_ppis(dev: Any) -> None:
    dev.get_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS, bytearray(16))


def _vm_with_device(kvm: Any, nr_vcpus: int = 1, init: bool = True) -> tuple[Any, list[Any], Any]:
    vm = kvm.create_vm()
    vcpus = [vm.create_vcpu(i) for i in range(nr_vcpus)]
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    if init:
        dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    return vm, vcpus, dev


@_builtin()
def userspace_ppis(kvm: Any) -> None:
    """USERSPACE_PPIS before and after CTRL_INIT (spec 5.1/5.2): v2 stores the PPI index 3 as
    a bitmap (bits 0 and 1) and ANDs it with the implemented mask, giving {0x0, 0x0} on the
    default host; v3 and final report SW_PPI, {0x8, 0x0}."""
    vm, _, dev = _vm_with_device(kvm, init=False)
    _get_userspace_ppis(dev)
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    _get_userspace_ppis(dev)


@_builtin()
def selftest_round_trip(kvm: Any) -> None:
    """The kernel selftest's SW_PPI round trip: the guest enables SW_PPI, userspace raises it,
    the guest acknowledges, deactivates and drops priority. On v2 SW_PPI is never exposed
    (inverted finalize test), so the enable reads back 0 and the guest never takes the edge.
    On v3 the taken edge comes back at the last run: its fold ORs into a latch that nothing
    clears (the fix, "Transfer edge pending state to ICH_PPI_PENDRx_EL2", came later)."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    _get_userspace_ppis(dev)
    with vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 0)
        cpu.write_ppi_enabler(0, 1 << SW)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        cpu.read_ppi_enabler(0)
    vm.irq_line(_ppi(SW), 1)
    with vcpu.run() as cpu:
        cpu.cdia()
        cpu.cddi(SW_INTID)
        cpu.cdeoi()
    vm.irq_line(_ppi(SW), 0)
    with vcpu.run() as cpu:
        cpu.cdia()


@_builtin()
def irq_line_gate(kvm: Any) -> None:
    """KVM_IRQ_LINE's PPI checks (spec 6.1, 10.12): v2 has no mask gate (any id below 128,
    EBUSY before INIT); v3 gates on USERSPACE_PPIS (only 3; EINVAL before INIT, the mask being
    empty); final also cuts the range to 64, and answers EBUSY before INIT (mainline 7.2 calls
    vgic_lazy_init before any check)."""
    vm, (vcpu,), dev = _vm_with_device(kvm, init=False)
    vm.irq_line(_ppi(SW), 1)
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    for num in (0, SW, VT, 63, 64, 127, 128):
        vm.irq_line(_ppi(num), 1)
    vcpu.pending_ppis()


@_builtin()
def exposure(kvm: Any) -> None:
    """The exposed set computed at the first KVM_RUN (spec 7.1): v2's inverted test exposes
    every implemented PPI except the unowned SW_PPI; v3/final expose the PPIs vCPU 0 owns plus
    SW_PPI. The guest writes all-ones to both ENABLER words and reads back what stuck."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.write_ppi_enabler(1, ALL)
        cpu.read_ppi_enabler(0)
        cpu.read_ppi_enabler(1)
    vm.exposed_ppis()
    vcpu.enabled_ppis()


@_builtin()
def exposure_order(kvm: Any) -> None:
    """Run vCPU 1 before vCPU 0 (spec 7.1, Q5): final finalizes once, from vCPU 0 before its
    timers have owners (only SW_PPI); v3 recomputes at each vCPU's first run; v2 is per vCPU."""
    vm, (vcpu0, vcpu1), dev = _vm_with_device(kvm, nr_vcpus=2)
    with vcpu1.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.read_ppi_enabler(0)
    vm.exposed_ppis()
    with vcpu0.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.read_ppi_enabler(0)
    vm.exposed_ppis()


@_builtin()
def wake_compare(kvm: Any) -> None:
    """The WFI block check (spec 7.6, 11): SW_PPI pending at priority VPMR + 1 (on v2, which
    never exposes SW_PPI, the level PPI 26 its userspace may drive; EINVAL elsewhere) wakes
    v2 and v3 (`<=`) but not final (`<`); at VPMR + 2 nothing wakes (v2 has no "nothing
    active" fast path); a vtimer line the guest never enabled still wakes v2 and v3, whose
    kvm_cpu_has_pending_timer wakes on a timer that should fire; with the CPU interface
    disabled (CR0.EN = 0) only final, which checks EN, stays asleep. The guest can take none
    of them (CDIA answers nothing)."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    vm.irq_line(_ppi(SW), 1)
    vm.irq_line(_ppi(uapi.GICV5_ARCH_PPI_CNTHP), 1)
    both = 1 << SW | 1 << uapi.GICV5_ARCH_PPI_CNTHP
    with vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 5)
        cpu.write_ppi_priority(uapi.GICV5_ARCH_PPI_CNTHP, 5)
        cpu.write_ppi_enabler(0, both)
        cpu.write_pcr(4)
        cpu.write_cr0(True)
        cpu.wfi()
        cpu.cdia()
        cpu.write_pcr(3)
        cpu.wfi()
        vcpu.timer_line("vtimer", True)
        cpu.wfi()
        cpu.write_pcr(31)
        cpu.write_cr0(False)
        cpu.wfi()
        cpu.cdia()
    vcpu.has_pending_irq()


@_builtin()
def edge_latch(kvm: Any) -> None:
    """A second SW_PPI edge raised while the guest runs, after it acknowledged the first
    (spec 7.4/7.5, 11): final moves the edge to hardware on entry and ORs it back on exit, so
    the new edge is kept; v3 ORs too, but its latch was never cleared at entry, so the edge
    is there whether or not the second one came (it re-delivers every taken edge). v2 never
    exposes SW_PPI: the guest never takes it, and the latch just sits."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    vm.irq_line(_ppi(SW), 1)
    with vcpu.run() as cpu:
        cpu.write_ppi_priority(SW, 0)
        cpu.write_ppi_enabler(0, 1 << SW)
        cpu.write_pcr(31)
        cpu.write_cr0(True)
        cpu.cdia()
        cpu.cddi(SW_INTID)
        cpu.cdeoi()
        vm.irq_line(_ppi(SW), 0)
        vm.irq_line(_ppi(SW), 1)
    vcpu.pending_ppis()
    with vcpu.run() as cpu:
        cpu.cdia()


@_builtin(host=Host(impl_ppis=(ALL, ALL)))
def ppi_count(kvm: Any) -> None:
    """128 PPIs (v2, v3) against 64 (final), on a host implementing all 128: a timer attribute
    naming PPI 64, KVM_IRQ_LINE of PPI 64, and the upper register bank (ENABLER1, PRIORITYR of
    PPI 64, SPENDR1). Final accepts and ignores ENABLER1 and has no upper bank; v3 has one but
    exposes none of it; v2 exposes everything implemented, and the level PPI 64 it accepted
    reaches the guest's PENDR1. The SPENDR1 write changes nothing: PPI 65 is Level (its
    pending bit is read-only), and v2's trap handler writes an image its flush rebuilds."""
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    vcpu.set_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, uapi.KVM_ARM_VCPU_TIMER_IRQ_HVTIMER,
                  (uapi.ppi_intid(64)).to_bytes(4, sys.byteorder))
    dev.set_attr(GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    vm.irq_line(_ppi(64), 1)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(1, ALL)
        cpu.read_ppi_enabler(1)
        cpu.write_ppi_priority(64, 9)
        cpu.read_ppi_priority(64)
        cpu.write_ppi_spendr(1, 1 << 1)
        cpu.read_ppi_spendr(1)
    _get_userspace_ppis(dev)


@_builtin()
def trapped_regs(kvm: Any) -> None:
    """Guest register writes (spec 7.3, 11): v2 traps pending, active and priority writes and
    masks them by the exposed set (SW_PPI is not exposed there, PPI 26 is); its pending
    handler writes an entry image that the next flush rebuilds, so SPENDR does nothing. v3 and
    final send them to the hardware, which keeps the bits of every implemented PPI, except a
    Level PPI's pending bit (PPI 26), which is read-only."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    both = 1 << SW | 1 << uapi.GICV5_ARCH_PPI_CNTHP
    with vcpu.run() as cpu:
        cpu.write_ppi_spendr(0, both)
        cpu.read_ppi_spendr(0)
        cpu.write_ppi_cpendr(0, ALL)
        cpu.read_ppi_spendr(0)
        cpu.write_ppi_sactiver(0, both)
        cpu.read_ppi_sactiver(0)
        cpu.write_ppi_cactiver(0, ALL)
        cpu.read_ppi_sactiver(0)
        cpu.write_ppi_priority(SW, 7)
        cpu.read_ppi_priority(SW)
        cpu.write_ppi_priority(uapi.GICV5_ARCH_PPI_CNTHP, 7)
        cpu.read_ppi_priority(uapi.GICV5_ARCH_PPI_CNTHP)


@_builtin(host=Host(impl_ppis=(0x5C80000B, 0)))
def doorbell_probe(kvm: Any) -> None:
    """A host whose probe reports PPIs 0 and 1 (the doorbells; spec 3, 5.2, Q7): v2 then
    tells userspace that PPIs 0 and 1 are drivable ({0x3, 0x0}), accepts them on
    KVM_IRQ_LINE and exposes them to the guest; v3/final report and gate on SW_PPI only."""
    vm, (vcpu,), dev = _vm_with_device(kvm)
    _get_userspace_ppis(dev)
    vm.irq_line(_ppi(uapi.GICV5_ARCH_PPI_S_DB_PPI), 1)
    vm.irq_line(_ppi(SW), 1)
    with vcpu.run() as cpu:
        cpu.write_ppi_enabler(0, ALL)
        cpu.read_ppi_enabler(0)
    vm.exposed_ppis()


def load_scenario_file(path: str) -> Scenario:
    """Load ``scenario(kvm)`` (and an optional ``HOST``) from a Python file; DiffError if the
    file cannot be loaded or does not define them properly."""
    if not os.path.isfile(path):
        raise DiffError(f"scenario file {path!r} does not exist")
    modname = "gic5_diff_scenario_" + "".join(c if c.isalnum() else "_" for c in path)
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise DiffError(f"cannot load scenario file {path!r} (not a Python source file?)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SyntaxError, ImportError, anything its top level raises
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise DiffError(f"scenario file {path!r} failed to load: {detail}") from exc
    func = getattr(module, "scenario", None)
    if func is None:
        raise DiffError(f"scenario file {path!r} defines no 'scenario' function "
                        "(it must define scenario(kvm))")
    if not callable(func):
        raise DiffError(f"'scenario' in {path!r} is not callable")
    host = getattr(module, "HOST", None)
    if host is not None and not isinstance(host, Host):
        raise DiffError(f"HOST in {path!r} must be a gic5.Host, not {type(host).__name__}")
    doc = " ".join(((func.__doc__ or module.__doc__ or "").split("\n\n")[0]).split())
    return Scenario(path, func, host, doc)


def _resolve(names: Sequence[str]) -> list[Scenario]:
    out: list[Scenario] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        if name in BUILTINS:
            out.append(BUILTINS[name])
        elif name.endswith(".py") or os.sep in name or os.path.isfile(name):
            out.append(load_scenario_file(name))
        else:
            raise DiffError(f"unknown scenario {name!r}; built-in scenarios: "
                            f"{', '.join(BUILTINS)} (or give the path of a .py file)")
    return out


def run_scenario(scenario: Scenario, kvm: Any, backend: str = "model") -> list[dict[str, Any]]:
    """Run ``scenario`` once against ``kvm`` (a gic5.Kvm) and return its STEPs.

    Exceptions other than OSError from a call (recorded) and ScenarioStopped (ends the list)
    propagate, with ``.gic5_diff_call`` set to the call in progress when there was one.
    """
    rec = Recorder(backend)
    try:
        scenario.func(rec.wrap(kvm))
    except ScenarioStopped:
        pass
    except Exception as exc:
        exc.gic5_diff_call = rec.current_call  # type: ignore[attr-defined]
        raise
    return rec.steps


def _open_kvm_backend() -> Any:
    """gic5.Kvm(backend="kvm"); DiffError saying why when it cannot be opened."""
    try:
        return Kvm(backend="kvm")
    except TypeError as exc:
        raise DiffError("--against kvm: this gic5 has no real-KVM backend "
                        f"(gic5.Kvm(backend='kvm') raised TypeError: {exc})") from exc
    except (OSError, NotImplementedError, ValueError, RuntimeError) as exc:
        raise DiffError(f"--against kvm: the real-KVM backend is unavailable "
                        f"({type(exc).__name__}: {exc})") from exc


def run_all(scenarios: Sequence[Scenario], profiles: Sequence[str],
            kvm_backend: Any = None) -> dict[str, Any]:
    """The JSON document: every scenario under every profile (and the kvm column if given)."""
    doc: dict[str, Any] = {"profiles": list(profiles), "scenarios": {}}
    for sc in scenarios:
        columns: dict[str, list[Any]] = {}
        for profile in profiles:
            columns[profile] = _run_guarded(sc, Kvm(host=sc.host, profile=profile), "model",
                                            profile)
        if kvm_backend is not None:
            columns[KVM_COLUMN] = _run_guarded(sc, kvm_backend, KVM_COLUMN, KVM_COLUMN)
        doc["scenarios"][sc.name] = columns
    return doc


def _run_guarded(sc: Scenario, kvm: Any, backend: str, column: str) -> list[dict[str, Any]]:
    try:
        return run_scenario(sc, kvm, backend)
    except Exception as exc:
        where = getattr(exc, "gic5_diff_call", None)
        at = f" in {where}" if where else ""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise DiffError(f"scenario {sc.name!r} under {column!r} raised "
                        f"{type(exc).__name__}{at}: {exc}\n{tb.rstrip()}") from exc


# --- text output ---------------------------------------------------------------------------------

def _fmt_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return hex(v)
    if isinstance(v, list):
        return "{" + ", ".join(_fmt_value(x) for x in v) + "}"
    return str(v)


def _fmt_step(step: dict[str, Any] | None) -> str:
    if step is None:
        return "-"
    result, value = step["result"], step["value"]
    if result == 0:
        if value is None:
            # CDIA's "nothing to acknowledge" is an answer, not just success.
            return "None" if step["call"].endswith(".cdia()") else "ok"
        return _fmt_value(value)
    name = errno.errorcode.get(-result, str(result))
    if result == -errno.ENOSYS and isinstance(value, str):
        return f"{name} (unsupported)"
    return name if value is None else f"{name} {_fmt_value(value)}"


def _differs(cells: list[dict[str, Any] | None]) -> bool:
    return any(c != cells[0] for c in cells[1:])


def _steps_text(numbers: list[int]) -> str:
    """[2, 3, 4, 7] -> "steps 2-4, 7"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return ("step " if len(numbers) == 1 else "steps ") + text


def kvm_reference(profiles: Sequence[str]) -> str:
    """The profile the kvm column is compared with: final if shown, else the last one."""
    return "final" if "final" in profiles else profiles[-1]


def render_text(doc: dict[str, Any], scenarios: Sequence[Scenario], out: Any) -> None:
    """The side-by-side tables. Marker column: ``*`` the profiles disagree at this step;
    ``k`` the kvm column differs from the reference profile (``kvm_reference``)."""
    profiles = doc["profiles"]
    ref = kvm_reference(profiles)
    total = pdiff_total = kdiff_total = 0
    any_kvm = False
    for sc in scenarios:
        columns = doc["scenarios"][sc.name]
        names = list(columns)
        has_kvm = KVM_COLUMN in columns
        any_kvm |= has_kvm
        length = max((len(s) for s in columns.values()), default=0)
        rows = []
        pdiff: list[int] = []
        kdiff: list[int] = []
        for i in range(length):
            cell = {c: (columns[c][i] if i < len(columns[c]) else None) for c in names}
            calls = {c["call"] for c in cell.values() if c is not None}
            same_call = len(calls) == 1
            shown = [_fmt_step(cell[c]) if same_call or cell[c] is None
                     else f"{cell[c]['call']}: {_fmt_step(cell[c])}"  # type: ignore[index]
                     for c in names]
            mark = ""
            if _differs([cell[p] for p in profiles]):
                mark += "*"
                pdiff.append(i + 1)
            if has_kvm and cell[KVM_COLUMN] != cell[ref]:
                mark += "k"
                kdiff.append(i + 1)
            rows.append((mark, str(i + 1),
                         next(iter(calls)) if same_call else "(calls differ)", *shown))
        header = ("", "#", "call", *names)
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
        print(f"== {sc.name} ==", file=out)
        if sc.doc:
            print(textwrap.fill(sc.doc, width=100, initial_indent="   ",
                                subsequent_indent="   "), file=out)
        if sc.host is not None:
            note = " (the kvm column uses the machine's own)" if has_kvm else ""
            print(f"   model host: {sc.host!r}{note}", file=out)
        for r in [header, *rows]:
            print("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]),
                             *(r[k].ljust(widths[k]) for k in range(2, len(r)))]).rstrip(),
                  file=out)
        line = f"{sc.name}: {len(pdiff)} of {length} steps differ between the profiles"
        if pdiff:
            line += f" ({_steps_text(pdiff)})"
        if has_kvm:
            line += f"; kvm differs from {ref} at {len(kdiff)}"
            if kdiff:
                line += f" ({_steps_text(kdiff)})"
        print(line, file=out)
        print(file=out)
        total += length
        pdiff_total += len(pdiff)
        kdiff_total += len(kdiff)
    cols = ", ".join(profiles + ([KVM_COLUMN] if any_kvm else []))
    line = (f"gic5-diff: {len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''} under "
            f"{cols}: {pdiff_total} of {total} steps differ between the profiles")
    if any_kvm:
        line += f"; kvm differs from {ref} at {kdiff_total}"
    print(line, file=out)


def dump_json(doc: dict[str, Any]) -> str:
    """The document as one JSON object, one STEP per line (so a diff tool lines steps up)."""
    d = json.dumps
    lines = ["{", f' "profiles": {d(doc["profiles"])},', ' "scenarios": {']
    names = list(doc["scenarios"])
    for i, name in enumerate(names):
        columns = doc["scenarios"][name]
        lines.append(f"  {d(name)}: {{")
        cols = list(columns)
        for j, col in enumerate(cols):
            steps = columns[col]
            lines.append(f"   {d(col)}: [")
            lines += [f"    {d(step)}{',' if k < len(steps) - 1 else ''}"
                      for k, step in enumerate(steps)]
            lines.append("   ]" + ("," if j < len(cols) - 1 else ""))
        lines.append("  }" + ("," if i < len(names) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


# --- command line --------------------------------------------------------------------------------

def _parse_profiles(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",")]
    if not all(names):
        raise DiffError(f"--profiles {text!r}: empty profile name")
    for p in names:
        if p not in PROFILES:
            raise DiffError(f"--profiles: unknown profile {p!r}; known: {', '.join(PROFILES)}")
    if len(set(names)) != len(names):
        raise DiffError(f"--profiles {text!r}: a profile is named twice")
    return names


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gic5-diff",
        description="Run scenarios under the v2 / v3 / final profiles (and optionally the "
                    "real KVM) and show, side by side, where the answers differ.",
        epilog="built-in scenarios: " + ", ".join(BUILTINS))
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="a built-in scenario name or the path of a .py file defining "
                         "scenario(kvm); default: every built-in")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--profiles", default=",".join(PROFILES),
                    help="comma-separated profiles, in column order (default: %(default)s)")
    ap.add_argument("--against", choices=[KVM_COLUMN], default=None,
                    help="also run each scenario on the real /dev/kvm (column 'kvm')")
    ap.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """The gic5-diff command; returns the exit status (0 ran, 2 gic5-diff's own error)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.list:
        for sc in BUILTINS.values():
            print(textwrap.fill(sc.doc, width=100, initial_indent=f"{sc.name:21s}",
                                subsequent_indent=" " * 21))
        return 0
    try:
        profiles = _parse_profiles(args.profiles)
        scenarios = _resolve(args.scenarios or list(BUILTINS))
        backend = _open_kvm_backend() if args.against == KVM_COLUMN else None
        try:
            doc = run_all(scenarios, profiles, backend)
        finally:
            if backend is not None and hasattr(backend, "close"):
                backend.close()
    except DiffError as exc:
        print(f"gic5-diff: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(dump_json(doc))
    else:
        render_text(doc, scenarios, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
