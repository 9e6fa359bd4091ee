"""Save and restore a V5 VM's interrupt state through the UAPI, as a VMM migrates it (7.4).

``save_state(vm)`` reads everything a VMM saves of the V5 PPI state: the device attributes
(the IRS base address, NR_IRQS) and, per vCPU, every register of the CPU_SYSREGS table plus
the vCPU attributes that name its PPIs (the timer and PMU interrupt numbers).
``restore_state(vm, state)`` replays it on a fresh VM in the kernel's documented restore
order (Documentation/virt/kvm/devices/arm-vgic-v5.rst, 7.4) and returns the vCPUs it created.

Rules this module keeps:
- It works through the public calls only (create_vcpu / create_device / has_attr / get_attr /
  set_attr), on either backend, so it doubles as a worked example of the save/restore
  sequence; every kernel refusal comes out as that call's OSError, nothing is caught.
- The state is plain data (ints, bools, strs, lists and dicts: JSON-serialisable), with the
  register names of ``uapi.CPU_SYSREGS_74`` as keys; ``save_state`` of a restored VM equals
  the state it was restored from.
- Restore order: the vCPUs in the saved creation order (IAFFID is the vCPU id and KVM's
  per-vCPU doorbells follow the creation index, so ids and order both matter), the V5
  device, ADDR (IRS base), NR_IRQS, each vCPU's timer / PMU interrupt numbers, CTRL_INIT,
  each PMU vCPU's PMU_V3_INIT (which needs CTRL_INIT on V5), then the CPU_SYSREGS of every
  vCPU. No vCPU may have run before the registers are written (the kernel refuses with
  EBUSY), and the registers need CTRL_INIT first (EBUSY too).
- The IRS part (once an IRS base is set): every CONFIG_FRAME offset of
  ``uapi.GICV5_IRS_REGS_UAPI`` through KVM_DEV_ARM_VGIC_GRP_IRS_REGS, and the ISTs through
  KVM_DEV_ARM_VGIC_GRP_IST (the SPI IST, one ISTE per SPI; the LPI IST when the saved
  IST_BASER and IST_CFGR describe one). Restore writes the IRS registers after the
  CPU_SYSREGS (IDR*, IST_CFGR and IST_BASER before the IST, as the documentation asks), the
  *_STATUSR included (the kernel ignores them), then the ISTs, which replays each pending
  interrupt; after that the VM may run.
- What the UAPI does not carry is not in the state: the timers' and the PMU's output lines
  belong to their own save/restore (the timer registers through KVM_{GET,SET}_ONE_REG); the
  VMM re-drives them on the destination, and so it re-drives its device lines (KVM's SPI
  line levels are not saved: a LEVEL SPI's pending state comes back through the IST).
- Format 1 (issue 14's, no IRS part) is still restored; save_state writes format 2.
"""

from __future__ import annotations

import errno
from typing import Any

import numpy as np

from . import uapi

__all__ = ["save_state", "restore_state", "STATE_FORMAT"]

# The layout of the dict save_state returns; restore_state refuses any other but format 1.
STATE_FORMAT = "gic5.vgic-v5-state/2"
_FORMAT_1 = "gic5.vgic-v5-state/1"  # no "irs" part

_TIMER_ATTRS = {"vtimer": uapi.KVM_ARM_VCPU_TIMER_IRQ_VTIMER,
                "ptimer": uapi.KVM_ARM_VCPU_TIMER_IRQ_PTIMER}


def _get_u64(obj: Any, group: int, attr: int) -> int:
    buf = np.zeros(1, dtype=np.uint64)
    obj.get_attr(group, attr, buf)
    return int(buf[0])


def _get_u32(obj: Any, group: int, attr: int) -> int:
    buf = np.zeros(1, dtype=np.uint32)
    obj.get_attr(group, attr, buf)
    return int(buf[0])


def _set_u64(obj: Any, group: int, attr: int, value: int) -> None:
    obj.set_attr(group, attr, np.array([value], dtype=np.uint64))


def _set_u32(obj: Any, group: int, attr: int, value: int) -> None:
    obj.set_attr(group, attr, np.array([value], dtype=np.uint32))


def save_state(vm: Any) -> dict[str, Any]:
    """The V5 VM's saved interrupt state, read through the UAPI (see the module docstring).

    Needs the V5 device and CTRL_INIT (CPU_SYSREGS answers EBUSY before it) and no vCPU
    inside run() (EBUSY: KVM locks every vCPU for the register reads). A VM without a device
    is a ValueError.
    """
    dev = vm.device
    if dev is None:
        raise ValueError("save_state needs a VM with the V5 VGIC device (KVM_CREATE_DEVICE)")
    state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "device": {
            "irs_base": _get_u64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_ADDR,
                                 uapi.KVM_VGIC_V5_ADDR_TYPE_IRS),
            "nr_irqs": _get_u32(dev, uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0),
        },
        "vcpus": [],
    }
    for vcpu in vm.vcpus:  # creation order
        timers = {name: _get_u32(vcpu, uapi.KVM_ARM_VCPU_TIMER_CTRL, attr)
                  for name, attr in _TIMER_ATTRS.items()}
        pmu_irq = None
        if vcpu.pmu:
            try:
                pmu_irq = _get_u32(vcpu, uapi.KVM_ARM_VCPU_PMU_V3_CTRL,
                                   uapi.KVM_ARM_VCPU_PMU_V3_IRQ)
            except OSError as exc:  # never set (a PMU vCPU without PMU_V3_INIT yet)
                if exc.errno != errno.ENXIO:
                    raise
        sysregs = {name: _get_u64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS,
                                  uapi.cpu_sysreg_attr(vcpu.vcpu_id, enc))
                   for name, enc in uapi.CPU_SYSREGS_74.items()}
        state["vcpus"].append({"vcpu_id": vcpu.vcpu_id, "el2": bool(vcpu.el2),
                               "pmu": bool(vcpu.pmu), "timer_irqs": timers,
                               "pmu_irq": pmu_irq, "sysregs": sysregs})
    state["irs"] = None
    if state["device"]["irs_base"] != uapi.VGIC_ADDR_UNDEF:
        state["irs"] = _save_irs(dev, state["device"]["nr_irqs"])
    return state


def _lpi_ist_words(regs: dict[str, int]) -> int:
    # The LPI IST the guest describes: IST_BASER.VALID and 2 ** IST_CFGR.LPI_ID_BITS entries
    # (vgic_v5_irs_lpi_ist_id_bits; an invalid CFGR makes the IST calls EINVAL).
    if not regs[f"{uapi.GICV5_IRS_IST_BASER:#x}"] & 1:
        return 0
    return 1 << (regs[f"{uapi.GICV5_IRS_IST_CFGR:#x}"] & 0x1F)


def _save_irs(dev: Any, nr_spis: int) -> dict[str, Any]:
    regs = {f"{off:#x}": _get_u64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS, off)
            for off in uapi.GICV5_IRS_REGS_UAPI}
    spi = np.zeros(nr_spis, dtype="<u4")
    n_lpi = _lpi_ist_words(regs)
    lpi = np.zeros(n_lpi, dtype="<u4") if n_lpi else None
    dev.get_attr(uapi.KVM_DEV_ARM_VGIC_GRP_IST, 0, uapi.kvm_vgic_v5_ist(spi, None, lpi, None))
    return {"regs": regs, "spi_ist": [int(w) for w in spi],
            "lpi_ist": None if lpi is None else [int(w) for w in lpi]}


def _is_uint(value: Any, bits: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << bits


def _check_state(state: Any) -> None:
    # Python misuse of restore_state: a state that save_state cannot have produced. Checked
    # whole before the first call, so a bad state changes nothing.
    if not isinstance(state, dict) or state.get("format") not in (STATE_FORMAT, _FORMAT_1):
        raise ValueError(f"not a saved V5 state (format {STATE_FORMAT!r} expected)")
    if state["format"] == STATE_FORMAT:
        _check_irs(state.get("irs", 0), state.get("device"))
    dev = state.get("device")
    if not isinstance(dev, dict) or set(dev) != {"irs_base", "nr_irqs"}:
        raise ValueError("state['device'] must hold exactly 'irs_base' and 'nr_irqs'")
    if not _is_uint(dev["irs_base"], 64) or not _is_uint(dev["nr_irqs"], 32):
        raise ValueError("state['device']: irs_base must be a u64 and nr_irqs a u32")
    vcpus = state.get("vcpus")
    if not isinstance(vcpus, list):
        raise ValueError("state['vcpus'] must be a list")
    ids = set()
    for i, v in enumerate(vcpus):
        if not isinstance(v, dict) or set(v) != {"vcpu_id", "el2", "pmu", "timer_irqs",
                                                  "pmu_irq", "sysregs"}:
            raise ValueError(f"state['vcpus'][{i}] is not a saved vCPU")
        if not _is_uint(v["vcpu_id"], 64) or v["vcpu_id"] in ids:
            raise ValueError(f"state['vcpus'][{i}]: vcpu_id {v['vcpu_id']!r} is not a new id")
        ids.add(v["vcpu_id"])
        if not isinstance(v["el2"], bool) or not isinstance(v["pmu"], bool):
            raise ValueError(f"state['vcpus'][{i}]: el2 and pmu must be bools")
        if not isinstance(v["sysregs"], dict) or set(v["sysregs"]) != set(uapi.CPU_SYSREGS_74) \
                or not all(_is_uint(x, 64) for x in v["sysregs"].values()):
            raise ValueError(f"state['vcpus'][{i}]['sysregs'] must map exactly the 7.4 "
                             "CPU_SYSREGS registers (uapi.CPU_SYSREGS_74) to u64 values")
        if not isinstance(v["timer_irqs"], dict) or set(v["timer_irqs"]) != set(_TIMER_ATTRS) \
                or not all(_is_uint(x, 32) for x in v["timer_irqs"].values()):
            raise ValueError(f"state['vcpus'][{i}]['timer_irqs'] must map vtimer and ptimer "
                             "to u32 values")
        if v["pmu_irq"] is not None and not _is_uint(v["pmu_irq"], 32):
            raise ValueError(f"state['vcpus'][{i}]['pmu_irq'] must be None or a u32")


def _check_irs(irs: Any, dev: Any) -> None:
    if irs is None:
        return
    if not isinstance(irs, dict) or set(irs) != {"regs", "spi_ist", "lpi_ist"}:
        raise ValueError("state['irs'] must be None or hold exactly 'regs', 'spi_ist' and "
                         "'lpi_ist'")
    names = {f"{off:#x}" for off in uapi.GICV5_IRS_REGS_UAPI}
    regs = irs["regs"]
    if not isinstance(regs, dict) or set(regs) != names \
            or not all(_is_uint(x, 64) for x in regs.values()):
        raise ValueError("state['irs']['regs'] must map exactly the offsets of "
                         "uapi.GICV5_IRS_REGS_UAPI (as hex strings) to u64 values")
    nr = dev.get("nr_irqs") if isinstance(dev, dict) else None
    spi = irs["spi_ist"]
    if not isinstance(spi, list) or not all(_is_uint(x, 32) for x in spi) \
            or (isinstance(nr, int) and nr and len(spi) != nr):
        raise ValueError("state['irs']['spi_ist'] must list one u32 ISTE per SPI (nr_irqs)")
    lpi = irs["lpi_ist"]
    if lpi is not None and (not isinstance(lpi, list)
                            or not all(_is_uint(x, 32) for x in lpi)):
        raise ValueError("state['irs']['lpi_ist'] must be None or a list of u32 ISTEs")


def restore_state(vm: Any, state: dict[str, Any]) -> list[Any]:
    """Replay ``state`` (from save_state) on the fresh VM ``vm``; the vCPUs it created, in
    vCPU-id order.

    ``vm`` must have no vCPU yet (ValueError otherwise); it may already have the V5 device
    (kvmtool creates it first), else it is created after the vCPUs. Each step is the public
    call the kernel answers; an OSError stops the restore where the kernel refused.
    """
    _check_state(state)
    if vm.vcpus:
        raise ValueError("restore_state needs a fresh VM: this one already has vCPUs")
    vcpus = [vm.create_vcpu(v["vcpu_id"], el2=v["el2"], pmu=v["pmu"])
             for v in state["vcpus"]]
    dev = vm.device if vm.device is not None else vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    saved_dev = state["device"]
    if saved_dev["irs_base"] != uapi.VGIC_ADDR_UNDEF:
        _set_u64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                 saved_dev["irs_base"])
    if saved_dev["nr_irqs"]:
        _set_u32(dev, uapi.KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, saved_dev["nr_irqs"])
    for vcpu, saved in zip(vcpus, state["vcpus"], strict=True):
        for name, attr in _TIMER_ATTRS.items():
            _set_u32(vcpu, uapi.KVM_ARM_VCPU_TIMER_CTRL, attr, saved["timer_irqs"][name])
        if saved["pmu_irq"] is not None:
            _set_u32(vcpu, uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_IRQ,
                     saved["pmu_irq"])
    dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    for vcpu, saved in zip(vcpus, state["vcpus"], strict=True):
        if saved["pmu_irq"] is not None:
            vcpu.set_attr(uapi.KVM_ARM_VCPU_PMU_V3_CTRL, uapi.KVM_ARM_VCPU_PMU_V3_INIT)
    for vcpu, saved in zip(vcpus, state["vcpus"], strict=True):
        for name, enc in uapi.CPU_SYSREGS_74.items():
            _set_u64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS,
                     uapi.cpu_sysreg_attr(vcpu.vcpu_id, enc), saved["sysregs"][name])
    irs = state.get("irs")
    if irs is not None:
        for off in uapi.GICV5_IRS_REGS_UAPI:
            _set_u64(dev, uapi.KVM_DEV_ARM_VGIC_GRP_IRS_REGS, off, irs["regs"][f"{off:#x}"])
        spi = np.array(irs["spi_ist"], dtype="<u4")
        lpi = None if irs["lpi_ist"] is None else np.array(irs["lpi_ist"], dtype="<u4")
        dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_IST, 0,
                     uapi.kvm_vgic_v5_ist(spi, None, lpi, None))
    return sorted(vcpus, key=lambda v: v.vcpu_id)
