"""gic5.storm_sweep (``gic5-storm sweep``) and gic5._outpaths.check_output_path.

Covers: run_sweep over tiny grids (the points, their order, one benchmark each with the
parameters of its point, the accounting of each); sweep_main end to end (the JSON, the
table and "wrote" lines, the plot or the note that it was skipped, --no-plot, the progress
lines on stderr with and without tqdm); every refusal (unknown names, non-integers, values
StormConfig.validate refuses, unwritable or clashing outputs) exiting 2 before any storm
runs; an accounting failure exiting 1 with no JSON; and check_output_path's answers.

Rules kept: storms are real but tiny (2,000 injections, one round, 1-2 vCPUs); a refusal is
proved to come before the run by replacing gic5.storm.run_storm (and build_vms) with a
function that fails the test; keys the storm engine is still gaining (latency, fairness)
are only checked when present.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import sys
from typing import Any

import pytest

from gic5 import storm, storm_sweep
from gic5._outpaths import check_output_path

TINY = ["--vms", "1", "--injections", "2000", "--repeat", "1"]


@pytest.fixture
def no_storm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any storm run fails the test: for checks that must come before running."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a storm ran although the sweep should have been refused")

    monkeypatch.setattr(storm, "run_storm", refuse)
    monkeypatch.setattr(storm, "build_vms", refuse)


@pytest.fixture
def no_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # an ImportError, as if not installed


def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


# --- run_sweep ---------------------------------------------------------------------------------

def test_run_sweep_runs_the_grid_in_order() -> None:
    points = storm_sweep.run_sweep(["final", "v3"], ["uniform", "burst"], [1, 2], [1, 3],
                                   vms=1, injections=2000, repeat=1, seed=7, progress=False)
    got = [(c.profile, c.pattern, c.vcpus, c.service_every) for c, _ in points]
    assert got == [(profile, pattern, n, every) for profile in ("final", "v3")
                   for pattern in ("uniform", "burst") for n in (1, 2) for every in (1, 3)]
    for cfg, s in points:
        assert (cfg.vms, cfg.injections, cfg.repeat, cfg.seed, cfg.mix, cfg.threads) == \
            (1, 2000, 1, 7, "mixed", 1)
        assert s["rounds"] == 1 and s["vcpus_total"] == cfg.vcpus
        assert s["injections"] >= 2000 and s["deliveries_per_s"] > 0
        c = s["counters"]
        assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"]
        if cfg.profile == "final":
            assert s["problems"] == [] and c["lost"] == c["redelivered"] == 0
    # v3's changed-bits fold brings taken edges back: the finding a sweep shows
    assert any(s["counters"]["redelivered"] for c, s in points if c.profile == "v3")


def test_run_sweep_validates_every_point_before_the_first(no_storm: None) -> None:
    with pytest.raises(ValueError, match="vcpus must be at most 512"):
        storm_sweep.run_sweep(["final"], ["uniform"], [1, 513], [4], progress=False)
    with pytest.raises(ValueError, match="mix 'spi' needs a profile with SPIs"):
        storm_sweep.run_sweep(["7.4", "final"], ["uniform"], [1], [4], mix="spi",
                              progress=False)


def test_run_sweep_progress_lines_without_tqdm(no_tqdm: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    storm_sweep.run_sweep(["final"], ["uniform", "sorted"], [1, 2], [4], vms=1,
                          injections=2000, repeat=1)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 4
    expected = ["final uniform 1 vCPUs service 4", "final uniform 2 vCPUs service 4",
                "final sorted 1 vCPUs service 4", "final sorted 2 vCPUs service 4"]
    for number, (line, what) in enumerate(zip(lines, expected, strict=True), 1):
        assert re.fullmatch(rf"sweep {number}/4: {what}: [\d,]+\.\d M deliveries/s", line), line


def test_run_sweep_progress_bar_with_tqdm(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    storm_sweep.run_sweep(["final"], ["uniform"], [1, 2], [4], vms=1, injections=2000,
                          repeat=1)
    err = capsys.readouterr().err
    assert "2/2" in err and "point" in err
    assert not re.search(r"^sweep \d+/\d+: ", err, re.M)  # the bar, not the plain lines


def test_run_sweep_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    storm_sweep.run_sweep(["final"], ["uniform"], [1], [4], vms=1, injections=2000, repeat=1,
                          progress=False)
    assert capsys.readouterr() == ("", "")


# --- sweep_main --------------------------------------------------------------------------------

def test_sweep_main_writes_one_benchmark_per_point(tmp_path: pathlib.Path, no_tqdm: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    code = storm_sweep.sweep_main(["--profiles", "final,v3", "--patterns", "uniform",
                                   "--vcpus", "1,2", "--service-every", "2", "--seed", "3",
                                   "--json", str(out), *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    benches = data["benchmarks"]
    assert [(b["params"]["profile"], b["params"]["vcpus"]) for b in benches] == \
        [("final", 1), ("final", 2), ("v3", 1), ("v3", 2)]
    for b in benches:
        p = b["params"]
        assert b["group"] == "storm"
        assert b["name"] == f"storm[{p['profile']}-uniform-1x{p['vcpus']}-t1]"
        assert (p["vms"], p["injections"], p["repeat"], p["seed"], p["service_every"],
                p["mix"], p["threads"], p["pattern"]) == \
            (1, 2000, 1, 3, 2, "mixed", 1, "uniform")
        assert b["stats"]["rounds"] == 1 and len(b["stats"]["data"]) == 1
        extra = b["extra_info"]
        assert extra["deliveries_per_s"] > 0 and extra["injections"] >= 2000
        if "latency_events" in extra:  # the keys the engine is gaining
            assert set(extra["latency_events"]) >= {"min", "median", "p99", "max", "hist_log2"}
        if "deliveries_per_vcpu" in extra:
            assert len(extra["deliveries_per_vcpu"]) == p["vcpus"]
        if "rounds_deliveries_per_s" in extra:
            assert len(extra["rounds_deliveries_per_s"]) == 1
    assert f"wrote {out} (4 benchmarks)" in captured.out.splitlines()
    assert len(captured.out.splitlines()[0].split()) == 10  # the table's header
    assert len(re.findall(r"^sweep \d/4: ", captured.err, re.M)) == 4
    png = tmp_path / "s.png"  # the default plot path: the JSON's, with .png
    if importlib.util.find_spec("matplotlib") is None:
        assert storm_sweep.PLOT_SKIPPED in captured.out and not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert captured.out.rstrip().endswith(f"wrote {png}")


def test_sweep_main_plot_path_and_no_plot(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    base = ["--patterns", "burst", "--vcpus", "1", *TINY]
    assert storm_sweep.sweep_main([*base, "--json", str(tmp_path / "a.json"),
                                   "--plot", str(tmp_path / "pic.svg")]) == 0
    assert (tmp_path / "pic.svg").read_text().lstrip().startswith("<?xml")
    assert not (tmp_path / "a.png").exists()
    assert storm_sweep.sweep_main([*base, "--json", str(tmp_path / "b.json"),
                                   "--no-plot"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "pic.svg"]


def test_sweep_main_without_matplotlib_skips_the_plot(tmp_path: pathlib.Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    no_matplotlib(monkeypatch)
    out = tmp_path / "s.json"
    assert storm_sweep.sweep_main(["--patterns", "uniform", "--vcpus", "1", "--json", str(out),
                                   *TINY]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [f"wrote {out} (1 benchmarks)", storm_sweep.PLOT_SKIPPED]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


@pytest.mark.parametrize("args, message", [
    (["--profiles", "final,v9"], "unknown profile 'v9'; known: v2, v3, final, 7.4"),
    (["--patterns", "zigzag"], "unknown pattern 'zigzag'; known: burst, sorted, uniform"),
    (["--mix", "lots"], "unknown mix 'lots'; known: edges, mixed, spi"),
    (["--vcpus", "1,x"], "--vcpus must be comma-separated integers, not '1,x'"),
    (["--vcpus", ","], "--vcpus is empty"),
    (["--vcpus", "1,8,1"], "--vcpus names 1 twice"),
    (["--vcpus", "1,01"], "--vcpus names a value twice: '1,01'"),
    (["--service-every", "4,2.5"], "--service-every must be comma-separated integers"),
    (["--vcpus", "0"], "vcpus must be at least 1"),
    (["--vcpus", "8,513"], "vcpus must be at most 512 per VM"),
    (["--service-every", "0"], "service_every must be at least 1"),
    (["--vms", "0"], "vms must be at least 1"),
    (["--threads", "0"], "threads must be at least 1"),
    (["--repeat", "0"], "repeat must be at least 1"),
    (["--injections", "-1"], "injections and seed must not be negative"),
    (["--profiles", "7.4,final", "--mix", "spi"], "mix 'spi' needs a profile with SPIs"),
    (["--vms", "two"], "argument --vms: invalid int value: 'two'"),
    (["--plot", "a.png", "--no-plot"], "not allowed with argument"),
])
def test_sweep_main_refuses_before_running(no_storm: None, tmp_path: pathlib.Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert storm_sweep.sweep_main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith("usage: gic5-storm sweep")
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("gic5-storm sweep: error: ") and message in last
    assert list(tmp_path.iterdir()) == []  # no JSON, no plot, no probe left behind


@pytest.mark.parametrize("args, message", [
    (["--json", "{tmp}/nodir/s.json"], "cannot write {tmp}/nodir/s.json: directory "
                                       "{tmp}/nodir does not exist"),
    (["--json", "{tmp}"], "cannot write {tmp}: is a directory"),
    (["--json", "{tmp}/s.json", "--plot", "{tmp}/nodir/s.png"],
     "cannot write {tmp}/nodir/s.png: directory {tmp}/nodir does not exist"),
    (["--json", "{tmp}/plot/s.json"], "cannot write {tmp}/plot/s.png: is a directory"),
    (["--json", "{tmp}/s.json", "--plot", "{tmp}/s.json"],
     "the plot and the JSON would both be {tmp}/s.json"),
])
def test_sweep_main_refuses_unwritable_outputs(no_storm: None, tmp_path: pathlib.Path,
                                               capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    (tmp_path / "plot" / "s.png").mkdir(parents=True)  # the default plot path, as a directory
    argv = [a.format(tmp=tmp_path) for a in args]
    assert storm_sweep.sweep_main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"gic5-storm sweep: error: {message.format(tmp=tmp_path)}"
    assert [p.name for p in tmp_path.iterdir()] == ["plot"]
    assert [p.name for p in (tmp_path / "plot").iterdir()] == ["s.png"]


def test_sweep_main_accounting_error_writes_nothing(tmp_path: pathlib.Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    def broken(cfg: storm.StormConfig, *args: Any, **kwargs: Any) -> Any:
        raise storm.StormAccountingError("lost = 3")

    monkeypatch.setattr(storm, "run_storm", broken)
    out = tmp_path / "s.json"
    assert storm_sweep.sweep_main(["--json", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "gic5-storm sweep: accounting violated: lost = 3"
    assert list(tmp_path.iterdir()) == []


def test_sweep_main_help_and_prog(capsys: pytest.CaptureFixture[str]) -> None:
    assert storm_sweep.sweep_main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--profiles", "--patterns", "--vcpus", "--service-every", "--vms",
                   "--injections", "--repeat", "--seed", "--mix", "--threads", "--json",
                   "--plot", "--no-plot"):
        assert option in out
    assert storm_sweep.sweep_main(["--vcpus", "x"], prog="my_sweep.py") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("my_sweep.py: error:")


# --- check_output_path -------------------------------------------------------------------------

def test_check_output_path_new_file_leaves_nothing(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_output_path(str(tmp_path / "new.json")) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.chdir(tmp_path)
    assert check_output_path("relative.png") is None
    assert list(tmp_path.iterdir()) == []


def test_check_output_path_existing_file_is_untouched(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "old.json"
    f.write_text("keep me")
    os.utime(f, (1_000_000, 1_000_000))
    assert check_output_path(str(f)) is None
    assert f.read_text() == "keep me" and f.stat().st_mtime == 1_000_000


def test_check_output_path_reasons(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert check_output_path(str(tmp_path / "no" / "x.json")) == \
        f"cannot write {tmp_path}/no/x.json: directory {tmp_path}/no does not exist"
    assert check_output_path(str(tmp_path)) == f"cannot write {tmp_path}: is a directory"
    assert check_output_path(str(tmp_path / "file" / "x.json")) == \
        f"cannot write {tmp_path}/file/x.json: {tmp_path}/file is not a directory"
    assert check_output_path(str(tmp_path / "link")) == \
        f"cannot write {tmp_path}/link: is a dangling symbolic link"
    assert check_output_path(str(tmp_path / ("n" * 300))).endswith(": file name too long")
    assert check_output_path("") == "cannot write '': the path is empty"
    assert not (tmp_path / "gone").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_check_output_path_permission_denied_for_real(tmp_path: pathlib.Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f.json").write_text("")
    (ro / "f.json").chmod(0o444)
    ro.chmod(0o555)
    try:
        assert check_output_path(str(ro / "f.json")) == f"cannot write {ro}/f.json: " \
                                                         "permission denied"
        assert check_output_path(str(ro / "new.json")) == f"cannot write {ro}/new.json: " \
                                                           "permission denied"
    finally:
        ro.chmod(0o755)


def test_check_output_path_permission_denied(tmp_path: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # What os.access answers a non-root user for a read-only file or directory.
    f = tmp_path / "f.json"
    f.write_text("x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert check_output_path(str(f)) == f"cannot write {f}: permission denied"
    assert check_output_path(str(tmp_path / "n.json")) == \
        f"cannot write {tmp_path}/n.json: permission denied"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_check_output_path_creation_failure_is_the_reason(tmp_path: pathlib.Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # os.access said yes but the creation failed (a read-only mount, a quota): the creation
    # is what decides.
    def read_only(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr("builtins.open", read_only)
    assert check_output_path(str(tmp_path / "x.json")) == \
        f"cannot write {tmp_path}/x.json: read-only file system"


def test_check_output_path_never_removes_a_file_it_did_not_create(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file that appears between the existence check and the probe (another process): the
    # probe's exclusive creation fails, and the file is judged as an existing one, untouched.
    f = tmp_path / "race.json"
    f.write_text("theirs")
    monkeypatch.setattr(os.path, "lexists", lambda path: False)
    assert check_output_path(str(f)) is None
    assert f.read_text() == "theirs"
