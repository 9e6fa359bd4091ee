# A revision of the vgic-v5 series as data: the switch points of the spec's table 9.2.
#
# Rules this file keeps:
# - A profile is a plain C struct copied by value into each VM; the core reads it at a few
#   switch points and nowhere keeps per-revision copies of code.
# - A new revision is one new column of profile.pyx's switch table, nothing else.

cdef enum umask_rule_t:
    UMASK_V2_INDEX_AS_BITMAP = 0  # v2: (GICV5_SW_PPI & GICV5_HWIRQ_ID) = 3 stored as a bitmap
    UMASK_SINGLE_BIT = 1          # v3 and later: the single bit of PPI 3

cdef enum exposure_rule_t:
    EXPOSE_V2_PER_VCPU_INVERTED = 0  # v2: per vCPU, every implemented PPI but an unowned SW_PPI
    EXPOSE_VCPU0_EVERY_FIRST_RUN = 1  # v3: impl & (owners of vCPU 0 | SW_PPI), each first run
    EXPOSE_VCPU0_ONCE = 2             # final: same, once per VM (SW_PPI bit = "finalized")
    EXPOSE_FIRST_RUN_MASKED = 3       # 7.4: once per VM from the vCPU that runs first, then
                                      # each vCPU's own first run masks its PPI state with it

cdef enum wake_rule_t:
    WAKE_V2_EXIT_IMAGES = 0  # v2 19/36: shadow non-empty, then enabler_exit & pendr_exit
    WAKE_V3_SHADOW = 1       # v3 21/36: shadow non-empty, then the ENABLER image & the shadow
    WAKE_KVM_STATE = 2       # final: exposed PPIs, irq->enabled and irq_is_pending / hw line

cdef enum prio_sync_t:
    PRIO_SYNC_ALL_AT_CHECK = 0   # v2: vgic_v5_has_pending_ppi syncs all PPIs' priorities itself
    PRIO_SYNC_EXPOSED_AT_PUT = 1  # v3/final: vgic_v5_put with IN_WFI syncs the exposed PPIs

ctypedef struct profile_t:
    unsigned int nr_ppis             # VGIC_V5_NR_PRIVATE_IRQS: 128 (v2, v3) or 64 (final, 7.4)
    int umask_rule                   # umask_rule_t: how CTRL_INIT computes userspace_ppis
    bint gate_by_umask               # KVM_IRQ_LINE refuses PPIs outside userspace_ppis (v3+)
    bint irq_line_lazy_init_first    # final (mainline 7.2, 1a8685ed8cd1): KVM_IRQ_LINE calls
                                     # vgic_lazy_init (EBUSY before CTRL_INIT) before any check
    int exposure_rule                # exposure_rule_t: how the first run computes the exposed set
    bint trap_wide                   # v2 22/36: SPENDR/CPENDR/SACTIVER/CACTIVER/PRIORITYR writes
                                     # trap too, and every handler writes only the entry images
    bint pendr_shadow                # v2/v3: cpu_if->vgic_ppi_pendr, written by set_pending_state,
                                     # copied raw to the entry PENDR, ORed at fold (~HMR bits)
    bint fold_changed_only           # v2/v3: the fold visits only PPIs whose image bits changed
    bint fold_changed_enabler        # v2: ENABLER entry/exit differences count as changed too
    bint fold_skips_dvi              # v2/v3: the changed-bits fold skips DVI PPIs
    bint clear_edge_latch_on_entry   # final: the edge latch moves to PENDR and is cleared
    int wake_rule                    # wake_rule_t: which state vgic_v5_has_pending_ppi reads
    bint wake_strict                 # final: priority < limit (v2/v3: <=)
    bint wake_checks_en              # final: limit 0 when ICH_VMCR_EL2.EN is clear
    bint wake_on_timer               # v2/v3: kvm_cpu_has_pending_timer is true when the vtimer
                                     # or ptimer should fire (fixes-1 fbcbf259 removed it)
    bint dvi_timer_injects           # v2: kvm_timer_update_irq injects a direct (DVI) timer's
                                     # line into KVM's line_level; v3 and later skip it
    int prio_sync                    # prio_sync_t: when the shadow priorities follow PRIORITYR
    bint irs_uapi                    # 7.4: the IRS-era device: GRP_ADDR (IRS base, mandatory at
                                     # the first run: ENXIO), NR_IRQS as the SPI count,
                                     # CPU_SYSREGS, SPI words through KVM_IRQ_LINE
    bint init_needs_vcpus            # 7.4: vgic_v5_init answers ENODEV with no online vCPU
    bint model_vcpu_limits           # 7.4 (21fd40005fb3): the V5 device limits vCPUs to
                                     # max_gicv5_vcpus = min(IRS max VPEs, 512) (host input)
    # --- the virtual IRS's policy (IRS spec section 8 rule 10; model choices where no source
    #     states the hardware's rule; only read with irs_uapi) ---
    bint ppi_wins_irs_tie            # CDIA: a PPI beats an IRS interrupt of equal priority
                                     # (QEMU gic_hppi, R_VVBPS IMPDEF); False: the IRS's wins
    bint irs_tie_lowest_id           # IRS HPPI: equal priorities go to the lowest SPI id
                                     # (QEMU irs_recalc_hppi); False: the highest
    bint vdpend_updates_hm           # VDPEND also sets ISTE.HM from KVM's config (False: the
                                     # operand has no HM field, irs-spi-source-check.md Q1)
    bint db_fires_if_pending         # a WFI put's doorbell fires for an interrupt already
                                     # eligible at the put (False: only for later ones, which
                                     # a synchronous model never has: no SPI wakes a WFI)
    bint spi_ids_pow2                # the SPI IST has 2 ** spi_id_bits entries, what KVM tells
                                     # the hardware (CD* reach ids up to it); False: nr_spis

cdef int profile_load(str name, profile_t* out) except -1
