"""Inject-to-acknowledge latency and per-vCPU fairness of the closed-loop storm.

Rules kept: every number is checked on a storm small enough that its answer follows by hand
from the storm's rules (docs/storm.md: the edge accepted at event i and the guest run after it;
an edge injected while the guest runs waits in KVM's latch for the vCPU's next KVM_RUN, the
rule kvm_vgic_flush_hwstate / vgic_v5_flush_ppi_state keeps on final), and the distributions are
cross-checked against the engine's own counters (one latency sample per delivery that had an
accepted request behind it, none for a v2/v3 re-delivery).
"""

from __future__ import annotations

import numpy as np
import pytest

from gic5 import storm as gs
from gic5core.storm import LATENCY_SLOTS, latency_bucket_floor, latency_summary, storm_run


def vms_for(profile="final", vms=1, vcpus=1, mix="edges", pmu=True):
    cfg = gs.StormConfig(vms=vms, vcpus=vcpus, profile=profile, mix=mix, pmu=pmu,
                         injections=0, repeat=1)
    return gs.build_vms(cfg)


def deliveries(r):
    return (r["delivered"] + r["level_delivered"] + r["spi_delivered"]
            + r["spi_level_delivered"])


# --- the histogram decoding ------------------------------------------------------------------

def row_of(values):
    """A latency row holding ``values`` the way the engine records them (lat_record)."""
    h = np.zeros(LATENCY_SLOTS, dtype=np.uint64)
    for x in values:
        if x < 4096:
            h[x] += 1
        else:
            k = x.bit_length() - 1
            h[4096 + (k - 12) * 256 + ((x >> (k - 8)) & 255)] += 1
    big = [x for x in values if x >= 4096]
    if big:  # the exact max and (complemented) min of the values the linear part cannot hold
        h[LATENCY_SLOTS - 2] = max(big)
        h[LATENCY_SLOTS - 1] = np.uint64(~min(big) & (2**64 - 1))
    return h


def test_latency_summary_small_exact_values():
    """Nearest-rank median and p99, exact min/max, log-2 buckets with 0 and 1 in bucket 0."""
    d = latency_summary(row_of([0, 1, 1, 2, 3, 9, 100]))
    assert d == {"count": 7, "min": 0, "median": 2, "p99": 100, "max": 100,
                 "hist_log2": [3, 2, 0, 1, 0, 0, 1]}


def test_latency_summary_large_values_keep_min_max_exact():
    """Above 4096 a bucket is 1/256 of its power of two wide; min and max stay exact and the
    percentiles stay within them."""
    d = latency_summary(row_of([4096] + [5000] * 10 + [1_000_003]))
    assert d["min"] == 4096 and d["max"] == 1_000_003
    assert d["median"] == 4992       # the floor of 5000's bucket, (256 + 56) << 4
    assert d["p99"] == 999_424       # the floor of 1,000,003's bucket, (256 + 232) << 11
    assert d["hist_log2"][12] == 11 and d["hist_log2"][19] == 1 and len(d["hist_log2"]) == 20
    assert latency_summary(row_of([5000] * 3))["median"] == 5000  # kept within [min, max]


def test_latency_summary_min_max_across_the_linear_and_bucketed_parts():
    """min comes from the exact counts when any latency is below 4096, max from the slot kept
    for the bucketed values when any is at or above it; each from the other part otherwise."""
    both = latency_summary(row_of([3, 5000, 1_000_003]))
    assert (both["min"], both["max"]) == (3, 1_000_003)
    small = row_of([0, 7, 7])
    assert not small[LATENCY_SLOTS - 2:].any()  # nothing bucketed: the two slots stay zero
    assert (latency_summary(small)["min"], latency_summary(small)["max"]) == (0, 7)
    large = latency_summary(row_of([70_000, 5000]))
    assert (large["min"], large["max"]) == (5000, 70_000)


def test_latency_summary_empty_and_bad_rows():
    assert latency_summary(np.zeros(LATENCY_SLOTS, dtype=np.uint64)) == {
        "count": 0, "min": None, "median": None, "p99": None, "max": None, "hist_log2": []}
    with pytest.raises(ValueError):
        latency_summary(np.zeros(7, dtype=np.uint64))
    with pytest.raises(ValueError):
        latency_bucket_floor(LATENCY_SLOTS)
    assert [latency_bucket_floor(i) for i in (0, 4095, 4096, 4097, 4096 + 256)] == \
        [0, 4095, 4096, 4112, 8192]


# --- storms whose answer is known by hand -----------------------------------------------------

@pytest.mark.parametrize("profile", ["final", "7.4"])
def test_one_vcpu_served_after_every_edge(profile):
    """One vCPU, SW_PPI edges, the guest run after every injection. An edge accepted at event i
    is in PENDR at that run's entry (vgic_v5_flush_ppi_state) and acknowledged in it: 0 events,
    1 run. An edge injected after the run's first acknowledgement waits in KVM's latch for the
    next KVM_RUN, which is the next event's: 1 event, 1 run (the last one is drained at the
    end of the run, one event on). So the histogram is {0: delivered - M, 1: M} with M the
    mid-run injections (injections - events), every delivery 1 run late."""
    vms = vms_for(profile)
    n = 5000
    r = storm_run(vms, 1, n, seed=3, service_every=1, mix="edges")
    m = r["injections"] - n
    assert 0 < m < n and r["lost"] == r["redelivered"] == 0
    ev, runs = (latency_summary(row) for row in r["latency"])
    assert r["accepted"] == n + m and r["delivered"] == n + m - r["coalesced"]
    assert ev["count"] == runs["count"] == r["delivered"]
    assert ev["hist_log2"] == [r["delivered"]]       # 0 and 1 share bucket 0 ...
    exact = r["latency"][0][:2].tolist()             # ... the exact counts tell them apart
    assert exact == [r["delivered"] - m, m]
    assert (ev["min"], ev["max"]) == (0, 1)
    assert runs == {"count": r["delivered"], "min": 1, "median": 1, "p99": 1, "max": 1,
                    "hist_log2": [r["delivered"]]}
    st = r["stats"]
    assert st[0, 6] == r["delivered"] and st[0, 7] == r["accepted"]
    assert st[0, 5] & 0xFFFFFFFF == r["services"]      # the vCPU's run count (low word)


def test_stats_record_carries_each_vcpus_sw_ppi_word():
    """storm_run writes each vCPU's KVM_IRQ_LINE word for SW_PPI (irq_word(PPI, vcpu_id, 3),
    vcpu2 field included) into the high half of its record's word 5, the word the storm's
    injections use; the low half stays that vCPU's guest-run count."""
    from gic5 import uapi
    vms = vms_for(vms=2, vcpus=3)
    r = storm_run(vms, 3, 300, seed=5, service_every=1, mix="edges")
    ids = [v.vcpu_id for vm in vms for v in vm.vcpus[:3]]
    assert (r["stats"][:, 5] >> 32).tolist() == [
        uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, i, uapi.GICV5_ARCH_PPI_SW_PPI) for i in ids]
    assert int((r["stats"][:, 5] & 0xFFFFFFFF).sum()) == r["services"]


def test_sorted_storm_fairness_by_hand():
    """Four vCPUs, two events, sorted pattern: vCPU t gets events [t*2/4, (t+1)*2/4), so
    vCPU 1 gets event 0 and vCPU 3 event 1; each edge is delivered in the run after it.
    Deliveries [0, 1, 0, 1]: Jain (0+1+0+1)^2 / (4 * 2) = 0.5; vCPUs 0 and 2 had nothing
    aimed at them, so they are not starved."""
    vms = vms_for(vcpus=4)
    for seed in range(1, 50):  # a seed with no mid-run injection (1 in 8 runs has one)
        r = storm_run(vms, 4, 2, pattern="sorted", seed=seed, service_every=1, mix="edges")
        if r["injections"] == 2:
            break
    else:
        pytest.fail("no seed without a mid-run injection")
    per = r["stats"][:, 6].tolist()
    assert per == [0, 1, 0, 1]
    f = gs.fairness(per, r["stats"][:, 7])
    assert f == {"min": 0, "median": 0.5, "max": 1, "jain": 0.5, "starved": []}


def test_v2_edges_starve_every_vcpu():
    """v2 never exposes SW_PPI (the userspace-drivable mask is the index 3 stored as a bitmap,
    vgic_v5_get_implemented_ppis at v2): every accepted edge is lost, so every vCPU that had
    edges accepted is starved and the distributions are empty."""
    vms = vms_for("v2", vcpus=3)
    r = storm_run(vms, 3, 300, pattern="sorted", service_every=1, mix="edges")
    assert r["accepted"] == 300 and r["delivered"] == 0
    assert latency_summary(r["latency"][0])["count"] == 0
    f = gs.fairness(r["stats"][:, 6], r["stats"][:, 7])
    assert f["starved"] == [0, 1, 2] and f["jain"] is None and f["max"] == 0


def test_spis_delivered_in_the_run_after_them():
    """7.4, SPIs only, one vCPU served after every event: each SPI request (an EDGE SPI's
    VDPEND, or a LEVEL SPI's rising line) is acknowledged by GIC CDIA in the run right after
    it: every SPI delivery 0 events and 1 run late."""
    vms = vms_for("7.4", mix="spi")
    r = storm_run(vms, 1, 3000, seed=5, service_every=1, mix="spi")
    n = r["spi_delivered"] + r["spi_level_delivered"]
    assert n > 0 and r["spi_violations"] == 0
    ev, runs = (latency_summary(row) for row in r["latency"])
    assert ev["count"] == n and (ev["min"], ev["max"]) == (0, 0)
    assert (runs["min"], runs["max"]) == (1, 1)
    assert r["stats"][0, 6] == n


@pytest.mark.parametrize("profile", ["v2", "v3", "final", "7.4"])
def test_latency_counts_every_delivery_and_no_redelivery(profile):
    """A mixed storm on each profile: one latency sample per delivery with an accepted request
    behind it (edges, levels, SPIs), the per-vCPU deliveries summing to the same, none for
    v2/v3's re-delivered edges; runs counted per vCPU add up to the services."""
    vms = vms_for(profile, vms=2, vcpus=4, mix="mixed")
    r = storm_run(vms, 4, 20_000, service_every=2)
    ev, runs = (latency_summary(row) for row in r["latency"])
    assert ev["count"] == runs["count"] == deliveries(r) == int(r["stats"][:, 6].sum())
    assert sum(int(x) & 0xFFFFFFFF for x in r["stats"][:, 5]) == r["services"]
    if profile == "v3":
        assert r["redelivered"] > 0


def test_run_storm_reports_latency_and_fairness_in_json():
    """The CLI's JSON carries extra_info.latency_events / latency_runs / fairness with the
    documented keys, per-vCPU deliveries summing to the deliveries, and one rate per round."""
    cfg = gs.StormConfig(vms=2, vcpus=3, injections=5000, repeat=2)
    s = gs.summarize(gs.run_storm(cfg, progress=None))
    extra = gs.to_benchmark_json([(cfg, s)])["benchmarks"][0]["extra_info"]
    for key in ("latency_events", "latency_runs"):
        assert set(extra[key]) == {"min", "median", "p99", "max", "hist_log2"}
        assert sum(extra[key]["hist_log2"]) == s["deliveries"]
    assert set(extra["fairness"]) == {"min", "median", "max", "jain", "starved"}
    assert sum(extra["deliveries_per_vcpu"]) == s["deliveries"]
    assert len(extra["deliveries_per_vcpu"]) == 6 and extra["deliveries_per_vcpu_bin"] == 1
    assert len(extra["rounds_deliveries_per_s"]) == 2
    assert 0 < extra["fairness"]["jain"] <= 1


def test_per_vcpu_json_bins_beyond_65536():
    """More than 65,536 vCPUs: the JSON sums consecutive bins (the bin size is written)."""
    per, binsize = gs._per_vcpu_json(np.arange(200_000, dtype=np.uint64))
    assert binsize == 4 and len(per) == 50_000 and sum(per) == sum(range(200_000))
    assert per[0] == 0 + 1 + 2 + 3
