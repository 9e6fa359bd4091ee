#!/usr/bin/env python3
"""Coverage-guided fuzzing of gic5's compiled entry points with atheris (libFuzzer).

Run (a private venv keeps atheris out of the project's environment; atheris ships manylinux
wheels for CPython 3.11, no compiler needed; --system-site-packages lets the venv see the
gic5 installed in the base interpreter -- inside a venv that has gic5, just pip install
atheris there):

    python3 -m venv --system-site-packages /tmp/atheris-venv
    /tmp/atheris-venv/bin/pip install atheris
    /tmp/atheris-venv/bin/python fuzz/atheris_gic5.py -atheris_runs=100000

Any libFuzzer flag works after the script name (-max_total_time=600, -jobs=2, a corpus
directory, -runs=...). ``-atheris_runs=N`` stops after N inputs. A failing input is written
to ./crash-<sha1>; replay it with ``python fuzz/atheris_gic5.py crash-<sha1>``.

Rules this harness keeps:
- One input is one short program: the first bytes pick a profile, a host and how far the VM
  is built; the rest is a sequence of calls, each decoded from the bytes: KVM_IRQ_LINE
  (any u32 word and level), irq_line_batch (arrays cut from the input), device and vCPU
  has/get/set_attr (any u32 group, u64 attr, a buffer of any size, writable or read-only,
  or NULL), run enter/exit, every CpuIf method with any argument, timer/PMU lines, and
  storm_run on small configurations (at most 2 VMs x 4 vCPUs, 2000 events).
- Every call except the storm is also made on the pure-Python reference model
  (tests/reference.py); a different outcome, different buffer bytes, or a different state
  afterwards raises AssertionError, which libFuzzer reports as a crash with its input.
  The storm's own accounting (storm.pyx) must hold on final.
- The reference and gic5's Python front end are instrumented for coverage
  (atheris.instrument_imports); the Cython core is not (that needs a clang
  -fsanitize=fuzzer-no-link build), so the feedback comes from the paths the front end and
  the oracle take, which mirror the core's branches.
- The outcome classifier, the observable snapshot and the known discrepancies (KNOWN) are
  tests/differential.py's, shared with the state machine and the Hypothesis fuzz tests.
"""

from __future__ import annotations

import errno
import pathlib
import sys

import atheris

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

with atheris.instrument_imports():
    import numpy as np

    import gic5
    import gic5core
    import reference as ref
    from differential import cpu_view, known, outcome, vcpu_view
    from gic5.storm import StormConfig, build_vms

PROFILES = ("v2", "v3", "final", "7.4")
HOSTS = [(True, None), (False, None), (True, (2**64 - 1, 2**64 - 1)), (True, (0x48800000, 5))]
PREBUILDS = ["bare", "vcpus", "device", "inited", "ran", "running"]
CPU_METHODS = [
    ("write_ppi_enabler", 2), ("read_ppi_enabler", 1), ("read_ppi_spendr", 1),
    ("read_ppi_sactiver", 1), ("write_ppi_spendr", 2), ("write_ppi_cpendr", 2),
    ("write_ppi_sactiver", 2), ("write_ppi_cactiver", 2), ("write_ppi_priority", 2),
    ("read_ppi_priority", 1), ("write_cr0", 1), ("write_pcr", 1), ("cdia", 0), ("cdeoi", 0),
    ("cddi", 1), ("wfi", 0),
]
MAX_CALLS = 24

_storm_vms = None


def call(fn):
    # tests/differential.py's classifier: every harness compares the same way (an exception
    # no call may raise propagates, and libFuzzer reports it with its input).
    return outcome(fn)


class Pair:
    def __init__(self, fdp):
        self.profile = PROFILES[fdp.ConsumeIntInRange(0, len(PROFILES) - 1)]
        pmu, impl = HOSTS[fdp.ConsumeIntInRange(0, len(HOSTS) - 1)]
        prebuild = PREBUILDS[fdp.ConsumeIntInRange(0, len(PREBUILDS) - 1)]
        self.lib = gic5.Kvm(gic5.Host(pmu=pmu, impl_ppis=impl), profile=self.profile).create_vm()
        self.ref = ref.RefKvm(self.profile, host_pmu=pmu, impl_ppis=impl).create_vm()
        self.vcpus, self.dev, self.run = [], None, None
        if prebuild == "bare":
            return
        for vid, p in ((0, False), (1, pmu)):
            self.same("create_vcpu", lambda s: s.create_vcpu(vid, pmu=p), keep="vcpu")
        if prebuild in ("device", "inited", "ran", "running"):
            self.same("create_device", lambda s: s.create_device(16), keep="dev")
            if self.profile == "7.4" and self.dev and fdp.ConsumeIntInRange(0, 7):
                base = (0x8000000).to_bytes(8, sys.byteorder)  # the IRS base a 7.4 VMM sets
                self.both("irs base", lambda: self.dev[0].set_attr(0, 6, base),
                          lambda: self.dev[1].set_attr(0, 6, base))
        if prebuild in ("inited", "ran", "running") and self.dev:
            self.both("init", lambda: self.dev[0].set_attr(4, 0), lambda: self.dev[1].set_attr(4, 0))
            if pmu and len(self.vcpus) > 1:
                self.both("pmu init", lambda: self.vcpus[1][0].set_attr(0, 1),
                          lambda: self.vcpus[1][1].set_attr(0, 1))
        if prebuild in ("ran", "running") and self.vcpus:
            self.enter(0)
            if prebuild == "ran" and self.run:
                self.exit()

    def same(self, label, fn, keep=None):
        (lo, lv), (ro, rv) = call(lambda: fn(self.lib)), call(lambda: fn(self.ref))
        assert lo == ro, (self.profile, label, lo, ro)
        if lo[0] == "ok" and keep == "vcpu":
            self.vcpus.append((lv, rv))
        if lo[0] == "ok" and keep == "dev" and lv is not None:
            self.dev = (lv, rv)

    def snapshot(self, side):
        vm = (self.lib, self.ref)[side]
        flags = (vm.dead, vm.initialised) + ((vm.has_device, vm.nr_vcpus) if side == 0
                                             else (vm.device is not None, len(vm.vcpus)))
        s = [flags, vm.exposed_ppis(), vm.userspace_ppis()]
        s += [vcpu_view(pair[side]) for pair in self.vcpus]
        if self.run:
            s.append(cpu_view(self.run[2 + side]))
        return s

    def both(self, label, lib_fn, ref_fn, may_change=()):
        before = self.snapshot(0)
        (lo, lv), (ro, rv) = call(lib_fn), call(ref_fn)
        if lo != ro and not known(label, lo, ro):
            raise AssertionError(f"{self.profile}: {label}: gic5 {lo} != reference {ro}")
        after = self.snapshot(0)
        if after != self.snapshot(1):
            raise AssertionError(f"{self.profile}: {label}: state differs\n{after}\n"
                                 f"{self.snapshot(1)}")
        if lo[0] == "raise" and not (lo[1][0] == "OSError" and lo[1][1] in may_change) \
                and after != before:
            raise AssertionError(f"{self.profile}: {label} failed ({lo}) yet changed state")
        return lo, lv, rv

    def enter(self, i):
        lctx, rctx = self.vcpus[i][0].run(), self.vcpus[i][1].run()
        lo, lcpu, rcpu = self.both(f"run({i})", lctx.__enter__, rctx.__enter__,
                                   may_change=(errno.EBUSY, errno.EINVAL, errno.ENXIO))
        if lo[0] == "ok":
            self.run = (lctx, rctx, lcpu, rcpu)

    def exit(self):
        lctx, rctx, _, _ = self.run
        self.run = None
        self.both("exit", lambda: lctx.__exit__(None, None, None) and None,
                  lambda: rctx.__exit__(None, None, None) and None)


def buffer(fdp):
    size = fdp.ConsumeIntInRange(0, 24)
    data = fdp.ConsumeBytes(size)
    data += b"\xa5" * (size - len(data))
    k = fdp.ConsumeIntInRange(0, 5)
    if k == 0:
        return lambda: None
    if k == 1:
        return lambda: bytes(data)                                   # read-only
    if k == 2:
        return lambda: np.frombuffer(bytearray(data), dtype=np.uint8).copy()
    if k == 3:
        return lambda: memoryview(bytes(data))                       # read-only view
    return lambda: bytearray(data)


def one_call(p, fdp):
    op = fdp.ConsumeIntInRange(0, 11)
    if op <= 2:
        w, lv = fdp.ConsumeIntInRange(0, 2**32 - 1), fdp.ConsumeIntInRange(0, 2**32 - 1)
        if op == 0:  # aim at an existing vCPU's SW_PPI often
            w = (w & ~0x0FFF0000 & ~0xF0000000) | (2 << 24) | (w & 0x10000)
        p.both(f"irq_line({w:#x}, {lv:#x})", lambda: p.lib.irq_line(w, lv),
               lambda: p.ref.irq_line(w, lv))
    elif op == 3:
        n = fdp.ConsumeIntInRange(0, 16)
        ws = [fdp.ConsumeIntInRange(0, 2**32 - 1) for _ in range(n)]
        ls = [fdp.ConsumeIntInRange(0, 3) for _ in range(n)]
        p.both(f"irq_line_batch({n})", lambda: p.lib.irq_line_batch(np.array(ws, np.uint32), ls),
               lambda: p.ref.irq_line_batch(ws, ls))
    elif op in (4, 5):
        target = ("dev", p.dev) if op == 4 and p.dev else \
            ("vcpu", p.vcpus[fdp.ConsumeIntInRange(0, len(p.vcpus) - 1)]) if p.vcpus else None
        if target is None:
            return
        name, (lo_, ro_) = target
        g, a = fdp.ConsumeIntInRange(0, 2**32 - 1), fdp.ConsumeIntInRange(0, 2**64 - 1)
        if fdp.ConsumeBool():
            g, a = g & 0xF, a & 0xF
        verb = ("has", "get", "set")[fdp.ConsumeIntInRange(0, 2)]
        mk = buffer(fdp)
        lb, rb = mk(), mk()
        if verb == "has":
            p.both(f"{name}.has_attr({g}, {a})", lambda: lo_.has_attr(g, a),
                   lambda: ro_.has_attr(g, a))
        else:
            p.both(f"{name}.{verb}_attr({g}, {a})",
                   lambda: getattr(lo_, f"{verb}_attr")(g, a, lb),
                   lambda: getattr(ro_, f"{verb}_attr")(g, a, rb))
            if lb is not None and bytes(memoryview(lb).cast("B")) != bytes(memoryview(rb).cast("B")):
                raise AssertionError(f"{name}.{verb}_attr({g}, {a}): buffer differs")
    elif op == 6 and p.vcpus:
        if p.run:
            p.exit()
        else:
            p.enter(fdp.ConsumeIntInRange(0, len(p.vcpus) - 1))
    elif op in (7, 8, 9) and p.run:
        name, nargs = CPU_METHODS[fdp.ConsumeIntInRange(0, len(CPU_METHODS) - 1)]
        args = []
        for _ in range(nargs):
            args.append(fdp.ConsumeIntInRange(0, 2**64 - 1) if fdp.ConsumeBool()
                        else fdp.ConsumeIntInRange(-1, 260))
        lcpu, rcpu = p.run[2], p.run[3]
        p.both(f"cpu.{name}{tuple(args)}", lambda: getattr(lcpu, name)(*args),
               lambda: getattr(rcpu, name)(*args))
    elif op == 10 and p.vcpus:
        i = fdp.ConsumeIntInRange(0, len(p.vcpus) - 1)
        t = ("vtimer", "ptimer", "hvtimer")[fdp.ConsumeIntInRange(0, 2)]
        lv = fdp.ConsumeIntInRange(0, 2)
        p.both(f"timer_line({t}, {lv})", lambda: p.vcpus[i][0].timer_line(t, lv),
               lambda: p.vcpus[i][1].timer_line(t, lv))
        p.both(f"pmu_line({lv})", lambda: p.vcpus[i][0].pmu_line(lv),
               lambda: p.vcpus[i][1].pmu_line(lv))
    elif op == 11:
        storm(fdp)


def storm(fdp):
    global _storm_vms
    if _storm_vms is None:
        _storm_vms = build_vms(StormConfig(vms=2, vcpus=4))
    nvms = fdp.ConsumeIntInRange(1, 2)
    per_vm = fdp.ConsumeIntInRange(1, 4)
    pattern = ("uniform", "sorted", "burst")[fdp.ConsumeIntInRange(0, 2)]
    c = gic5core.storm_run(_storm_vms[:nvms], per_vm, fdp.ConsumeIntInRange(0, 2000), pattern,
                           fdp.ConsumeIntInRange(0, 2**64 - 1), fdp.ConsumeIntInRange(1, 8))
    assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"], c
    assert not (c["lost"] or c["redelivered"] or c["model_mismatch"] or c["level_stuck"]
                or c["level_violations"]), c


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    p = Pair(fdp)
    for _ in range(MAX_CALLS):
        if fdp.remaining_bytes() == 0:
            break
        one_call(p, fdp)
    if p.run:
        p.exit()


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
