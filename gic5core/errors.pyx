# Errors of the model: the -errno -> OSError choke point and the guest's UNDEF.
#
# Rules this file keeps:
# - check() is the only constructor of OSError in the project; Python picks the subclass
#   from the errno (EEXIST -> FileExistsError), exactly as fcntl.ioctl on /dev/kvm does.
# - UndefinedInstruction is what a guest instruction raises when the VM has no GICv5 device
#   (the guest would take an UNDEF exception).

"""The core's errors: check(rc), the only place a core -errno becomes OSError (the
subclass chosen by errno, as fcntl.ioctl does), and UndefinedInstruction, what a guest GICv5
instruction raises on a VM without the device.
"""

import os


class UndefinedInstruction(Exception):
    """A guest GICv5 system instruction with no GICv5 CPU interface behind it (UNDEF)."""


cpdef int check(int rc) except -1:
    """check(rc) -> rc: raise OSError(-rc, strerror) when rc is negative.

    >>> check(0)
    0
    >>> import errno
    >>> try:
    ...     check(-errno.EEXIST)
    ... except FileExistsError as e:
    ...     print(e.errno == errno.EEXIST)
    True
    """
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc
