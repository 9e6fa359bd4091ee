"""A storm sweep: throughput over vCPU counts and target patterns, as JSON and a plot.

What it shows: driving a grid of closed-loop storms from Python with ``gic5.storm_sweep``
(the code behind ``gic5-storm sweep``) instead of the command line: one profile, the vCPU
counts x patterns you name, every point a StormConfig run by gic5.storm.run_storm and
reduced by summarize. It prints a table of the points, writes one JSON file shaped like
pytest-benchmark's (one benchmark per point, the file ``gic5-storm --json`` writes for a
single point) and, with ``--plot`` and matplotlib installed, draws it as ``gic5-storm plot``
would. Every point's accounting is checked by run_storm itself: on the final profile a lost
or twice-delivered edge is an error; on v2/v3 the lost and redelivered counts are the
finding and are printed.

Rules kept: this script only maps its options onto ``gic5-storm sweep``'s (``--profile`` is
``--profiles`` with one name; no ``--plot`` is ``--no-plot``), so the checks, the grid order
(patterns, then vCPU counts) and the output are the library's.

Run: ``python examples/storm_sweep.py [--profile final] [--vcpus 1,8,64]
[--patterns uniform,sorted,burst] [--injections 200000] [--json sweep.json]
[--plot sweep.png]``. Exit status 0 when every point ran (and the plot, if asked for and
possible, was written), 1 when a point broke the accounting, 2 for a bad option or an
output path that cannot be written (checked before anything runs).
"""

from __future__ import annotations

import argparse
import pathlib

import gic5
from gic5 import storm_sweep

DEFAULTS = storm_sweep.DEFAULTS


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and hand it to gic5.storm_sweep.sweep_main."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    ap.add_argument("--vcpus", default=DEFAULTS["vcpus"], help="vCPUs per VM, comma-separated")
    ap.add_argument("--patterns", default=DEFAULTS["patterns"],
                    help="comma-separated subset of uniform, sorted, burst")
    ap.add_argument("--vms", type=int, default=DEFAULTS["vms"],
                    help=f"VMs per point (default {DEFAULTS['vms']})")
    ap.add_argument("--injections", type=int, default=DEFAULTS["injections"],
                    help=f"injection events per round (default {DEFAULTS['injections']:,})")
    ap.add_argument("--repeat", type=int, default=DEFAULTS["repeat"],
                    help=f"rounds per point (default {DEFAULTS['repeat']})")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--json", default=DEFAULTS["json"], help="output JSON path")
    ap.add_argument("--plot", default=None, metavar="PNG",
                    help="also draw the JSON as `gic5-storm plot` does (needs matplotlib)")
    args = ap.parse_args(argv)
    forwarded = ["--profiles", args.profile, "--vcpus", args.vcpus, "--patterns", args.patterns,
                 "--vms", str(args.vms), "--injections", str(args.injections),
                 "--repeat", str(args.repeat), "--seed", str(args.seed), "--json", args.json]
    forwarded += ["--plot", args.plot] if args.plot else ["--no-plot"]
    return storm_sweep.sweep_main(forwarded, prog=pathlib.Path(__file__).name)


if __name__ == "__main__":
    raise SystemExit(main())
