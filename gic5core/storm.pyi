# Type stub for gic5core.storm (compiled from storm.pyx).
#
# Rules this stub keeps: it declares exactly what the compiled module exports (stubtest checks
# it). storm_run takes a real list (the Cython signature is `list cores`); the TypeVar lets a
# list[gic5.Vm] through without list invariance getting in the way.

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from gic5core.baseline import CallFloor as CallFloor
from gic5core.baseline import bare_inject_loop as bare_inject_loop
from gic5core.vm import VmCore

_VmT = TypeVar("_VmT", bound=VmCore)

PATTERNS: dict[str, int]
MIXES: dict[str, int]

def storm_run(
    cores: Sequence[_VmT],
    vcpus_per_vm: int,
    injections: int,
    pattern: str = "uniform",
    seed: int = 1,
    service_every: int = 4,
    truth: npt.NDArray[np.uint8] | bytearray | None = None,
    event_base: int = 0,
    event_total: int = 0,
    drain: bool = True,
    mix: str = "mixed",
    spi_truth: npt.NDArray[np.uint8] | bytearray | None = None,
    stats: npt.NDArray[np.uint64] | None = None,
    spi_stamps: npt.NDArray[np.uint64] | None = None,
    latency: npt.NDArray[np.uint64] | None = None,
    narrow: bool = True,
) -> dict[str, Any]:
    """One closed-loop storm (or one batch of it) over ``cores``; returns the counters (ints)
    and the ``stats`` / ``spi_stamps`` / ``latency`` arrays."""

LATENCY_SLOTS: int

def new_stats(vcpus: int) -> npt.NDArray[np.uint64]:
    """A zeroed, 64-byte aligned (vcpus, 8) uint64 array for storm_run's ``stats``."""

def latency_bucket_floor(index: int) -> int:
    """The smallest latency bucket ``index`` counts."""

def latency_summary(row: npt.ArrayLike) -> dict[str, Any]:
    """One latency row as {"count", "min", "median", "p99", "max", "hist_log2"}."""
