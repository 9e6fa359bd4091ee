# KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS (7.4): the vCPU's GICv5 CPU-interface registers as
# userspace saves and restores them (arch/arm64/kvm/vgic-sys-reg-v5.c @ b3c70329cfc4, table
# gic_v5_icc_reg_descs, reached through vgic_v5_attr_regs_access in vgic-kvm-device.c).
#
# Rules this file keeps:
# - The register set is exactly the kernel table's 26 entries: ICC_ICSR_EL1,
#   ICC_PPI_ENABLER0/1, ICC_PPI_SACTIVER0/1, ICC_PPI_SPENDR0/1, ICC_PPI_PRIORITYR0..15,
#   ICC_APR_EL1, ICC_CR0_EL1, ICC_PCR_EL1. Anything else is "unknown" (has_attr ENXIO,
#   get/set ENOENT: vm.pyx).
# - Accessors act on the state the rest of the model reads, so a restored vCPU is the vCPU
#   that was saved: KVM's per-IRQ flags (enabled, active, pending_latch, line_level), the ICH
#   images the next entry restores (ENABLER, ACTIVER, PRIORITYR), the shadow priorities, and
#   the saved VMCR / APR the load restores.
# - Only 64 PPIs exist on 7.4 (VGIC_V5_NR_PRIVATE_IRQS): the upper register of each pair, and
#   PRIORITYR8..15, read 0 and ignore writes.
# - Writes are raw: nothing here applies the exposed mask (the vCPU's first run does,
#   finalize in ppi.pxd). Callers hold vm.lock and have made the ioctl's checks.

from libc.stdint cimport uint8_t, uint64_t
from gic5core.state cimport vm_t, vcpu_t
from gic5core.ppi cimport irq_is_pending, VMCR_EN, VMCR_VPMR_SHIFT, PRIO_MASK

cdef enum:
    # Sysreg encodings as the attr's bits 15:0 carry them: Op0 15:14, Op1 13:11, CRn 10:7,
    # CRm 6:3, Op2 2:0 (the kernel's KVM_REG_ARM64_SYSREG_* layout).
    SYS_ICC_ICSR_EL1 = 0xc654            # S3_0_C12_C10_4
    SYS_ICC_IAFFIDR_EL1 = 0xc655         # S3_0_C12_C10_5: not in the table (IAFFID = vcpu_id)
    SYS_ICC_PPI_ENABLER0_EL1 = 0xc656    # S3_0_C12_C10_6 (ENABLER1: Op2 7)
    SYS_ICC_PPI_SACTIVER0_EL1 = 0xc66a   # S3_0_C12_C13_2 (SACTIVER1: Op2 3)
    SYS_ICC_PPI_SPENDR0_EL1 = 0xc66e     # S3_0_C12_C13_6 (SPENDR1: Op2 7)
    SYS_ICC_PPI_PRIORITYR0_EL1 = 0xc670  # S3_0_C12_C14_0 .. R7 C14_7, R8 C15_0 .. R15 C15_7
    SYS_ICC_APR_EL1 = 0xce00             # S3_1_C12_C0_0
    SYS_ICC_CR0_EL1 = 0xce01             # S3_1_C12_C0_1
    SYS_ICC_PCR_EL1 = 0xce02             # S3_1_C12_C0_2
    SYS_ICC_HAPR_EL1 = 0xce03            # S3_1_C12_C0_3: not in the table

cdef enum sysreg_t:
    SR_NONE = -1                 # not a register of the table
    SR_ICSR = 0
    SR_ENABLER = 1               # n = Op2 & 1
    SR_SACTIVER = 2              # n = Op2 & 1
    SR_SPENDR = 3                # n = Op2 & 1
    SR_PRIORITYR = 4             # n = (CRm & 1) * 8 + Op2
    SR_APR = 5
    SR_CR0 = 6
    SR_PCR = 7

cdef extern from *:
    """
    /* 64-bit masks (a C enum holds only an int). */
    #define GIC5_ICSR_RES0 0xFFFF0000FFFF07C0ULL  /* ICC_ICSR_EL1: RES0 63:48, 31:16, 10:6 */
    #define GIC5_APR_RES0 0xFFFFFFFF00000000ULL   /* ICC_APR_EL1: RES0 63:32 */
    #define GIC5_PRIO_BYTES 0x1f1f1f1f1f1f1f1fULL /* the 5 priority bits of every byte */
    """
    const uint64_t ICSR_RES0 "GIC5_ICSR_RES0"    # ICC_ICSR_EL1 RES0 bits
    const uint64_t APR_RES0 "GIC5_APR_RES0"      # ICC_APR_EL1 RES0 bits (the upper half)
    const uint64_t PRIO_BYTES "GIC5_PRIO_BYTES"  # PRIORITYR: 5 priority bits per byte

cdef enum:
    CR0_EN = 1                   # ICC_CR0_EL1.EN
    CR0_LINK = 2                 # ICC_CR0_EL1.LINK: reads 1 (KVM's constant answer)
    CR0_LINK_IDLE = 4            # ICC_CR0_EL1.LINK_IDLE: reads 1


cdef inline int sysreg_lookup(unsigned int enc, unsigned int* n) noexcept nogil:
    # The table lookup (find_reg_by_id on gic_v5_icc_reg_descs): the register, and in *n the
    # index within its family; SR_NONE for an encoding the table does not hold.
    cdef unsigned int crm = (enc >> 3) & 0xf, op2 = enc & 7
    n[0] = 0
    if enc == SYS_ICC_ICSR_EL1:
        return SR_ICSR
    if enc == SYS_ICC_APR_EL1:
        return SR_APR
    if enc == SYS_ICC_CR0_EL1:
        return SR_CR0
    if enc == SYS_ICC_PCR_EL1:
        return SR_PCR
    if enc == SYS_ICC_PPI_ENABLER0_EL1 or enc == SYS_ICC_PPI_ENABLER0_EL1 + 1:
        n[0] = op2 & 1
        return SR_ENABLER
    if enc == SYS_ICC_PPI_SACTIVER0_EL1 or enc == SYS_ICC_PPI_SACTIVER0_EL1 + 1:
        n[0] = op2 & 1
        return SR_SACTIVER
    if enc == SYS_ICC_PPI_SPENDR0_EL1 or enc == SYS_ICC_PPI_SPENDR0_EL1 + 1:
        n[0] = op2 & 1
        return SR_SPENDR
    if SYS_ICC_PPI_PRIORITYR0_EL1 <= enc < SYS_ICC_PPI_PRIORITYR0_EL1 + 16:
        n[0] = (crm & 1) * 8 + op2
        return SR_PRIORITYR
    return SR_NONE


cdef inline uint64_t priorityr_image(const vm_t* vm, const vcpu_t* v,
                                     unsigned int n) noexcept nogil:
    # ICH_PPI_PRIORITYRn_EL2 as a u64: byte k is PPI 8n+k's image priority (little-endian).
    cdef uint64_t r = 0
    cdef unsigned int k
    for k in range(8):
        r |= (<uint64_t>v.prio[vm.nr_ppis + 8 * n + k]) << (8 * k)
    return r


cdef inline uint64_t sysreg_read(const vm_t* vm, const vcpu_t* v, int reg,
                                 unsigned int n) noexcept nogil:
    # The get accessors of vgic-sys-reg-v5.c (7.4).
    if reg == SR_ICSR:
        return v.icsr                       # vgic_icsr as stored
    if reg == SR_ENABLER:
        return v.enabled.w[0] if n == 0 else 0    # built from each PPI's irq->enabled
    if reg == SR_SACTIVER:
        return v.active.w[0] if n == 0 else 0     # from irq->active
    if reg == SR_SPENDR:
        # irq_is_pending per PPI: the latch for the edge PPI (SW_PPI), latch or line_level for
        # the level ones (a hw-mapped PPI's stored line_level too, not its physical line).
        return irq_is_pending(vm, v).w[0] if n == 0 else 0
    if reg == SR_PRIORITYR:
        return priorityr_image(vm, v, n) if 8 * n < vm.nr_ppis else 0  # the stored register
    if reg == SR_APR:
        return v.saved_apr                  # vgic_apr
    if reg == SR_CR0:
        # EN from ICH_VMCR_EL2.EN, LINK and LINK_IDLE always 1, PID / IPPT 0.
        return (v.saved_vmcr & VMCR_EN) | CR0_LINK | CR0_LINK_IDLE
    if reg == SR_PCR:
        return (v.saved_vmcr >> VMCR_VPMR_SHIFT) & PRIO_MASK  # PRIORITY := VMCR.VPMR
    return 0


cdef inline void sysreg_write(vm_t* vm, vcpu_t* v, int reg, unsigned int n,
                              uint64_t val) noexcept nogil:
    # The set accessors of vgic-sys-reg-v5.c (7.4).
    cdef unsigned int k
    cdef uint8_t b
    if reg == SR_ICSR:
        v.icsr = val & ~ICSR_RES0
    elif reg == SR_ENABLER:
        if n == 0:  # raw and unmasked: the ICH image and every PPI's irq->enabled
            v.ich_enabler.w[0] = val
            v.enabled.w[0] = val
    elif reg == SR_SACTIVER:
        if n == 0:  # raw: the ICH image and every PPI's irq->active
            v.ich_activer.w[0] = val
            v.active.w[0] = val
    elif reg == SR_SPENDR:
        if n == 0:
            # Per PPI: a level-configured one takes the bit as its line_level, the edge one
            # (SW_PPI) as its pending_latch; set and clear alike, nothing else stored.
            v.line_level.w[0] = (v.line_level.w[0] & vm.edge_cfg.w[0]) \
                | (val & ~vm.edge_cfg.w[0])
            v.pending_latch.w[0] = (v.pending_latch.w[0] & ~vm.edge_cfg.w[0]) \
                | (val & vm.edge_cfg.w[0])
    elif reg == SR_PRIORITYR:
        if 8 * n < vm.nr_ppis:
            # Every byte cut to its 5 priority bits, stored as ICH_PPI_PRIORITYRn_EL2 and also
            # copied into the 8 PPIs' shadow irq->priority, so that the wake check is right
            # before the vCPU ever ran.
            val &= PRIO_BYTES
            for k in range(8):
                b = <uint8_t>((val >> (8 * k)) & 0xff)
                v.prio[vm.nr_ppis + 8 * n + k] = b
                v.prio[8 * n + k] = b
            v.prio_raw = 1  # unimplemented PPIs' bytes too, until the entry (flush)
    elif reg == SR_APR:
        v.saved_apr = val & ~APR_RES0
    elif reg == SR_CR0:
        v.saved_vmcr = (v.saved_vmcr & ~(<uint64_t>VMCR_EN)) | (val & CR0_EN)
    elif reg == SR_PCR:
        v.saved_vmcr = (v.saved_vmcr & ~((<uint64_t>PRIO_MASK) << VMCR_VPMR_SHIFT)) \
            | ((val & PRIO_MASK) << VMCR_VPMR_SHIFT)
