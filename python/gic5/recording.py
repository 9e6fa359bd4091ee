"""The recorded ``kvm`` that gic5-diff hands a scenario: every call becomes one step.

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
- Under the kvm column a call the backend cannot perform (NotImplementedError) is recorded as
  ``result -ENOSYS`` with the message as its value, and that column's scenario stops.
- A call is shown in the kernel's words: irq words decoded by ``uapi.irq_fields``, attribute
  groups and attrs by their uapi names, mask words in hex.
"""

from __future__ import annotations

import errno
import sys
from typing import Any, Callable, Sequence

from . import uapi

__all__ = ["KVM_COLUMN", "Recorder", "ScenarioStopped", "format_call", "to_json_value"]

KVM_COLUMN = "kvm"

class ScenarioStopped(Exception):
    """The scenario cannot go on under this column (KVM_RUN failed on entry, or the real-KVM
    backend cannot perform a call). The runner ends the column's step list here."""

# --- formatting of calls -------------------------------------------------------------------------

_IRQ_TYPES = {uapi.KVM_ARM_IRQ_TYPE_CPU: "CPU", uapi.KVM_ARM_IRQ_TYPE_SPI: "SPI",
              uapi.KVM_ARM_IRQ_TYPE_PPI: "PPI"}
_DEV_GROUPS = {getattr(uapi, n): n[len("KVM_DEV_ARM_VGIC_GRP_"):]
               for n in dir(uapi) if n.startswith("KVM_DEV_ARM_VGIC_GRP_")}
_DEV_CTRL_ATTRS = {uapi.KVM_DEV_ARM_VGIC_CTRL_INIT: "CTRL_INIT",
                   uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS: "USERSPACE_PPIS"}
_DEV_ADDR_ATTRS = {uapi.KVM_VGIC_V5_ADDR_TYPE_IRS: "IRS"}
_SYSREG_NAMES = {enc: name for name, enc in uapi.CPU_SYSREGS_74.items()}


def _fmt_sysreg_attr(attr: Any) -> str | None:
    # A CPU_SYSREGS attr as "MPIDR <affinity> <register>", the register by its sysreg name.
    if isinstance(attr, bool) or not isinstance(attr, int) or not 0 <= attr < 1 << 64:
        return None
    reg = attr & uapi.KVM_DEV_ARM_VGIC_SYSREG_INSTR_MASK
    name = _SYSREG_NAMES.get(reg, f"sysreg {reg:#06x}")
    return f"MPIDR {attr >> uapi.KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT:#x} {name}"


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
    # A KVM_IRQ_LINE word as its fields (uapi.irq_fields); anything that is not a __u32
    # integer is shown as the argument it is.
    try:
        kind, vcpu, num = uapi.irq_fields(word)
    except (TypeError, ValueError):
        return _fmt_arg(word)
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
        a = (_DEV_CTRL_ATTRS.get(attr) if group == uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
             else _DEV_ADDR_ATTRS.get(attr) if group == uapi.KVM_DEV_ARM_VGIC_GRP_ADDR
             else _fmt_sysreg_attr(attr) if group == uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS
             else None)
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
