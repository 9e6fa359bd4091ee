"""gic5-storm: closed-loop interrupt storms through the model, at C speed.

Rules this module keeps:
- VMs are built and their guests programmed through the public API (so a storm starts from a
  state a user could have reached); the event loop itself is gic5core.storm_run, nogil.
- ``--threads N`` partitions the VMs across N Python threads, each running the core loop with
  the GIL released; the per-VM config lock is still what serialises configuration.
- Every run's accounting is checked (see gic5core/storm.pyx). On ``final`` and ``7.4`` (the
  same PPI rules) a violation is an error (StormAccountingError, exit status 1); on v2/v3 the
  lost / redelivered edges are the finding and are reported.
- A 7.4 VM gets its IRS base before its vCPUs first run, as a 7.4 VMM must (KVM_RUN is ENXIO
  without it). With ``--mix spi`` or ``mixed`` its guests also program SPIs the way the 7.4
  selftest guest does (IRS_CR0.IRSEN, IRS_SPI_SELR / IRS_SPI_CFGR, GIC CDPRI / CDAFF / CDEN):
  SPI n targets vCPU index n % vcpus, n % 4 == 3 is level-triggered; NR_IRQS is
  ``spis_for(vcpus)`` (four SPIs per vCPU, 32..1024).
- Progress goes to stderr, one line per batch of events, and only once a run has taken more
  than PROGRESS_AFTER_S seconds. The JSON written by ``--json`` has pytest-benchmark's shape.

- Latency and fairness come with every run: inject-to-acknowledge latency in events and in
  guest runs, deliveries per vCPU with Jain's index and the starved vCPUs (docs/storm.md).
- An output path (--json, --plot) is checked before the storm runs: exit 2, one line.

Usage: ``gic5-storm [options]``, ``gic5-storm plot RESULT.json -o storm.png``,
``gic5-storm sweep [grid options]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gic5core import PATTERNS, PROFILE_DATA, storm_run, vcpu_state_size
from gic5core.storm import LATENCY_SLOTS, MIXES, latency_summary, new_stats

from . import uapi
from ._outpaths import check_output_path
from .kvm import PROFILES, Kvm, Vm

# Profiles whose storms must account exactly (the fixed PPI rules: final, and 7.4 on top).
EXACT_PROFILES = ("final", "7.4")
# Where build_vms puts a 7.4 VM's IRS (the kernel selftest's GICV5_IRS_CONFIG_BASE_GPA).
IRS_BASE = 0x8000000

__all__ = ["StormConfig", "StormAccountingError", "build_vms", "run_storm", "summarize",
           "to_benchmark_json", "format_report", "fairness", "plot_main", "sweep_main", "main"]

BATCH_EVENTS = 1 << 22         # events per storm_run call: the progress granularity
PROGRESS_AFTER_S = 2.0

# Guest priorities (0 highest): the timers beat SW_PPI, which beats the PMU, so the
# acknowledge order exercises the priority scan.
GUEST_PRIORITIES = {uapi.GICV5_ARCH_PPI_CNTV: 2, uapi.GICV5_ARCH_PPI_CNTP: 4,
                    uapi.GICV5_ARCH_PPI_SW_PPI: 8, uapi.GICV5_ARCH_PPI_PMUIRQ: 12}


class StormAccountingError(RuntimeError):
    """The final (or 7.4) profile broke an accounting identity (an edge lost or delivered
    twice)."""


@dataclass
class StormConfig:
    """One storm's parameters, with the gic5-storm defaults (a run of a few seconds).

    ``vms`` x ``vcpus`` vCPUs (vcpus <= 512 per VM), ``injections`` events per round split
    over ``threads``, target ``pattern`` (a key of gic5core.PATTERNS), ``repeat`` rounds,
    ``pmu`` vCPUs with the PMU (PPI 23 joins the level lines), the target vCPU's guest run
    after every ``service_every`` injections.

    >>> StormConfig(vcpus=600).validate()
    Traceback (most recent call last):
    ...
    ValueError: vcpus must be at most 512 per VM
    """

    vms: int = 4
    vcpus: int = 64
    injections: int = 4_000_000
    pattern: str = "uniform"
    profile: str = "final"
    threads: int = 1
    seed: int = 1
    repeat: int = 3
    pmu: bool = True
    service_every: int = 4
    mix: str = "mixed"

    def validate(self) -> None:
        """Raise ValueError for a parameter out of range (nothing else is checked later)."""
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {sorted(PATTERNS)}")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {sorted(MIXES)}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}")
        if self.mix == "spi" and not PROFILE_DATA[self.profile]["irs_uapi"]:
            raise ValueError("mix 'spi' needs a profile with SPIs (7.4): the PPI-only "
                             "kernels refuse every SPI word with EINVAL")
        for name in ("vms", "vcpus", "threads", "repeat", "service_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.vcpus > uapi.KVM_MAX_VCPU_IDS:
            raise ValueError(f"vcpus must be at most {uapi.KVM_MAX_VCPU_IDS} per VM")
        if self.injections < 0 or self.seed < 0:
            raise ValueError("injections and seed must not be negative")


# The guest's SPI priorities (the IRS keeps 5 bits on the default host): edge SPIs between
# SW_PPI and the PMU, level SPIs just above SW_PPI.
SPI_PRIORITY_EDGE = 10
SPI_PRIORITY_LEVEL = 6


def spis_for(vcpus: int) -> int:
    """NR_IRQS of a storm VM with SPIs: four per vCPU, a multiple of 32 in 32..1024."""
    return min(1024, max(32, -(-4 * vcpus // 32) * 32))


def _program_spis(cpu: Any, index: int, vcpus: int, nr_spis: int, vcpu_id: int) -> None:
    # The 7.4 selftest guest's SPI set-up (guest_spi_line_code / gicv5_configure_spi /
    # gicv5_enable_spi) for this vCPU's SPIs: index, index + vcpus, ...
    if index == 0:
        cpu.irs_write(uapi.GICV5_IRS_CR0, uapi.GICV5_IRS_CR0_IRSEN)
    for n in range(index, nr_spis, vcpus):
        level = n % 4 == 3
        cpu.irs_write(uapi.GICV5_IRS_SPI_SELR, n)
        cpu.irs_write(uapi.GICV5_IRS_SPI_CFGR, uapi.GICV5_IRS_SPI_CFGR_TM if level else 0)
        intid = uapi.spi_intid(n)
        cpu.cdpri(intid, SPI_PRIORITY_LEVEL if level else SPI_PRIORITY_EDGE)
        cpu.cdaff(intid, vcpu_id)
        cpu.cden(intid)


def build_vms(cfg: StormConfig) -> list[Vm]:
    """VMs with ``cfg.vcpus`` vCPUs each, the device initialised, every vCPU run once with its
    guest's CPU interface enabled, mask open, priorities set and every exposed PPI enabled;
    on 7.4 with a mix that has SPIs, the IRS enabled and every SPI programmed."""
    kvm = Kvm(profile=cfg.profile)
    irs = bool(PROFILE_DATA[cfg.profile]["irs_uapi"])
    spis = irs and cfg.mix != "edges"
    nr_spis = spis_for(cfg.vcpus)
    vms = []
    for _ in range(cfg.vms):
        vm = kvm.create_vm()
        vcpus = [vm.create_vcpu(i, pmu=cfg.pmu) for i in range(cfg.vcpus)]
        dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
        assert dev is not None  # only KVM_CREATE_DEVICE_TEST returns None
        if irs:  # 7.4: the first run needs the IRS base
            dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                         IRS_BASE.to_bytes(8, sys.byteorder))
        if spis:
            dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0,
                         nr_spis.to_bytes(4, sys.byteorder))
        dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
        for vcpu in vcpus:
            if cfg.pmu:
                vcpu.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
        for index, vcpu in enumerate(vcpus):
            with vcpu.run() as cpu:
                cpu.write_cr0(True)
                cpu.write_pcr(31)
                for ppi, prio in GUEST_PRIORITIES.items():
                    cpu.write_ppi_priority(ppi, prio)
                cpu.write_ppi_enabler(0, (1 << 64) - 1)
                cpu.write_ppi_enabler(1, (1 << 64) - 1)
                if spis:
                    _program_spis(cpu, index, cfg.vcpus, nr_spis, vcpu.vcpu_id)
        vms.append(vm)
    return vms


def _check_accounting(c: dict[str, int], profile: str) -> list[str]:
    problems = []
    if c["accepted"] != c["delivered"] + c["coalesced"] + c["lost"]:
        problems.append("accepted != delivered + coalesced + lost")
    if c["raised"] != c["level_delivered"] + c["withdrawn"] + c["level_stuck"]:
        problems.append("raised != level_delivered + withdrawn + level_stuck")
    if c["spi_accepted"] != c["spi_delivered"] + c["spi_coalesced"] + c["spi_lost"]:
        problems.append("spi_accepted != spi_delivered + spi_coalesced + spi_lost")
    if c["spi_raised"] != c["spi_level_delivered"] + c["spi_withdrawn"] + c["spi_level_stuck"]:
        problems.append("spi_raised != spi_level_delivered + spi_withdrawn + spi_level_stuck")
    if profile in EXACT_PROFILES:
        for key in ("lost", "redelivered", "level_violations", "level_stuck", "model_mismatch",
                    "spi_lost", "spi_violations", "spi_level_stuck", "spi_mismatch",
                    "spi_rejected"):
            if c[key]:
                problems.append(f"{key} = {c[key]}")
    return problems


def _partition(items: Sequence[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]


def _run_share(group: list[Vm], cfg: StormConfig, k: int, truth: Any, total: int,
               out: list[dict[str, Any]], round_no: int, started: float, progress: Any,
               errors: list[BaseException]) -> None:
    # Thread k's share of one round: ``total`` events over its VMs, in batches of BATCH_EVENTS
    # (the last one drains), appending each batch's result to ``out``. The truth, the stamps,
    # the per-vCPU statistics and the latency histograms live across the batches of the
    # share. An exception is handed to ``errors`` and re-raised by the main thread.
    spi_truth = np.zeros(len(group) * 1024, dtype=np.uint8)
    stats = new_stats(len(group) * cfg.vcpus)
    spi_stamps = np.zeros(len(group) * 1024, dtype=np.uint64)
    latency = np.zeros((2, LATENCY_SLOTS), dtype=np.uint64)
    try:
        base = 0
        batch = 0
        while True:
            n = min(BATCH_EVENTS, total - base)
            last = base + n >= total
            r = storm_run(group, cfg.vcpus, n, cfg.pattern,
                          cfg.seed * 1_000_003 + k * 7919 + batch, cfg.service_every,
                          truth, base, max(total, 1), last, cfg.mix, spi_truth, stats,
                          spi_stamps, latency)
            out.append(r)
            base += n
            batch += 1
            if progress is not None and time.perf_counter() - started > PROGRESS_AFTER_S:
                print(f"gic5-storm: round {round_no + 1}/{cfg.repeat} thread {k}: "
                      f"{base}/{total} events", file=progress, flush=True)
            if last:
                return
    except BaseException as e:  # re-raised in the main thread
        errors.append(e)


def run_storm(cfg: StormConfig, vms: list[Vm] | None = None,
              progress: Any = sys.stderr) -> dict[str, Any]:
    """Build (or take) the VMs and run ``cfg.repeat`` storms; returns per-round results."""
    cfg.validate()
    if vms is None:
        vms = build_vms(cfg)
    groups = _partition(list(vms), cfg.threads)
    rounds = []
    started = time.perf_counter()
    for rep in range(cfg.repeat):
        truths = [np.zeros(len(g) * cfg.vcpus, dtype=np.uint8) for g in groups]
        # Each thread gets an equal share of the events, over its own VMs.
        shares = [cfg.injections // len(groups) + (1 if i < cfg.injections % len(groups) else 0)
                  for i in range(len(groups))]
        results: list[list[dict[str, Any]]] = [[] for _ in groups]
        errors: list[BaseException] = []

        jobs = [(groups[k], cfg, k, truths[k], shares[k], results[k], rep, started, progress,
                 errors) for k in range(len(groups))]
        t0 = time.perf_counter()
        if len(jobs) == 1:
            _run_share(*jobs[0])
        else:
            threads = [threading.Thread(target=_run_share, args=job) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise errors[0]
        counters: dict[str, int] = {}
        for per_thread in results:
            for r in per_thread:
                for key, value in r.items():
                    if isinstance(value, int):  # the arrays are the share's, read below
                        counters[key] = counters.get(key, 0) + value
        problems = _check_accounting(counters, cfg.profile)
        if problems and cfg.profile in EXACT_PROFILES:
            raise StormAccountingError("; ".join(problems))
        # Every thread's last batch holds its share's accumulated arrays. Thread k's VMs are
        # vms[k::threads]: its VM j is the storm's VM k + j * len(groups).
        latency = sum((per_thread[-1]["latency"] for per_thread in results if per_thread),
                      np.zeros((2, LATENCY_SLOTS), dtype=np.uint64))
        per_vcpu = np.zeros((len(vms), cfg.vcpus, 2), dtype=np.uint64)
        for k, per_thread in enumerate(results):
            if per_thread:
                st = per_thread[-1]["stats"].reshape(-1, cfg.vcpus, 8)
                per_vcpu[k::len(groups)] = st[:, :, 6:8]
        rounds.append({"seconds": wall, "counters": counters, "problems": problems,
                       "latency": latency, "deliveries_per_vcpu": per_vcpu[:, :, 0].ravel(),
                       "offered_per_vcpu": per_vcpu[:, :, 1].ravel()})
    return {"config": cfg, "rounds": rounds}


def fairness(deliveries: Any, offered: Any) -> dict[str, Any]:
    """Deliveries per vCPU as {"min", "median", "max", "jain", "starved"}: Jain's index
    (sum x)^2 / (n * sum x^2) (1.0: every vCPU served alike; 1/n: one vCPU got everything;
    None when nothing was delivered) and the starved vCPUs: those that had requests accepted
    for them (edges, raised levels, SPIs) and no delivery at all, as flat ids
    vm_index * vcpus + vcpu_id.

    >>> fairness([3, 3, 0], [3, 3, 2])
    {'min': 0, 'median': 3.0, 'max': 3, 'jain': 0.6667, 'starved': [2]}
    """
    x = np.asarray(deliveries, dtype=np.float64)
    off = np.asarray(offered, dtype=np.uint64)
    # A ufunc, not np.dot: a float64 dot product goes to BLAS, whose worker threads then spin
    # for a while, taking a core from the next storm round on a 2-core machine.
    sq = float((x * x).sum())
    jain = round(float(x.sum()) ** 2 / (len(x) * sq), 4) if sq else None
    starved = [int(i) for i in np.nonzero((x == 0) & (off > 0))[0]]
    return {"min": int(x.min()), "median": float(np.median(x)), "max": int(x.max()),
            "jain": jain, "starved": starved}


def _deliveries(c: dict[str, int]) -> int:
    # Every acknowledgement the guests made: edges (v2/v3's re-deliveries included), levels,
    # SPIs.
    return (c["delivered"] + c["redelivered"] + c["level_delivered"] + c["spi_delivered"]
            + c["spi_level_delivered"])


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Reduce ``run_storm``'s result to the reported numbers: min/median/max round seconds,
    injections and deliveries per second and ns per injection (at the median round), and the
    first round's counters and accounting problems."""
    cfg: StormConfig = result["config"]
    secs = [r["seconds"] for r in result["rounds"]]
    first = result["rounds"][0]
    c = first["counters"]
    per_round = []
    for r in result["rounds"]:
        rc = r["counters"]
        per_round.append(_deliveries(rc) / r["seconds"] if r["seconds"] else 0.0)
    med = statistics.median(secs)
    deliveries = _deliveries(c)
    spi_deliveries = c["spi_delivered"] + c["spi_level_delivered"]
    return {
        "spi_deliveries": spi_deliveries,
        "spi_deliveries_per_s": spi_deliveries / med if med else 0.0,
        "seconds": secs, "min": min(secs), "median": med, "max": max(secs),
        "mean": statistics.fmean(secs), "rounds": len(secs),
        "injections": c["injections"], "deliveries": deliveries,
        "injections_per_s": c["injections"] / med if med else 0.0,
        "deliveries_per_s": deliveries / med if med else 0.0,
        "ns_per_injection": med * 1e9 / c["injections"] if c["injections"] else 0.0,
        "best_injections_per_s": c["injections"] / min(secs) if min(secs) else 0.0,
        "counters": c, "problems": first["problems"],
        "vcpus_total": cfg.vms * cfg.vcpus,
        "rounds_deliveries_per_s": per_round,
        # every round is the same storm (the same seeds): the first one's distributions
        "latency_events": _latency_dict(first["latency"][0]),
        "latency_runs": _latency_dict(first["latency"][1]),
        "fairness": fairness(first["deliveries_per_vcpu"], first["offered_per_vcpu"]),
        "deliveries_per_vcpu": first["deliveries_per_vcpu"],
    }


def _latency_dict(row: Any) -> dict[str, Any]:
    d = latency_summary(row)
    return {k: d[k] for k in ("min", "median", "p99", "max", "hist_log2")}


PER_VCPU_JSON_MAX = 65536


def _per_vcpu_json(per_vcpu: Any) -> tuple[list[int], int]:
    # Deliveries per vCPU for the JSON: every vCPU up to PER_VCPU_JSON_MAX, beyond that sums
    # over bins of consecutive vCPUs (the bin size is written next to them).
    x = np.asarray(per_vcpu, dtype=np.uint64)
    binsize = max(1, -(-len(x) // PER_VCPU_JSON_MAX))
    if binsize > 1:
        pad = (-len(x)) % binsize
        x = np.concatenate([x, np.zeros(pad, dtype=np.uint64)]).reshape(-1, binsize).sum(axis=1)
    return [int(v) for v in x], binsize


def _git_commit() -> dict[str, Any]:
    try:
        from . import _version
        return {"id": getattr(_version, "__commit_id__", None),
                "version": getattr(_version, "__version__", None)}
    except ImportError:
        return {"id": None, "version": None}


def _machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"node": platform.node(), "machine": platform.machine(), "system": platform.system(),
            "release": platform.release(), "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "numpy_version": np.__version__,
            "vcpu_state_bytes": vcpu_state_size()}


def to_benchmark_json(summaries: list[tuple[StormConfig, dict[str, Any]]]) -> dict[str, Any]:
    """pytest-benchmark's JSON shape: machine_info, commit_info, benchmarks[]."""
    from . import __version__
    benchmarks = []
    for cfg, s in summaries:
        c = s["counters"]
        per_vcpu, binsize = _per_vcpu_json(s["deliveries_per_vcpu"])
        benchmarks.append({
            "group": "storm",
            # the name of the default mix is unchanged; another mix is appended
            "name": f"storm[{cfg.profile}-{cfg.pattern}-{cfg.vms}x{cfg.vcpus}-t{cfg.threads}"
                    f"{'' if cfg.mix == 'mixed' else '-' + cfg.mix}]",
            "params": {"vms": cfg.vms, "vcpus": cfg.vcpus, "injections": cfg.injections,
                       "pattern": cfg.pattern, "profile": cfg.profile, "threads": cfg.threads,
                       "seed": cfg.seed, "repeat": cfg.repeat, "pmu": cfg.pmu,
                       "service_every": cfg.service_every, "mix": cfg.mix},
            "stats": {"min": s["min"], "median": s["median"], "max": s["max"],
                      "mean": s["mean"], "rounds": s["rounds"], "data": s["seconds"]},
            "extra_info": {"injections_per_s": s["injections_per_s"],
                           "deliveries_per_s": s["deliveries_per_s"],
                           "ns_per_injection": s["ns_per_injection"],
                           "coalesced": c["coalesced"], "redelivered": c["redelivered"],
                           "lost": c["lost"], "model_mismatch": c["model_mismatch"],
                           "injections": c["injections"],
                           "deliveries": s["deliveries"], "accepted": c["accepted"],
                           "delivered": c["delivered"], "level_delivered": c["level_delivered"],
                           "raised": c["raised"], "withdrawn": c["withdrawn"],
                           "services": c["services"], "vcpus_total": s["vcpus_total"],
                           "spi_deliveries": s["spi_deliveries"],
                           "spi_deliveries_per_s": s["spi_deliveries_per_s"],
                           **{k: c[k] for k in c if k.startswith("spi_")},
                           "latency_events": s["latency_events"],
                           "latency_runs": s["latency_runs"],
                           "fairness": s["fairness"],
                           "deliveries_per_vcpu": per_vcpu,
                           "deliveries_per_vcpu_bin": binsize,
                           "rounds_deliveries_per_s": s["rounds_deliveries_per_s"],
                           "problems": s["problems"]},
        })
    return {"machine_info": _machine_info(), "commit_info": _git_commit(),
            "benchmarks": benchmarks, "datetime": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "version": __version__}


def format_report(cfg: StormConfig, s: dict[str, Any]) -> str:
    """The table gic5-storm prints for one configuration and its ``summarize`` result."""
    c = s["counters"]
    rows = [
        ("profile / pattern / mix", f"{cfg.profile} / {cfg.pattern} / {cfg.mix}"),
        ("VMs x vCPUs (threads)", f"{cfg.vms} x {cfg.vcpus} = {s['vcpus_total']} ({cfg.threads})"),
        ("injections per round", f"{c['injections']:,}"),
        ("deliveries per round", f"{s['deliveries']:,}"),
        ("injections/s (median)", f"{s['injections_per_s'] / 1e6:,.1f} M"),
        ("deliveries/s (median)", f"{s['deliveries_per_s'] / 1e6:,.1f} M"),
        ("ns per injection", f"{s['ns_per_injection']:.2f}"),
        ("round time min / median", f"{s['min'] * 1e3:.2f} ms / {s['median'] * 1e3:.2f} ms"),
        ("edges accepted / delivered", f"{c['accepted']:,} / {c['delivered']:,}"),
        ("coalesced", f"{c['coalesced']:,}"),
        ("redelivered / lost", f"{c['redelivered']:,} / {c['lost']:,}"),
        ("model/truth mismatches", f"{c['model_mismatch']:,}"),
        ("level raised / delivered", f"{c['raised']:,} / {c['level_delivered']:,}"),
        ("SPI deliveries/s (median)", f"{s['spi_deliveries_per_s'] / 1e6:,.1f} M"),
        ("SPI edges accepted / delivered / coalesced",
         f"{c['spi_accepted']:,} / {c['spi_delivered']:,} / {c['spi_coalesced']:,}"),
        ("SPI levels raised / delivered / withdrawn",
         f"{c['spi_raised']:,} / {c['spi_level_delivered']:,} / {c['spi_withdrawn']:,}"),
        ("SPI lost / violations / IST mismatches",
         f"{c['spi_lost']:,} / {c['spi_violations']:,} / {c['spi_mismatch']:,}"),
        *_latency_rows(cfg, s),
        ("accounting", "ok" if not s["problems"] else "; ".join(s["problems"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _fmt_latency(d: dict[str, Any]) -> str:
    if d["min"] is None:
        return "no deliveries"
    return f"{d['min']:,} / {d['median']:,} / {d['p99']:,} / {d['max']:,}"


def _fmt_hist(h: list[int]) -> str:
    # "0-1:5 2-3:7 4-7:1" (bucket k: [2^k, 2^(k+1)), bucket 0 also 0)
    parts = []
    for k, n in enumerate(h):
        if n:
            lo = 0 if k == 0 else 1 << k
            parts.append(f"{lo}-{(1 << (k + 1)) - 1}:{n:,}")
    return " ".join(parts) if parts else "-"


def _latency_rows(cfg: StormConfig, s: dict[str, Any]) -> list[tuple[str, str]]:
    f = s["fairness"]
    c = s["counters"]
    starved = f["starved"]
    named = ", ".join(f"vm{i // cfg.vcpus}/vcpu{i % cfg.vcpus}" for i in starved[:8])
    if len(starved) > 8:
        named += f", ... ({len(starved)} in all)"
    rows = [
        ("latency, events (min/med/p99/max)", _fmt_latency(s["latency_events"])),
        ("latency, events log2 histogram", _fmt_hist(s["latency_events"]["hist_log2"])),
        ("latency, guest runs (min/med/p99/max)", _fmt_latency(s["latency_runs"])),
        ("latency, runs log2 histogram", _fmt_hist(s["latency_runs"]["hist_log2"])),
    ]
    if cfg.profile not in EXACT_PROFILES:
        # v2/v3's re-delivered edges have no accepted edge behind them: no latency to measure
        rows.append(("re-delivered edges (not in latency)", f"{c['redelivered']:,}"))
    jain = "-" if f["jain"] is None else f"{f['jain']:.4f}"
    rows += [
        ("deliveries per vCPU min/med/max", f"{f['min']:,} / {f['median']:,.1f} / {f['max']:,}"),
        ("Jain fairness index", jain),
        ("starved vCPUs", named if starved else "none"),
    ]
    return rows


def _storm_parser() -> argparse.ArgumentParser:
    from . import __version__
    d = StormConfig()
    ap = argparse.ArgumentParser(
        prog="gic5-storm",
        description="Closed-loop GICv5 interrupt storm (PPIs, and SPIs on 7.4) through the gic5 model. "
                    "'gic5-storm plot RESULT.json -o storm.png' draws a result file.")
    ap.add_argument("--vms", type=int, default=d.vms, help=f"VMs (default {d.vms})")
    ap.add_argument("--vcpus", type=int, default=d.vcpus, help=f"vCPUs per VM (default {d.vcpus})")
    ap.add_argument("--injections", type=int, default=d.injections,
                    help=f"injection events per round (default {d.injections:,})")
    ap.add_argument("--pattern", choices=sorted(PATTERNS), default=d.pattern,
                    help="target pattern: uniform random, sorted by vCPU, bursts on one vCPU")
    ap.add_argument("--profile", choices=PROFILES, default=d.profile)
    ap.add_argument("--threads", type=int, default=d.threads,
                    help="threads; VMs are split across them, GIL released")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--repeat", type=int, default=d.repeat, help="rounds (min/median reported)")
    ap.add_argument("--no-pmu", dest="pmu", action="store_false",
                    help="vCPUs without the PMU (no PPI 23 line)")
    ap.add_argument("--mix", choices=sorted(MIXES), default=d.mix,
                    help="event mix: mixed (SW_PPI edges, timer and PMU lines, and on 7.4 "
                         "SPIs), edges (SW_PPI only), spi (SPIs only, 7.4)")
    ap.add_argument("--service-every", type=int, default=d.service_every,
                    help="run the target vCPU's guest after every N injections")
    ap.add_argument("--json", metavar="PATH", help="write pytest-benchmark-shaped JSON here")
    ap.add_argument("--plot", metavar="PNG",
                    help="draw this storm (latency, per-vCPU deliveries, rounds); needs matplotlib")
    ap.add_argument("--version", action="version", version=f"gic5 {__version__}")
    return ap


def plot_main(argv: list[str]) -> int:
    """``gic5-storm plot RESULT.json... -o storm.png`` (gic5.storm_plot.plot_main): one storm's
    latency, per-vCPU deliveries and rounds, or throughput against vCPUs for several."""
    from .storm_plot import plot_main as plot
    return plot(argv)


def sweep_main(argv: list[str]) -> int:
    """``gic5-storm sweep ...`` (gic5.storm_sweep.sweep_main): a grid of storms to one JSON
    file and its plots."""
    from .storm_sweep import sweep_main as sweep
    return sweep(argv)


def main(argv: list[str] | None = None) -> int:
    """The gic5-storm entry point (``argv`` defaults to sys.argv[1:]). Returns the exit status:
    0, or 1 when the final or 7.4 profile breaks an accounting identity; a usage error exits with 2
    (argparse's SystemExit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plot"]:
        return plot_main(argv[1:])
    if argv[:1] == ["sweep"]:
        return sweep_main(argv[1:])
    ap = _storm_parser()
    args = ap.parse_args(argv)
    # Output paths are checked before the storm runs: a run of minutes must not end in a
    # traceback because the file cannot be written.
    for opt, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            why = check_output_path(path)
            if why is not None:
                print(f"gic5-storm: {opt}: {why}", file=sys.stderr)
                return 2
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        print("gic5-storm: --plot needs matplotlib: pip install 'gic5[plot]'", file=sys.stderr)
        return 2
    cfg = StormConfig(vms=args.vms, vcpus=args.vcpus, injections=args.injections,
                      pattern=args.pattern, profile=args.profile, threads=args.threads,
                      seed=args.seed, repeat=args.repeat, pmu=args.pmu,
                      service_every=args.service_every, mix=args.mix)
    try:
        cfg.validate()
    except ValueError as e:
        ap.error(str(e))
    try:
        result = run_storm(cfg)
    except StormAccountingError as e:
        print(f"gic5-storm: accounting violated on {cfg.profile}: {e}", file=sys.stderr)
        return 1
    s = summarize(result)
    print(format_report(cfg, s))
    data = to_benchmark_json([(cfg, s)])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        from .storm_plot import plot_storm
        plot_storm(data["benchmarks"][0], args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
