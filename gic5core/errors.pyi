# Type stub for gic5core.errors (compiled from errors.pyx).
#
# Rules this stub keeps: it declares exactly what the compiled module exports, checked by
# `python -m mypy.stubtest gic5core` in CI; behaviour is documented in the .pyx docstrings.

class UndefinedInstruction(Exception):
    """A guest GICv5 system instruction with no GICv5 CPU interface behind it (UNDEF)."""

def check(rc: int) -> int:
    """Return ``rc``, or raise ``OSError(-rc, strerror)`` when ``rc`` is negative."""
