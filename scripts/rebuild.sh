#!/usr/bin/env bash
# Rebuild the compiled core in place after editing a .pyx/.pxd, for a developer's editable
# install (pip install --no-build-isolation -e .), without reinstalling.
#
# Rules this script keeps:
# - The version setuptools-scm writes into python/gic5/_version.py stays the one the
#   installed metadata carries (SETUPTOOLS_SCM_PRETEND_VERSION): a plain in-place build would
#   write a new dirty version there, and gic5.__version__ would no longer match the
#   installed distribution (tests/test_version.py).
# - Extra arguments go to build_ext (e.g. --force); GIC5_CHECKED / GIC5_ANNOTATE work as in
#   setup.py.
set -euo pipefail
cd "$(dirname "$0")/.."
installed=$(python -c 'import importlib.metadata as m; print(m.version("gic5"))' 2>/dev/null) || {
    echo "rebuild.sh: gic5 is not installed in this Python; run pip install --no-build-isolation -e . first" >&2
    exit 1
}
SETUPTOOLS_SCM_PRETEND_VERSION="$installed" python setup.py -q build_ext --inplace "$@"
echo "rebuilt gic5core in place (version $installed)"
