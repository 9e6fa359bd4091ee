"""Threads building a VM at once: every errno is one a serial order of the calls allows.

Rules this file keeps (its shared pieces are tests/concurrency_common.py's):
- Each call is bracketed by a global sequence number before and after it; for each outcome
  the test enumerates the values the VM's monotone facts (device, initialised, dead, vCPU n
  exists, vCPU n has run) could have had inside the bracket and requires the outcome to be
  what the kernel answers for one of them (docs/semantics.md sections 3, 4, 6, 8).
- The races happened: both sides of each order-dependent answer are seen, and the checker
  itself refuses a record with a wrong errno.
"""

from __future__ import annotations

import os
import errno
import itertools
import sys
import threading
import traceback
from dataclasses import dataclass

import numpy as np

import gic5
from gic5 import uapi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from concurrency_common import (  # noqa: E402
    CTRL_INIT, GRP_CTRL, SW, TIMER_CTRL, TIMER_V5, USERSPACE_PPIS, V5, WAIT_S,
    outcome, word,
)

# --- racing construction: every errno has a serial order --------------------------------------

INF = float("inf")


@dataclass
class Rec:
    s: int
    e: int
    thread: int
    op: str
    arg: object
    out: object


class Episode:
    """Threads race through building one VM; every call is recorded with its bracket."""

    OPS = ("create_vcpu", "create_vcpu", "create_device", "create_device_test", "init", "init",
           "get_upp", "timer_get", "run", "run", "irq_sw", "irq_sw", "irq_gated", "irq_spi")

    def __init__(self, seed, nthreads=4, nops=14):
        self.seed = seed
        self.vm = gic5.Kvm(profile="final").create_vm()
        self.seq = itertools.count()
        self.recs: list[Rec] = []
        self.lock = threading.Lock()
        self.nthreads, self.nops = nthreads, nops

    def call(self, t, op, arg, fn, *args) -> Rec:
        s = next(self.seq)
        out = outcome(fn, *args)
        e = next(self.seq)
        rec = Rec(s, e, t, op, arg, out)
        with self.lock:
            self.recs.append(rec)
        return rec

    def body(self, t):
        rng = np.random.default_rng(self.seed * 31 + t)
        vm = self.vm
        for _ in range(self.nops):
            op = self.OPS[int(rng.integers(0, len(self.OPS)))]
            vid = int(rng.choice([0, 1, 2, 3, 3, 512]))
            if op == "create_vcpu":
                self.call(t, op, vid, vm.create_vcpu, vid)
            elif op == "create_device":
                self.call(t, op, None, vm.create_device, V5)
            elif op == "create_device_test":
                self.call(t, op, None, vm.create_device, V5, uapi.KVM_CREATE_DEVICE_TEST)
            elif op == "init" and vm.device is not None:
                self.call(t, op, None, vm.device.set_attr, GRP_CTRL, CTRL_INIT)
            elif op == "get_upp" and vm.device is not None:
                buf = bytearray(16)
                rec = self.call(t, op, None, vm.device.get_attr, GRP_CTRL, USERSPACE_PPIS, buf)
                if rec.out == 0:
                    rec.out = ("upp", int.from_bytes(buf[:8], sys.byteorder),
                               int.from_bytes(buf[8:], sys.byteorder))
            elif op == "timer_get" and vm.vcpus:
                vcpus = vm.vcpus  # one snapshot: another thread may add a vCPU meanwhile
                v = vcpus[int(rng.integers(0, len(vcpus)))]
                buf = bytearray(4)
                rec = self.call(t, op, v.vcpu_id, v.get_attr, TIMER_CTRL, 0, buf)
                if rec.out == 0:
                    rec.out = ("timer", int.from_bytes(buf, sys.byteorder))
            elif op == "run" and vm.vcpus:
                vcpus = vm.vcpus  # one snapshot, as above
                v = vcpus[int(rng.integers(0, len(vcpus)))]
                ctx = v.run()
                rec = self.call(t, "run_enter", v.vcpu_id, ctx.__enter__)
                if isinstance(rec.out, tuple):
                    # Entered: the guest does a little (the front end sets vm.device only
                    # after the core has the device, so no UNDEF here), then the exit.
                    cpu = rec.out[1]
                    if vm.device is not None:
                        outcome(cpu.write_cr0, True)
                        outcome(cpu.cdia)
                    def leave(ctx=ctx):
                        ctx.__exit__(None, None, None)
                    self.call(t, "run_exit", v.vcpu_id, leave)
            elif op == "irq_sw":
                self.call(t, op, vid, vm.irq_line, word(2, vid, SW), 1)
            elif op == "irq_gated":
                self.call(t, op, vid, vm.irq_line, word(2, vid, 27), 1)
            elif op == "irq_spi":
                self.call(t, op, None, vm.irq_line, word(1, 0, 32), 1)

    def run(self):
        barrier = threading.Barrier(self.nthreads)
        errors = []

        def go(t):
            try:
                barrier.wait(timeout=WAIT_S)
                self.body(t)
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=go, args=(t,)) for t in range(self.nthreads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(WAIT_S)
        assert not any(th.is_alive() for th in threads), "episode threads hung"
        assert not errors, errors[0]
        self.recs.sort(key=lambda r: r.s)
        return self.recs


def _window(recs, pred):
    """A monotone fact became true somewhere in [lo, hi]: lo = the earliest start of a call
    that establishes it, hi = the earliest end of one (the first such call to take effect
    ends no later). (INF, INF): it never became true."""
    rs = [r for r in recs if pred(r)]
    if not rs:
        return (INF, INF)
    return (min(r.s for r in rs), min(r.e for r in rs))


def _entered(r):
    return r.op == "run_enter" and isinstance(r.out, tuple)


def check_serial_order(recs, vm):
    """Every outcome must be the kernel's answer for some value the VM's facts could have
    had during the call (semantics.md sections 3, 4, 6, 8; final, no el2/PMU vCPUs)."""
    facts = {
        "device": _window(recs, lambda r: r.op == "create_device" and isinstance(r.out, tuple)),
        "init": _window(recs, lambda r: r.op == "init" and r.out == 0),
        "dead": _window(recs, lambda r: r.op == "run_enter" and r.out == -errno.EBUSY),
        "ran": _window(recs, _entered),
    }
    for vid in (0, 1, 2, 3):
        facts[f"vcpu{vid}"] = _window(recs, lambda r, v=vid: r.op == "create_vcpu" and r.arg == v
                                      and isinstance(r.out, tuple))
        facts[f"hasrun{vid}"] = _window(recs, lambda r, v=vid: _entered(r) and r.arg == v)
    # run() blocks: the vCPU may be inside run() from its enter's start to its exit's end,
    # and surely is from the enter's end to the exit's start.
    blocks = []
    for r in recs:
        if _entered(r):
            ex = [x for x in recs if x.op == "run_exit" and x.arg == r.arg and x.thread == r.thread
                  and x.s > r.e]
            first = min(ex, key=lambda x: x.s) if ex else None
            blocks.append((r, r.s, r.e, first.s if first else INF, first.e if first else INF))

    def possible(name, r):
        lo, hi = facts[name]
        vals = []
        if hi > r.s:
            vals.append(False)   # it may still have been false at some point in the call
        if lo < r.e:
            vals.append(True)    # it may already have been true
        return vals

    def running_possible(r, vid=None):
        vals = {False}
        for b, may_s, must_s, must_e, may_e in blocks:
            if b is r or (vid is not None and b.arg != vid):
                continue
            if may_s < r.e and may_e > r.s:
                vals.add(True)
            if must_s < r.s and must_e > r.e:
                vals.discard(False)   # inside run() for the whole call
        return sorted(vals)

    def answers(r):
        names = ["dead", "device", "init", "ran"]
        vid = r.arg if isinstance(r.arg, int) and r.arg < 4 else None
        if vid is not None:
            names += [f"vcpu{vid}", f"hasrun{vid}"]
        outs = set()
        for combo in itertools.product(*(possible(n, r) for n in names)):
            f = dict(zip(names, combo, strict=True))
            if r.op == "create_device":
                runnings = running_possible(r)
            elif r.op == "run_enter":
                runnings = running_possible(r, vid)
            else:
                runnings = [False]
            for running in runnings:
                outs.add(kernel_answer(r, f, running))
        return outs

    def kernel_answer(r, f, running):
        dead, dev, init = f["dead"], f["device"], f["init"]
        if r.op == "create_vcpu":
            if dead:
                return -errno.EIO
            if r.arg >= 512:
                return -errno.EINVAL
            if init:
                return -errno.EBUSY
            return -errno.EEXIST if f[f"vcpu{r.arg}"] else "created"
        if r.op == "create_device":
            if dead:
                return -errno.EIO
            if running:
                return -errno.EBUSY
            if dev:
                return -errno.EEXIST
            return -errno.EBUSY if f["ran"] else "created"
        if r.op == "create_device_test":
            return -errno.EIO if dead else 0
        if r.op == "init":
            return -errno.EIO if dead else 0
        if r.op == "get_upp":
            return -errno.EIO if dead else ("upp", 0x8 if init else 0, 0)
        if r.op == "timer_get":
            return -errno.EIO if dead else ("timer", TIMER_V5[0] if dev else 27)
        if r.op in ("irq_sw", "irq_gated"):
            if dead:
                return -errno.EIO
            if not dev:
                return -errno.ENXIO
            if not init:
                return -errno.EBUSY    # final: vgic_lazy_init first (mainline 7.2, 1a8685ed)
            if r.arg >= 512 or not f[f"vcpu{r.arg}"]:
                return -errno.EINVAL
            if r.op == "irq_gated":
                return -errno.EINVAL   # the USERSPACE_PPIS gate
            return 0
        if r.op == "irq_spi":
            if dead:
                return -errno.EIO
            if not dev:
                return -errno.ENXIO
            return -errno.EINVAL if init else -errno.EBUSY
        if r.op == "run_enter":
            if dead:
                return -errno.EIO
            if running:
                return "RuntimeError"
            if not f[f"hasrun{r.arg}"] and dev and not init:
                return -errno.EBUSY     # the VM dies
            return "entered"
        raise AssertionError(r.op)

    def normal(r):
        if r.op in ("create_vcpu", "create_device") and isinstance(r.out, tuple):
            return "created"
        if r.op == "run_enter" and isinstance(r.out, tuple):
            return "entered"
        return r.out

    problems = []
    for r in recs:
        if r.op == "run_exit":
            if r.out != 0:
                problems.append(f"run exit -> {r.out}")
            continue
        allowed = answers(r)
        if normal(r) not in allowed:
            problems.append(f"{r.op}({r.arg}) [{r.s},{r.e}] -> {normal(r)!r}; "
                            f"possible: {sorted(map(repr, allowed))}")
    # Uniqueness: one vCPU per id, one device; and the VM's end state matches the record.
    for vid in (0, 1, 2, 3):
        n = sum(1 for r in recs if r.op == "create_vcpu" and r.arg == vid and normal(r) == "created")
        if n > 1:
            problems.append(f"vCPU {vid} created {n} times")
    ndev = sum(1 for r in recs if r.op == "create_device" and normal(r) == "created")
    if ndev > 1:
        problems.append(f"{ndev} devices created")
    if vm.dead != (facts["dead"][0] < INF) or vm.has_device != (ndev == 1) \
            or vm.initialised != (facts["init"][0] < INF):
        problems.append(f"end state {vm!r} does not match the calls")
    for v in vm.vcpus:
        p = v.pending_ppis()
        if p[1] or p[0] & ~(1 << SW):
            problems.append(f"vCPU {v.vcpu_id} pending {p}: the gate let a PPI through")
    return problems


def test_errnos_have_a_serial_order(fast_switching):
    outcomes = set()
    for seed in range(200):
        ep = Episode(seed)
        recs = ep.run()
        problems = check_serial_order(recs, ep.vm)
        assert not problems, f"episode {seed}:\n" + "\n".join(problems) + "\ncalls:\n" + \
            "\n".join(f"  t{r.thread} [{r.s},{r.e}] {r.op}({r.arg}) -> {r.out!r}" for r in recs)
        outcomes.update((r.op, r.out if not isinstance(r.out, tuple) else r.out[0])
                        for r in recs)
    # The races actually happened: both sides of each order-dependent answer were seen.
    for needed in [("create_vcpu", -errno.EBUSY), ("create_vcpu", "value"),
                   ("irq_sw", 0), ("irq_sw", -errno.EBUSY), ("irq_sw", -errno.ENXIO),
                   ("run_enter", -errno.EBUSY), ("run_enter", -errno.EIO),
                   ("create_device", -errno.EEXIST)]:
        assert needed in outcomes, needed


def test_serial_order_checker_catches_a_wrong_errno():
    # The checker itself can fail: the same record with one outcome changed is refused.
    recs = [Rec(0, 1, 0, "create_vcpu", 0, ("value", None)),
            Rec(2, 3, 0, "irq_sw", 0, -errno.ENXIO)]
    vm = gic5.Kvm().create_vm()
    vm.create_vcpu(0)
    assert check_serial_order(recs, vm) == []
    bad = [recs[0], Rec(2, 3, 0, "irq_sw", 0, -errno.EINVAL)]   # no device: must be ENXIO
    assert check_serial_order(bad, vm)
    late = [Rec(0, 1, 0, "create_vcpu", 0, ("value", None)),
            Rec(2, 3, 1, "create_vcpu", 0, ("value", None))]  # the same id twice
    assert check_serial_order(late, vm)
