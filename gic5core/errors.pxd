# The one place where a core return code becomes a Python exception.
#
# Rules: core functions return 0 (or a non-negative value) on success and -errno on failure;
# `check_rc` raises OSError(errno, strerror) for a negative code and returns the code otherwise;
# `check` (Python) validates its argument and calls it.
# Nothing else in gic5core or gic5 constructs an OSError.

cdef int check_rc(int rc) except -1  # the C entry: core callers pass their own int codes
