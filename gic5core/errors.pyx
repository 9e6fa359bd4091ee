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

from gic5core.args cimport need_int


class UndefinedInstruction(Exception):
    """A guest GICv5 system instruction with no GICv5 CPU interface behind it (UNDEF)."""


cdef enum:
    MAX_ERRNO = 4095  # include/linux/err.h: -1..-4095 are error codes


cdef int check_rc(int rc) except -1:
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc


def check(rc):
    """check(rc) -> rc: raise OSError(-rc, strerror) when rc is negative.

    ``rc`` is a kernel-style return code, a C int: 0 or more for success, -1..-4095 (-errno)
    for failure. A non-integer is a TypeError, an int outside a C int an OverflowError and a
    code below -4095 (not an errno) a ValueError.

    >>> check(0)
    0
    >>> import errno
    >>> try:
    ...     check(-errno.EEXIST)
    ... except FileExistsError as e:
    ...     print(e.errno == errno.EEXIST)
    True
    """
    need_int(rc, "rc")
    cdef int code = rc  # OverflowError outside a C int
    if code < -MAX_ERRNO:
        raise ValueError(f"{rc} is not a -errno code (-1..-{MAX_ERRNO})")
    return check_rc(code)
