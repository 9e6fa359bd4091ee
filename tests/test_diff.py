"""gic5-diff: the command, its JSON, its built-in scenarios, user scenario files, exit codes.

Covers issue 5 (the gic5-diff part: built-ins by name, a file defining scenario(kvm), the
exact JSON shape, the v2 USERSPACE_PPIS bug shown with no arguments, exit 0 whether or not
the profiles differ, nonzero only on gic5-diff's own errors) and issue 8's
``--against kvm`` (a "kvm" column beside the profiles).

Rules kept: main() runs in-process (capsys) and as ``python -m gic5.diff`` in a subprocess;
every expected value is written out here from spec tables 5.1, 6.1, 7.1, 7.3, 7.6, 9.2 and
docs/semantics.md, never taken from a run; the real-KVM test asserts on whichever side this
machine offers (the backend opens, or the command says why not and exits 2).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import gic5
from gic5 import diff, uapi

# The PPI-only profiles the older tests pin value by value; ALL_PROFILES adds 7.4, whose
# columns the 7.4 tests below pin.
PROFILES = ["v2", "v3", "final"]
ALL_PROFILES = list(gic5.PROFILES)
SW_INTID = 0x20000003
ALL = 2**64 - 1
UPP = "dev.get_attr(CTRL, USERSPACE_PPIS, buf[16])"


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture
def run(capsys):
    """main(argv) in-process -> (exit status, stdout, stderr)."""
    def call(*argv):
        rc = diff.main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err
    return call


@pytest.fixture
def run_json(run):
    def call(*argv):
        rc, out, err = run("--json", *argv)
        assert rc == 0, err
        return json.loads(out)  # the whole of stdout is one JSON document
    return call


def python_m(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "gic5.diff", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def steps_named(doc, scenario, column, call):
    """The steps of ``column`` whose call is exactly ``call``, in order."""
    return [s for s in doc["scenarios"][scenario][column] if s["call"] == call]


def outcome(step):
    """A step as (result, value), the pair the tests compare."""
    return step["result"], step["value"]


def per_profile(doc, scenario, call, nth=0, profiles=PROFILES):
    return {p: outcome(steps_named(doc, scenario, p, call)[nth]) for p in profiles}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def check_step_shape(step):
    assert isinstance(step, dict) and set(step) == {"call", "result", "value"}, step
    assert isinstance(step["call"], str) and step["call"]
    r = step["result"]
    assert isinstance(r, int) and not isinstance(r, bool), step
    assert r == 0 or (r < 0 and -r in errno.errorcode), step


# --- the JSON document -----------------------------------------------------------------------

def test_json_shape_exact_for_all_builtins(run_json):
    doc = run_json()
    assert set(doc) == {"profiles", "scenarios"}
    assert doc["profiles"] == ALL_PROFILES
    assert list(doc["scenarios"]) == list(diff.BUILTINS)
    for required in ("userspace_ppis", "selftest_round_trip", "irq_line_gate", "exposure",
                     "wake_compare", "edge_latch", "ppi_count", "trapped_regs"):
        assert required in doc["scenarios"]
    for name, columns in doc["scenarios"].items():
        assert list(columns) == ALL_PROFILES, name
        for profile, steps in columns.items():
            assert isinstance(steps, list) and steps, (name, profile)
            for step in steps:
                check_step_shape(step)


@pytest.mark.parametrize("name", list(diff.BUILTINS))
def test_builtins_take_the_same_path_under_every_profile(run_json, name):
    # The same calls in the same order, so the table lines up row by row.
    doc = run_json(name)
    calls = {p: [s["call"] for s in doc["scenarios"][name][p]] for p in ALL_PROFILES}
    assert calls["v2"] == calls["v3"] == calls["final"]
    # 7.4 takes the same calls, but a column stops where KVM_RUN fails (no IRS base)
    assert calls["7.4"] == calls["final"][:len(calls["7.4"])]


@pytest.mark.parametrize("name", list(diff.BUILTINS))
def test_every_builtin_shows_a_difference(run_json, name):
    doc = run_json(name)
    cols = doc["scenarios"][name]
    assert any(len({repr(cols[p][i]) if i < len(cols[p]) else None for p in ALL_PROFILES}) > 1
               for i in range(len(cols["v2"])))


def test_userspace_ppis_last_step_is_the_v2_bug(run_json):
    doc = run_json("userspace_ppis")
    want = {"v2": [0, 0], "v3": [8, 0], "final": [8, 0]}
    for p in PROFILES:
        steps = doc["scenarios"]["userspace_ppis"][p]
        assert steps[-1] == {"call": UPP, "result": 0, "value": want[p]}
        # before CTRL_INIT every revision copies out {0, 0} (spec 5.3)
        assert steps_named(doc, "userspace_ppis", p, UPP)[0]["value"] == [0, 0]
        assert {"call": "dev.set_attr(CTRL, CTRL_INIT)", "result": 0, "value": None} in steps


def test_recorded_value_is_what_the_api_answers(run_json):
    # The recorder must not distort: the same calls made directly give the same words.
    doc = run_json("userspace_ppis")
    for p in PROFILES:
        vm = gic5.Kvm(profile=p).create_vm()
        vm.create_vcpu(0)
        dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
        dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
        assert doc["scenarios"]["userspace_ppis"][p][-1]["value"] == list(vm.userspace_ppis())


def test_profiles_option_selects_and_orders_columns(run_json):
    doc = run_json("--profiles", "final,v2", "userspace_ppis")
    assert doc["profiles"] == ["final", "v2"]
    assert list(doc["scenarios"]["userspace_ppis"]) == ["final", "v2"]
    assert doc["scenarios"]["userspace_ppis"]["v2"][-1]["value"] == [0, 0]


# --- each built-in shows what the spec says differs -------------------------------------------

def test_irq_line_gate(run_json):
    doc = run_json("irq_line_gate")
    ok, inval, busy = (0, None), (-errno.EINVAL, None), (-errno.EBUSY, None)
    line = "vm.irq_line(PPI {} on vcpu 0, 1)"
    # before CTRL_INIT: v2 reaches the injection (EBUSY), v3 fails the empty gate, final
    # (mainline 7.2's vgic_lazy_init first) answers EBUSY
    assert per_profile(doc, "irq_line_gate", line.format(3), 0) == \
        {"v2": busy, "v3": inval, "final": busy}
    after = {num: per_profile(doc, "irq_line_gate", line.format(num), 1 if num == 3 else 0)
             for num in (0, 3, 27, 63, 64, 127, 128)}
    assert after == {
        0: {"v2": ok, "v3": inval, "final": inval},
        3: {"v2": ok, "v3": ok, "final": ok},
        27: {"v2": ok, "v3": inval, "final": inval},
        63: {"v2": ok, "v3": inval, "final": inval},
        64: {"v2": ok, "v3": inval, "final": inval},
        127: {"v2": ok, "v3": inval, "final": inval},
        128: {"v2": inval, "v3": inval, "final": inval},
    }
    # v2 took every level it was given: PPIs 0, 27, 63 (word 0), 64, 127 (word 1), SW_PPI latched
    assert per_profile(doc, "irq_line_gate", "vcpu0.pending_ppis()") == {
        "v2": (0, [1 | 1 << 3 | 1 << 27 | 1 << 63, 1 | 1 << 63]),
        "v3": (0, [0x8, 0]), "final": (0, [0x8, 0])}


def test_exposure(run_json):
    doc = run_json("exposure")
    v2, v3f = 0x5C800000, 0x48000008  # impl without SW_PPI / SW_PPI + CNTV + CNTP
    assert per_profile(doc, "exposure", "cpu0.read_ppi_enabler(0)") == \
        {"v2": (0, v2), "v3": (0, v3f), "final": (0, v3f)}
    assert per_profile(doc, "exposure", "vm.exposed_ppis()") == \
        {"v2": (0, [v2, 0]), "v3": (0, [v3f, 0]), "final": (0, [v3f, 0])}


def test_exposure_order(run_json):
    doc = run_json("exposure_order")
    assert per_profile(doc, "exposure_order", "vm.exposed_ppis()", 1) == {
        "v2": (0, [0x5C800000, 0]), "v3": (0, [0x48000008, 0]), "final": (0, [0x8, 0])}


def test_wake_compare(run_json):
    doc = run_json("wake_compare")
    T, F = (0, True), (0, False)
    wfis = [per_profile(doc, "wake_compare", "cpu0.wfi()", n) for n in range(4)]
    assert wfis == [
        {"v2": T, "v3": T, "final": F},   # priority VPMR + 1: `<=` vs `<`
        {"v2": F, "v3": F, "final": F},   # VPMR + 2: no fast path anywhere
        {"v2": T, "v3": T, "final": F},   # a timer that should fire: v2/v3 only
        {"v2": T, "v3": T, "final": F},   # CR0.EN = 0: only final checks EN
    ]
    # PPI 26 is userspace's on v2 only (no mask gate)
    assert per_profile(doc, "wake_compare", "vm.irq_line(PPI 26 on vcpu 0, 1)") == \
        {"v2": (0, None), "v3": (-errno.EINVAL, None), "final": (-errno.EINVAL, None)}
    # the guest cannot take it on any profile
    for n in range(2):
        assert per_profile(doc, "wake_compare", "cpu0.cdia()", n) == \
            {p: (0, None) for p in PROFILES}
    assert per_profile(doc, "wake_compare", "vcpu0.has_pending_irq()") == \
        {"v2": T, "v3": T, "final": F}


def test_selftest_round_trip(run_json):
    doc = run_json("selftest_round_trip")
    assert per_profile(doc, "selftest_round_trip", "cpu0.read_ppi_enabler(0)") == \
        {"v2": (0, 0), "v3": (0, 0x8), "final": (0, 0x8)}
    assert per_profile(doc, "selftest_round_trip", "cpu0.cdia()", 0) == \
        {"v2": (0, None), "v3": (0, SW_INTID), "final": (0, SW_INTID)}
    # v3 re-delivers the taken edge (its latch is never cleared)
    assert per_profile(doc, "selftest_round_trip", "cpu0.cdia()", 1) == \
        {"v2": (0, None), "v3": (0, SW_INTID), "final": (0, None)}


def test_edge_latch(run_json):
    doc = run_json("edge_latch")
    # both fold by OR and keep the new edge (v3's latch was never cleared anyway)
    assert per_profile(doc, "edge_latch", "vcpu0.pending_ppis()") == \
        {"v2": (0, [0x8, 0]), "v3": (0, [0x8, 0]), "final": (0, [0x8, 0])}
    assert per_profile(doc, "edge_latch", "cpu0.cdia()", 1) == \
        {"v2": (0, None), "v3": (0, SW_INTID), "final": (0, SW_INTID)}


def test_ppi_count(run_json):
    doc = run_json("ppi_count")
    assert per_profile(doc, "ppi_count", "vcpu0.set_attr(TIMER_CTRL, HVTIMER, =0x20000040)") \
        == {"v2": (0, None), "v3": (0, None), "final": (-errno.EINVAL, None)}
    assert per_profile(doc, "ppi_count", "vm.irq_line(PPI 64 on vcpu 0, 1)") == \
        {"v2": (0, None), "v3": (-errno.EINVAL, None), "final": (-errno.EINVAL, None)}
    assert per_profile(doc, "ppi_count", "cpu0.read_ppi_enabler(1)") == \
        {"v2": (0, ALL), "v3": (0, 0), "final": (0, 0)}
    assert per_profile(doc, "ppi_count", "cpu0.read_ppi_priority(64)") == \
        {"v2": (0, 9), "v3": (0, 9), "final": (0, 0)}
    # v2: bit 0 = PPI 64 pending from the accepted KVM_IRQ_LINE; the SPENDR1 write of the
    # Level PPI 65 changes nothing anywhere
    assert per_profile(doc, "ppi_count", "cpu0.read_ppi_spendr(1)") == \
        {"v2": (0, 0x1), "v3": (0, 0), "final": (0, 0)}


def test_trapped_regs(run_json):
    doc = run_json("trapped_regs")
    sw_26 = 1 << 3 | 1 << 26
    assert per_profile(doc, "trapped_regs", "cpu0.read_ppi_spendr(0)", 0) == \
        {"v2": (0, 0), "v3": (0, 1 << 3), "final": (0, 1 << 3)}
    assert per_profile(doc, "trapped_regs", "cpu0.read_ppi_sactiver(0)", 0) == \
        {"v2": (0, 1 << 26), "v3": (0, sw_26), "final": (0, sw_26)}
    assert per_profile(doc, "trapped_regs", "cpu0.read_ppi_priority(3)") == \
        {"v2": (0, 0), "v3": (0, 7), "final": (0, 7)}
    assert per_profile(doc, "trapped_regs", "cpu0.read_ppi_priority(26)") == \
        {p: (0, 7) for p in PROFILES}


def test_doorbell_probe(run_json):
    doc = run_json("doorbell_probe")
    assert per_profile(doc, "doorbell_probe", UPP) == \
        {"v2": (0, [3, 0]), "v3": (0, [8, 0]), "final": (0, [8, 0])}
    assert per_profile(doc, "doorbell_probe", "vm.irq_line(PPI 0 on vcpu 0, 1)") == \
        {"v2": (0, None), "v3": (-errno.EINVAL, None), "final": (-errno.EINVAL, None)}


# --- text output ---------------------------------------------------------------------------------

def test_no_arguments_shows_the_v2_bug_side_by_side(run):
    rc, out, err = run()
    assert rc == 0, err
    rows = [line for line in out.splitlines() if UPP in line]
    # after INIT: v2's {0x0, 0x0} next to v3's and final's {0x8, 0x0}, marked as differing
    assert any(line.startswith("*") and line.split(UPP)[1].split() ==
               ["{0x0,", "0x0}", "{0x8,", "0x0}", "{0x8,", "0x0}", "{0x8,", "0x0}"]
               for line in rows), rows
    assert "userspace_ppis: 1 of 6 steps differ between the profiles (step 6)" in out
    for name in diff.BUILTINS:
        assert f"== {name} ==" in out
    assert out.rstrip().splitlines()[-1].startswith(f"gic5-diff: {len(diff.BUILTINS)} scenarios")


def test_text_rows_without_differences_are_unmarked(run):
    rc, out, _ = run("userspace_ppis")
    assert rc == 0
    row = next(line for line in out.splitlines() if "dev.set_attr(CTRL, CTRL_INIT)" in line)
    assert not row.startswith("*")
    assert row.split()[-3:] == ["ok", "ok", "ok"]


def test_exit_zero_when_nothing_differs(run):
    rc, out, _ = run("--profiles", "final", "userspace_ppis")
    assert rc == 0
    assert "userspace_ppis: 0 of 6 steps differ between the profiles" in out


def test_list(run):
    rc, out, _ = run("--list")
    assert rc == 0
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == \
        list(diff.BUILTINS)


def test_json_text_round_trips():
    # dump_json lays the document out one step per line; it must still be exactly the document.
    doc = diff.run_all(list(diff.BUILTINS.values()), PROFILES)
    doc["scenarios"]["empty"] = {"v2": [], "v3": [{"call": 'a "quoted", [odd] {call}',
                                                   "result": -5, "value": "x\ny"}]}
    assert json.loads(diff.dump_json(doc)) == doc


# --- scenario files ------------------------------------------------------------------------------

def test_scenario_file_with_a_probing_host(run_json, tmp_path):
    path = write(tmp_path, "probe.py", """
        import gic5
        from gic5 import uapi

        HOST = gic5.Host(impl_ppis=(0x5C80000B, 0))

        def scenario(kvm):
            vm = kvm.create_vm()
            vm.create_vcpu(0)
            dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
            dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
            dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS,
                         bytearray(16))
        """)
    doc = run_json(path)
    assert list(doc["scenarios"]) == [path]
    last = {p: doc["scenarios"][path][p][-1]["value"] for p in PROFILES}
    assert last == {"v2": [3, 0], "v3": [8, 0], "final": [8, 0]}


def test_user_scenario_file_natural_python(run_json, tmp_path):
    # Kernel errors are recorded and the scenario goes on; notes and masks; a failed
    # create_* hands back a stand-in whose calls answer EBADF; vCPU attributes read back.
    path = write(tmp_path, "mine.py", """
        import struct
        from gic5 import uapi

        def scenario(kvm):
            vm = kvm.create_vm()
            v0 = vm.create_vcpu(0)
            vm.create_vcpu(0)                 # EEXIST, recorded, goes on
            bad = vm.create_vcpu(512)         # EINVAL: a stand-in comes back
            kvm.rec.note("bad is falsy", not bad)
            bad.has_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, 0)   # EBADF
            dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
            v0.get_attr(uapi.KVM_ARM_VCPU_TIMER_CTRL, uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER,
                        bytearray(4))
            dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
            words = vm.userspace_ppis()
            kvm.rec.mask("userspace word 0 only", (words[0],))
            dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS,
                         None)                # NULL user pointer: EFAULT
        """)
    doc = run_json(path)
    steps = doc["scenarios"][path]
    for p, sw in (("v2", 0), ("v3", 8), ("final", 8)):
        assert steps[p] == [
            {"call": "kvm.create_vm()", "result": 0, "value": None},
            {"call": "vm.create_vcpu(0)", "result": 0, "value": None},
            {"call": "vm.create_vcpu(0)", "result": -errno.EEXIST, "value": None},
            {"call": "vm.create_vcpu(512)", "result": -errno.EINVAL, "value": None},
            {"call": "bad is falsy", "result": 0, "value": True},
            {"call": "vcpu512.has_attr(TIMER_CTRL, VTIMER)", "result": -errno.EBADF,
             "value": None},
            {"call": "vm.create_device(VGIC_V5)", "result": 0, "value": None},
            {"call": "vcpu0.get_attr(TIMER_CTRL, VTIMER, buf[4])", "result": 0,
             "value": 0x2000001B},
            {"call": "dev.set_attr(CTRL, CTRL_INIT)", "result": 0, "value": None},
            {"call": "vm.userspace_ppis()", "result": 0, "value": [sw, 0]},
            {"call": "userspace word 0 only", "result": 0, "value": [sw]},
            {"call": "dev.get_attr(CTRL, USERSPACE_PPIS, NULL)", "result": -errno.EFAULT,
             "value": None},
        ], p


def test_failed_kvm_run_stops_the_scenario(run_json, tmp_path):
    # KVM_RUN before CTRL_INIT: EBUSY (spec 10.1); the guest block cannot run, nothing after it
    # is recorded under any profile.
    path = write(tmp_path, "early_run.py", """
        from gic5 import uapi

        def scenario(kvm):
            vm = kvm.create_vm()
            vcpu = vm.create_vcpu(0)
            vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
            with vcpu.run() as cpu:
                cpu.cdia()
            kvm.rec.note("after", 1)
        """)
    doc = run_json(path)
    for p in PROFILES:
        assert doc["scenarios"][path][p][-1] == \
            {"call": "vcpu0.run()", "result": -errno.EBUSY, "value": None}
        assert len(doc["scenarios"][path][p]) == 4


def test_python_dash_m_subprocess(tmp_path):
    path = write(tmp_path, "probe.py", """
        import gic5
        from gic5 import uapi
        HOST = gic5.Host(impl_ppis=(0x5C80000B, 0))

        def scenario(kvm):
            vm = kvm.create_vm()
            vm.create_vcpu(0)
            dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
            dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
            dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS,
                         bytearray(16))
        """)
    proc = python_m("--json", "userspace_ppis", path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"profiles", "scenarios"} and doc["profiles"] == ALL_PROFILES
    assert {p: doc["scenarios"]["userspace_ppis"][p][-1]["value"] for p in ALL_PROFILES} == \
        {"v2": [0, 0], "v3": [8, 0], "final": [8, 0], "7.4": [8, 0]}
    assert {p: doc["scenarios"][path][p][-1]["value"] for p in ALL_PROFILES} == \
        {"v2": [3, 0], "v3": [8, 0], "final": [8, 0], "7.4": [8, 0]}

    text = python_m(cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "userspace_ppis: 1 of 6 steps differ between the profiles (step 6)" in text.stdout


@pytest.mark.skipif(shutil.which("gic5-diff") is None,
                    reason="the gic5-diff console script is not installed (pip install .)")
def test_console_script(tmp_path):
    proc = subprocess.run(["gic5-diff", "--json", "userspace_ppis"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scenarios"]["userspace_ppis"]["v2"][-1]["value"] == [0, 0]


# --- gic5-diff's own errors: exit 2, a message on stderr, nothing on stdout ------------------------

def _bad_files(tmp_path):
    return {
        "syntax": (write(tmp_path, "syntax.py", "def scenario(kvm:\n    pass\n"),
                   "SyntaxError"),
        "no_function": (write(tmp_path, "nofunc.py", "X = 1\n"), "defines no 'scenario'"),
        "not_callable": (write(tmp_path, "notcall.py", "scenario = 3\n"), "not callable"),
        "import_fails": (write(tmp_path, "imp.py", "import gic5_no_such_module\n"),
                         "ModuleNotFoundError"),
        "bad_host": (write(tmp_path, "host.py", "HOST = 1\ndef scenario(kvm):\n    pass\n"),
                     "HOST"),
        "raises": (write(tmp_path, "raises.py", """
            def scenario(kvm):
                vm = kvm.create_vm()
                vm.create_vcpu("zero")        # TypeError: Python misuse, not a kernel error
            """), "TypeError"),
        "missing_file": (str(tmp_path / "nowhere.py"), "does not exist"),
    }


@pytest.mark.parametrize("case", ["syntax", "no_function", "not_callable", "import_fails",
                                  "bad_host", "raises", "missing_file"])
def test_bad_scenario_file_exits_2(run, tmp_path, case):
    path, why = _bad_files(tmp_path)[case]
    rc, out, err = run(path)
    assert rc == 2
    assert out == ""
    assert err.startswith("gic5-diff: ") and why in err and path in err


def test_unexpected_exception_names_profile_and_call(run, tmp_path):
    path, _ = _bad_files(tmp_path)["raises"]
    rc, _, err = run(path)
    assert rc == 2
    assert "under 'v2'" in err and "vm.create_vcpu('zero')" in err


@pytest.mark.parametrize("argv, why", [
    (["no_such_scenario"], "unknown scenario 'no_such_scenario'"),
    (["--profiles", "v2,v9"], "unknown profile 'v9'"),
    (["--profiles", "v2,v2"], "named twice"),
    (["--profiles", ""], "empty profile name"),
])
def test_argument_errors_exit_2(run, argv, why):
    rc, out, err = run(*argv)
    assert rc == 2 and out == "" and why in err


def test_argparse_errors_exit_2(run):
    rc, out, err = run("--no-such-option")
    assert rc == 2 and out == "" and "unrecognized arguments" in err
    rc, _, err = run("--against", "qemu")
    assert rc == 2 and "invalid choice" in err


def test_errors_exit_2_in_a_subprocess(tmp_path):
    proc = python_m("no_such_scenario", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unknown scenario" in proc.stderr


# --- --against kvm ---------------------------------------------------------------------------------

class _GuestlessVcpu:
    """A vCPU of a stand-in backend: everything but KVM_RUN, which needs guest code."""

    def __init__(self, real):
        self._real = real

    def run(self):
        raise NotImplementedError("KVM_RUN needs guest code")

    def __getattr__(self, name):
        return getattr(self._real, name)


class _KernelOnlyVm:
    """A VM of a stand-in backend: the ioctls, without the model's inspection methods."""

    def __init__(self, real):
        self._real = real

    def create_vcpu(self, *args, **kwargs):
        return _GuestlessVcpu(self._real.create_vcpu(*args, **kwargs))

    def __getattr__(self, name):
        if name in ("exposed_ppis", "userspace_ppis"):
            raise AttributeError(name)
        return getattr(self._real, name)


class _StandInKvmBackend:
    """Answers like the final profile, but lacks what a real /dev/kvm backend lacks."""

    def __init__(self):
        self.closed = False

    def create_vm(self):
        return _KernelOnlyVm(gic5.Kvm(profile="final").create_vm())

    def close(self):
        self.closed = True


@pytest.fixture
def kvm_backend(monkeypatch):
    """Replace gic5.Kvm inside gic5.diff: backend="kvm" gives ``box[0]`` (or raises it)."""
    box = []
    real_kvm = diff.Kvm

    def fake(host=None, profile="final", backend="model"):
        if backend != "kvm":
            return real_kvm(host=host, profile=profile)
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]
    monkeypatch.setattr(diff, "Kvm", fake)
    return box


def test_against_kvm_column(run_json, kvm_backend):
    backend = _StandInKvmBackend()
    kvm_backend.append(backend)
    doc = run_json("--against", "kvm", "userspace_ppis", "exposure")
    assert doc["profiles"] == ALL_PROFILES        # "kvm" is a column, not a profile
    for name in ("userspace_ppis", "exposure"):
        assert list(doc["scenarios"][name]) == ALL_PROFILES + ["kvm"]
        for step in doc["scenarios"][name]["kvm"]:
            check_step_shape(step)
    # all ioctls: the kvm column is the stand-in's (final's) answers
    assert doc["scenarios"]["userspace_ppis"]["kvm"] == doc["scenarios"]["userspace_ppis"]["final"]
    # KVM_RUN cannot run: -ENOSYS with the backend's message, and that column stops there
    kvm_steps = doc["scenarios"]["exposure"]["kvm"]
    assert kvm_steps[-1]["call"] == "vcpu0.run()"
    assert kvm_steps[-1]["result"] == -errno.ENOSYS
    assert kvm_steps[-1]["value"] == "NotImplementedError: KVM_RUN needs guest code"
    assert kvm_steps[:-1] == doc["scenarios"]["exposure"]["final"][:len(kvm_steps) - 1]
    assert backend.closed


def test_against_kvm_missing_method_is_unsupported(run_json, kvm_backend, tmp_path):
    kvm_backend.append(_StandInKvmBackend())
    path = write(tmp_path, "inspect.py", """
        def scenario(kvm):
            vm = kvm.create_vm()
            vm.userspace_ppis()
            vm.create_vcpu(0)
        """)
    doc = run_json("--against", "kvm", path)
    assert doc["scenarios"][path]["kvm"] == [
        {"call": "kvm.create_vm()", "result": 0, "value": None},
        {"call": "vm.userspace_ppis()", "result": -errno.ENOSYS,
         "value": "AttributeError: userspace_ppis"},
    ]
    assert doc["scenarios"][path]["final"][-1]["call"] == "vm.create_vcpu(0)"


def test_against_kvm_unsupported_property(run_json, kvm_backend, tmp_path):
    class NoHost(_StandInKvmBackend):
        @property
        def host(self):
            raise NotImplementedError("the real host has no gic5.Host")
    kvm_backend.append(NoHost())
    path = write(tmp_path, "host.py", """
        def scenario(kvm):
            kvm.rec.note("pmu", kvm.host.pmu)
        """)
    doc = run_json("--against", "kvm", path)
    assert doc["scenarios"][path]["final"] == [{"call": "pmu", "result": 0, "value": True}]
    assert doc["scenarios"][path]["kvm"] == [
        {"call": "kvm.host", "result": -errno.ENOSYS,
         "value": "NotImplementedError: the real host has no gic5.Host"}]


def test_against_kvm_text_marks_kvm_differences(run, kvm_backend):
    kvm_backend.append(_StandInKvmBackend())
    rc, out, _ = run("--against", "kvm", "exposure")
    assert rc == 0
    header = next(line for line in out.splitlines() if " call " in line)
    assert header.split()[-5:] == ["v2", "v3", "final", "7.4", "kvm"]
    run_row = next(line for line in out.splitlines() if "vcpu0.run()" in line)
    assert run_row.startswith("k") and run_row.rstrip().endswith("ENOSYS (unsupported)")
    assert "kvm differs from final at" in out


@pytest.mark.parametrize("exc", [OSError(errno.ENOENT, "No such file or directory"),
                                 NotImplementedError("not arm64")])
def test_against_kvm_unavailable_exits_2(run, kvm_backend, exc):
    kvm_backend.append(exc)
    rc, out, err = run("--against", "kvm", "userspace_ppis")
    assert rc == 2 and out == ""
    assert "--against kvm" in err and "unavailable" in err and str(exc) in err


def test_without_against_the_backend_is_never_opened(run_json, kvm_backend):
    kvm_backend.append(AssertionError("opened the kvm backend without --against kvm"))
    assert "kvm" not in run_json("userspace_ppis")["scenarios"]["userspace_ppis"]


def test_against_the_real_kvm_backend(run):
    # Whatever this machine offers: the real backend opens (then its column is there and
    # well-formed), or gic5-diff says why it cannot and exits 2.
    try:
        probe = gic5.Kvm(backend="kvm")
    except (OSError, NotImplementedError, RuntimeError) as exc:
        rc, out, err = run("--json", "--against", "kvm", "userspace_ppis")
        assert rc == 2 and out == "" and "--against kvm" in err, (exc, err)
        return
    probe.close()
    rc, out, err = run("--json", "--against", "kvm", "userspace_ppis", "irq_line_gate")
    assert rc == 0, err
    doc = json.loads(out)
    for name in ("userspace_ppis", "irq_line_gate"):
        steps = doc["scenarios"][name]["kvm"]
        assert steps[0] == {"call": "kvm.create_vm()", "result": 0, "value": None}
        for step in steps:
            check_step_shape(step)
    if not os.path.exists("/dev/kvm"):
        pytest.fail("gic5.Kvm(backend='kvm') opened without /dev/kvm")


# --- the 7.4 column ----------------------------------------------------------------------------

def test_74_scenarios_pin_the_kernel_values(run_json):
    """The scenarios of what 7.4 changed (kvm-arm64/gicv5-7.4): vgic_v5_finalize_ppi_state(vcpu)
    exposes the first-running vCPU's timers (final: SW_PPI only); vgic_v5_init refuses INIT
    without vCPUs (ENODEV); kvm_vgic_addr / vgic_check_iorange and kvm_vgic_map_resources
    for the IRS base."""
    doc = run_json("vcpu1_first_timers", "init_without_vcpus", "irs_address")
    exposed = "vm.exposed_ppis()"
    assert per_profile(doc, "vcpu1_first_timers", exposed, profiles=ALL_PROFILES) == {
        "v2": (0, [0x5C800000, 0]), "v3": (0, [0x8, 0]), "final": (0, [0x8, 0]),
        "7.4": (0, [0x48000008, 0])}
    assert per_profile(doc, "vcpu1_first_timers", "cpu0.cdia()", profiles=ALL_PROFILES) == {
        "v2": (0, 0x2000001B), "v3": (0, 0x2000001B), "final": (0, None),
        "7.4": (0, 0x2000001B)}
    init = "dev.set_attr(CTRL, CTRL_INIT)"
    assert per_profile(doc, "init_without_vcpus", init, profiles=ALL_PROFILES) == {
        "v2": (0, None), "v3": (0, None), "final": (0, None), "7.4": (-errno.ENODEV, None)}
    assert per_profile(doc, "init_without_vcpus", "vm.create_vcpu(0)",
                       profiles=ALL_PROFILES) == {
        "v2": (-errno.EBUSY, None), "v3": (-errno.EBUSY, None), "final": (-errno.EBUSY, None),
        "7.4": (0, None)}
    sets = [outcome(st) for st in doc["scenarios"]["irs_address"]["7.4"]
            if st["call"].startswith("dev.set_attr(ADDR")]
    assert sets == [(-errno.EINVAL, None), (-errno.E2BIG, None), (0, None),
                    (-errno.EEXIST, None)]
    gets = [outcome(st) for st in doc["scenarios"]["irs_address"]["7.4"]
            if st["call"].startswith("dev.get_attr(ADDR")]
    assert gets == [(0, [uapi.VGIC_ADDR_UNDEF]), (0, [0])]
    for p in PROFILES:
        assert {outcome(st) for st in doc["scenarios"]["irs_address"][p]
                if "(ADDR" in st["call"]} == {(-errno.ENXIO, None)}
    last = doc["scenarios"]["irs_address"]["7.4"][-1]
    assert last["call"] == "vm2.vcpu0.run()" and last["result"] == -errno.ENXIO
    assert doc["scenarios"]["irs_address"]["final"][-1]["result"] == 0
