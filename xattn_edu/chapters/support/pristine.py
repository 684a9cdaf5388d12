"""A fresh copy of a grading module, untouched by code that ran in the notebook before it.

Test cells run in the same Python process as the student's code, so a solution cell can replace a
check (``grading.check_softmax = lambda fn: None``), the reference it compares with
(``xattn_edu.chapters.library_lookup.reference.softmax = my_softmax``) or the guard. Hidden tests therefore check with
``fresh("xattn_edu.chapters.<chapter>.checks")``: every ``xattn_edu`` module is imported again from its
source files into new module objects, used for this check only, and the notebook's modules are put
back afterwards (the student's functions under test keep working as they were written).

This defeats reassigning attributes of our modules. It does not defeat code that patches numpy,
the import system or IPython itself, or rewrites the package's files: see docs/instructor.md,
"What the grader does not protect against".
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

PACKAGE = "xattn_edu"


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def fresh(module: str) -> ModuleType:
    """``module`` (a dotted name inside ``xattn_edu``) imported anew, with fresh copies of the modules it uses."""
    if not _ours(module):
        raise ValueError(f"fresh() only re-imports modules of {PACKAGE}, not {module!r}")
    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _ours(n)]}
    try:
        return importlib.import_module(module)
    finally:
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
