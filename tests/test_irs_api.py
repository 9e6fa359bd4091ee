"""gic5's own surface around the 7.4 virtual IRS: argument rules, the policy switches, the
kvm_vgic_v5_ist descriptor.

Rules kept: Python misuse of the new entry points (CpuIf.cd*, irs_read / irs_write, the IST
descriptor, Host's IRS inputs) is a TypeError or ValueError raised before anything changes;
each policy switch of gic5core.IRS_POLICY is shown doing what docs/profiles.md says, against
its default (which the kernel-value tests in tests/test_irs_spi.py assert); the kernel's own
answers are tests/test_irs_spi.py's.
"""

from __future__ import annotations

import errno
import sys

import pytest

import gic5
import gic5core
from gic5 import uapi

IRS_GPA = 0x8000000
REGS, IST = uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS, uapi.KVM_DEV_ARM_VGIC_GRP_IST


def vm74(nr_spis=32, ids=(0,), **host):
    vm = gic5.Kvm(gic5.Host(**host), profile="7.4").create_vm()
    vcpus = [vm.create_vcpu(i) for i in ids]
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                 IRS_GPA.to_bytes(8, sys.byteorder))
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, nr_spis.to_bytes(4, sys.byteorder))
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    return vm, dev, vcpus


def program(cpu, vcpu_id, spis, prio=0x10):
    """The 7.4 selftest guest's set-up (guest_spi_line_code): IRS on, EN, PCR, each SPI's
    priority, target and enable."""
    cpu.irs_write(uapi.GICV5_IRS_CR0, 1)
    cpu.write_cr0(True)
    cpu.write_pcr(31)
    for n in spis:
        cpu.cdpri(uapi.spi_intid(n), prio)
        cpu.cdaff(uapi.spi_intid(n), vcpu_id)
        cpu.cden(uapi.spi_intid(n))


def spi_word(n):
    return uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_SPI, 0, n)


@pytest.mark.parametrize("call,exc", [
    (lambda c: c.cdpri("0x60000000", 1), TypeError),
    (lambda c: c.cdpri(0x60000000, 32), ValueError),
    (lambda c: c.cdpri(0x60000000, -1), ValueError),
    (lambda c: c.cdpri(1 << 32, 1), ValueError),
    (lambda c: c.cdpri(-1, 1), ValueError),
    (lambda c: c.cdaff(0x60000000, 0x10000), ValueError),
    (lambda c: c.cdaff(0x60000000, 1.0), TypeError),
    (lambda c: c.cdaff(0x60000000, 0, irm=2), ValueError),
    (lambda c: c.cden(None), TypeError),
    (lambda c: c.cdpend(0x60000000, "yes"), TypeError),
    (lambda c: c.cdhm(0x60000000, None), TypeError),
    (lambda c: c.cdrcfg(2.5), TypeError),
    (lambda c: c.irs_read(-4), ValueError),
    (lambda c: c.irs_read(0x1FFFC, 8), ValueError),
    (lambda c: c.irs_read(0x20000), ValueError),
    (lambda c: c.irs_read(0x80, 3), ValueError),
    (lambda c: c.irs_read("0x80"), TypeError),
    (lambda c: c.irs_write(0x80, 1 << 32), ValueError),
    (lambda c: c.irs_write(0x80, -1), ValueError),
    (lambda c: c.irs_write(0x80, 1, size=16), ValueError),
    (lambda c: c.irs_write(0x80, 1.0), TypeError),
])
def test_guest_misuse_changes_nothing(call, exc):
    """Python misuse of the guest's IRS calls is refused before the instruction runs: the
    virtual IST, the IRS registers and the guest's ICSR stay as they were."""
    vm, dev, (v,) = vm74()
    with v.run() as cpu:
        program(cpu, 0, [0])
        before = ([vm.spi_iste(n) for n in range(32)], vm.irs_enabled, cpu.read_icsr(),
                  cpu.irs_read(uapi.GICV5_IRS_SPI_SELR))
        with pytest.raises(exc):
            call(cpu)
        after = ([vm.spi_iste(n) for n in range(32)], vm.irs_enabled, cpu.read_icsr(),
                 cpu.irs_read(uapi.GICV5_IRS_SPI_SELR))
    assert after == before


def test_no_irs_region_off_74_or_without_a_device():
    """A guest access to the IRS address with no IRS iodev is not KVM's (KVM_EXIT_MMIO to the
    VMM): RuntimeError on the PPI-only profiles and on a 7.4 VM without the V5 device; the
    CD* instructions there change nothing and CDRCFG reports F (no IRS reaches the id)."""
    vm = gic5.Kvm(profile="final").create_vm()
    v = vm.create_vcpu(0)
    dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    assert dev is not None
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    with v.run() as cpu:
        with pytest.raises(RuntimeError, match="KVM_EXIT_MMIO"):
            cpu.irs_read(uapi.GICV5_IRS_CR0)
        cpu.cden(uapi.spi_intid(0))
        cpu.cdrcfg(uapi.spi_intid(0))
        assert cpu.read_icsr() == 1 and cpu.cdia() is None
    vm = gic5.Kvm(profile="7.4").create_vm()
    v = vm.create_vcpu(0)
    with v.run() as cpu:
        with pytest.raises(RuntimeError, match="no V5 device"):
            cpu.irs_write(uapi.GICV5_IRS_CR0, 1)


def test_host_irs_inputs_and_policy_are_checked():
    """gic5.Host's IRS register inputs and policy: ranges (ValueError), types (TypeError),
    unknown policy names (ValueError), before any VM exists."""
    for kw in ({"irs_pri_bits": 0}, {"irs_pri_bits": 6}, {"ist_id_bits": 13},
               {"ist_id_bits": 25}, {"min_lpi_id_bits": 9}, {"min_lpi_id_bits": 16},
               {"ist_id_bits": 14, "min_lpi_id_bits": 15}, {"pa_range": 8},
               {"irs_policy": {"bogus": True}}):
        with pytest.raises(ValueError):
            gic5.Host(**kw)
    for kw in ({"irs_pri_bits": "5"}, {"irs_policy": ["ppi_wins_irs_tie"]},
               {"irs_policy": {"ppi_wins_irs_tie": 1}}):
        with pytest.raises(TypeError):
            gic5.Host(**kw)
    h = gic5.Host(irs_pri_bits=4, irs_policy={"spi_ids_pow2": False})
    assert (h.irs_pri_bits, h.irs_policy) == (4, {"spi_ids_pow2": False})
    assert set(gic5core.IRS_POLICY) == {"ppi_wins_irs_tie", "irs_tie_lowest_id",
                                        "vdpend_updates_hm", "db_fires_if_pending",
                                        "spi_ids_pow2"}


def test_ist_descriptor_forms():
    """KVM_DEV_ARM_VGIC_GRP_IST's addr: NULL (None, 0, False) is EINVAL; a buffer shorter than
    struct kvm_vgic_v5_ist (32 bytes) cannot be copied (EFAULT); a raw struct with a non-zero
    address is a TypeError (gic5 never dereferences one); one with zero addresses is NULL
    buffers (EINVAL); anything else a TypeError; a kvm_vgic_v5_ist round-trips the SPI IST."""
    vm, dev, _ = vm74()
    for null in (None, 0, False):
        with pytest.raises(OSError) as info:
            dev.get_attr(IST, 0, null)
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        dev.get_attr(IST, 0, bytearray(31))
    assert info.value.errno == errno.EFAULT
    with pytest.raises(TypeError, match="raw address"):
        dev.set_attr(IST, 0, (0x1000).to_bytes(8, sys.byteorder) + bytes(24))
    with pytest.raises(OSError) as info:
        dev.set_attr(IST, 0, bytes(32))
    assert info.value.errno == errno.EINVAL
    for bad in (0x1000, "spi", 1.5, [bytearray(128)]):
        with pytest.raises(TypeError):
            dev.get_attr(IST, 0, bad)
    with pytest.raises(OverflowError):
        dev.get_attr(IST, 0, uapi.kvm_vgic_v5_ist(bytearray(128), -1))
    image = bytearray((1 | 8 | 0x10 << 11).to_bytes(4, "little") * 32)
    dev.set_attr(IST, 0, uapi.kvm_vgic_v5_ist(image))
    assert vm.spi_iste(5) == 1 | 8 | 0x10 << 11  # restored, then PENDING replayed by VDPEND
    out = bytearray(128)
    dev.get_attr(IST, 0, uapi.kvm_vgic_v5_ist(out))
    assert out == image


def test_policy_ppi_vs_irs_tie():
    """ppi_wins_irs_tie: a PPI and an SPI at the same priority. Default (QEMU gic_hppi): the
    PPI is acknowledged first; False: the SPI."""
    for wins, first in ((True, 0x20000003), (False, 0x60000000)):
        vm, _, (v,) = vm74(irs_policy={"ppi_wins_irs_tie": wins})
        with v.run() as cpu:
            program(cpu, 0, [0], prio=8)
            cpu.write_ppi_priority(3, 8)
            cpu.write_ppi_enabler(0, 1 << 3)
        vm.irq_line(spi_word(0), 1)
        vm.irq_line(uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, 3), 1)
        with v.run() as cpu:
            assert cpu.cdia() == first


def test_policy_irs_tie():
    """irs_tie_lowest_id: two SPIs at one priority. Default (QEMU irs_recalc_hppi): the lower
    id first; False: the higher."""
    for lowest, first in ((True, 0x60000002), (False, 0x60000009)):
        vm, _, (v,) = vm74(irs_policy={"irs_tie_lowest_id": lowest})
        with v.run() as cpu:
            program(cpu, 0, [2, 9])
        vm.irq_line(spi_word(2), 1)
        vm.irq_line(spi_word(9), 1)
        with v.run() as cpu:
            assert cpu.cdia() == first


def test_policy_vdpend_updates_hm():
    """vdpend_updates_hm: default False (the VDPEND operand has no HM field): a LEVEL SPI's
    ISTE keeps HM edge; True: VDPEND copies KVM's LEVEL config into ISTE.HM."""
    for updates, hm in ((False, 0), (True, 4)):
        vm, _, (v,) = vm74(irs_policy={"vdpend_updates_hm": updates})
        with v.run() as cpu:
            cpu.irs_write(uapi.GICV5_IRS_SPI_SELR, 3)
            cpu.irs_write(uapi.GICV5_IRS_SPI_CFGR, 1)
        vm.irq_line(spi_word(3), 1)
        assert vm.spi_iste(3) & 4 == hm and vm.spi_iste(3) & 1


def test_policy_doorbell_for_an_already_pending_spi():
    """db_fires_if_pending: an SPI pending before the WFI put. Default True: the doorbell
    fires and the WFI wakes; False: no doorbell, and (no PPI pending) the WFI blocks."""
    for fires in (True, False):
        vm, _, (v,) = vm74(irs_policy={"db_fires_if_pending": fires})
        with v.run() as cpu:
            program(cpu, 0, [1])
            cpu.write_pcr(0)  # masked for delivery; the doorbell mask follows PCR: DBPM 0
            cpu.cdpri(uapi.spi_intid(1), 0)
        vm.irq_line(spi_word(1), 1)
        with v.run() as cpu:
            assert cpu.wfi() is fires and v.db_fired is fires


def test_policy_spi_id_space():
    """spi_ids_pow2: 96 SPIs. Default: the SPI IST has 128 entries (2 ** spi_id_bits, what
    KVM gives the hardware), so CDEN reaches SPI 100; False: 96, and SPI 100 is out of reach
    (CDRCFG answers F)."""
    for pow2, entries in ((True, 128), (False, 96)):
        vm, _, (v,) = vm74(nr_spis=96, irs_policy={"spi_ids_pow2": pow2})
        assert vm.spi_ist_entries == entries
        with v.run() as cpu:
            cpu.cden(uapi.spi_intid(100))
            cpu.cdrcfg(uapi.spi_intid(100))
            assert cpu.read_icsr() == (2 if pow2 else 1)  # ENABLED, or F


def test_save_state_carries_the_irs():
    """save_state / restore_state (format 2): the 52 IRS_REGS offsets and the SPI IST go
    along; the destination's guest takes the pending SPI the source never delivered."""
    vm, _, (v, _) = vm74(ids=(0, 7))
    with v.run() as cpu:
        program(cpu, 0, [4, 5])
    vm.irq_line(spi_word(4), 1)
    state = gic5.save_state(vm)
    assert state["format"] == "gic5.vgic-v5-state/2"
    assert len(state["irs"]["regs"]) == 52 and state["irs"]["spi_ist"][4] & 1
    dst = gic5.Kvm(profile="7.4").create_vm()
    vcpus = gic5.restore_state(dst, state)
    assert dst.irs_enabled and [dst.spi_iste(n) for n in range(32)] == state["irs"]["spi_ist"]
    assert gic5.save_state(dst) == state
    with vcpus[0].run() as cpu:
        cpu.write_cr0(True)
        cpu.write_pcr(31)
        assert cpu.cdia() == 0x60000004 and cpu.cdia() is None
