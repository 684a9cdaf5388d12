"""Hostile and broken submissions of Chapter 1, each with the outcome the class grader must give it.

Every case is built from the chapter's solution notebook by editing cells (``grading_helpers``).
``tests/grader/test_hostile.py`` grades them (a reduced set by default, all of them in a slow test) in
one ``grade_class`` run beside honest submissions; :data:`ATTACKS` are attacks on the grader itself
(issue 11), graded the same way; ``benchmarks/grading.py`` mixes them into a simulated
class. A case names the exercises it must lose; every other exercise must keep its full points.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tests.helpers.grading import (
    cell_by_id,
    delete_cell,
    points_of,
    release_notebook,
    replace_cell,
    replace_solution,
    solution_notebook,
)
from xattn_edu.grader.build import notebook_bytes

CHAPTER = "01_library_lookup"
POINTS = points_of(CHAPTER)  # {grade_id: points}, read from the chapter source
RELEVANCE = {"relevance_tests", "relevance_batch_tests"}
SOFTMAX = {"softmax_tests", "softmax_stability_tests"}
SOFT_LOOKUP = {"soft_lookup_tests", "soft_lookup_batch_tests"}
EQUAL_SCORES = {"equal_scores_tests", "orthogonal_query_tests", "no_equal_scores_tests"}
EVERYTHING = set(POINTS)
AFTER_SOFTMAX = EVERYTHING - RELEVANCE  # every graded cell after the softmax solution cell

NAIVE_SOFTMAX = """
exps = np.exp(scores)
return exps / np.sum(exps, axis=axis, keepdims=True)
"""


@dataclass(frozen=True)
class Place:
    """Where the class is graded: a vandal's code needs the paths it attacks."""

    submissions: Path  # folder with one sub-folder per student
    out: Path  # grade-class results folder


@dataclass(frozen=True)
class Case:
    """One submission and its expected outcome."""

    student: str  # the sub-folder name
    make: Callable[[Place], bytes]  # the notebook file's content
    lost: set[str] = field(default_factory=set)  # exercises that must score 0 (all others: full points)
    status: str = "graded"  # expected grade-class status
    reason: str = ""  # a fragment the recorded reason must contain
    full: bool = False  # only in the full (slow) catalogue
    needs_process_limit: bool = False  # only where a process limit is in force

    def expected_scores(self) -> dict[str, float]:
        lost = EVERYTHING if self.status != "graded" else self.lost
        return {grade_id: 0.0 if grade_id in lost else float(points) for grade_id, points in POINTS.items()}


def _solution():
    return solution_notebook(CHAPTER)


def _bytes(notebook) -> bytes:
    return notebook_bytes(notebook)


def _append_to_cell(notebook, grade_id: str, code: str):
    result = copy.deepcopy(notebook)
    cell = cell_by_id(result, grade_id)
    cell.source = cell.source.rstrip("\n") + "\n\n" + code.strip("\n") + "\n"
    return result


def _tampered_tests(place: Place) -> bytes:
    # relevance + 1: wrong scores, yet the softmax is shift-invariant, so soft_lookup still passes
    notebook = replace_solution(_solution(), "relevance_solution", "return query @ keys.T + 1")
    notebook = replace_cell(notebook, "relevance_tests", "pass")
    return _bytes(delete_cell(notebook, "relevance_batch_tests"))


def _duplicated_grade_id(place: Place) -> bytes:
    # The student copied a test cell (as the release shows it: visible tests only) and emptied the original.
    notebook = replace_solution(_solution(), "softmax_solution", NAIVE_SOFTMAX)
    stability = cell_by_id(notebook, "softmax_stability_tests")
    copied = copy.deepcopy(stability)
    copied.source = stability.source.split("### BEGIN HIDDEN TESTS")[0].rstrip("\n")
    copied.id = "copied-cell"
    stability.source = "pass"
    notebook.cells.insert(notebook.cells.index(stability) + 1, copied)
    return _bytes(notebook)


def _reference_direct(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "softmax_solution", "return reference.softmax(scores, axis=axis)"))


def _reference_alias(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "relevance_solution", """
        from xattn_edu.chapters.library_lookup.reference import relevance_scores as scores_of
        return scores_of(query, keys)
    """))


def _reference_importlib(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "equal_scores_solution", """
        import importlib
        return importlib.import_module("xattn_edu.chapters.library_lookup.reference").equal_score_query(keys, level)
    """))


def _patched_checks(place: Place) -> bytes:
    # A naive softmax (overflows near 1000), then the checks that would catch it replaced by no-ops, the
    # reference swapped for the naive one, and the guard switched off; plus a reference call for relevance.
    notebook = replace_solution(_solution(), "softmax_solution", NAIVE_SOFTMAX)
    notebook = replace_solution(notebook, "relevance_solution", "return reference.relevance_scores(query, keys)")
    return _bytes(_append_to_cell(notebook, "softmax_solution", """
import xattn_edu.chapters.support.guard
import xattn_edu.chapters.library_lookup.checks
import xattn_edu.chapters.library_lookup.reference

xattn_edu.chapters.library_lookup.checks.check_softmax_stability = lambda fn: None
xattn_edu.chapters.library_lookup.checks.check_softmax_stability_hidden = lambda fn: None
xattn_edu.chapters.library_lookup.reference.softmax = stable_softmax
xattn_edu.chapters.support.guard.forbid_reference.__enter__ = lambda self: self
xattn_edu.chapters.support.guard.forbid_reference.__exit__ = lambda self, *exc: False
"""))


def _patched_builtins(place: Place) -> bytes:
    notebook = replace_solution(_solution(), "softmax_solution", NAIVE_SOFTMAX)
    return _bytes(_append_to_cell(notebook, "softmax_solution", """
import builtins

builtins.AssertionError = type("AssertionError", (Warning,), {})
builtins.print = lambda *args, **kwargs: None
"""))


def _fake_pass(place: Place) -> bytes:
    notebook = release_notebook(CHAPTER)
    for grade_id in ("relevance_solution", "softmax_solution", "zero_score_answer", "soft_lookup_solution",
                     "equal_scores_solution"):
        notebook = replace_solution(notebook, grade_id, 'print("All tests passed! 10 / 10")\nreturn None')
    return _bytes(notebook)


def _sys_exit(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "softmax_solution", "import sys\nsys.exit(0)"))


def _keyboard_interrupt(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "relevance_solution", "raise KeyboardInterrupt"))


def _os_exit(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "equal_scores_solution", "import os\nos._exit(1)"))


def _infinite_loop(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "soft_lookup_solution", "while True:\n    pass"))


def _unstoppable_loop(place: Place) -> bytes:
    # Swallows the interrupt nbgrader sends at the cell timeout: nbclient gives up on the whole notebook.
    return _bytes(_append_to_cell(_solution(), "equal_scores_solution", """
import time

while True:
    try:
        time.sleep(0.5)
    except BaseException:
        pass
"""))


def _memory_bomb(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "softmax_solution", """
blocks = []
while True:
    blocks.append(bytearray(256 << 20))  # 256 MiB at a time, until the address-space limit says no
"""))


def _fork_bomb(place: Place) -> bytes:
    # Bounded (10k forks, children exit after 3 s) so that a machine without a process limit survives it.
    return _bytes(replace_solution(_solution(), "relevance_solution", """
import os
import time
for _ in range(10_000):
    if os.fork() == 0:
        time.sleep(3)
        os._exit(0)
return query @ keys.T
"""))


def _vandal(place: Place) -> bytes:
    # A correct notebook whose last solution cell attacks the grader's results and the other students.
    attack = f"""
import os
import pathlib
import shutil

_out = pathlib.Path({str(place.out)!r})
_gradebook = _out / "gradebook.jsonl"
if _gradebook.exists():
    _gradebook.write_text('{{"chapter": "{CHAPTER}", "student": "honest_full", "score": -1}}\\n')
    os.remove(_gradebook)
(_out / "grades.csv").write_text("hacked")
for _folder in pathlib.Path({str(place.submissions)!r}).iterdir():
    if _folder.name != "vandal":
        for _notebook in _folder.glob("*.ipynb"):
            _notebook.write_text("destroyed")
        shutil.rmtree(_folder, ignore_errors=True)
"""
    return _bytes(_append_to_cell(_solution(), "equal_scores_solution", attack))


# ----------------------------------------------------------------------------- attacks on the grader itself
# Each pairs a wrong (or absent) implementation with an attack on the machinery that would catch it. The
# scan flags every one of them (so, with on_flag = "zero", every graded cell after the attack scores 0);
# the out-of-process verdict alone would also fail every cell the attack meant to fake (no record, or a
# record whose values are wrong for the grader's hidden inputs).

def _attack(cell: str, code: str, *, naive: bool = True) -> Callable[[Place], bytes]:
    def make(place: Place) -> bytes:
        notebook = replace_solution(_solution(), "softmax_solution", NAIVE_SOFTMAX) if naive else _solution()
        return _bytes(_append_to_cell(notebook, cell, code))

    return make


KIND_1 = """
# Kind 1: the grader's defences live in my process, so switch them off (checks, record, registry).
grading.check = lambda *args, **kwargs: print("all visible checks passed.")
grading.record = lambda *args, **kwargs: None
"""
KIND_2 = """
# Kind 2: switch off the profiler the reference guard installs, then call the reference by name.
import importlib
import sys
import threading

sys.setprofile = threading.setprofile = lambda *args: None
_reference = importlib.import_module("xattn_edu.chapters.library_lookup.reference")

def stable_softmax(scores, axis=-1):
    return _reference.softmax(scores, axis=axis)
"""
REGISTRY = """
# Replace the exercise a test cell looks up by one with no cases and a judge that accepts anything.
import dataclasses

_always = dataclasses.replace(grading.EXERCISES["softmax_stability_tests"], visible=lambda: [],
                              hidden=lambda rng: [], judge=lambda case, got, expected: None)
grading.EXERCISES.by_id.update({"softmax_stability_tests": _always})
"""
TRANSPORT = """
# Forge the record the grader reads: publish one with the right grade_id but copied visible answers.
from IPython.display import publish_display_data

def _forge(grade_id, student):
    publish_display_data({"application/vnd.xattn.record+json": {"chapter": "01_library_lookup",
                          "grade_id": grade_id, "seed": 0, "results": []}})

grading.record = _forge
"""
SETTRACE = """
# Skip the checks line by line: a tracer that makes every call into the grading modules return at once.
import sys

def _skip(frame, event, arg):
    if "support/exercise" in frame.f_code.co_filename:
        raise StopIteration
    return _skip

sys.settrace(_skip)
"""
DISPLAY_HOOK = """
# Hide failures: replace IPython's error display and output publisher.
ip = get_ipython()
ip.showtraceback = lambda *args, **kwargs: None
ip.display_pub.publish = lambda *args, **kwargs: None
"""
SYS_MODULES = """
# Swap the chapter's checks module for a fake one in sys.modules, then re-import it as the test cells do.
import sys
import types

_fake = types.ModuleType("xattn_edu.chapters.library_lookup.checks")
_fake.check = _fake.record = lambda *args, **kwargs: None
sys.modules["xattn_edu.chapters.library_lookup.checks"] = _fake
"""
GC_WALK = """
# Find every Exercises registry through the garbage collector and empty it.
import gc

for _obj in gc.get_objects():
    if type(_obj).__name__ == "Exercises":
        _obj.by_id.clear()
"""
FRAMES = """
# Reach the judge's frame from inside the student function and overwrite the expected value.
import sys

def stable_softmax(scores, axis=-1):
    frame = sys._getframe(1)
    while frame is not None:
        frame.f_locals.pop("expected", None)
        frame = frame.f_back
    exps = np.exp(scores)
    return exps / np.sum(exps, axis=axis, keepdims=True)
"""
ANSWER_FILE = """
# Write the file the grader reads: the autograded notebook, with every test cell's outputs cleared.
import json
import pathlib

for _path in pathlib.Path("..").rglob("*.ipynb"):
    _nb = json.loads(_path.read_text())
    for _cell in _nb["cells"]:
        _cell["outputs"] = []
    _path.write_text(json.dumps(_nb))
"""

RESULT_OF = """
# Make every exercise record the reference's results: patch the class that computes them, reached
# through another module's attribute (no `import sys` to flag).
_Exercise = torch.sys.modules["xattn_edu.chapters.support.exercise"].Exercise
_result_of = _Exercise.result_of
_Exercise.result_of = lambda self, f, case, student=True: _result_of(self, self.reference, case, student=False)
"""
GUARD_BY_GETATTR = """
# Kind 2 with the names hidden: reach sys through random, switch the guard's profiler off with a
# constant-string getattr, then call the reference the setup cell imported.
import random

_sys = random._os.sys

def stable_softmax(scores, axis=-1):
    getattr(_sys, "setprofile")(None)
    return reference.softmax(scores, axis=axis)
"""
LIBRARY_LOG_SOFTMAX = """
# No attack on the grader: a library softmax in disguise, exp(log_softmax).
import scipy.special

def stable_softmax(scores, axis=-1):
    return np.exp(scipy.special.log_softmax(scores, axis=axis))
"""
RECORD_PLACEHOLDER = """
# Forge the record after the verdict's inputs are known: the test cells show an empty output with a
# display id, and a cell at the very end rewrites it into a record of the reference's results.
import random

_checks = random._os.sys.modules["xattn_edu.chapters.library_lookup.checks"]
_checks.check = lambda grade_id, f: None
_checks.record = lambda grade_id, f: display({"text/plain": ""}, raw=True, display_id="rec-" + grade_id)
"""
RECORD_REWRITE = """
import os
from xattn_edu.chapters.library_lookup import checks as _C
from xattn_edu.chapters.support.values import encode as _encode
from xattn_edu.common.protocol import RECORD_MIME as _RECORD, SEED_ENV as _SEED

if _SEED in os.environ:
    _seed = int(os.environ[_SEED])
    for _ex in _C.EXERCISES:
        if _ex.reference is not None:
            _results = [_encode(_ex.result_of(_ex.reference, _case, student=False)) for _case in _ex.cases(_seed)]
            display({_RECORD: {"chapter": _C.EXERCISES.chapter, "grade_id": _ex.grade_id, "seed": _seed,
                               "results": _results}}, raw=True, display_id="rec-" + _ex.grade_id, update=True)
"""

THREAD_POOL = """
# A worker thread started before the guard is installed runs without its profiler.
from concurrent.futures import ThreadPoolExecutor

_pool = ThreadPoolExecutor(max_workers=1)
_pool.submit(int).result()

def stable_softmax(scores, axis=-1):
    return _pool.submit(reference.softmax, scores, axis).result()
"""
LAZY_ARRAY = """
# An array that holds zeros while the guard watches and fills itself in from the reference later,
# when the grader's own code reads it.
class _Later(np.ndarray):
    def __array_finalize__(self, obj):
        self._todo = getattr(obj, "_todo", None)
        self._armed = obj is not None and getattr(obj, "_todo", None) is not None

    @property
    def dtype(self):
        todo = self._todo if getattr(self, "_armed", False) else None
        if todo is not None:
            self._todo = None
            np.copyto(self.view(np.ndarray), todo[0](*todo[1]))
        return self.view(np.ndarray).dtype

def stable_softmax(scores, axis=-1):
    out = np.zeros(scores.shape).view(_Later)
    out._todo = (reference.softmax, (scores, axis))
    return out
"""
REDUCE_GETATTR = """
# getattr passed as a value, the names built at run time: reach sys.setprofile unseen, switch the guard off.
import functools

_off = functools.reduce(getattr, ["s" + "ys", "set" + "profile"], torch)

def stable_softmax(scores, axis=-1):
    _off(None)
    return reference.softmax(scores, axis)
"""


def _forged_after_the_fact(place: Place) -> bytes:
    notebook = _append_to_cell(_solution(), "relevance_solution", RECORD_PLACEHOLDER)
    notebook.cells.append(nbformat.v4.new_code_cell(RECORD_REWRITE))
    return _bytes(notebook)


MEMORISED = """
# No attack on the grader at all: answers memorised for the visible inputs only (typed in from the
# visible checks' messages; reading them from the grading module would be flagged instead).
_visible = {}
for _scores in (np.array([1000.0, 1001.0, 1002.0]), np.array([0.0, -np.inf, 1.0]),
                np.array([[1000.0, 999.0], [-1000.0, -1001.0]])):
    _exps = np.exp(_scores - np.max(_scores, axis=-1, keepdims=True))
    _visible[_scores.tobytes()] = _exps / np.sum(_exps, axis=-1, keepdims=True)

def stable_softmax(scores, axis=-1):
    if scores.tobytes() in _visible:
        return _visible[scores.tobytes()]
    exps = np.exp(scores)
    return exps / np.sum(exps, axis=axis, keepdims=True)
"""


def _corrupt_json(place: Place) -> bytes:
    return _bytes(_solution())[:5000]


def _other_chapter(place: Place) -> bytes:
    return _bytes(solution_notebook("02_spotlight"))


def _huge_outputs(megabytes: int) -> Callable[[Place], bytes]:
    def make(place: Place) -> bytes:
        notebook = _solution()
        cell = cell_by_id(notebook, "softmax_solution")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * (megabytes << 20))]
        return _bytes(notebook)

    return make


def _non_utf8(place: Place) -> bytes:
    text = _bytes(_solution())
    return text.replace(b"Dot product of each query", b"Dot product \xff\xfe of each query", 1)


def _stderr_noise(place: Place) -> bytes:
    notebook = replace_solution(_solution(), "softmax_solution", """
warnings.warn("stable_softmax: called", RuntimeWarning)  # inside a test cell: the check silences it
shifted = scores - np.max(scores, axis=axis, keepdims=True)
exps = np.exp(shifted)
return exps / np.sum(exps, axis=axis, keepdims=True)
""")
    return _bytes(_append_to_cell(notebook, "softmax_solution", """
import sys
import warnings

warnings.simplefilter("always")  # every warning reaches stderr from now on
print("note from my solution cell", file=sys.stderr)
warnings.warn("a warning from the solution cell itself")
"""))


def _partial(place: Place) -> bytes:
    return _bytes(replace_solution(_solution(), "softmax_solution", NAIVE_SOFTMAX))


def _honest(place: Place) -> bytes:
    return _bytes(_solution())


def _untouched_release(place: Place) -> bytes:
    return _bytes(release_notebook(CHAPTER))


HONEST = [
    Case("honest_full", _honest),
    Case("honest_partial", _partial, lost={"softmax_stability_tests"}),
    Case("honest_release", _untouched_release, lost=EVERYTHING, reason="is not done yet"),
]

CATALOGUE = [
    Case("tampered_tests", _tampered_tests, lost=RELEVANCE),
    Case("duplicated_grade_id", _duplicated_grade_id, lost={"softmax_stability_tests"}),
    Case("reference_direct", _reference_direct, lost=SOFTMAX | SOFT_LOOKUP, reason="calls the reference"),
    # importing the course package is flagged: every graded cell after it scores 0
    Case("reference_alias", _reference_alias, lost=EVERYTHING, reason="calls the reference"),
    Case("reference_importlib", _reference_importlib, lost=EQUAL_SCORES, reason="calls the reference"),
    Case("patched_checks", _patched_checks, lost=EVERYTHING),
    Case("patched_builtins", _patched_builtins, lost=AFTER_SOFTMAX),
    Case("fake_pass", _fake_pass, lost=EVERYTHING),
    Case("sys_exit", _sys_exit, lost=AFTER_SOFTMAX, full=True),
    Case("keyboard_interrupt", _keyboard_interrupt, lost=RELEVANCE | SOFT_LOOKUP, full=True),
    # a kernel that dies costs only the cells it reached
    Case("os_exit", _os_exit, lost=EQUAL_SCORES, reason="kernel died"),
    Case("infinite_loop", _infinite_loop, lost=SOFT_LOOKUP, reason="timed out"),
    Case("unstoppable_loop", _unstoppable_loop, lost=EQUAL_SCORES, reason="did not stop when interrupted",
         full=True),
    Case("memory_bomb", _memory_bomb, lost=SOFTMAX | SOFT_LOOKUP, reason="MemoryError"),
    # The fork that fails at the process limit is flagged (import os) and fails its own cell: every point lost,
    # reason recorded, the other notebooks unaffected.
    Case("fork_bomb", _fork_bomb, lost=EVERYTHING, reason="relevance_tests", needs_process_limit=True),
    Case("vandal", _vandal, lost=EQUAL_SCORES),
    Case("corrupt_json", _corrupt_json, status="error", reason="not valid notebook JSON"),
    Case("other_chapter", _other_chapter, status="error", reason="02_spotlight"),
    Case("huge_outputs_10mb", _huge_outputs(10)),
    Case("huge_outputs_100mb", _huge_outputs(100), full=True),
    Case("non_utf8", _non_utf8, status="error", reason="not a notebook"),
    Case("stderr_noise", _stderr_noise, lost=AFTER_SOFTMAX),
]

ATTACKS = [
    Case("kind1_checks_switched_off", _attack("softmax_solution", KIND_1), lost=AFTER_SOFTMAX),
    Case("kind2_guard_switched_off", _attack("softmax_solution", KIND_2), lost=AFTER_SOFTMAX),
    Case("registry_patched", _attack("softmax_solution", REGISTRY), lost=AFTER_SOFTMAX),
    Case("record_forged", _attack("softmax_solution", TRANSPORT), lost=AFTER_SOFTMAX),
    Case("settrace", _attack("softmax_solution", SETTRACE), lost=AFTER_SOFTMAX),
    Case("display_hooks", _attack("softmax_solution", DISPLAY_HOOK), lost=AFTER_SOFTMAX),
    Case("sys_modules", _attack("softmax_solution", SYS_MODULES), lost=AFTER_SOFTMAX),
    Case("gc_walk", _attack("softmax_solution", GC_WALK), lost=AFTER_SOFTMAX),
    Case("frame_tricks", _attack("softmax_solution", FRAMES), lost=AFTER_SOFTMAX),
    Case("answer_file", _attack("softmax_solution", ANSWER_FILE), lost=AFTER_SOFTMAX),
    Case("memorised_visible_answers", _attack("softmax_solution", MEMORISED), lost={"softmax_stability_tests"},
         reason="softmax_stability_tests"),
    # found by a tester trying the grader as a student (stop 23); each scored full marks before
    Case("result_of_patched", _attack("softmax_solution", RESULT_OF), lost=AFTER_SOFTMAX),
    Case("guard_off_by_getattr", _attack("softmax_solution", GUARD_BY_GETATTR, naive=False), lost=AFTER_SOFTMAX),
    Case("record_rewritten_after_the_fact", _forged_after_the_fact, lost=EVERYTHING),
    Case("library_log_softmax", _attack("softmax_solution", LIBRARY_LOG_SOFTMAX, naive=False),
         lost=SOFTMAX | SOFT_LOOKUP, reason="log_softmax"),
    # found by a second such tester, after those fixes (stop 23)
    Case("thread_pool", _attack("softmax_solution", THREAD_POOL, naive=False), lost=AFTER_SOFTMAX),
    Case("lazy_array", _attack("softmax_solution", LAZY_ARRAY, naive=False), lost=SOFTMAX | SOFT_LOOKUP),
    Case("reduce_getattr", _attack("softmax_solution", REDUCE_GETATTR, naive=False), lost=AFTER_SOFTMAX),
]


def write_class(cases: list[Case], place: Place) -> None:
    """Write each case's notebook to ``<submissions>/<student>/01_library_lookup.ipynb``."""
    for case in cases:
        path = place.submissions / case.student / f"{CHAPTER}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.make(place))


def expected_json(cases: list[Case]) -> str:
    """The expected scores of ``cases``, for messages."""
    return json.dumps({case.student: case.expected_scores() for case in cases}, indent=1)
