# The revision profiles: v2 and v3 as posted (bugs included) and the final mainline code.
#
# Rules this file keeps:
# - PROFILE_DATA is the only place that knows what differs between revisions (spec table 9.2,
#   5.1, 7.1, 7.6); everything else reads the profile_t switches.
# - PROFILES lists the names in series order; "final" is the default everywhere.

"""The vgic-v5 revisions as data: PROFILES (series order), PROFILE_DATA (the switch values;
profile.pxd documents each switch) and profile_switches(name) (a copy).

>>> profile_switches("final")["nr_ppis"], profile_switches("v3")["nr_ppis"]
(64, 128)
"""

PROFILES = ("v2", "v3", "final")

PROFILE_DATA = {
    # Each value names the kernel code it follows: the v2 posting (20251219155222.1383109), the
    # v3 posting (20260109170400.1585048) and mainline 7.2/7.3 ("final": the 7.1 code with the
    # fix batches and the "lazy vgic init" fixes merged for 7.2).
    "v2": dict(
        nr_ppis=128, umask_rule=UMASK_V2_INDEX_AS_BITMAP, gate_by_umask=False,
        irq_line_lazy_init_first=False,
        exposure_rule=EXPOSE_V2_PER_VCPU_INVERTED, trap_wide=True, pendr_shadow=True,
        fold_changed_only=True, fold_changed_enabler=True, fold_skips_dvi=True,
        clear_edge_latch_on_entry=False, wake_rule=WAKE_V2_EXIT_IMAGES, wake_strict=False,
        wake_checks_en=False, wake_on_timer=True, prio_sync=PRIO_SYNC_ALL_AT_CHECK,
    ),
    "v3": dict(
        nr_ppis=128, umask_rule=UMASK_SINGLE_BIT, gate_by_umask=True,
        irq_line_lazy_init_first=False,
        exposure_rule=EXPOSE_VCPU0_EVERY_FIRST_RUN, trap_wide=False, pendr_shadow=True,
        fold_changed_only=True, fold_changed_enabler=False, fold_skips_dvi=True,
        clear_edge_latch_on_entry=False, wake_rule=WAKE_V3_SHADOW, wake_strict=False,
        wake_checks_en=False, wake_on_timer=True, prio_sync=PRIO_SYNC_EXPOSED_AT_PUT,
    ),
    "final": dict(
        nr_ppis=64, umask_rule=UMASK_SINGLE_BIT, gate_by_umask=True,
        irq_line_lazy_init_first=True,
        exposure_rule=EXPOSE_VCPU0_ONCE, trap_wide=False, pendr_shadow=False,
        fold_changed_only=False, fold_changed_enabler=False, fold_skips_dvi=False,
        clear_edge_latch_on_entry=True, wake_rule=WAKE_KVM_STATE, wake_strict=True,
        wake_checks_en=True, wake_on_timer=False, prio_sync=PRIO_SYNC_EXPOSED_AT_PUT,
    ),
}


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
