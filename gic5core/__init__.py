"""gic5core: the compiled core of gic5 (Cython).

Rules: this package never imports gic5 (the front end depends on the core, never the reverse);
it re-exports only compiled names.
"""
from gic5core.errors import UndefinedInstruction, check
from gic5core.profile import PROFILES, PROFILE_DATA, profile_switches
from gic5core.vm import VmCore, vcpu_state_size
from gic5core.cpuif import CpuIf
from gic5core.storm import PATTERNS, CallFloor, bare_inject_loop, storm_run

__all__ = ["UndefinedInstruction", "check", "PROFILES", "PROFILE_DATA", "profile_switches",
           "VmCore", "vcpu_state_size", "CpuIf", "storm_run", "bare_inject_loop", "PATTERNS", "CallFloor"]
