"""The closed-loop storm engine and the gic5-storm CLI.

Rules kept: accounting identities are checked on every profile from the engine's own counters;
the final and 7.4 profiles must show no lost or redelivered edge and a model that agrees with the
independent truth at every exit; v3 must show the edges its changed-bits fold loses (that is
the tool's finding, so a v3 run that loses nothing is a failure too); CLI runs are real
subprocesses where the console entry point matters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import gic5
from gic5 import storm as gs
from gic5core import storm_run


def small(**kw):
    base = dict(vms=2, vcpus=8, injections=20_000, repeat=1)
    base.update(kw)
    return gs.StormConfig(**base)


@pytest.mark.parametrize("profile", ["final", "7.4"])
@pytest.mark.parametrize("pattern", ["uniform", "sorted", "burst"])
@pytest.mark.parametrize("threads", [1, 2])
def test_final_accounting_holds(pattern, threads, profile):
    """final, and 7.4 (final's PPI rules; build_vms sets each VM's IRS base before the first
    runs, as kvm_vgic_map_resources requires): exact accounting, the timers and the PMU
    driven through the same timer-line helper as the API."""
    res = gs.run_storm(small(pattern=pattern, threads=threads, profile=profile,
                             pmu=True), progress=None)
    c = res["rounds"][0]["counters"]
    assert res["rounds"][0]["problems"] == []
    assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"]
    assert c["raised"] == c["level_delivered"] + c["withdrawn"] + c["level_stuck"]
    assert c["lost"] == c["redelivered"] == c["model_mismatch"] == 0
    assert c["level_violations"] == c["level_stuck"] == 0
    assert c["delivered"] > 0 and c["level_delivered"] > 0 and c["coalesced"] > 0
    assert c["injections"] >= 20_000 and c["services"] > 0


@pytest.mark.parametrize("mix", ["spi", "mixed"])
@pytest.mark.parametrize("pattern", ["uniform", "burst"])
@pytest.mark.parametrize("service_every", [1, 4])
def test_spi_storm_accounting_is_exact(mix, pattern, service_every):
    """7.4 SPIs through the storm: KVM_IRQ_LINE SPI words (kvm_vm_ioctl_irq_line ->
    kvm_vgic_inject_irq -> vgic_v5_set_irq_pend's VDPEND), acknowledged through the IRS
    (GICR CDIA, CDDI, CDEOI): every accepted edge delivered once or coalesced, every raised
    level delivered or withdrawn, nothing left pending in the truth or the virtual IST."""
    res = gs.run_storm(small(profile="7.4", mix=mix, pattern=pattern,
                             service_every=service_every), progress=None)
    r = res["rounds"][0]
    c = r["counters"]
    assert r["problems"] == []
    assert c["spi_accepted"] == c["spi_delivered"] + c["spi_coalesced"] + c["spi_lost"]
    assert c["spi_raised"] == c["spi_level_delivered"] + c["spi_withdrawn"] + \
        c["spi_level_stuck"]
    assert c["spi_lost"] == c["spi_violations"] == c["spi_mismatch"] == 0
    assert c["spi_level_stuck"] == c["spi_rejected"] == 0
    assert c["spi_delivered"] > 0 and c["spi_level_delivered"] > 0
    if service_every > 1:  # events between guest runs: some SPIs are requested again first
        assert c["spi_coalesced"] > 0 and c["spi_withdrawn"] > 0
    if mix == "mixed":
        assert c["delivered"] > 0 and c["level_delivered"] > 0  # the PPIs ran too
    else:
        assert c["accepted"] == c["delivered"] == 0


def test_spi_storm_counts_by_hand():
    """One vCPU, SPIs 0..3 (3 is LEVEL): events with a guest run after each one deliver
    every event (nothing can coalesce): the counters equal the events, split as the drawn
    SPIs fall (the truth counts are independent of the model's)."""
    cfg = gs.StormConfig(vms=1, vcpus=1, injections=1000, repeat=1, service_every=1,
                         profile="7.4", mix="spi")
    vms = gs.build_vms(cfg)
    assert vms[0].nr_spis == 32
    c = gs.run_storm(cfg, vms, progress=None)["rounds"][0]["counters"]
    assert c["injections"] == 1000
    assert c["spi_coalesced"] == c["spi_withdrawn"] == 0
    # every event is an edge request or a level raise, delivered before the next one
    assert c["spi_accepted"] + c["spi_raised"] == 1000
    assert c["spi_delivered"] == c["spi_accepted"] and c["spi_level_delivered"] == c["spi_raised"]
    assert vms[0].spi_iste(3) >> 11 & 0x1F == gs.SPI_PRIORITY_LEVEL
    assert all(vms[0].spi_iste(n) & 1 == 0 for n in range(32))  # nothing left pending


def test_spi_mix_needs_the_irs():
    """mix 'spi' on a PPI-only profile: the kernels refuse SPI words (EINVAL), so the
    configuration is refused; storm_run refuses VMs whose guest did not enable the IRS."""
    with pytest.raises(ValueError, match="SPIs"):
        gs.StormConfig(profile="final", mix="spi").validate()
    with pytest.raises(ValueError, match="mix"):
        gs.StormConfig(mix="bogus").validate()
    vms = gs.build_vms(small(profile="7.4", mix="edges", vms=1))
    with pytest.raises(ValueError, match="enabled the IRS"):
        storm_run(vms, 8, 10, mix="spi")
    with pytest.raises(ValueError, match="mix"):
        storm_run(vms, 8, 10, mix="nope")


def test_edges_mix_is_sw_ppi_only():
    """mix 'edges': SW_PPI edges through KVM_IRQ_LINE only (no level line, no SPI)."""
    c = gs.run_storm(small(mix="edges"), progress=None)["rounds"][0]["counters"]
    assert c["raised"] == c["level_delivered"] == 0 and c["spi_accepted"] == 0
    assert c["accepted"] + c["rejected"] == c["injections"] and c["accepted"] > 0


def test_v3_redelivers_edges_and_reports_them():
    """v3 19/36 vgic_v5_fold_ppi_state ORs the exit PENDR into the edge latch and its flush
    never clears it: no edge is lost, every taken edge comes back (counted `redelivered`)."""
    res = gs.run_storm(small(profile="v3"), progress=None)
    c = res["rounds"][0]["counters"]
    assert c["redelivered"] > 0 and c["model_mismatch"] > 0
    assert c["lost"] == 0
    assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"]


def test_v2_never_delivers_sw_ppi():
    # v2's inverted exposure hides SW_PPI: every accepted edge stays latched, none delivered.
    res = gs.run_storm(small(profile="v2"), progress=None)
    c = res["rounds"][0]["counters"]
    assert c["delivered"] == 0 and c["accepted"] > 0
    assert c["lost"] == 2 * 8  # one undelivered latch per vCPU at the end
    assert c["level_delivered"] > 0  # v2 does expose the timers and the PMU


def test_storm_is_deterministic_per_seed():
    cfg = small(seed=5)
    vms = gs.build_vms(cfg)
    def counts(r):
        return {k: v for k, v in r["rounds"][0]["counters"].items() if k != "elapsed_ns"}
    a = counts(gs.run_storm(cfg, vms, progress=None))
    b = counts(gs.run_storm(cfg, vms, progress=None))
    assert a == b
    assert counts(gs.run_storm(small(seed=6), progress=None)) != a


def test_large_uniform_storm_prefetching_keeps_accounting():
    # From 4096 vCPUs the uniform pattern draws its targets 16 events ahead and prefetches
    # them: the run must still be exact and reproducible (the look-ahead is the same sequence).
    cfg = gs.StormConfig(vms=8, vcpus=512, injections=300_000, repeat=1, seed=3)
    vms = gs.build_vms(cfg)
    first = gs.run_storm(cfg, vms, progress=None)["rounds"][0]
    c = first["counters"]
    assert first["problems"] == []
    assert c["accepted"] == c["delivered"] + c["coalesced"] and c["lost"] == 0
    assert c["delivered"] > 0 and c["level_delivered"] > 0
    again = gs.run_storm(cfg, vms, progress=None)["rounds"][0]["counters"]
    assert {k: v for k, v in again.items() if k != "elapsed_ns"} == \
        {k: v for k, v in c.items() if k != "elapsed_ns"}


def _uniform_targets(seed, events, total):
    # The uniform pattern's target sequence, written from its definition (SplitMix64, Steele,
    # Lea and Flood 2014: the golden-gamma step and the two xor-shift-multiply rounds, then
    # the top 32 bits scaled to 0..total-1), not from the storm's code.
    mask = (1 << 64) - 1
    state, hits = seed, [0] * total
    for _ in range(events):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        hits[((z >> 32) * total) >> 32] += 1
    return hits


@pytest.mark.parametrize("vms,vcpus", [(2, 64), (8, 512)])
def test_uniform_targets_are_the_generators_sequence_with_and_without_look_ahead(vms, vcpus):
    """The uniform pattern aims event i at vCPU reduce_range(splitmix64 word i): below 4096
    vCPUs drawn as the event runs, from 4096 on drawn PREFETCH_AHEAD events early for the
    prefetch (the same words in the same order). With no service until the drain every edge
    is accepted (vgic_v5 KVM_IRQ_LINE of SW_PPI, final), so each vCPU's acceptances (stats
    column 7) count the events aimed at it."""
    cfg = gs.StormConfig(vms=vms, vcpus=vcpus, profile="final", mix="edges", injections=1,
                         repeat=1)
    n = 20_000
    r = storm_run(gs.build_vms(cfg), vcpus, n, "uniform", 5, n + 1, mix="edges")
    assert r["accepted"] == n and r["rejected"] == 0
    assert r["stats"][:, 7].tolist() == _uniform_targets(5, n, vms * vcpus)


def test_storm_leaves_every_vm_usable():
    cfg = small()
    vms = gs.build_vms(cfg)
    gs.run_storm(cfg, vms, progress=None)
    vm = vms[0]
    vcpu = vm.vcpus[0]
    assert vcpu.pending_ppis()[0] & (1 << 3) == 0  # drained
    vm.irq_line(gic5.uapi.irq_word(2, vcpu.vcpu_id, 3), 1)
    with vcpu.run() as cpu:
        assert cpu.cdia() == 0x20000003


def test_storm_run_refuses_bad_setups():
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    with pytest.raises(ValueError, match="must be initialised, alive"):
        storm_run([vm], 1, 10)  # not initialised
    with pytest.raises(ValueError, match="at least one VM with at least one vCPU"):
        storm_run([], 1, 10)
    with pytest.raises(TypeError, match="VmCore"):
        storm_run([object()], 1, 10)
    cfg = small(vms=1, vcpus=1)
    vms = gs.build_vms(cfg)
    with pytest.raises(ValueError, match="pattern must be one of"):
        storm_run(vms, 1, 10, pattern="zigzag")
    with pytest.raises(ValueError, match="vcpus_per_vm vCPUs"):
        storm_run(vms, 2, 10)  # more vCPUs than the VM has
    with pytest.raises(ValueError, match="one byte per vCPU"):
        storm_run(vms, 1, 10, truth=np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="service_every must be positive"):
        storm_run(vms, 1, 10, service_every=0)
    with pytest.raises(ValueError, match="exceeds event_total"):
        storm_run(vms, 1, 10, event_base=5, event_total=12)
    with pytest.raises(ValueError, match="appears twice"):
        storm_run(vms + vms, 1, 10)
    with vms[0].vcpus[0].run():
        with pytest.raises(ValueError, match="outside run"):
            storm_run(vms, 1, 10)  # a vCPU inside run()


@pytest.mark.parametrize("bad, match", [
    (dict(vms=0), "vms must be at least 1"), (dict(vcpus=513), "vcpus must be at most 512"),
    (dict(threads=0), "threads must be at least 1"), (dict(pattern="x"), "pattern must be"),
    (dict(profile="v9"), "profile must be one of"), (dict(injections=-1), "must not be negative"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        small(**bad).validate()


def test_batches_match_one_call(monkeypatch):
    # Splitting a run into batches (progress granularity) changes nothing in the accounting:
    # the run really is split (5 calls of 7,000 / 7,000 / 7,000 / 7,000 / 2,000 events, one
    # shared truth, the drain only in the last), and its identities hold over the whole.
    cfg = small(injections=30_000)
    vms = gs.build_vms(cfg)
    calls = []
    real = gs.storm_run

    def counting(cores, per_vm, n, *args):
        calls.append((n, args[3:7]))  # (events, (truth, event_base, event_total, drain))
        return real(cores, per_vm, n, *args)

    monkeypatch.setattr(gs, "BATCH_EVENTS", 7_000)
    monkeypatch.setattr(gs, "storm_run", counting)
    split = gs.run_storm(cfg, vms, progress=None)["rounds"][0]
    assert [n for n, _ in calls] == [7_000] * 4 + [2_000]
    assert [a[1:] for _, a in calls] == [(b, 30_000, b == 28_000)
                                          for b in range(0, 30_000, 7_000)]
    assert len({id(a[0]) for _, a in calls}) == 1  # one truth for the whole run
    assert split["problems"] == []
    c = split["counters"]
    assert c["injections"] >= 30_000
    assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"]
    assert c["lost"] == c["redelivered"] == c["model_mismatch"] == 0


# Subprocesses run outside the repository: "python -m" puts the current directory first on
# sys.path, and the source tree's uncompiled gic5core/ would shadow the installed one.
NEUTRAL_CWD = tempfile.gettempdir()


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "gic5.storm", *args], capture_output=True,
                          text=True, timeout=300, cwd=NEUTRAL_CWD, **kw)


def test_cli_default_report_and_json(tmp_path):
    out = tmp_path / "r.json"
    p = run_cli("--vms", "2", "--vcpus", "4", "--injections", "50000", "--repeat", "2",
                "--json", str(out))
    assert p.returncode == 0, p.stderr
    for label in ("injections/s", "deliveries/s", "ns per injection", "coalesced",
                  "round time min / median", "accounting"):
        assert label in p.stdout
    data = json.loads(out.read_text())
    assert set(data) >= {"machine_info", "commit_info", "benchmarks"}
    (b,) = data["benchmarks"]
    assert set(b) >= {"name", "params", "stats", "extra_info"}
    assert set(b["stats"]) >= {"min", "median", "max", "rounds"} and b["stats"]["rounds"] == 2
    assert set(b["extra_info"]) >= {"injections_per_s", "deliveries_per_s", "ns_per_injection",
                                    "coalesced", "redelivered", "lost"}
    assert b["params"]["vms"] == 2 and b["params"]["vcpus"] == 4
    assert b["stats"]["min"] <= b["stats"]["median"] <= b["stats"]["max"]


def test_cli_reports_v3_redeliveries_and_exits_zero():
    p = run_cli("--profile", "v3", "--injections", "50000", "--repeat", "1")
    assert p.returncode == 0, p.stderr
    line = next(l for l in p.stdout.splitlines() if l.startswith("redelivered / lost"))
    redelivered, lost = (int(x.replace(",", "")) for x in line.split()[-3::2])
    assert redelivered > 0 and lost == 0


def test_cli_bad_arguments():
    p = run_cli("--vcpus", "0")
    assert p.returncode == 2 and "vcpus" in p.stderr
    p = run_cli("--pattern", "zigzag")
    assert p.returncode == 2


def test_cli_version():
    p = run_cli("--version")
    assert p.returncode == 0 and gic5.__version__ in p.stdout


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.json"
    assert run_cli("--vms", "1", "--vcpus", "2", "--injections", "1000", "--repeat", "1",
                   "--json", str(out)).returncode == 0
    png = tmp_path / "s.png"
    p = run_cli("plot", str(out), "-o", str(png))
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path):
    # Simulate the optional extra being absent: a clear message and exit status 2.
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"benchmarks": []}))
    code = ("import sys; sys.modules['matplotlib'] = None; from gic5.storm import main; "
            f"sys.exit(main(['plot', {str(out)!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=NEUTRAL_CWD)
    assert p.returncode == 2 and "gic5[plot]" in p.stderr


@pytest.mark.parametrize("profile,mix,pattern", [
    # the uniform pattern runs the copies specialised on each mix, the others the narrow
    # build's generic copy
    ("final", "mixed", "uniform"), ("final", "edges", "uniform"), ("7.4", "mixed", "uniform"),
    ("7.4", "spi", "uniform"), ("final", "mixed", "sorted"), ("final", "edges", "burst"),
    ("7.4", "spi", "burst"), ("7.4", "mixed", "sorted"), ("7.4", "edges", "uniform")])
def test_narrow_build_gives_the_generic_builds_results(profile, mix, pattern):
    """storm_run's one-word builds (narrow, the default on 64-PPI VMs: one copy per mix for
    the uniform pattern, one for the others) and the generic two-word build of the same
    functions (narrow=False) answer alike: the same counters, per-vCPU records, latency rows
    and SPI stamps, and the VMs end in the same PPI state (on 7.4 the same saved state, IST
    included) (vgic_v5_flush_ppi_state / vgic_v5_fold_ppi_state / CDIA run on the same
    values)."""
    cfg = gs.StormConfig(vms=2, vcpus=8, profile=profile, mix=mix, injections=1, repeat=1,
                         pattern=pattern)
    out, saved = [], []
    for narrow in (True, False):
        vms = gs.build_vms(cfg)
        r = storm_run(vms, 8, 30_000, pattern, 11, 2, mix=mix, narrow=narrow)
        out.append(r)
        saved.append([(v.pending_ppis(), v.active_ppis(), v.enabled_ppis())
                      for vm in vms for v in vm.vcpus])
        if profile == "7.4":  # the IRS era: the SPI IST and the sysregs too
            saved[-1].append([gic5.save_state(vm) for vm in vms])
    a, b = out
    assert {k: v for k, v in a.items() if isinstance(v, int) and k != "elapsed_ns"} == \
        {k: v for k, v in b.items() if isinstance(v, int) and k != "elapsed_ns"}
    assert a["delivered"] + a["level_delivered"] + a["spi_delivered"] > 1000
    for key in ("stats", "latency", "spi_stamps"):
        np.testing.assert_array_equal(a[key], b[key])
    assert saved[0] == saved[1]


@pytest.mark.parametrize("profile", ["v2", "v3", "final"])
def test_core_refuses_the_irs_era_writers_on_ppi_only_profiles(profile):
    """The IRS-era state is 7.4's: on v2 / v3 / final the core itself (not only the front
    end, whose vgic_v5_has_attr answers ENXIO for KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS and
    GRP_IRS_REGS there) refuses a CPU_SYSREGS write (vgic_v5_attr_regs_access) and an IRS_CR0
    restore (vgic_v5_irs_uaccess_write) with ENXIO and changes nothing. The storm's copies for
    VMs without irs_uapi rely on it: they never read prio_raw, reload_req or irs_enabled."""
    import errno
    from gic5 import uapi
    vm = gic5.Kvm(profile=profile).create_vm()
    vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    before = vm.vcpus[0].pending_ppis(), vm.vcpus[0].enabled_ppis()
    attr = uapi.cpu_sysreg_attr(0, uapi.SYS_ICC_PPI_ENABLER0_EL1)
    with pytest.raises(OSError) as e:
        vm._sysreg_set(attr, True, 1 << 3)
    assert e.value.errno == errno.ENXIO
    # the core's ADDR setter is not gated by profile (the front end is): an IRS base set
    # through it still does not open IRS_REGS
    vm._irs_addr_set(uapi.KVM_VGIC_V5_ADDR_TYPE_IRS, True, 0x10000000)
    for call in (lambda: vm._irs_regs_set(uapi.GICV5_IRS_CR0, True, uapi.GICV5_IRS_CR0_IRSEN),
                 lambda: vm._irs_regs_get(uapi.GICV5_IRS_CR0)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENXIO
    assert (vm.vcpus[0].pending_ppis(), vm.vcpus[0].enabled_ppis()) == before
