"""Doctests: the examples in docstrings and in the docs run, and say what they show.

Covers:
- every module of gic5 and of the compiled gic5core (found with pkgutil, so a new module is
  covered the day it is added), through ``doctest.DocTestFinder``, which also reads the
  docstrings of compiled (Cython) functions and the ``__test__`` dict Cython fills;
- the ```` ```pycon ```` blocks of README.md and docs/*.md, one namespace per file (a page reads
  top to bottom, so later blocks may use names from earlier ones);
- the ```` ```python ```` blocks of README.md, executed as scripts (the README's example must
  run as written; its asserts are its checks).

Rules kept: a module, page or block that stops being found would silently test nothing, so
the modules and pages known to carry examples are listed and must yield at least one; and
the README, the user's entry point, must link every page under docs/.
"""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil
import re
from types import ModuleType

import pytest

import gic5
import gic5core

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FLAGS = doctest.ELLIPSIS

# Modules and pages that must keep at least one example (a compiled one among them, to prove
# the finder sees Cython docstrings).
MUST_HAVE_EXAMPLES = {"gic5", "gic5.uapi", "gic5.kvm", "gic5core.errors", "gic5core.vm"}
PAGES_WITH_PYCON = {"irq_line.md", "lifecycle.md", "cpuif.md"}


def _module_names() -> list[str]:
    names = ["gic5", "gic5core"]
    for pkg in (gic5, gic5core):
        names += [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return sorted(names)


def _run(test: doctest.DocTest) -> doctest.TestResults:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, clear_globs=False)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", _module_names())
def test_module_doctests(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    if name in MUST_HAVE_EXAMPLES:
        assert tests, f"{name} lost its doctests"
    for test in tests:
        result = _run(test)
        assert result.failed == 0, f"{test.name}: {result.failed} of {result.attempted} failed"


def _blocks(text: str, lang: str) -> list[tuple[int, str]]:
    """(line number, body) of every fenced block of language ``lang``."""
    out = []
    for m in re.finditer(rf"^```{lang}[ \t]*\n(.*?)^```[ \t]*$", text, re.M | re.S):
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return out


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_markdown_pycon_blocks(page: pathlib.Path) -> None:
    text = page.read_text()
    blocks = _blocks(text, "pycon")
    if page.name in PAGES_WITH_PYCON:
        assert blocks, f"{page.name} lost its ```pycon examples"
    globs: dict[str, object] = {}
    parser = doctest.DocTestParser()
    for lineno, body in blocks:
        test = parser.get_doctest(body, globs, f"{page.name}:{lineno}", str(page), lineno)
        result = _run(test)
        assert result.failed == 0, f"{page.name} block at line {lineno} failed"
        globs = test.globs  # DocTest copies its globals: carry them to the next block


def test_readme_python_blocks_run() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = _blocks(text, "python")
    assert blocks, "README.md lost its example"
    for lineno, body in blocks:
        code = compile(body, f"README.md:{lineno}", "exec")
        exec(code, {"__name__": "__readme__"})  # noqa: S102 - the README's own example


def test_pages_with_examples_exist() -> None:
    names = {p.name for p in DOC_PAGES}
    assert PAGES_WITH_PYCON <= names, f"missing pages: {sorted(PAGES_WITH_PYCON - names)}"


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in DOC_PAGES if p.parent.name == "docs"
                and f"(docs/{p.name})" not in readme]
    assert not unlinked, f"README.md does not link {unlinked}"
