#!/usr/bin/env python3
"""Measure gic5's memory per vCPU: the RSS growth of creating many vCPUs, over the C state.

Rules this script keeps:
- It measures, it does not judge: the numbers go to stdout (and docs/stress.md by hand);
  no test depends on them (RSS depends on the allocator and the machine).
- RSS is read from /proc/self/statm (resident pages now, not the peak), after gc.collect(),
  before and after creating the vCPUs; every object is kept alive until the second reading.
- Each measurement runs in a fresh process (memory freed by an earlier one would hide growth).
- Two ways are measured: the public API (Vm.create_vcpu, which also makes a gic5.Vcpu object
  per vCPU) and the bare core (VmCore._create_vcpu: the C allocation and the VM's tables
  only). vCPUs are spread over VMs of 512 (KVM's per-VM limit), so the per-VM cost
  (vm_t with its 512-entry tables, the Python Vm) is included, amortised.

Usage: python scripts/measure_memory.py [--vcpus N] [--mode api|core|both] [--profile P]
       python scripts/measure_memory.py --vcpus 1000000 --mode api   # the 10**6 question
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time

import gic5
import gic5core

PER_VM = 512


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(n: int, mode: str, profile: str) -> list:
    kvm = gic5.Kvm(profile=profile)
    keep = []
    left = n
    while left:
        k = min(PER_VM, left)
        if mode == "api":
            vm = kvm.create_vm()
            for i in range(k):
                vm.create_vcpu(i)
        else:
            vm = gic5core.VmCore(profile)
            for i in range(k):
                vm._create_vcpu(i)
        keep.append(vm)
        left -= k
    return keep


def measure(n: int, mode: str, profile: str) -> dict:
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    keep = build(n, mode, profile)
    secs = time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    result = {"mode": mode, "vcpus": n, "vms": len(keep), "rss_delta_bytes": after - before,
              "bytes_per_vcpu": (after - before) / n, "seconds": secs,
              "rss_total_mib": after / 2**20,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    del keep
    gc.collect()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vcpus", type=int, default=100_000)
    ap.add_argument("--mode", choices=["api", "core", "both"], default="both")
    ap.add_argument("--profile", choices=gic5.PROFILES, default="final")
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.quiet:
        print(f"profile {args.profile}: vcpu_state_size() = "
              f"{gic5core.vcpu_state_size(args.profile)} bytes of C state per vCPU")
    if args.mode == "both":
        # Each in a fresh process: memory the first freed would hide the second's growth.
        for mode in ("core", "api"):
            subprocess.run([sys.executable, __file__, "--vcpus", str(args.vcpus), "--mode", mode,
                            "--profile", args.profile, "--quiet"], check=True)
        return
    for mode in [args.mode]:
        r = measure(args.vcpus, mode, args.profile)
        print(f"{mode:4}: {r['vcpus']} vCPUs in {r['vms']} VMs: RSS +{r['rss_delta_bytes'] / 2**20:.1f}"
              f" MiB = {r['bytes_per_vcpu']:.0f} bytes/vCPU (built in {r['seconds']:.2f} s; "
              f"RSS now {r['rss_total_mib']:.0f} MiB, peak {r['peak_rss_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
