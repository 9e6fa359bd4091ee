"""gic5.storm_plot: the pictures of storm result files, and the ``gic5-storm plot`` command.

Covers: the single-storm figure (three panels: latency histograms with their statistics,
deliveries per vCPU as bars or, past 128 vCPUs, a heat strip with a colorbar, throughput per
round with its median), the throughput figure for several storms (a subplot per pattern, a
line per profile, zero-based y, log2 x; a marker for a one-point series; grouped bars when
every series has one vCPU count), result files written before the latency / fairness keys
existed, and each exit status of plot_main with its message.

Rules kept: the inputs are synthetic result files built here (the plot must not depend on
what the storm engine happens to record today); figures are inspected through matplotlib's
own objects (axes, bars, images, lines), not by looking at pixels; every error case also
checks that nothing was written.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import pytest

from gic5 import storm_plot as sp

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mpl() -> Any:
    return pytest.importorskip("matplotlib")


def latency(hist: list[int]) -> dict[str, Any]:
    if not hist:
        return {"min": None, "median": None, "p99": None, "max": None, "hist_log2": []}
    return {"min": 0, "median": 3, "p99": 40, "max": 200, "hist_log2": hist}


def bench(vms: int = 2, vcpus: int = 8, *, profile: str = "final", pattern: str = "uniform",
          rate: float = 40e6, new_keys: bool = True, rounds: int = 3, starved: tuple[int, ...] = (),
          per_bin: int = 1, **params: Any) -> dict[str, Any]:
    """A storm benchmark as gic5-storm --json writes it; ``new_keys`` adds the latency,
    fairness, per-vCPU and per-round keys (with deliveries per vCPU = 1 + index % 7, and 0
    for the ``starved`` ones)."""
    extra: dict[str, Any] = {"injections_per_s": rate * 1.3, "deliveries_per_s": rate,
                             "ns_per_injection": 1e9 / (rate * 1.3), "deliveries": 1000,
                             "injections": 1300, "redelivered": 0, "lost": 0}
    if new_keys:
        total = vms * vcpus
        per_vcpu = [0 if i in starved else 1 + i % 7 for i in range(total)]
        cells = [sum(per_vcpu[i:i + per_bin]) for i in range(0, total, per_bin)]
        extra.update(
            latency_events=latency([5, 20, 80, 40, 0, 3]),
            latency_runs=latency([90, 10, 2]),
            fairness={"min": 0 if starved else 1, "median": 4.0, "max": 7, "jain": 0.8125,
                      "starved": list(starved)},
            deliveries_per_vcpu=cells, deliveries_per_vcpu_bin=per_bin,
            rounds_deliveries_per_s=[rate * (0.9 + 0.1 * k) for k in range(rounds)])
    p = {"vms": vms, "vcpus": vcpus, "injections": 1000, "pattern": pattern,
         "profile": profile, "threads": 1, "seed": 1, "repeat": rounds, "pmu": True,
         "service_every": 4, "mix": "mixed"}
    p.update(params)
    return {"group": "storm", "name": f"storm[{profile}-{pattern}-{vms}x{vcpus}-t1]",
            "params": p, "stats": {"min": 0.01, "median": 0.01, "max": 0.01, "mean": 0.01,
                                   "rounds": rounds, "data": [0.01] * rounds},
            "extra_info": extra}


def write(tmp_path: pathlib.Path, name: str, benchmarks: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "datetime": "now",
                                "version": "0", "benchmarks": benchmarks}))
    return str(path)


def is_png(path: pathlib.Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def lines_of(fig: Any) -> list[Any]:
    return [line for ax in fig.axes for line in ax.get_lines()]


def bar_heights(ax: Any) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


# --- the single-storm figure -------------------------------------------------------------------

def test_single_storm_has_three_panels(mpl: Any, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "one.png"
    fig = sp.plot_storm(bench(starved=(3,)), str(out))
    assert is_png(out)
    assert len(fig.axes) == 3  # bars for 16 vCPUs: no colorbar
    lat, fair, rounds = fig.axes
    # (a) both histograms, side by side over the same buckets, on a log axis
    assert lat.get_yscale() == "log"
    assert sorted(bar_heights(lat)) == sorted([5, 20, 80, 40, 0, 3, 90, 10, 2])
    assert [t.get_text() for t in lat.get_xticklabels()] == \
        ["0-1", "2-3", "4-7", "8-15", "16-31", "32-63"]
    legend = [t.get_text() for t in lat.get_legend().get_texts()]
    assert legend == ["in events: min 0 / median 3 / p99 40 / max 200",
                      "in guest runs: min 0 / median 3 / p99 40 / max 200"]
    # (b) one bar per vCPU, the starved one marked and counted, the Jain index in the title
    assert bar_heights(fair) == [0 if i == 3 else 1 + i % 7 for i in range(16)]
    assert len(fair.images) == 0
    assert "Jain index 0.812" in fair.get_title() and "1 starved" in fair.get_title()
    (marks,) = fair.collections
    assert marks.get_offsets().tolist() == [[3.0, 0.0]]
    # (c) a bar per round and the median as a level across the panel
    assert bar_heights(rounds) == pytest.approx([36.0, 40.0, 44.0])
    (median,) = rounds.get_lines()
    assert median.get_ydata()[0] == pytest.approx(40.0)
    assert rounds.get_ylim()[0] == 0


def test_single_storm_never_draws_a_one_point_line(mpl: Any, tmp_path: pathlib.Path) -> None:
    # One round: a single bar and the median level, not a line through one point.
    fig = sp.plot_storm(bench(rounds=1), str(tmp_path / "r.png"))
    assert lines_of(fig), "the median level is drawn"
    assert all(len(line.get_xdata()) > 1 for line in lines_of(fig))
    assert bar_heights(fig.axes[2]) == pytest.approx([36.0])


def test_old_result_file_gets_notes_not_errors(mpl: Any, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "old.png"
    fig = sp.plot_storm(bench(new_keys=False), str(out))
    assert is_png(out)
    assert len(fig.axes) == 3
    notes = [" ".join(t.get_text() for t in ax.texts) for ax in fig.axes]
    assert "no latency histogram in this file" in notes[0]
    assert "no per-vCPU deliveries in this file" in notes[1]
    assert "no per-round rates in this file" in notes[2]
    assert all(len(ax.patches) == 0 for ax in fig.axes)


def test_malformed_or_empty_new_keys_are_notes(mpl: Any, tmp_path: pathlib.Path) -> None:
    b = bench()
    b["extra_info"].update(latency_events=latency([]), latency_runs=latency([]),
                           deliveries_per_vcpu="lots", rounds_deliveries_per_s=[1.0, None])
    fig = sp.plot_storm(b, str(tmp_path / "m.png"))
    notes = [" ".join(t.get_text() for t in ax.texts) for ax in fig.axes]
    assert "nothing was delivered" in notes[0]
    assert "no per-vCPU deliveries" in notes[1] and "no per-round rates" in notes[2]


@pytest.mark.parametrize("vms, vcpus, per_bin, shape", [
    (200, 500, 2, (200, 250)),      # binned as the engine bins past 65,536: a row per VM
    (200, 500, 1, (200, 500)),      # not binned: still a row per VM
    (1, 100_000, 1, (158, 633)),    # one wide VM (a synthetic size): folded into rows
    (1, 512, 1, (1, 512)),          # 1 x N strip
])
def test_many_vcpus_make_a_heat_strip(mpl: Any, tmp_path: pathlib.Path, vms: int, vcpus: int,
                                      per_bin: int, shape: tuple[int, int]) -> None:
    out = tmp_path / "many.png"
    starved = (0, 7, vms * vcpus - 1)
    fig = sp.plot_storm(bench(vms, vcpus, per_bin=per_bin, starved=starved), str(out))
    assert is_png(out)
    assert len(fig.axes) == 4  # the three panels and the colorbar
    fair = fig.axes[1]
    (image,) = fair.images
    data = image.get_array()
    assert data.shape == shape
    assert data.count() == vms * vcpus // per_bin  # the padding is masked
    assert len(fair.patches) == 0
    assert "3 starved" in fair.get_title()
    (marks,) = fair.collections
    cols = shape[1]
    cells = [v // per_bin for v in starved]
    assert marks.get_offsets().tolist() == [[c % cols, c // cols] for c in cells]


def test_one_vcpu_is_one_bar(mpl: Any, tmp_path: pathlib.Path) -> None:
    fig = sp.plot_storm(bench(1, 1), str(tmp_path / "1.png"))
    assert len(fig.axes) == 3 and bar_heights(fig.axes[1]) == [1]
    assert len(fig.axes[1].images) == 0


def test_numpy_values_in_memory_plot_like_json(mpl: Any, tmp_path: pathlib.Path) -> None:
    # A benchmark handed over without a JSON round trip may hold numpy numbers and arrays.
    np = pytest.importorskip("numpy")
    b = bench(starved=(2,))
    extra = b["extra_info"]
    extra["deliveries_per_s"] = np.float64(extra["deliveries_per_s"])
    extra["deliveries_per_vcpu"] = np.asarray(extra["deliveries_per_vcpu"], dtype=np.uint64)
    extra["latency_events"]["hist_log2"] = [np.uint64(n) for n in (5, 20, 80)]
    extra["fairness"]["jain"] = np.float64(0.5)
    b["params"]["vcpus"] = np.int64(8)
    fig = sp.plot_storm(b, str(tmp_path / "np.png"))
    assert bar_heights(fig.axes[1]) == [0 if i == 2 else 1 + i % 7 for i in range(16)]
    assert "Jain index 0.500" in fig.axes[1].get_title()
    assert len(fig.axes[0].patches) == 3 + 3


def test_plot_storm_refuses_a_non_storm(mpl: Any, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="not a storm benchmark"):
        sp.plot_storm({"group": "other", "params": {}}, str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


# --- several storms ----------------------------------------------------------------------------

def test_throughput_lines_per_profile_and_subplot_per_pattern(mpl: Any,
                                                              tmp_path: pathlib.Path) -> None:
    benches = [bench(2, n, profile=profile, pattern=pattern, rate=(n + i) * 1e6)
               for i, profile in enumerate(("final", "v3"))
               for pattern in ("uniform", "burst") for n in (1, 8, 64)]
    out = tmp_path / "t.png"
    fig = sp.plot_throughput(benches, str(out))
    assert is_png(out)
    assert [ax.get_title() for ax in fig.axes] == ["pattern uniform", "pattern burst"]
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_ylim()[0] == 0
        assert [line.get_label() for line in ax.get_lines()] == ["final", "v3"]
        for i, line in enumerate(ax.get_lines()):
            assert list(line.get_xdata()) == [2, 16, 128]  # VMs x vCPUs
            assert list(line.get_ydata()) == pytest.approx([1 + i, 8 + i, 64 + i])
    assert fig.axes[0].get_ylim()[1] > 65  # the largest rate fits


def test_one_point_series_is_a_marker(mpl: Any, tmp_path: pathlib.Path) -> None:
    benches = [bench(1, n) for n in (1, 8)] + [bench(1, 8, profile="v3")]
    fig = sp.plot_throughput(benches, str(tmp_path / "t.png"))
    final, v3 = fig.axes[0].get_lines()
    assert len(final.get_xdata()) == 2 and final.get_linestyle() == "-"
    assert len(v3.get_xdata()) == 1
    assert v3.get_marker() == "o" and v3.get_linestyle() == "None"


def test_one_vcpu_count_per_series_is_grouped_bars(mpl: Any, tmp_path: pathlib.Path) -> None:
    benches = [bench(1, 8, profile=profile, pattern=pattern, rate=rate * 1e6)
               for profile, rate in (("final", 10), ("v3", 20))
               for pattern in ("uniform", "sorted", "burst")]
    out = tmp_path / "bars.png"
    fig = sp.plot_throughput(benches, str(out))
    assert is_png(out)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 0
    assert bar_heights(ax) == pytest.approx([10, 10, 10, 20, 20, 20])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["uniform", "sorted", "burst"]
    assert "at 8 vCPUs" in ax.get_title() and ax.get_ylim()[0] == 0


def test_varying_service_rate_and_mix_join_the_labels(mpl: Any, tmp_path: pathlib.Path) -> None:
    benches = [bench(1, n, service_every=k, mix=mix) for n in (1, 4)
               for k in (1, 4) for mix in ("mixed", "edges")]
    fig = sp.plot_throughput(benches, str(tmp_path / "t.png"))
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["final, mix mixed, service every 1", "final, mix edges, service every 1",
                      "final, mix mixed, service every 4", "final, mix edges, service every 4"]


def test_duplicates_plot_their_median(mpl: Any, tmp_path: pathlib.Path) -> None:
    benches = [bench(1, 2, rate=r * 1e6) for r in (1, 9, 5)] + [bench(1, 4, rate=3e6)]
    fig = sp.plot_throughput(benches, str(tmp_path / "t.png"))
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == pytest.approx([5, 3])


def test_plot_benchmarks_picks_the_figure(mpl: Any, tmp_path: pathlib.Path) -> None:
    assert len(sp.plot_benchmarks([bench()], str(tmp_path / "a.png")).axes) == 3
    two = sp.plot_benchmarks([bench(1, 1), bench(1, 2)], str(tmp_path / "b.png"))
    assert [ax.get_title() for ax in two.axes] == ["pattern uniform"]
    with pytest.raises(ValueError, match="no storm benchmarks"):
        sp.plot_benchmarks([], str(tmp_path / "c.png"))


# --- reading files -----------------------------------------------------------------------------

def test_load_benchmarks_keeps_storms_only(tmp_path: pathlib.Path) -> None:
    other = {"group": "inject/1vcpu", "name": "test_inject", "params": None, "extra_info": {}}
    broken = bench()
    del broken["params"]["vcpus"]
    a = write(tmp_path, "a.json", [bench(1, 1), other, broken])
    b = write(tmp_path, "b.json", [bench(1, 2)])
    found = sp.load_benchmarks([a, b])
    assert [x["params"]["vcpus"] for x in found] == [1, 2]
    (tmp_path / "list.json").write_text("[1, 2]")
    assert sp.load_benchmarks([str(tmp_path / "list.json")]) == []


def test_load_benchmarks_errors_are_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(sp.ResultFileError, match=r"bad.json is not JSON \(line 1 column 2"):
        sp.load_benchmarks([str(tmp_path / "bad.json")])
    with pytest.raises(sp.ResultFileError, match="cannot read .*missing.json: No such file"):
        sp.load_benchmarks([str(tmp_path / "missing.json")])
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(sp.ResultFileError, match="not UTF-8"):
        sp.load_benchmarks([str(tmp_path / "bin.json")])


# --- the command line --------------------------------------------------------------------------

def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cli_one_file_one_storm(mpl: Any, tmp_path: pathlib.Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path, "r.json", [bench()])
    out = tmp_path / "r.png"
    assert sp.plot_main([src, "-o", str(out)]) == 0
    assert is_png(out)
    assert capsys.readouterr().out == f"wrote {out}\n"


def test_cli_several_files_plot_throughput(mpl: Any, tmp_path: pathlib.Path) -> None:
    a = write(tmp_path, "a.json", [bench(1, 1), bench(1, 4)])
    b = write(tmp_path, "b.json", [bench(1, 16, new_keys=False)])
    out = tmp_path / "t.svg"
    assert sp.plot_main([a, b, "-o", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")  # the format follows the extension


def test_cli_old_file_plots(mpl: Any, tmp_path: pathlib.Path) -> None:
    src = write(tmp_path, "old.json", [bench(new_keys=False)])
    assert sp.plot_main([src, "-o", str(tmp_path / "o.png")]) == 0
    assert is_png(tmp_path / "o.png")


@pytest.mark.parametrize("output, reason", [
    ("nodir/x.png", "directory {tmp}/nodir does not exist"),
    (".", "is a directory"),
    ("file.txt/x.png", "{tmp}/file.txt is not a directory"),
    ("x.nosuchformat", "matplotlib writes no .nosuchformat images"),
])
def test_cli_unwritable_output_is_refused_first(mpl: Any, tmp_path: pathlib.Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                output: str, reason: str) -> None:
    (tmp_path / "file.txt").write_text("keep")
    src = write(tmp_path, "r.json", [bench()])
    before = sorted(p.name for p in tmp_path.iterdir())

    def no_work(paths: Any) -> Any:
        raise AssertionError("inputs read before the output was checked")

    monkeypatch.setattr(sp, "load_benchmarks", no_work)
    target = output if output == "." else str(tmp_path / output)
    assert sp.plot_main([src, "-o", target]) == 2
    line = one_line_error(capsys)
    assert line.startswith("gic5-storm plot: cannot write ")
    assert reason.format(tmp=tmp_path) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "file.txt").read_text() == "keep"


def test_cli_permission_denied(mpl: Any, tmp_path: pathlib.Path,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    # root may write anywhere, so the denial comes from os.access (as a mode 0o555 directory
    # would give any other user)
    src = write(tmp_path, "r.json", [bench()])
    monkeypatch.setattr("os.access", lambda path, mode: False)
    assert sp.plot_main([src, "-o", str(tmp_path / "x.png")]) == 2
    assert one_line_error(capsys) == f"gic5-storm plot: cannot write {tmp_path}/x.png: " \
                                     "permission denied"
    assert not (tmp_path / "x.png").exists()


def test_cli_unreadable_or_bad_input(mpl: Any, tmp_path: pathlib.Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.json", [bench()])
    (tmp_path / "bad.json").write_text("{\"benchmarks\": [")
    out = tmp_path / "x.png"
    assert sp.plot_main([good, str(tmp_path / "bad.json"), "-o", str(out)]) == 2
    assert "bad.json is not JSON" in one_line_error(capsys)
    assert sp.plot_main([str(tmp_path / "nope.json"), "-o", str(out)]) == 2
    assert "cannot read" in one_line_error(capsys)
    assert sp.plot_main([str(tmp_path), "-o", str(out)]) == 2  # a directory as input
    assert "cannot read" in one_line_error(capsys)
    assert not out.exists()


def test_cli_no_storm_benchmarks(mpl: Any, tmp_path: pathlib.Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    empty = write(tmp_path, "empty.json", [])
    other = write(tmp_path, "other.json", [{"group": "attr/get", "name": "x", "params": {},
                                             "extra_info": {}}])
    out = tmp_path / "x.png"
    assert sp.plot_main([empty, other, "-o", str(out)]) == 1
    assert one_line_error(capsys) == f"gic5-storm plot: no storm benchmarks in {empty}, {other}"
    assert not out.exists()


def test_cli_without_matplotlib(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes every `import matplotlib...` an ImportError, as if the extra
    # were not installed (the submodules already imported are unreachable through it too).
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    src = write(tmp_path, "r.json", [bench()])
    out = tmp_path / "x.png"
    assert sp.plot_main([src, "-o", str(out)]) == 2
    assert one_line_error(capsys) == "gic5-storm plot needs matplotlib: pip install 'gic5[plot]'"
    assert not out.exists()
    with pytest.raises(sp.MatplotlibMissing):
        sp.plot_storm(bench(), str(out))


def test_cli_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert sp.plot_main([]) == 2
    assert "usage: gic5-storm plot" in capsys.readouterr().err
    assert sp.plot_main(["--help"]) == 0
    assert "RESULT.json" in capsys.readouterr().out
