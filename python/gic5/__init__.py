"""gic5: Linux KVM's GICv5 virtual interrupt device (vgic-v5), modelled bit for bit.

    >>> import gic5
    >>> from gic5 import uapi
    >>> vm = gic5.Kvm().create_vm()
    >>> vcpu = vm.create_vcpu(0)
    >>> dev = vm.create_device(uapi.KVM_DEV_TYPE_ARM_VGIC_V5)
    >>> dev.set_attr(uapi.KVM_DEV_ARM_VGIC_GRP_CTRL, uapi.KVM_DEV_ARM_VGIC_CTRL_INIT)
    >>> [hex(w) for w in vm.userspace_ppis()]
    ['0x8', '0x0']
    >>> vm.irq_line(uapi.irq_word(uapi.KVM_ARM_IRQ_TYPE_PPI, 0, uapi.GICV5_ARCH_PPI_SW_PPI), 1)
    >>> [hex(w) for w in vcpu.pending_ppis()]
    ['0x8', '0x0']

Rules: the public names here are a contract (see docs/); everything kernel-shaped raises
OSError with the kernel's errno, produced by the core's single ``check``.
"""

from gic5core import CpuIf, UndefinedInstruction, check

from . import kvmdev, uapi
from .kvm import PROFILES, Device, Host, Kvm, Vcpu, Vm
from .kvmdev import BACKENDS
from .migration import restore_state, save_state

try:
    from ._version import __version__
except ImportError:  # a tree that was never built by setuptools-scm
    __version__ = "0.0.0+unknown"

__all__ = ["Kvm", "Host", "Vm", "Vcpu", "Device", "CpuIf", "PROFILES", "BACKENDS",
           "UndefinedInstruction", "check", "uapi", "kvmdev", "save_state", "restore_state",
           "__version__"]
