#!/usr/bin/env bash
# Build gic5 with AddressSanitizer (checked build, -O0 -g) in a scratch copy and venv, and run
# the test suite against it.
#
# Usage:   scripts/asan.sh [pytest arguments]        (default: the whole suite)
# Scratch: $ASAN_WORK (default: a new temporary directory, removed at the end).
# Exit status: pytest's. Any AddressSanitizer report in gic5 (heap/stack/global overflow,
#          use after free, double free) aborts the Python process in the middle of the
#          test run, so it shows as a crashed run or a failed subprocess test.
#
# Rules this script keeps:
# - Never builds in the source tree (generated .c files and .so would clobber a developer's
#   editable build): the tree is copied without build products first.
# - The sanitizer runtime is preloaded into the unsanitized python (LD_PRELOAD), with
#   libstdc++ too, so C++ extensions that throw (matplotlib's ft2font) keep working.
# - PYTHONMALLOC=malloc: Python objects become malloc blocks ASan can guard.
#   detect_leaks=0: CPython does not free everything at exit; leaks are memcheck.sh's job.
# - Runs from the copy's tests with the copy's pyproject (the same pytest configuration),
#   and every test that starts a subprocess inherits the sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${ASAN_WORK:-}
if [ -z "$WORK" ]; then
    WORK=$(mktemp -d /tmp/gic5-asan.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
ASAN_LIB=$(gcc -print-file-name=libasan.so)
STDCXX=$(gcc -print-file-name=libstdc++.so)
[ -e "$ASAN_LIB" ] || { echo "asan: gcc has no libasan ($ASAN_LIB)" >&2; exit 2; }

mkdir -p "$WORK/tree"
tar -C "$ROOT" --exclude=build --exclude='*.so' --exclude='*.c' --exclude=.git \
    --exclude=.hypothesis -cf - . | tar -C "$WORK/tree" -xf -
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
(cd "$WORK/tree" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer" \
    LDFLAGS="-fsanitize=address" GIC5_CHECKED=1 "$WORK/venv/bin/pip" install -q '.[test]')

cd "$WORK/tree"
LD_PRELOAD="$ASAN_LIB $STDCXX" ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc \
    "$WORK/venv/bin/pytest" -q -p no:randomly "$@"
