# The revision profiles: v2 and v3 as posted (bugs included), the final mainline code and the
# IRS-era device of kvm-arm64/gicv5-7.4 ("7.4").
#
# Rules this file keeps:
# - _SWITCHES (read as PROFILE_DATA) is the only place that knows what differs between
#   revisions; everything else reads the profile_t switches. One row per switch, the
#   profiles side by side.
# - PROFILES lists the names in series order; "final" is the default everywhere.

"""The vgic-v5 revisions as data: PROFILES (series order), PROFILE_DATA (the switch values;
profile.pxd documents each switch), IRS_POLICY (the switches a host's IRS may override) and
profile_switches(name) (a copy).

>>> profile_switches("final")["nr_ppis"], profile_switches("v3")["nr_ppis"]
(64, 128)
"""

PROFILES = ("v2", "v3", "final", "7.4")

# One row per switch (profile.pxd says what each means), one column per profile in PROFILES
# order: the v2 posting (20251219155222.1383109), the v3 posting (20260109170400.1585048) and
# mainline 7.2/7.3 ("final": the 7.1 code with its fix batches and the 7.2 "lazy vgic init"
# fixes), and "7.4": branch kvm-arm64/gicv5-7.4 of kvmarm/next (the IRS series v5, merged by
# fccdedadc23f), whose PPI code is final's but for the finalize (589d6072f25d) and which adds
# the IRS-era UAPI. A new revision is one more column.
_SWITCHES = {
    # switch: (v2, v3, final, 7.4)
    "nr_ppis": (128, 128, 64, 64),
    "umask_rule": (UMASK_V2_INDEX_AS_BITMAP, UMASK_SINGLE_BIT, UMASK_SINGLE_BIT, UMASK_SINGLE_BIT),
    "gate_by_umask": (False, True, True, True),
    "irq_line_lazy_init_first": (False, False, True, True),
    "exposure_rule": (EXPOSE_V2_PER_VCPU_INVERTED, EXPOSE_VCPU0_EVERY_FIRST_RUN, EXPOSE_VCPU0_ONCE,
                      EXPOSE_FIRST_RUN_MASKED),
    "trap_wide": (True, False, False, False),
    "pendr_shadow": (True, True, False, False),
    "fold_changed_only": (True, True, False, False),
    "fold_changed_enabler": (True, False, False, False),
    "fold_skips_dvi": (True, True, False, False),
    "clear_edge_latch_on_entry": (False, False, True, True),
    "wake_rule": (WAKE_V2_EXIT_IMAGES, WAKE_V3_SHADOW, WAKE_KVM_STATE, WAKE_KVM_STATE),
    "wake_strict": (False, False, True, True),
    "wake_checks_en": (False, False, True, True),
    "wake_on_timer": (True, True, False, False),
    "dvi_timer_injects": (True, False, False, False),
    "prio_sync": (PRIO_SYNC_ALL_AT_CHECK, PRIO_SYNC_EXPOSED_AT_PUT, PRIO_SYNC_EXPOSED_AT_PUT,
                  PRIO_SYNC_EXPOSED_AT_PUT),
    "irs_uapi": (False, False, False, True),
    "init_needs_vcpus": (False, False, False, True),
    "model_vcpu_limits": (False, False, False, True),
    # The virtual IRS's policy where the architecture leaves a choice (IRS spec section 8 rule
    # 10; meaningful with irs_uapi only, the same defaults everywhere). gic5.Host(irs_policy=)
    # overrides them for a host whose IRS decides otherwise.
    "ppi_wins_irs_tie": (True, True, True, True),
    "irs_tie_lowest_id": (True, True, True, True),
    "vdpend_updates_hm": (False, False, False, False),
    "db_fires_if_pending": (True, True, True, True),
    "spi_ids_pow2": (True, True, True, True),
}

# The switches gic5.Host(irs_policy=...) may override (all bools).
IRS_POLICY = ("ppi_wins_irs_tie", "irs_tie_lowest_id", "vdpend_updates_hm",
              "db_fires_if_pending", "spi_ids_pow2")

PROFILE_DATA = {name: {switch: row[i] for switch, row in _SWITCHES.items()}
                for i, name in enumerate(PROFILES)}


def profile_switches(name):
    """profile_switches(name) -> dict: the switch values of profile ``name`` (a copy)."""
    if not isinstance(name, str):
        raise TypeError(f"profile must be a str, not {type(name).__name__}")
    try:
        return dict(PROFILE_DATA[name])
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


cdef int profile_load(str name, profile_t* out) except -1:
    # Cython converts the dict to the struct field by field; a missing or extra key is a
    # build-time-visible KeyError/TypeError here, never a silently zeroed switch.
    out[0] = profile_switches(name)
    return 0
