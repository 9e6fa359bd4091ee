# The one place where a core return code becomes a Python exception.
#
# Rules: core functions return 0 (or a non-negative value) on success and -errno on failure;
# `check` raises OSError(errno, strerror) for a negative code and returns the code otherwise.
# Nothing else in gic5core or gic5 constructs an OSError.

cpdef int check(int rc) except -1
