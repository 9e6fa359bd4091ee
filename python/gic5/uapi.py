"""KVM/arm64 and GICv5 constants, named and valued exactly as in the kernel headers.

Rules this module keeps:
- Every name below is the kernel's own (include/uapi/linux/kvm.h,
  arch/arm64/include/uapi/asm/kvm.h, include/linux/irqchip/arm-gic-v5.h); values are the
  final (mainline, 7.1-era) ones. Nothing here depends on the profile.
- Pure Python, no imports from the compiled core, so it is importable on its own.
- ``irq_word`` is the only function; it refuses fields that do not fit instead of masking them.
"""

from __future__ import annotations

__all__ = [
    "KVM_DEV_TYPE_ARM_VGIC_V5", "KVM_CREATE_DEVICE_TEST",
    "KVM_DEV_ARM_VGIC_GRP_ADDR", "KVM_DEV_ARM_VGIC_GRP_DIST_REGS",
    "KVM_DEV_ARM_VGIC_GRP_CPU_REGS", "KVM_DEV_ARM_VGIC_GRP_NR_IRQS",
    "KVM_DEV_ARM_VGIC_GRP_CTRL", "KVM_DEV_ARM_VGIC_GRP_REDIST_REGS",
    "KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS", "KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO",
    "KVM_DEV_ARM_VGIC_GRP_ITS_REGS", "KVM_DEV_ARM_VGIC_GRP_MAINT_IRQ",
    "KVM_DEV_ARM_VGIC_CTRL_INIT", "KVM_DEV_ARM_ITS_SAVE_TABLES", "KVM_DEV_ARM_ITS_RESTORE_TABLES",
    "KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES", "KVM_DEV_ARM_ITS_CTRL_RESET",
    "KVM_DEV_ARM_VGIC_USERSPACE_PPIS",
    "KVM_ARM_IRQ_VCPU2_SHIFT", "KVM_ARM_IRQ_VCPU2_MASK", "KVM_ARM_IRQ_TYPE_SHIFT",
    "KVM_ARM_IRQ_TYPE_MASK", "KVM_ARM_IRQ_VCPU_SHIFT", "KVM_ARM_IRQ_VCPU_MASK",
    "KVM_ARM_IRQ_NUM_SHIFT", "KVM_ARM_IRQ_NUM_MASK",
    "KVM_ARM_IRQ_TYPE_CPU", "KVM_ARM_IRQ_TYPE_SPI", "KVM_ARM_IRQ_TYPE_PPI",
    "KVM_ARM_IRQ_CPU_IRQ", "KVM_ARM_IRQ_CPU_FIQ",
    "GICV5_HWIRQ_ID", "GICV5_HWIRQ_TYPE", "GICV5_HWIRQ_INTID",
    "GICV5_HWIRQ_TYPE_PPI", "GICV5_HWIRQ_TYPE_LPI", "GICV5_HWIRQ_TYPE_SPI",
    "GICV5_ARCH_PPI_S_DB_PPI", "GICV5_ARCH_PPI_RL_DB_PPI", "GICV5_ARCH_PPI_NS_DB_PPI",
    "GICV5_ARCH_PPI_SW_PPI", "GICV5_ARCH_PPI_HACDBSIRQ", "GICV5_ARCH_PPI_CNTHVS",
    "GICV5_ARCH_PPI_CNTHPS", "GICV5_ARCH_PPI_PMBIRQ", "GICV5_ARCH_PPI_COMMIRQ",
    "GICV5_ARCH_PPI_PMUIRQ", "GICV5_ARCH_PPI_CTIIRQ", "GICV5_ARCH_PPI_GICMNT",
    "GICV5_ARCH_PPI_CNTHP", "GICV5_ARCH_PPI_CNTV", "GICV5_ARCH_PPI_CNTHV",
    "GICV5_ARCH_PPI_CNTPS", "GICV5_ARCH_PPI_CNTP", "GICV5_ARCH_PPI_TRBIRQ",
    "GICV5_SW_PPI", "KVM_ARMV8_PMU_GICV5_IRQ",
    "KVM_ARM_VCPU_PMU_V3_CTRL", "KVM_ARM_VCPU_PMU_V3_IRQ", "KVM_ARM_VCPU_PMU_V3_INIT",
    "KVM_ARM_VCPU_TIMER_CTRL", "KVM_ARM_VCPU_TIMER_IRQ_VTIMER", "KVM_ARM_VCPU_TIMER_IRQ_PTIMER",
    "KVM_ARM_VCPU_TIMER_IRQ_HVTIMER", "KVM_ARM_VCPU_TIMER_IRQ_HPTIMER",
    "KVM_MAX_VCPU_IDS", "VGIC_V5_MAX_CPUS",
    "irq_word", "irq_fields", "ppi_intid",
]

# --- include/uapi/linux/kvm.h -------------------------------------------------------------
# Mainline enum kvm_device_type: ..., LOONGARCH_PCHPIC = 14, LOONGARCH_DMSINTC = 15,
# ARM_VGIC_V5 = 16. (The v2..v6 postings, on trees without DMSINTC, had 15; spec Q1.)
KVM_DEV_TYPE_ARM_VGIC_V5 = 16
KVM_CREATE_DEVICE_TEST = 1

# --- arch/arm64/include/uapi/asm/kvm.h: device attribute groups ---------------------------
KVM_DEV_ARM_VGIC_GRP_ADDR = 0
KVM_DEV_ARM_VGIC_GRP_DIST_REGS = 1
KVM_DEV_ARM_VGIC_GRP_CPU_REGS = 2
KVM_DEV_ARM_VGIC_GRP_NR_IRQS = 3
KVM_DEV_ARM_VGIC_GRP_CTRL = 4
KVM_DEV_ARM_VGIC_GRP_REDIST_REGS = 5
KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS = 6
KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO = 7
KVM_DEV_ARM_VGIC_GRP_ITS_REGS = 8
KVM_DEV_ARM_VGIC_GRP_MAINT_IRQ = 9

# attrs of KVM_DEV_ARM_VGIC_GRP_CTRL
KVM_DEV_ARM_VGIC_CTRL_INIT = 0
KVM_DEV_ARM_ITS_SAVE_TABLES = 1
KVM_DEV_ARM_ITS_RESTORE_TABLES = 2
KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES = 3
KVM_DEV_ARM_ITS_CTRL_RESET = 4
KVM_DEV_ARM_VGIC_USERSPACE_PPIS = 5

# --- KVM_IRQ_LINE irq field (arm64) -------------------------------------------------------
KVM_ARM_IRQ_VCPU2_SHIFT = 28
KVM_ARM_IRQ_VCPU2_MASK = 0xF
KVM_ARM_IRQ_TYPE_SHIFT = 24
KVM_ARM_IRQ_TYPE_MASK = 0xF
KVM_ARM_IRQ_VCPU_SHIFT = 16
KVM_ARM_IRQ_VCPU_MASK = 0xFF
KVM_ARM_IRQ_NUM_SHIFT = 0
KVM_ARM_IRQ_NUM_MASK = 0xFFFF

KVM_ARM_IRQ_TYPE_CPU = 0
KVM_ARM_IRQ_TYPE_SPI = 1
KVM_ARM_IRQ_TYPE_PPI = 2

KVM_ARM_IRQ_CPU_IRQ = 0
KVM_ARM_IRQ_CPU_FIQ = 1

# --- include/linux/irqchip/arm-gic-v5.h ---------------------------------------------------
GICV5_HWIRQ_ID = 0x00FFFFFF  # GENMASK(23, 0): number within its type
GICV5_HWIRQ_TYPE = 0xE0000000  # GENMASK(31, 29)
GICV5_HWIRQ_INTID = 0xFFFFFFFF  # GENMASK_ULL(31, 0)
GICV5_HWIRQ_TYPE_PPI = 0x1
GICV5_HWIRQ_TYPE_LPI = 0x2
GICV5_HWIRQ_TYPE_SPI = 0x3

# Architected PPI numbers: indices in the PPI space, not encoded INTIDs.
GICV5_ARCH_PPI_S_DB_PPI = 0x0
GICV5_ARCH_PPI_RL_DB_PPI = 0x1
GICV5_ARCH_PPI_NS_DB_PPI = 0x2
GICV5_ARCH_PPI_SW_PPI = 0x3
GICV5_ARCH_PPI_HACDBSIRQ = 0xF
GICV5_ARCH_PPI_CNTHVS = 0x13
GICV5_ARCH_PPI_CNTHPS = 0x14
GICV5_ARCH_PPI_PMBIRQ = 0x15
GICV5_ARCH_PPI_COMMIRQ = 0x16
GICV5_ARCH_PPI_PMUIRQ = 0x17
GICV5_ARCH_PPI_CTIIRQ = 0x18
GICV5_ARCH_PPI_GICMNT = 0x19
GICV5_ARCH_PPI_CNTHP = 0x1A
GICV5_ARCH_PPI_CNTV = 0x1B
GICV5_ARCH_PPI_CNTHV = 0x1C
GICV5_ARCH_PPI_CNTPS = 0x1D
GICV5_ARCH_PPI_CNTP = 0x1E
GICV5_ARCH_PPI_TRBIRQ = 0x1F

# v1/v2 of the series only: the *encoded* SW_PPI INTID. v2 computed the userspace mask as
# GICV5_SW_PPI & GICV5_HWIRQ_ID (= 3, an index) and stored it as a bitmap: the bug the v2
# profile reproduces.
GICV5_SW_PPI = 0x20000003

# include/kvm/arm_pmu.h: the PMU overflow PPI a V5 guest must use.
KVM_ARMV8_PMU_GICV5_IRQ = 0x20000017

# --- vCPU device attributes (arch/arm64/include/uapi/asm/kvm.h) ---------------------------
KVM_ARM_VCPU_PMU_V3_CTRL = 0
KVM_ARM_VCPU_PMU_V3_IRQ = 0
KVM_ARM_VCPU_PMU_V3_INIT = 1
KVM_ARM_VCPU_TIMER_CTRL = 1
KVM_ARM_VCPU_TIMER_IRQ_VTIMER = 0
KVM_ARM_VCPU_TIMER_IRQ_PTIMER = 1
KVM_ARM_VCPU_TIMER_IRQ_HVTIMER = 2
KVM_ARM_VCPU_TIMER_IRQ_HPTIMER = 3

# --- limits -------------------------------------------------------------------------------
KVM_MAX_VCPU_IDS = 512  # arm64: vCPU ids 0..511
VGIC_V5_MAX_CPUS = 512


def irq_word(irq_type: int, vcpu_id: int, irq_id: int) -> int:
    """Build the ``irq`` field of ``struct kvm_irq_level`` for KVM_IRQ_LINE.

    ``vcpu_id`` is split into vcpu_index (bits 23:16, the low 8 bits) and vcpu2_index
    (bits 31:28, the next 4 bits), so ids up to 4095 are encodable. Any field that does not fit
    is a ValueError (nothing is silently masked); non-integers are a TypeError.

    >>> hex(irq_word(KVM_ARM_IRQ_TYPE_PPI, 0, GICV5_ARCH_PPI_SW_PPI))
    '0x2000003'
    >>> hex(irq_word(KVM_ARM_IRQ_TYPE_PPI, 300, 3))
    '0x122c0003'
    """
    for name, value in (("irq_type", irq_type), ("vcpu_id", vcpu_id), ("irq_id", irq_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= irq_type <= KVM_ARM_IRQ_TYPE_MASK:
        raise ValueError(f"irq_type {irq_type} does not fit in 4 bits")
    if not 0 <= vcpu_id <= (KVM_ARM_IRQ_VCPU2_MASK << 8 | KVM_ARM_IRQ_VCPU_MASK):
        raise ValueError(f"vcpu_id {vcpu_id} does not fit in vcpu_index + vcpu2_index (0..4095)")
    if not 0 <= irq_id <= KVM_ARM_IRQ_NUM_MASK:
        raise ValueError(f"irq_id {irq_id} does not fit in 16 bits")
    return ((vcpu_id >> 8) << KVM_ARM_IRQ_VCPU2_SHIFT
            | irq_type << KVM_ARM_IRQ_TYPE_SHIFT
            | (vcpu_id & KVM_ARM_IRQ_VCPU_MASK) << KVM_ARM_IRQ_VCPU_SHIFT
            | irq_id << KVM_ARM_IRQ_NUM_SHIFT)


def irq_fields(word: int) -> tuple[int, int, int]:
    """The fields of a KVM_IRQ_LINE ``irq`` word: ``(irq_type, vcpu_id, irq_id)``, the inverse
    of ``irq_word`` (``vcpu_id`` joins vcpu2_index and vcpu_index as KVM does). The one decode
    every formatter of a word uses; a word outside a __u32 is a ValueError, a non-integer (a
    bool included, as in ``irq_word``) a TypeError.

    >>> irq_fields(0x122c0003)
    (2, 300, 3)
    >>> irq_fields(irq_word(KVM_ARM_IRQ_TYPE_SPI, 7, 32))
    (1, 7, 32)
    """
    if isinstance(word, bool) or not isinstance(word, int):
        raise TypeError(f"word must be an int, not {type(word).__name__}")
    if not 0 <= word <= 0xFFFFFFFF:
        raise ValueError(f"word {word} does not fit in a __u32")
    irq_type = (word >> KVM_ARM_IRQ_TYPE_SHIFT) & KVM_ARM_IRQ_TYPE_MASK
    vcpu_id = ((word >> KVM_ARM_IRQ_VCPU2_SHIFT) & KVM_ARM_IRQ_VCPU2_MASK) << 8 \
        | (word >> KVM_ARM_IRQ_VCPU_SHIFT) & KVM_ARM_IRQ_VCPU_MASK
    return irq_type, vcpu_id, (word >> KVM_ARM_IRQ_NUM_SHIFT) & KVM_ARM_IRQ_NUM_MASK


def ppi_intid(ppi: int) -> int:
    """The encoded GICv5 INTID of PPI index ``ppi`` (KVM's ``vgic_v5_make_ppi``).

    >>> hex(ppi_intid(GICV5_ARCH_PPI_CNTV))
    '0x2000001b'
    """
    if isinstance(ppi, bool) or not isinstance(ppi, int):
        raise TypeError(f"ppi must be an int, not {type(ppi).__name__}")
    if not 0 <= ppi <= GICV5_HWIRQ_ID:
        raise ValueError(f"ppi {ppi} does not fit in GICV5_HWIRQ_ID")
    return GICV5_HWIRQ_TYPE_PPI << 29 | ppi
