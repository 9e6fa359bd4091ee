"""Differential state machine: the real library (gic5) against the reference model.

Rules this file keeps:
- Every step makes the same call on both sides, built from the same drawn arguments, with
  fresh but identical buffers; the outcome (return value, or exception kind + errno + the
  OSError subclass) must match, and so must the bytes left in any writable buffer.
- After every step (invariant) every observable mask is compared: per vCPU pending / active /
  enabled / has_pending_irq, the VM's exposed and userspace masks, and for each vCPU inside
  run() the guest-visible image (ENABLER, SPENDR, SACTIVER words, priorities).
- Python misuse is compared by category: ValueError and OverflowError count as one (the
  issue allows either for an out-of-range int), TypeError, RuntimeError and
  UndefinedInstruction each as themselves.
- A ``with vcpu.run()`` block is held open across steps by calling ``__enter__`` /
  ``__exit__`` by hand, so injections, attribute calls and other vCPUs' runs interleave with
  a running guest.
- Guest flows reach the reference's kernel rules (tests/reference.py, written from the kernel
  source): vCPUs other than index 0 running first, PMU vCPUs initialised before their first
  run, timer lines and userspace level PPIs raised and acknowledged across exits and WFIs,
  pend/activate writes for SW_PPI and implemented-but-unexposed PPIs, priority 0 and
  priority masks below a PPI's priority; compound flows compare every observable after each
  of their calls.
- One TestCase per profile. Hypothesis settings come from the profile named by the
  HYPOTHESIS_PROFILE environment variable: "ci" (default: derandomized, about 35 s for the
  three profiles on a 2-core machine) or "dev" (random, with an example database).
- The outcome classifier, the buffers, the observables and the known discrepancies are
  tests/differential.py's (shared with the fuzz tests and the atheris harness). Known
  library discrepancies go in its KNOWN and nowhere else: each entry matches
  exactly one (call, library outcome, reference outcome) triple, carries the semantics.md
  section it breaks, and is reported to the library's author, not silently absorbed.
"""

from __future__ import annotations

import os
import pathlib
import sys

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import gic5
from gic5 import uapi

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference as ref  # noqa: E402
from differential import (CPU_READS, VCPU_VIEWS, buffer_bytes, known,  # noqa: E402
                          make_buffer, outcome)

# --- Hypothesis profiles ---------------------------------------------------------------------
# HYPOTHESIS_PROFILE picks "ci" (default) or "dev". Hypothesis loads its own "ci" profile by
# itself whenever it detects CI, and re-registering the active profile re-applies it to every
# suite in the session; so "ci" is registered with exactly the built-in CI values, and the
# state machine's size is applied to its own TestCases only (SIZES), never globally.
settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
# (max_examples, stateful_step_count) per profile, sized by measurement: "ci" takes about 35 s
# for all three profiles on a 2-core machine (pytest -q tests/test_state_machine.py), under
# the one-minute budget.
SIZES = {"ci": (450, 70), "dev": (1000, 100)}
_examples, _steps = SIZES.get(HYPOTHESIS_PROFILE, SIZES["ci"])
SETTINGS = settings(settings.get_profile(HYPOTHESIS_PROFILE), max_examples=_examples,
                    stateful_step_count=_steps)

U64 = 2**64 - 1
U32 = 2**32 - 1
PPI_INTID = 0x20000000  # GICV5_HWIRQ_TYPE_PPI << 29
IRS_PROFILES = ("7.4",)  # profiles whose V5 device has the IRS-era UAPI

# --- argument pools (duplicates weight the draw) -------------------------------------------
PREBUILDS = ["bare", "vcpus", "ran_nodev", "device", "device_first", "el2", "inited",
             "inited", "running", "running", "running", "running_other", "running_other",
             "running_all"]
HOSTS = [
    (True, None),                      # default host with a PMU: 0x5C800008
    (True, None),
    (False, None),                     # no PMU: 0x5C000008, PMU vCPUs are EINVAL
    (True, (0x5C80000B, 0)),           # a v2 probe that reports the doorbell PPIs 0 and 1
    (True, (U64, U64)),                # everything implemented, both words
    (True, (0x48800000, 0x5)),         # no SW_PPI: final re-finalizes at every first run
    (False, (0, 0)),                   # nothing implemented
]
VCPU_IDS = [0, 0, 0, 1, 1, 2, 3, 255, 256, 300, 511, 512, 4095, 2**32, -1]
DEVICE_TYPES = [16, 16, 16, 16, 0, 5, 7, 15, 17, U32, 2**32]
DEVICE_FLAGS = [0, 0, 0, 0, 1, 2, 3, 0x80000000]
GROUPS = list(range(10)) + [4, 4, 4, U32, 2**32]
ATTRS = list(range(10)) + [5, 5, 0, 0, U64, 2**64]
VCPU_GROUPS = [0, 0, 0, 1, 1, 1, 2, 3, 6, U32]
VCPU_ATTRS = [0, 0, 1, 1, 2, 3, 4, 9, U64]
ATTR_VALUES = [0x2000001B, 0x2000001E, 0x2000001C, 0x2000001A, 0x20000017, 0x20000017,
               0x20000003, 27, 0x2000003F, 0x20000040, 0x2000007F, 0x20000080, 0x2100001B,
               0x6000001B, 0x4000001B, 0, U32]
BUF_KINDS = ["bytearray"] * 6 + ["bytes", "mv_ro", "array_B", "np_u8", "np_u32",
                                  "np_noncontig", "none", "zero", "raw", "true", "str"]
BUF_SIZES = [16, 16, 4, 4, 8, 12, 0, 3, 7, 24]
IRQ_TYPES = [2, 2, 2, 2, 0, 0, 1, 3, 15]
IRQ_VCPUS = [0, 0, 0, 1, 2, 3, 255, 256, 300, 511, 4095]
IRQ_NUMS = [3, 3, 3, 0, 1, 2, 23, 26, 27, 28, 30, 31, 63, 64, 127, 128, 0xFFFF]
LEVELS = [1, 1, 0, 0, 2, U32]
TIMER_NAMES = ["vtimer", "vtimer", "ptimer", "ptimer", "hvtimer", "hptimer", "bogus"]
MASKS = [U64, U64, 0, 1 << 3, 1 << 3, 1 << 27, 1 << 30, 1 << 23, 1 << 28, 1 << 26,
         0x48800008, 0x5C80000B, 1 << 63]
PPIS = [3, 3, 3, 0, 1, 23, 26, 27, 28, 30, 31, 63, 64, 100, 127]
PRIOS = [0, 0, 1, 5, 6, 6, 20, 31, 32, 0xE5, 255]
INTIDS = [0x20000003, 0x20000003, 0x2000001B, 0x2000001E, 0x20000017, 0x2000001C,
          0x20000040, 0x2000007F, 0x2100001B, 0x60000003, 3, 0, U32]

# 7.4: the IRS host inputs (max_vpes, lpi_domain, ipa_bits, gcie_legacy), the IRS base
# addresses, NR_IRQS values, CPU_SYSREGS registers (the 26 of the kernel's table and some it
# does not hold) and SPI numbers. The PPI-only profiles answer all of them too (ENXIO/EINVAL).
IRS_HOSTS = [(512, True, 40, False)] * 4 + [(4, True, 40, False), (2, True, 40, True),
                                            (512, False, 40, False), (512, True, 32, False)]
IRS_ADDRS = [0x8000000, 0x8000000, 0, 0x8001000, 1 << 40, (1 << 40) - 0x10000,
             (1 << 40) - 0x20000, U64 & ~0xFFFF, 1 << 32, 0xFFFF0000]
NR_IRQS_VALUES = [32, 64, 1024, 31, 33, 1056, 0, 96]
SYSREGS = list(uapi.CPU_SYSREGS_74.values()) + [
    uapi.SYS_ICC_CTLR_EL1, uapi.SYS_ICC_IAFFIDR_EL1, uapi.SYS_ICC_HAPR_EL1,
    uapi.SYS_ICC_PPI_CPENDR0_EL1, 0]
SYSREG_VALUES = [0, U64, 1 << 3, 1 << 3 | 1 << 27, 0x48000008, 0x1F, 5, 1, 0x0500000000000000,
                 0x101, 0xFFFF_FFFF_0000_0101, 0x21]
SPI_NUMS = [0, 0, 5, 31, 31, 32, 63, 1023, 1024, 0xFFFF]
# 7.4's virtual IRS: the host IRS's register inputs, GIC CD* operands, IRS MMIO offsets /
# sizes / values, IRS_REGS offsets and values, IST descriptors.
IRS_REGS_HOSTS = [(5, 16, 14, 5)] * 4 + [(4, 16, 14, 5), (1, 14, 10, 0), (3, 20, 15, 7)]
CD_SPIS = [0, 0, 0, 1, 1, 2, 5, 31, 33, 63, 1023]
CD_INTIDS = [0x60000000 | n for n in CD_SPIS] + [0x60000400, 0x40000000, 0x20000003,
                                                 0x20000003 | 1 << 24, 0x80000000, U32]
CD_PRIOS = [0, 0x10, 0x10, 0x08, 0x1F, 1, 7, 32, -1]
IRS_OFFSETS = [0x80, 0x80, 0x80, 0x108, 0x108, 0x114, 0x114, 0x118, 0x140, 0x144, 0x148,
               0x0, 0x4, 0x8, 0x14, 0x84, 0x180, 0x184, 0x190, 0x194, 0x100, 0x200, 0xFFBC,
               0xFFE0, 0x10000, 0x1C, 0x2, 0x1FFFC, 0x20000]
IRS_SIZES = [None, None, None, 4, 8, 1, 2, 3]
IRS_VALUES = [1, 1, 0, 0, 2, 3, 5, 31, 0xFFFF, 0x10000E, 0x8020001, 0xE, U32, 2**40 | 1, -1]
IRS_REGS_OFFSETS = list(uapi.GICV5_IRS_REGS_UAPI) + [0x184, 0x2, 0x10000, 0xFFBC, 2**32 | 4,
                                                      0x20, 0x5]
IRS_REGS_VALUES = [0, 0, 1, 0x15, 0x11, 0x400001, 0x3B0, 0x380, 0x20, 32, 33, 0xE,
                   0x8020001, 0x8020000, 0x10000, 0x7, 0x20, U64]

irq_numbers = st.sampled_from(IRQ_NUMS) | st.integers(0, 130)
masks = st.sampled_from(MASKS) | st.integers(0, U64)
buffers = st.tuples(st.sampled_from(BUF_KINDS), st.sampled_from(BUF_SIZES),
                    st.sampled_from(ATTR_VALUES))


def irq_word(irq_type, vcpu_id, num):
    return ((vcpu_id >> 8) & 0xF) << 28 | irq_type << 24 | (vcpu_id & 0xFF) << 16 | num


def call(fn):
    """differential.outcome flattened to (status, payload, raw value), the shape the rules
    below unpack (lo[:2] is what is compared, lo[2] the object a call returned)."""
    o, raw = outcome(fn)
    return o + (raw,)


class Gic5Machine(RuleBasedStateMachine):
    PROFILE = "final"

    def __init__(self):
        super().__init__()
        self.lib_vm = None
        self.ref_vm = None
        self.vcpus = []   # (lib, ref) pairs of created vCPUs, creation order
        self.device = None  # (lib, ref)
        self.runs = {}    # vCPU index -> (lib ctx, ref ctx, lib cpu, ref cpu)
        self.stale = []   # (lib cpu, ref cpu) of run() blocks that have ended
        self.log = []     # the calls made so far, for failure messages

    # -- plumbing
    def both(self, label, lib_fn, ref_fn):
        self.log.append(label)
        lo = call(lib_fn)
        ro = call(ref_fn)
        if lo[:2] != ro[:2] and known(label, lo[:2], ro[:2]):
            return lo, ro
        assert lo[:2] == ro[:2], (
            f"{self.PROFILE}: {label}: library {lo[:2]} != reference {ro[:2]}\n"
            "calls so far:\n  " + "\n  ".join(self.log))
        return lo, ro

    def both_buffer(self, label, spec, lib_call, ref_call):
        lib_buf, ref_buf = make_buffer(spec), make_buffer(spec)
        res = self.both(f"{label} buf={spec}", lambda: lib_call(lib_buf),
                        lambda: ref_call(ref_buf))
        lb, rb = buffer_bytes(lib_buf), buffer_bytes(ref_buf)
        assert lb == rb, (f"{self.PROFILE}: {label} buf={spec}: buffer bytes library {lb!r} "
                          f"!= reference {rb!r}\ncalls so far:\n  " + "\n  ".join(self.log))
        return res

    # -- setup
    @initialize(host=st.sampled_from(HOSTS), prebuild=st.sampled_from(PREBUILDS),
                nvcpus=st.integers(1, 3),
                pmu0=st.sampled_from([None, None, "feature", "init", "irq_init"]),
                pmu_rest=st.sampled_from([False, False, True]),
                guest=st.sampled_from(["plain", "plain", "priorities", "masked"]),
                irs_host=st.sampled_from(IRS_HOSTS),
                irs_base=st.sampled_from([True, True, True, True, True, False]),
                irs_regs_host=st.sampled_from(IRS_REGS_HOSTS))
    def make_vm(self, host, prebuild, nvcpus, pmu0, pmu_rest, guest, irs_host, irs_base,
                irs_regs_host):
        # Random rule order alone rarely reaches a running guest; most examples start from a
        # partly built VM instead. The prebuild calls are compared like any other step.
        # pmu_rest gives vCPUs 1.. the PMU feature too (and the same PMU_V3_INIT as vCPU 0,
        # before their first run); "running_other" enters the last vCPU first (a vCPU other
        # than index 0 runs first), "running_all" enters every vCPU, the last one first.
        pmu, impl = host
        max_vpes, lpi_domain, ipa_bits, legacy = irs_host
        pri_bits, id_bits, min_lpi, pa_range = irs_regs_host
        irs_kw = dict(max_vpes=max_vpes, lpi_domain=lpi_domain, ipa_bits=ipa_bits,
                      gcie_legacy=legacy, irs_pri_bits=pri_bits, ist_id_bits=id_bits,
                      min_lpi_id_bits=min_lpi, pa_range=pa_range)
        self.irs_base = irs_base  # prebuilt 7.4 VMs get their IRS base (as a VMM does)
        self.log.append(f"Kvm(Host(pmu={pmu}, impl_ppis={impl}, **{irs_kw}), "
                        f"profile={self.PROFILE!r}).create_vm()")
        kvm = gic5.Kvm(gic5.Host(pmu=pmu, impl_ppis=impl, **irs_kw), profile=self.PROFILE)
        self.lib_vm = kvm.create_vm()
        self.ref_vm = ref.RefKvm(self.PROFILE, host_pmu=pmu, impl_ppis=impl,
                                 **irs_kw).create_vm()
        if prebuild == "bare":
            return
        if prebuild == "device_first":
            self.create_device(16, 0)
        for vcpu_id in range(nvcpus):
            el2 = prebuild == "el2" and vcpu_id == nvcpus - 1  # INIT will be EINVAL
            self.create_vcpu(vcpu_id, el2, pmu0 is not None and (vcpu_id == 0 or pmu_rest))
        if prebuild == "ran_nodev" and self.vcpus:
            # a vCPU that has run without an irqchip: device creation is EBUSY from now on
            self._enter(0)
            if 0 in self.runs:
                self._exit(0)
        running = ("running", "running_other", "running_all")
        if prebuild in ("device", "inited", "ran_nodev", "el2") + running:
            self.create_device(16, 0)
        if self.device is None:
            return  # KVM_CREATE_DEVICE failed (7.4 without a host LPI domain): nothing more
        if prebuild in ("device_first", "inited", "el2") + running:
            self.device_init(None)
            if pmu0 in ("init", "irq_init"):
                for index in range(len(self.vcpus) if pmu_rest else min(1, len(self.vcpus))):
                    self._pmu_init(index, pmu0 == "irq_init", 0x20000017)
        if prebuild in running and self.vcpus:
            last = len(self.vcpus) - 1
            order = {"running": [0], "running_other": [last],
                     "running_all": list(range(last, -1, -1))}[prebuild]
            for index in order:
                self._enter(index)
                if index in self.runs:
                    self._guest_setup(index, guest)

    def _guest_setup(self, index, guest):
        """A freshly entered guest's usual start: EN on, a priority mask, every PPI enabled;
        "priorities" also gives the PPIs the pools touch distinct priorities (0 for SW_PPI),
        "masked" puts the priority mask below some of them."""
        _, _, lib_cpu, ref_cpu = self.runs[index]
        calls = [("write_cr0", (True,)), ("write_pcr", (6 if guest == "masked" else 31,)),
                 ("write_ppi_enabler", (0, U64))]
        if guest in ("priorities", "masked"):
            calls += [("write_ppi_priority", (ppi, prio))
                      for ppi, prio in ((3, 0), (23, 4), (26, 6), (27, 5), (28, 7), (30, 1))]
        for method, args in calls:
            self.both(f"cpu[{index}].{method}{args}",
                      lambda: getattr(lib_cpu, method)(*args),
                      lambda: getattr(ref_cpu, method)(*args))

    def teardown(self):
        # Leave every open run() block so nothing outlives the example. Not compared: no
        # invariant runs after teardown, and after a failed step a second assertion here
        # would only bury the first.
        for lib_ctx, ref_ctx, _, _ in self.runs.values():
            for ctx in (lib_ctx, ref_ctx):
                try:
                    ctx.__exit__(None, None, None)
                except Exception:  # noqa: BLE001 - best effort cleanup
                    pass
        self.runs.clear()

    # -- VM calls
    @rule(vcpu_id=st.sampled_from(VCPU_IDS),
          el2=st.sampled_from([False] * 7 + [True]), pmu=st.booleans())
    def create_vcpu(self, vcpu_id, el2, pmu):
        lo, ro = self.both(f"vm.create_vcpu({vcpu_id}, el2={el2}, pmu={pmu})",
                           lambda: self.lib_vm.create_vcpu(vcpu_id, el2=el2, pmu=pmu),
                           lambda: self.ref_vm.create_vcpu(vcpu_id, el2=el2, pmu=pmu))
        if lo[0] == "ok":
            self.vcpus.append((lo[2], ro[2]))

    @rule(dev_type=st.sampled_from(DEVICE_TYPES), flags=st.sampled_from(DEVICE_FLAGS))
    def create_device(self, dev_type, flags):
        lo, ro = self.both(f"vm.create_device({dev_type}, {flags})",
                           lambda: self.lib_vm.create_device(dev_type, flags),
                           lambda: self.ref_vm.create_device(dev_type, flags))
        if lo[0] == "ok" and lo[2] is not None:
            self.device = (lo[2], ro[2])
            if self.PROFILE in IRS_PROFILES and getattr(self, "irs_base", False):
                self.irs_addr("set", 6, 0x8000000, 8)

    @rule(irq_type=st.sampled_from(IRQ_TYPES), vcpu_id=st.sampled_from(IRQ_VCPUS),
          num=irq_numbers, level=st.sampled_from(LEVELS))
    def irq_line(self, irq_type, vcpu_id, num, level):
        word = irq_word(irq_type, vcpu_id, num)
        self.both(f"vm.irq_line({word:#x}, {level:#x})",
                  lambda: self.lib_vm.irq_line(word, level),
                  lambda: self.ref_vm.irq_line(word, level))

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), irq_type=st.sampled_from([2, 2, 2, 0, 1]),
          num=st.sampled_from([3, 3, 3, 3, 0, 1, 23, 27, 28, 30, 64]),
          level=st.sampled_from(LEVELS))
    def irq_line_existing(self, data, irq_type, num, level):
        # a word aimed at a vCPU that exists, so injections get past the lookup often
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        self.irq_line(irq_type, self.vcpus[index][1].vcpu_id, num, level)

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), level=st.sampled_from([1, 1, 1, 0]))
    def inject_sw_ppi(self, data, level):
        # the one userspace-drivable PPI (v3/final), aimed at an existing vCPU
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        self.irq_line(2, self.vcpus[index][1].vcpu_id, 3, level)

    @rule(word=st.sampled_from([0, U32, 0x02000003, 0x12000003, 0x0200FFFF, 0x01000000,
                                -1, 2**32]),
          level=st.sampled_from(LEVELS + [-1, 2**32]))
    def irq_line_raw(self, word, level):
        self.both(f"vm.irq_line({word:#x}, {level:#x})",
                  lambda: self.lib_vm.irq_line(word, level),
                  lambda: self.ref_vm.irq_line(word, level))

    # -- device attributes
    @precondition(lambda self: self.device is not None)
    @rule(addr=st.sampled_from([None, None, 0, bytearray(16)]))
    def device_init(self, addr):
        lib_dev, ref_dev = self.device
        self.both(f"dev.set_attr(4, 0, {addr!r})", lambda: lib_dev.set_attr(4, 0, addr),
                  lambda: ref_dev.set_attr(4, 0, addr))

    @precondition(lambda self: self.device is not None)
    @rule(op=st.sampled_from(["has", "get", "get", "set"]), group=st.sampled_from(GROUPS),
          attr=st.sampled_from(ATTRS), spec=buffers)
    def device_attr(self, op, group, attr, spec):
        lib_dev, ref_dev = self.device
        label = f"dev.{op}_attr({group}, {attr})"
        if op == "has":
            self.both(label, lambda: lib_dev.has_attr(group, attr),
                      lambda: ref_dev.has_attr(group, attr))
            return
        self.both_buffer(label, spec,
                         lambda b: getattr(lib_dev, f"{op}_attr")(group, attr, b),
                         lambda b: getattr(ref_dev, f"{op}_attr")(group, attr, b))

    # -- the IRS-era device attributes (7.4; ENXIO on the PPI-only profiles)
    @precondition(lambda self: self.device is not None)
    @rule(op=st.sampled_from(["set", "set", "get", "has"]), attr=st.sampled_from([6, 6, 6, 5, 0]),
          value=st.sampled_from(IRS_ADDRS), size=st.sampled_from([8, 8, 8, 16, 4, 0]))
    def irs_addr(self, op, attr, value, size):
        lib_dev, ref_dev = self.device
        if op == "has":
            self.both(f"dev.has_attr(0, {attr})", lambda: lib_dev.has_attr(0, attr),
                      lambda: ref_dev.has_attr(0, attr))
            return
        spec = ("u64" if size else "none", size, value)
        self.both_buffer(f"dev.{op}_attr(0, {attr}) value={value:#x}", spec,
                         lambda b: getattr(lib_dev, f"{op}_attr")(0, attr, b),
                         lambda b: getattr(ref_dev, f"{op}_attr")(0, attr, b))

    @precondition(lambda self: self.device is not None)
    @rule(op=st.sampled_from(["set", "set", "get", "has"]), value=st.sampled_from(NR_IRQS_VALUES),
          size=st.sampled_from([4, 4, 4, 0, 2]))
    def nr_irqs(self, op, value, size):
        lib_dev, ref_dev = self.device
        if op == "has":
            self.both("dev.has_attr(3, 0)", lambda: lib_dev.has_attr(3, 0),
                      lambda: ref_dev.has_attr(3, 0))
            return
        self.both_buffer(f"dev.{op}_attr(3, 0) value={value}", ("bytearray", size, value),
                         lambda b: getattr(lib_dev, f"{op}_attr")(3, 0, b),
                         lambda b: getattr(ref_dev, f"{op}_attr")(3, 0, b))

    @precondition(lambda self: self.device is not None)
    @rule(data=st.data(), op=st.sampled_from(["set", "set", "get", "get", "has"]),
          reg=st.sampled_from(SYSREGS), value=st.sampled_from(SYSREG_VALUES),
          size=st.sampled_from([8, 8, 8, 8, 0, 4, 16]),
          who=st.sampled_from(["vcpu", "vcpu", "vcpu", 1, 0x100, 0x01000000]))
    def cpu_sysreg(self, data, op, reg, value, size, who):
        # a register of a vCPU named by its MPIDR (or an MPIDR naming none)
        lib_dev, ref_dev = self.device
        if who == "vcpu" and self.vcpus:
            index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
            attr = uapi.cpu_sysreg_attr(self.vcpus[index][1].vcpu_id, reg)
        else:
            attr = (0 if who == "vcpu" else who) << 32 | reg
        label = f"dev.{op}_attr(6, {attr:#x})"
        if op == "has":
            self.both(label, lambda: lib_dev.has_attr(6, attr), lambda: ref_dev.has_attr(6, attr))
            return
        lo, _ = self.both_buffer(f"{label} value={value:#x}",
                                 ("u64" if size else "none", size, value),
                                 lambda b: getattr(lib_dev, f"{op}_attr")(6, attr, b),
                                 lambda b: getattr(ref_dev, f"{op}_attr")(6, attr, b))
        event(f"cpu_sysreg {op}: {lo[0]} {lo[1] if lo[0] != 'ok' else ''}")

    @precondition(lambda self: self.device is not None and self.vcpus
                  and self.ref_vm.initialised and not self.ref_vm._any_has_run())
    @rule(data=st.data(),
          regs=st.lists(st.tuples(st.sampled_from([
              uapi.SYS_ICC_PPI_ENABLER0_EL1, uapi.SYS_ICC_PPI_ENABLER0_EL1,
              uapi.SYS_ICC_PPI_SPENDR0_EL1, uapi.SYS_ICC_PPI_SPENDR0_EL1,
              uapi.SYS_ICC_PPI_SACTIVER0_EL1, uapi.SYS_ICC_PPI_PRIORITYR[0],
              uapi.SYS_ICC_PPI_PRIORITYR[3], uapi.SYS_ICC_APR_EL1, uapi.SYS_ICC_CR0_EL1,
              uapi.SYS_ICC_PCR_EL1, uapi.SYS_ICC_ICSR_EL1]), st.sampled_from(SYSREG_VALUES)),
              min_size=1, max_size=8),
          then=st.sampled_from(["run", "run", "wfi", "none"]))
    def sysreg_restore_flow(self, data, regs, then):
        # a VMM restoring a vCPU's registers after INIT and before any run (7.4), then its
        # first run (finalize masks the restored state) and the guest's view of it
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        lib_dev, ref_dev = self.device
        for reg, value in regs:
            attr = uapi.cpu_sysreg_attr(self.vcpus[index][1].vcpu_id, reg)
            self.both_buffer(f"dev.set_attr(6, {attr:#x}) value={value:#x}", ("u64", 8, value),
                             lambda b: lib_dev.set_attr(6, attr, b),
                             lambda b: ref_dev.set_attr(6, attr, b))
            self.masks_agree()
        if then == "none":
            return
        self._enter(index)
        if index in self.runs and then == "wfi":
            _, _, lib_cpu, ref_cpu = self.runs[index]
            self.both(f"cpu[{index}].wfi()", lib_cpu.wfi, ref_cpu.wfi)

    @precondition(lambda self: self.vcpus)
    @rule(num=st.sampled_from(SPI_NUMS), vcpu_id=st.sampled_from([0, 0, 7, 4095]),
          level=st.sampled_from([1, 1, 0, 0, 2]))
    def inject_spi(self, num, vcpu_id, level):
        self.irq_line(1, vcpu_id, num, level)
        event(f"spi {'accepted' if self.ref_vm.nr_spis > num and self.ref_vm.initialised else 'refused'}")

    # -- 7.4's virtual IRS (on the other profiles the same calls answer as those kernels do)
    @precondition(lambda self: self.runs)
    @rule(data=st.data(), method=st.sampled_from(["cdpri", "cdaff", "cden", "cden", "cddis",
                                                  "cdpend", "cdpend", "cdhm", "cdrcfg"]),
          intid=st.sampled_from(CD_INTIDS), prio=st.sampled_from(CD_PRIOS),
          aff=st.sampled_from([None, None, 0, 1, 2, 0xFFFF, 0x10000]),
          flag=st.sampled_from([1, 1, 0, True, 2]))
    def guest_cd(self, data, method, intid, prio, aff, flag):
        args = {"cdpri": (intid, prio), "cden": (intid,), "cddis": (intid,),
                "cdpend": (intid, flag), "cdhm": (intid, flag), "cdrcfg": (intid,)}.get(method)
        if method == "cdaff":
            # the running vCPU's own id by default (so SPIs reach a resident target)
            index = data.draw(st.sampled_from(sorted(self.runs)), label="cdaff target")
            args = (intid, self.vcpus[index][1].vcpu_id if aff is None else aff)
        self._guest(data, method, *args)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), write=st.sampled_from([True, True, False]),
          offset=st.sampled_from(IRS_OFFSETS), size=st.sampled_from(IRS_SIZES),
          value=st.sampled_from(IRS_VALUES))
    def guest_irs_mmio(self, data, write, offset, size, value):
        if write:
            self._guest(data, "irs_write", offset, value, size)
        else:
            self._guest(data, "irs_read", offset, size)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), spi=st.sampled_from([0, 0, 1, 2, 5, 31, 40]),
          level=st.sampled_from([False, False, True]), prio=st.sampled_from([0x10, 0x08, 0]),
          enable_irs=st.sampled_from([True, True, True, False]),
          steps=st.lists(st.sampled_from(["raise", "raise", "lower", "cdia", "cdia", "cddi",
                                          "cdeoi", "wfi", "wfi", "reenter", "disable",
                                          "cdpend0", "cdhm"]),
                         min_size=2, max_size=9))
    def guest_spi_flow(self, data, spi, level, prio, enable_irs, steps):
        # the 7.4 selftest guest (guest_spi_line_code): IRS enable, SPI_SELR / SPI_CFGR, CDPRI,
        # CDAFF to itself, CDEN; then the host raises and lowers the line while the guest
        # acknowledges, deactivates, drops priority, waits and exits, every observable
        # compared after each call
        index, lib_cpu, ref_cpu = self._cpu(data)
        vcpu_id = self.vcpus[index][1].vcpu_id
        intid = 0x60000000 | spi
        setup = [("irs_write", (0x80, 1 if enable_irs else 0)), ("irs_write", (0x108, spi)),
                 ("irs_write", (0x114, int(level))), ("write_cr0", (True,)),
                 ("write_pcr", (0x10,)), ("cdpri", (intid, prio)), ("cdaff", (intid, vcpu_id)),
                 ("cden", (intid,))]
        for method, args in setup:
            self.both(f"cpu[{index}].{method}{args}",
                      lambda: getattr(lib_cpu, method)(*args),
                      lambda: getattr(ref_cpu, method)(*args))
        acked = []
        for step in steps:
            if index not in self.runs:
                break
            _, _, lib_cpu, ref_cpu = self.runs[index]
            if step in ("raise", "lower"):
                self.irq_line(1, 0, spi, int(step == "raise"))
            elif step == "reenter":
                self._exit(index)
                self.masks_agree()
                self._enter(index)
            elif step in ("cddi", "cdpend0", "cdhm", "disable"):
                method, args = {"cddi": ("cddi", (acked.pop() if acked else intid,)),
                                "cdpend0": ("cdpend", (intid, 0)),
                                "cdhm": ("cdhm", (intid, 1)),
                                "disable": ("irs_write", (0x80, 0))}[step]
                self.both(f"cpu[{index}].{method}{args}",
                          lambda: getattr(lib_cpu, method)(*args),
                          lambda: getattr(ref_cpu, method)(*args))
            else:
                lo, _ = self.both(f"cpu[{index}].{step}()", getattr(lib_cpu, step),
                                  getattr(ref_cpu, step))
                if step == "cdia" and isinstance(lo[2], int):
                    acked.append(lo[2])
                    event(f"spi flow: cdia {'SPI' if lo[2] >> 29 == 3 else 'PPI'}")
                if step == "wfi":
                    event(f"spi flow: wfi {lo[2]}, doorbell {self.vcpus[index][1].db_fired}")
            self.masks_agree()

    @precondition(lambda self: self.device is not None)
    @rule(op=st.sampled_from(["has", "get", "get", "set", "set", "set"]),
          attr=st.sampled_from(IRS_REGS_OFFSETS), value=st.sampled_from(IRS_REGS_VALUES),
          size=st.sampled_from([8, 8, 8, 4, 0]))
    def irs_regs(self, op, attr, value, size):
        group = uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS
        lib_dev, ref_dev = self.device
        if op == "has":
            self.both(f"dev.has_attr(IRS_REGS, {attr:#x})", lambda: lib_dev.has_attr(group, attr),
                      lambda: ref_dev.has_attr(group, attr))
            return
        spec = ("bytearray" if size else "none", size, value)
        fn = "get_attr" if op == "get" else "set_attr"
        self.both_buffer(f"dev.{fn}(IRS_REGS, {attr:#x})", spec,
                         lambda b: getattr(lib_dev, fn)(group, attr, b),
                         lambda b: getattr(ref_dev, fn)(group, attr, b))

    @precondition(lambda self: self.device is not None)
    @rule(op=st.sampled_from(["get", "get", "set", "set", "has"]),
          attr=st.sampled_from([0, 0, 0, 0, 1]),
          spi=st.sampled_from(["full", "full", "full", "short", "none", "ro", "big"]),
          lpi=st.sampled_from(["none", "none", "none", "full", "short"]),
          words=st.sampled_from(["zero", "pending", "mixed", "hwu"]),
          form=st.sampled_from(["struct", "struct", "struct", "null", "raw16", "raw32"]))
    def ist(self, op, attr, spi, lpi, words, form):
        group = uapi.KVM_DEV_ARM_VGIC_GRP_IST
        lib_dev, ref_dev = self.device
        if op == "has":
            self.both(f"dev.has_attr(IST, {attr})", lambda: lib_dev.has_attr(group, attr),
                      lambda: ref_dev.has_attr(group, attr))
            return
        nr = self.ref_vm.nr_spis or 32
        # the LPI IST the guest's IST_CFGR describes (the harness reads it off the reference)
        n_lpi = 1 << (getattr(self.ref_vm, "irs_cfgr_lpi_id_bits", 0) or 14)
        pattern = {"zero": [0], "pending": [1 | 8 | 0x10 << 11],
                   "mixed": [0, 1 | 4 | 8, 2, 8 | 0x600 | 3 << 16, 1],
                   "hwu": [0x600 | 1]}[words]

        def image(count, kind):
            if kind == "none":
                return None, 0
            data = bytearray(b"".join((pattern[i % len(pattern)] & U32).to_bytes(4, "little")
                                      for i in range(count)))
            if kind == "short":
                return data[:-4], count * 4
            if kind == "ro":
                return bytes(data), count * 4
            if kind == "big":
                return data + bytes(8), count * 4 + 8
            return data, count * 4

        def desc():
            if form == "null":
                return None
            if form == "raw16":
                return bytearray(16)
            if form == "raw32":
                return bytearray(32)
            s_buf, s_size = image(nr, spi)
            l_buf, l_size = image(n_lpi, lpi)
            return uapi.kvm_vgic_v5_ist(s_buf, s_size, l_buf, l_size)

        lib_desc, ref_desc = desc(), desc()
        fn = "get_attr" if op == "get" else "set_attr"
        lo, _ = self.both(f"dev.{fn}(IST, {attr}, spi={spi}, lpi={lpi}, words={words}, form={form})",
                  lambda: getattr(lib_dev, fn)(group, attr, lib_desc),
                  lambda: getattr(ref_dev, fn)(group, attr, ref_desc))
        event(f"ist {op}: {lo[0]} {lo[1] if lo[0] != 'ok' else ''}")
        if isinstance(lib_desc, uapi.kvm_vgic_v5_ist):
            for name in ("spi_ist", "lpi_ist"):
                lb, rb = getattr(lib_desc, name), getattr(ref_desc, name)
                assert (None if lb is None else bytes(lb)) == (None if rb is None else bytes(rb)), (
                    f"{self.PROFILE}: IST {fn}: {name} bytes differ\ncalls so far:\n  "
                    + "\n  ".join(self.log))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), reg=st.sampled_from(["read_iaffidr", "read_icsr"]))
    def guest_id_regs(self, data, reg):
        self._guest(data, reg)

    @precondition(lambda self: self.device is not None)
    @rule(spec=st.tuples(st.sampled_from(["bytearray"] * 4 + ["bytes", "none", "np_u32"]),
                         st.sampled_from([16, 16, 8, 12, 24, 4]), st.just(0)))
    def get_userspace_ppis(self, spec):
        # the common case of device_attr: read USERSPACE_PPIS
        lib_dev, ref_dev = self.device
        self.both_buffer("dev.get_attr(4, 5)", spec, lambda b: lib_dev.get_attr(4, 5, b),
                         lambda b: ref_dev.get_attr(4, 5, b))

    # -- vCPU attributes and lines
    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), op=st.sampled_from(["has", "get", "get", "set", "set", "set"]),
          group=st.sampled_from(VCPU_GROUPS), attr=st.sampled_from(VCPU_ATTRS), spec=buffers)
    def vcpu_attr(self, data, op, group, attr, spec):
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        lib_v, ref_v = self.vcpus[index]
        label = f"vcpu[{index}].{op}_attr({group}, {attr})"
        if op == "has":
            self.both(label, lambda: lib_v.has_attr(group, attr),
                      lambda: ref_v.has_attr(group, attr))
            return
        self.both_buffer(label, spec,
                         lambda b: getattr(lib_v, f"{op}_attr")(group, attr, b),
                         lambda b: getattr(ref_v, f"{op}_attr")(group, attr, b))

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), attr=st.sampled_from([0, 0, 1, 1, 2, 3]),
          value=st.sampled_from(ATTR_VALUES))
    def set_timer(self, data, attr, value):
        # the common, well-formed case of vcpu_attr: a 4-byte writable buffer
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        lib_v, ref_v = self.vcpus[index]
        self.both_buffer(f"vcpu[{index}].set_attr(1, {attr}) value={value:#x}",
                         ("bytearray", 4, value),
                         lambda b: lib_v.set_attr(1, attr, b),
                         lambda b: ref_v.set_attr(1, attr, b))

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), set_irq=st.booleans(),
          value=st.sampled_from([0x20000017, 0x20000017, 0x20000003, 23]))
    def pmu_init(self, data, set_irq, value):
        self._pmu_init(data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index"),
                       set_irq, value)

    def _pmu_init(self, index, set_irq, value):
        lib_v, ref_v = self.vcpus[index]
        if set_irq:
            self.both_buffer(f"vcpu[{index}].set_attr(0, 0) value={value:#x}",
                             ("bytearray", 4, value),
                             lambda b: lib_v.set_attr(0, 0, b),
                             lambda b: ref_v.set_attr(0, 0, b))
        self.both(f"vcpu[{index}].set_attr(0, 1)", lambda: lib_v.set_attr(0, 1),
                  lambda: ref_v.set_attr(0, 1))

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), op=st.sampled_from(["get", "get", "set", "has"]),
          attr=st.sampled_from([0, 0, 0, 1, 2]), value=st.sampled_from([0x20000017, 0x2000001B]),
          size=st.sampled_from([4, 4, 4, 0]))
    def pmu_attr(self, data, op, attr, value, size):
        # PMU_V3_CTRL with a well-formed buffer, preferring vCPUs that have the PMU feature
        pmu_vcpus = [i for i, (_, r) in enumerate(self.vcpus) if r.pmu] or [0]
        index = data.draw(st.sampled_from(pmu_vcpus), label="vcpu index")
        lib_v, ref_v = self.vcpus[index]
        if op == "has":
            self.both(f"vcpu[{index}].has_attr(0, {attr})", lambda: lib_v.has_attr(0, attr),
                      lambda: ref_v.has_attr(0, attr))
            return
        self.both_buffer(f"vcpu[{index}].{op}_attr(0, {attr}) value={value:#x}",
                         ("bytearray", size, value),
                         lambda b: getattr(lib_v, f"{op}_attr")(0, attr, b),
                         lambda b: getattr(ref_v, f"{op}_attr")(0, attr, b))

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), name=st.sampled_from(TIMER_NAMES), level=st.sampled_from([0, 1, 1, 2]))
    def timer_line(self, data, name, level):
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        lib_v, ref_v = self.vcpus[index]
        self.both(f"vcpu[{index}].timer_line({name!r}, {level})",
                  lambda: lib_v.timer_line(name, level), lambda: ref_v.timer_line(name, level))

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), level=st.sampled_from([0, 1, 1, 2]))
    def pmu_line(self, data, level):
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        lib_v, ref_v = self.vcpus[index]
        self.both(f"vcpu[{index}].pmu_line({level})", lambda: lib_v.pmu_line(level),
                  lambda: ref_v.pmu_line(level))

    # -- KVM_RUN
    @precondition(lambda self: self.vcpus)
    @rule(data=st.data())
    def run_enter(self, data):
        self._enter(data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index"))

    def _enter(self, index):
        lib_v, ref_v = self.vcpus[index]
        lib_ctx, ref_ctx = lib_v.run(), ref_v.run()
        # entering twice is a RuntimeError on both sides; the open block stays open
        lo, ro = self.both(f"vcpu[{index}].run().__enter__()", lib_ctx.__enter__,
                           ref_ctx.__enter__)
        if lo[0] == "ok":
            self.runs[index] = (lib_ctx, ref_ctx, lo[2], ro[2])

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def run_exit(self, data):
        self._exit(data.draw(st.sampled_from(sorted(self.runs)), label="running vcpu"))

    def _exit(self, index):
        lib_ctx, ref_ctx, lib_cpu, ref_cpu = self.runs.pop(index)
        self.both(f"vcpu[{index}] run().__exit__()",
                  lambda: lib_ctx.__exit__(None, None, None),
                  lambda: ref_ctx.__exit__(None, None, None))
        self.stale.append((lib_cpu, ref_cpu))

    # -- the guest, on a vCPU inside run()
    def _cpu(self, data):
        index = data.draw(st.sampled_from(sorted(self.runs)), label="running vcpu")
        _, _, lib_cpu, ref_cpu = self.runs[index]
        return index, lib_cpu, ref_cpu

    def _guest(self, data, method, *args):
        index, lib_cpu, ref_cpu = self._cpu(data)
        shown = ", ".join(hex(a) if isinstance(a, int) and not isinstance(a, bool) else repr(a)
                          for a in args)
        self.both(f"cpu[{index}].{method}({shown})",
                  lambda: getattr(lib_cpu, method)(*args),
                  lambda: getattr(ref_cpu, method)(*args))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), n=st.sampled_from([0, 0, 0, 1]), value=masks)
    def guest_enable(self, data, n, value):
        self._guest(data, "write_ppi_enabler", n, value)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), method=st.sampled_from(["write_ppi_spendr", "write_ppi_cpendr",
                                                  "write_ppi_sactiver", "write_ppi_cactiver"]),
          n=st.sampled_from([0, 0, 0, 1]), value=masks)
    def guest_pend_active(self, data, method, n, value):
        self._guest(data, method, n, value)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), ppi=st.sampled_from(PPIS) | st.integers(0, 127),
          prio=st.sampled_from(PRIOS) | st.integers(0, 255))
    def guest_priority(self, data, ppi, prio):
        self._guest(data, "write_ppi_priority", ppi, prio)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), enable=st.sampled_from([True, True, False]))
    def guest_cr0(self, data, enable):
        self._guest(data, "write_cr0", enable)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), prio=st.sampled_from([31, 31, 0, 5, 6, 20, 0xFF]))
    def guest_pcr(self, data, prio):
        self._guest(data, "write_pcr", prio)

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def guest_cdia(self, data):
        self._guest(data, "cdia")

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def guest_cdeoi(self, data):
        self._guest(data, "cdeoi")

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), intid=st.sampled_from(INTIDS))
    def guest_cddi(self, data, intid):
        self._guest(data, "cddi", intid)

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def guest_wfi(self, data):
        self._guest(data, "wfi")

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), inject=st.sampled_from([True, True, False]),
          deactivate=st.sampled_from([True, True, False]))
    def guest_round_trip(self, data, inject, deactivate):
        # the selftest's loop in one step (host raises SW_PPI, guest waits, acknowledges,
        # deactivates, drops priority, host lowers), so acknowledgements happen often
        index, lib_cpu, ref_cpu = self._cpu(data)
        vcpu_id = self.vcpus[index][1].vcpu_id
        if inject:
            self.irq_line(2, vcpu_id, 3, 1)
        self.both(f"cpu[{index}].wfi()", lib_cpu.wfi, ref_cpu.wfi)
        lo, _ = self.both(f"cpu[{index}].cdia()", lib_cpu.cdia, ref_cpu.cdia)
        intid = lo[2]
        if deactivate and isinstance(intid, int):
            self.both(f"cpu[{index}].cddi({intid:#x})", lambda: lib_cpu.cddi(intid),
                      lambda: ref_cpu.cddi(intid))
            self.both(f"cpu[{index}].cdeoi()", lib_cpu.cdeoi, ref_cpu.cdeoi)
        if inject:
            self.irq_line(2, vcpu_id, 3, 0)

    # -- guest flows that reach the source's rules (fold, flush, wake check, traps)
    @precondition(lambda self: self.vcpus and self.device is not None)
    @rule(data=st.data(), guest=st.sampled_from(["none", "plain", "priorities", "masked"]))
    def run_enter_fresh(self, data, guest):
        # enter a vCPU that has not run yet, often one other than index 0, so the first run
        # (owners, DVI, finalize) happens in varied vCPU orders
        fresh = [i for i, (_, r) in enumerate(self.vcpus) if not r.has_run and i not in self.runs]
        if not fresh:
            return
        index = data.draw(st.sampled_from(fresh[::-1]), label="fresh vcpu")
        self._enter(index)
        if index in self.runs and guest != "none":
            self._guest_setup(index, guest)

    @precondition(lambda self: self.vcpus)
    @rule(data=st.data(), num=st.sampled_from([23, 26, 28, 28, 3, 27, 30]),
          level=st.sampled_from([1, 1, 0]))
    def inject_level_ppi(self, data, num, level):
        # userspace-driven level PPIs (accepted on v2, gated on v3/final) and the owned ones
        index = data.draw(st.integers(0, len(self.vcpus) - 1), label="vcpu index")
        self.irq_line(2, self.vcpus[index][1].vcpu_id, num, level)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(),
          method=st.sampled_from(["write_ppi_spendr", "write_ppi_spendr", "write_ppi_cpendr",
                                  "write_ppi_sactiver", "write_ppi_sactiver",
                                  "write_ppi_cactiver"]),
          ppis=st.lists(st.sampled_from([3, 3, 23, 26, 27, 28, 30, 0, 1, 63]), min_size=1,
                        max_size=3))
    def guest_ppi_bits(self, data, method, ppis):
        # pend/activate single PPIs: SW_PPI, the implemented-but-unexposed ones (23, 26, 28),
        # the DVI timers and unimplemented ones
        value = 0
        for ppi in ppis:
            value |= 1 << ppi
        self._guest(data, method, 0, value)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), ppi=st.sampled_from([3, 3, 23, 26, 27, 28, 30]),
          prio=st.sampled_from([0, 0, 1, 5, 6, 7, 31]), below=st.sampled_from([0, 1, 1, 2, 6]),
          then=st.sampled_from(["wfi", "cdia", "none"]))
    def guest_masked_priority(self, data, ppi, prio, below, then):
        # a PPI at priority ``prio`` with the priority mask ``below`` under it (0: equal)
        index, lib_cpu, ref_cpu = self._cpu(data)
        pcr = max(prio - below, 0)
        for method, args in (("write_ppi_priority", (ppi, prio)), ("write_pcr", (pcr,))):
            self.both(f"cpu[{index}].{method}{args}",
                      lambda: getattr(lib_cpu, method)(*args),
                      lambda: getattr(ref_cpu, method)(*args))
        if then != "none":
            self.both(f"cpu[{index}].{then}()", getattr(lib_cpu, then), getattr(ref_cpu, then))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), source=st.sampled_from(["vtimer", "vtimer", "ptimer", "sw_ppi",
                                                  "level", "pmu", "none"]),
          enable=st.sampled_from([True, True, False]),
          steps=st.lists(st.sampled_from(["cdia", "cdia", "cddi", "cdeoi", "cdeoi", "reenter",
                                          "reenter", "wfi", "wfi", "lower", "raise"]),
                         min_size=2, max_size=8))
    def guest_ack_flow(self, data, source, enable, steps):
        # an interrupt source raised, then acknowledgements, deactivations, priority drops,
        # WFIs and exits/re-entries in random order, with every observable compared after
        # each call (active priorities reach wfi() and has_pending_irq())
        index, lib_cpu, ref_cpu = self._cpu(data)
        lib_v, ref_v = self.vcpus[index]
        ppi = {"vtimer": 27, "ptimer": 30, "sw_ppi": 3, "pmu": 23, "none": None,
               "level": data.draw(st.sampled_from([23, 26, 28]), label="level ppi")}[source]

        def line(level):
            if source in ("vtimer", "ptimer"):
                self.both(f"vcpu[{index}].timer_line({source!r}, {level})",
                          lambda: lib_v.timer_line(source, level),
                          lambda: ref_v.timer_line(source, level))
            elif source == "pmu" and ref_v.pmu:
                self.both(f"vcpu[{index}].pmu_line({level})", lambda: lib_v.pmu_line(level),
                          lambda: ref_v.pmu_line(level))
            elif ppi is not None:
                self.irq_line(2, ref_v.vcpu_id, ppi, level)

        if enable and ppi is not None and self.ref_vm.device is not None:
            value = ref_cpu.read_ppi_enabler(0) | (1 << ppi)
            self.both(f"cpu[{index}].write_ppi_enabler(0, {value:#x})",
                      lambda: lib_cpu.write_ppi_enabler(0, value),
                      lambda: ref_cpu.write_ppi_enabler(0, value))
        line(1)
        self.masks_agree()
        acked = []
        for step in steps:
            if index not in self.runs:
                break
            _, _, lib_cpu, ref_cpu = self.runs[index]
            if step == "reenter":
                self._exit(index)
                self.masks_agree()
                self._enter(index)
            elif step == "lower":
                line(0)
            elif step == "raise":
                line(1)
            elif step == "cddi":
                intid = acked.pop() if acked else PPI_INTID | (ppi or 3)
                self.both(f"cpu[{index}].cddi({intid:#x})", lambda: lib_cpu.cddi(intid),
                          lambda: ref_cpu.cddi(intid))
            else:
                lo, _ = self.both(f"cpu[{index}].{step}()", getattr(lib_cpu, step),
                                  getattr(ref_cpu, step))
                if step == "cdia" and isinstance(lo[2], int):
                    acked.append(lo[2])
            self.masks_agree()

    @precondition(lambda self: self.stale)
    @rule(data=st.data(), method=st.sampled_from(["read_ppi_enabler", "cdia", "wfi"]))
    def stale_cpu(self, data, method):
        # a CpuIf used after its run() block ended
        lib_cpu, ref_cpu = data.draw(st.sampled_from(self.stale), label="stale cpu")
        args = (0,) if method == "read_ppi_enabler" else ()
        self.both(f"stale_cpu.{method}{args}", lambda: getattr(lib_cpu, method)(*args),
                  lambda: getattr(ref_cpu, method)(*args))

    # -- every mask after every step
    @invariant()
    def masks_agree(self):
        if self.lib_vm is None:
            return
        for name in ("exposed_ppis", "userspace_ppis"):
            self._same(f"vm.{name}()", getattr(self.lib_vm, name), getattr(self.ref_vm, name))
        for name in ("nr_spis", "max_vcpus"):
            self._same(f"vm.{name}", lambda n=name: getattr(self.lib_vm, n),
                       lambda n=name: getattr(self.ref_vm, n))
        self._same("vm.irs_enabled", lambda: self.lib_vm.irs_enabled,
                   lambda: self.ref_vm.irs_enabled)
        for spi in range(min(self.ref_vm.nr_spis, 40)):
            for name in ("spi_pending", "spi_state", "spi_level_config", "spi_iste"):
                self._same(f"vm.{name}({spi})", lambda n=name: getattr(self.lib_vm, n)(spi),
                           lambda n=name: getattr(self.ref_vm, n)(spi))
        for index, (lib_v, ref_v) in enumerate(self.vcpus):
            for name in VCPU_VIEWS:
                self._same(f"vcpu[{index}].{name}()", getattr(lib_v, name),
                           getattr(ref_v, name))
            for name in ("contextr", "db_fired"):
                self._same(f"vcpu[{index}].{name}", lambda n=name: getattr(lib_v, n),
                           lambda n=name: getattr(ref_v, n))
        for index, (_, _, lib_cpu, ref_cpu) in self.runs.items():
            for name, n in CPU_READS:
                self._same(f"cpu[{index}].{name}({n})", lambda: getattr(lib_cpu, name)(n),
                           lambda: getattr(ref_cpu, name)(n))

    def _same(self, label, lib_fn, ref_fn):
        lo, ro = call(lib_fn), call(ref_fn)
        assert lo[:2] == ro[:2], (
            f"{self.PROFILE}: after the last call, {label}: library {lo[:2]} != reference "
            f"{ro[:2]}\ncalls so far:\n  " + "\n  ".join(self.log))


def _machine_for(profile):
    return type(f"Gic5Machine_{profile}", (Gic5Machine,), {"PROFILE": profile})


MachineV2 = _machine_for("v2")
MachineV3 = _machine_for("v3")
MachineFinal = _machine_for("final")
Machine74 = _machine_for("7.4")


class TestStateMachineV2(MachineV2.TestCase):
    settings = SETTINGS


class TestStateMachineV3(MachineV3.TestCase):
    settings = SETTINGS


class TestStateMachineFinal(MachineFinal.TestCase):
    settings = SETTINGS


class TestStateMachine74(Machine74.TestCase):
    settings = SETTINGS


def test_same_profiles():
    # the TestCases above cover exactly the library's profiles
    assert tuple(gic5.PROFILES) == ref.PROFILES == ("v2", "v3", "final", "7.4")
