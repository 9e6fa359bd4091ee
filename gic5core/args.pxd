# Argument checks for the compiled entry points that Python calls directly.
#
# Rule: Cython converts a float to a C integer argument without complaint, so every public
# compiled method taking integers receives them as objects and passes them through need_int
# first: TypeError for anything that is not an integer in Python's own sense (an int, a bool,
# a numpy integer: whatever has __index__; never a float); range errors then come from the C
# conversion as OverflowError.

from cpython.long cimport PyLong_Check
from cpython.number cimport PyIndex_Check

cdef inline int need_int(object value, str name) except -1:
    if not PyLong_Check(value) and not PyIndex_Check(value):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return 0
