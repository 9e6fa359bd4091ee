"""gic5core: the compiled core of gic5 (Cython).

Rules: this package never imports gic5 (the front end depends on the core, never the reverse);
it re-exports only compiled names.
"""
try:
    from gic5core.errors import UndefinedInstruction, check
except ModuleNotFoundError as _e:  # pragma: no cover - exercised by a subprocess test
    if _e.name != "gic5core.errors":
        raise
    raise ImportError(
        f"gic5core at {__path__[0]} has no compiled modules: this is the source tree "
        "shadowing the installed package (Python puts the current directory first on "
        "sys.path for 'python -m' and 'python -c'). Run from another directory, use the "
        "console scripts (gic5-storm, gic5-diff), or build in place with "
        "'pip install --no-build-isolation -e .'") from None
from gic5core.profile import PROFILES, PROFILE_DATA, IRS_POLICY, profile_switches
from gic5core.vm import VmCore, vcpu_state_size
from gic5core.cpuif import CpuIf
from gic5core.baseline import CallFloor, bare_inject_loop, bare_storm_loop
from gic5core.storm import PATTERNS, storm_run

__all__ = ["UndefinedInstruction", "check", "PROFILES", "PROFILE_DATA", "IRS_POLICY",
           "profile_switches",
           "VmCore", "vcpu_state_size", "CpuIf", "storm_run", "bare_inject_loop", "bare_storm_loop",
           "PATTERNS", "CallFloor"]
