"""A static scan of the code a student wrote, done by the grader on the notebook file (never in the kernel).

Honest exercise code needs numpy, torch, its own functions and, in demo cells, the course's functions. Code
that reaches for the grader's machinery needs something else: the interpreter's internals (``sys``, ``gc``,
frames, ``builtins``, the import system, also when reached as another module's attribute such as
``torch.sys``, or named in a string such as ``attrgetter("sys")``), dynamic code (``eval``, ``exec``,
``getattr`` with a computed name; ``getattr`` with a constant name counts as that attribute), IPython's
internals, files on disk, importing the course package itself, changing the course's objects that the setup
cell imported (``grading.check = ...``, ``grading.EXERCISES.by_id.update(...)``), or doing anything with the
grading module but calling its ``check`` again: ``g = grading``, ``type(grading)``,
``grading.EXERCISES[...]`` are all flagged, so no alias can smuggle the grading machinery past the other
rules. The scan parses every cell the student controls (solution cells and cells they added; locked cells
are the course's and are restored by nbgrader) and lists each such use as a :class:`Flag`.

A flag in a cell concerns the graded test cells *after* it: code cannot change a cell that has already run
(nor its record: the autograde step refuses display updates that would, :mod:`xattn_edu.grader.autograde`).
Flags after the last test cell concern none and are reported all the same. What a flag costs is the
instructor's choice (``ScanSubmission.on_flag`` in nbgrader_config.py): "zero" (the concerned test cells
score 0) or "review" (scores stand). Either way the flag, with the cell and line, reaches the instructor's
reports; the student is only told that the exercise is held for review, never which line or rule, so the
scan is no guide to evading it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

COURSE_PACKAGE = "xattn_edu"
DENIED_MODULES = frozenset({
    "sys", "importlib", "gc", "inspect", "ctypes", "builtins", "types", "code", "codeop", "dis", "marshal",
    "pickle", "runpy", "pkgutil", "site", "sysconfig", "threading", "_thread", "multiprocessing", "subprocess",
    "signal", "atexit", "faulthandler", "tracemalloc", "weakref", "os", "posix", "shutil", "pathlib", "io",
    "tempfile", "socket", "IPython", "ipykernel", "traitlets", "zmq", "jupyter_client", "nbformat", "nbclient",
    "nbconvert", "nbgrader", "unittest", "pytest", "xattn_edu", "concurrent", "asyncio",
})  # fmt: skip
"""Modules exercise code never needs: importing one (or a submodule) is flagged."""
DENIED_CALLS = frozenset({
    "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "setattr", "delattr", "open",
    "get_ipython", "breakpoint", "input", "exit", "quit",
})  # fmt: skip
"""Built-in functions that reach outside the exercise: calling one is flagged."""
DENIED_ATTRIBUTES = frozenset({
    "__dict__", "__code__", "__globals__", "__builtins__", "__class__", "__subclasses__", "__mro__", "__bases__",
    "__closure__", "__func__", "__self__", "__wrapped__", "__getattribute__", "__setattr__", "__delattr__",
    "__import__", "__loader__", "__spec__", "__kwdefaults__", "__defaults__", "__reduce__", "__reduce_ex__",
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame", "cr_frame",
    "co_code", "co_consts", "setprofile", "settrace", "_getframe",
})  # fmt: skip
"""Attributes that lead to the interpreter's internals: reading or writing one is flagged."""
MODULE_ATTRIBUTES = frozenset({
    "sys", "os", "gc", "builtins", "importlib", "inspect", "ctypes", "posix", "subprocess", "threading", "marshal",
    "runpy", "pkgutil", "IPython", "ipykernel", "nbgrader", "xattn_edu", "multiprocessing", "concurrent", "asyncio",
})  # fmt: skip
"""Modules that other modules hold as attributes (``torch.sys``, ``random._os``): reaching one through an
attribute, with or without leading underscores, is flagged like importing it."""
DENIED_NAMES = frozenset({"__builtins__", "__import__", "__loader__", "__spec__"})
"""Bare names that lead to the interpreter's internals."""
REFLECTION = frozenset({"getattr", "hasattr", "setattr", "delattr"})
"""Built-ins whose use as a value (``functools.reduce(getattr, names, obj)``) hides which attribute they reach."""


@dataclass(frozen=True)
class Flag:
    """One suspicious use in a student's cell."""

    cell: int  # index of the notebook cell
    line: int  # line in that cell (1-based)
    rule: str  # "import", "call", "attribute", "dynamic getattr", "changes the course's code",
    # "names an internal", "uses the grader's checks", "magic", "syntax"
    code: str  # the offending source line, stripped, at most 200 characters

    def to_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


GRADER_MODULES = re.compile(
    r"^xattn_edu\.chapters\.(\w+\.checks|support\.(exercise|values|verify|guard|checks|gradients))$")
"""The modules that hold the grading machinery (a chapter's ``checks`` and what it is built from)."""
ALLOWED_GRADER_CALLS = frozenset({"check", "record"})
"""What a student cell may do with the grading module: call its visible check (or its record) again."""


def _imports(sources: list[str]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``sources`` (cells that do not parse are skipped)."""
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        yield from (node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def grader_names(locked_sources: list[str]) -> set[str]:
    """Names the course's locked cells bind to the grading machinery, e.g. ``grading`` for the chapter's checks."""
    names = set()
    for node in _imports(locked_sources):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if GRADER_MODULES.match(f"{node.module}.{alias.name}") or GRADER_MODULES.match(node.module):
                    names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            names.update(alias.asname for alias in node.names if alias.asname and GRADER_MODULES.match(alias.name))
    return names


def course_names(locked_sources: list[str]) -> set[str]:
    """Names the course's own (locked) cells bind by importing from the course package, e.g. ``grading``."""
    names = set()
    for node in _imports(locked_sources):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == COURSE_PACKAGE:
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names
                         if alias.name.split(".")[0] == COURSE_PACKAGE)
    return names


MUTATORS = frozenset({
    "update", "clear", "pop", "popitem", "setdefault", "append", "extend", "insert", "remove", "sort", "reverse",
    "add", "discard", "difference_update", "intersection_update", "symmetric_difference_update", "fill", "put",
})
"""Method names that change a container in place: called on (or with) the course's objects, they are flagged."""


def _root(node: ast.AST) -> str | None:
    """The name an attribute/subscript chain starts from: ``grading`` for ``grading.EXERCISES.by_id["x"]``.

    A call ends the chain: ``reference.soft_lookup(q, k, v)`` is a new object the student made, not
    one of the course's.
    """
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _writes_course(node: ast.AST, course: set[str]) -> bool:
    """An assignment or deletion whose target is inside one of the course's objects (``grading.check = ...``)."""
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        return any(isinstance(t, ast.Attribute | ast.Subscript) and _root(t) in course for t in targets)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
        return _root(node.func.value) in course or any(_root(arg) in course for arg in node.args)
    return False


def _rule(node: ast.AST, course: set[str]) -> str | None:
    """Which rule ``node`` breaks, if any."""
    if isinstance(node, ast.Import):
        return "import" if any(a.name.split(".")[0] in DENIED_MODULES for a in node.names) else None
    if isinstance(node, ast.ImportFrom):
        return "import" if node.level == 0 and (node.module or "").split(".")[0] in DENIED_MODULES else None
    if _writes_course(node, course):
        return "changes the course's code"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in DENIED_CALLS:
            return "call"
        if node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
            name = node.args[1]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                return "dynamic getattr"
            if _denied_attribute(name.value):  # getattr(x, "setprofile") is x.setprofile
                return "attribute"
    if isinstance(node, ast.Attribute) and _denied_attribute(node.attr):
        return "attribute"
    if isinstance(node, ast.Name) and node.id in DENIED_NAMES:
        return "attribute"
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
        if any(_denied_attribute(part) for part in node.value.split(".")):  # attrgetter("sys"), import_module(...)
            return "names an internal"
    return None


_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _denied_attribute(name: str) -> bool:
    return name in DENIED_ATTRIBUTES or name.lstrip("_") in MODULE_ATTRIBUTES


def _reflection_as_values(tree: ast.AST) -> list[ast.AST]:
    """``getattr`` and its kin named anywhere but as the function of a call (passed, stored, aliased)."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in REFLECTION and
            id(node) not in called]


def _misused_grader_names(tree: ast.AST, grader: set[str]) -> list[ast.AST]:
    """Every use of a grading-module name other than calling its ``check`` or ``record``."""
    allowed = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in
                ALLOWED_GRADER_CALLS and isinstance(node.func.value, ast.Name)):
            allowed.add(id(node.func.value))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in grader and
            id(node) not in allowed]


def scan_cell(index: int, source: str, course: set[str], grader: frozenset[str] = frozenset()) -> list[Flag]:
    """The flags of one student cell (IPython magics and shell escapes are flagged as such).

    ``course``: names the setup cell bound to the course package; ``grader``: those of the grading machinery.
    """
    lines = source.splitlines()
    flags = [Flag(index, n, "magic", line.strip()[:200]) for n, line in enumerate(lines, start=1)
             if line.lstrip().startswith(("%", "!"))]
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)
    try:
        tree = ast.parse(python)
    except SyntaxError as error:
        return [*flags, Flag(index, error.lineno or 1, "syntax", "the cell is not valid Python")]
    found = [(node, _rule(node, course)) for node in ast.walk(tree)]
    found += [(node, "uses the grader's checks") for node in _misused_grader_names(tree, grader)]
    found += [(node, "dynamic getattr") for node in _reflection_as_values(tree)]
    for node, rule in found:
        if rule is not None:
            line = getattr(node, "lineno", 1)
            flags.append(Flag(index, line, rule, lines[line - 1].strip()[:200] if line <= len(lines) else ""))
    return sorted(set(flags), key=lambda f: (f.cell, f.line, f.rule))


def is_course_cell(cell: dict, locked_ids: set[str]) -> bool:
    """A locked cell of the course's master copy (nbgrader restored its source), not one the student wrote."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return isinstance(meta, dict) and bool(meta.get("locked")) and meta.get("grade_id") in locked_ids


def scan_notebook(cells: list[dict], locked_ids: set[str]) -> list[Flag]:
    """Every flag in the cells the student controls: code cells that are not locked cells of the master.

    ``locked_ids``: grade_ids of the master's locked cells (a cell that merely claims to be locked is scanned).
    """
    code = [(i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    locked = [c.get("source", "") for _, c in code if is_course_cell(c, locked_ids)]
    course, grader = course_names(locked), frozenset(grader_names(locked))
    flags = []
    for index, cell in code:
        if not is_course_cell(cell, locked_ids):
            flags += scan_cell(index, cell.get("source", ""), course, grader)
    return flags


def concerned_cells(cells: list[dict], flags: list[Flag]) -> dict[str, list[Flag]]:
    """``{grade_id: flags}``: each graded test cell with the flags of the student cells before it."""
    concerned: dict[str, list[Flag]] = {}
    for index, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and isinstance(meta, dict) and meta.get("grade") and meta.get("grade_id"):
            earlier = [flag for flag in flags if flag.cell < index]
            if earlier:
                concerned[str(meta["grade_id"])] = earlier
    return concerned
