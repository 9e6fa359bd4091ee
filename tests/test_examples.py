"""examples/: every script runs as a user would run it, with small sizes, and says the right thing.

Covers: examples/kvmtool_init.py, qemu_irq_words.py, selftest_round_trip.py, migrate_74.py,
kvmtool_spis_74.py and storm_sweep.py, each run as a subprocess (``python examples/NAME.py ...``) from a temporary
directory, on the profiles where its outcome differs; plus the shape of every example (a
docstring that says what it shows and how to run it, and a --profile option).

Rules kept: expected lines are literals from docs/semantics.md and the spec (USERSPACE_PPIS
{0x8, 0x0} on v3/final and {0x0, 0x0} on v2, CDIA 0x20000003, EBUSY for a vCPU after INIT,
the word 0x122c0003 for SW_PPI on vCPU 300); counts that depend on timing are not asserted.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def run(tmp_path: pathlib.Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one example with this interpreter, in tmp_path, and capture its output."""
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_the_examples_exist() -> None:
    assert {"kvmtool_init.py", "qemu_irq_words.py", "selftest_round_trip.py",
            "storm_sweep.py", "migrate_74.py", "kvmtool_spis_74.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_says_what_and_how(script: str, tmp_path: pathlib.Path) -> None:
    doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text()))
    assert doc, f"{script} has no module docstring"
    assert "What it shows" in doc and "Run: ``python examples/" + script in doc
    help_text = run(tmp_path, script, "--help")
    assert help_text.returncode == 0, help_text.stderr
    # the revision to run under (the 7.4-only migration example picks the backend instead)
    assert "--profile" in help_text.stdout or "--backend" in help_text.stdout


# --- kvmtool_init ----------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["v3", "final"])
def test_kvmtool_init(profile: str, tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "kvmtool_init.py", "--profile", profile, "--vcpus", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "KVM_CREATE_DEVICE(V5, TEST): supported"
    assert "KVM_SET_DEVICE_ATTR(CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT): ok" in lines
    assert "KVM_HAS_DEVICE_ATTR(CTRL, KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES): ENXIO, skipped" in lines
    assert "USERSPACE_PPIS: {0x8, 0x0} -> PPIs [3]" in lines
    assert "vCPU 0 KVM_ARM_VCPU_TIMER_IRQ_VTIMER: 0x2000001b" in lines
    assert "vCPU 0 KVM_ARM_VCPU_TIMER_IRQ_PTIMER: 0x2000001e" in lines
    assert "KVM_CREATE_VCPU(2) after INIT: EBUSY" in lines
    # INIT is set only after HAS said yes.
    assert (lines.index("KVM_HAS_DEVICE_ATTR(CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT): yes")
            < lines.index("KVM_SET_DEVICE_ATTR(CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT): ok"))


def test_kvmtool_init_v2_reports_the_index_as_bitmap_bug(tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "kvmtool_init.py", "--profile", "v2", "--vcpus", "1")
    assert r.returncode == 1
    assert "USERSPACE_PPIS: {0x0, 0x0} -> PPIs []" in r.stdout.splitlines()
    assert "SW_PPI is not drivable on this kernel revision" in r.stdout


# --- qemu_irq_words --------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["v2", "v3", "final"])
def test_qemu_irq_words(profile: str, tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "qemu_irq_words.py", "--profile", profile, "--ids", "0,255,256,300")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "    300  0x122c0003      1    44  SW_PPI pending on [0, 255, 256, 300]" in out
    assert "    256  0x12000003      1     0  SW_PPI pending on [0, 255, 256]" in out
    assert "irq_line_batch over 4 words: codes [0, 0, 0, 0]" in out
    assert "without vcpu2, vCPU 256's word 0x02000003 hits vCPU 0 instead" in out
    assert "without vcpu2, vCPU 300's word 0x022c0003: EINVAL (no vCPU 44)" in out
    assert out.rstrip().endswith("all vCPUs got exactly their own edge")


def test_qemu_irq_words_refuses_bad_ids(tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "qemu_irq_words.py", "--ids", "0,512")
    assert r.returncode == 2 and "--ids must be distinct ids in 0..511" in r.stderr


# --- selftest_round_trip ---------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["v3", "final"])
def test_selftest_round_trip(profile: str, tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "selftest_round_trip.py", "--profile", profile, "--rounds", "3")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("guest: ENABLER0 reads 0x8 ")
    for n in (1, 2, 3):
        assert f"round {n}: guest CDIA -> 0x20000003" in lines
        assert f"round {n}: guest CDDI + CDEOI; CDIA again -> None" in lines
    assert r.stdout.count("CDIA -> 0x") == 3
    if profile == "final":
        assert r.returncode == 0, r.stdout + r.stderr
        assert lines[-1] == "ok: 3 round(s), SW_PPI delivered exactly once each"
    else:
        # v3 19/36: the fold ORs into the latch and nothing clears it: the edge comes back.
        assert r.returncode == 1
        assert lines[-1] == "FAILED: 0x20000003 acknowledged after the last round"


def test_selftest_round_trip_fails_on_v2(tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "selftest_round_trip.py", "--profile", "v2")
    assert r.returncode == 1
    assert "guest: ENABLER0 reads 0x0 " in r.stdout  # SW_PPI is not exposed on v2
    assert "round 1: guest CDIA -> nothing" in r.stdout
    assert "FAILED: expected 0x20000003 on profile v2" in r.stdout


# --- storm_sweep -----------------------------------------------------------------------------

def test_storm_sweep_writes_benchmark_json(tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "storm_sweep.py", "--vcpus", "1,3", "--patterns", "uniform,burst",
            "--vms", "2", "--injections", "3000", "--repeat", "2", "--json", "sweep.json",
            "--plot", "sweep.png")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert {"machine_info", "commit_info", "benchmarks"} <= set(data)
    points = [(b["params"]["vcpus"], b["params"]["pattern"]) for b in data["benchmarks"]]
    # gic5.storm_sweep's grid order: patterns, then vCPU counts (the last varying fastest)
    assert points == [(1, "uniform"), (3, "uniform"), (1, "burst"), (3, "burst")]
    for b in data["benchmarks"]:
        p = b["params"]
        assert b["name"] == f"storm[final-{p['pattern']}-2x{p['vcpus']}-t1]"
        assert (p["vms"], p["injections"], p["profile"], p["repeat"]) == (2, 3000, "final", 2)
        stats = b["stats"]
        assert stats["rounds"] == 2 and len(stats["data"]) == 2
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
        extra = b["extra_info"]
        assert extra["injections"] >= 3000  # plus the edges injected while a guest runs
        assert extra["injections_per_s"] > 0 and extra["ns_per_injection"] > 0
        assert extra["lost"] == 0 and extra["redelivered"] == 0 and extra["problems"] == []
        assert extra["accepted"] == extra["delivered"] + extra["coalesced"]
    assert "wrote sweep.json (4 benchmarks)" in r.stdout
    if importlib.util.find_spec("matplotlib") is None:
        assert "plot skipped: matplotlib is not installed" in r.stdout
        assert not (tmp_path / "sweep.png").exists()
    else:
        assert (tmp_path / "sweep.png").stat().st_size > 0


def test_storm_sweep_rejects_unknown_pattern(tmp_path: pathlib.Path) -> None:
    r = run(tmp_path, "storm_sweep.py", "--patterns", "zigzag")
    assert r.returncode == 2 and "unknown pattern 'zigzag'" in r.stderr


# --- migrate_74 --------------------------------------------------------------------------------

def test_migrate_74(tmp_path: pathlib.Path) -> None:
    """gic5.save_state / restore_state on profile 7.4: every step answered ok, the destination's
    state equal to the saved one, and the SW_PPI edge restored through ICC_PPI_SPENDR0_EL1
    taken exactly once by the destination's guest."""
    proc = run(tmp_path, "migrate_74.py", "--json", "state.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "save_state(destination) == saved state: True" in proc.stdout
    assert "destination vCPU 17's guest took: ['0x20000003']" in proc.stdout
    assert "SET GRP_ADDR / KVM_VGIC_V5_ADDR_TYPE_IRS = 0x8000000       ok" in proc.stdout
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["device"] == {"irs_base": 0x8000000, "nr_irqs": 64}
    assert [v["vcpu_id"] for v in state["vcpus"]] == [0, 17]
    assert state["vcpus"][1]["sysregs"]["ICC_PPI_SPENDR0_EL1"] == 0x8


# --- kvmtool_spis_74 ----------------------------------------------------------------------------

def test_kvmtool_spis_74(tmp_path: pathlib.Path) -> None:
    """kvmtool's GICv5 bring-up on 7.4 (device before vCPUs, the IRS at ARM_AXI_AREA - 128 KiB,
    NR_IRQS = roundup_pow_of_two(lines), INIT) and its device interrupts as SPIs: each edge
    (kvm__irq_trigger) and the level line (kvm__irq_line) taken once as 0x60000000 | n, the
    virtual ISTE of a programmed SPI 0x00008008 (ENABLE, priority 0x10), the WFI doorbell."""
    r = run(tmp_path, "kvmtool_spis_74.py")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "SET ADDR/KVM_VGIC_V5_ADDR_TYPE_IRS = 0x3ffe0000            ok" in out
    assert "SET NR_IRQS = roundup_pow_of_two(40) = 64                  ok" in out
    assert "guest: IRS_CR0 <- IRSEN; IRS_CR0 reads 0x3" in out
    assert "SPI_CFGR.TM=1, prio 0x10, target vCPU 0, enabled; ISTE 0x00008008" in out
    assert out.count("guest: GICR CDIA -> 0x60000000") == 2
    assert "guest: GICR CDIA -> 0x60000003" in out
    assert "guest: WFI -> woken True (doorbell fired: True)" in out
    assert out.rstrip().endswith("every device interrupt reached the guest once")


def test_kvmtool_spis_74_few_lines_and_ppi_only(tmp_path: pathlib.Path) -> None:
    """kvmtool's NR_IRQS rule with fewer than 32 lines (roundup_pow_of_two(16) = 16) is EINVAL
    on the merged kernel (32..1024, multiples of 32): the VM does not start. On final (PPI
    only) every SPI word is EINVAL and nothing reaches the guest."""
    r = run(tmp_path, "kvmtool_spis_74.py", "--lines", "16")
    assert r.returncode == 1
    assert "SET NR_IRQS = roundup_pow_of_two(16) = 16                  EINVAL" in r.stdout
    r = run(tmp_path, "kvmtool_spis_74.py", "--profile", "final")
    assert r.returncode == 1
    assert "KVM_IRQ_LINE(0x01000003, 1)                              EINVAL" in r.stdout
    assert "HAS NR_IRQS                                                ENXIO" in r.stdout
