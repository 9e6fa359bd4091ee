"""gic5-storm sweep: a grid of storms, one JSON file for all of them, and its plot.

Usage: ``gic5-storm sweep [--profiles final] [--patterns uniform,sorted,burst]
[--vcpus 1,8,64] [--service-every 4] [--vms 2] [--injections 200000] [--repeat 3]
[--seed 1] [--mix mixed] [--threads 1] [--json storm_sweep.json] [--plot PNG | --no-plot]``.

Rules this module keeps:
- The grid is profiles x patterns x vCPU counts x service rates, run in that order (the last
  one varying fastest); each point is one StormConfig through gic5.storm's own path
  (run_storm, summarize), so a sweep point and a ``gic5-storm`` run of the same
  configuration are the same measurement, with the same accounting checks.
- Nothing runs until everything has been checked: every option's syntax, every grid point's
  StormConfig.validate, and the JSON and plot paths (gic5._outpaths). A refusal is argparse's
  usage line and one error line on stderr, exit status 2, with no storm run and no file
  written. A run that breaks the accounting (StormAccountingError) is exit status 1, and no
  JSON is written: a file of partial results would look like a complete sweep.
- Progress goes to stderr: a tqdm bar over the grid when tqdm is importable, else one line
  per finished point. The results (the table, "wrote ...") go to stdout.
- The JSON is gic5.storm.to_benchmark_json of every point, the file ``gic5-storm --json``
  writes for one; the plot is what ``gic5-storm plot`` draws from that file
  (gic5.storm_plot). matplotlib is optional: without it the plot is skipped with a note,
  and the sweep still succeeds.
- gic5.storm is reached through the module (``storm.run_storm``), never names bound at
  import, so a test's monkeypatch of gic5.storm is what runs, and gic5.storm may import this
  module in return.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Iterable, Sequence

from gic5core import PATTERNS
from gic5core.storm import MIXES

from . import storm
from ._outpaths import check_output_path
from .kvm import PROFILES

__all__ = ["DEFAULTS", "grid", "run_sweep", "format_table", "sweep_main"]

PROG = "gic5-storm sweep"
PLOT_SKIPPED = "plot skipped: matplotlib is not installed (pip install 'gic5[plot]')"
# The sweep's defaults: a few seconds in all, sizes chosen to show the vCPU-count trend.
DEFAULTS: dict[str, Any] = {
    "profiles": "final", "patterns": "uniform,sorted,burst", "vcpus": "1,8,64",
    "service_every": "4", "vms": 2, "injections": 200_000, "repeat": 3, "seed": 1,
    "mix": "mixed", "threads": 1, "json": "storm_sweep.json",
}


def grid(profiles: Sequence[str], patterns: Sequence[str], vcpus: Sequence[int],
         service_every: Sequence[int], *, vms: int = 2, injections: int = 200_000,
         repeat: int = 3, seed: int = 1, mix: str = "mixed",
         threads: int = 1) -> list[storm.StormConfig]:
    """The sweep's StormConfigs in run order (profiles x patterns x vcpus x service_every),
    each validated: ValueError (StormConfig.validate's message) for the first bad point."""
    configs = [storm.StormConfig(vms=vms, vcpus=n, injections=injections, pattern=pattern,
                                 profile=profile, threads=threads, seed=seed, repeat=repeat,
                                 service_every=every, mix=mix)
               for profile in profiles for pattern in patterns for n in vcpus
               for every in service_every]
    for cfg in configs:
        cfg.validate()
    return configs


def _describe(cfg: storm.StormConfig) -> str:
    return f"{cfg.profile} {cfg.pattern} {cfg.vcpus} vCPUs service {cfg.service_every}"


def _progress_bar(total: int) -> Any:
    # tqdm is optional and untyped: importlib keeps mypy out of it, and a test can hide it
    # with sys.modules['tqdm'] = None (an ImportError here, as if it were not installed).
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, desc="sweep", unit="point", file=sys.stderr)


def run_sweep(profiles: Sequence[str], patterns: Sequence[str], vcpus: Sequence[int],
              service_every: Sequence[int], *, vms: int = 2, injections: int = 200_000,
              repeat: int = 3, seed: int = 1, mix: str = "mixed", threads: int = 1,
              progress: bool = True) -> list[tuple[storm.StormConfig, dict[str, Any]]]:
    """Run every point of the grid (see ``grid``; all are validated before the first runs)
    and return (config, summarize result) pairs in run order. ``progress`` shows a tqdm bar
    on stderr, or without tqdm one line per point. StormAccountingError propagates."""
    configs = grid(profiles, patterns, vcpus, service_every, vms=vms, injections=injections,
                   repeat=repeat, seed=seed, mix=mix, threads=threads)
    bar = _progress_bar(len(configs)) if progress else None
    points: list[tuple[storm.StormConfig, dict[str, Any]]] = []
    try:
        for number, cfg in enumerate(configs, 1):
            summary = storm.summarize(storm.run_storm(cfg, progress=None))
            points.append((cfg, summary))
            rate = f"{summary['deliveries_per_s'] / 1e6:,.1f} M deliveries/s"
            if bar is not None:
                bar.set_postfix_str(f"{_describe(cfg)}: {rate}", refresh=False)
                bar.update(1)
            elif progress:
                print(f"sweep {number}/{len(configs)}: {_describe(cfg)}: {rate}",
                      file=sys.stderr, flush=True)
    finally:
        if bar is not None:
            bar.close()
    return points


def format_table(points: Iterable[tuple[storm.StormConfig, dict[str, Any]]]) -> str:
    """One row per sweep point: rates at the median round and the accounting counts that
    differ between profiles (coalesced, redelivered, lost)."""
    rows = [f"{'profile':<7} {'pattern':<8} {'vcpus':>5} {'svc':>4} {'Mdel/s':>8} "
            f"{'Minj/s':>8} {'ns/inj':>7} {'coalesced':>10} {'redeliv':>8} {'lost':>6}"]
    for cfg, s in points:
        c = s["counters"]
        rows.append(f"{cfg.profile:<7} {cfg.pattern:<8} {cfg.vcpus:>5} {cfg.service_every:>4} "
                    f"{s['deliveries_per_s'] / 1e6:>8.1f} {s['injections_per_s'] / 1e6:>8.1f} "
                    f"{s['ns_per_injection']:>7.2f} {c['coalesced']:>10} "
                    f"{c['redelivered']:>8} {c['lost']:>6}")
    return "\n".join(rows)


# --- command line ------------------------------------------------------------------------------

class _Refused(Exception):
    """An option the sweep will not run with; the message is argparse's error line."""


def _words(option: str, noun: str, text: str, known: Sequence[str]) -> list[str]:
    items = _items(option, text)
    for item in items:
        if item not in known:
            raise _Refused(f"unknown {noun} {item!r}; known: {', '.join(known)}")
    return items


def _items(option: str, text: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise _Refused(f"{option} is empty")
    for item in items:
        if items.count(item) > 1:
            raise _Refused(f"{option} names {item} twice")
    return items


def _ints(option: str, text: str) -> list[int]:
    try:
        numbers = [int(x) for x in _items(option, text)]
    except ValueError:
        raise _Refused(f"{option} must be comma-separated integers, not {text!r}") from None
    if len(set(numbers)) != len(numbers):  # '8,08': the same point twice
        raise _Refused(f"{option} names a value twice: {text!r}")
    return numbers


def _parser(prog: str) -> argparse.ArgumentParser:
    d = DEFAULTS
    ap = argparse.ArgumentParser(
        prog=prog, description="Run a grid of gic5 storms (profiles x patterns x vCPUs per "
                               "VM x service rates), write one pytest-benchmark-shaped JSON "
                               "and its throughput plot.")
    ap.add_argument("--profiles", default=d["profiles"],
                    help=f"comma-separated, of {', '.join(PROFILES)} (default {d['profiles']})")
    ap.add_argument("--patterns", default=d["patterns"],
                    help=f"comma-separated, of {', '.join(sorted(PATTERNS))} "
                         f"(default {d['patterns']})")
    ap.add_argument("--vcpus", default=d["vcpus"],
                    help=f"vCPUs per VM, comma-separated (default {d['vcpus']})")
    ap.add_argument("--service-every", default=d["service_every"],
                    help="run the target's guest after every N injections; comma-separated "
                         f"(default {d['service_every']})")
    ap.add_argument("--vms", type=int, default=d["vms"], help=f"VMs (default {d['vms']})")
    ap.add_argument("--injections", type=int, default=d["injections"],
                    help=f"injection events per round (default {d['injections']:,})")
    ap.add_argument("--repeat", type=int, default=d["repeat"],
                    help=f"rounds per point (default {d['repeat']})")
    ap.add_argument("--seed", type=int, default=d["seed"])
    ap.add_argument("--mix", default=d["mix"],
                    help=f"event mix, one of {', '.join(sorted(MIXES))} (default {d['mix']})")
    ap.add_argument("--threads", type=int, default=d["threads"],
                    help=f"threads per point (default {d['threads']})")
    ap.add_argument("--json", default=d["json"], metavar="PATH",
                    help=f"output JSON (default {d['json']})")
    plot = ap.add_mutually_exclusive_group()
    plot.add_argument("--plot", metavar="PNG",
                      help="plot image (default: the JSON path with .png)")
    plot.add_argument("--no-plot", action="store_true", help="write no plot")
    return ap


def _grid_options(args: argparse.Namespace) -> dict[str, Any]:
    """run_sweep's arguments from the parsed options, every grid point validated
    (_Refused otherwise)."""
    if args.mix not in MIXES:
        raise _Refused(f"unknown mix {args.mix!r}; known: {', '.join(sorted(MIXES))}")
    options: dict[str, Any] = {
        "profiles": _words("--profiles", "profile", args.profiles, PROFILES),
        "patterns": _words("--patterns", "pattern", args.patterns, sorted(PATTERNS)),
        "vcpus": _ints("--vcpus", args.vcpus),
        "service_every": _ints("--service-every", args.service_every),
        "vms": args.vms, "injections": args.injections, "repeat": args.repeat,
        "seed": args.seed, "mix": args.mix, "threads": args.threads,
    }
    try:
        grid(**options)
    except ValueError as exc:  # StormConfig.validate: a size out of range, spi on final
        raise _Refused(str(exc)) from None
    return options


def _outputs(args: argparse.Namespace) -> tuple[str, str | None]:
    """(JSON path, plot path or None), both checked writable (_Refused otherwise)."""
    json_path: str = args.json
    plot_path: str | None = None
    if not args.no_plot:
        plot_path = args.plot or os.path.splitext(json_path)[0] + ".png"
    if plot_path is not None and os.path.abspath(plot_path) == os.path.abspath(json_path):
        raise _Refused(f"the plot and the JSON would both be {json_path}")
    for path in (json_path, plot_path):
        problem = check_output_path(path) if path is not None else None
        if problem is not None:
            raise _Refused(problem)
    return json_path, plot_path


def _exit_status(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def sweep_main(argv: list[str], prog: str = PROG) -> int:
    """``gic5-storm sweep [options]``; returns the exit status: 0 when the sweep ran and its
    JSON (and plot, if matplotlib is installed) was written, 1 when a run broke the
    accounting or the JSON could not be written, 2 for anything refused before running.
    ``prog`` names the command in messages (examples/storm_sweep.py passes its own)."""
    ap = _parser(prog)
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return _exit_status(exc)
    try:
        options = _grid_options(args)
        json_path, plot_path = _outputs(args)
    except _Refused as exc:
        ap.print_usage(sys.stderr)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        points = run_sweep(**options)
    except storm.StormAccountingError as exc:
        print(f"{prog}: accounting violated: {exc}", file=sys.stderr)
        return 1
    print(format_table(points))
    doc = storm.to_benchmark_json(points)
    try:
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    except OSError as exc:
        print(f"{prog}: cannot write {json_path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {json_path} ({len(points)} benchmarks)")
    if plot_path is None:
        return 0
    from . import storm_plot

    try:
        storm_plot.plot_benchmarks(doc["benchmarks"], plot_path)
    except storm_plot.MatplotlibMissing:
        print(PLOT_SKIPPED)
        return 0
    except OSError as exc:  # checked before the run: this is the disk failing since
        print(f"{prog}: cannot write {plot_path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {plot_path}")
    return 0
