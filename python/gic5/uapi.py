"""KVM/arm64 and GICv5 constants, named and valued exactly as in the kernel headers.

Rules this module keeps:
- Every name below is the kernel's own (include/uapi/linux/kvm.h,
  arch/arm64/include/uapi/asm/kvm.h, include/linux/irqchip/arm-gic-v5.h); values are the
  final (mainline, 7.1-era) ones, plus what the 7.4 IRS-era device adds (branch
  kvm-arm64/gicv5-7.4: the IRS address type, IRS_REGS / IST groups, the CPU_SYSREGS encodings
  of the GICv5 CPU-interface registers). Nothing here depends on the profile.
- Pure Python, no imports from the compiled core, so it is importable on its own.
- The functions (``irq_word``, ``irq_fields``, ``ppi_intid``, ``vcpu_mpidr``, ``sys_reg``,
  ``cpu_sysreg_attr``) refuse fields that do not fit instead of masking them.
"""

from __future__ import annotations

__all__ = [
    "kvm_vgic_v5_ist", "spi_intid",
    "GICV5_IRS_IDR0", "GICV5_IRS_IDR1", "GICV5_IRS_IDR2", "GICV5_IRS_IDR5", "GICV5_IRS_IDR6",
    "GICV5_IRS_IDR7", "GICV5_IRS_IIDR", "GICV5_IRS_AIDR", "GICV5_IRS_CR0", "GICV5_IRS_CR1",
    "GICV5_IRS_SYNC_STATUSR", "GICV5_IRS_SPI_SELR", "GICV5_IRS_SPI_DOMAINR",
    "GICV5_IRS_SPI_CFGR", "GICV5_IRS_SPI_STATUSR", "GICV5_IRS_PE_SELR", "GICV5_IRS_PE_STATUSR",
    "GICV5_IRS_PE_CR0", "GICV5_IRS_IST_BASER", "GICV5_IRS_IST_CFGR", "GICV5_IRS_IST_STATUSR",
    "GICV5_IRS_CR0_IRSEN", "GICV5_IRS_CR0_IDLE", "GICV5_IRS_SPI_CFGR_TM",
    "GICV5_IRS_REGS_UAPI",
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
    "KVM_DEV_ARM_VGIC_GRP_IRS_REGS", "KVM_DEV_ARM_VGIC_GRP_IST",
    "KVM_VGIC_V5_ADDR_TYPE_IRS", "KVM_VGIC_V5_IRS_SIZE", "VGIC_ADDR_UNDEF",
    "VGIC_V5_DEFAULT_NR_SPIS", "VGIC_V5_MAX_NR_SPIS", "VGIC_V5_NR_PRIVATE_IRQS",
    "KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT", "KVM_DEV_ARM_VGIC_V3_MPIDR_MASK",
    "KVM_DEV_ARM_VGIC_SYSREG_INSTR_MASK",
    "SYS_ICC_ICSR_EL1", "SYS_ICC_IAFFIDR_EL1", "SYS_ICC_PPI_ENABLER0_EL1",
    "SYS_ICC_PPI_ENABLER1_EL1", "SYS_ICC_PPI_SACTIVER0_EL1", "SYS_ICC_PPI_SACTIVER1_EL1",
    "SYS_ICC_PPI_SPENDR0_EL1", "SYS_ICC_PPI_SPENDR1_EL1", "SYS_ICC_PPI_CACTIVER0_EL1",
    "SYS_ICC_PPI_CPENDR0_EL1", "SYS_ICC_APR_EL1", "SYS_ICC_CR0_EL1", "SYS_ICC_PCR_EL1",
    "SYS_ICC_HAPR_EL1", "SYS_ICC_CTLR_EL1", "SYS_ICC_PPI_PRIORITYR",
    "CPU_SYSREGS_74",
    "sys_reg", "vcpu_mpidr", "cpu_sysreg_attr",
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
KVM_DEV_ARM_VGIC_GRP_IRS_REGS = 10  # 7.4
KVM_DEV_ARM_VGIC_GRP_IST = 11       # 7.4 (value from the kvmtool header sync; see docs/notes)

# --- include/linux/irqchip/arm-gic-v5.h: the IRS CONFIG_FRAME (7.4's emulated IRS) -------
GICV5_IRS_IDR0 = 0x0000
GICV5_IRS_IDR1 = 0x0004
GICV5_IRS_IDR2 = 0x0008
GICV5_IRS_IDR5 = 0x0014
GICV5_IRS_IDR6 = 0x0018
GICV5_IRS_IDR7 = 0x001C
GICV5_IRS_IIDR = 0x0040
GICV5_IRS_AIDR = 0x0044
GICV5_IRS_CR0 = 0x0080
GICV5_IRS_CR1 = 0x0084
GICV5_IRS_SYNC_STATUSR = 0x00C4
GICV5_IRS_SPI_SELR = 0x0108
GICV5_IRS_SPI_DOMAINR = 0x010C
GICV5_IRS_SPI_CFGR = 0x0114
GICV5_IRS_SPI_STATUSR = 0x0118
GICV5_IRS_PE_SELR = 0x0140
GICV5_IRS_PE_STATUSR = 0x0144
GICV5_IRS_PE_CR0 = 0x0148
GICV5_IRS_IST_BASER = 0x0180
GICV5_IRS_IST_CFGR = 0x0190
GICV5_IRS_IST_STATUSR = 0x0194
GICV5_IRS_CR0_IRSEN = 1 << 0
GICV5_IRS_CR0_IDLE = 1 << 1
GICV5_IRS_SPI_CFGR_TM = 1 << 0
# The 52 CONFIG_FRAME offsets the 7.4 selftest round-trips through GRP_IRS_REGS (IDR0 ..
# SWERR_SYNDROMER1; the CoreSight block 0xffbc.. is there too but not in that list).
GICV5_IRS_REGS_UAPI = (
    0x000, 0x004, 0x008, 0x00C, 0x010, 0x014, 0x018, 0x01C, 0x040, 0x044, 0x080, 0x084,
    0x0C0, 0x0C4, 0x100, 0x108, 0x10C, 0x110, 0x114, 0x118, 0x140, 0x144, 0x148, 0x180,
    0x190, 0x194, 0x1C0, 0x200, 0x210, 0x214, 0x240, 0x248, 0x250, 0x258, 0x25C, 0x280,
    0x288, 0x28C, 0x2C0, 0x2C8, 0x2D0, 0x2D8, 0x2E0, 0x300, 0x308, 0x340, 0x344, 0x380,
    0x384, 0x3C0, 0x3C8, 0x3D0)


class kvm_vgic_v5_ist:  # noqa: N801 - the uapi struct's own name
    """``struct kvm_vgic_v5_ist`` (7.4, the KVM_DEV_ARM_VGIC_GRP_IST attribute's addr):
    ``spi_ist`` / ``lpi_ist`` are buffers (one little-endian __u32 ISTE per interrupt, in ID
    order) or None for a NULL address; the sizes are the struct's byte counts, by default
    the buffers' lengths (0 for None). gic5 never takes a raw address: this object stands
    for the struct and the memory it points to.

    >>> d = kvm_vgic_v5_ist(bytearray(128))
    >>> d.spi_ist_size, d.lpi_ist_size
    (128, 0)
    """

    __slots__ = ("spi_ist", "spi_ist_size", "lpi_ist", "lpi_ist_size")

    def __init__(self, spi_ist: object = None, spi_ist_size: int | None = None,
                 lpi_ist: object = None, lpi_ist_size: int | None = None) -> None:
        self.spi_ist = spi_ist
        self.lpi_ist = lpi_ist
        self.spi_ist_size = _buffer_size(spi_ist) if spi_ist_size is None else spi_ist_size
        self.lpi_ist_size = _buffer_size(lpi_ist) if lpi_ist_size is None else lpi_ist_size

    def __repr__(self) -> str:
        return (f"kvm_vgic_v5_ist(spi_ist_size={self.spi_ist_size}, "
                f"lpi_ist_size={self.lpi_ist_size})")


def _buffer_size(buf: object) -> int:
    if buf is None:
        return 0
    try:
        return memoryview(buf).nbytes  # type: ignore[arg-type]
    except TypeError:
        return 0  # not a buffer: the argument rule reports it (gic5._args.ist_descriptor)


# attrs of KVM_DEV_ARM_VGIC_GRP_ADDR for the V5 device (7.4)
KVM_VGIC_V5_ADDR_TYPE_IRS = 6
KVM_VGIC_V5_IRS_SIZE = 0x20000  # 2 * SZ_64K: the IRS CONFIG_FRAME and SETLPI_FRAME
VGIC_ADDR_UNDEF = 0xFFFFFFFFFFFFFFFF  # what a GET of an address never set returns

# KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS attr: the vCPU's MPIDR affinity in bits 63:32 (Aff3..Aff0,
# one byte each), the system register encoding in bits 15:0.
KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT = 32
KVM_DEV_ARM_VGIC_V3_MPIDR_MASK = 0xFFFFFFFF << 32
KVM_DEV_ARM_VGIC_SYSREG_INSTR_MASK = 0xFFFF

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
VGIC_V5_NR_PRIVATE_IRQS = 64   # final and 7.4 (the v2/v3 postings had 128)
VGIC_V5_DEFAULT_NR_SPIS = 32   # 7.4: NR_IRQS minimum and step, and the default at CTRL_INIT
VGIC_V5_MAX_NR_SPIS = 1024     # 7.4


def sys_reg(op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
    """The 16-bit system register encoding CPU_SYSREGS attrs carry (Op0 15:14, Op1 13:11,
    CRn 10:7, CRm 6:3, Op2 2:0).

    >>> hex(sys_reg(3, 0, 12, 10, 4))
    '0xc654'
    """
    for name, value, width in (("op0", op0, 2), ("op1", op1, 3), ("crn", crn, 4),
                               ("crm", crm, 4), ("op2", op2, 3)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not 0 <= value < 1 << width:
            raise ValueError(f"{name} {value} does not fit in {width} bits")
    return op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2


# The GICv5 CPU-interface registers (arch/arm64/tools/sysreg), as sys_reg encodings.
SYS_ICC_ICSR_EL1 = sys_reg(3, 0, 12, 10, 4)
SYS_ICC_IAFFIDR_EL1 = sys_reg(3, 0, 12, 10, 5)
SYS_ICC_PPI_ENABLER0_EL1 = sys_reg(3, 0, 12, 10, 6)
SYS_ICC_PPI_ENABLER1_EL1 = sys_reg(3, 0, 12, 10, 7)
SYS_ICC_PPI_CACTIVER0_EL1 = sys_reg(3, 0, 12, 13, 0)
SYS_ICC_PPI_SACTIVER0_EL1 = sys_reg(3, 0, 12, 13, 2)
SYS_ICC_PPI_SACTIVER1_EL1 = sys_reg(3, 0, 12, 13, 3)
SYS_ICC_PPI_CPENDR0_EL1 = sys_reg(3, 0, 12, 13, 4)
SYS_ICC_PPI_SPENDR0_EL1 = sys_reg(3, 0, 12, 13, 6)
SYS_ICC_PPI_SPENDR1_EL1 = sys_reg(3, 0, 12, 13, 7)
# ICC_PPI_PRIORITYR0..15_EL1: 0..7 are CRm 14, 8..15 CRm 15, Op2 = n % 8.
SYS_ICC_PPI_PRIORITYR = tuple(sys_reg(3, 0, 12, 14 + n // 8, n % 8) for n in range(16))
SYS_ICC_APR_EL1 = sys_reg(3, 1, 12, 0, 0)
SYS_ICC_CR0_EL1 = sys_reg(3, 1, 12, 0, 1)
SYS_ICC_PCR_EL1 = sys_reg(3, 1, 12, 0, 2)
SYS_ICC_HAPR_EL1 = sys_reg(3, 1, 12, 0, 3)
SYS_ICC_CTLR_EL1 = sys_reg(3, 0, 12, 12, 4)  # GICv3's: not a V5 register (ENXIO / ENOENT)

# Every register the 7.4 kernel's CPU_SYSREGS table accepts (gic_v5_icc_reg_descs), by name,
# in the table's order: what a VMM saves and restores per vCPU.
CPU_SYSREGS_74: dict[str, int] = {
    "ICC_ICSR_EL1": SYS_ICC_ICSR_EL1,
    "ICC_PPI_ENABLER0_EL1": SYS_ICC_PPI_ENABLER0_EL1,
    "ICC_PPI_ENABLER1_EL1": SYS_ICC_PPI_ENABLER1_EL1,
    "ICC_PPI_SACTIVER0_EL1": SYS_ICC_PPI_SACTIVER0_EL1,
    "ICC_PPI_SACTIVER1_EL1": SYS_ICC_PPI_SACTIVER1_EL1,
    "ICC_PPI_SPENDR0_EL1": SYS_ICC_PPI_SPENDR0_EL1,
    "ICC_PPI_SPENDR1_EL1": SYS_ICC_PPI_SPENDR1_EL1,
    **{f"ICC_PPI_PRIORITYR{n}_EL1": SYS_ICC_PPI_PRIORITYR[n] for n in range(16)},
    "ICC_APR_EL1": SYS_ICC_APR_EL1,
    "ICC_CR0_EL1": SYS_ICC_CR0_EL1,
    "ICC_PCR_EL1": SYS_ICC_PCR_EL1,
}


def vcpu_mpidr(vcpu_id: int) -> int:
    """The affinity fields of a vCPU's MPIDR_EL1 as KVM's reset_mpidr derives them from its id
    (Aff0 = id bits 3:0, Aff1 = bits 11:4, Aff2 = bits 19:12; Aff3 0), in MPIDR bit positions.

    >>> hex(vcpu_mpidr(17))
    '0x101'
    """
    if isinstance(vcpu_id, bool) or not isinstance(vcpu_id, int):
        raise TypeError(f"vcpu_id must be an int, not {type(vcpu_id).__name__}")
    if not 0 <= vcpu_id < 1 << 20:
        raise ValueError(f"vcpu_id {vcpu_id} does not fit in Aff0..Aff2 (0..2**20-1)")
    return (vcpu_id & 0xF) | ((vcpu_id >> 4) & 0xFF) << 8 | ((vcpu_id >> 12) & 0xFF) << 16


def cpu_sysreg_attr(vcpu_id: int, reg: int) -> int:
    """The KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS attr of register ``reg`` (a sys_reg encoding) of the
    vCPU with id ``vcpu_id``: its MPIDR affinity (VGIC_TO_MPIDR's layout: Aff0 in bits 39:32,
    Aff1 47:40, Aff2 55:48, Aff3 63:56) and the encoding in bits 15:0.

    >>> hex(cpu_sysreg_attr(17, SYS_ICC_PCR_EL1))
    '0x1010000ce02'
    """
    mpidr = vcpu_mpidr(vcpu_id)
    if isinstance(reg, bool) or not isinstance(reg, int):
        raise TypeError(f"reg must be an int, not {type(reg).__name__}")
    if not 0 <= reg <= KVM_DEV_ARM_VGIC_SYSREG_INSTR_MASK:
        raise ValueError(f"reg {reg} is not a 16-bit sysreg encoding")
    aff = (mpidr & 0xFFFFFF) | ((mpidr >> 32) & 0xFF) << 24
    return aff << KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT | reg


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


def spi_intid(spi: int) -> int:
    """The encoded GICv5 INTID of SPI ``spi`` (KVM's ``vgic_v5_make_spi``).

    >>> hex(spi_intid(2))
    '0x60000002'
    """
    if isinstance(spi, bool) or not isinstance(spi, int):
        raise TypeError(f"spi must be an int, not {type(spi).__name__}")
    if not 0 <= spi <= GICV5_HWIRQ_ID:
        raise ValueError(f"spi {spi} does not fit in GICV5_HWIRQ_ID")
    return GICV5_HWIRQ_TYPE_SPI << 29 | spi


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
