"""Fixtures for gic5's benchmarks (pytest-benchmark).

Rules this suite keeps:
- Every benchmark asserts its result before it is timed, so `pytest bench --benchmark-disable`
  (CI's smoke run: each function once, no timing) still checks that the benchmarked code does
  what its name says.
- Baselines are timed in the same run as what they are compared with (same machine, same
  load): the pure-Python reference model from tests/, a Python loop over irq_line, the bare C
  loop (speed of light) and the floor of any compiled call (CallFloor.two).
- Per-call costs are timed as loops of many calls and divided (the fixture's own overhead is
  ~50 ns, more than the call being measured).
- The targets of the storm issue are computed as ratios at the end of the run
  (test_targets.py); `--gic5-check-targets` turns a missed target into a failure.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def pytest_addoption(parser):
    parser.addoption("--gic5-check-targets", action="store_true", default=False,
                     help="fail when a measured speed target of the storm issue is missed")


@pytest.fixture(scope="session")
def reference():
    """The pure-Python reference model (tests/reference.py), imported by path: it lives in
    tests/ only and is never part of the installed package."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gic5_reference", TESTS / "reference.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gic5_reference"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def timings():
    """name -> seconds per unit of work (per call / per element), filled by the benchmarks."""
    return {}


@pytest.fixture
def record(benchmark, timings):
    """record(name, units): store min seconds per unit of this test's benchmark for the targets
    report (nothing when timing is disabled)."""
    def _record(name, units):
        stats = getattr(benchmark, "stats", None)
        if stats is None:
            return
        per_unit = stats.stats.min / units
        timings[name] = per_unit
        benchmark.extra_info["ns_per_unit"] = per_unit * 1e9
        benchmark.extra_info["units"] = units
    return _record
