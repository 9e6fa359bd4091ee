"""Self-tests of the reference model's 7.4 virtual IRS (tests/reference.py): SPIs end to end.

The expected values are the ones the kernel selftest asserts
(tools/testing/selftests/kvm/arm64/vgic_v5.c, gicv5-7.4: test_vgic_v5_spis,
test_vgic_v5_irs_regs_attrs, test_vgic_v5_ist_attrs, test_vgic_v5_ist_save_restore), the
literal values of shared/spec/gicv5-irs-spi.md (sections 4-9) as corrected by the source check
note, and rules read in the kernel / QEMU source (each test's docstring names the function it
checks). Every expected value is written out here, never computed by the reference.
Imports only the reference. tests/test_irs_spi.py runs these same tests on gic5 (it replaces
this module's RefKvm with gic5's Kvm), so each kernel value is asserted of both.
"""

from __future__ import annotations

import errno
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import reference as ref  # noqa: E402
from reference import RefKvm  # noqa: E402  (tests/test_irs_spi.py swaps in gic5's Kvm)

V5 = ref.KVM_DEV_TYPE_ARM_VGIC_V5
ADDR, NR_IRQS, CTRL = ref.GRP_ADDR, ref.GRP_NR_IRQS, ref.GRP_CTRL
REGS, IST = ref.GRP_IRS_REGS, ref.GRP_IST
IRS = ref.ADDR_TYPE_IRS
IRS_GPA = 0x8000000      # GICV5_IRS_CONFIG_BASE_GPA
LPI_IST_GPA = 0x8020000  # VGIC_V5_LPI_IST_BASE_GPA

# IRS CONFIG_FRAME offsets (arm-gic-v5.h), written out for the tests
IDR0, IDR1, IDR2, IDR3, IDR4, IDR5, IDR6, IDR7 = (0x0, 0x4, 0x8, 0xC, 0x10, 0x14, 0x18,
                                                  0x1C)
IIDR, AIDR, CR0, CR1, SYNCR, SYNC_STATUSR = 0x40, 0x44, 0x80, 0x84, 0xC0, 0xC4
SPI_VMR, SPI_SELR, SPI_DOMAINR, SPI_RESAMPLER, SPI_CFGR, SPI_STATUSR = (0x100, 0x108, 0x10C,
                                                                      0x110, 0x114, 0x118)
PE_SELR, PE_STATUSR, PE_CR0 = 0x140, 0x144, 0x148
IST_BASER, IST_CFGR, IST_STATUSR, MAP_L2_ISTR = 0x180, 0x190, 0x194, 0x1C0
# the 52 offsets of the selftest's gic_v5_irs_regs[] (IDR0 .. SWERR_SYNDROMER1)
IRS_REGS_52 = (IDR0, IDR1, IDR2, IDR3, IDR4, IDR5, IDR6, IDR7, IIDR, AIDR, CR0, CR1, SYNCR,
               SYNC_STATUSR, SPI_VMR, SPI_SELR, SPI_DOMAINR, SPI_RESAMPLER, SPI_CFGR,
               SPI_STATUSR, PE_SELR, PE_STATUSR, PE_CR0, IST_BASER, IST_CFGR, IST_STATUSR,
               MAP_L2_ISTR, 0x200, 0x210, 0x214, 0x240, 0x248, 0x250, 0x258, 0x25C, 0x280,
               0x288, 0x28C, 0x2C0, 0x2C8, 0x2D0, 0x2D8, 0x2E0, 0x300, 0x308, 0x340, 0x344,
               0x380, 0x384, 0x3C0, 0x3C8, 0x3D0)
BASER_VALID = 1

# ISTE bits (spec 1.4)
P, A, HM, EN, IRM = 1, 2, 4, 8, 16
HWU = 0x600


def prio(p):
    return p << 11


def aff(i):
    return i << 16


def spi(n):
    return 0x60000000 | n


def lpi(n):
    return 0x40000000 | n


def line(n):
    return (1 << 24) | n  # KVM_IRQ_LINE word of SPI n


def errno_of(fn, *args, **kw):
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    return info.value.errno


def u64(value=0):
    return bytearray(value.to_bytes(8, sys.byteorder))


def u32(value=0):
    return bytearray(value.to_bytes(4, sys.byteorder))


def val(buf):
    return int.from_bytes(bytes(buf), sys.byteorder)


def le_words(buf):
    return [int.from_bytes(bytes(buf[i:i + 4]), "little") for i in range(0, len(buf), 4)]


def le_buf(words):
    return bytearray(b"".join(w.to_bytes(4, "little") for w in words))


class Ist:
    """A struct kvm_vgic_v5_ist as the duck-typed descriptor."""

    def __init__(self, spi_ist=None, spi_ist_size=0, lpi_ist=None, lpi_ist_size=0):
        self.spi_ist = spi_ist
        self.spi_ist_size = spi_ist_size
        self.lpi_ist = lpi_ist
        self.lpi_ist_size = lpi_ist_size


def spi_ist(nr=32):
    buf = bytearray(4 * nr)
    return Ist(buf, len(buf)), buf


def vm74(**host):
    return RefKvm("7.4", **host).create_vm()


def ready_vm(nvcpus=1, ids=None, irs=True, nr_spis=None, **host):
    vm = vm74(**host)
    dev = vm.create_device(V5)
    for i in (ids if ids is not None else range(nvcpus)):
        vm.create_vcpu(i)
    if nr_spis is not None:
        dev.set_attr(NR_IRQS, 0, u32(nr_spis))
    if irs:
        dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    dev.set_attr(CTRL, ref.CTRL_INIT)
    return vm, dev


def get_reg(dev, offset):
    buf = u64(0xBAD)
    dev.get_attr(REGS, offset, buf)
    return val(buf)


def cpu_on(cpu, pcr=0x10):
    """gicv5_cpu_enable_interrupts: ICC_CR0_EL1.EN, ICC_PCR_EL1 = GICV5_IRQ_DEFAULT_PRI."""
    cpu.write_cr0(1)
    cpu.write_pcr(pcr)


def guest_spi(cpu, n, level=False, priority=0x10, target=0, enable_irs=True):
    """guest_spi_line_code: IRS_CR0.IRSEN, SPI_SELR/SPI_CFGR, CDPRI, CDAFF, CDEN."""
    if enable_irs:
        cpu.irs_write(CR0, 1)
    cpu.irs_write(SPI_SELR, n)
    cpu.irs_write(SPI_CFGR, int(level))
    cpu.cdpri(spi(n), priority)
    cpu.cdaff(spi(n), target)
    cpu.cden(spi(n))


# -- spec 9: test_vgic_v5_spis --------------------------------------------------------------

def test_spis_case_a_first_invalid_spi():
    """kvm_vgic_inject_irq / vgic_get_irq: SPI nr_spis is EINVAL (case a)."""
    vm, _ = ready_vm(nr_spis=32)
    assert errno_of(vm.irq_line, line(32), 1) == errno.EINVAL


def test_spis_case_b_trace():
    """Spec 9 (b) model trace: kvm_vgic_v5_irs_init (zeroed IST), vgic_v5_mmio_write_irs_misc
    (CR0), vgic_v5_set_irq_pend (VDPEND), vgic_v5_load (IRICHPPIDIS 0), QEMU gicr_cdia_read /
    gic_cddi_write / gic_cdeoi_write."""
    vm, _ = ready_vm(nr_spis=32)
    vcpu = vm.vcpus[0]
    assert vm.spi_iste(0) == 0 and vm.irs_enabled is False
    with vcpu.run() as cpu:
        assert vcpu.contextr == ref.CONTEXTR_V | ref.CONTEXTR_IRICHPPIDIS
        guest_spi(cpu, 0)
        cpu_on(cpu)
        assert vcpu.contextr == 1 << 63  # reloaded by its own CR0 write
        assert vm.irs_enabled is True
        assert vm.spi_level_config(0) is False
    assert vcpu.contextr == 0
    vm.irq_line(line(0), 1)
    assert vm.spi_state(0) == (False, True)
    assert vm.spi_iste(0) == P | EN | prio(0x10)
    with vcpu.run() as cpu:
        assert cpu.cdia() == 0x60000000
        assert vm.spi_iste(0) == A | EN | prio(0x10)
        cpu.cddi(0x60000000)
        assert vm.spi_iste(0) == EN | prio(0x10)
        cpu.cdeoi()
        assert cpu.cdia() is None
    # the APR the put saved (CPU_SYSREGS ICC_APR_EL1): the priority was dropped again
    buf = u64(0xBAD)
    vm.device.get_attr(ref.GRP_CPU_SYSREGS, ref.sysreg_attr(3, 1, 12, 0, 0), buf)
    assert val(buf) == 0


@pytest.mark.parametrize("nr, n, level, lower", [
    (1024, 1023, False, False),  # case c
    (32, 1, False, True),        # case e: the edge survives the lowering
    (32, 2, True, False),        # case f: a LEVEL SPI
])
def test_spis_cases_c_e_f_delivered(nr, n, level, lower):
    """vgic_validate_injection + vgic_v5_set_irq_pend; QEMU gicr_cdia_read (cases c, e, f)."""
    vm, _ = ready_vm(nr_spis=nr)
    vcpu = vm.vcpus[0]
    with vcpu.run() as cpu:
        guest_spi(cpu, n, level=level)
        cpu_on(cpu)
    vm.irq_line(line(n), 1)
    if lower:
        vm.irq_line(line(n), 0)
    with vcpu.run() as cpu:
        assert cpu.wfi() is True  # the doorbell
        assert cpu.cdia() == spi(n)
        cpu.cddi(spi(n))
        cpu.cdeoi()
    # HM stays edge (no CDHM for SPIs): the acknowledge consumed the pending state
    assert vm.spi_iste(n) == EN | prio(0x10)


def test_spis_case_d_configured_invalid_spi():
    """vgic_get_irq (V5): id >= nr_spis is EINVAL (case d)."""
    vm, _ = ready_vm(nr_spis=1024)
    assert errno_of(vm.irq_line, line(1024), 1) == errno.EINVAL


# -- spec 8 rule 1: CTRL_INIT state; spec 4.1 reset reads -----------------------------------

def test_init_allocates_pow2_ist():
    """kvm_vgic_v5_irs_init: fls(roundup_pow_of_two(nr_spis)) - 1 id bits (96 -> 128)."""
    vm, _ = ready_vm(nr_spis=96)
    assert vm.spi_iste(127) == 0
    with pytest.raises(ValueError):
        vm.spi_iste(128)
    with pytest.raises(ValueError):
        vm.spi_iste(-1)
    with pytest.raises(TypeError):
        vm.spi_iste(1.0)
    with pytest.raises(ValueError):
        vm.spi_level_config(96)  # KVM's records: nr_spis only
    vm = vm74()
    vm.create_device(V5)
    with pytest.raises(ValueError):
        vm.spi_iste(0)  # no SPI IST before CTRL_INIT


@pytest.mark.parametrize("profile", ["v2", "v3", "final"])
def test_other_profiles_have_no_virs(profile):
    """No virtual IRS before 7.4: no IST, IRS disabled, contextr 0, CD* inert, CDRCFG F,
    the IRS region does not exist (KVM_EXIT_MMIO)."""
    vm = RefKvm(profile).create_vm()
    dev = vm.create_device(V5)
    vcpu = vm.create_vcpu(0)
    dev.set_attr(CTRL, ref.CTRL_INIT)
    with pytest.raises(ValueError):
        vm.spi_iste(0)
    assert vm.irs_enabled is False
    with vcpu.run() as cpu:
        assert vcpu.contextr == 0 and vcpu.db_fired is False
        cpu.cden(spi(0))
        cpu.cdpend(spi(0), 1)
        cpu.cdrcfg(spi(0))
        assert cpu.read_icsr() == 1
        with pytest.raises(RuntimeError):
            cpu.irs_read(IDR0)
        with pytest.raises(RuntimeError):
            cpu.irs_write(CR0, 1)


def test_guest_reset_reads():
    """Spec 4.1 reset column: vgic_v5_mmio_read_irs_misc / _irs_spi / _irs_ist /
    vgic_v5_coresight_read after kvm_vgic_v5_irs_init."""
    vm, _ = ready_vm()
    expected = {IDR0: 0x15, IDR1: 0x00400001, IDR2: 0x3B0, IDR3: 0, IDR4: 0, IDR5: 32,
                IDR6: 32, IDR7: 0, IIDR: 0x04B0043B, AIDR: 0, CR0: 0x2, CR1: 0, SYNCR: 0,
                SYNC_STATUSR: 0x1, SPI_VMR: 0, SPI_SELR: 0xFFFFFF, SPI_DOMAINR: 0x1,
                SPI_RESAMPLER: 0, SPI_CFGR: 0, SPI_STATUSR: 0x1, PE_SELR: 0xFFFF,
                PE_STATUSR: 0x1, PE_CR0: 0, IST_BASER: 0, IST_CFGR: 0, IST_STATUSR: 0x1,
                MAP_L2_ISTR: 0, 0xFFBC: 0x47705A19, 0xFFD0: 0x04, 0xFFD4: 0, 0xFFD8: 0,
                0xFFDC: 0, 0xFFE0: 0x4B, 0xFFE4: 0xB0, 0xFFE8: 0x0B, 0xFFEC: 0,
                0xFFF0: 0x0D, 0xFFF4: 0xF0, 0xFFF8: 0x05, 0xFFFC: 0xB1}
    with vm.vcpus[0].run() as cpu:
        for off, value in expected.items():
            assert cpu.irs_read(off) == value, hex(off)


def test_guest_idr_host_inputs():
    """kvm_vgic_v5_irs_init: PA_RANGE from the sanitised PARange, PRIORITY_BITS = host - 1,
    ID_BITS = min(16, host), MIN_LPI_ID_BITS = host; IDR1 from the VMTE (vgic_v5_vmte_init:
    ids {17, 3} -> 5 VPE id bits, IAFFID_BITS field 4; PE_CNT 2)."""
    vm, _ = ready_vm(ids=(17, 3), irs_pri_bits=4, ist_id_bits=20, min_lpi_id_bits=12,
                     pa_range=2)
    with vm.vcpus[0].run() as cpu:
        assert cpu.irs_read(IDR0) == 0x1 | (2 << 2)
        assert cpu.irs_read(IDR1) == (3 << 20) | (4 << 16) | 2
        assert cpu.irs_read(IDR2) == (12 << 6) | 0x20 | 16
    vm, _ = ready_vm(ist_id_bits=14, min_lpi_id_bits=10)
    with vm.vcpus[0].run() as cpu:
        assert cpu.irs_read(IDR2) == (10 << 6) | 0x20 | 14


@pytest.mark.parametrize("profile", ref.PROFILES)
def test_host_irs_input_validation(profile):
    """RefKvm host inputs (every profile): irs_pri_bits 1..5, ist_id_bits 14..24,
    min_lpi_id_bits 10..min(ist_id_bits, 15) (IRS_IDR2.MIN_LPI_ID_BITS is a 4-bit field),
    pa_range 0..7."""
    for kw in ({"irs_pri_bits": 0}, {"irs_pri_bits": 6}, {"ist_id_bits": 13},
               {"ist_id_bits": 25}, {"min_lpi_id_bits": 9}, {"min_lpi_id_bits": 16},
               {"ist_id_bits": 14, "min_lpi_id_bits": 15}, {"pa_range": -1},
               {"pa_range": 8}):
        with pytest.raises(ValueError):
            RefKvm(profile, **kw)
    for kw in ({"irs_pri_bits": 5.0}, {"ist_id_bits": "16"}, {"min_lpi_id_bits": None},
               {"pa_range": 1.5}):
        with pytest.raises(TypeError):
            RefKvm(profile, **kw)
    RefKvm(profile, irs_pri_bits=1, ist_id_bits=24, min_lpi_id_bits=15, pa_range=7)


# -- spec 4.1: the emulated config frame, guest side -----------------------------------------

def test_guest_cr1_pe_selr_spi_selr():
    """vgic_v5_mmio_write_irs_misc (CR1 mask 0xf5ff, PE_SELR) / read (PE_STATUSR, PE_CR0 via
    kvm_get_vcpu_by_id); vgic_v5_mmio_write_irs_spi (SPI_SELR) / vgic_v5_is_spi_selr_valid."""
    vm, _ = ready_vm(ids=(0, 5))
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(CR1, 0xFFFF)
        assert cpu.irs_read(CR1) == 0xF5FF
        cpu.irs_write(PE_SELR, 0xABCD0005)
        assert cpu.irs_read(PE_SELR) == 5
        assert cpu.irs_read(PE_STATUSR) == 0x7 and cpu.irs_read(PE_CR0) == 0x1
        cpu.irs_write(PE_SELR, 4)
        assert cpu.irs_read(PE_STATUSR) == 0x1 and cpu.irs_read(PE_CR0) == 0
        cpu.irs_write(PE_CR0, 0)  # WI
        cpu.irs_write(SPI_SELR, 31)
        assert cpu.irs_read(SPI_STATUSR) == 0x3
        cpu.irs_write(SPI_SELR, 32)
        assert cpu.irs_read(SPI_STATUSR) == 0x1
        cpu.irs_write(SPI_SELR, 0xFF000007)
        assert cpu.irs_read(SPI_SELR) == 7
        for ro in (IDR0, IDR1, IDR5, IIDR, SPI_DOMAINR, IST_STATUSR, 0xFFBC):
            before = cpu.irs_read(ro)
            cpu.irs_write(ro, 0xFFFFFFFF)
            assert cpu.irs_read(ro) == before


def test_spi_cfgr_changes_only_kvm_config():
    """Spec 8 rule 4: vgic_v5_mmio_write_irs_spi / vgic_v5_mmio_read_irs_spi (SPI_CFGR): only
    KVM's config changes, the ISTE (HM) does not; an invalid SELR reads 0, writes nothing."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(SPI_CFGR, 1)  # SELR reset -1: invalid, ignored
        assert cpu.irs_read(SPI_CFGR) == 0
        cpu.irs_write(SPI_SELR, 4)
        cpu.irs_write(SPI_CFGR, 0xFFFFFFFF)
        assert cpu.irs_read(SPI_CFGR) == 1
        assert vm.spi_level_config(4) is True
        assert vm.spi_iste(4) == 0
        cpu.irs_write(SPI_CFGR, 0)
        assert vm.spi_level_config(4) is False


def test_mmio_widths_and_gaps():
    """vgic_get_mmio_region / check_region: 1/2-byte, 8 bytes on a 32-bit register, misaligned
    and unregistered offsets (gaps, SETLPI frame) are RAZ/WI; a 64-bit register takes 8 bytes at
    its base or 4 at base / base+4 (extract_bytes, update_64bit_reg)."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(CR0, 1, size=1)
        cpu.irs_write(CR0, 1, size=2)
        cpu.irs_write(CR0 - 4, 1, size=8)  # 8 bytes over CR0: a 32-bit region
        assert vm.irs_enabled is False
        assert cpu.irs_read(IIDR, size=1) == 0
        assert cpu.irs_read(IIDR, size=2) == 0
        assert cpu.irs_read(IIDR, size=8) == 0
        assert cpu.irs_read(IIDR + 2, size=4) == 0
        assert cpu.irs_read(0x20) == 0  # gap
        assert cpu.irs_read(0x10000) == 0  # SETLPI frame
        cpu.irs_write(0x10000, 5)
        cpu.irs_write(0x1FFFC, 5)
        assert cpu.irs_read(0x1FFFC) == 0
        # IST_BASER halves while invalid: 0 -> 0 stores the address
        cpu.irs_write(IST_BASER + 4, 0x12)
        assert cpu.irs_read(IST_BASER) == 0x12 << 32
        assert cpu.irs_read(IST_BASER + 4) == 0x12
        cpu.irs_write(IST_BASER, 0xFFFFFFFE, size=4)
        assert cpu.irs_read(IST_BASER, size=8) == (0x12 << 32) | 0xFFFFFFC0
        assert cpu.irs_read(IST_BASER + 2, size=4) == 0  # misaligned
        assert cpu.irs_read(IST_BASER + 4, size=8) == 0
        assert cpu.irs_read(SPI_VMR + 4) == 0


def test_mmio_argument_rules():
    """Argument rules of irs_read/irs_write: checked before any access."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        for bad in (-1, 0x20000):
            with pytest.raises(ValueError):
                cpu.irs_read(bad)
        with pytest.raises(TypeError):
            cpu.irs_read(0.0)
        with pytest.raises(ValueError):
            cpu.irs_read(0, size=3)
        with pytest.raises(TypeError):
            cpu.irs_read(0, size="4")
        with pytest.raises(ValueError):
            cpu.irs_read(0x1FFFC, size=8)
        with pytest.raises(ValueError):
            cpu.irs_write(CR0, 0x100, size=1)
        with pytest.raises(ValueError):
            cpu.irs_write(CR0, -1)
        with pytest.raises(TypeError):
            cpu.irs_write(CR0, 1.0)
        assert vm.irs_enabled is False
    with pytest.raises(RuntimeError):
        cpu.irs_read(IDR0)  # the run() block has ended


def test_guest_ist_baser_rules():
    """L-3: vgic_v5_write_irs_ist_baser and vgic_v5_ist_cfgr_valid (guest side); IST_CFGR is
    ignored while BASER.VALID (vgic_v5_mmio_write_irs_ist)."""
    vm, dev = ready_vm()
    good = 14  # max(5, MIN_LPI_ID_BITS 14), ISTSZ 0 (selftest gicv5_configure_lpi_ist)
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(IST_BASER, LPI_IST_GPA | BASER_VALID, size=8)  # CFGR 0: invalid
        assert cpu.irs_read(IST_BASER, size=8) == 0
        cpu.irs_write(IST_CFGR, good | (1 << 7))  # ISTSZ 1 without ISTMD: invalid
        cpu.irs_write(IST_BASER, LPI_IST_GPA | BASER_VALID, size=8)
        assert cpu.irs_read(IST_BASER, size=8) == 0
        cpu.irs_write(IST_CFGR, good | (1 << 16))  # two-level without IST_LEVELS: invalid
        cpu.irs_write(IST_BASER, LPI_IST_GPA | BASER_VALID, size=8)
        assert cpu.irs_read(IST_BASER, size=8) == 0
        cpu.irs_write(IST_CFGR, 17)  # above ID_BITS 16
        cpu.irs_write(IST_BASER, LPI_IST_GPA | BASER_VALID, size=8)
        assert cpu.irs_read(IST_BASER, size=8) == 0
        cpu.irs_write(IST_CFGR, good)
        cpu.irs_write(IST_BASER, LPI_IST_GPA | BASER_VALID, size=8)
        assert cpu.irs_read(IST_BASER, size=8) == LPI_IST_GPA | BASER_VALID
        assert cpu.irs_read(IST_STATUSR) == 1
        cpu.irs_write(IST_BASER, (LPI_IST_GPA ^ 0x40) | BASER_VALID, size=8)  # 1 -> 1
        assert cpu.irs_read(IST_BASER, size=8) == LPI_IST_GPA | BASER_VALID
        cpu.irs_write(IST_CFGR, 15)  # ignored while valid
        assert cpu.irs_read(IST_CFGR) == good
    # the host LPI IST now exists: an IST GET needs the LPI buffer of 2 ** 14 words
    desc, _ = spi_ist()
    assert errno_of(dev.get_attr, IST, 0, desc) == errno.EINVAL
    desc.lpi_ist, desc.lpi_ist_size = bytearray(4 << 14), 4 << 14
    dev.get_attr(IST, 0, desc)
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(IST_BASER, LPI_IST_GPA, size=8)  # 1 -> 0: freed
        assert cpu.irs_read(IST_BASER, size=8) == LPI_IST_GPA
    assert errno_of(dev.get_attr, IST, 0, desc) == errno.EINVAL  # no LPI IST any more
    desc.lpi_ist, desc.lpi_ist_size = None, 0
    dev.get_attr(IST, 0, desc)


# -- spec 4.3 / 8 rule 5: CD* on the virtual IST ---------------------------------------------

def test_cd_instructions_change_only_the_ist():
    """Spec 4.3 table (QEMU gicv5_set_priority/_enabled/_pending/_handling/_target, without
    its SPI enable/pending quirk); KVM's vgic_irq state is untouched (rule 5)."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        cpu.cdpri(spi(3), 0x1F)
        cpu.cdaff(spi(3), 0xBEEF, irm=1)
        cpu.cden(spi(3))
        cpu.cdpend(spi(3), True)
        cpu.cdhm(spi(3), 1)
        assert vm.spi_iste(3) == P | HM | EN | prio(0x1F) | aff(0xBEEF)
        cpu.cddis(spi(3))
        cpu.cdpend(spi(3), 0)
        cpu.cdhm(spi(3), False)
        assert vm.spi_iste(3) == prio(0x1F) | aff(0xBEEF)
        # ids beyond the table, PPIs, LPIs, other types: nothing
        for intid in (spi(32), 0x20000003, lpi(0), 0x00000003, 0xE0000003):
            cpu.cden(intid)
            cpu.cdpend(intid, 1)
        assert all(vm.spi_iste(i) == 0 for i in range(32) if i != 3)
    assert vm.spi_state(3) == (False, False)
    assert vm.spi_level_config(3) is False


def test_cd_ids_between_nr_spis_and_pow2():
    """Spec Q4, knob spi_hw_id_space "pow2": the VMTE SPI ID_BITS cover 2 ** spi_id_bits ids
    (vgic_v5_vmte_assign_ist), so CD* act on ids >= nr_spis and such an SPI can be delivered
    though KVM never injects or saves it."""
    vm, dev = ready_vm(nr_spis=96)
    vcpu = vm.vcpus[0]
    with vcpu.run() as cpu:
        cpu_on(cpu)
        guest_spi(cpu, 100)
        cpu.cdpend(spi(100), 1)
        assert cpu.cdia() == spi(100)
        cpu.cdrcfg(spi(127))
        assert cpu.read_icsr() == 0
        cpu.cdrcfg(spi(128))
        assert cpu.read_icsr() == 1
    assert errno_of(vm.irq_line, line(100), 1) == errno.EINVAL
    desc, buf = spi_ist(96)
    dev.get_attr(IST, 0, desc)
    assert len(buf) == 4 * 96


def test_cd_argument_rules():
    """Argument rules of the CD* methods: TypeError / ValueError before any change."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        with pytest.raises(ValueError):
            cpu.cden(1 << 32)
        with pytest.raises(ValueError):
            cpu.cden(-1)
        with pytest.raises(TypeError):
            cpu.cden(float(spi(0)))
        with pytest.raises(ValueError):
            cpu.cdpri(spi(0), 32)
        with pytest.raises(TypeError):
            cpu.cdpri(spi(0), "1")
        with pytest.raises(ValueError):
            cpu.cdaff(spi(0), 0x10000)
        with pytest.raises(ValueError):
            cpu.cdaff(spi(0), 1, irm=2)
        with pytest.raises(TypeError):
            cpu.cdpend(spi(0), None)
        with pytest.raises(TypeError):
            cpu.cdhm(spi(0), 1.0)
        with pytest.raises(TypeError):
            cpu.cdrcfg(None)
        assert vm.spi_iste(0) == 0


@pytest.mark.parametrize("bits_, written, stored", [
    (5, 0x11, 0x11), (4, 0x11, 0x10), (4, 0x1F, 0x1E), (3, 0x1F, 0x1C), (1, 0x1F, 0x10),
    (1, 0x0F, 0x00),
])
def test_cdpri_keeps_top_host_bits(bits_, written, stored):
    """Spec 1.6 / QEMU gicv5_set_priority: unimplemented low-order priority bits of the host
    IRS width read as 0."""
    vm, _ = ready_vm(irs_pri_bits=bits_)
    with vm.vcpus[0].run() as cpu:
        cpu.cdpri(spi(0), written)
    assert vm.spi_iste(0) == prio(stored)


def test_cdrcfg_icsr_image():
    """QEMU gicv5_request_config / spi_state_to_icsr: ENABLED 1, PENDING 2, IRM 3, ACTIVE 4,
    HM 5, PRIORITY 15:11, IAFFID 47:32; F (bit 0) alone for anything unreachable."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        cpu.cdpri(spi(7), 0x15)
        cpu.cdaff(spi(7), 0x1234)
        cpu.cden(spi(7))
        cpu.cdpend(spi(7), 1)
        cpu.cdhm(spi(7), 1)
        cpu.cdrcfg(spi(7))
        assert cpu.read_icsr() == 0x0000_1234_0000_A826
        cpu.cdrcfg(spi(0))
        assert cpu.read_icsr() == 0
        for intid in (spi(32), 0x20000003, lpi(0), 0x00000007, 0xA0000000):
            cpu.cdrcfg(spi(7))
            cpu.cdrcfg(intid)
            assert cpu.read_icsr() == 1
    # the value survives the exit (saved to vgic_icsr) and is what CPU_SYSREGS reads
    buf = u64()
    vm.device.get_attr(ref.GRP_CPU_SYSREGS, ref.sysreg_attr(3, 0, 12, 10, 4), buf)
    assert val(buf) == 1


# -- spec 4.5 / 4.6 / 8 rules 6-7: delivery and acknowledge -----------------------------------

def test_delivery_predicate():
    """Spec 8 rule 6 (QEMU irs_recalc_hppi + gic_hppi): ENABLE, PENDING, not ACTIVE,
    IAFFID == vcpu_id, and EN / PCR / running priority."""
    vm, _ = ready_vm(ids=(0, 1))
    with vm.vcpus[0].run() as cpu:
        guest_spi(cpu, 0, target=1)
        cpu_on(cpu)
        cpu.cdpend(spi(0), 1)
        assert cpu.cdia() is None  # targets vCPU 1
        cpu.cdaff(spi(0), 0)
        cpu.cddis(spi(0))
        assert cpu.cdia() is None  # disabled
        cpu.cden(spi(0))
        cpu.write_pcr(0x0F)
        assert cpu.cdia() is None  # 0x10 > PCR
        cpu.write_pcr(0x10)
        cpu.write_cr0(0)
        assert cpu.cdia() is None  # ICC_CR0_EL1.EN clear
        cpu.write_cr0(1)
        assert cpu.cdia() == spi(0)
        assert cpu.cdia() is None  # active; and the running priority is now 0x10
        cpu.cdpend(spi(0), 1)
        cpu.cddi(spi(0))
        assert cpu.cdia() is None  # 0x10 is not < running 0x10
        cpu.cdeoi()
        assert cpu.cdia() == spi(0)


def test_spi_target_follows_cdaff():
    """Spec 8 rule 6 (QEMU irs_recalc_hppi: the IRS offers an SPI only to the VPE its IAFFID
    names; KVM's VPE id is the vcpu_id): with sparse vCPU ids 0 and 5, a pending SPI moved by
    CDAFF is offered to its new target only; one targeted at an id no vCPU has is offered to
    nobody until CDAFF names a vCPU; an SPI retargeted while active and made pending again is
    offered, after its deactivation, to the new target."""
    vm, _ = ready_vm(ids=(0, 5))
    a, b = vm.vcpus
    assert (a.vcpu_id, b.vcpu_id) == (0, 5)
    with a.run() as cpu:
        guest_spi(cpu, 0, target=5)
        guest_spi(cpu, 1, target=5, enable_irs=False)
        guest_spi(cpu, 2, target=9, enable_irs=False)  # no vCPU has id 9
        cpu_on(cpu)
    for n in (0, 1, 2):
        vm.irq_line(line(n), 1)
    with a.run() as cpu:
        cpu_on(cpu)
        assert cpu.cdia() is None  # all three target others
    with b.run() as cpu:
        cpu_on(cpu)
        assert cpu.cdia() == spi(0)
        cpu.cdaff(spi(1), 0)  # pending: now vCPU 0's
        cpu.cdaff(spi(0), 0)  # active: vCPU 0's once pending and inactive again
        cpu.cdpend(spi(0), 1)
        cpu.cddi(spi(0))
        cpu.cdeoi()
        assert cpu.cdia() is None  # SPI 0 and 1 moved, SPI 2 still targets id 9
        cpu.cdaff(spi(2), 5)
        assert cpu.cdia() == spi(2)
        cpu.cddi(spi(2))
        cpu.cdeoi()
        assert cpu.cdia() is None
    with a.run() as cpu:
        cpu_on(cpu)
        assert cpu.cdia() == spi(0)  # same priority: the lowest id first
        cpu.cddi(spi(0))
        cpu.cdeoi()
        assert cpu.cdia() == spi(1)
        cpu.cddi(spi(1))
        cpu.cdeoi()
        assert cpu.cdia() is None


def test_irs_disabled_sets_irichppidis():
    """Spec 4.8 / vgic_v5_load: IRICHPPIDIS = !vgic.enabled; with it the IRS candidate is gone
    (PPIs are unaffected); IST state still changes."""
    vm, _ = ready_vm()
    vcpu = vm.vcpus[0]
    vm.irq_line((2 << 24) | 3, 1)  # SW_PPI
    with vcpu.run() as cpu:
        assert vcpu.contextr == ref.CONTEXTR_V | ref.CONTEXTR_IRICHPPIDIS
        guest_spi(cpu, 0, priority=0, enable_irs=False)
        cpu_on(cpu)
        cpu.cdpend(spi(0), 1)
        assert vm.spi_iste(0) == P | EN
        assert cpu.cdia() is None  # no PPI enabled, no IRS candidate
        cpu.write_ppi_enabler(0, 1 << 3)
        cpu.write_ppi_priority(3, 0x10)
        assert cpu.cdia() == ref.PPI_INTID | 3
        cpu.cdeoi()
        cpu.irs_write(CR0, 1)
        assert vcpu.contextr == ref.CONTEXTR_V
        assert cpu.cdia() == spi(0)  # priority 0, acknowledged (SCTLR_EL1.NMI = 0)
        cpu.irs_write(CR0, 0)
        assert vcpu.contextr == ref.CONTEXTR_V | ref.CONTEXTR_IRICHPPIDIS


def test_reload_reaches_other_vcpus_at_their_next_exit():
    """vgic_v5_mmio_write_irs_misc: kvm_make_all_cpus_request(KVM_REQ_RELOAD_GICv5);
    check_vcpu_requests: put + load (source check Q8), at the next exit of each vCPU."""
    vm, _ = ready_vm(ids=(0, 1))
    v0, v1 = vm.vcpus
    idle = ref.CONTEXTR_V | ref.CONTEXTR_IRICHPPIDIS
    c0 = v0.run_enter()
    c1 = v1.run_enter()
    assert v1.contextr == idle | (1 << 32)
    guest_spi(c0, 0, target=1)
    cpu_on(c1)
    c0.cdpend(spi(0), 1)
    assert v0.contextr == ref.CONTEXTR_V
    assert v1.contextr == idle | (1 << 32)
    assert c1.cdia() is None  # vCPU 1 still runs with IRICHPPIDIS set
    assert c1.read_iaffidr() == 1  # a trapped round trip: the reload
    assert v1.contextr == ref.CONTEXTR_V | (1 << 32)
    assert c1.cdia() == spi(0)
    v0.run_exit()
    v1.run_exit()
    # a vCPU outside run() gets it at its next run
    vm2, _ = ready_vm(ids=(0, 1))
    with vm2.vcpus[0].run() as cpu:
        cpu.irs_write(CR0, 1)
    with vm2.vcpus[1].run():
        assert vm2.vcpus[1].contextr == ref.CONTEXTR_V | (1 << 32)


def test_contextr_vpe_and_put():
    """vgic_v5_load (VPE = vcpu_id) / vgic_v5_put (contextr := 0 outside WFI)."""
    vm, _ = ready_vm(ids=(17, 3))
    v17 = vm.vcpus[0]
    assert v17.contextr == 0
    with v17.run():
        assert v17.contextr == ref.CONTEXTR_V | ref.CONTEXTR_IRICHPPIDIS | (17 << 32)
    assert v17.contextr == 0


def test_ppi_wins_priority_tie():
    """QEMU gic_hppi: a PPI beats an IRS interrupt of equal priority (R_VVBPS IMPDEF; knob
    ppi_vs_irs_tie = "ppi"); a strictly better SPI wins."""
    vm, _ = ready_vm()
    vm.irq_line((2 << 24) | 3, 1)
    with vm.vcpus[0].run() as cpu:
        guest_spi(cpu, 0)
        cpu_on(cpu, pcr=0x1F)
        cpu.write_ppi_enabler(0, 1 << 3)
        cpu.write_ppi_priority(3, 0x10)
        cpu.cdpend(spi(0), 1)
        assert cpu.cdia() == ref.PPI_INTID | 3
        assert cpu.cdia() is None
        cpu.cdeoi()
        assert cpu.cdia() == spi(0)
    vm, _ = ready_vm()
    vm.irq_line((2 << 24) | 3, 1)
    with vm.vcpus[0].run() as cpu:
        guest_spi(cpu, 0, priority=0x0F)
        cpu_on(cpu, pcr=0x1F)
        cpu.write_ppi_enabler(0, 1 << 3)
        cpu.write_ppi_priority(3, 0x10)
        cpu.cdpend(spi(0), 1)
        assert cpu.cdia() == spi(0)
        assert cpu.cdia() is None  # the PPI's 0x10 is not < running 0x0F


def test_spi_ties_lowest_id_then_priority():
    """QEMU irs_recalc_hppi: lowest priority value wins; among equals the lowest SPI id
    (replace only on a strictly lower priority)."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        cpu_on(cpu, pcr=0x1F)
        cpu.irs_write(CR0, 1)
        for n, p in ((9, 0x10), (4, 0x10), (20, 0x08), (6, 0x08)):
            cpu.cdpri(spi(n), p)
            cpu.cden(spi(n))
            cpu.cdpend(spi(n), 1)
        order = []
        for _ in range(4):
            intid = cpu.cdia()
            order.append(intid)
            cpu.cddi(intid)
            cpu.cdeoi()
        assert order == [spi(6), spi(20), spi(4), spi(9)]
        assert cpu.cdia() is None


def test_cdia_level_handling_keeps_pending():
    """Spec 4.6 / QEMU gicv5_activate: HM level keeps PENDING at the acknowledge; the SPI is
    a candidate again after CDDI (and CDEOI)."""
    vm, _ = ready_vm()
    with vm.vcpus[0].run() as cpu:
        guest_spi(cpu, 2, level=True)
        cpu_on(cpu)
        cpu.cdhm(spi(2), 1)
        cpu.cdpend(spi(2), 1)
        assert cpu.cdia() == spi(2)
        assert vm.spi_iste(2) == P | A | HM | EN | prio(0x10)
        cpu.cddi(spi(2))
        cpu.cdeoi()
        assert cpu.cdia() == spi(2)


# -- KVM_IRQ_LINE: VDPEND (spec 3.1, S-9 .. S-12) ---------------------------------------------

def test_injection_vdpend():
    """kvm_vgic_inject_irq -> vgic_v5_set_spi_pending_state -> vgic_v5_set_irq_pend:
    VDPEND(intid, irq_is_pending) after an accepted change only; works before any run."""
    vm, dev = ready_vm()
    vm.irq_line(line(1), 1)  # EDGE: latch, VDPEND 1
    assert vm.spi_iste(1) == P
    vm.irq_line(line(1), 0)  # EDGE level 0: no-op
    assert vm.spi_iste(1) == P
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(SPI_SELR, 2)
        cpu.irs_write(SPI_CFGR, 1)  # LEVEL
        cpu.cdpend(spi(1), 0)
    vm.irq_line(line(1), 0)  # still a no-op: nothing re-pends or clears
    assert vm.spi_iste(1) == 0
    vm.irq_line(line(2), 1)
    assert vm.spi_iste(2) == P
    with vm.vcpus[0].run() as cpu:
        cpu.cdpend(spi(2), 0)
    vm.irq_line(line(2), 1)  # same level: no re-pend (S-11)
    assert vm.spi_iste(2) == 0
    vm.irq_line(line(2), 0)
    assert vm.spi_iste(2) == 0 and vm.spi_state(2) == (False, False)
    vm.irq_line(line(2), 1)
    assert vm.spi_iste(2) == P
    vm.irq_line(line(2), 0)
    assert vm.spi_iste(2) == 0
    assert errno_of(vm.irq_line, line(32), 1) == errno.EINVAL


def test_sticky_latch_quirk():
    """S-11: pending_latch is never cleared for SPIs (only IST restore does,
    vgic_v5_restore_spi_config); an EDGE SPI switched to LEVEL stays pending forever."""
    vm, _ = ready_vm()
    vm.irq_line(line(5), 1)  # EDGE: latch 1
    with vm.vcpus[0].run() as cpu:
        cpu.irs_write(SPI_SELR, 5)
        cpu.irs_write(SPI_CFGR, 1)
        cpu.cdpend(spi(5), 0)
    assert vm.spi_state(5) == (False, True) and vm.spi_pending(5)
    vm.irq_line(line(5), 1)
    assert vm.spi_iste(5) == P
    vm.irq_line(line(5), 0)  # VDPEND(latch | line) = VDPEND(1)
    assert vm.spi_iste(5) == P
    assert vm.spi_state(5) == (False, True)


def test_irq_line_batch_spi_words():
    """irq_line_batch: SPI words go through kvm_vm_ioctl_irq_line one by one."""
    vm, _ = ready_vm()
    codes = vm.irq_line_batch([line(0), line(40), line(3)], [1, 1, 0])
    assert [int(c) for c in codes] == [0, -errno.EINVAL, 0]
    assert vm.spi_iste(0) == P and vm.spi_iste(3) == 0


# -- spec 4.9: WFI and the doorbell (W-1 .. W-5) ----------------------------------------------

def wfi_vm(priority, pcr=0x10, target=0, ids=(0,), enable_irs=True):
    vm, _ = ready_vm(ids=ids)
    vcpu = vm.vcpus[0]
    with vcpu.run() as cpu:
        guest_spi(cpu, 0, priority=priority, target=target, enable_irs=enable_irs)
        cpu_on(cpu, pcr=pcr)
    vm.irq_line(line(0), 1)
    return vm, vcpu


def test_wfi_doorbell_fires_at_dbpm():
    """W-1/W-2/W-3: vgic_v5_put with IN_WFI requests DB with DBPM = M - 1 (M = min(ctz(APR)
    or 32, VPMR + 1) = 0x11 here); priority 0x10 <= DBPM fires db_handler (already pending at
    the put: knob doorbell_fires_if_already_pending); W-4 kvm_vgic_vcpu_pending_irq wakes."""
    vm, vcpu = wfi_vm(0x10)
    with vcpu.run() as cpu:
        assert vcpu.db_fired is False
        assert cpu.wfi() is True
        assert vcpu.db_fired is True
        assert vcpu.has_pending_irq() is True
        assert vcpu.contextr == ref.CONTEXTR_V  # W-5: loaded again, no DB
        assert cpu.cdia() == spi(0)
    assert vcpu.db_fired is False  # the put made it non-resident
    assert vcpu.has_pending_irq() is False


def test_wfi_doorbell_priority_mask():
    """W-2/W-4: an SPI with priority > DBPM does not fire (PCR 0x0F: M = 0x10, DBPM 0x0F);
    an active priority lowers M (APR bit 8: M = 8, DBPM 7)."""
    vm, vcpu = wfi_vm(0x10, pcr=0x0F)
    with vcpu.run() as cpu:
        assert cpu.wfi() is False and vcpu.db_fired is False
    vm, vcpu = wfi_vm(0x08, pcr=0x1F)
    with vcpu.run() as cpu:
        cpu.cdpri(spi(1), 0x07)
        cpu.cden(spi(1))
        cpu.cdpend(spi(1), 1)
        assert cpu.cdia() == spi(1)  # 0x07 beats SPI 0's 0x08; APR bit 7
        cpu.cdeoi()
        cpu.cddi(spi(1))
        cpu.write_pcr(0x1F)
        assert cpu.cdia() == spi(0)  # APR bit 8 now
        cpu.cdpend(spi(1), 1)
        cpu.cdpri(spi(1), 0x08)
        assert cpu.wfi() is False  # M = 8, DBPM 7: 0x08 cannot ring
        cpu.cdpri(spi(1), 0x07)
        cpu.cddi(spi(1))
        assert cpu.wfi() is True


def test_wfi_no_doorbell_when_irs_disabled_or_mask_zero():
    """W-1: no doorbell while vgic.enabled is 0, nor when the effective priority mask is 0
    (ICH_VMCR_EL2.EN clear); W-4: a pending SPI alone does not wake."""
    vm, vcpu = wfi_vm(0x10, enable_irs=False)
    with vcpu.run() as cpu:
        assert vm.spi_iste(0) == P | EN | prio(0x10)
        assert cpu.wfi() is False and vcpu.db_fired is False
    vm, vcpu = wfi_vm(0x10)
    with vcpu.run() as cpu:
        cpu.write_cr0(0)
        assert cpu.wfi() is False and vcpu.db_fired is False


def test_wfi_doorbell_needs_this_vpe():
    """W-2: only an SPI whose IAFFID names this VPE rings its doorbell."""
    vm, vcpu = wfi_vm(0x10, target=1, ids=(0, 1))
    with vcpu.run() as cpu:
        assert cpu.wfi() is False
    with vm.vcpus[1].run() as cpu1:
        cpu_on(cpu1)
        assert cpu1.wfi() is True


def test_wfi_reload_after_the_wfi_load_clears_db_fired():
    """kvm_vcpu_wfi loads the vCPU, then check_vcpu_requests runs KVM_REQ_RELOAD_GICv5 (put
    + load): that put's __vgic_v5_make_non_resident clears db_fired before the entry."""
    vm, _ = ready_vm(ids=(0, 1))
    v0, v1 = vm.vcpus
    with v0.run() as cpu:
        guest_spi(cpu, 0, target=1)
        cpu.cdpend(spi(0), 1)
    c1 = v1.run_enter()
    cpu_on(c1)
    assert c1.wfi() is True and v1.db_fired is True
    with v0.run() as cpu:
        cpu.irs_write(CR0, 0)
        cpu.irs_write(CR0, 1)  # two changes: a reload request for vCPU 1
    assert c1.wfi() is True  # the doorbell rang, then the reload put cleared it
    assert v1.db_fired is False
    assert v1.contextr == ref.CONTEXTR_V | (1 << 32)
    v1.run_exit()


# -- spec 5: KVM_DEV_ARM_VGIC_GRP_IRS_REGS ----------------------------------------------------

def test_irs_regs_round_trip_52():
    """Spec 5.4 / test_vgic_v5_irs_regs_attrs: GET then SET of each of the 52 offsets; the
    STATUSR uaccess reads are IDLE only; IST_BASER round-trips without an allocation; that
    0 -> 1 SET leaves lpi_ist_restore_pending, so the first KVM_RUN is EINVAL and kills the
    VM (vgic_v5_map_resources)."""
    vm, dev = ready_vm()
    for off in IRS_REGS_52:
        dev.has_attr(REGS, off)
        buf = u64(0xBAD)
        dev.get_attr(REGS, off, buf)
        dev.set_attr(REGS, off, buf)
    for off in (SYNC_STATUSR, SPI_STATUSR, PE_STATUSR, IST_STATUSR):
        assert get_reg(dev, off) == 0x1
    baser = 0x10000000 | BASER_VALID
    dev.set_attr(REGS, IST_BASER, u64(baser))
    assert get_reg(dev, IST_BASER) == baser
    assert errno_of(vm.vcpus[0].run_enter) == errno.EINVAL
    assert errno_of(vm.vcpus[0].run_enter) == errno.EIO


def test_irs_regs_selftest_rejections():
    """test_vgic_v5_irs_regs_attrs: bad offset, alignment, NULL, IDR0 Secure / SETLPI, IDR1
    PRIORITY_BITS 7, IDR2 0, IDR5/6/7 + 1 (vgic_v5_mmio_uaccess_write_irs)."""
    vm = vm74()
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    dev.has_attr(REGS, IDR0)  # before the IRS base
    dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    assert errno_of(dev.get_attr, REGS, IDR0, u64()) == errno.EBUSY
    assert errno_of(dev.set_attr, REGS, IDR0, u64()) == errno.EBUSY
    dev.set_attr(CTRL, ref.CTRL_INIT)
    assert errno_of(dev.has_attr, REGS, 0x10000) == errno.ENXIO
    assert errno_of(dev.get_attr, REGS, 0x10000, u64()) == errno.ENXIO
    assert errno_of(dev.has_attr, REGS, IDR0 + 2) == errno.EINVAL
    assert errno_of(dev.has_attr, REGS, IST_BASER + 4) == errno.EINVAL
    assert errno_of(dev.get_attr, REGS, IDR0, None) == errno.EFAULT
    assert errno_of(dev.set_attr, REGS, IDR0, None) == errno.EFAULT
    idr0 = get_reg(dev, IDR0)
    assert errno_of(dev.set_attr, REGS, IDR0, u64(idr0 & ~0x3)) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR0, u64(idr0 | (1 << 9))) == errno.EINVAL
    idr1 = get_reg(dev, IDR1)
    assert errno_of(dev.set_attr, REGS, IDR1, u64(idr1 | (7 << 20))) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR2, u64(0)) == errno.EINVAL
    for off in (IDR5, IDR6, IDR7):
        assert errno_of(dev.set_attr, REGS, off, u64(get_reg(dev, off) + 1)) == errno.EINVAL


def test_irs_regs_has_order():
    """Spec 5.2 HAS / vgic_v5_has_attr_regs: no vCPU index 0 EINVAL, then region ENXIO, then
    alignment EINVAL; no INIT needed."""
    vm = vm74()
    dev = vm.create_device(V5)
    assert errno_of(dev.has_attr, REGS, 0x10000) == errno.EINVAL
    assert errno_of(dev.has_attr, REGS, IDR0 + 2) == errno.EINVAL
    vm.create_vcpu(4)  # index 0, whatever its id
    assert errno_of(dev.has_attr, REGS, 0x10000) == errno.ENXIO
    assert errno_of(dev.has_attr, REGS, 0x1FFFC) == errno.ENXIO
    dev.has_attr(REGS, 0xFFFC)  # CIDR3
    dev.has_attr(REGS, SPI_VMR)
    assert errno_of(dev.has_attr, REGS, SPI_VMR + 4) == errno.EINVAL


def test_irs_regs_offset_truncated_to_32_bits():
    """vgic_find_mmio_region takes an unsigned int offset: vgic_v5_has_attr_regs and
    vgic_v5_irs_attr_regs_access look up attr & 0xffffffff (the alignment test sees the whole
    attr). Source over spec 5.1 ("the full 64-bit attr is used for the lookup")."""
    vm, dev = ready_vm()
    dev.has_attr(REGS, (1 << 32) | IDR1)
    assert get_reg(dev, (1 << 40) | IIDR) == 0x04B0043B
    assert errno_of(dev.has_attr, REGS, (1 << 32) | 0x10000) == errno.ENXIO


def test_irs_regs_set_order():
    """Spec 5.2 SET / vgic_v5_attr_regs_access: EINVAL (vCPU 0) -> EFAULT -> EBUSY (running)
    -> EBUSY (not initialised) -> EBUSY (has run) -> ENXIO (IRS base) -> ENXIO (region) ->
    EINVAL (alignment) -> register."""
    vm = vm74()
    dev = vm.create_device(V5)
    assert errno_of(dev.set_attr, REGS, 0x10000, None) == errno.EINVAL
    vm.create_vcpu(0)
    assert errno_of(dev.set_attr, REGS, 0x10000, None) == errno.EFAULT
    assert errno_of(dev.set_attr, REGS, 0x10000, u64()) == errno.EBUSY  # not initialised
    dev.set_attr(CTRL, ref.CTRL_INIT)
    assert errno_of(dev.set_attr, REGS, 0x10000, u64()) == errno.ENXIO  # no IRS base
    assert errno_of(dev.get_attr, REGS, IDR0, None) == errno.ENXIO  # before put_user
    dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    assert errno_of(dev.set_attr, REGS, 0x10000, u64()) == errno.ENXIO
    assert errno_of(dev.set_attr, REGS, IDR0 + 1, u64()) == errno.EINVAL
    cpu = vm.vcpus[0].run_enter()
    assert errno_of(dev.set_attr, REGS, 0x10000, u64()) == errno.EBUSY  # vCPU mutex
    assert errno_of(dev.get_attr, REGS, IDR0, u64()) == errno.EBUSY
    assert errno_of(dev.set_attr, REGS, 0x10000, None) == errno.EFAULT  # get_user first
    vm.vcpus[0].run_exit()
    del cpu
    assert errno_of(dev.set_attr, REGS, 0x10000, u64()) == errno.EBUSY  # has run
    assert errno_of(dev.set_attr, REGS, CR0, u64(1)) == errno.EBUSY
    assert get_reg(dev, IIDR) == 0x04B0043B  # reads stay allowed after a run


def test_irs_regs_register_semantics():
    """Spec 5.3 / vgic_v5_mmio_uaccess_write_irs: IDR0 PA_RANGE/IRSID stored unchecked, IDR1
    IAFFID_BITS must match and PRIORITY_BITS may be lowered (hardware masking keeps the host
    width, Q11), IDR2 checks and IST_L2SZ unchecked, CR0 sets vgic.enabled, SPI_CFGR ignored,
    the guest handler for CR1 / SPI_SELR / PE_SELR."""
    vm, dev = ready_vm()
    dev.set_attr(REGS, IDR0, u64(0x1 | (2 << 2) | (0x77 << 16)))
    assert get_reg(dev, IDR0) == 0x1 | (2 << 2) | (0x77 << 16)
    assert errno_of(dev.set_attr, REGS, IDR1, u64(1 << 16)) == errno.EINVAL  # IAFFID_BITS
    dev.set_attr(REGS, IDR1, u64(0xFFFF | (1 << 20)))  # PE_CNT ignored, 2 priority bits
    assert get_reg(dev, IDR1) == 0x00100001
    assert errno_of(dev.set_attr, REGS, IDR2, u64(0x3B0 | (1 << 10))) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR2, u64(0x3B0 | (1 << 14))) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR2, u64(0x3B0 | (1 << 15))) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR2, u64((14 << 6) | 0x20 | 17)) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR2, u64((13 << 6) | 0x20 | 16)) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IDR2, u64((15 << 6) | 0x20 | 14)) == errno.EINVAL
    dev.set_attr(REGS, IDR2, u64((15 << 6) | 0x20 | 15 | (5 << 11)))
    assert get_reg(dev, IDR2) == (15 << 6) | 0x20 | 15 | (5 << 11)
    dev.set_attr(REGS, CR1, u64(0xFFFF_FFFF_FFFF))
    dev.set_attr(REGS, SPI_SELR, u64(3))
    dev.set_attr(REGS, PE_SELR, u64(0))
    dev.set_attr(REGS, SPI_CFGR, u64(1))
    dev.set_attr(REGS, IIDR, u64(0))
    dev.set_attr(REGS, CR0, u64(1))
    assert vm.irs_enabled is True
    assert get_reg(dev, CR1) == 0xF5FF and get_reg(dev, SPI_SELR) == 3
    assert get_reg(dev, SPI_CFGR) == 0 and vm.spi_level_config(3) is False
    assert get_reg(dev, PE_STATUSR) == 0x1  # uaccess: IDLE only
    assert get_reg(dev, CR0) == 0x3
    with vm.vcpus[0].run() as cpu:
        assert vm.vcpus[0].contextr == ref.CONTEXTR_V  # enabled from the restore
        assert cpu.irs_read(PE_STATUSR) == 0x7  # the guest read sees the vCPU
        assert cpu.irs_read(IDR1) == 0x00100001
        cpu.cdpri(spi(0), 0x1F)
    assert vm.spi_iste(0) == prio(0x1F)


def test_irs_regs_ist_lock():
    """Spec 5.3 IST_BASER / IST_CFGR: while the host LPI IST exists (vgic_v5_lpi_ist_exists)
    only the current value is accepted; IST_CFGR is stored even while BASER.VALID."""
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_CFGR, u64(14))
    baser = LPI_IST_GPA | BASER_VALID
    dev.set_attr(REGS, IST_BASER, u64(baser))
    dev.set_attr(REGS, IST_CFGR, u64(15))  # BASER valid, no host IST yet: stored
    dev.set_attr(REGS, IST_CFGR, u64(14))
    desc, _ = spi_ist()
    desc.lpi_ist, desc.lpi_ist_size = bytearray(4 << 14), 4 << 14
    dev.set_attr(IST, 0, desc)  # allocates the host LPI IST
    dev.set_attr(REGS, IST_BASER, u64(baser))
    assert errno_of(dev.set_attr, REGS, IST_BASER, u64(baser ^ 0x40)) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IST_BASER, u64(LPI_IST_GPA)) == errno.EINVAL
    dev.set_attr(REGS, IST_CFGR, u64(14 | (1 << 20)))  # bits outside the fields: same value
    assert errno_of(dev.set_attr, REGS, IST_CFGR, u64(15)) == errno.EINVAL
    assert errno_of(dev.set_attr, REGS, IST_CFGR, u64(14 | (1 << 7))) == errno.EINVAL
    assert get_reg(dev, IST_CFGR) == 14
    with vm.vcpus[0].run():
        pass  # restore_pending was cleared by the IST SET


def test_restore_pending_after_the_map_is_not_checked_again():
    """kvm_vgic_map_resources (vgic-init.c) returns 0 at once once dist->ready is set:
    vgic_v5_map_resources' lpi_ist_restore_pending EINVAL belongs to the VM's first map
    only. vCPU 0's first run maps the vGIC and then fails at kvm_arm_pmu_v3_enable (its PMU
    never initialised: EINVAL, the VM alive and not ran); an IST_BASER 0 -> 1 after it makes
    a restore pending, yet the next runs skip the map: vCPU 0 fails at the PMU again, vCPU 1
    runs, and vCPU 0 runs once its PMU is initialised."""
    vm = vm74()
    dev = vm.create_device(V5)
    v0 = vm.create_vcpu(0, pmu=True)
    v1 = vm.create_vcpu(1)
    dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    dev.set_attr(CTRL, ref.CTRL_INIT)
    assert errno_of(v0.run_enter) == errno.EINVAL
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))  # allowed: not ran
    assert errno_of(v0.run_enter) == errno.EINVAL  # the PMU again, not the restore
    assert get_reg(dev, IST_BASER) == LPI_IST_GPA | BASER_VALID  # alive: no EIO
    with v1.run():
        pass
    v0.set_attr(ref.VCPU_PMU_V3_CTRL, ref.PMU_V3_INIT)
    with v0.run():
        pass


def test_restore_pending_survives_an_invalidating_set():
    """Source check T-10: a userspace IST_BASER 0 -> 1 sets lpi_ist_restore_pending and a
    later invalidating SET does not clear it: vgic_v5_map_resources fails the first run."""
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA))
    assert get_reg(dev, IST_BASER) == LPI_IST_GPA
    assert errno_of(vm.vcpus[0].run_enter) == errno.EINVAL
    assert errno_of(dev.get_attr, REGS, IDR0, u64()) == errno.EIO
    # an IST SET (no LPI IST described now) clears it
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA))
    desc, _ = spi_ist()
    dev.set_attr(IST, 0, desc)
    with vm.vcpus[0].run():
        pass


# -- spec 6: KVM_DEV_ARM_VGIC_GRP_IST ---------------------------------------------------------

def test_ist_selftest_attrs():
    """test_vgic_v5_ist_attrs: HAS, attr 1 ENXIO, EBUSY before INIT, NULL EINVAL, (void *)1
    EFAULT, missing / short SPI buffer, unexpected LPI buffer, SET after a run EBUSY."""
    vm = vm74()
    dev = vm.create_device(V5)
    vm.create_vcpu(0)
    dev.has_attr(IST, 0)
    assert errno_of(dev.has_attr, IST, 1) == errno.ENXIO
    desc, buf = spi_ist()
    assert errno_of(dev.get_attr, IST, 1, desc) == errno.ENXIO
    assert errno_of(dev.set_attr, IST, 1, desc) == errno.ENXIO
    dev.set_attr(ADDR, IRS, u64(IRS_GPA))
    assert errno_of(dev.get_attr, IST, 0, desc) == errno.EBUSY
    assert errno_of(dev.set_attr, IST, 0, desc) == errno.EBUSY
    dev.set_attr(CTRL, ref.CTRL_INIT)
    for fn in (dev.get_attr, dev.set_attr):
        assert errno_of(fn, IST, 0, None) == errno.EINVAL
        assert errno_of(fn, IST, 0, 0) == errno.EINVAL
        assert errno_of(fn, IST, 0, bytearray(8)) == errno.EFAULT  # unreadable descriptor
        assert errno_of(fn, IST, 0, Ist()) == errno.EINVAL
        assert errno_of(fn, IST, 0, bytearray(32)) == errno.EINVAL  # raw, all NULL
        assert errno_of(fn, IST, 0, Ist(buf, len(buf) - 4)) == errno.EINVAL
        assert errno_of(fn, IST, 0, Ist(buf, len(buf), buf, 4)) == errno.EINVAL
        assert errno_of(fn, IST, 0, Ist(buf, len(buf), None, 4)) == errno.EINVAL
    with vm.vcpus[0].run():
        pass
    assert errno_of(dev.set_attr, IST, 0, desc) == errno.EBUSY
    dev.get_attr(IST, 0, desc)  # saving after a run is allowed


def test_ist_descriptor_misuse():
    """_IstDesc: raw addresses are refused (TypeError) before any kernel step."""
    vm, dev = ready_vm()
    raw = bytearray(32)
    raw[0:8] = (0x1000).to_bytes(8, sys.byteorder)
    for bad in (raw, 1, "x", Ist(spi_ist=5), Ist(bytearray(128), 1.5)):
        with pytest.raises(TypeError):
            dev.set_attr(IST, 0, bad)
    with pytest.raises(OverflowError):
        dev.get_attr(IST, 0, Ist(bytearray(128), 1 << 64))


def test_ist_order_q6_and_t3():
    """Source check Q6/T-3 (vgic_v5_irs_restore_ists): trylock EBUSY, INIT EBUSY, has-run
    EBUSY, NULL EINVAL, EFAULT, buffers EINVAL, and only then "host LPI IST exists" EBUSY."""
    vm, dev = ready_vm()
    cpu = vm.vcpus[0].run_enter()
    assert errno_of(dev.set_attr, IST, 0, None) == errno.EBUSY  # a vCPU is inside run()
    assert errno_of(dev.get_attr, IST, 0, None) == errno.EBUSY
    assert errno_of(dev.get_attr, IST, 1, None) == errno.ENXIO  # attr first
    vm.vcpus[0].run_exit()
    del cpu
    assert errno_of(dev.set_attr, IST, 0, None) == errno.EBUSY  # has run, before NULL
    assert errno_of(dev.get_attr, IST, 0, None) == errno.EINVAL
    # a restore that leaves a host LPI IST behind, then the T-3 order
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_CFGR, u64(14))
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    desc, buf = spi_ist()
    lbuf = bytearray(4 << 14)
    desc.lpi_ist, desc.lpi_ist_size = lbuf, len(lbuf)
    dev.set_attr(IST, 0, desc)
    assert errno_of(dev.set_attr, IST, 0, None) == errno.EINVAL
    assert errno_of(dev.set_attr, IST, 0, bytearray(31)) == errno.EFAULT
    assert errno_of(dev.set_attr, IST, 0, Ist(buf, 4, lbuf, len(lbuf))) == errno.EINVAL
    assert errno_of(dev.set_attr, IST, 0, Ist(buf, 128, lbuf, 4)) == errno.EINVAL
    assert errno_of(dev.set_attr, IST, 0, desc) == errno.EBUSY
    # the CFGR becomes invalid while BASER is valid: the LPI helper's EINVAL (T-6)
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    assert errno_of(dev.get_attr, IST, 0, spi_ist()[0]) == errno.EINVAL
    assert errno_of(dev.set_attr, IST, 0, Ist(buf, 128, lbuf, len(lbuf))) == errno.EINVAL


def test_ist_save_raw_words():
    """T-8 / vgic_v5_save_linear_ist: one LE u32 ISTE per SPI (nr_spis of them), a fault
    stops the copy with the earlier words written; read-only on GET is EFAULT."""
    vm, dev = ready_vm()
    with vm.vcpus[0].run() as cpu:
        cpu.cdpri(spi(0), 0x08)
        cpu.cden(spi(1))
        cpu.cdaff(spi(31), 0x0102)
    vm.irq_line(line(2), 1)
    desc, buf = spi_ist()
    dev.get_attr(IST, 0, desc)
    words = le_words(buf)
    assert words[:3] == [prio(8), EN, P] and words[31] == aff(0x0102)
    assert buf[0:2] == bytearray((0x00, 0x40))  # little-endian
    short = bytearray(4 * 10)
    assert errno_of(dev.get_attr, IST, 0, Ist(short, 128)) == errno.EFAULT
    assert le_words(short) == words[:10]
    assert errno_of(dev.get_attr, IST, 0, Ist(bytes(128), 128)) == errno.EFAULT


def test_ist_restore_spi_entries():
    """T-9 / vgic_v5_restore_ist_entry: config from the raw HM, latch rules
    (vgic_v5_restore_spi_config), host word without PENDING and HWU, PENDING replayed with
    VDPEND inside the SET (vgic_v5_restore_pending_irqs)."""
    vm, dev = ready_vm()
    first = [0] * 32
    first[6] = HM
    dev.set_attr(IST, 0, Ist(le_buf(first), 128))  # SPI 6 becomes LEVEL (a SET may repeat)
    assert vm.spi_level_config(6)
    vm.irq_line(line(4), 1)  # EDGE latch 1, to be cleared by the restore
    vm.irq_line(line(6), 1)  # LEVEL line 1: line_level stays through the restore
    assert vm.spi_iste(6) == P | HM
    image = [0] * 32
    image[1] = P | HM | EN | prio(0x10) | HWU
    image[2] = P | EN | prio(0x08) | aff(3)
    image[3] = HM | A | IRM
    image[6] = HM
    desc = Ist(le_buf(image), 128)
    dev.set_attr(IST, 0, desc)
    assert vm.spi_iste(1) == P | HM | EN | prio(0x10)
    assert vm.spi_iste(2) == P | EN | prio(0x08) | aff(3)
    assert vm.spi_iste(3) == HM | A | IRM
    assert vm.spi_iste(4) == 0
    assert vm.spi_level_config(1) and not vm.spi_level_config(2) and vm.spi_level_config(3)
    assert vm.spi_state(1) == (False, True)
    assert vm.spi_state(2) == (False, True)
    assert vm.spi_state(3) == (False, False)
    assert vm.spi_state(4) == (False, False)
    assert vm.spi_state(6) == (True, False) and vm.spi_pending(6)
    out = bytearray(128)
    dev.get_attr(IST, 0, Ist(out, 128))
    assert le_words(out)[1] == P | HM | EN | prio(0x10)  # HWU gone


def test_ist_restore_failure_discards_pending():
    """vgic_v5_irs_restore_ists out_unlock: an EFAULT mid-table keeps the entries already
    restored (without PENDING: vgic_v5_discard_pending_irqs), frees the LPI IST allocated for
    the SET (vgic_v5_restore_cleanup) and leaves lpi_ist_restore_pending set."""
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_CFGR, u64(14))
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    image = le_buf([P | EN | HM] * 4)  # 4 words of the 32 announced
    lbuf = bytearray(4 << 14)
    assert errno_of(dev.set_attr, IST, 0, Ist(image, 128, lbuf, len(lbuf))) == errno.EFAULT
    assert [vm.spi_iste(i) for i in range(5)] == [EN | HM] * 4 + [0]
    assert vm.spi_level_config(0) and vm.spi_state(0) == (False, True)
    # no host LPI IST: the full SET can allocate again
    dev.set_attr(IST, 0, Ist(bytearray(128), 128, lbuf, len(lbuf)))
    assert vm.spi_iste(0) == 0
    # an LPI-side fault frees the LPI IST too
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_CFGR, u64(14))
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    assert errno_of(dev.set_attr, IST, 0,
                    Ist(le_buf([P] * 32), 128, bytearray(16), 4 << 14)) == errno.EFAULT
    assert vm.spi_iste(0) == 0  # restored without PENDING, nothing replayed
    assert errno_of(vm.vcpus[0].run_enter) == errno.EINVAL  # restore still pending


def test_ist_lpi_words_round_trip():
    """T-10 (vgic_v5_restore_lpi_ist_alloc from BASER.VALID + valid CFGR), L-6: the LPI words
    are restored like SPI words (PENDING/HWU stripped, PENDING replayed) and saved back; no
    KVM-side LPI state."""
    vm, dev = ready_vm()
    dev.set_attr(REGS, IST_CFGR, u64(14))
    dev.set_attr(REGS, IST_BASER, u64(LPI_IST_GPA | BASER_VALID))
    lpis = [0] * (1 << 14)
    lpis[0] = P | EN | prio(8) | aff(1)
    lpis[1] = EN | prio(8) | aff(1) | HWU
    lpis[16383] = HM
    dev.set_attr(IST, 0, Ist(bytearray(128), 128, le_buf(lpis), 4 << 14))
    out = bytearray(4 << 14)
    dev.get_attr(IST, 0, Ist(bytearray(128), 128, out, 4 << 14))
    saved = le_words(out)
    assert saved[0] == P | EN | prio(8) | aff(1)
    assert saved[1] == EN | prio(8) | aff(1)
    assert saved[16383] == HM and sum(saved) == saved[0] + saved[1] + HM


def test_ist_save_restore_trace():
    """Spec 6.6 / test_vgic_v5_ist_save_restore (LPI delivery left out: the model never
    delivers an LPI; the LPI IST itself is programmed, saved and restored)."""
    src, sdev = ready_vm(nvcpus=2)
    with src.vcpus[0].run() as cpu:
        cpu.irs_write(CR0, 1)
        assert cpu.irs_read(CR0) == 0x3
        # gicv5_configure_lpi_ist: 14 LPI id bits, ISTSZ 0
        cpu.irs_write(IST_CFGR, 14)
        baser = LPI_IST_GPA | BASER_VALID
        cpu.irs_write(IST_BASER, baser, size=8)
        assert cpu.irs_read(IST_STATUSR) == 1
        cpu.irs_write(IST_BASER, baser ^ 0x40, size=8)
        assert cpu.irs_read(IST_BASER, size=8) == baser
        for intid, vpe, p, enable in ((lpi(0), 1, 0x08, True), (lpi(1), 1, 0x08, True),
                                      (spi(0), 0, 0x08, True), (spi(1), 0, 0x10, True),
                                      (spi(3), 0, 0x08, True), (spi(2), 0, 0x08, False)):
            cpu.cdpri(intid, p)
            cpu.cdaff(intid, vpe)
            if enable:
                cpu.cden(intid)
        cpu.cdpend(lpi(0), 1)
    for n in (0, 1, 2):
        src.irq_line(line(n), 1)
    regs = {off: get_reg(sdev, off) for off in IRS_REGS_52}
    assert regs[IST_CFGR] == 14 and regs[IST_BASER] == baser and regs[CR0] == 0x3
    spi_img = bytearray(128)
    lpi_img = bytearray(4 << 14)
    assert errno_of(sdev.get_attr, IST, 0, Ist(spi_img, 128)) == errno.EINVAL
    assert errno_of(sdev.get_attr, IST, 0,
                    Ist(spi_img, 128, lpi_img, len(lpi_img) - 4)) == errno.EINVAL
    sdev.get_attr(IST, 0, Ist(spi_img, 128, lpi_img, len(lpi_img)))
    assert le_words(spi_img)[:4] == [P | EN | prio(8), P | EN | prio(0x10), P | prio(8),
                                     EN | prio(8)]
    assert not any(lpi_img)  # CD* on LPIs do nothing in the model

    dst, ddev = ready_vm(nvcpus=2)
    full = Ist(spi_img, 128, lpi_img, len(lpi_img))
    assert errno_of(ddev.set_attr, IST, 0, full) == errno.EINVAL  # before the IRS state
    for off, value in regs.items():
        ddev.set_attr(REGS, off, u64(value))
    ddev.set_attr(REGS, IST_BASER, u64(baser ^ 0x40))  # not yet allocated: accepted
    ddev.set_attr(REGS, IST_BASER, u64(baser & ~BASER_VALID))
    ddev.set_attr(REGS, IST_BASER, u64(baser))
    assert errno_of(ddev.set_attr, IST, 0, Ist(spi_img, 128)) == errno.EINVAL
    assert errno_of(ddev.set_attr, IST, 0,
                    Ist(spi_img, 128, lpi_img, len(lpi_img) - 4)) == errno.EINVAL
    ddev.set_attr(IST, 0, full)
    ddev.set_attr(REGS, IST_BASER, u64(baser))
    assert errno_of(ddev.set_attr, REGS, IST_BASER, u64(baser ^ 0x40)) == errno.EINVAL
    assert errno_of(ddev.set_attr, REGS, IST_BASER, u64(baser & ~1)) == errno.EINVAL
    ddev.set_attr(REGS, IST_CFGR, u64(14))
    assert errno_of(ddev.set_attr, REGS, IST_CFGR, u64(14 ^ 1)) == errno.EINVAL
    spi_re, lpi_re = bytearray(128), bytearray(len(lpi_img))
    ddev.get_attr(IST, 0, Ist(spi_re, 128, lpi_re, len(lpi_re)))
    assert spi_re == spi_img and lpi_re == lpi_img
    assert dst.irs_enabled is True  # from the restored IRS_CR0
    for n in (0, 1, 2):
        assert dst.spi_state(n) == (False, True)

    v0, v1 = dst.vcpus
    with v0.run() as cpu:
        cpu_on(cpu, pcr=0x08)
        assert v0.contextr == ref.CONTEXTR_V
    with v1.run() as cpu:
        cpu_on(cpu)
    with v0.run() as cpu:
        assert cpu.cdia() == spi(0)
        cpu.cddi(spi(0))
        cpu.cdeoi()
        assert cpu.cdia() is None  # SPI 1's 0x10 is above PCR 0x08
        cpu.write_pcr(0x10)
        assert cpu.cdia() == spi(1)
        cpu.cddi(spi(1))
        cpu.cdeoi()
        cpu.cden(spi(2))
        assert cpu.cdia() == spi(2)
        cpu.cddi(spi(2))
        cpu.cdeoi()
        assert cpu.cdia() is None
    dst.irq_line(line(3), 1)
    with v0.run() as cpu:
        assert cpu.wfi() is True
        assert cpu.cdia() == spi(3)
