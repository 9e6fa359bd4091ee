"""Versions: gic5.__version__ comes from setuptools-scm, and every place that shows it agrees.

Covers: ``gic5.__version__`` (read from python/gic5/_version.py, which setuptools-scm writes
at build time), the installed distribution's metadata, ``gic5-storm --version`` (both as
``python -m gic5.storm`` and as the console script) and the version stamped into the storm
JSON.

Rules kept: the expected value is never hard-coded (it changes with every commit); what is
asserted is that it is a valid PEP 440 version and that all the places agree with the one
the build wrote. A tree built without git metadata gets setuptools-scm's fallback
(0.0.0+unknown), which is still consistent, so that case passes too.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys

import pytest
from packaging.version import Version

import gic5
from gic5 import storm


def test_version_is_pep440_and_from_the_build() -> None:
    assert isinstance(gic5.__version__, str)
    Version(gic5.__version__)  # raises InvalidVersion otherwise
    from gic5 import _version  # written by setuptools-scm: its absence is a packaging bug
    assert _version.__version__ == gic5.__version__


def test_version_matches_the_installed_metadata() -> None:
    assert importlib.metadata.version("gic5") == gic5.__version__


def test_storm_cli_prints_it(tmp_path: pathlib.Path) -> None:
    # Run outside the repository: `python -m` puts the current directory first on sys.path,
    # where the source tree's gic5core (without compiled modules) would shadow the install.
    r = subprocess.run([sys.executable, "-m", "gic5.storm", "--version"], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"gic5 {gic5.__version__}"


def test_storm_console_script_prints_it(tmp_path: pathlib.Path) -> None:
    script = pathlib.Path(sys.executable).parent / "gic5-storm"
    if not script.exists():
        pytest.skip(f"no gic5-storm console script beside {sys.executable}")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"gic5 {gic5.__version__}"


def test_storm_json_carries_it() -> None:
    data = storm.to_benchmark_json([])
    assert data["version"] == gic5.__version__
    assert data["commit_info"]["version"] == gic5.__version__
