"""The shared harness of the concurrency tests (test_concurrency_*.py): threads against gic5,
nothing lost, nothing invented, every errno a serial order allows.

Rules this file keeps:
- Every check can fail. The SW_PPI accounting is exact wherever the test can know the state
  of the edge (the latch, or PENDR while the guest is loaded) at each injection, and an
  inequality with a liveness check where it cannot (see ``EdgeRounds``):
    * INJECT   the guest on the target vCPU runs masked (CR0.EN = 0: entries, exits, WFIs,
               CDIAs that must return nothing) while every injector thread asserts edges:
               N accepted rising edges leave exactly one edge (N - 1 coalesced).
    * DELIVER  injectors only lower the line on the target (and hit other vCPUs): the guest
               must acknowledge exactly that one edge, then nothing.
    * HANDSHAKE one injector at a time (a turn) fires k edges, in one irq_line or in one
               irq_line_batch chunk (atomic against the guest: vm.pyx), while the guest
               acknowledges freely; the next turn waits for that delivery. Exactly one
               delivery per turn and exactly k - 1 coalesced; a lost edge never gets its
               delivery (the wait times out), an invented one is a delivery with no turn.
    * LIVE     free-running injectors and guest: delivered + pending <= accepted, and an
               accepted edge is delivered by the drain at the latest.
  The identity checked at the end: accepted = delivered + pending + coalesced, with coalesced
  computed from the phases where it is known exactly and bounded where it is not.
- Every kernel-shaped result is checked when it happens: on the accounting VM the configuration
  is fixed (initialised, vCPUs 0..7, every vCPU has run), so each call has one right answer,
  except where the answer depends on another thread (a vCPU inside run() makes
  KVM_CREATE_DEVICE EBUSY instead of EEXIST; run() of a vCPU another thread is running is
  RuntimeError): those are accepted only when a thread was inside run() during the call.
- On VMs being built by racing threads (``test_errnos_have_a_serial_order``) each call is
  bracketed by a global sequence number before and after it; for each outcome the test
  enumerates the values the VM's monotone facts (device, initialised, dead, vCPU n exists,
  vCPU n has run) could have had inside the bracket and requires the outcome to be what the
  kernel answers for one of them (docs/semantics.md sections 3, 4, 6, 8).
- Gate: no PPI outside USERSPACE_PPIS ({3} on final) is ever accepted by KVM_IRQ_LINE, and
  after every run no vCPU has a pending bit the kernel path did not drive.
- Storms (gic5core.storm_run, gic5.storm.run_storm) run on vCPUs 0..3 of the same VM and on
  other VMs, releasing the GIL; their own accounting (storm.pyx) is checked after every call.
- No timing assertions: waits have generous timeouts and only turn a hang into a failure.
- The stress target (``-m stress``) is the same harness with an operation budget from
  GIC5_STRESS_OPS (default 10**7; batch elements and storm events count one each).
- Tests whose failure is a hang or a crash (storm_run's lifetimes and lock order) run their
  scenario in a subprocess with a watchdog, so a regression fails the test, not the suite.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import traceback

import numpy as np

import gic5
from gic5 import uapi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

V5 = uapi.KVM_DEV_TYPE_ARM_VGIC_V5
GRP_CTRL = uapi.KVM_DEV_ARM_VGIC_GRP_CTRL
CTRL_INIT = uapi.KVM_DEV_ARM_VGIC_CTRL_INIT
USERSPACE_PPIS = uapi.KVM_DEV_ARM_VGIC_USERSPACE_PPIS
TIMER_CTRL = uapi.KVM_ARM_VCPU_TIMER_CTRL
PMU_CTRL = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
PMU_IRQ = uapi.KVM_ARM_VCPU_PMU_V3_IRQ
PMU_INIT = uapi.KVM_ARM_VCPU_PMU_V3_INIT
SW = uapi.GICV5_ARCH_PPI_SW_PPI
SW_INTID = uapi.ppi_intid(SW)
PPI_INTID_BASE = 0x20000000
U32 = 2**32 - 1
U64 = 2**64 - 1

# The accounting VM: vCPU ids 0..7 (index = id), all with the PMU feature.
IDS = tuple(range(8))
STORM_VCPUS = 4          # ids 0..3: the storm's (storm_run uses the first N by index)
TARGET = 4               # the vCPU whose SW_PPI edges are accounted
CHAOS_GUESTS = (5, 6)    # guests run by the chaos threads (6 by two threads at once)
NOISE = 7                # free SW_PPI traffic, not accounted
# final: exposed = impl & (owned(vCPU 0) | {3}); vCPU 0 owns the PMU PPI (PMU_V3_INIT before
# its first run) and both timers: {3, 23, 27, 30} (semantics.md section 10).
EXPOSED = (1 << 3 | 1 << 23 | 1 << 27 | 1 << 30, 0)
IMPL = (0x5C800008, 0)   # the default host with a PMU (semantics.md section 1)
TIMER_V5 = (0x2000001B, 0x2000001E, 0x2000001C, 0x2000001A)
GUEST_PRIORITIES = {SW: 8, uapi.GICV5_ARCH_PPI_CNTV: 2, uapi.GICV5_ARCH_PPI_CNTP: 4,
                    uapi.GICV5_ARCH_PPI_PMUIRQ: 12}

ASSERTING_LEVELS = (1, 2, 0x80000000, U32)   # a __u32 level: any nonzero value asserts
WAIT_S = 60.0            # a wait this long is a hang (lost edge or deadlock), not slowness


def word(irq_type: int, vcpu_id: int, num: int) -> int:
    return uapi.irq_word(irq_type, vcpu_id, num)


TARGET_WORD = word(uapi.KVM_ARM_IRQ_TYPE_PPI, TARGET, SW)


def _reference_accounting_vm():
    """The accounting VM built on the reference model (tests/reference.py, written from the
    kernel source): device, initialised, vCPU ids 0..7 with their PMUs initialised, each run
    once. The errno KVM_IRQ_LINE gives a word there is the reference's, not a copy here."""
    vm = ref.RefKvm("final").create_vm()
    vcpus = [vm.create_vcpu(i, pmu=True) for i in IDS]
    dev = vm.create_device(V5)
    dev.set_attr(GRP_CTRL, CTRL_INIT)
    for v in vcpus:
        v.set_attr(PMU_CTRL, PMU_INIT)
        with v.run():
            pass
    return vm


def expected_irq_rc(w: int, _vm=[]) -> int:  # noqa: B006 (one reference VM, built once)
    """KVM_IRQ_LINE's answer on the accounting VM, asked of the reference model (the answer
    of these states does not depend on the level or on earlier injections)."""
    if not _vm:
        _vm.append(_reference_accounting_vm())
    try:
        _vm[0].irq_line(w, 1)
    except OSError as e:
        return -e.errno
    return 0


def _other_words() -> list[int]:
    """Words that never touch the target's or the storm vCPUs' SW_PPI."""
    ws = [word(2, NOISE, SW), word(2, NOISE, SW), 0, U32]
    ws += [word(2, v, n) for v in IDS for n in (0, 1, 2, 23, 26, 27, 28, 30, 31, 63, 64, 127,
                                                 0xFFFF)]
    ws += [word(2, v, SW) for v in (8, 255, 256, 511, 512, 4095)]
    ws += [word(1, 0, 32), word(1, TARGET, SW), word(0, TARGET, 0), word(0, TARGET, 1)]
    ws += [word(t, TARGET, SW) for t in range(3, 16)]
    return ws


OTHER_WORDS = np.array(_other_words(), dtype=np.uint32)
OTHER_RCS = np.array([expected_irq_rc(int(w)) for w in OTHER_WORDS], dtype=np.int32)
# Words the USERSPACE_PPIS gate must refuse whatever else holds: a PPI other than SW_PPI.
GATED = np.array([((int(w) >> 24) & 0xF) == 2 and (int(w) & 0xFFFF) != SW for w in OTHER_WORDS])


def outcome(fn, *args, **kwargs):
    """0 / None-free result, -errno for OSError, the exception class name otherwise."""
    try:
        r = fn(*args, **kwargs)
    except OSError as e:
        return -e.errno
    except (RuntimeError, TypeError, ValueError, OverflowError) as e:
        return type(e).__name__
    return 0 if r is None else ("value", r)


# --- threads -------------------------------------------------------------------------------

class Failures:
    """Collects failures from every thread (capped), so the main thread can report them all."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[str] = []
        self.abort = threading.Event()

    def add(self, msg: str) -> None:
        with self.lock:
            if len(self.items) < 40:
                self.items.append(msg)
        self.abort.set()

    def check(self) -> None:
        assert not self.items, "\n".join(self.items)


class Phase:
    """What the threads of one phase share: ``is_set()`` turns true once every quota body has
    met its quota (``met()``, called once per thread; returning counts as meeting it). Quota
    bodies keep working after meeting theirs until then, so no body runs alone."""

    def __init__(self, n_quota: int):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._met: set[int] = set()
        self._n = n_quota
        if n_quota == 0:
            self._stop.set()

    def met(self) -> None:
        with self._lock:
            self._met.add(threading.get_ident())
            if len(self._met) >= self._n:
                self._stop.set()

    def is_set(self) -> bool:
        return self._stop.is_set()

    def set(self) -> None:
        self._stop.set()


def run_threads(quota, free, failures: Failures, timeout=600.0):
    """Run ``quota`` and ``free`` bodies together until every quota body has met its quota.

    Each body is called as body(phase) (see Phase) and returns its op count. All start
    together at a barrier. Returns the op counts by body name.
    """
    bodies = list(quota) + list(free)
    barrier = threading.Barrier(len(bodies))
    phase = Phase(len(quota))
    counts = [0] * len(bodies)

    def wrap(k, body, is_quota):
        try:
            barrier.wait(timeout=WAIT_S)
            counts[k] = body(phase)
        except BaseException:
            failures.add(f"thread {body.__name__}:\n{traceback.format_exc()}")
            phase.set()
        finally:
            if is_quota:
                phase.met()

    threads = [threading.Thread(target=wrap, args=(k, b, k < len(quota)), daemon=True)
               for k, b in enumerate(bodies)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [b.__name__ for t, b in zip(threads, bodies, strict=True) if t.is_alive()]
    if hung:
        failures.add(f"threads still running after {timeout} s (deadlock?): {hung}")
    failures.check()
    result = collections.Counter()
    for body, c in zip(bodies, counts, strict=True):
        result[body.__name__] += c
    return result


def quota_loop(phase, quota, abort):
    """Iterations of a quota body: ``quota`` of them, then more until the phase ends."""
    i = 0
    while not abort.is_set():
        if i == quota:
            phase.met()
        if i >= quota and phase.is_set():
            return
        yield i
        i += 1


# --- the accounting VM ---------------------------------------------------------------------

def guest_setup(cpu) -> None:
    cpu.write_cr0(True)
    cpu.write_pcr(31)
    for ppi, prio in GUEST_PRIORITIES.items():
        cpu.write_ppi_priority(ppi, prio)
    cpu.write_ppi_enabler(0, U64)


def build_accounting_vm(vm_class=gic5.Vm):
    vm = vm_class(gic5.Kvm(profile="final"))
    vcpus = [vm.create_vcpu(i, pmu=True) for i in IDS]
    dev = vm.create_device(V5)
    dev.set_attr(GRP_CTRL, CTRL_INIT)
    for v in vcpus:
        v.set_attr(PMU_CTRL, PMU_INIT)
    for v in vcpus:
        with v.run() as cpu:
            guest_setup(cpu)
    return vm, dev, vcpus


def check_storm_counters(c: dict) -> None:
    """storm.pyx's accounting on final (see its header): nothing lost, nothing redelivered."""
    assert c["accepted"] == c["delivered"] + c["coalesced"] + c["lost"], c
    assert c["raised"] == c["level_delivered"] + c["withdrawn"] + c["level_stuck"], c
    for key in ("lost", "redelivered", "model_mismatch", "level_violations", "level_stuck"):
        assert c[key] == 0, (key, c)
