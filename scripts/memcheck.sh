#!/usr/bin/env bash
# Run gic5's tests under valgrind memcheck and count the errors that involve gic5's own code.
#
# Usage:   scripts/memcheck.sh [pytest arguments]      (default: the subset in DEFAULT_TESTS)
#          MEMCHECK_VALGRIND_ARGS adds valgrind options (CI passes --fair-sched=yes for the
#          threaded accounting test, which runs in a process of its own).
# Python:  $PYTHON (default: python3) must import the gic5 under test; the checked build
#          (GIC5_CHECKED=1 pip install ., -O0 -g) gives exact line numbers in the report.
# Output:  the valgrind log and XML in $MEMCHECK_OUT (default: a new temporary directory), and
#          a summary on stdout. Exit status 0 only when the tests pass and no valgrind error
#          (invalid read/write, use of uninitialised memory, bad free, definite leak) has a
#          gic5core frame anywhere in its stack.
#
# Rules this script keeps:
# - PYTHONMALLOC=malloc, so every Python object is a malloc block valgrind can see (pymalloc's
#   arenas would hide overruns and report false uninitialised reads).
# - No suppression file: CPython and numpy report errors of their own under valgrind (e.g.
#   "conditional jump depends on uninitialised value" in longobject.c's maybe_small_long),
#   and a suppression broad enough to silence them would also silence gic5 handing CPython
#   uninitialised memory. Instead every error is classified by its stack: an error with a
#   frame in gic5core (the extension objects or their .pyx/.c sources) is gic5's, the rest is
#   reported as a count. Leaks count only when "definitely lost" (--errors-for-leak-kinds).
# - An error inside a cyclic-GC pass counts only the frames above the collector's entry: the
#   collector runs inside whatever allocation triggered it (a traceback gic5 raises, say) and
#   walks the whole heap, so the frames below it only say who happened to allocate.
# - Child processes are not traced (tests that run a subprocess check crashes there).
# - The default subset covers every compiled entry point (irq_line, irq_line_batch, the
#   attributes, run/flush/fold, every CpuIf method, storm_run, bare_inject_loop, threads) and
#   takes about 10 minutes on a 2-core machine. The threaded accounting test
#   (test_sw_ppi_accounting_under_threads) is not in it: valgrind runs one thread at a time,
#   and inside a large process its many thread handoffs take many minutes; alone, with
#   --fair-sched=yes, it takes about 30 s (docs/stress.md), so CI runs it that way.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
OUT=${MEMCHECK_OUT:-$(mktemp -d /tmp/gic5-memcheck.XXXXXX)}
mkdir -p "$OUT"

DEFAULT_TESTS=(
    tests/test_irq_line.py tests/test_device.py tests/test_vcpu_attrs.py tests/test_run.py
    tests/test_cpuif.py tests/test_batch.py tests/test_storm.py tests/test_limits.py
    tests/test_fuzz.py tests/test_profile_74.py tests/test_migration.py tests/test_irs_spi.py
    "tests/test_concurrency_lifetimes.py::test_vm_in_use_survives_being_dropped_elsewhere"
    "tests/test_concurrency_lifetimes.py::test_vcpu_and_cpuif_keep_their_vm_alive"
    "tests/test_concurrency_errnos.py::test_errnos_have_a_serial_order"
)
if [ $# -eq 0 ]; then
    set -- "${DEFAULT_TESTS[@]}"
    # The fuzz suite's size under valgrind (each example costs ~50x more).
    export GIC5_FUZZ_EXAMPLES=${GIC5_FUZZ_EXAMPLES:-25}
fi

command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed" >&2; exit 2; }
# Run from the output directory: 'python -m' puts the current directory first on sys.path,
# and in the source tree that would be the uncompiled gic5core. Test paths become absolute.
ARGS=()
for a in "$@"; do
    if [ -e "$ROOT/${a%%::*}" ]; then ARGS+=("$ROOT/$a"); else ARGS+=("$a"); fi
done
cd "$OUT"
"$PYTHON" -c "import gic5core, gic5; print('memcheck: gic5core from', gic5core.__file__)"

set +e
# shellcheck disable=SC2086
PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full ${MEMCHECK_VALGRIND_ARGS:-} \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=40 \
    --xml=yes --xml-file="$OUT/memcheck.%p.xml" --log-file="$OUT/memcheck.%p.log" \
    "$PYTHON" -m pytest -q -p no:randomly -p no:cacheprovider --rootdir "$ROOT" \
    -c "$ROOT/pyproject.toml" "${ARGS[@]}" 2>&1 | tee "$OUT/pytest.log"
TESTS=${PIPESTATUS[0]}
set -e

set +e
"$PYTHON" - "$OUT"/memcheck.*.xml <<'EOF'
import collections, re, sys, xml.etree.ElementTree as ET

# One XML file per process (%p); a child forked by a test (to exec a helper) inherits the
# parent's file and writes into it until it execs, so the documents interleave: take each
# <error> element on its own (valgrind writes one in a single piece).
def errors(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for block in re.findall(r"<error>.*?</error>", text, re.S):
        yield ET.fromstring(block)


# A cyclic-GC pass may start inside any allocation, gic5's included, and then traverses every
# tracked container of the interpreter: what it trips over is not the allocating caller's. So
# the frames that count are those above the collector's entry (gc_collect_main), if any.
GC_ENTRY = "gc_collect_main"
ours, others, total = [], collections.Counter(), 0
gc_passes = 0
for path in sys.argv[1:]:
    for err in errors(path):
        total += 1
        kind = err.findtext("kind")
        frames = err.findall("./stack/frame")
        fns = [f.findtext("fn") for f in frames]
        if GC_ENTRY in fns:
            frames = frames[:fns.index(GC_ENTRY)]
            gc_passes += 1
        where = [" ".join(filter(None, (f.findtext("obj"), f.findtext("dir"), f.findtext("file"))))
                 for f in frames]
        if any("gic5core" in w for w in where):
            top = frames[0]
            ours.append(f"{kind} at {top.findtext('fn')} ({top.findtext('file')}:"
                        f"{top.findtext('line')}) [{path}]")
        else:
            others[kind] += 1
print(f"memcheck: {total} valgrind error contexts in {len(sys.argv) - 1} process(es); "
      f"{len(ours)} with a gic5core frame; {total - len(ours)} only in CPython/numpy/libc "
      f"{dict(sorted(others.items()))}; {gc_passes} inside a cyclic-GC pass")
for line, n in collections.Counter(ours).most_common(40):
    print(f"  gic5: {line}" + (f" (x{n})" if n > 1 else ""))
sys.exit(1 if ours else 0)
EOF
OURS=$?
set -e
echo "memcheck: pytest exit status $TESTS; files in $OUT"
[ "$TESTS" -eq 0 ] && [ "$OURS" -eq 0 ]
