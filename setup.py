"""Build rules for gic5's compiled core (gic5core).

Rules this file keeps:
- Every extension is cythonized here, in the build; generated .c files never enter git.
- One set of compiler directives for all modules (COMPILER_DIRECTIVES); the checked build
  (GIC5_CHECKED=1) turns on boundscheck, wraparound and initializedcheck and compiles with
  -O0 -g, so the test suite can run against a build that traps out-of-range indexing.
- GIC5_ANNOTATE=1 writes Cython's annotated HTML next to each .pyx (never committed).
- Modules are listed in cimport order.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

CHECKED = os.environ.get("GIC5_CHECKED", "") not in ("", "0")

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": CHECKED,
    "wraparound": CHECKED,
    "initializedcheck": CHECKED,
    "cdivision": True,
    "embedsignature": True,
    "freethreading_compatible": False,
}

if CHECKED:
    CFLAGS = ["-O0", "-g", "-UNDEBUG"]
else:
    CFLAGS = ["-O3", "-fno-tree-slp-vectorize"]

# The storm loop inlines the model's entry, exit, CDIA and KVM_IRQ_LINE paths into one
# function; gcc's default growth limits stop inlining part way (guest_exit, irq_line_gated and
# the latency record stayed calls), so the storm's module raises them. With a copy of the loop
# per shape (storm.pyx) the old limits (single 1000, unit growth 1000) left `service` out of
# line in one copy, and the IPA-CP threshold lets gcc clone each copy on its constant pattern
# (callgrind, final edges: 333 -> 327 instructions per delivery; the mixes share one clone:
# storm.pyx, storm_loop).
STORM_CFLAGS = ["--param=large-function-growth=10000", "--param=max-inline-insns-single=30000",
                "--param=inline-unit-growth=10000", "--param=large-function-insns=100000",
                "--param=ipa-cp-eval-threshold=1"]

# cimport order: errors and profile have no gic5core dependencies; vm needs both;
# cpuif, baseline and storm need vm (storm re-exports baseline's names).
MODULES = ["errors", "profile", "vm", "cpuif", "baseline", "storm"]


def extension(name):
    return Extension(
        f"gic5core.{name}",
        [f"gic5core/{name}.pyx"],
        include_dirs=[np.get_include(), "gic5core"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("GIC5_CHECKED", "1" if CHECKED else "0")],
        extra_compile_args=CFLAGS + (STORM_CFLAGS if name == "storm" and not CHECKED else []),
    )


extensions = [extension(m) for m in MODULES if os.path.exists(f"gic5core/{m}.pyx")]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=COMPILER_DIRECTIVES,
        annotate=os.environ.get("GIC5_ANNOTATE", "") not in ("", "0"),
        # A checked build must never reuse an optimised build's C files, and vice versa.
        force=True,
    ),
)
