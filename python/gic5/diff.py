"""gic5-diff: run the same VMM-side code under every revision profile and show where they differ.

Usage: ``gic5-diff [SCENARIO ...] [--json] [--profiles v2,v3,final] [--against kvm] [--list]``
(also ``python -m gic5.diff``). A SCENARIO is a built-in name (``--list`` shows them) or the
path of a Python file that defines ``scenario(kvm)``; with none, every built-in runs.

Rules this module keeps:
- This module is the runner and the command line. The recorded ``kvm`` a scenario runs
  against (one STEP per call) is gic5.recording; the built-in scenarios are gic5.scenarios.
  Every public name of the three is importable from here as well.
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
from typing import Any, Sequence

from .kvm import PROFILES, Host, Kvm
from .recording import (KVM_COLUMN, Recorder, ScenarioStopped, format_call,  # noqa: F401
                        to_json_value)
from .scenarios import BUILTINS, Scenario

__all__ = ["Recorder", "Scenario", "ScenarioStopped", "BUILTINS", "run_scenario",
           "load_scenario_file", "main"]


class DiffError(Exception):
    """One of gic5-diff's own errors: reported on stderr, exit status 2."""

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
