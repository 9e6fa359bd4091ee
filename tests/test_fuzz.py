"""Hypothesis over gic5's whole public surface: bad input gets the specific error, nothing else.

Rules this file keeps:
- Every call is made twice, on gic5 and on the pure-Python reference model (tests/reference.py,
  written from the kernel source), from the same drawn arguments and with identical fresh
  buffers. The outcome must match: the same OSError errno (and subclass), or the same kind of
  Python misuse (TypeError; ValueError and OverflowError count as one, as semantics.md
  section 2 allows either); any other exception (IndexError, SystemError, BufferError, ...)
  is a failure. Return values and the bytes left in the buffers must match too, so a failed
  get may leave exactly the kernel's partial write (USERSPACE_PPIS word 0), nothing more.
- After every call the two states must match (the snapshot: every vCPU's pending, active,
  enabled and has_pending_irq, the VM's exposed and userspace masks, the device / initialised
  / dead flags, the vCPU count, and while a vCPU is inside run() its guest-visible image).
  On any failure gic5's own state must be what it was before the call, except where the
  kernel itself changes state on failure (a first KVM_RUN: EBUSY kills the VM; EINVAL after
  the timer step, semantics.md section 8) -- there the reference decides.
- Arguments are drawn from the whole domain: every u32 irq word including 0 and 0xffffffff,
  every group/attr pair in 0..20 x 0..20 plus the type limits, levels other than 0/1,
  negative and huge ints, bools, numpy scalars, and the wrong Python types (str, float, None,
  list, bytes, ...) for every parameter of every public method. Buffers: None, 0, False,
  other ints, short, read-only (bytes, read-only memoryview and numpy), non-contiguous
  numpy views, 2-D and Fortran-ordered arrays, every dtype.
- Surfaces without a reference counterpart (Host, Kvm, uapi.irq_word, check, storm_run,
  bare_inject_loop, irq_line_batch's argument conversion) are checked against their
  documented contract directly.
- The outcome classifier, the buffers, the observable snapshot and the known discrepancies
  (KNOWN) are tests/differential.py's, shared with the state machine and the atheris harness;
  crashes of the interpreter are xfail tests run in a subprocess.
- Size: GIC5_FUZZ_EXAMPLES examples per test (default 600; the default run stays well under a
  minute on a 2-core machine), derandomized unless GIC5_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import array
import errno
import operator
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gic5
import gic5core
from gic5 import uapi
from gic5.storm import StormConfig, build_vms

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference as ref  # noqa: E402
from differential import (BUF_KINDS as DIFF_BUF_KINDS, MISUSE_VALUE, buffer_bytes,  # noqa: E402
                          cpu_view, failed, known, make_buffer, outcome, vcpu_view)

U32 = 2**32 - 1
U64 = 2**64 - 1

FUZZ = settings(
    max_examples=int(os.environ.get("GIC5_FUZZ_EXAMPLES", "600")),
    deadline=None, database=None, print_blob=False,
    derandomize=os.environ.get("GIC5_FUZZ_RANDOM", "") in ("", "0"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)

def wrong_typed(args) -> bool:
    """Some argument is not a Python int (bools count as ints)."""
    return any(not isinstance(a, int) for a in args)


# --- outcomes: tests/differential.py ----------------------------------------------------------

def known_here(label, args, lib_o, ref_o) -> str | None:
    """differential.known, plus the one order this file tolerates: two misuse errors in one
    call, where gic5 checks types first (TypeError) and the reference may find a value
    problem first (ValueError). Either is a right answer."""
    name = known(label, lib_o, ref_o)
    if name is None and lib_o == ("raise", ("TypeError",)) and ref_o == ("raise", MISUSE_VALUE) \
            and wrong_typed(args):
        return "misuse-order"
    return name


# --- buffers ----------------------------------------------------------------------------------

# Buffers come from tests/differential.py (make_buffer, buffer_bytes); bytearrays drawn more.
BUF_KINDS = ["bytearray", "bytearray"] + [k for k in DIFF_BUF_KINDS if k != "raw"]
buffers = st.tuples(st.sampled_from(BUF_KINDS), st.sampled_from([0, 1, 3, 4, 7, 8, 12, 15, 16,
                                                                   17, 24, 32]),
                    st.sampled_from([0x2000001B, 0x2000001E, 0x2000001C, 0x20000017, 0x20000003,
                                     27, 0, U32, 0x6000001B, 0x20000040]))


# --- argument domains ---------------------------------------------------------------------------

EDGE_INTS = [0, 1, 2, 3, 4, 5, 15, 16, 17, 23, 26, 27, 28, 30, 31, 32, 63, 64, 100, 127, 128,
             255, 256, 511, 512, 513, 4095, 0xFFFF, 0x10000, 2**31 - 1, 2**31, U32, 2**32,
             2**63 - 1, 2**63, U64, 2**64, 2**100, -1, -2, -2**31, -2**63, -2**64, -2**100]
WRONG_TYPES = ["3", "", b"\x03", bytearray(b"\x03"), 3.0, -0.0, 1.5, float("nan"),
               float("inf"), None, [3], (3,), {3: 3}, {3}, 3 + 0j, np.uint32(3), np.int64(-1),
               np.float64(3.0), np.bool_(True), object()]
BOOLS = [True, False]

ints = st.sampled_from(EDGE_INTS) | st.integers() | st.integers(0, 600)
anything = ints | st.sampled_from(WRONG_TYPES + BOOLS)


def maybe_bad(good):
    """Mostly a value from ``good``, sometimes anything at all."""
    return st.one_of(good, good, good, anything)


irq_words = (st.integers(0, U32)
             | st.builds(lambda t, v, n: ((v >> 8) & 0xF) << 28 | t << 24 | (v & 0xFF) << 16 | n,
                         st.integers(0, 15) | st.sampled_from([0, 1, 2, 2, 2]),
                         st.sampled_from([0, 1, 2, 3, 255, 256, 511, 512, 4095]),
                         st.sampled_from([0, 1, 2, 3, 3, 3, 23, 27, 30, 63, 64, 127, 128, 0xFFFF]))
             | st.sampled_from([0, U32, 0x02000003, 0x02010003, 0x12000003, 0x01000000]))
levels = st.sampled_from([0, 1, 2, 0x80000000, U32]) | st.integers(0, U32)
groups = st.integers(0, 20) | st.sampled_from([U32, 2**32, -1])
attrs = st.integers(0, 20) | st.sampled_from([U64, 2**64, -1, 2**32])
PROFILES = tuple(gic5.PROFILES)
HOSTS = [(True, None), (False, None), (True, (U64, U64)), (True, (0x48800000, 5))]
PREBUILDS = ["bare", "vcpus", "device", "device_first", "inited", "inited", "ran", "running",
             "running", "dead"]


# --- a world: the same VM on both sides -------------------------------------------------------

class World:
    """gic5 and the reference built the same way; every setup call is compared too."""

    def __init__(self, profile, host, prebuild):
        pmu, impl = HOSTS[host]
        self.profile = profile
        self.lib_vm = gic5.Kvm(gic5.Host(pmu=pmu, impl_ppis=impl), profile=profile).create_vm()
        self.ref_vm = ref.RefKvm(profile, host_pmu=pmu, impl_ppis=impl).create_vm()
        self.vcpus: list[tuple] = []
        self.dev = None
        self.run = None
        self.stale = None
        self.bug = None          # the KNOWN entry the last call matched
        self.diverged = False    # a KNOWN mismatch happened: the sides no longer agree
        if prebuild == "bare":
            return
        if prebuild == "device_first":
            self.create_device()
        self.add_vcpu(0, False)
        self.add_vcpu(1, pmu)
        if prebuild in ("device", "inited", "ran", "running", "dead"):
            self.create_device()
        if prebuild in ("device_first", "inited", "ran", "running"):
            self.setup("dev.set_attr(4, 0)", lambda d: d.set_attr(4, 0), on="dev")
            if pmu:
                self.setup("vcpu[1].pmu_init", lambda v: v.set_attr(0, 1), on=1)
        if prebuild == "dead":
            self.setup("vcpu[0].run()", lambda v: v.run().__enter__(), on=0, expect_fail=True)
        if prebuild in ("ran", "running"):
            self.enter(0)
            if prebuild == "ran":
                self.leave()

    def setup(self, label, fn, on, expect_fail=False):
        if on == "dev":
            lo, _ = outcome(lambda: fn(self.dev[0]))
            ro, _ = outcome(lambda: fn(self.dev[1]))
        else:
            lo, _ = outcome(lambda: fn(self.vcpus[on][0]))
            ro, _ = outcome(lambda: fn(self.vcpus[on][1]))
        assert lo == ro, (label, lo, ro)
        assert failed(lo) == expect_fail, (label, lo)

    def add_vcpu(self, vid, pmu):
        (lo, lv), (ro, rv) = outcome(lambda: self.lib_vm.create_vcpu(vid, pmu=pmu)), \
            outcome(lambda: self.ref_vm.create_vcpu(vid, pmu=pmu))
        assert lo == ro
        if lo[0] == "ok":
            self.vcpus.append((lv, rv))

    def create_device(self):
        (lo, ld), (ro, rd) = outcome(lambda: self.lib_vm.create_device(16)), \
            outcome(lambda: self.ref_vm.create_device(16))
        assert lo == ro
        self.dev = (ld, rd)
        if self.profile == "7.4":  # the IRS base a 7.4 VMM sets before any vCPU runs
            base = (0x8000000).to_bytes(8, sys.byteorder)
            self.setup("dev.set_attr(0, 6)", lambda d: d.set_attr(0, 6, base), on="dev")

    def enter(self, index):
        lib_v, ref_v = self.vcpus[index]
        lctx, rctx = lib_v.run(), ref_v.run()
        (lo, lcpu), (ro, rcpu) = outcome(lctx.__enter__), outcome(rctx.__enter__)
        assert lo == ro, (lo, ro)
        if lo[0] == "ok":
            self.run = (lctx, rctx, lcpu, rcpu)
            for m, a in (("write_cr0", (True,)), ("write_pcr", (31,)),
                         ("write_ppi_enabler", (0, U64))):
                assert outcome(lambda: getattr(lcpu, m)(*a))[0] == \
                    outcome(lambda: getattr(rcpu, m)(*a))[0]

    def leave(self):
        lctx, rctx, lcpu, rcpu = self.run
        lctx.__exit__(None, None, None)
        rctx.__exit__(None, None, None)
        self.stale = (lcpu, rcpu)
        self.run = None

    # -- the snapshot both sides must agree on (and gic5's must not move on failure)
    def snapshot(self, side: int):
        vm = (self.lib_vm, self.ref_vm)[side]
        if side == 0:
            flags = (vm.dead, vm.has_device, vm.initialised, vm.nr_vcpus)
        else:
            flags = (vm.dead, vm.device is not None, vm.initialised, len(vm.vcpus))
        snap = [flags, vm.exposed_ppis(), vm.userspace_ppis()]
        snap += [vcpu_view(pair[side]) for pair in self.vcpus]
        if self.run is not None:
            snap.append(cpu_view(self.run[2 + side]))
        return snap

    def both(self, label, lib_fn, ref_fn, args=(), state_may_change_on=()):
        """Make the call on both sides; check outcome, state, and no change on failure."""
        before = self.snapshot(0)
        (lo, lv), (ro, rv) = outcome(lib_fn), outcome(ref_fn)
        after_lib, after_ref = self.snapshot(0), self.snapshot(1)
        self.bug = known_here(label, args, lo, ro) if lo != ro else None
        if self.bug is None:
            assert lo == ro, f"{self.profile}: {label}: gic5 {lo} != reference {ro}"
            assert after_lib == after_ref, (f"{self.profile}: {label} ({lo}): state differs\n"
                                            f"gic5 {after_lib}\nref  {after_ref}")
        if failed(lo) and not (lo[1][0] == "OSError" and lo[1][1] in state_may_change_on):
            assert after_lib == before, f"{self.profile}: {label} failed ({lo}) but changed state"
        if self.bug is not None:
            # gic5 must not have changed anything; if the reference did (it accepted what
            # gic5 refused), the sides differ from now on and the world is done comparing.
            assert after_lib == before
            self.diverged = after_lib != after_ref or ro[0] == "ok"
        return lo, lv, rv

    def both_buffer(self, label, spec, lib_call, ref_call, args=()):
        lb, rb = make_buffer(spec), make_buffer(spec)
        res = self.both(f"{label} buf={spec}", lambda: lib_call(lb), lambda: ref_call(rb), args)
        if self.bug is None:
            assert buffer_bytes(lb) == buffer_bytes(rb), (
                f"{label} buf={spec}: gic5 left {buffer_bytes(lb)!r}, the kernel "
                f"{buffer_bytes(rb)!r}")
        elif buffer_bytes(lb) is not None:
            assert buffer_bytes(lb) == buffer_bytes(make_buffer(spec)), "refused, yet wrote"
        return res


worlds = st.builds(World, st.sampled_from(PROFILES), st.integers(0, len(HOSTS) - 1),
                   st.sampled_from(PREBUILDS))


# --- VM calls ---------------------------------------------------------------------------------

@FUZZ
@given(w=worlds, vcpu_id=maybe_bad(st.integers(0, 600) | st.sampled_from([511, 512, 2**64])),
       el2=maybe_bad(st.booleans()), pmu=maybe_bad(st.booleans()))
def test_create_vcpu(w, vcpu_id, el2, pmu):
    w.both(f"vm.create_vcpu({vcpu_id!r}, el2={el2!r}, pmu={pmu!r})",
           lambda: w.lib_vm.create_vcpu(vcpu_id, el2=el2, pmu=pmu),
           lambda: w.ref_vm.create_vcpu(vcpu_id, el2=el2, pmu=pmu), (vcpu_id, el2, pmu))


@FUZZ
@given(w=worlds, dev_type=maybe_bad(st.sampled_from([16, 16, 0, 15, 17, U32])),
       flags=maybe_bad(st.sampled_from([0, 0, 1, 2, 3, U32])))
def test_create_device(w, dev_type, flags):
    w.both(f"vm.create_device({dev_type!r}, {flags!r})",
           lambda: w.lib_vm.create_device(dev_type, flags),
           lambda: w.ref_vm.create_device(dev_type, flags), (dev_type, flags))


@FUZZ
@given(w=worlds, irq=maybe_bad(irq_words), level=maybe_bad(levels))
def test_irq_line(w, irq, level):
    w.both(f"vm.irq_line({irq!r}, {level!r})", lambda: w.lib_vm.irq_line(irq, level),
           lambda: w.ref_vm.irq_line(irq, level), (irq, level))


@FUZZ
@given(w=worlds, data=st.data())
def test_every_word_of_one_vcpu(w, data):
    # Exhaustive over the 16 types x the PPI/CPU numbers that matter, for vCPU 0's id, with
    # one drawn level: every (type, num) cell against the reference in one batch and one by one.
    level = data.draw(levels, label="level")
    words = [t << 24 | n for t in range(16) for n in (0, 1, 2, 3, 23, 27, 30, 63, 64, 127, 128,
                                                      0xFFFF)]
    lib_rc = w.lib_vm.irq_line_batch(words, [level] * len(words))
    ref_rc = w.ref_vm.irq_line_batch(words, [level] * len(words))
    assert lib_rc.tolist() == ref_rc
    assert w.snapshot(0) == w.snapshot(1)


class Seq(list):
    """A list subclass: irq_line_batch must take it as the plain sequence it is."""


def batch_args(draw):
    n = draw(st.integers(0, 40), label="n")
    shape = draw(st.sampled_from(["list", "tuple", "np_u32", "np_i64", "np_u64", "np_u8",
                                  "np_bool", "noncontig", "array_I", "Seq"]),
                 label="container")
    irqs = [draw(irq_words) for _ in range(n)]
    lvls = [draw(levels) for _ in range(n)]

    def box(values):
        if shape == "list":
            return list(values)
        if shape == "tuple":
            return tuple(values)
        if shape == "np_u32":
            return np.array(values, dtype=np.uint32)
        if shape == "np_i64":
            return np.array(values, dtype=np.int64)
        if shape == "np_u64":
            return np.array(values, dtype=np.uint64)
        if shape == "np_u8":
            return np.array([v & 0xFF for v in values], dtype=np.uint8)
        if shape == "np_bool":
            return np.array([bool(v & 1) for v in values], dtype=bool)
        if shape == "noncontig":
            return np.repeat(np.array(values, dtype=np.uint32), 2)[::2]
        if shape == "array_I":
            return array.array("I", values)
        return Seq(values)
    return box(irqs), box(lvls)


@FUZZ
@given(w=worlds, data=st.data())
def test_irq_line_batch_matches_one_by_one(w, data):
    irqs, lvls = batch_args(data.draw)
    as_ints = [int(x) for x in irqs], [int(x) for x in lvls]
    lo, lv, rv = w.both(f"vm.irq_line_batch(n={len(as_ints[0])})",
                        lambda: w.lib_vm.irq_line_batch(irqs, lvls),
                        lambda: w.ref_vm.irq_line_batch(*as_ints))
    assert lo[0] == "ok"
    assert lv.dtype == np.int32 and lv.shape == (len(as_ints[0]),)


BAD_BATCH = [
    # (irqs, levels, the documented error)
    ([0, 1], [1], ValueError),                     # lengths differ
    ([-1], [1], ValueError),                       # outside a __u32
    ([2**32], [1], ValueError),
    ([2**64], [1], ValueError),
    ([1], [-5], ValueError),
    ([2**63, 1], [1, 1], ValueError),              # numpy makes this float64
    ([2**64 - 1, 2**63], [1, 1], ValueError),
    ([[1, 2]], [[1, 1]], ValueError),              # 2-D
    (np.zeros((2, 2), np.uint32), np.zeros((2, 2), np.uint32), ValueError),
    (5, 1, ValueError),                            # 0-D
    ([1.0], [1], TypeError),                       # non-integer data
    ([1], [0.5], TypeError),
    (["3"], [1], TypeError),
    ([1, "a"], [1, 1], TypeError),
    (np.array([1, None], dtype=object), [1, 1], TypeError),
    (np.array([1.0]), np.array([1]), TypeError),
    ([3 + 0j], [1], TypeError),
]


@pytest.mark.parametrize("irqs, lvls, error", BAD_BATCH)
@pytest.mark.parametrize("prebuild", ["inited", "running", "dead"])
def test_irq_line_batch_misuse(irqs, lvls, error, prebuild):
    w = World("final", 0, prebuild)
    before = w.snapshot(0)
    with pytest.raises(error):
        w.lib_vm.irq_line_batch(irqs, lvls)
    assert w.snapshot(0) == before


# --- every irq word ----------------------------------------------------------------------------

IRQ_CONFIGS = ["nodev", "device", "inited"]
VCPU_IDS_SWEPT = (0, 1, 255, 256, 511)


def word_world(profile, config):
    """A VM with vCPU ids 0, 1, 255, 256, 511 in the given state, and the answer KVM_IRQ_LINE
    gives each word there, as a vectorised oracle (semantics.md section 6; the answers
    do not depend on the level or on earlier injections in these states)."""
    vm = gic5.Kvm(profile=profile).create_vm()
    for vid in VCPU_IDS_SWEPT:
        vm.create_vcpu(vid)
    if config != "nodev":
        dev = vm.create_device(16)
        if config == "inited":
            dev.set_attr(4, 0)
    nr = 64 if profile in ("final", "7.4") else 128
    exists = np.zeros(4096, dtype=bool)
    exists[list(VCPU_IDS_SWEPT)] = True
    gate = np.zeros(0x10000, dtype=bool)
    if profile == "v2":
        gate[:nr] = True                  # no USERSPACE_PPIS gate on v2
    elif config == "inited":
        gate[3] = True                    # USERSPACE_PPIS = {SW_PPI}
    ok_inject = 0 if config == "inited" or profile != "v2" else -errno.EBUSY

    def oracle(words):
        w = words.astype(np.uint64)
        t = (w >> 24) & 0xF
        vid = ((w >> 16) & 0xFF) | (((w >> 28) & 0xF) << 8)
        num = w & 0xFFFF
        ex = exists[vid]
        rc = np.full(words.shape, -errno.EINVAL, dtype=np.int32)
        if config == "nodev":
            rc[(t == 0) & ex & (num <= 1)] = 0
            rc[(t == 1) | (t == 2)] = -errno.ENXIO
        else:
            rc[t == 0] = -errno.ENXIO
            if config == "device":
                rc[t == 1] = -errno.EBUSY
            rc[(t == 2) & ex & (num < nr) & gate[num]] = ok_inject
            if config == "device" and profile in ("final", "7.4"):
                rc[t == 2] = -errno.EBUSY  # mainline 7.2: vgic_lazy_init before the checks
            if config == "inited" and profile == "7.4":
                rc[(t == 1) & (num < 32)] = 0  # 7.4: the 32 default SPIs, any vCPU field
        return rc
    return vm, oracle


def sweep(vm, oracle, words, level):
    rc = vm.irq_line_batch(words, np.full(words.shape, level, dtype=np.uint32))
    want = oracle(words)
    bad = np.flatnonzero(rc != want)
    assert not bad.size, [(hex(int(words[i])), int(rc[i]), int(want[i])) for i in bad[:10]]


EDGE_WORDS = np.array(sorted({(v2 << 28) | (t << 24) | (v << 16) | n
                              for v2 in (0, 1, 15) for t in range(16)
                              for v in (0, 1, 2, 255) for n in (0, 1, 2, 3, 4, 23, 27, 30, 63,
                                                                64, 127, 128, 0xFFFF)}
                             | {0, U32}), dtype=np.uint32)


@pytest.mark.parametrize("config", IRQ_CONFIGS)
@pytest.mark.parametrize("profile", PROFILES)
def test_irq_words_sampled(profile, config):
    # Every structured corner (all 16 types, vcpu2 fields 0/1/15, the PPI numbers that
    # matter), 0 and 0xffffffff, and 2**18 random words, each at levels 1, 0 and 0xffffffff.
    vm, oracle = word_world(profile, config)
    rng = np.random.default_rng(hash((profile, config)) & 0xFFFF)
    words = np.concatenate([EDGE_WORDS, rng.integers(0, 2**32, 1 << 18, dtype=np.uint64)
                            .astype(np.uint32)])
    for level in (1, 0, U32):
        sweep(vm, oracle, words, level)
    # Nothing the gate refuses became pending (on v2 there is no gate: every PPI may).
    for v in vm.vcpus:
        p = v.pending_ppis()
        if profile != "v2":
            assert p[1] == 0 and p[0] & ~(1 << 3) == 0, (v, p)


@pytest.mark.stress
@pytest.mark.parametrize("config", IRQ_CONFIGS)
def test_every_irq_word(config):
    """All 2**32 words on final when GIC5_STRESS_OPS >= 2**32; otherwise GIC5_STRESS_OPS
    words spread evenly over the whole space (stride, random offset per block)."""
    total = min(2**32, int(os.environ.get("GIC5_STRESS_OPS", str(10**7)).replace("_", "")))
    vm, oracle = word_world("final", config)
    stride = 2**32 // total
    block = 1 << 22
    rng = np.random.default_rng(7)
    for start in range(0, total, block):
        idx = np.arange(start, min(start + block, total), dtype=np.uint64) * stride
        if stride > 1:
            idx += rng.integers(0, stride, idx.shape, dtype=np.uint64)
        sweep(vm, oracle, idx.astype(np.uint32), 1)


# --- device attributes ------------------------------------------------------------------------

@pytest.mark.parametrize("prebuild", ["vcpus", "device", "inited", "ran", "running", "dead"])
@pytest.mark.parametrize("profile", PROFILES)
def test_attr_grid_exhaustive(profile, prebuild):
    # Every (group, attr) in 0..20 x 0..20 and the type limits, has/get/set, on the device and
    # on each vCPU, with a 16-byte, a 4-byte and a NULL buffer: the same answers and bytes.
    w = World(profile, 0, prebuild)
    if w.dev is None:
        w.create_device()
    values = list(range(21)) + [U32]
    targets = [("dev", w.dev)] if w.dev and w.dev[0] is not None else []
    targets += [("vcpu", pair) for pair in w.vcpus]
    for name, (lib_o, ref_o) in targets:
        for group in values:
            for attr in values + [U64]:
                w.both(f"{name}.has_attr({group}, {attr})", lambda: lib_o.has_attr(group, attr),
                       lambda: ref_o.has_attr(group, attr))
                for spec in (("bytearray", 16, 0x2000001B), ("bytearray", 4, 0x20000017),
                             ("none", 0, 0)):
                    for op in ("get", "set"):
                        w.both_buffer(f"{name}.{op}_attr({group}, {attr})", spec,
                                      lambda b: getattr(lib_o, f"{op}_attr")(group, attr, b),
                                      lambda b: getattr(ref_o, f"{op}_attr")(group, attr, b))
                        assert not w.diverged, f"{w.bug} with well-typed arguments"



@FUZZ
@given(w=worlds, op=st.sampled_from(["has", "get", "get", "set", "set"]),
       group=maybe_bad(groups), attr=maybe_bad(attrs), spec=buffers)
def test_device_attr(w, op, group, attr, spec):
    if w.dev is None:
        w.create_device()
        if w.dev[0] is None:
            return
    lib_dev, ref_dev = w.dev
    label = f"dev.{op}_attr({group!r}, {attr!r})"
    if op == "has":
        w.both(label, lambda: lib_dev.has_attr(group, attr), lambda: ref_dev.has_attr(group, attr),
               (group, attr))
        return
    w.both_buffer(label, spec, lambda b: getattr(lib_dev, f"{op}_attr")(group, attr, b),
                  lambda b: getattr(ref_dev, f"{op}_attr")(group, attr, b), (group, attr))


@FUZZ
@given(w=worlds, group=st.integers(0, 20), attr=st.integers(0, 20), spec=buffers)
def test_device_attr_grid(w, group, attr, spec):
    # The whole 0..20 x 0..20 grid with well-typed arguments (the drawn buffer varies).
    if w.dev is None:
        return
    lib_dev, ref_dev = w.dev
    for op in ("has", "get", "set"):
        if w.diverged:
            return
        if op == "has":
            w.both(f"dev.has_attr({group}, {attr})", lambda: lib_dev.has_attr(group, attr),
                   lambda: ref_dev.has_attr(group, attr))
        else:
            w.both_buffer(f"dev.{op}_attr({group}, {attr})", spec,
                          lambda b: getattr(lib_dev, f"{op}_attr")(group, attr, b),
                          lambda b: getattr(ref_dev, f"{op}_attr")(group, attr, b))


# --- vCPU attributes, lines, run ----------------------------------------------------------------

@FUZZ
@given(w=worlds, data=st.data(), op=st.sampled_from(["has", "get", "get", "set", "set", "set"]),
       group=maybe_bad(groups), attr=maybe_bad(attrs), spec=buffers)
def test_vcpu_attr(w, data, op, group, attr, spec):
    if not w.vcpus:
        return
    i = data.draw(st.integers(0, len(w.vcpus) - 1), label="vcpu")
    lib_v, ref_v = w.vcpus[i]
    label = f"vcpu.{op}_attr({group!r}, {attr!r})"
    if op == "has":
        w.both(label, lambda: lib_v.has_attr(group, attr), lambda: ref_v.has_attr(group, attr),
               (group, attr))
        return
    w.both_buffer(label, spec, lambda b: getattr(lib_v, f"{op}_attr")(group, attr, b),
                  lambda b: getattr(ref_v, f"{op}_attr")(group, attr, b), (group, attr))


@FUZZ
@given(w=worlds, data=st.data(), group=st.integers(0, 20), attr=st.integers(0, 20), spec=buffers)
def test_vcpu_attr_grid(w, data, group, attr, spec):
    if not w.vcpus:
        return
    lib_v, ref_v = w.vcpus[data.draw(st.integers(0, len(w.vcpus) - 1), label="vcpu")]
    for op in ("has", "get", "set"):
        if w.diverged:
            return
        if op == "has":
            w.both(f"vcpu.has_attr({group}, {attr})", lambda: lib_v.has_attr(group, attr),
                   lambda: ref_v.has_attr(group, attr))
        else:
            w.both_buffer(f"vcpu.{op}_attr({group}, {attr})", spec,
                          lambda b: getattr(lib_v, f"{op}_attr")(group, attr, b),
                          lambda b: getattr(ref_v, f"{op}_attr")(group, attr, b))


@FUZZ
@given(w=worlds, data=st.data(),
       name=maybe_bad(st.sampled_from(["vtimer", "ptimer", "hvtimer", "hptimer", "VTIMER", ""])),
       level=maybe_bad(st.sampled_from([0, 1, 2, True, False, U32])),
       pmu_level=maybe_bad(st.sampled_from([0, 1, 5])))
def test_kernel_lines(w, data, name, level, pmu_level):
    if not w.vcpus:
        return
    lib_v, ref_v = w.vcpus[data.draw(st.integers(0, len(w.vcpus) - 1), label="vcpu")]
    w.both(f"vcpu.timer_line({name!r}, {level!r})", lambda: lib_v.timer_line(name, level),
           lambda: ref_v.timer_line(name, level), (name, level))
    if w.diverged:
        return
    w.both(f"vcpu.pmu_line({pmu_level!r})", lambda: lib_v.pmu_line(pmu_level),
           lambda: ref_v.pmu_line(pmu_level), (pmu_level,))


@FUZZ
@given(w=worlds, data=st.data())
def test_run_enter_exit(w, data):
    if not w.vcpus:
        return
    i = data.draw(st.integers(0, len(w.vcpus) - 1), label="vcpu")
    lib_v, ref_v = w.vcpus[i]
    lctx, rctx = lib_v.run(), ref_v.run()
    lo, lcpu, rcpu = w.both(f"vcpu[{i}].run().__enter__()", lctx.__enter__, rctx.__enter__,
                            state_may_change_on=(errno.EBUSY, errno.EINVAL))
    if lo[0] == "ok":
        w.run = (lctx, rctx, lcpu, rcpu)
        w.both(f"vcpu[{i}] read while running", lambda: None, lambda: None)
        w.run = None
        w.both(f"vcpu[{i}] exit", lambda: lctx.__exit__(None, None, None) and None,
               lambda: rctx.__exit__(None, None, None) and None)
        # A CpuIf after its run() is over: RuntimeError (or UNDEF without a device) on both.
        for m, args in (("cdia", ()), ("read_ppi_enabler", (0,)), ("wfi", ())):
            w.both(f"stale cpu.{m}", lambda: getattr(lcpu, m)(*args),
                   lambda: getattr(rcpu, m)(*args))


# --- the guest's CPU interface ------------------------------------------------------------------

CPU_METHODS = {
    # name: strategies of its arguments (each may also be replaced by anything at all)
    "write_ppi_enabler": (st.sampled_from([0, 1, 2, -1]), st.integers(0, U64)),
    "read_ppi_enabler": (st.sampled_from([0, 1, 2, -1]),),
    "read_ppi_spendr": (st.sampled_from([0, 1, 2]),),
    "read_ppi_sactiver": (st.sampled_from([0, 1, 2]),),
    "write_ppi_spendr": (st.sampled_from([0, 1, 2]), st.integers(0, U64)),
    "write_ppi_cpendr": (st.sampled_from([0, 1, 2]), st.integers(0, U64)),
    "write_ppi_sactiver": (st.sampled_from([0, 1, 2]), st.integers(0, U64)),
    "write_ppi_cactiver": (st.sampled_from([0, 1, 2]), st.integers(0, U64)),
    "write_ppi_priority": (st.integers(-1, 130), st.integers(-1, 260)),
    "read_ppi_priority": (st.integers(-1, 130),),
    "write_cr0": (st.sampled_from([True, False, 0, 1, 2]),),
    "write_pcr": (st.integers(-1, 260),),
    "cdia": (),
    "cdeoi": (),
    "cddi": (st.sampled_from([0x20000003, 0x2000001B, 0x20000017, 0x20000040, 0x60000003, 3, 0,
                              U32]) | st.integers(0, U32),),
    "wfi": (),
}


@FUZZ
@given(w=st.builds(World, st.sampled_from(PROFILES), st.integers(0, len(HOSTS) - 1),
                   st.sampled_from(["running", "running", "running", "ran"])),
       data=st.data(), method=st.sampled_from(sorted(CPU_METHODS)), steps=st.integers(1, 6))
def test_cpuif(w, data, method, steps):
    if w.run is None and w.vcpus:
        w.enter(0)
    if w.run is None:
        return
    _, _, lcpu, rcpu = w.run
    vcpu_id = w.vcpus[0][1].vcpu_id
    for step in range(steps):
        if w.diverged:
            return
        if step:
            method = data.draw(st.sampled_from(sorted(CPU_METHODS)), label="method")
        args = tuple(data.draw(maybe_bad(s), label=f"arg{k}")
                     for k, s in enumerate(CPU_METHODS[method]))
        if data.draw(st.integers(0, 9), label="inject") == 0:
            w.both("inject SW_PPI", lambda: w.lib_vm.irq_line(2 << 24 | vcpu_id << 16 | 3, 1),
                   lambda: w.ref_vm.irq_line(2 << 24 | vcpu_id << 16 | 3, 1))
        w.both(f"cpu.{method}{args!r}", lambda: getattr(lcpu, method)(*args),
               lambda: getattr(rcpu, method)(*args), args)


@FUZZ
@given(w=worlds)
def test_inspection_never_raises(w):
    # Snapshots call every inspection method (on dead VMs too); they must agree and not raise.
    assert w.snapshot(0) == w.snapshot(1)
    for lib_v, _ in w.vcpus:
        assert isinstance(lib_v.cpu_lines(), tuple)


# --- surfaces checked against their documented contract -----------------------------------------

def is_index(value) -> bool:
    """An integer in Python's own sense (has __index__: int, bool, numpy integers)."""
    try:
        operator.index(value)
        return True
    except TypeError:
        return False


def expected_host(pmu, impl):
    """The errors Host(pmu, impl_ppis) may raise (a tuple), or () when it must succeed."""
    if not is_index(pmu):
        return (TypeError,)
    if impl is None:
        return ()
    if not isinstance(impl, (tuple, list)) or len(impl) != 2:
        return (TypeError,)
    found = set()
    for word_ in impl:
        if not is_index(word_):
            found.add(TypeError)
        elif not 0 <= word_ <= U64:
            found.add(ValueError)
    return tuple(found)   # both kinds wrong: either error is a right first answer


@FUZZ
@given(pmu=maybe_bad(st.booleans()),
       impl=st.none() | st.tuples(maybe_bad(st.integers(0, U64)), maybe_bad(st.integers(0, U64)))
       | st.lists(st.integers(0, U64), max_size=3) | st.sampled_from(WRONG_TYPES),
       profile=maybe_bad(st.sampled_from(list(PROFILES) + ["v1", "FINAL", ""])),
       host_kind=st.sampled_from(["host", "none", "wrong"]))
def test_host_and_kvm(pmu, impl, profile, host_kind):
    errors = expected_host(pmu, impl)
    if errors:
        with pytest.raises(errors):
            gic5.Host(pmu=pmu, impl_ppis=impl)
        return
    host = gic5.Host(pmu=pmu, impl_ppis=impl)
    base = 0x5C800008 if pmu else 0x5C000008
    assert host.impl_ppis == ((base, 0) if impl is None else tuple(int(w) for w in impl))
    arg = {"host": host, "none": None, "wrong": impl if impl is not None else 1}[host_kind]
    if host_kind == "wrong" or not isinstance(profile, str):
        want = TypeError
    elif profile not in PROFILES:
        want = ValueError
    else:
        want = None
    if want is not None:
        with pytest.raises(want):
            gic5.Kvm(host=arg, profile=profile)
        return
    vm = gic5.Kvm(host=arg, profile=profile).create_vm()
    used = host.impl_ppis if host_kind == "host" else (0x5C800008, 0)  # None: Host()
    # The VM's implemented set is the host's cut to the profile's PPI count (64 on final and 7.4).
    assert vm.profile == profile
    assert vm.impl_ppis == (used[0], 0 if profile in ("final", "7.4") else used[1])


@FUZZ
@given(irq_type=maybe_bad(st.integers(-1, 16)), vcpu_id=maybe_bad(st.integers(-1, 4097)),
       irq_id=maybe_bad(st.integers(-1, 0x10000)))
def test_irq_word(irq_type, vcpu_id, irq_id):
    args = (irq_type, vcpu_id, irq_id)
    if any(isinstance(a, bool) or not isinstance(a, int) for a in args):
        with pytest.raises(TypeError):
            uapi.irq_word(*args)
        return
    if not (0 <= irq_type <= 15 and 0 <= vcpu_id <= 4095 and 0 <= irq_id <= 0xFFFF):
        with pytest.raises(ValueError):
            uapi.irq_word(*args)
        return
    w = uapi.irq_word(*args)
    # The kernel's decode gives the fields back (vcpu2 field included).
    assert (w >> 24) & 0xF == irq_type and w & 0xFFFF == irq_id
    assert ((w >> 16) & 0xFF) | (((w >> 28) & 0xF) << 8) == vcpu_id and 0 <= w <= U32


@FUZZ
@given(rc=maybe_bad(st.integers(-200, 200)))
def test_check(rc):
    if isinstance(rc, (float, np.floating)):
        return  # see test_check_refuses_floats
    if not isinstance(rc, (int, np.integer, np.bool_)):
        with pytest.raises(TypeError):
            gic5.check(rc)
        return
    rc = int(rc)
    if not -2**31 <= rc < 2**31:
        with pytest.raises(OverflowError):
            gic5.check(rc)
    elif rc < -4095:
        with pytest.raises(ValueError):  # not an errno (MAX_ERRNO is 4095)
            gic5.check(rc)
    elif rc >= 0:
        assert gic5.check(rc) == rc
    else:
        with pytest.raises(OSError) as info:
            gic5.check(rc)
        assert info.value.errno == -rc


# Found by this suite, fixed in errors.pyx: INT_MIN was negated into a negative errno, a float
# was truncated.
def test_check_int_min():
    with pytest.raises(ValueError):
        gic5.check(-2**31)


def test_check_refuses_floats():
    with pytest.raises(TypeError):
        gic5.check(1.5)


STORM_ARGS = {
    # parameter: (a good value, strategy of bad ones, the documented error for them)
    "vcpus_per_vm": (2, st.sampled_from([0, -1, 3, 2**31, 2**63]), (ValueError, OverflowError)),
    "injections": (100, st.sampled_from([-1, 2**64, -2**63]), (OverflowError,)),
    "pattern": ("uniform", st.sampled_from(["", "UNIFORM", "random"]), (ValueError,)),
    "seed": (1, st.sampled_from([-1, 2**64]), (OverflowError,)),
    "service_every": (4, st.sampled_from([0, -3, 2**31]), (ValueError, OverflowError)),
}


@FUZZ
@given(param=st.sampled_from(sorted(STORM_ARGS)), data=st.data(),
       wrong=st.sampled_from(["3", None, [3], b"3", object()]), use_wrong=st.booleans())
def test_storm_run_arguments(param, data, wrong, use_wrong):
    vms = build_vms(StormConfig(vms=1, vcpus=2))
    kwargs = {k: v[0] for k, v in STORM_ARGS.items()}
    good, bad, errors = STORM_ARGS[param]
    if use_wrong and not (param == "pattern" and wrong is None):
        kwargs[param] = wrong
        errors = (TypeError, ValueError)   # pattern: ValueError names the known patterns
        if param == "pattern" and isinstance(wrong, bytes):
            errors = (TypeError, ValueError)
    else:
        kwargs[param] = data.draw(bad, label="bad")
    vcpus_per_vm = kwargs.pop("vcpus_per_vm")
    injections = kwargs.pop("injections")
    before = [v.pending_ppis() for v in vms[0].vcpus]
    with pytest.raises(errors):
        gic5core.storm_run(vms, vcpus_per_vm, injections, **kwargs)
    assert [v.pending_ppis() for v in vms[0].vcpus] == before


@pytest.mark.parametrize("cores, error", [
    ((), ValueError), (None, TypeError), ("vm", TypeError), ([], ValueError), ([None], TypeError),
    ([1], TypeError), ([object()], TypeError),
])
def test_storm_run_cores(cores, error):
    with pytest.raises(error):
        gic5core.storm_run(cores, 1, 10)


@pytest.mark.parametrize("make_truth, error", [
    (lambda: np.zeros(1, np.uint8), ValueError),                  # too short
    (lambda: np.zeros(3, np.uint8), ValueError),                  # too long
    (lambda: np.zeros(2, np.int32), ValueError),                  # wrong dtype
    (lambda: np.zeros(4, np.uint8)[::2], ValueError),             # not contiguous
    (lambda: np.zeros((1, 2), np.uint8), ValueError),             # 2-D
    (lambda: [0, 0], TypeError),                                  # no buffer
    (lambda: "ab", TypeError),
    (lambda: 0, TypeError),
])
def test_storm_run_truth(make_truth, error):
    vm, = build_vms(StormConfig(vms=1, vcpus=2))
    with pytest.raises(error):
        gic5core.storm_run([vm], 2, 10, truth=make_truth())


def test_storm_run_read_only_truth_bytes():
    vm, = build_vms(StormConfig(vms=1, vcpus=2))
    with pytest.raises((ValueError, TypeError)):
        gic5core.storm_run([vm], 2, 10, truth=b"\0\0")


@pytest.mark.parametrize("param", ["vcpus_per_vm", "injections", "seed", "service_every",
                                   "event_base", "event_total"])
def test_storm_run_refuses_floats(param):
    vm, = build_vms(StormConfig(vms=1, vcpus=2))
    kwargs = dict(vcpus_per_vm=2, injections=10, seed=1, service_every=4, event_base=0,
                  event_total=0)
    kwargs[param] = float(kwargs[param]) + 0.5 if param != "event_total" else 10.5
    with pytest.raises(TypeError):
        gic5core.storm_run([vm], **kwargs)


@pytest.mark.parametrize("irqs, error", [
    (np.zeros(3, np.float64), ValueError), (np.zeros(3, np.int32), ValueError),
    ([1, 2], TypeError), (np.zeros(4, np.uint32)[::2], ValueError),
    (None, TypeError),
])
def test_bare_inject_loop_arguments(irqs, error):
    vm, = build_vms(StormConfig(vms=1, vcpus=2))
    with pytest.raises(error):
        gic5core.bare_inject_loop(vm, irqs)


# --- interpreter crashes and model escapes (known core bugs), in a subprocess -------------------

def _python(code: str) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=120, cwd=tempfile.gettempdir())
    return p.returncode, p.stdout + p.stderr


def test_cpuif_of_none_is_a_type_error():
    rc, out = _python("""
        import gic5
        try:
            gic5.CpuIf(None, 0)
        except TypeError:
            print("ok")
        """)
    assert rc == 0 and "ok" in out, (rc, out)


def test_bare_inject_loop_of_none_is_a_type_error():
    rc, out = _python("""
        import numpy as np, gic5core
        try:
            gic5core.bare_inject_loop(None, np.arange(64, dtype=np.uint32) | 0x02000000)
        except TypeError:
            print("ok")
        """)
    assert rc == 0 and "ok" in out, (rc, out)


# Found by this suite, fixed in cpuif.pyx (CpuIf.enter refuses an image that is not loaded).
def test_hand_built_cpuif_cannot_act_outside_run():
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0)
    vm.create_device(16).set_attr(4, 0)
    with vcpu.run() as cpu:
        cpu.write_cr0(True)
        cpu.write_pcr(31)
        cpu.write_ppi_enabler(0, 1 << 3)
    vm.irq_line(uapi.irq_word(2, 0, 3), 1)
    rogue = gic5.CpuIf(vm, 0)
    with pytest.raises(RuntimeError):
        rogue.wfi()
    with vcpu.run() as cpu:
        assert cpu.cdia() == 0x20000003    # the edge must still be there
