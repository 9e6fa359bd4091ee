"""A storm sweep: throughput over vCPU counts and target patterns, as JSON and a plot.

What it shows: driving the closed-loop storm engine from Python with gic5.storm's API
(StormConfig -> build_vms -> run_storm -> summarize -> to_benchmark_json) instead of the
gic5-storm command line, for a grid of vCPUs-per-VM x patterns. It prints one line per
point, writes one JSON file shaped like pytest-benchmark's (one benchmark per point, the
file `gic5-storm --json` writes for a single point) and, when matplotlib is installed, draws
it with `gic5-storm plot`. Every point's accounting is checked by run_storm itself: on the
final profile a lost or twice-delivered edge is an error; on v2/v3 the lost and redelivered
counts are the finding and are printed.

Run: ``python examples/storm_sweep.py [--profile final] [--vcpus 1,8,64]
[--patterns uniform,sorted,burst] [--injections 200000] [--json sweep.json]
[--plot sweep.png]``. Exit status 0 when every point ran (and the plot, if asked for and
possible, was written).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

import gic5
from gic5 import storm
from gic5core import PATTERNS


def sweep(profile: str, vcpus: list[int], patterns: list[str], vms: int, injections: int,
          repeat: int, seed: int) -> list[tuple[storm.StormConfig, dict[str, Any]]]:
    """Run every (vCPU count, pattern) point; returns (config, summary) pairs in order."""
    points: list[tuple[storm.StormConfig, dict[str, Any]]] = []
    print(f"{'vcpus':>5} {'pattern':<8} {'Minj/s':>8} {'Mdel/s':>8} {'ns/inj':>7} "
          f"{'coalesced':>9} {'redeliv':>7} {'lost':>5}")
    for n in vcpus:
        for pattern in patterns:
            cfg = storm.StormConfig(vms=vms, vcpus=n, injections=injections, pattern=pattern,
                                    profile=profile, repeat=repeat, seed=seed)
            s = storm.summarize(storm.run_storm(cfg, progress=None))
            c = s["counters"]
            print(f"{n:>5} {pattern:<8} {s['injections_per_s'] / 1e6:>8.1f} "
                  f"{s['deliveries_per_s'] / 1e6:>8.1f} {s['ns_per_injection']:>7.2f} "
                  f"{c['coalesced']:>9} {c['redelivered']:>7} {c['lost']:>5}")
            points.append((cfg, s))
    return points


def csv_list(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c'] (empty items dropped)."""
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the sweep, write the JSON and the plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    ap.add_argument("--vcpus", default="1,8,64", help="vCPUs per VM, comma-separated")
    ap.add_argument("--patterns", default="uniform,sorted,burst",
                    help="comma-separated subset of uniform, sorted, burst")
    ap.add_argument("--vms", type=int, default=2, help="VMs per point (default 2)")
    ap.add_argument("--injections", type=int, default=200_000,
                    help="injection events per round (default 200,000)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per point (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="storm_sweep.json", help="output JSON path")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="also draw the JSON with `gic5-storm plot` (needs matplotlib)")
    args = ap.parse_args(argv)
    try:
        vcpus = [int(x) for x in csv_list(args.vcpus)]
    except ValueError:
        ap.error("--vcpus must be comma-separated integers")
    patterns = csv_list(args.patterns)
    for p in patterns:
        if p not in PATTERNS:
            ap.error(f"unknown pattern {p!r}; known: {', '.join(sorted(PATTERNS))}")
    try:
        points = sweep(args.profile, vcpus, patterns, args.vms, args.injections, args.repeat,
                       args.seed)
    except ValueError as e:  # StormConfig.validate: out-of-range sizes
        ap.error(str(e))
    except storm.StormAccountingError as e:
        print(f"accounting violated on {args.profile}: {e}", file=sys.stderr)
        return 1
    with open(args.json, "w") as f:
        json.dump(storm.to_benchmark_json(points), f, indent=2)
    print(f"wrote {args.json} ({len(points)} benchmarks)")
    if args.plot:
        if importlib.util.find_spec("matplotlib") is None:
            print("plot skipped: matplotlib is not installed (pip install 'gic5[plot]')")
            return 0
        return storm.main(["plot", args.json, "-o", args.plot])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
