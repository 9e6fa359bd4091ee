"""What every test needs to give a 7.4 VM before its first KVM_RUN: the IRS base address.

Rule kept: built through gic5's public API only; nothing here computes an expected result.
"""

from __future__ import annotations

import struct

import gic5
import gic5core
from gic5 import uapi

__all__ = ["IRS_GPA", "IRS_PROFILES", "set_irs_base", "needs_irs"]

# The selftest's GICV5_IRS_CONFIG_BASE_GPA.
IRS_GPA = 0x8000000
# Profiles whose V5 device has the IRS-era UAPI (the irs_uapi switch): their first KVM_RUN
# fails ENXIO without an IRS base.
IRS_PROFILES = tuple(p for p in gic5.PROFILES if gic5core.PROFILE_DATA[p]["irs_uapi"])


def needs_irs(profile: str) -> bool:
    return profile in IRS_PROFILES


def set_irs_base(dev, base: int = IRS_GPA) -> None:
    """GRP_ADDR / KVM_VGIC_V5_ADDR_TYPE_IRS := base, as a 7.4 VMM does before the first run;
    a no-op on a profile without the IRS UAPI."""
    if dev.vm.profile in IRS_PROFILES:
        assert dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_ADDR, uapi.KVM_VGIC_V5_ADDR_TYPE_IRS,
                            struct.pack("=Q", base)) is None
