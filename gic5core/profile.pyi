# Type stub for gic5core.profile (compiled from profile.pyx).
#
# Rules this stub keeps: it declares exactly what the compiled module exports (stubtest checks
# it); the switch names are those of profile_t in profile.pxd, one key each.

from typing import TypedDict

class _ProfileSwitches(TypedDict):
    # The revision switch points of the spec's table 9.2 (see profile.pxd for each meaning).
    nr_ppis: int
    umask_rule: int
    gate_by_umask: bool
    irq_line_lazy_init_first: bool
    exposure_rule: int
    trap_wide: bool
    pendr_shadow: bool
    fold_changed_only: bool
    fold_changed_enabler: bool
    fold_skips_dvi: bool
    clear_edge_latch_on_entry: bool
    wake_rule: int
    wake_strict: bool
    wake_checks_en: bool
    wake_on_timer: bool
    dvi_timer_injects: bool
    prio_sync: int
    irs_uapi: bool
    init_needs_vcpus: bool
    model_vcpu_limits: bool
    ppi_wins_irs_tie: bool
    irs_tie_lowest_id: bool
    vdpend_updates_hm: bool
    db_fires_if_pending: bool
    spi_ids_pow2: bool

PROFILES: tuple[str, ...]
IRS_POLICY: tuple[str, ...]
PROFILE_DATA: dict[str, _ProfileSwitches]

def profile_switches(name: str) -> _ProfileSwitches:
    """The switch values of profile ``name`` (a copy); ValueError for an unknown name."""
