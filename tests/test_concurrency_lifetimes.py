"""Threads and lifetimes: a VM in use by one thread and dropped by another; storm_run's
lifetimes and lock order, each in a subprocess with a watchdog.

Rules this file keeps (its shared pieces are tests/concurrency_common.py's):
- A VM, vCPU or CpuIf in use by one thread stays alive when another drops every reference;
  VMs made and collected by many threads leave nothing behind.
- Tests whose failure is a hang or a crash (storm_run's lifetimes and lock order) run their
  scenario in a subprocess with a watchdog, so a regression fails the test, not the suite.
"""

from __future__ import annotations

import os
import gc
import subprocess
import sys
import tempfile
import textwrap
import threading
import traceback
import weakref

import numpy as np

import gic5
import gic5core
from gic5.storm import StormConfig, build_vms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from concurrency_common import (  # noqa: E402
    CTRL_INIT, Failures, GRP_CTRL, SW, SW_INTID, V5, WAIT_S, check_storm_counters,
    run_threads, word,
)

# --- lifetime: a VM in use by one thread, dropped by another -----------------------------------

def test_vm_in_use_survives_being_dropped_elsewhere(fast_switching):
    """Every user holds its own reference (a Vcpu, a CpuIf, a method's self): dropping the
    others' references and collecting in a loop must neither crash nor free the VM early,
    and the VM must be freed once the last user is done (no leaked reference)."""
    vms = build_vms(StormConfig(vms=1, vcpus=5))
    vm = vms.pop()
    vcpu = vm.vcpus[4]          # the guest's; the storm takes vCPUs 0..3
    ref = weakref.ref(vm)
    failures = Failures()
    ready = threading.Barrier(4)

    def storms(vm):
        ready.wait(WAIT_S)
        for k in range(40):
            check_storm_counters(gic5core.storm_run([vm], 4, 20_000, seed=k + 1))
        return 40

    def batches(vm):
        ready.wait(WAIT_S)
        w = np.full(2048, word(2, 4, SW), dtype=np.uint32)
        for _ in range(200):
            assert not vm.irq_line_batch(w, np.ones(2048, dtype=np.uint32)).any()
        return 200

    def guest(vcpu):
        ready.wait(WAIT_S)
        for _ in range(300):
            with vcpu.run() as cpu:  # the CpuIf holds the VM too
                intid = cpu.cdia()
                if intid is not None:
                    cpu.cddi(intid)
                    cpu.cdeoi()
                cpu.wfi()
        return 300

    bodies = [(storms, vm), (batches, vm), (guest, vcpu)]
    results = []

    def wrap(fn, arg):
        try:
            results.append(fn(arg))
        except BaseException:
            failures.add(traceback.format_exc())

    threads = [threading.Thread(target=wrap, args=b) for b in bodies]
    del vm, vcpu, bodies
    for t in threads:
        t.start()
    ready.wait(WAIT_S)
    for _ in range(200):       # the main thread holds no reference now: collect hard
        gc.collect()
    for t in threads:
        t.join(WAIT_S * 5)
    failures.check()
    assert sorted(results) == [40, 200, 300]
    del threads, wrap
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())


def test_vcpu_and_cpuif_keep_their_vm_alive():
    vm = gic5.Kvm().create_vm()
    vcpu = vm.create_vcpu(0)
    vm.create_device(V5).set_attr(GRP_CTRL, CTRL_INIT)
    ref = weakref.ref(vm)
    ctx = vcpu.run()
    cpu = ctx.__enter__()
    del vm
    gc.collect()
    assert ref() is not None
    cpu.write_cr0(True)
    cpu.write_pcr(31)
    cpu.write_ppi_enabler(0, 1 << SW)
    ctx.__exit__(None, None, None)
    vcpu.vm.irq_line(word(2, 0, SW), 1)
    with vcpu.run() as cpu2:
        assert cpu2.cdia() == SW_INTID
    del ctx, cpu, cpu2
    gc.collect()
    assert ref() is not None           # the Vcpu still holds it
    del vcpu
    gc.collect()
    assert ref() is None


def test_vms_created_and_collected_by_many_threads(fast_switching):
    """VM cycles (Vm -> Vcpu -> Vm) built, used and dropped by several threads while others
    force collections: deallocation races must not crash, and nothing may leak."""
    refs, lock = [], threading.Lock()
    failures = Failures()

    def churn(stop):
        rng = np.random.default_rng(threading.get_ident() & 0xFFFF)
        n = 0
        for _ in range(150):
            vm = gic5.Kvm().create_vm()
            cpus = [vm.create_vcpu(i, pmu=bool(i & 1)) for i in range(int(rng.integers(1, 6)))]
            vm.create_device(V5).set_attr(GRP_CTRL, CTRL_INIT)
            vm.irq_line_batch(np.full(64, word(2, 0, SW), dtype=np.uint32),
                              np.ones(64, dtype=np.uint32))
            with cpus[0].run() as cpu:
                cpu.wfi()
            with lock:
                refs.append(weakref.ref(vm))
            n += 1
        return n

    def collector(stop):
        n = 0
        while not stop.is_set():
            gc.collect()
            n += 1
        return n

    run_threads([churn, churn, churn], [collector], failures)
    gc.collect()
    assert len(refs) == 450
    assert sum(r() is not None for r in refs) == 0


# --- storm_run and lifetimes / lock order, each in a subprocess ----------------------------------
# These found real bugs (fixed in storm.pyx: storm_run now holds a tuple of its VMs, refuses a
# VM listed twice and takes the VM locks in address order); they stay as regression tests. A
# subprocess keeps a crash or an uninterruptible spin from taking the suite down.

def _python(code: str, timeout: float) -> tuple[int | None, str]:
    """Run ``code`` in a fresh interpreter; (returncode or None on timeout, output)."""
    try:
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired as e:
        return None, f"timed out after {timeout} s: {e.stdout!r} {e.stderr!r}"
    return p.returncode, p.stdout + p.stderr


def test_storm_keeps_its_vms_alive_when_the_list_is_cleared():
    rc, out = _python("""
        import gc, os, threading, time, weakref
        import gic5core
        from gic5.storm import StormConfig, build_vms
        cores = build_vms(StormConfig(vms=3, vcpus=16))
        refs = [weakref.ref(v) for v in cores]
        result = {}
        t = threading.Thread(target=lambda: result.update(
            gic5core.storm_run(cores, 16, 200_000_000)))
        t.start()
        time.sleep(0.2)
        cores.clear()            # the storm's argument list: its only holder of the VMs
        for _ in range(20):
            gc.collect()
        if t.is_alive() and any(r() is None for r in refs):
            print("a VM was freed while storm_run still used it")
            os._exit(3)
        t.join()
        assert result["lost"] == 0 and result["model_mismatch"] == 0, result
        print("ok")
        """, timeout=300)
    assert rc == 0, out


def test_storm_with_a_vm_listed_twice_does_not_hang():
    # The storm runs in a daemon thread; a watchdog in the main thread turns a hang into
    # exit status 3 within seconds (the spinning thread cannot be interrupted).
    rc, out = _python("""
        import os, threading
        import gic5core
        from gic5.storm import StormConfig, build_vms
        vm, = build_vms(StormConfig(vms=1, vcpus=2))
        def storm():
            try:
                gic5core.storm_run([vm, vm], 2, 1000)
            except ValueError:
                pass
        t = threading.Thread(target=storm, daemon=True)
        t.start()
        t.join(3)
        if t.is_alive():
            print("storm_run([vm, vm]) hangs")
            os._exit(3)
        print("ok")
        """, timeout=60)
    assert rc == 0, out


def test_storms_over_overlapping_vm_lists_do_not_deadlock():
    # Tiny storms, so lock acquisition dominates; a watchdog sees progress stop (neither
    # thread completing a call for 10 s) and exits with status 3.
    rc, out = _python("""
        import os, threading, time
        import gic5core
        from gic5.storm import StormConfig, build_vms
        a, b = build_vms(StormConfig(vms=2, vcpus=1))
        done = [0, 0]
        end = time.monotonic() + 3
        def run(k, cores):
            while time.monotonic() < end:
                gic5core.storm_run(cores, 1, 1, seed=done[k] + 1, drain=False)
                done[k] += 1
        ts = [threading.Thread(target=run, args=(0, [a, b]), daemon=True),
              threading.Thread(target=run, args=(1, [b, a]), daemon=True)]
        for t in ts: t.start()
        last, since = None, time.monotonic()
        while any(t.is_alive() for t in ts):
            time.sleep(0.1)
            now = tuple(done)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > 10:
                print("deadlock after", now, "calls")
                os._exit(3)
        print("ok", done)
        """, timeout=60)
    assert rc == 0, out
