"""gic5-storm plot: pictures of storm result files (the JSON ``gic5-storm --json`` writes).

Usage: ``gic5-storm plot RESULT.json [MORE.json ...] -o OUT.png``.

Rules this module keeps:
- matplotlib is optional (the ``plot`` extra): it is imported inside the functions that draw,
  never at module level, so ``import gic5.storm_plot`` works without it. Figures are made
  with ``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot: no global
  backend switch, no figure registry that grows with each call, nothing shown on a screen.
- What is drawn follows from the input alone: exactly one storm benchmark gives the
  single-storm figure (latency histogram, deliveries per vCPU, throughput per round); more
  than one gives throughput (deliveries/s) against the number of vCPUs in the storm.
- A result file written before a key existed still plots: a panel whose data is missing or
  malformed is replaced by a note saying so, never by an exception. A benchmark that lacks
  what every storm result has (params.vms, params.vcpus, extra_info.deliveries_per_s) is not
  a storm benchmark and is left out.
- Rates are plotted from zero (a truncated axis would exaggerate differences), and no line is
  drawn through a single point (a one-point series is a marker).
- The command line checks everything it can before drawing: matplotlib present, the output
  writable (gic5._outpaths) and of a format matplotlib writes, each input readable JSON. Each
  failure is one line on stderr: exit status 2 for those, 1 when the inputs hold no storm
  benchmark; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import statistics
import sys
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ._outpaths import check_output_path

if TYPE_CHECKING:  # matplotlib is optional: its types are only needed by the checker
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MatplotlibMissing", "ResultFileError", "load_benchmarks", "storm_benchmarks",
           "bucket_label", "plot_storm", "plot_throughput", "plot_benchmarks", "plot_main"]

PROG = "gic5-storm plot"
MATPLOTLIB_HINT = "needs matplotlib: pip install 'gic5[plot]'"
# Up to this many vCPUs the deliveries are one bar each; beyond, bars would be thinner than a
# pixel, so they become a heat strip.
BARS_UP_TO = 128
# Starved vCPUs marked on a heat strip at most (the count is always in the title).
MAX_STARVED_MARKERS = 2000
# Parameters that, when they differ between benchmarks, split the throughput series.
SERIES_SPLITS = (("mix", "mix {}"), ("service_every", "service every {}"),
                 ("threads", "{} threads"), ("pmu", "pmu {}"))


class MatplotlibMissing(ImportError):
    """matplotlib (the ``plot`` extra) is not installed."""


class ResultFileError(ValueError):
    """An input file cannot be read or is not JSON; the message is one line naming it."""


# --- reading result files ----------------------------------------------------------------------

# Numbers as decoded JSON has them, or as numpy gives them when a benchmark dict is handed
# over in memory (gic5-storm --plot without --json): numpy's integers are numbers.Integral,
# its floats numbers.Real; a bool is neither here, though Python counts it as an int.
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_num(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def _counts(value: Any) -> list[float] | None:
    """``value`` as a list of non-negative finite numbers, or None when it is not one."""
    if not isinstance(value, (list, tuple, np.ndarray)) or getattr(value, "ndim", 1) != 1:
        return None
    if not all(_is_num(v) and v >= 0 for v in value):
        return None
    return [float(v) for v in value]


def _is_storm(bench: Any) -> bool:
    # What every storm result has had since the first --json: anything less cannot be placed
    # on a plot (no vCPU count or no rate), so it is not counted as a storm benchmark.
    if not isinstance(bench, dict):
        return False
    if bench.get("group") != "storm" and not str(bench.get("name", "")).startswith("storm["):
        return False
    params, extra = bench.get("params"), bench.get("extra_info")
    if not isinstance(params, dict) or not isinstance(extra, dict):
        return False
    return (all(_is_int(params.get(k)) and params[k] >= 1 for k in ("vms", "vcpus"))
            and _is_num(extra.get("deliveries_per_s")))


def storm_benchmarks(doc: Any) -> list[dict[str, Any]]:
    """The storm benchmarks of one decoded result file (pytest-benchmark's shape), in order;
    other groups, and anything not shaped like a storm result, are left out."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        return []
    return [b for b in doc["benchmarks"] if _is_storm(b)]


def load_benchmarks(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Every storm benchmark in the JSON files ``paths``, file by file. Raises
    ResultFileError (one line) for a file that cannot be read or is not JSON; a JSON file
    without storm benchmarks adds nothing."""
    found: list[dict[str, Any]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ResultFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ResultFileError(f"{path} is not JSON (not UTF-8 text)") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultFileError(f"{path} is not JSON (line {exc.lineno} column {exc.colno}: "
                                  f"{exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # an int too long, nesting too deep
            raise ResultFileError(f"{path} is not usable JSON ({exc})") from None
        found.extend(storm_benchmarks(doc))
    return found


# --- matplotlib, on demand ---------------------------------------------------------------------

def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401
    except ImportError as exc:
        raise MatplotlibMissing(MATPLOTLIB_HINT) from exc


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (not registered with pyplot, so nothing accumulates)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _note(ax: Axes, title: str, text: str) -> None:
    # A panel whose data is missing: the title stays, so the layout is the same for every file.
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize="small", color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _fmt(value: Any) -> str:
    if _is_int(value):
        return f"{value:,}"
    if _is_num(value):
        return f"{value:g}"
    return "-"


# --- one storm ---------------------------------------------------------------------------------

def bucket_label(k: int) -> str:
    """The range of log2 latency bucket ``k`` ([2^k, 2^(k+1)), bucket 0 also holding 0).

    >>> [bucket_label(k) for k in range(4)]
    ['0-1', '2-3', '4-7', '8-15']
    """
    return f"{0 if k == 0 else 1 << k}-{(1 << (k + 1)) - 1}"


def _latency_panel(ax: Axes, extra: dict[str, Any]) -> None:
    title = "inject-to-acknowledge latency"
    series = []
    for key, unit in (("latency_events", "events"), ("latency_runs", "guest runs")):
        lat = extra.get(key)
        hist = _counts(lat.get("hist_log2")) if isinstance(lat, dict) else None
        if isinstance(lat, dict) and hist is not None:
            series.append((unit, hist, lat))
    if not series:
        _note(ax, title, "no latency histogram in this file\n"
                         "(written before the storm recorded latency)")
        return
    buckets = max(len(hist) for _, hist, _ in series)
    if not any(sum(hist) for _, hist, _ in series):
        _note(ax, title, "nothing was delivered: no latency to show")
        return
    width = 0.8 / len(series)
    for i, (unit, hist, lat) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        stats = " / ".join(f"{k} {_fmt(lat.get(k))}" for k in ("min", "median", "p99", "max"))
        ax.bar([k + offset for k in range(len(hist))], hist, width=width, color=f"C{i}",
               label=f"in {unit}: {stats}")
    ax.set_yscale("log")
    top = max(max(hist) for _, hist, _ in series)
    ax.set_ylim(0.5, top * 2)  # a count of 1 stays visible on the log axis
    ax.set_xticks(range(buckets), [bucket_label(k) for k in range(buckets)],
                  rotation=45 if buckets > 6 else 0, ha="right" if buckets > 6 else "center",
                  fontsize="small")
    ax.set_xlabel("latency (log2 buckets)")
    ax.set_ylabel("deliveries")
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="upper right")


def _strip_shape(n: int, per_cell: int, vms: int, vcpus: int) -> tuple[int, int, str, str]:
    """(rows, columns, x label, y label) of the heat strip for ``n`` cells."""
    unit = "vCPU" if per_cell == 1 else f"bin of {per_cell} vCPUs"
    if vms > 1 and vcpus % per_cell == 0 and n == vms * (vcpus // per_cell) \
            and vcpus // per_cell >= 8:
        return vms, vcpus // per_cell, unit, "VM"  # one row per VM, as the flat index runs
    if n <= 1024:
        return 1, n, unit, ""
    cols = math.ceil(math.sqrt(n * 4))  # about four times wider than tall, as the panel is
    return math.ceil(n / cols), cols, f"{unit} (column)", f"row of {cols}"


def _fairness_panel(fig: Figure, ax: Axes, bench: dict[str, Any]) -> None:
    extra, params = bench["extra_info"], bench["params"]
    counts = _counts(extra.get("deliveries_per_vcpu"))
    if not counts:
        _note(ax, "deliveries per vCPU", "no per-vCPU deliveries in this file\n"
                                         "(written before the storm recorded them)")
        return
    per_cell = extra.get("deliveries_per_vcpu_bin", 1)
    per_cell = per_cell if _is_int(per_cell) and per_cell >= 1 else 1
    fair = extra.get("fairness") if isinstance(extra.get("fairness"), dict) else {}
    starved = sorted({int(v) for v in (_counts(fair.get("starved")) or [])
                      if v < len(counts) * per_cell})
    jain = fair.get("jain")
    title = "deliveries per vCPU" + (f", Jain index {jain:.3f}" if _is_num(jain) else "")
    title += f", {len(starved)} starved" if starved else ""
    if per_cell == 1 and len(counts) <= BARS_UP_TO:
        marked = set(starved)
        ax.bar(range(len(counts)), counts, width=0.8,
               color=["C3" if i in marked else "C0" for i in range(len(counts))])
        if starved:  # a starved vCPU's bar has no height: mark where it would stand
            ax.scatter(starved, [0] * len(starved), marker="x", color="C3", zorder=3,
                       clip_on=False, label="starved (no delivery)")
            ax.legend(fontsize="x-small")
        if len(counts) <= 16:
            ax.set_xticks(range(len(counts)))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("vCPU (VM x vCPUs + vCPU)")
        ax.set_ylabel("deliveries")
    else:
        from matplotlib import colormaps

        rows, cols, xlabel, ylabel = _strip_shape(len(counts), int(per_cell),
                                                  int(params["vms"]), int(params["vcpus"]))
        grid = np.full(rows * cols, np.nan)  # padding cells show as 'bad' (grey)
        grid[:len(counts)] = counts
        # from zero, as the rates are: a narrow spread must not look like starvation
        image = ax.imshow(grid.reshape(rows, cols), aspect="auto", interpolation="nearest", vmin=0,
                          cmap=colormaps["viridis"].with_extremes(bad="0.85"))
        label = "deliveries" if per_cell == 1 else f"deliveries per {per_cell} vCPUs"
        fig.colorbar(image, ax=ax, label=label)
        if starved:
            cells = [v // per_cell for v in starved[:MAX_STARVED_MARKERS]]
            ax.scatter([c % cols for c in cells], [c // cols for c in cells], marker="x",
                       s=12, color="C3", label="starved")
            ax.legend(fontsize="x-small", loc="upper right")
        if rows == 1:
            ax.set_yticks([])
        elif rows <= 16:  # one tick per row (VM): a fractional row means nothing
            ax.set_yticks(range(rows))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    ax.set_title(title)


def _rounds_panel(ax: Axes, extra: dict[str, Any]) -> None:
    title = "deliveries/s per round"
    rates = _counts(extra.get("rounds_deliveries_per_s"))
    if not rates:
        _note(ax, title, "no per-round rates in this file\n"
                         "(written before the storm recorded them)")
        return
    rounds = range(1, len(rates) + 1)
    ax.bar(rounds, [r / 1e6 for r in rates], width=0.7, color="C2")
    median = statistics.median(rates) / 1e6
    # axhline spans the axes (two points), so one round is still a bar and a level, not a dot
    ax.axhline(median, color="0.2", linestyle="--", linewidth=1,
               label=f"median {median:,.1f} M/s")
    if len(rates) <= 20:
        ax.set_xticks(rounds)
    ax.set_ylim(0, max(rates) / 1e6 * 1.25 or 1)  # headroom for the legend above the bars
    ax.set_xlabel("round")
    ax.set_ylabel("deliveries / s (millions)")
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="upper right")


def plot_storm(benchmark: dict[str, Any], out_path: str) -> Figure:
    """Draw one storm benchmark to ``out_path`` (format from its extension) and return the
    Figure: (a) the latency histograms, (b) deliveries per vCPU (bars up to BARS_UP_TO vCPUs,
    else a heat strip with a colorbar), (c) deliveries/s per round with the median. Raises
    ValueError for something that is not a storm benchmark, MatplotlibMissing without
    matplotlib."""
    if not _is_storm(benchmark):
        raise ValueError("not a storm benchmark (needs params.vms, params.vcpus and "
                         "extra_info.deliveries_per_s)")
    fig = _figure(17, 5)
    lat_ax, fair_ax, rounds_ax = fig.subplots(1, 3)
    extra, p = benchmark["extra_info"], benchmark["params"]
    _latency_panel(lat_ax, extra)
    _fairness_panel(fig, fair_ax, benchmark)
    _rounds_panel(rounds_ax, extra)
    fig.suptitle(f"{benchmark.get('name', 'storm')}: {p['vms']} x {p['vcpus']} vCPUs, "
                 f"{p.get('profile', '?')} / {p.get('pattern', '?')} / "
                 f"{p.get('mix', 'mixed')}, service every {p.get('service_every', '?')}; "
                 f"{extra['deliveries_per_s'] / 1e6:,.1f} M deliveries/s (median round)")
    fig.savefig(out_path)
    return fig


# --- several storms ----------------------------------------------------------------------------

def plot_throughput(benchmarks: Sequence[dict[str, Any]], out_path: str) -> Figure:
    """Draw deliveries/s (millions, from zero) against vCPUs in the storm (VMs x vCPUs, log2)
    to ``out_path`` and return the Figure: one subplot per pattern, one line per profile (a
    parameter among mix, service_every, threads, pmu that differs between the benchmarks
    joins the line's label). Several benchmarks at one point of a series are drawn as their
    median. When every series has a single vCPU count, a grouped bar chart (pattern x
    series) instead. Raises ValueError when no storm benchmark is given."""
    storms = [b for b in benchmarks if _is_storm(b)]
    if not storms:
        raise ValueError("no storm benchmarks to plot")
    params = [b["params"] for b in storms]
    defaults = {"mix": "mixed", "service_every": "?", "threads": 1, "pmu": True}
    varying = [(k, fmt) for k, fmt in SERIES_SPLITS
               if len({str(p.get(k, defaults[k])) for p in params}) > 1]
    # (pattern, series label) -> vCPU count -> rates, in the order the inputs list them
    table: dict[tuple[str, str], dict[int, list[float]]] = {}
    patterns: list[str] = []
    labels: list[str] = []
    for b, p in zip(storms, params, strict=True):
        pattern = str(p.get("pattern", "?"))
        label = ", ".join([str(p.get("profile", "?"))]
                          + [fmt.format(p.get(k, defaults[k])) for k, fmt in varying])
        if pattern not in patterns:
            patterns.append(pattern)
        if label not in labels:
            labels.append(label)
        per_x = table.setdefault((pattern, label), {})
        per_x.setdefault(int(p["vms"]) * int(p["vcpus"]), []).append(
            float(b["extra_info"]["deliveries_per_s"]))
    color = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    if all(len(per_x) == 1 for per_x in table.values()):
        fig = _grouped_bars(table, patterns, labels, color)
    else:
        fig = _lines(table, patterns, labels, color)
    fig.savefig(out_path)
    return fig


def _grouped_bars(table: dict[tuple[str, str], dict[int, list[float]]], patterns: list[str],
                  labels: list[str], color: dict[str, str]) -> Figure:
    counts = {x for per_x in table.values() for x in per_x}
    fig = _figure(max(6.0, 1.0 + 0.9 * len(patterns) * len(labels)), 4.5)
    ax = fig.subplots()
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs, ys, vcpus = [], [], []
        for j, pattern in enumerate(patterns):
            per_x = table.get((pattern, label))
            if per_x:
                ((x, rates),) = per_x.items()
                xs.append(j + (i - (len(labels) - 1) / 2) * width)
                ys.append(statistics.median(rates) / 1e6)
                vcpus.append(x)
        bars = ax.bar(xs, ys, width=width, color=color[label], label=label)
        if len(counts) > 1:  # the bars stand at different sizes: say which
            ax.bar_label(bars, labels=[f"{n} vCPUs" for n in vcpus], fontsize="x-small")
    ax.set_xticks(range(len(patterns)), patterns)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("target pattern")
    ax.set_ylabel("deliveries / s (millions)")
    where = f" at {next(iter(counts))} vCPUs" if len(counts) == 1 else ""
    ax.set_title(f"gic5 storm throughput{where} (median round)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _lines(table: dict[tuple[str, str], dict[int, list[float]]], patterns: list[str],
           labels: list[str], color: dict[str, str]) -> Figure:
    from matplotlib.ticker import FuncFormatter, NullLocator

    ncols = min(len(patterns), 3)
    nrows = math.ceil(len(patterns) / ncols)
    fig = _figure(5.5 * ncols, 4.2 * nrows)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(patterns):]:
        fig.delaxes(ax)
    for ax, pattern in zip(axes[:len(patterns)], patterns, strict=True):
        xs_seen: set[int] = set()
        for label in labels:
            per_x = table.get((pattern, label))
            if not per_x:
                continue
            xs = sorted(per_x)
            xs_seen.update(xs)
            ys = [statistics.median(per_x[x]) / 1e6 for x in xs]
            # One point is a marker with no line; more are a line with a marker per point.
            ax.plot(xs, ys, marker="o", linestyle="-" if len(xs) > 1 else "none",
                    color=color[label], label=label)
        ax.set_xscale("log", base=2)
        if len(xs_seen) <= 16:  # label the sizes that were run, not powers the run skipped
            ax.set_xticks(sorted(xs_seen))
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_title(f"pattern {pattern}")
        ax.set_xlabel("vCPUs in the storm (VMs x vCPUs)")
        ax.set_ylabel("deliveries / s (millions)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    # One zero-based range for the shared y axis, set once all series are drawn (a limit set
    # per subplot would freeze the range before the later subplots' data were seen).
    top = max(statistics.median(r) for per_x in table.values() for r in per_x.values()) / 1e6
    axes[0].set_ylim(0, top * 1.08 or 1)
    fig.suptitle("gic5 storm throughput (median round)")
    return fig


def plot_benchmarks(benchmarks: Sequence[dict[str, Any]], out_path: str) -> Figure:
    """What ``gic5-storm plot`` draws: plot_storm for exactly one storm benchmark,
    plot_throughput for more (ValueError for none)."""
    storms = [b for b in benchmarks if _is_storm(b)]
    if len(storms) == 1:
        return plot_storm(storms[0], out_path)
    return plot_throughput(storms, out_path)


# --- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="Draw gic5-storm result files: one storm as latency, fairness "
                               "and per-round panels; several as throughput against vCPUs.")
    ap.add_argument("result", nargs="+", metavar="RESULT.json",
                    help="JSON files written by gic5-storm --json or gic5-storm sweep")
    ap.add_argument("-o", "--output", default="storm.png", metavar="OUT.png",
                    help="image file; the format follows the extension (default storm.png)")
    return ap


def _exit_status(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def plot_main(argv: list[str]) -> int:
    """``gic5-storm plot RESULT.json [MORE.json ...] -o OUT.png``; returns the exit status: 0
    when the image was written, 2 for a usage error, no matplotlib, an output that cannot be
    written or an input that cannot be read as JSON, 1 when there is nothing to plot."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return _exit_status(exc)
    out: str = args.output
    try:
        _require_matplotlib()
    except MatplotlibMissing:
        print(f"{PROG} {MATPLOTLIB_HINT}", file=sys.stderr)
        return 2
    problem = check_output_path(out)
    if problem is not None:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ext = os.path.splitext(out)[1][1:].lower()
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if ext and ext not in formats:
        print(f"{PROG}: cannot write {out}: matplotlib writes no .{ext} images "
              f"(one of {', '.join(sorted(formats))})", file=sys.stderr)
        return 2
    try:
        benchmarks = load_benchmarks(args.result)
    except ResultFileError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if not benchmarks:
        print(f"{PROG}: no storm benchmarks in {', '.join(args.result)}", file=sys.stderr)
        return 1
    try:
        plot_benchmarks(benchmarks, out)
    except OSError as exc:  # checked above, so this is the disk (full, gone) failing
        print(f"{PROG}: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
