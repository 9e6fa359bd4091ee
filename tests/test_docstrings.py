"""Every public name of gic5 and gic5core has a docstring.

Covers: each module of both packages (found with pkgutil; private ``_name`` modules are
skipped), its own docstring, and each public function, class, method and property it
defines (``__all__`` where the module has one, else every name not starting with ``_``).
Compiled (Cython) functions and properties count like Python ones.

Rules kept: ``KNOWN_GAPS`` lists the names still without a docstring, so the suite stays
green while they are being written; a *new* undocumented name fails, and so does an entry
of ``KNOWN_GAPS`` that has since been documented (remove it: the list only shrinks).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import gic5
import gic5core

# Each entry is a debt: a public name still without a docstring. Empty: every debt is paid,
# so any undocumented public name now fails the suite.
KNOWN_GAPS: set[str] = set()


def _modules() -> list[str]:
    names = ["gic5", "gic5core"]
    for pkg in (gic5, gic5core):
        names += [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
                  if not m.name.startswith("_")]
    return sorted(names)


def _has_doc(obj: object) -> bool:
    return bool((getattr(obj, "__doc__", None) or "").strip())


def _class_gaps(qual: str, cls: type) -> list[str]:
    gaps = []
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        documentable = (isinstance(attr, property) or inspect.isgetsetdescriptor(attr)
                        or inspect.isroutine(attr))
        if documentable and not _has_doc(attr):
            gaps.append(f"{qual}.{name}")
    return gaps


def _gaps() -> set[str]:
    gaps: set[str] = set()
    for modname in _modules():
        module = importlib.import_module(modname)
        if not _has_doc(module):
            gaps.add(modname)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or getattr(obj, "__module__", None) != modname:
                continue  # re-exported: checked in its own module
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants carry no docstring of their own
            if not _has_doc(obj):
                gaps.add(f"{modname}.{name}")
            if inspect.isclass(obj):
                gaps.update(_class_gaps(f"{modname}.{name}", obj))
    return gaps


def test_every_public_name_has_a_docstring() -> None:
    gaps = _gaps()
    new = sorted(gaps - KNOWN_GAPS)
    assert not new, "public names without a docstring:\n  " + "\n  ".join(new)


def test_known_gaps_are_still_gaps() -> None:
    fixed = sorted(KNOWN_GAPS - _gaps())
    assert not fixed, ("documented since: remove from KNOWN_GAPS in tests/test_docstrings.py:"
                       "\n  " + "\n  ".join(fixed))
