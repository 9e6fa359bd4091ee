# The state of one VM and its vCPUs, as C structs: the contract every core module reads.
#
# Invariants (each function in ppi.pxd / vm.pyx keeps them):
# - Every mask bit >= vm.prof.nr_ppis is 0 in every KVM-side mask (a 64-PPI profile never
#   stores word 1), and every mask is a subset of vm.impl where the kernel derives it from the
#   implemented set (exposed, userspace_ppis).
# - enabled is a subset of the exposed set in force when the guest wrote ENABLER.
# - Only PPI 3 (SW_PPI) is edge-configured (vm.edge_cfg == {3}; hot paths test ppi == SW_PPI
#   directly); pending_latch bits exist only for it.
# - owned bits are PPIs 23 (PMU), 27 (vtimer), 30 (ptimer) only: the owner of each is implied
#   by the PPI number, because V5 forces the architected numbers before any owner is set.
# - hw (DVI) bits are 27 and 30 only, set with their owners at the vCPU's first run
#   (kvm_timer_enable -> kvm_vgic_map_phys_irq -> vgic_v5_set_ppi_dvi); never masked by the
#   exposed set.
# - vcpu_t is allocated with only 2 * nr_ppis bytes of prio (vcpu_alloc_size): nothing may
#   touch prio[2 * nr_ppis ...]; accessors take the VM to know nr_ppis.
# - The ICH_* image fields mean "the hardware registers" only while loaded == 1; between
#   runs they keep the last exit's values (the vCPU's saved copy). The next flush restores
#   ACTIVER and ENABLER as they are (the kernel's entry images are the last exit's, or what a
#   trap handler wrote) and rewrites PENDR and DVIR.
# - The hardware image holds state only for implemented PPIs: every ICH_* mask is a subset of
#   vm.impl (the bits of unimplemented PPIs are RES0), and so are the PRIORITYR bytes but
#   between a 7.4 CPU_SYSREGS write (prio_raw) and the next entry.
# - vm.lock protects every field of the VM and all its vCPUs; every core entry point takes it
#   (see vm.pyx for the list of what is atomic against what).
# - Exception to "enabled is a subset of the exposed set" (7.4 only): a CPU_SYSREGS write of
#   PPI_ENABLER0 / PPI_SACTIVER0 stores the raw value (enabled, active and the ICH images);
#   the vCPU's first run masks them (finalize). Writes are refused once any vCPU ran, so the
#   invariant holds again whenever a vCPU is loaded.
# - SPI bitmaps hold bits only below nr_spis (7.4); other profiles never touch them.
#   vm.spi_ready (bits below ist_entries) is allocated with the IST at CTRL_INIT, one row per
#   vcpu_id up to the highest; no vCPU can be created after CTRL_INIT, so its rows are fixed
#   from then on (the row of an id no vCPU has is kept but never read).

from libc.stdint cimport uint8_t, uint16_t, int16_t, uint32_t, uint64_t
from gic5core.mask cimport mask128
from gic5core.profile cimport profile_t

cdef enum:
    NR_PPIS_MAX = 128       # the architectural PPI space
    MAX_VCPUS = 512         # VGIC_V5_MAX_CPUS == KVM_MAX_VCPU_IDS on arm64
    IRQ_WORD_VCPU_IDS = 4096  # vcpu ids an irq word can name (vcpu2_index * 256 + vcpu_index)
    NO_VCPU = 512           # id_to_index of an id no vCPU has: the slot past the last vCPU
    SW_PPI = 3              # GICV5_ARCH_PPI_SW_PPI: the only edge PPI, the only userspace one
    PPI_PMUIRQ = 23         # GICV5_ARCH_PPI_PMUIRQ
    PPI_CNTHP = 26          # GICV5_ARCH_PPI_CNTHP
    PPI_CNTV = 27           # GICV5_ARCH_PPI_CNTV
    PPI_CNTHV = 28          # GICV5_ARCH_PPI_CNTHV
    PPI_CNTP = 30           # GICV5_ARCH_PPI_CNTP
    PPI_INTID_BASE = 0x20000000  # GICV5_HWIRQ_TYPE_PPI << 29

cdef enum:
    NR_SPIS_MAX = 1024      # VGIC_V5_MAX_NR_SPIS (7.4)
    SPI_WORDS = 16          # NR_SPIS_MAX / 64: words of a per-SPI bitmap
    SPI_READY_ROW = 17      # words of a vCPU's row of vm.spi_ready: the summary, SPI_WORDS
    NR_SPIS_DEFAULT = 32    # VGIC_V5_DEFAULT_NR_SPIS: also the NR_IRQS minimum and step (7.4)

cdef enum:  # timer index (the KVM_ARM_VCPU_TIMER_IRQ_* attr numbers)
    TIMER_VTIMER = 0        # KVM_ARM_VCPU_TIMER_IRQ_VTIMER
    TIMER_PTIMER = 1        # KVM_ARM_VCPU_TIMER_IRQ_PTIMER
    TIMER_HVTIMER = 2       # KVM_ARM_VCPU_TIMER_IRQ_HVTIMER
    TIMER_HPTIMER = 3       # KVM_ARM_VCPU_TIMER_IRQ_HPTIMER
    NR_TIMERS = 4

cdef enum:  # who injects
    OWNER_USERSPACE = 0     # KVM_IRQ_LINE passes owner = NULL
    OWNER_KERNEL = 1        # the PPI's in-kernel device (timer or PMU) injects with itself

cdef extern from *:
    """
    #include <sched.h>
    /* A test-and-test-and-set spinlock. Held only for bounded C work (one call, or one
       chunk of a batch or storm), never across anything that needs the GIL, so a thread that
       holds the GIL and spins cannot deadlock with the holder. sched_yield() keeps a 2-core
       box from burning a whole quantum when the holder was descheduled. Not fair: a ticket
       lock was tried and convoyed whenever the next ticket's owner was descheduled (under
       valgrind, and on this oversubscribed 2-vCPU machine), so a storm stalled on every chunk.
       A waiter behind a long batch may wait several chunks (docs/stress.md). */
    typedef struct { int held; } gic5_lock_t;
    static inline void gic5_lock(gic5_lock_t *l) {
        unsigned spins = 0;
        while (__atomic_exchange_n(&l->held, 1, __ATOMIC_ACQUIRE)) {
            while (__atomic_load_n(&l->held, __ATOMIC_RELAXED)) {
                if (++spins > 64) { sched_yield(); spins = 0; }
            }
        }
    }
    static inline void gic5_unlock(gic5_lock_t *l) {
        __atomic_store_n(&l->held, 0, __ATOMIC_RELEASE);
    }
    """
    ctypedef struct gic5_lock_t:
        int held            # 0 free, 1 held
    void gic5_lock(gic5_lock_t* l) noexcept nogil
    void gic5_unlock(gic5_lock_t* l) noexcept nogil


ctypedef struct vcpu_t:
    # --- KVM's per-IRQ shadow (struct vgic_irq fields, one bit per PPI) ---
    mask128 pending_latch    # edge latch (and v2 trapped SPENDR); KVM-pending for edge PPIs
    mask128 line_level       # level input as KVM stores it (hw PPIs: their physical line is
                             # timer_level, ppi.pxd phys_lines; the two differ only after a
                             # 7.4 CPU_SYSREGS SPENDR0 write)
    mask128 enabled          # guest enable, masked by the exposed set at the trapped write
    mask128 active           # active as folded back at the last exit
    mask128 owned            # PPI has an in-kernel owner (userspace injections are dropped)
    mask128 hw               # PPI is hardware-mapped and directly injected (DVI)
    # --- the ICH_PPI_* register image: the GICv5 "list registers" of PPIs ---
    mask128 ich_dvir         # ICH_PPI_DVIR0/1_EL2: directly injected PPIs (zeroed at exit)
    mask128 ich_enabler      # ICH_PPI_ENABLER0/1_EL2
    mask128 ich_pendr        # ICH_PPI_PENDR0/1_EL2 (DVI PPIs: hardware owns pending)
    mask128 ich_activer      # ICH_PPI_ACTIVER0/1_EL2
    uint64_t vmcr            # ICH_VMCR_EL2 while loaded: EN bit 0, VPMR bits 31:27
    uint64_t apr             # ICH_APR_EL2 while loaded: bit p = priority p active
    uint64_t saved_vmcr      # vgic_vmcr: VMCR saved at the last exit (wake predicate input)
    uint64_t saved_apr       # vgic_apr: APR saved at the last put (wake predicate input)
    # --- vCPU configuration and lifecycle ---
    uint64_t icsr            # 7.4: vgic_icsr, ICC_ICSR_EL1 as CPU_SYSREGS stores it (RES0 clear)
    uint32_t vcpu_id         # KVM vcpu_id (0..511)
    uint32_t pmu_irq         # KVM_ARM_VCPU_PMU_V3_IRQ value; 0 = not set
    uint8_t el2              # KVM_ARM_VCPU_HAS_EL2 feature (nested virt: INIT refuses it)
    uint8_t pmu_feature      # KVM_ARM_VCPU_PMU_V3 feature
    uint8_t pmu_created      # PMU_V3_INIT done (owner of PPI 23 taken then, with a VGIC)
    uint8_t timers_enabled   # kvm_timer_enable done: owners + DVI of vtimer/ptimer set
    uint8_t has_run          # the first KVM_RUN completed
    uint8_t running          # inside run(): its vcpu->mutex is held
    uint8_t loaded           # the ICH image is live (between flush and fold)
    uint8_t cpu_lines        # KVM_ARM_IRQ_TYPE_CPU lines: bit 0 IRQ, bit 1 FIQ
    uint8_t timer_level      # recorded timer line levels, bit = timer index
    uint8_t pmu_level        # recorded PMU overflow line level
    uint8_t prio_raw         # 7.4 (irs_uapi VMs only): a CPU_SYSREGS write put raw PRIORITYR bytes
                             # (unimplemented PPIs too); the next entry's hardware drops them
    # --- the VPE (7.4): residency and ICH_CONTEXTR_EL2 (vgic_v5_load / vgic_v5_put) ---
    uint8_t resident         # between vgic_v5_load and vgic_v5_put (the IRS may signal it)
    uint8_t db_fired         # the VPE doorbell fired (db_handler); cleared when made
                             # non-resident (__vgic_v5_make_non_resident)
    uint8_t reload_req       # 7.4 (irs_uapi VMs only): KVM_REQ_RELOAD_GICv5, put + load next entry
    uint64_t contextr        # ICH_CONTEXTR_EL2 as last written: V 63, IRICHPPIDIS 61, DB 60,
                             # DBPM 59:55, VPE 47:32 (= vcpu_id); VM 15:0 always 0 (host VM
                             # ids are not modelled). 0 while non-resident without a doorbell
    # --- v2/v3 only (after everything final and 7.4 read per run, so a storm's final vCPU
    # is its first four lines and its PRIORITYR image) ---
    mask128 exposed          # v2 only: this vCPU's exposed set (v3/final use vm.exposed)
    mask128 pendr_entry      # v2/v3: the entry pending image (the raw shadow copied at flush)
    mask128 activer_entry    # v2/v3: ACTIVER as written at entry (changed-bits fold)
    mask128 enabler_entry    # v2: ENABLER as written at entry (its fold compares it too)
    mask128 pendr_shadow     # v2/v3: cpu_if->vgic_ppi_pendr, KVM's pending shadow: assigned
                             # irq_is_pending at each valid non-DVI injection, ORed with the
                             # exit PENDR minus HMR bits at fold, never cleared by the guest
    mask128 pendr_exit       # v2: vgic_ppi_pendr_exit (the shadow at flush, PENDR at exit)
    mask128 enabler_exit     # v2: vgic_ich_ppi_enabler_exit (ENABLER at the last exit)
    # --- priorities, sized by the profile: the allocation ends 2 * nr_ppis bytes into prio ---
    uint8_t prio[256]        # [0, nr): KVM's shadow priority per PPI, synced from the image at
                             # a WFI put (v2: at check); [nr, 2 nr): ICH_PPI_PRIORITYRn_EL2 as
                             # bytes, byte k of register n = PPI 8n+k (little-endian layout of
                             # the registers). PRIORITYR bytes of PPIs >= nr do not exist.

ctypedef struct vm_t:
    profile_t prof           # the revision being modelled (copied, never shared)
    unsigned int nr_ppis     # prof.nr_ppis, hoisted for the hot paths
    mask128 impl             # host implemented PPIs, cut to nr_ppis
    mask128 userspace_ppis   # computed at CTRL_INIT by the profile's rule
    mask128 irq_line_gate    # PPIs KVM_IRQ_LINE lets through: userspace_ppis (v3+), all (v2)
    mask128 exposed          # v3/final: the VM's exposed set (vgic_ppi_mask)
    mask128 hmr              # exposed PPIs configured level (vgic_ppi_hmr); informative
    mask128 edge_cfg         # edge-configured PPIs: {SW_PPI}
    uint8_t host_pmu         # the host supports PMUv3
    uint8_t has_device       # a V5 VGIC exists (irqchip_in_kernel)
    uint8_t initialised      # CTRL_INIT done (vgic_initialized)
    uint8_t dead             # kvm->vm_dead: every ioctl answers -EIO
    uint8_t ran_once         # some vCPU completed its first run
    uint8_t timer_ppis_frozen   # KVM_ARCH_FLAG_TIMER_PPIS_IMMUTABLE
    uint8_t vgic_ready       # dist->ready: kvm_vgic_map_resources succeeded once (the VM's
                             # first run got past the map); later first runs skip the map
    uint32_t timer_ppi[4]    # VM-wide timer PPI numbers (kvm->arch.timer_data.ppi)
    int nr_vcpus             # vCPUs created; index = creation order
    gic5_lock_t lock         # spinlock (zero = free); see gic5_lock/gic5_unlock
    # --- read on every KVM_IRQ_LINE and guest run: kept with the masks above, in the first
    # lines of the struct (a storm over many VMs touches these lines of a random VM per event)
    uint8_t ppi_fast         # derived: alive, with a device, initialised; kept by every writer
                             # of dead / has_device / initialised (KVM_IRQ_LINE's common path)
    uint8_t irs_enabled      # kvm->arch.vgic.enabled: the guest's IRS_CR0.IRSEN
    uint32_t nr_spis         # dist->nr_spis: 0 until NR_IRQS or CTRL_INIT (then 32..1024)
    uint32_t ist_entries     # 2 ** spi_id_bits once CTRL_INIT made the SPI IST (else 0)
    uint16_t id_to_index[4096]  # vcpu_id -> index, NO_VCPU (the always-NULL slot of vcpus)
                               # if none; sized for every id an irq word can encode
                               # (vcpu2:vcpu_index, 12 bits), so no bounds check
    # --- the IRS-era device (7.4; zero / unused on the other profiles) ---
    int max_vcpus            # kvm->max_vcpus: KVM_CREATE_VCPU refuses an id (or a count) at
                             # or above it; 512 but on 7.4 (max_gicv5_vcpus, host dependent)
    int max_gicv5_vcpus      # min(host IRS max VPEs, 512) (vgic_v5_probe)
    uint8_t v5_registered    # the V5 device type is registered (7.4: needs a host LPI domain)
    uint8_t ipa_bits         # the VM's IPA size: the IRS address must fit below 1 << ipa_bits
    uint64_t irs_base        # vgic_v5_irs_base: VGIC_ADDR_UNDEF (all-ones) until GRP_ADDR
    uint64_t spi_level[16]   # per SPI (bit n of word n / 64): line_level
    uint64_t spi_latch[16]   # per SPI: pending_latch (never cleared by KVM for an SPI)
    uint64_t spi_cfg_level[16]  # per SPI: config LEVEL (0 = EDGE, KVM's default)
    # --- the virtual IRS (7.4): the hardware's SPI IST and KVM's emulated IRS registers ---
    uint32_t ist[1024]       # the virtual SPI IST: one ISTE per SPI (ist.pxd; ist_store only)
    uint64_t* spi_ready      # derived from ist, one row of SPI_READY_ROW words per vcpu_id
                             # below spi_ready_ids (NULL until CTRL_INIT made the IST): row[1+k]
                             # bit b is SPI 64k + b ready (ENABLE, PENDING, not ACTIVE) and
                             # targeted at that id (IAFFID); row[0] bit k: row[1 + k] is not 0
    uint32_t spi_ready_ids   # rows of spi_ready: the highest vcpu_id + 1 (0 while NULL)
    uint32_t* lpi_ist        # the host LPI IST (ISTE words; contents are stored, never
                             # delivered: LPIs are out of scope); NULL when none exists
    uint32_t lpi_ist_words   # its entries, 2 ** lpi_id_bits; 0 when none
    uint8_t lpi_ist_restore_pending  # irs->lpi_ist_restore_pending (set by a userspace
                             # IST_BASER 0->1; cleared only by a successful IST SET)
    uint8_t vpe_id_bits      # vgic_v5_vmte_vpe_id_bits, fixed at CTRL_INIT
    uint8_t host_irs_pri_bits     # host IRS priority bits (1..5): gicv5_global_data
    uint8_t host_ist_id_bits      # host IRS_IDR2.ID_BITS
    uint8_t host_min_lpi_id_bits  # host IRS_IDR2.MIN_LPI_ID_BITS
    uint8_t host_pa_range         # sanitised ID_AA64MMFR0_EL1.PARange
    uint32_t irs_idr0        # idr0 fields as the guest reads them (INT_DOM, PA_RANGE, IRSID)
    uint32_t irs_idr1_pri    # idr1.priority_bits
    uint32_t irs_idr2        # idr2 fields as read, without the always-set LPI bit
    uint32_t irs_cr1         # cr1 fields (writable mask 0xf5ff)
    uint32_t spi_selr        # spi_selr.id (23:0)
    uint32_t pe_selr         # pe_selr.iaffid (15:0)
    uint32_t ist_cfgr        # ist_cfgr fields as read
    uint64_t ist_baser       # ist_baser: ADDR 55:6 | VALID
    vcpu_t* vcpus[513]       # by index; each allocated once, freed with the VM. vcpus[NO_VCPU]
                             # is always NULL: the lookup by id is one load, with no test of
                             # the index


cdef inline size_t vcpu_alloc_size(unsigned int nr_ppis) noexcept nogil:
    # The vCPU struct up to its priority bytes, plus shadow and image for nr_ppis PPIs.
    # prio is the last member, so sizeof minus its full length covers everything before it
    # (and the tail padding, harmlessly).
    return sizeof(vcpu_t) - sizeof((<vcpu_t*>NULL).prio) + 2 * nr_ppis
