# Type stub for gic5core.baseline (compiled from baseline.pyx).
#
# Rules this stub keeps: it declares exactly what the compiled module exports (stubtest checks
# it).

from typing import final

import numpy as np
import numpy.typing as npt

from gic5core.vm import VmCore

def bare_inject_loop(core: VmCore, irqs: npt.NDArray[np.uint32]) -> int:
    """The speed-of-light baseline: decode + gate + latch only; returns the accepted count."""

def bare_storm_loop(core: VmCore, vcpus: int, events: int, seed: int = 1) -> int:
    """The closed-loop baseline: SW_PPI edges served after every injection, final rules
    only, no accounting; returns the deliveries."""

@final
class CallFloor:
    """An empty compiled method taking two C ints: the floor of any compiled call."""

    def two(self, a: int, b: int) -> None: ...
