# Type stub for gic5core.vm (compiled from vm.pyx).
#
# Rules this stub keeps: it declares exactly what the compiled module exports (stubtest checks
# it). Integer arguments are ``int`` (the core refuses anything that is not an int, bool
# included as Python does, and C-range errors are OverflowError). The underscore methods are
# the front end's private protocol with the core; they are typed so gic5 itself type-checks.

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

def as_u32_array(values: npt.ArrayLike, name: str) -> npt.NDArray[np.uint32]:
    """A C-contiguous uint32 copy/view of a 1-D integer array or sequence (ValueError/TypeError)."""

def batch_arrays(
    irqs: npt.ArrayLike, levels: npt.ArrayLike
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """irq_line_batch's arguments as equal-length uint32 arrays (ValueError/TypeError)."""

def check_irs_host(max_vpes: int, ipa_bits: int) -> None:
    """ValueError unless max_vpes is a power of two 2..65536 and ipa_bits is 32..52."""
def check_irs_regs_host(
    irs_pri_bits: int, ist_id_bits: int, min_lpi_id_bits: int, pa_range: int
) -> None:
    """ValueError unless the host IRS's register inputs are in range (1..5, 14..24,
    10..min(ist_id_bits, 15), 0..7)."""
def vcpu_state_size(profile: str = "final") -> int:
    """Bytes of C state create_vcpu allocates per vCPU on ``profile`` (sized by its PPI count)."""

# A cdef class with C fields: it cannot share a layout with another base (PEP 800).
@disjoint_base
class VmCore:
    """The compiled state of one VM; gic5.Vm is its Python subclass."""

    def __init__(
        self, profile: str = "final", host_pmu: bool = True, impl0: int = 0x5C800008,
        impl1: int = 0, max_vpes: int = 512, lpi_domain: bool = True, ipa_bits: int = 40,
        gcie_legacy: bool = False,
    ) -> None: ...
    @property
    def profile(self) -> str:
        """The profile's name ("v2", "v3", "final" or "7.4")."""
    @property
    def nr_ppis(self) -> int:
        """VGIC_V5_NR_PRIVATE_IRQS of the profile: 128 (v2, v3) or 64 (final, 7.4)."""
    @property
    def nr_vcpus(self) -> int:
        """vCPUs created so far."""
    @property
    def has_device(self) -> bool:
        """A KVM_DEV_TYPE_ARM_VGIC_V5 device exists."""
    @property
    def initialised(self) -> bool:
        """KVM_DEV_ARM_VGIC_CTRL_INIT has succeeded."""
    @property
    def dead(self) -> bool:
        """The VM is dead (a failed first run): every ioctl answers EIO."""
    @property
    def impl_ppis(self) -> tuple[int, int]:
        """The host's implemented PPIs, cut to nr_ppis: (word0, word1)."""

    # --- public: the VM-level hot paths and masks ---
    def irq_line(self, irq: int, level: int) -> None:
        """KVM_IRQ_LINE; level is a __u32, nonzero asserts."""
    def irq_line_batch(self, irqs: npt.ArrayLike, levels: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """``irq_line`` per element, in order, in one nogil loop: 0 / -errno per element."""
    def userspace_ppis(self) -> tuple[int, int]:
        """(word0, word1) as KVM_DEV_ARM_VGIC_USERSPACE_PPIS copies them out."""
    @property
    def nr_spis(self) -> int:
        """dist->nr_spis (7.4: 0 until NR_IRQS or CTRL_INIT)."""
    @property
    def max_vcpus(self) -> int:
        """kvm->max_vcpus."""
    def spi_state(self, spi: int) -> tuple[bool, bool]:
        """(line_level, pending_latch) of SPI ``spi`` (7.4)."""
    def spi_pending(self, spi: int) -> bool:
        """KVM holds SPI ``spi`` pending (7.4)."""
    def exposed_ppis(self) -> tuple[int, int]:
        """(word0, word1) of the PPIs exposed to the guest (v2: vCPU index 0's set)."""
    @property
    def irs_enabled(self) -> bool:
        """The guest's IRS_CR0.IRSEN (7.4)."""
    @property
    def spi_ist_entries(self) -> int:
        """Entries of the virtual SPI IST (2 ** spi_id_bits after CTRL_INIT on 7.4, else 0)."""
    def spi_iste(self, spi: int) -> int:
        """The raw 32-bit ISTE of SPI ``spi`` in the virtual SPI IST (7.4)."""
    def spi_level_config(self, spi: int) -> bool:
        """KVM's config of SPI ``spi`` is LEVEL (7.4)."""

    # --- the front end's protocol (validated arguments; OSError with the kernel's errno) ---
    def _alive(self) -> None: ...
    def _create_vcpu(self, vcpu_id: int, el2: bool = False, pmu: bool = False) -> int: ...
    def _vcpu_id(self, index: int) -> int: ...
    def _create_device(self, dev_type: int, flags: int = 0) -> bool: ...
    def _device_init(self) -> None: ...
    def _irs_addr_set(self, attr: int, readable: bool, addr: int) -> None: ...
    def _irs_addr_get(self, attr: int, readable: bool = True) -> int: ...
    def _nr_irqs_set(self, readable: bool, value: int) -> None: ...
    def _set_irs_host(
        self, irs_pri_bits: int, ist_id_bits: int, min_lpi_id_bits: int, pa_range: int
    ) -> None: ...
    def _set_irs_policy(self, policy: dict[str, bool]) -> None: ...
    def _irs_policy(self) -> dict[str, bool]: ...
    def _contextr(self, index: int) -> int: ...
    def _db_fired(self, index: int) -> bool: ...
    def _irs_regs_has(self, attr: int) -> None: ...
    def _irs_regs_get(self, attr: int) -> int: ...
    def _irs_regs_set(self, attr: int, readable: bool, value: int) -> None: ...
    def _ist_get(
        self, null: bool, desc_ok: bool, spi_null: bool, spi_size: int, lpi_null: bool,
        lpi_size: int,
    ) -> tuple[npt.NDArray[np.uint32], int, npt.NDArray[np.uint32] | None]: ...
    def _ist_set(
        self, null: bool, desc_ok: bool, spi_null: bool, spi_size: int, lpi_null: bool,
        lpi_size: int, spi_words: npt.ArrayLike, lpi_words: npt.ArrayLike | None,
    ) -> None: ...
    def _sysreg_has(self, attr: int) -> None: ...
    def _sysreg_get(self, attr: int) -> int: ...
    def _sysreg_set(self, attr: int, readable: bool, value: int) -> None: ...
    def _timer_get(self, index: int, attr: int) -> int: ...
    def _timer_set(self, index: int, attr: int, readable: bool, value: int) -> None: ...
    def _pmu_feature(self, index: int) -> bool: ...
    def _pmu_get(self, index: int, attr: int) -> int: ...
    def _pmu_set(self, index: int, attr: int, readable: bool, value: int) -> None: ...
    def _timer_line(self, index: int, timer: int, level: bool) -> None: ...
    def _pmu_line(self, index: int, level: bool) -> None: ...
    def _run_enter(self, index: int) -> None: ...
    def _run_exit(self, index: int) -> None: ...
    def _is_running(self, index: int) -> bool: ...
    def _pending_ppis(self, index: int) -> tuple[int, int]: ...
    def _active_ppis(self, index: int) -> tuple[int, int]: ...
    def _enabled_ppis(self, index: int) -> tuple[int, int]: ...
    def _has_pending_irq(self, index: int) -> bool: ...
    def _vgic_pending_irq(self, index: int) -> bool: ...
    def _cpu_lines(self, index: int) -> tuple[bool, bool]: ...
