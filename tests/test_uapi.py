"""gic5.uapi: every constant's value and the KVM_IRQ_LINE word builder.

Rule kept: each expected value is written here as a literal taken from the kernel headers
as quoted in the spec (sections 2.1 to 2.4, 10.10), never read back from gic5 itself; the
word builder is checked field by field and must refuse (not mask) anything that overflows.
"""

import pytest

from gic5 import uapi

CONSTANTS = {
    # include/uapi/linux/kvm.h
    "KVM_DEV_TYPE_ARM_VGIC_V5": 16,
    "KVM_CREATE_DEVICE_TEST": 1,
    # device attribute groups
    "KVM_DEV_ARM_VGIC_GRP_ADDR": 0,
    "KVM_DEV_ARM_VGIC_GRP_DIST_REGS": 1,
    "KVM_DEV_ARM_VGIC_GRP_CPU_REGS": 2,
    "KVM_DEV_ARM_VGIC_GRP_NR_IRQS": 3,
    "KVM_DEV_ARM_VGIC_GRP_CTRL": 4,
    "KVM_DEV_ARM_VGIC_GRP_REDIST_REGS": 5,
    "KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS": 6,
    "KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO": 7,
    "KVM_DEV_ARM_VGIC_GRP_ITS_REGS": 8,
    "KVM_DEV_ARM_VGIC_GRP_MAINT_IRQ": 9,
    # GRP_CTRL attrs
    "KVM_DEV_ARM_VGIC_CTRL_INIT": 0,
    "KVM_DEV_ARM_ITS_SAVE_TABLES": 1,
    "KVM_DEV_ARM_ITS_RESTORE_TABLES": 2,
    "KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES": 3,
    "KVM_DEV_ARM_ITS_CTRL_RESET": 4,
    "KVM_DEV_ARM_VGIC_USERSPACE_PPIS": 5,
    # KVM_IRQ_LINE word
    "KVM_ARM_IRQ_VCPU2_SHIFT": 28,
    "KVM_ARM_IRQ_VCPU2_MASK": 0xF,
    "KVM_ARM_IRQ_TYPE_SHIFT": 24,
    "KVM_ARM_IRQ_TYPE_MASK": 0xF,
    "KVM_ARM_IRQ_VCPU_SHIFT": 16,
    "KVM_ARM_IRQ_VCPU_MASK": 0xFF,
    "KVM_ARM_IRQ_NUM_SHIFT": 0,
    "KVM_ARM_IRQ_NUM_MASK": 0xFFFF,
    "KVM_ARM_IRQ_TYPE_CPU": 0,
    "KVM_ARM_IRQ_TYPE_SPI": 1,
    "KVM_ARM_IRQ_TYPE_PPI": 2,
    "KVM_ARM_IRQ_CPU_IRQ": 0,
    "KVM_ARM_IRQ_CPU_FIQ": 1,
    # include/linux/irqchip/arm-gic-v5.h
    "GICV5_HWIRQ_ID": 0x00FFFFFF,
    "GICV5_HWIRQ_TYPE": 0xE0000000,
    "GICV5_HWIRQ_INTID": 0xFFFFFFFF,
    "GICV5_HWIRQ_TYPE_PPI": 1,
    "GICV5_HWIRQ_TYPE_LPI": 2,
    "GICV5_HWIRQ_TYPE_SPI": 3,
    "GICV5_ARCH_PPI_S_DB_PPI": 0,
    "GICV5_ARCH_PPI_RL_DB_PPI": 1,
    "GICV5_ARCH_PPI_NS_DB_PPI": 2,
    "GICV5_ARCH_PPI_SW_PPI": 3,
    "GICV5_ARCH_PPI_HACDBSIRQ": 15,
    "GICV5_ARCH_PPI_CNTHVS": 19,
    "GICV5_ARCH_PPI_CNTHPS": 20,
    "GICV5_ARCH_PPI_PMBIRQ": 21,
    "GICV5_ARCH_PPI_COMMIRQ": 22,
    "GICV5_ARCH_PPI_PMUIRQ": 23,
    "GICV5_ARCH_PPI_CTIIRQ": 24,
    "GICV5_ARCH_PPI_GICMNT": 25,
    "GICV5_ARCH_PPI_CNTHP": 26,
    "GICV5_ARCH_PPI_CNTV": 27,
    "GICV5_ARCH_PPI_CNTHV": 28,
    "GICV5_ARCH_PPI_CNTPS": 29,
    "GICV5_ARCH_PPI_CNTP": 30,
    "GICV5_ARCH_PPI_TRBIRQ": 31,
    "GICV5_SW_PPI": 0x20000003,
    "KVM_ARMV8_PMU_GICV5_IRQ": 0x20000017,
    # vCPU attributes
    "KVM_ARM_VCPU_PMU_V3_CTRL": 0,
    "KVM_ARM_VCPU_PMU_V3_IRQ": 0,
    "KVM_ARM_VCPU_PMU_V3_INIT": 1,
    "KVM_ARM_VCPU_TIMER_CTRL": 1,
    "KVM_ARM_VCPU_TIMER_IRQ_VTIMER": 0,
    "KVM_ARM_VCPU_TIMER_IRQ_PTIMER": 1,
    "KVM_ARM_VCPU_TIMER_IRQ_HVTIMER": 2,
    "KVM_ARM_VCPU_TIMER_IRQ_HPTIMER": 3,
    # limits
    "KVM_MAX_VCPU_IDS": 512,
    "VGIC_V5_MAX_CPUS": 512,
    # 7.4 (arch/arm64/include/uapi/asm/kvm.h @ 71091136d145; GRP_IST from the kvmtool header
    # sync; the NR_IRQS limits from the selftest and the doc)
    "KVM_DEV_ARM_VGIC_GRP_IRS_REGS": 10,
    "KVM_DEV_ARM_VGIC_GRP_IST": 11,
    "KVM_VGIC_V5_ADDR_TYPE_IRS": 6,
    "KVM_VGIC_V5_IRS_SIZE": 0x20000,
    "VGIC_ADDR_UNDEF": 2**64 - 1,
    "VGIC_V5_NR_PRIVATE_IRQS": 64,
    "VGIC_V5_DEFAULT_NR_SPIS": 32,
    "VGIC_V5_MAX_NR_SPIS": 1024,
    "KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT": 32,
    "KVM_DEV_ARM_VGIC_V3_MPIDR_MASK": 0xFFFFFFFF00000000,
    "KVM_DEV_ARM_VGIC_SYSREG_INSTR_MASK": 0xFFFF,
}

# The GICv5 CPU-interface registers as MSR/MRS encode them (binutils' GICv5 system-register
# test, d5 18/38 ... words decoded to Op0:Op1:CRn:CRm:Op2) as a 16-bit sysreg attr.
SYSREG_ENCODINGS = {
    "SYS_ICC_ICSR_EL1": 0xC654, "SYS_ICC_IAFFIDR_EL1": 0xC655,
    "SYS_ICC_PPI_ENABLER0_EL1": 0xC656, "SYS_ICC_PPI_ENABLER1_EL1": 0xC657,
    "SYS_ICC_PPI_CACTIVER0_EL1": 0xC668, "SYS_ICC_PPI_SACTIVER0_EL1": 0xC66A,
    "SYS_ICC_PPI_SACTIVER1_EL1": 0xC66B, "SYS_ICC_PPI_CPENDR0_EL1": 0xC66C,
    "SYS_ICC_PPI_SPENDR0_EL1": 0xC66E, "SYS_ICC_PPI_SPENDR1_EL1": 0xC66F,
    "SYS_ICC_APR_EL1": 0xCE00, "SYS_ICC_CR0_EL1": 0xCE01, "SYS_ICC_PCR_EL1": 0xCE02,
    "SYS_ICC_HAPR_EL1": 0xCE03, "SYS_ICC_CTLR_EL1": 0xC664,
}


@pytest.mark.parametrize("name, value", sorted(SYSREG_ENCODINGS.items()))
def test_sysreg_encoding(name, value):
    assert getattr(uapi, name) == value


def test_priorityr_encodings_and_the_74_register_table():
    """ICC_PPI_PRIORITYR0..7_EL1 are CRm 14, 8..15 CRm 15 (Op2 = n % 8); the 7.4 CPU_SYSREGS
    table (gic_v5_icc_reg_descs) has exactly 26 registers."""
    assert uapi.SYS_ICC_PPI_PRIORITYR == tuple(
        [0xC670 + n for n in range(8)] + [0xC678 + n for n in range(8)])
    assert len(uapi.CPU_SYSREGS_74) == 26
    assert set(uapi.CPU_SYSREGS_74.values()) == {
        0xC654, 0xC656, 0xC657, 0xC66A, 0xC66B, 0xC66E, 0xC66F, 0xCE00, 0xCE01, 0xCE02,
        *range(0xC670, 0xC680)}


def test_vcpu_mpidr_and_sysreg_attr():
    """reset_mpidr: Aff0 = id[3:0], Aff1 = id[11:4], Aff2 = id[19:12]; the CPU_SYSREGS attr
    carries it VGIC_TO_MPIDR's way (Aff0 in bits 39:32 ... Aff3 63:56) above the encoding."""
    assert uapi.vcpu_mpidr(0) == 0 and uapi.vcpu_mpidr(15) == 0xF
    assert uapi.vcpu_mpidr(16) == 0x100 and uapi.vcpu_mpidr(511) == 0x1F0F
    assert uapi.vcpu_mpidr(4096) == 0x10000
    assert uapi.cpu_sysreg_attr(17, 0xCE02) == 0x0101 << 32 | 0xCE02
    assert uapi.cpu_sysreg_attr(4096, 0xC654) == 0x010000 << 32 | 0xC654
    assert uapi.sys_reg(3, 1, 12, 0, 2) == 0xCE02


@pytest.mark.parametrize("call, exc", [
    (lambda: uapi.vcpu_mpidr(-1), ValueError), (lambda: uapi.vcpu_mpidr(1 << 20), ValueError),
    (lambda: uapi.vcpu_mpidr(True), TypeError), (lambda: uapi.cpu_sysreg_attr(0, 1 << 16),
                                                 ValueError),
    (lambda: uapi.cpu_sysreg_attr(0, "ICSR"), TypeError), (lambda: uapi.sys_reg(4, 0, 0, 0, 0),
                                                           ValueError),
    (lambda: uapi.sys_reg(3, 0, 16, 0, 0), ValueError), (lambda: uapi.sys_reg(3, 0, 0, 0, 1.0),
                                                          TypeError),
])
def test_sysreg_helpers_refuse(call, exc):
    with pytest.raises(exc):
        call()


@pytest.mark.parametrize("name, value", sorted(CONSTANTS.items()))
def test_constant_value(name, value):
    got = getattr(uapi, name)
    # Plain ints: they go into C structs and must compare and hash as ints.
    assert type(got) is int
    assert got == value


def test_all_names_exist_and_are_listed():
    # __all__ is the public surface; every constant checked above is part of it, and every
    # name it lists must exist.
    missing = [n for n in uapi.__all__ if not hasattr(uapi, n)]
    assert missing == []
    unlisted = sorted(set(CONSTANTS) - set(uapi.__all__))
    assert unlisted == []
    assert "irq_word" in uapi.__all__


@pytest.mark.parametrize("irq_type, vcpu_id, irq_id, word", [
    # spec 2.2: SW_PPI on vCPU 0
    (2, 0, 3, 0x02000003),
    (2, 1, 3, 0x02010003),
    (2, 255, 3, 0x02FF0003),
    # vcpu 256 needs vcpu2_index = 1 and vcpu_index = 0
    (2, 256, 3, 0x12000003),
    (2, 300, 3, 0x122C0003),
    (2, 511, 63, 0x12FF003F),
    (2, 4095, 0xFFFF, 0xF2FFFFFF),
    (0, 0, 0, 0x00000000),
    (0, 7, 1, 0x00070001),
    (1, 0, 0xFFFF, 0x0100FFFF),
    (15, 4095, 0xFFFF, 0xFFFFFFFF),
    (15, 0, 0, 0x0F000000),
])
def test_irq_word_value(irq_type, vcpu_id, irq_id, word):
    assert uapi.irq_word(irq_type, vcpu_id, irq_id) == word


@pytest.mark.parametrize("irq_type", [0, 1, 2, 7, 15])
@pytest.mark.parametrize("vcpu_id", [0, 1, 255, 256, 257, 511, 512, 4095])
@pytest.mark.parametrize("irq_id", [0, 3, 64, 0xFFFF])
def test_irq_word_fields_decode(irq_type, vcpu_id, irq_id):
    # Decoding with the uapi shifts and masks (as kvm_vm_ioctl_irq_line does) gives the
    # fields back; the target vCPU is vcpu_index + 256 * vcpu2_index.
    w = uapi.irq_word(irq_type, vcpu_id, irq_id)
    assert 0 <= w <= 0xFFFFFFFF
    assert (w >> uapi.KVM_ARM_IRQ_TYPE_SHIFT) & uapi.KVM_ARM_IRQ_TYPE_MASK == irq_type
    low = (w >> uapi.KVM_ARM_IRQ_VCPU_SHIFT) & uapi.KVM_ARM_IRQ_VCPU_MASK
    high = (w >> uapi.KVM_ARM_IRQ_VCPU2_SHIFT) & uapi.KVM_ARM_IRQ_VCPU2_MASK
    assert low + 256 * high == vcpu_id
    assert high == vcpu_id >> 8
    assert (w >> uapi.KVM_ARM_IRQ_NUM_SHIFT) & uapi.KVM_ARM_IRQ_NUM_MASK == irq_id


@pytest.mark.parametrize("args", [
    (16, 0, 0), (-1, 0, 0),            # type: 4 bits
    (2, 4096, 0), (2, -1, 0),          # vcpu: 8 + 4 bits
    (2, 0, 0x10000), (2, 0, -1),       # id: 16 bits
    (2**32, 0, 0), (2, 2**40, 3),
])
def test_irq_word_overflow_is_value_error(args):
    with pytest.raises(ValueError, match="does not fit"):
        uapi.irq_word(*args)


@pytest.mark.parametrize("bad", [3.0, "3", None, b"\x03", True])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_irq_word_non_int_is_type_error(bad, position):
    # bool is refused too: the module's contract is "an int", and True as a vCPU id or PPI
    # number is a caller bug (uapi.irq_word documents this).
    args = [2, 0, 3]
    args[position] = bad
    with pytest.raises(TypeError, match="must be an int"):
        uapi.irq_word(*args)


@pytest.mark.parametrize("ppi, intid", [(0, 0x20000000), (3, 0x20000003), (23, 0x20000017),
                                        (27, 0x2000001B), (30, 0x2000001E), (127, 0x2000007F)])
def test_ppi_intid(ppi, intid):
    assert uapi.ppi_intid(ppi) == intid


@pytest.mark.parametrize("args", [(2, 0, 3), (2, 300, 3), (1, 7, 32), (0, 4095, 1),
                                  (15, 255, 0xFFFF), (2, 256, 0)])
def test_irq_fields_inverts_irq_word(args):
    # KVM_IRQ_LINE's decode (kvm_vm_ioctl_irq_line): vcpu2_index:vcpu_index, type, number.
    assert uapi.irq_fields(uapi.irq_word(*args)) == args


def test_irq_fields_of_raw_words():
    assert uapi.irq_fields(0) == (0, 0, 0)
    assert uapi.irq_fields(0xFFFFFFFF) == (15, 4095, 0xFFFF)
    assert uapi.irq_fields(0x122C0003) == (2, 300, 3)


@pytest.mark.parametrize("word, exc, match", [
    (-1, ValueError, "does not fit in a __u32"), (1 << 32, ValueError, "does not fit"),
    (True, TypeError, "must be an int"), (3.0, TypeError, "must be an int"),
    ("3", TypeError, "must be an int"),
])
def test_irq_fields_refuses(word, exc, match):
    with pytest.raises(exc, match=match):
        uapi.irq_fields(word)
