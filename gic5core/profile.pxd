# A revision of the vgic-v5 series as data: the switch points of the spec's table 9.2.
#
# Rules this file keeps:
# - A profile is a plain C struct copied by value into each VM; the core reads it at a few
#   switch points and nowhere keeps per-revision copies of code.
# - A new revision is one new entry in profile.pyx's PROFILE_DATA, nothing else.

cdef enum umask_rule_t:
    UMASK_V2_INDEX_AS_BITMAP = 0  # v2: (GICV5_SW_PPI & GICV5_HWIRQ_ID) = 3 stored as a bitmap
    UMASK_SINGLE_BIT = 1          # v3 and later: the single bit of PPI 3

cdef enum exposure_rule_t:
    EXPOSE_V2_PER_VCPU_INVERTED = 0  # v2: per vCPU, every implemented PPI but an unowned SW_PPI
    EXPOSE_VCPU0_EVERY_FIRST_RUN = 1  # v3: impl & (owners of vCPU 0 | SW_PPI), each first run
    EXPOSE_VCPU0_ONCE = 2             # final: same, once per VM (SW_PPI bit = "finalized")

ctypedef struct profile_t:
    unsigned int nr_ppis             # VGIC_V5_NR_PRIVATE_IRQS: 128 (v2, v3) or 64 (final)
    int umask_rule                   # umask_rule_t: how CTRL_INIT computes userspace_ppis
    bint gate_by_umask               # KVM_IRQ_LINE refuses PPIs outside userspace_ppis (v3+)
    int exposure_rule                # exposure_rule_t: how the first run computes the exposed set
    bint trap_wide                   # v2 traps SPENDR/CPENDR/SACTIVER/CACTIVER/PRIORITYR writes
    bint fold_changed_only           # v2/v3: fold only PPIs whose pend/active bit changed
    bint fold_skips_dvi              # v3: the changed-bits fold skips DVI PPIs
    bint clear_edge_latch_on_entry   # final: the edge latch moves to PENDR and is cleared
    bint wake_strict                 # final: priority < limit (v2/v3: <=)
    bint wake_checks_en              # final: limit 0 when ICH_VMCR_EL2.EN is clear
    bint wake_fast_path              # v2: nothing active and something pending -> wake
    bint sync_prio_on_check          # v2: the predicate syncs priorities itself (else at WFI put)

cdef int profile_load(str name, profile_t* out) except -1
