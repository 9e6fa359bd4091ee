"""The storm issue's speed targets, as ratios measured in this same run (runs last: pytest
orders files alphabetically and this one sorts after test_bench.py).

Printed always; a failure only with --gic5-check-targets (machines are noisy 2-core boxes, so
a default run reports rather than gates).
"""

from __future__ import annotations

import pytest

TARGETS = [
    # (description, numerator, denominator, comparison, bound)
    ("batch >= 50x a Python loop over irq_line", "batch_python_loop", "batch", ">=", 50.0),
    ("batch >= 300x the pure-Python reference model", "batch_reference", "batch", ">=", 300.0),
    ("batch within 1.5x of the bare C loop", "batch", "batch_bare_c", "<=", 1.5),
    ("per-call irq_line <= 1.5x the compiled-call floor", "percall_irq_line", "percall_floor",
     "<=", 1.5),
    ("two storm threads >= 1.6x one", "storm_threads1", "storm_threads2", ">=", 1.6),
]


def test_targets(timings, request, capsys):
    if not timings:
        pytest.skip("benchmarks were not timed (--benchmark-disable): no ratios to report")
    lines, missed = [], []
    for text, num, den, op, bound in TARGETS:
        if num not in timings or den not in timings:
            lines.append(f"  {text}: not measured in this run")
            continue
        ratio = timings[num] / timings[den]
        ok = ratio >= bound if op == ">=" else ratio <= bound
        lines.append(f"  {text}: {ratio:.2f} {'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append(text)
    d = timings.get("storm_1x64_deliveries")
    if d:
        ok = 1 / d >= 100e6
        lines.append(f"  storm >= 100 M deliveries/s on 64 vCPUs: {1 / d / 1e6:.1f} M "
                     f"{'ok' if ok else 'MISSED'}")
        if not ok:
            missed.append("storm deliveries/s")
    flat = sorted((int(k.split("_")[1]), v) for k, v in timings.items() if k.startswith("flat_"))
    if flat:
        lines.append("  storm ns per injection by vCPU count: "
                     + ", ".join(f"{n}: {v * 1e9:.1f}" for n, v in flat))
    with capsys.disabled():
        print("\ngic5 speed targets (ratios of minimum times in this run):")
        print("\n".join(lines))
    if missed and request.config.getoption("--gic5-check-targets"):
        pytest.fail("missed: " + "; ".join(missed))
