# The closed-loop storm engine: injections interleaved with guest service, in one nogil loop.
#
# Rules this file keeps:
# - The storm runs the very functions the API runs (ppi.pxd): the userspace path is
#   irq_line_one on a real KVM_IRQ_LINE word, the kernel path is inject_ppi with the owner, the
#   guest service is flush / cpu_cdia / cpu_cddi / cpu_cdeoi / fold.
# - Ground truth is kept apart from the model, in one byte per vCPU written only by this file:
#   where the SW_PPI edge should be (bit T_EDGE_L: waiting in KVM's latch; bit T_EDGE_H:
#   moved to the hardware PENDR at entry, not yet acknowledged) and which level lines the storm
#   holds high (T_VTIMER, T_PTIMER, T_PMU). The edge rules are the kernel's intended ones
#   (spec 6.2, 7.4, 7.5): an edge accepted while the latch holds one coalesces; entry moves the
#   latch to PENDR; the guest's CDIA consumes PENDR; exit folds an unacknowledged PENDR back
#   into the latch (merging with a latched edge: coalesced). Deliveries are counted at CDIA and
#   compared with that truth, and the model's latch is compared with T_EDGE_L at every exit.
# - A thread locks every VM of its partition for a chunk of events (STORM_CHUNK) and releases
#   them between chunks: storm threads partition VMs and never contend; API callers on the
#   same VMs wait at most one chunk. Failures are recorded in counters, never raised in the loop.
#
# Accounting, checked by the caller after every run:
#   edges:  accepted = delivered + coalesced + lost
#           (lost: dropped by the model's fold while undelivered, or left after the drain)
#           redelivered = SW_PPI acknowledgements with no edge in PENDR behind them
#           model_mismatch = exits where the model's latch disagrees with the truth
#   levels: raised = level_delivered + withdrawn + level_stuck
#           level_violations = level PPIs acknowledged while their line was low
#   final (and 7.4, whose PPI rules are final's) must show lost = redelivered = model_mismatch
#   = level_violations = level_stuck = 0;
#   v3 shows redelivered edges (its latch is never cleared), v2 lost ones (SW_PPI is never
#   exposed, so no edge is ever taken).
#   SPIs (7.4, mix "spi" or "mixed" on a VM whose guest enabled its IRS): one truth byte per
#   (VM, SPI): S_PEND an accepted edge / raised level not yet acknowledged, S_HIGH the storm
#   holds the level line high. SPI n targets vCPU index n % vcpus_per_vm (the guest's CDAFF),
#   n % 4 == 3 is LEVEL (the guest's IRS_SPI_CFGR.TM), the rest EDGE; every SPI keeps the
#   reset HM (edge), as Linux guests do, so an acknowledge consumes the pending state and the
#   handler has the VMM lower a level line (KVM_IRQ_LINE level 0).
#   spi_accepted = spi_delivered + spi_coalesced + spi_lost
#   spi_raised = spi_level_delivered + spi_withdrawn + spi_level_stuck
#   spi_violations = SPI acknowledgements with no pending truth behind them
#   spi_mismatch = SPIs whose ISTE.PENDING disagrees with the truth after the drain

"""The closed-loop storm engine (storm_run, PATTERNS); see docs/storm.md. The benchmark
baselines bare_inject_loop and CallFloor live in gic5core.baseline (importable here too).
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, qsort
from libc.string cimport memset
import numpy as np

from gic5core.mask cimport test_bit
from gic5core.rng cimport splitmix64, reduce_range
from gic5core.state cimport (vm_t, vcpu_t, gic5_lock, gic5_unlock, SW_PPI, PPI_PMUIRQ,
                             PPI_CNTV, PPI_CNTP, OWNER_KERNEL, TIMER_VTIMER,
                             TIMER_PTIMER)
from gic5core.ppi cimport (irq_line_one, irq_line_gated, inject_ppi, flush, fold, vcpu_load,
                           vcpu_put, cpu_cdia, cpu_cddi, cpu_cdeoi, drive_timer_line,
                           serve_requests, legacy_profile, SHAPE_LEGACY, SHAPE_IRS,
                           SHAPE_ANY)
from gic5core.ist cimport SPI_INTID_BASE, ISTE_PENDING
from gic5core.profile cimport EXPOSE_V2_PER_VCPU_INVERTED
from gic5core.vm cimport VmCore
from gic5core.args cimport need_int
from gic5core.baseline import bare_inject_loop, CallFloor  # no-cython-lint (re-exported)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    enum: CLOCK_MONOTONIC

cdef extern from *:
    int __builtin_clzll(unsigned long long x) noexcept nogil
    void __builtin_prefetch(const void* p, int rw, int locality) noexcept nogil

cdef extern from *:
    """
    /* Ask for every cache line of [p, p + n) ahead of use (a hint: no effect on results). */
    static inline void gic5_prefetch_span(const void *p, size_t n) {
        const char *c = (const char *)p;
        size_t k;
        for (k = 0; k < n; k += 64)
            __builtin_prefetch(c + k, 1, 3);
    }
    """
    void gic5_prefetch_span(const void* p, size_t n) noexcept nogil

cdef enum:
    PREFETCH_MIN_VCPUS = 4096   # below this a storm's vCPUs stay in L2: prefetching only costs
    # PREFETCH_AHEAD: events of look-ahead (a power of two), in two stages: the far one asks for
    # the target's table entries (tg, truth, stats), the near one (PREFETCH_NEAR events
    # ahead, when those entries have arrived) for the vCPU and its VM's lines they point at.
    # One stage of 16 on 65,536 vCPUs: none 68 ns per injection, 1: 43, 4: 36, 8: 29, 16: 26.
    PREFETCH_AHEAD = 32
    PREFETCH_NEAR = 16
    VM_HOT_BYTES = 256          # vm_t's first lines: profile, masks, flags (state.pxd)
    STORM_CHUNK = 65536
    PATTERN_UNIFORM = 0
    PATTERN_SORTED = 1
    PATTERN_BURST = 2
    BURST_LEN = 64
    T_EDGE_L = 1        # truth bit: an undelivered SW_PPI edge waits in KVM's latch
    T_EDGE_H = 16       # truth bit: an undelivered SW_PPI edge is pending in the hardware PENDR
    T_VTIMER = 2        # truth bits: the storm holds this level line high
    T_PTIMER = 4
    T_PMU = 8
    MAX_SERVICE_ACKS = 16
    MIX_EDGES = 0       # SW_PPI edges only
    MIX_MIXED = 1       # SW_PPI edges, timer and PMU levels; SPIs too where the IRS is on
    MIX_SPI = 2         # SPIs only (7.4 with the guest's IRS enabled)
    S_PEND = 1          # SPI truth: accepted / raised, not yet acknowledged
    S_HIGH = 2          # SPI truth: the storm holds this level SPI's line high
    SPI_WORD = 1 << 24  # KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT

PATTERNS = {"uniform": PATTERN_UNIFORM, "sorted": PATTERN_SORTED, "burst": PATTERN_BURST}
MIXES = {"edges": MIX_EDGES, "mixed": MIX_MIXED, "spi": MIX_SPI}

ctypedef struct counters_t:
    uint64_t injections        # KVM_IRQ_LINE calls + kernel line changes issued
    uint64_t accepted          # SW_PPI rising edges KVM_IRQ_LINE accepted (returned 0)
    uint64_t rejected          # KVM_IRQ_LINE calls that returned -errno
    uint64_t coalesced         # edges merged with a latched one (at injection or at exit)
    uint64_t delivered         # SW_PPI acknowledgements that consumed the edge in PENDR
    uint64_t redelivered       # SW_PPI acknowledgements with no edge in PENDR behind them
    uint64_t lost              # undelivered edges left after the drain
    uint64_t raised            # level lines taken from low to high by the storm
    uint64_t withdrawn         # level lines lowered by the storm before delivery
    uint64_t level_delivered   # level PPIs acknowledged (the handler then lowers the line)
    uint64_t level_violations  # level PPIs acknowledged while their line was low
    uint64_t services          # guest runs (flush ... fold)
    uint64_t model_mismatch    # exits where the model's SW_PPI latch disagrees with the truth
    uint64_t level_stuck       # after the drain: vCPUs with a high line never acknowledged
    uint64_t spi_accepted      # EDGE SPI requests KVM_IRQ_LINE accepted (each one a VDPEND)
    uint64_t spi_coalesced     # EDGE SPI requests made while the SPI was still pending
    uint64_t spi_delivered     # EDGE SPI acknowledgements
    uint64_t spi_lost          # EDGE SPIs still pending after the drain
    uint64_t spi_raised        # LEVEL SPI lines taken from low to high
    uint64_t spi_withdrawn     # LEVEL SPI lines lowered before delivery
    uint64_t spi_level_delivered  # LEVEL SPI acknowledgements (the VMM then lowers the line)
    uint64_t spi_level_stuck   # LEVEL SPIs still high and pending after the drain
    uint64_t spi_violations    # SPI acknowledgements with no pending truth behind them
    uint64_t spi_mismatch      # after the drain: ISTE.PENDING differs from the truth
    uint64_t spi_rejected      # SPI KVM_IRQ_LINE calls that returned -errno


# Latency: each undelivered acceptance carries a stamp, the event index (low 32 bits) and the
# target vCPU's guest-run count (low 32 bits) when it was accepted; a delivery records
# (now - stamp) in both, modulo 2^32 (a latency of 2^32 events or runs is out of reach of any
# storm that delivers). Coalescing keeps the older stamp: the delivery answers the oldest
# accepted request. Re-delivered edges (v2/v3: no edge behind them) have no stamp and are
# counted apart (redelivered), never in the distribution.
ctypedef struct vstat_t:
    uint32_t ev[5]       # event stamp per source (SRC_*), valid while the truth bit is set
    uint32_t run[5]      # this vCPU's run count at that acceptance
    uint32_t runs        # KVM_RUNs of this vCPU's guest so far (a trap's re-entry is not one)
    uint32_t word        # the vCPU's SW_PPI KVM_IRQ_LINE word (sw_ppi_word), written by
                         # storm_run: the record's line is loaded for the event anyway
    uint64_t deliveries  # acknowledgements on this vCPU that had an acceptance behind them
    uint64_t offered     # acceptances aimed at it: edges accepted, levels raised, SPIs accepted


cdef enum:
    SRC_EDGE_L = 0      # the SW_PPI edge in KVM's latch (T_EDGE_L)
    SRC_EDGE_H = 1      # the SW_PPI edge in PENDR (T_EDGE_H)
    SRC_VTIMER = 2
    SRC_PTIMER = 3
    SRC_PMU = 4
    VSTAT_WORDS = 8     # uint64 words per vstat_t (the numpy view Python holds)
    # The latency histogram (one row for events, one for runs): values below LAT_LINEAR are
    # counted exactly; above, bucket (k, s) counts [(256 + s) << (k - 8), (257 + s) << (k - 8))
    # for the top bit k in 12..31 (relative width 1/256). Two more slots: the exact maximum and
    # the exact minimum (stored complemented, so a zeroed row means "none yet") of the values
    # at or above LAT_LINEAR; below it the counts themselves are exact, so the row's min / max
    # are found from them (latency_summary) and the common delivery pays no compare for them.
    LAT_LINEAR = 4096
    LAT_SUB = 256
    LAT_BUCKETS = 4096 + 20 * 256
    LAT_MAX = LAT_BUCKETS
    LAT_NOTMIN = LAT_BUCKETS + 1
    LAT_SLOTS = LAT_BUCKETS + 2


ctypedef struct target_t:
    # The flat vCPU number t's VM and vCPU (storm_run's table, in the order of cores): one
    # pair, so a random target costs one line of the table, not one line in each of two.
    vm_t* vm
    vcpu_t* v


ctypedef struct ctx_t:
    counters_t n         # the counters storm_run returns
    uint32_t now         # the current event's index in the run (low 32 bits)
    vstat_t* vs          # the record of the vCPU the current event targets
    uint64_t* ss         # the SPI stamps of its VM (1024: event | run << 32)
    uint64_t* lat        # 2 x LAT_SLOTS: row 0 latency in events, row 1 in guest runs
    const vm_t* spi_vm   # the VM spi_q / spi_rem were computed for (NULL: none yet)
    uint32_t spi_q       # its nr_spis / per_vm and nr_spis % per_vm: vCPU index i has
    uint32_t spi_rem     # spi_q + (i < spi_rem) SPIs (no division per SPI event)


cdef inline void lat_record(uint64_t* h, uint64_t x) noexcept nogil:
    cdef int k
    if x < LAT_LINEAR:
        h[x] += 1
    else:
        k = 63 - __builtin_clzll(x)
        h[LAT_LINEAR + (k - 12) * LAT_SUB + ((x >> (k - 8)) & (LAT_SUB - 1))] += 1
        if x > h[LAT_MAX]:
            h[LAT_MAX] = x
        if ~x > h[LAT_NOTMIN]:
            h[LAT_NOTMIN] = ~x


cdef inline void delivered_from(ctx_t* c, uint32_t ev, uint32_t run) noexcept nogil:
    # A delivery on the current vCPU of a request stamped (ev, run).
    c.vs.deliveries += 1
    lat_record(c.lat, <uint32_t>(c.now - ev))
    lat_record(c.lat + LAT_SLOTS, <uint32_t>(c.vs.runs - run))


cdef inline void stamp(ctx_t* c, int src) noexcept nogil:
    c.vs.offered += 1
    c.vs.ev[src] = c.now
    c.vs.run[src] = c.vs.runs


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline uint32_t sw_ppi_word(uint32_t vcpu_id) noexcept nogil:
    # irq_word(KVM_ARM_IRQ_TYPE_PPI, vcpu_id, SW_PPI), vcpu2 field included.
    return ((vcpu_id >> 8) << 28) | (2u << 24) | ((vcpu_id & 0xff) << 16) | SW_PPI


cdef inline int edge_line(vm_t* vm, uint32_t word, int shape) noexcept nogil:
    # KVM_IRQ_LINE(word, 1) for the event's SW_PPI edge: irq_line_one's call of irq_line_gated,
    # with the v2/v3 shadow switch known False when the storm's shape rules out a legacy VM.
    return irq_line_gated(vm, &vm.irq_line_gate, vm.ppi_fast,
                          (shape & SHAPE_LEGACY) != 0 and vm.prof.pendr_shadow, word, 1)


cdef inline void edge_accepted(uint8_t* truth, ctx_t* c) noexcept nogil:
    c.n.accepted += 1
    if truth[0] & T_EDGE_L:
        c.n.coalesced += 1
        c.vs.offered += 1
    else:
        truth[0] |= T_EDGE_L
        stamp(c, SRC_EDGE_L)


cdef inline void guest_entry(vm_t* vm, vcpu_t* v, uint8_t* truth, ctx_t* c,
                             bint load, int shape) noexcept nogil:
    # load: a KVM_RUN's entry (vcpu_load, then the flush); else the re-entry after a trap.
    if load:
        vcpu_load(vm, v, shape)
        c.vs.runs += 1
    serve_requests(vm, v, shape)
    flush(vm, v, shape)
    if truth[0] & T_EDGE_L:
        truth[0] = (truth[0] & ~T_EDGE_L) | T_EDGE_H
        c.vs.ev[SRC_EDGE_H] = c.vs.ev[SRC_EDGE_L]
        c.vs.run[SRC_EDGE_H] = c.vs.run[SRC_EDGE_L]


cdef inline void guest_exit(vm_t* vm, vcpu_t* v, uint8_t* truth, ctx_t* c,
                            bint put, int shape) noexcept nogil:
    # put: the run's exit to userspace (the fold, then vcpu_put); else a trap handled in KVM.
    fold(vm, v, shape)
    if put:
        vcpu_put(vm, v, shape)
    if truth[0] & T_EDGE_H:
        # Folded back undelivered: the PENDR edge is the older request, so its stamp stays
        # (a latched newer edge coalesces into it).
        truth[0] &= ~T_EDGE_H
        if truth[0] & T_EDGE_L:
            c.n.coalesced += 1
        else:
            truth[0] |= T_EDGE_L
        c.vs.ev[SRC_EDGE_L] = c.vs.ev[SRC_EDGE_H]
        c.vs.run[SRC_EDGE_L] = c.vs.run[SRC_EDGE_H]
    # Compare the model's latch with the truth at every exit. A latch the model dropped while
    # the truth still holds an edge is a lost edge, counted now (later edges would otherwise
    # hide it by coalescing into the truth's stale bit). A latch the model holds with no edge
    # behind it will surface as a redelivery at the next acknowledgement.
    if test_bit(SW_PPI, &v.pending_latch) != ((truth[0] & T_EDGE_L) != 0):
        c.n.model_mismatch += 1
        if truth[0] & T_EDGE_L:
            truth[0] &= ~T_EDGE_L
            c.n.lost += 1


cdef inline void quiet_level(vm_t* vm, vcpu_t* v, int ppi, bint level) noexcept nogil:
    # A level source's line, the way the API drives it: a timer through its output line
    # (drive_timer_line: the physical line of a direct timer, then the timer's injection), the
    # PMU through its owner's injection.
    if ppi == PPI_CNTV:
        drive_timer_line(vm, v, TIMER_VTIMER, level)
    elif ppi == PPI_CNTP:
        drive_timer_line(vm, v, TIMER_PTIMER, level)
    else:
        inject_ppi(vm, v, ppi, level, OWNER_KERNEL)


cdef inline void ack_one(vm_t* vm, vcpu_t* v, uint8_t* truth, int ppi,
                         ctx_t* c, int shape) noexcept nogil:
    # The guest's handler for one acknowledged PPI: account, quiet a level source, deactivate,
    # drop priority.
    cdef uint8_t bit
    cdef int src
    if ppi == SW_PPI:
        if truth[0] & T_EDGE_H:
            truth[0] &= ~T_EDGE_H
            c.n.delivered += 1
            delivered_from(c, c.vs.ev[SRC_EDGE_H], c.vs.run[SRC_EDGE_H])
        else:
            c.n.redelivered += 1
    else:
        if ppi == PPI_CNTV:
            bit, src = T_VTIMER, SRC_VTIMER
        elif ppi == PPI_CNTP:
            bit, src = T_PTIMER, SRC_PTIMER
        else:
            bit, src = T_PMU, SRC_PMU
        if truth[0] & bit:
            c.n.level_delivered += 1
            truth[0] &= ~bit
            delivered_from(c, c.vs.ev[src], c.vs.run[src])
            # The handler quiets the device. A timer is direct (DVI): the line drops in
            # hardware at once. The PMU's overflow clear traps to KVM, which lowers the line:
            # that is an exit and a re-entry, after which PENDR follows the line again.
            quiet_level(vm, v, ppi, False)
            if not test_bit(ppi, &v.hw):
                guest_exit(vm, v, truth, c, False, shape)
                guest_entry(vm, v, truth, c, False, shape)
        else:
            c.n.level_violations += 1
    cpu_cddi(vm, v, 0x20000000u | <uint32_t>ppi)
    cpu_cdeoi(v)


ctypedef int (*line_fn_t)(vm_t*, uint32_t, uint32_t) noexcept nogil
# The SPI paths call the API's irq_line_one through this pointer: an out-of-line copy, so the
# PPI paths' direct calls stay the only ones the compiler weighs for inlining (with the SPI
# call sites inline too it stopped inlining irq_line_one at all: callgrind +40 instructions
# per PPI event).
cdef line_fn_t spi_line_fn = irq_line_one


cdef inline int spi_line(vm_t* vm, unsigned int n, uint32_t level) noexcept nogil:
    # KVM_IRQ_LINE of SPI n, through the API's irq_line_one.
    return spi_line_fn(vm, SPI_WORD | n, level)


cdef inline void ack_spi(vm_t* vm, vcpu_t* v, uint8_t* struth, uint32_t intid,
                         ctx_t* c) noexcept nogil:
    # The guest's handler for an acknowledged SPI (0x60000000 | n): account; a LEVEL SPI's
    # device is quieted (the handler's MMIO to it exits to the VMM, which lowers the line:
    # KVM_IRQ_LINE level 0); deactivate (CDDI), priority drop (CDEOI).
    cdef unsigned int n = intid & 0xffffff
    cdef uint8_t* s = &struth[n]
    if not (s[0] & S_PEND):
        c.n.spi_violations += 1
    elif (n & 3) == 3:
        c.n.spi_level_delivered += 1
        s[0] = 0
        delivered_from(c, <uint32_t>c.ss[n], <uint32_t>(c.ss[n] >> 32))
        if spi_line(vm, n, 0) != 0:
            c.n.spi_rejected += 1
    else:
        c.n.spi_delivered += 1
        s[0] = 0
        delivered_from(c, <uint32_t>c.ss[n], <uint32_t>(c.ss[n] >> 32))
    cpu_cddi(vm, v, intid)
    cpu_cdeoi(v)


cdef inline void spi_stamp(ctx_t* c, unsigned int n) noexcept nogil:
    # SPI n (its target is the current vCPU: SPI n targets vCPU index n % per_vm) accepted now.
    c.vs.offered += 1
    c.ss[n] = <uint64_t>c.now | (<uint64_t>c.vs.runs << 32)


cdef inline void inject_spi_event(vm_t* vm, int index, int per_vm, uint8_t* struth, uint64_t r,
                                  ctx_t* c) noexcept nogil:
    # One SPI event for the vCPU at ``index``: one of its SPIs (index, index + per_vm, ...;
    # EDGE ones requested, LEVEL ones toggled) through KVM_IRQ_LINE.
    cdef unsigned int count, n, nr = vm.nr_spis
    cdef uint8_t* s
    cdef int rc
    c.n.injections += 1
    if <unsigned int>index >= nr:
        return
    if c.spi_vm != vm:
        c.spi_vm = vm
        c.spi_q = nr / <unsigned int>per_vm
        c.spi_rem = nr % <unsigned int>per_vm
    # ceil((nr - index) / per_vm): the SPIs index, index + per_vm, ... below nr
    count = c.spi_q + (<unsigned int>index < c.spi_rem)
    n = <unsigned int>index + <unsigned int>per_vm * <unsigned int>reduce_range(r, count)
    s = &struth[n]
    if (n & 3) == 3:
        if s[0] & S_HIGH:
            if s[0] & S_PEND:
                c.n.spi_withdrawn += 1
            s[0] = 0
            rc = spi_line(vm, n, 0)
        else:
            s[0] = S_HIGH | S_PEND
            c.n.spi_raised += 1
            spi_stamp(c, n)
            rc = spi_line(vm, n, 1)
    else:
        rc = spi_line(vm, n, 1)
        if rc == 0:
            c.n.spi_accepted += 1
            if s[0] & S_PEND:
                c.n.spi_coalesced += 1
                c.vs.offered += 1
            else:
                spi_stamp(c, n)
            s[0] = S_PEND
    if rc != 0:
        c.n.spi_rejected += 1


cdef inline int service(vm_t* vm, vcpu_t* v, uint8_t* truth, uint8_t* struth,
                        bint inject_mid_run, ctx_t* c, int shape) noexcept nogil:
    # One KVM_RUN of the guest: entry flush, acknowledge-handle-EOI until nothing qualifies,
    # exit fold. With inject_mid_run an SW_PPI edge arrives while the guest runs, after its
    # first acknowledgement (the case where v2/v3 lose edges). Returns the acknowledgements.
    cdef int ppi, acks = 0, rc
    guest_entry(vm, v, truth, c, True, shape)
    c.n.services += 1
    while acks < MAX_SERVICE_ACKS:
        ppi = cpu_cdia(vm, v, shape)
        if ppi < 0:
            break
        acks += 1
        if (shape & SHAPE_IRS) and ppi >= SPI_INTID_BASE:  # cpu_cdia's IRS candidate
            ack_spi(vm, v, struth, <uint32_t>ppi, c)
            continue
        ack_one(vm, v, truth, ppi, c, shape)
        if inject_mid_run and acks == 1:
            inject_mid_run = False
            c.n.injections += 1
            rc = edge_line(vm, c.vs.word, shape)
            if rc == 0:
                edge_accepted(truth, c)
            else:
                c.n.rejected += 1
    guest_exit(vm, v, truth, c, True, shape)
    return acks


cdef inline void inject_event(vm_t* vm, vcpu_t* v, uint8_t* truth, uint64_t r, int mix,
                              ctx_t* c, int shape) noexcept nogil:
    # One injection. mixed: 3 in 4 are SW_PPI edges through KVM_IRQ_LINE, the rest toggle a
    # level line through the kernel path (vtimer, ptimer, or the PMU on a PMU vCPU); with
    # SPIs (the caller decides) kinds 4 and 5 are SPI events instead. edges: SW_PPI only.
    cdef int rc, kind = <int>(r & 7), ppi
    cdef uint8_t bit
    c.n.injections += 1
    if kind < 6 or mix == MIX_EDGES:
        rc = edge_line(vm, c.vs.word, shape)
        if rc == 0:
            edge_accepted(truth, c)
        else:
            c.n.rejected += 1
        return
    if kind == 7 and v.pmu_created:
        ppi, bit = PPI_PMUIRQ, T_PMU
    elif (r >> 3) & 1:
        ppi, bit = PPI_CNTP, T_PTIMER
    else:
        ppi, bit = PPI_CNTV, T_VTIMER
    if truth[0] & bit:
        truth[0] &= ~bit
        c.n.withdrawn += 1
        quiet_level(vm, v, ppi, False)
    else:
        truth[0] |= bit
        c.n.raised += 1
        stamp(c, SRC_PMU if bit == T_PMU else (SRC_PTIMER if bit == T_PTIMER else SRC_VTIMER))
        quiet_level(vm, v, ppi, True)


cdef int compare_ptr(const void* a, const void* b) noexcept nogil:
    cdef size_t x = <size_t>(<vm_t**>a)[0], y = <size_t>(<vm_t**>b)[0]
    return (x > y) - (x < y)


cdef inline void lock_all(vm_t** ordered, int n) noexcept nogil:
    # Every multi-VM lock is taken in one global order (ascending address), so two storms over
    # overlapping VM sets can never wait on each other in a cycle.
    cdef int k
    for k in range(n):
        gic5_lock(&ordered[k].lock)


cdef inline void unlock_all(vm_t** ordered, int n) noexcept nogil:
    cdef int k
    for k in range(n - 1, -1, -1):
        gic5_unlock(&ordered[k].lock)


# storm_loop's copies are specialisations of storm_events on the type of a tag argument, one
# per shape it runs (ppi.pxd's shape bits): the tag's value is never read.
ctypedef signed char shape_final_t  # 64 PPIs, no legacy_profile, no irs_uapi: shape 0
ctypedef short shape_irs_t          # 64 PPIs, no legacy_profile, irs_uapi possible: SHAPE_IRS
ctypedef int shape_any_t            # no promise: SHAPE_ANY
ctypedef fused shape_tag_t:
    shape_final_t
    shape_irs_t
    shape_any_t


cdef inline void storm_events(vm_t** vms, int nvms, int per_vm, uint8_t* truth,
                              uint8_t* spi_truth, uint64_t n_events, uint64_t event_base,
                              uint64_t event_total, int pattern, int service_every,
                              uint64_t seed, bint drain, int mix, const target_t* tg,
                              vstat_t* stats, uint64_t* spi_stamps, ctx_t* c,
                              shape_tag_t tag) noexcept nogil:
    # Events event_base .. event_base + n_events of a run of event_total events (the sorted
    # pattern spreads the whole run over the vCPUs in order, across batches). tg maps a
    # flat vCPU number to its VM and vCPU, so the loop has no division in it. vms is sorted by
    # address: the lock order.
    cdef uint64_t total = <uint64_t>nvms * <uint64_t>per_vm
    cdef uint64_t i, start = 0, stop, t = 0, r, burst_left = 0
    cdef int k, _drain, acks, until_service = service_every
    cdef unsigned int n
    cdef vm_t* vm
    cdef vcpu_t* v
    cdef uint8_t* st
    cdef uint32_t q = 0
    cdef uint64_t rng = seed
    # The uniform pattern's targets are known PREFETCH_AHEAD events ahead (their random words
    # are drawn that early: the same sequence, so the same storm): on a storm too big for the
    # caches a target's lines are requested while the events before it run. The vCPU's are
    # its struct up to the v2/v3-only fields (through them on v2/v3) and the first 32 bytes
    # of its PRIORITYR image (every PPI a storm raises is below 32); its VM's are the first
    # VM_HOT_BYTES, the vcpus[] slot and the id_to_index entry that KVM_IRQ_LINE reads (the
    # id from the SW_PPI word in its record). Without prefetching nothing is drawn ahead (the
    # ring's upkeep cost ~5 instructions per event): the same words in the same order.
    cdef uint64_t ahead[PREFETCH_AHEAD]
    cdef uint64_t slot
    cdef bint prefetch = pattern == PATTERN_UNIFORM and total >= PREFETCH_MIN_VCPUS
    cdef unsigned int nr = vms[0].nr_ppis
    cdef bint legacy = vms[0].prof.pendr_shadow or vms[0].prof.fold_changed_only \
        or vms[0].prof.exposure_rule == EXPOSE_V2_PER_VCPU_INVERTED
    cdef size_t vcpu_head = <size_t>((<char*>&tg[0].v.prio[0] if legacy
                                      else <char*>&tg[0].v.exposed) - <char*>tg[0].v)
    cdef vm_t* pvm
    cdef vcpu_t* pv
    cdef uint32_t pw
    # The shape as a constant of this copy (a fused-type specialisation is a C function of its
    # own, so no compiler choice can merge two shapes into one copy with a variable shape).
    cdef int shape
    if shape_tag_t is shape_final_t:
        shape = 0
    elif shape_tag_t is shape_irs_t:
        shape = SHAPE_IRS
    else:
        shape = SHAPE_ANY
    if prefetch:
        for k in range(PREFETCH_AHEAD):
            ahead[k] = splitmix64(&rng)
    # The sorted pattern walks vCPUs in order: vCPU t gets events [t*E/T, (t+1)*E/T).
    cdef uint64_t next_switch = 0
    if pattern == PATTERN_SORTED:
        while t < total and ((t + 1) * event_total) // total <= event_base:
            t += 1
        next_switch = ((t + 1) * event_total) // total
    while start < n_events:
        stop = start + STORM_CHUNK if start + STORM_CHUNK < n_events else n_events
        lock_all(vms, nvms)
        for i in range(start, stop):
            if not prefetch:
                # no look-ahead: event i's word is the generator's i-th, as through the ring
                r = splitmix64(&rng)
            else:
                slot = i & (PREFETCH_AHEAD - 1)
                r = ahead[slot]
                ahead[slot] = splitmix64(&rng)   # the word of event i + PREFETCH_AHEAD
                # far: the tables' entries for event i + PREFETCH_AHEAD
                k = <int>reduce_range(ahead[slot], total)
                __builtin_prefetch(&tg[k], 0, 3)
                __builtin_prefetch(&truth[k], 1, 3)
                # both lines: a caller's numpy array is 16-byte aligned, so a 64-byte record
                # may straddle two
                __builtin_prefetch(&stats[k], 1, 3)
                __builtin_prefetch(<char*>&stats[k] + sizeof(vstat_t) - 1, 1, 3)
                # near: what those entries point at, for event i + PREFETCH_NEAR
                k = <int>reduce_range(ahead[(i + PREFETCH_NEAR) & (PREFETCH_AHEAD - 1)], total)
                pv = tg[k].v
                pvm = tg[k].vm
                pw = stats[k].word
                gic5_prefetch_span(pv, vcpu_head)
                gic5_prefetch_span(&pv.prio[nr], 32)
                gic5_prefetch_span(pvm, VM_HOT_BYTES)
                __builtin_prefetch(&pvm.vcpus[<unsigned int>k % <unsigned int>per_vm], 0, 3)
                __builtin_prefetch(&pvm.id_to_index[((pw >> 16) & 0xff) | ((pw >> 28) << 8)],
                                   0, 3)
            if pattern == PATTERN_UNIFORM:
                t = reduce_range(r, total)
            elif pattern == PATTERN_SORTED:
                while event_base + i >= next_switch and t + 1 < total:
                    t += 1
                    next_switch = ((t + 1) * event_total) // total
            else:
                if burst_left == 0:
                    t = reduce_range(r, total)
                    burst_left = BURST_LEN
                burst_left -= 1
            vm = tg[t].vm
            v = tg[t].v
            c.now = <uint32_t>(event_base + i)
            c.vs = &stats[t]
            # the SPI truth and stamps of t's VM (laid out per VM, NR_SPIS_MAX each)
            st = spi_truth
            # only a VM whose guest enabled its IRS can take SPIs: an irs_uapi VM (a shape
            # without SHAPE_IRS has none; vm.pyx and cpuif.pyx refuse the IRS's writers there,
            # and StormConfig the SPI mix)
            if (shape & SHAPE_IRS) and vm.irs_enabled:
                # t's VM in the storm (32-bit: storm_run keeps the vCPU count below 2^31)
                q = <uint32_t>t / <uint32_t>per_vm
                st = &spi_truth[q * 1024]
                c.ss = &spi_stamps[q * 1024]
            if (shape & SHAPE_IRS) and (mix == MIX_SPI or (
                    mix == MIX_MIXED and vm.irs_enabled and ((r & 7) == 4 or (r & 7) == 5))):
                # the SPI is drawn from the word's scrambled bits (its top bits chose t)
                inject_spi_event(vm, <int>(<uint32_t>t - q * <uint32_t>per_vm), per_vm, st,
                                 r * 0x9E3779B97F4A7C15ULL, c)
            else:
                inject_event(vm, v, &truth[t], r, mix, c, shape)
            until_service -= 1
            if until_service == 0:
                until_service = service_every
                service(vm, v, &truth[t], st, ((r >> 4) & 7) == 0 and mix != MIX_SPI, c,
                        shape)
        unlock_all(vms, nvms)
        start = stop
    if not drain:
        return
    # Drain: run every vCPU until a run acknowledges nothing, then check model against truth.
    lock_all(vms, nvms)
    c.now = <uint32_t>(event_base + n_events)  # drained deliveries are late by the whole run
    for t in range(total):
        vm = tg[t].vm
        v = tg[t].v
        c.vs = &stats[t]
        st = spi_truth
        c.ss = spi_stamps
        if mix != MIX_EDGES:
            st = &spi_truth[(t / <unsigned int>per_vm) * 1024]
            c.ss = &spi_stamps[(t / <unsigned int>per_vm) * 1024]
        for _drain in range(64):
            acks = service(vm, v, &truth[t], st, False, c, shape)
            if acks == 0:
                break
        if truth[t] & (T_EDGE_L | T_EDGE_H):
            c.n.lost += 1             # the drain could not get it delivered
            truth[t] &= ~(T_EDGE_L | T_EDGE_H)
        if truth[t] & (T_VTIMER | T_PTIMER | T_PMU):
            c.n.level_stuck += 1      # a line the storm holds high was never acknowledged
    if mix != MIX_EDGES:
        # Every SPI of every VM: nothing may still be pending, in the truth or in the IST.
        for k in range(nvms):
            vm = tg[k * per_vm].vm
            st = &spi_truth[k * 1024]
            for n in range(vm.nr_spis if vm.ist_entries else 0):
                if ((vm.ist[n] & ISTE_PENDING) != 0) != ((st[n] & S_PEND) != 0):
                    c.n.spi_mismatch += 1
                if st[n] & S_PEND:
                    if (n & 3) == 3:
                        c.n.spi_level_stuck += 1
                    else:
                        c.n.spi_lost += 1
                    st[n] &= ~S_PEND
    unlock_all(vms, nvms)


cdef void storm_loop(vm_t** vms, int nvms, int per_vm, uint8_t* truth, uint8_t* spi_truth,
                     uint64_t n_events, uint64_t event_base, uint64_t event_total, int pattern,
                     int service_every, uint64_t seed, bint drain, int mix,
                     const target_t* tg, vstat_t* stats, uint64_t* spi_stamps,
                     ctx_t* c, bint narrow) noexcept nogil:
    # storm_events, compiled several times over, each copy with a constant shape (ppi.pxd):
    # SHAPE_ANY unless narrow is set and every VM has 64 PPIs (final, 7.4), so flush / fold /
    # CDIA do no word-1 work; without SHAPE_LEGACY when no VM's profile is a legacy_profile,
    # and without SHAPE_IRS when none has irs_uapi, so those switches and the 7.4-only state
    # are not read per event (final's copies have neither: callgrind, final edges 353 -> 312
    # instructions per delivery, mixed 383 -> 326 per event). In each one-word shape
    # storm_mixes calls the uniform pattern (the benchmarks' and gic5-storm's default) with
    # pattern and mix as constants; gcc clones the shape's copy on the constant pattern but
    # keeps one clone for the mixes, with mix a variable (a build where only the edges call
    # existed measured 313.6 against 312.7: the mix tests cost nothing measurable). Each
    # shape's copies are storm_events specialised on a tag type (shape_tag_t): as a plain int
    # argument, gcc cloned one copy for two shapes with the shape left variable (edges 416).
    # The same functions in every copy; only what the compiler knows differs
    # (tests/test_storm.py runs the copies against the generic build and compares every
    # output).
    cdef int k
    cdef bint legacy = False, irs = False
    for k in range(nvms):
        if vms[k].nr_ppis > 64 or not narrow:
            storm_events(vms, nvms, per_vm, truth, spi_truth, n_events, event_base,
                         event_total, pattern, service_every, seed, drain, mix, tg,
                         stats, spi_stamps, c, <shape_any_t>0)
            return
        legacy = legacy or legacy_profile(&vms[k].prof)
        irs = irs or vms[k].prof.irs_uapi
    if legacy:
        # no profile has 64 PPIs and a legacy switch; the generic copy would answer it
        storm_events(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                     pattern, service_every, seed, drain, mix, tg, stats, spi_stamps, c,
                     <shape_any_t>0)
    elif irs:
        storm_mixes(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                    pattern, service_every, seed, drain, mix, tg, stats, spi_stamps, c,
                    <shape_irs_t>0)
    else:
        storm_mixes(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                    pattern, service_every, seed, drain, mix, tg, stats, spi_stamps, c,
                    <shape_final_t>0)


cdef inline void storm_mixes(vm_t** vms, int nvms, int per_vm, uint8_t* truth,
                             uint8_t* spi_truth, uint64_t n_events, uint64_t event_base,
                             uint64_t event_total, int pattern, int service_every,
                             uint64_t seed, bint drain, int mix, const target_t* tg,
                             vstat_t* stats, uint64_t* spi_stamps, ctx_t* c,
                             shape_tag_t tag) noexcept nogil:
    # storm_loop's calls for one one-word shape: the uniform pattern with each mix as a
    # constant (SPIs only where the shape has the IRS), then the other patterns. gcc decides
    # how many clones these become (storm_loop's comment says what it chose).
    if pattern == PATTERN_UNIFORM and mix == MIX_EDGES:
        storm_events(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                     PATTERN_UNIFORM, service_every, seed, drain, MIX_EDGES, tg, stats,
                     spi_stamps, c, tag)
    elif pattern == PATTERN_UNIFORM and mix == MIX_MIXED:
        storm_events(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                     PATTERN_UNIFORM, service_every, seed, drain, MIX_MIXED, tg, stats,
                     spi_stamps, c, tag)
    elif pattern == PATTERN_UNIFORM and mix == MIX_SPI and shape_tag_t is shape_irs_t:
        storm_events(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                     PATTERN_UNIFORM, service_every, seed, drain, MIX_SPI, tg, stats,
                     spi_stamps, c, tag)
    else:
        storm_events(vms, nvms, per_vm, truth, spi_truth, n_events, event_base, event_total,
                     pattern, service_every, seed, drain, mix, tg, stats, spi_stamps, c,
                     tag)


def storm_run(cores, vcpus_per_vm, injections, str pattern="uniform", seed=1,
              service_every=4, truth=None, event_base=0, event_total=0, bint drain=True,
              str mix="mixed", spi_truth=None, stats=None, spi_stamps=None, latency=None,
              bint narrow=True):
    """storm_run(cores, vcpus_per_vm, injections, pattern="uniform", seed=1, service_every=4,
    truth=None, event_base=0, event_total=0, drain=True, mix="mixed", spi_truth=None,
    stats=None, spi_stamps=None, latency=None, narrow=True) -> dict

    Run ``injections`` events of a closed-loop storm over the VmCores ``cores`` (each
    initialised, with ``vcpus_per_vm`` vCPUs that have run once with their guests set up),
    releasing the GIL. A run split into batches passes the same ``truth`` (a uint8 numpy array,
    one byte per vCPU, zeroed at the start of the run), its position ``event_base`` in a run of
    ``event_total`` events, and ``drain=True`` only on the last batch. Returns the counters and
    the elapsed nanoseconds of the loop. ``mix`` (a key of MIXES): "mixed" (SW_PPI edges,
    timer and PMU lines, and on a VM whose guest enabled its IRS, SPIs), "edges" (SW_PPI
    only), "spi" (SPIs only: every VM must be 7.4 with its IRS enabled and its SPIs
    programmed, SPI n targeted at vCPU index n % vcpus_per_vm, LEVEL iff n % 4 == 3). A
    batched run passes the same ``spi_truth`` too (uint8, 1024 bytes per VM, zeroed).

    Latency and fairness (see docs/storm.md): ``stats`` (uint64, shape (vCPUs, 8): per vCPU
    the acceptance stamps, its guest-run count and (high half of ``[:, 5]``, written here) its
    SW_PPI irq word, ``[:, 6]`` deliveries and ``[:, 7]`` acceptances aimed at it),
    ``spi_stamps`` (uint64, 1024 per VM) and ``latency`` (uint64, shape (2, LATENCY_SLOTS):
    the histograms of inject-to-acknowledge latency in events and in the target vCPU's guest
    runs; decode with latency_summary) accumulate over a batched run the same way; zeroed
    ones are made when not given. The result holds the three arrays
    under "stats", "spi_stamps" and "latency" next to the integer counters.

    ``narrow`` (default True): when every VM has 64 PPIs (final, 7.4), run the event loop
    compiled for one mask word; False runs the generic two-word build. Both give the same
    results; the switch is there to compare them.
    """
    # The integers are taken as objects and checked (Cython would truncate a float).
    for name, value in (("vcpus_per_vm", vcpus_per_vm), ("injections", injections),
                        ("seed", seed), ("service_every", service_every),
                        ("event_base", event_base), ("event_total", event_total)):
        need_int(value, name)
    cdef int per_vm = vcpus_per_vm, every = service_every
    cdef uint64_t n_events = injections, rng_seed = seed
    cdef uint64_t base = event_base, total_events = event_total
    # A tuple of our own keeps every VM alive while the GIL is released, whatever the caller
    # does to the sequence it passed (clearing a list must not free a VM mid-storm).
    if isinstance(cores, (str, bytes)):
        raise TypeError("cores must be a sequence of VMs")
    cores = tuple(cores)
    cdef int nvms = len(cores), i
    cdef int pat
    cdef VmCore core
    cdef ctx_t c
    cdef uint64_t t0, t1
    cdef uint8_t[::1] truth_view
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(PATTERNS)}, not {pattern!r}")
    pat = PATTERNS[pattern]
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {sorted(MIXES)}, not {mix!r}")
    cdef int mx = MIXES[mix]
    if nvms == 0 or per_vm <= 0:
        raise ValueError("a storm needs at least one VM with at least one vCPU")
    if every <= 0:
        raise ValueError("service_every must be positive")
    if total_events == 0:
        total_events = base + n_events
    if base + n_events > total_events:
        raise ValueError("event_base + injections exceeds event_total")
    if len({id(obj) for obj in cores}) != nvms:
        raise ValueError("a VM appears twice in cores (its lock would be taken twice)")
    for obj in cores:
        core = <VmCore?>obj
        if core.vm.nr_vcpus < per_vm or not core.vm.initialised or core.vm.dead:
            raise ValueError("every VM must be initialised, alive and have vcpus_per_vm vCPUs")
        for i in range(per_vm):
            if not core.vm.vcpus[i].has_run or core.vm.vcpus[i].running:
                raise ValueError("every vCPU must have run once and be outside run()")
        if mx == MIX_SPI and not (core.vm.prof.irs_uapi and core.vm.irs_enabled
                                  and core.vm.nr_spis):
            raise ValueError("mix 'spi' needs 7.4 VMs whose guest enabled the IRS "
                             "(gic5-storm --profile 7.4 --mix spi programs them)")
    if spi_truth is None:
        spi_truth = np.zeros(<Py_ssize_t>nvms * 1024, dtype=np.uint8)
    if memoryview(spi_truth).readonly:
        raise ValueError("spi_truth must be a writable buffer")
    cdef uint8_t[::1] spi_truth_view = spi_truth
    if spi_truth_view.shape[0] != <Py_ssize_t>nvms * 1024:
        raise ValueError("spi_truth must hold 1024 bytes per VM of the storm")
    if truth is None:
        truth = np.zeros(<Py_ssize_t>nvms * per_vm, dtype=np.uint8)
    if memoryview(truth).readonly:
        raise ValueError("truth must be a writable buffer of one uint8 per vCPU")
    truth_view = truth
    if truth_view.shape[0] != <Py_ssize_t>nvms * per_vm:
        raise ValueError("truth must hold one byte per vCPU of the storm")
    cdef Py_ssize_t total = <Py_ssize_t>nvms * per_vm, j
    if total >= 2 ** 31:  # the loop indexes vCPUs with 32-bit arithmetic
        raise ValueError("a storm covers fewer than 2**31 vCPUs")
    if stats is None:
        stats = new_stats(total)
    if spi_stamps is None:
        spi_stamps = np.zeros(<Py_ssize_t>nvms * 1024, dtype=np.uint64)
    if latency is None:
        latency = np.zeros((2, LAT_SLOTS), dtype=np.uint64)
    for name, arr in (("stats", stats), ("spi_stamps", spi_stamps), ("latency", latency)):
        if memoryview(arr).readonly:
            raise ValueError(f"{name} must be a writable buffer")
    cdef uint64_t[:, ::1] stats_view = stats
    cdef uint64_t[::1] stamps_view = spi_stamps
    cdef uint64_t[:, ::1] lat_view = latency
    if stats_view.shape[0] != total or stats_view.shape[1] != VSTAT_WORDS:
        raise ValueError(f"stats must have shape ({total}, {VSTAT_WORDS}): one row per vCPU")
    if stamps_view.shape[0] != <Py_ssize_t>nvms * 1024:
        raise ValueError("spi_stamps must hold 1024 entries per VM of the storm")
    if lat_view.shape[0] != 2 or lat_view.shape[1] != LAT_SLOTS:
        raise ValueError(f"latency must have shape (2, {LAT_SLOTS})")
    cdef vm_t** vms = <vm_t**>malloc(nvms * sizeof(vm_t*))
    cdef target_t* tg = <target_t*>malloc(total * sizeof(target_t))
    if vms == NULL or tg == NULL:
        free(vms)
        free(tg)
        raise MemoryError()
    for i in range(nvms):
        core = <VmCore>cores[i]
        vms[i] = &core.vm
        for j in range(per_vm):
            tg[i * per_vm + j].vm = &core.vm
            tg[i * per_vm + j].v = core.vm.vcpus[j]
    qsort(vms, nvms, sizeof(vm_t*), compare_ptr)
    cdef vstat_t* vs = <vstat_t*>&stats_view[0, 0]
    for j in range(total):
        vs[j].word = sw_ppi_word(tg[j].v.vcpu_id)
    memset(&c, 0, sizeof(c))
    c.lat = &lat_view[0, 0]
    c.ss = &stamps_view[0]
    with nogil:
        t0 = now_ns()
        storm_loop(vms, nvms, per_vm, &truth_view[0], &spi_truth_view[0], n_events, base,
                   total_events, pat, every, rng_seed, drain, mx, tg,
                   vs, &stamps_view[0], &c, narrow)
        t1 = now_ns()
    free(vms)
    free(tg)
    result = dict(c.n)
    result["elapsed_ns"] = t1 - t0
    result["stats"] = stats
    result["spi_stamps"] = spi_stamps
    result["latency"] = latency
    return result


LATENCY_SLOTS = LAT_SLOTS


def new_stats(Py_ssize_t vcpus):
    """new_stats(vcpus) -> a zeroed uint64 array of shape (vcpus, 8) for storm_run's
    ``stats``, 64-byte aligned so that each vCPU's record is one cache line (a storm over
    many vCPUs touches one line per event for it, not two)."""
    if vcpus < 0:
        raise ValueError("vcpus must not be negative")
    raw = np.zeros(vcpus * VSTAT_WORDS + 8, dtype=np.uint64)
    skip = (-(raw.ctypes.data) % 64) // 8
    return raw[skip:skip + vcpus * VSTAT_WORDS].reshape(vcpus, VSTAT_WORDS)


def latency_bucket_floor(Py_ssize_t index):
    """The smallest latency that bucket ``index`` of a latency row counts (exact below
    4096; above, buckets are 1/256 of their power of two wide)."""
    cdef int k
    if index < 0 or index >= LAT_BUCKETS:
        raise ValueError(f"bucket index must be in 0..{LAT_BUCKETS - 1}")
    if index < LAT_LINEAR:
        return index
    k = 12 + <int>((index - LAT_LINEAR) // LAT_SUB)
    return (LAT_SUB + (index - LAT_LINEAR) % LAT_SUB) << (k - 8)


def latency_summary(row):
    """latency_summary(row) -> dict: one row of storm_run's ``latency`` array as
    {"count", "min", "median", "p99", "max", "hist_log2"}. min and max are exact; median and
    p99 are nearest-rank (the smallest latency with at least half / 99 % of the deliveries at
    or below it), exact below 4096 and else the floor of a bucket 1/256 wide, kept within
    [min, max]. hist_log2[k] counts latencies in [2^k, 2^(k+1)), bucket 0 also 0; trimmed
    after its last nonzero bucket. With no deliveries the four statistics are None."""
    h = np.asarray(row, dtype=np.uint64)
    if h.shape != (LAT_SLOTS,):
        raise ValueError(f"a latency row has {LAT_SLOTS} slots")
    counts = h[:LAT_BUCKETS].astype(np.int64)
    total = int(counts.sum())
    hist = [0] * 32
    if total == 0:
        return {"count": 0, "min": None, "median": None, "p99": None, "max": None,
                "hist_log2": []}
    # min / max: exact from the linear counts, else from the two slots kept for the values at
    # or above LAT_LINEAR (lat_record)
    linear = np.nonzero(counts[:LAT_LINEAR])[0]
    big = int(counts[LAT_LINEAR:].sum()) != 0
    lo = int(linear[0]) if linear.size else int(~h[LAT_NOTMIN] & np.uint64(0xFFFFFFFFFFFFFFFF))
    hi = int(h[LAT_MAX]) if big else int(linear[-1])
    cum = np.cumsum(counts)

    def rank(q_num, q_den):
        need = -(-total * q_num // q_den)  # ceil(total * q)
        idx = int(np.searchsorted(cum, need))
        return min(max(latency_bucket_floor(idx), lo), hi)

    for idx in np.nonzero(counts)[0]:
        floor = latency_bucket_floor(int(idx))
        hist[max(floor, 1).bit_length() - 1] += int(counts[idx])
    while hist and hist[len(hist) - 1] == 0:
        hist.pop()
    return {"count": total, "min": lo, "median": rank(1, 2), "p99": rank(99, 100), "max": hi,
            "hist_log2": hist}
