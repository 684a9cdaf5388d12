"""The static scan of a submission: it flags reaching for the grader, and nothing an honest student writes."""

import nbformat
import pytest

from tests.helpers.grading import solution_notebook
from xattn_edu.grader.build import find_chapters
from xattn_edu.grader.scan import concerned_cells, course_names, grader_names, scan_cell, scan_notebook

COURSE = {"grading", "reference"}
GRADER = frozenset({"grading"})


def locked_ids(notebook):
    return {c.metadata["nbgrader"]["grade_id"] for c in notebook.cells if c.metadata.get("nbgrader", {}).get("locked")}


@pytest.mark.parametrize("chapter", [c.name for c in find_chapters()])
def test_no_solution_notebook_is_flagged(chapter):
    notebook = solution_notebook(chapter)
    assert scan_notebook(notebook.cells, locked_ids(notebook)) == []


@pytest.mark.parametrize(("code", "rule"), [
    ("import sys\nsys.setprofile(None)", "import"),
    ("from importlib import import_module", "import"),
    ("import gc; gc.get_objects()", "import"),
    ("import xattn_edu.chapters.library_lookup.reference as r", "import"),
    ("from IPython import get_ipython", "import"),
    ("get_ipython().display_pub.publish = print", "call"),
    ("x = eval('1')", "call"),
    ("open('answers.json', 'w').write('{}')", "call"),
    ("vars(grading)", "call"),
    ("getattr(reference, 'soft' + 'max')", "dynamic getattr"),
    ("f.__code__ = g.__code__", "attribute"),
    ("frame = error.__traceback__.tb_frame.f_back", "attribute"),
    ("__builtins__['print'] = None", "attribute"),
    ("grading.check = lambda *a: None", "changes the course's code"),
    ("grading.EXERCISES.by_id['softmax_tests'] = None", "changes the course's code"),
    ("grading.EXERCISES.by_id.update({})", "changes the course's code"),
    ("dict.clear(grading.EXERCISES.by_id)", "changes the course's code"),
    ("del reference.softmax", "changes the course's code"),
    ("_sys = torch.sys\n_sys.modules['xattn_edu.chapters.support.exercise']", "attribute"),  # a module's module
    ("import random\nrandom._os.sys.setprofile(None)", "attribute"),
    ("getattr(random._os, 'sys')", "attribute"),
    ("getattr(_s, 'setprofile')(None)", "attribute"),  # a constant-string getattr is that attribute
    ("hasattr(frame, 'f_back')", "attribute"),
    ("import operator\n_sys = operator.attrgetter('sys')(torch)", "names an internal"),
    ("name = '_'.join(['xattn', 'edu']) or 'xattn_edu.chapters.support.exercise'", "names an internal"),
    ("%env XATTN_GRADE_SEED", "magic"),
    ("!cat /etc/passwd", "magic"),
    ("def f(:\n    pass", "syntax"),
])
def test_reaching_for_the_grader_is_flagged(code, rule):
    assert rule in [flag.rule for flag in scan_cell(4, code, COURSE, GRADER)]


@pytest.mark.parametrize("code", [
    "g = grading\ng.record = lambda *a: None",  # an alias
    "registry = grading.EXERCISES.by_id\nregistry['softmax_tests'] = None",
    "real = grading.EXERCISES['softmax_tests']",
    "kind = type(grading)",
    "def steal(module):\n    module.check = print\nsteal(grading)",
    "for exercise in grading.EXERCISES:\n    pass",
    "check = grading.check",
])
def test_the_grading_module_is_off_limits_but_for_calling_its_check(code):
    assert "uses the grader's checks" in [flag.rule for flag in scan_cell(4, code, COURSE, GRADER)]


@pytest.mark.parametrize("code", [
    "import numpy as np\nimport torch\nfrom torch import nn",
    "weights = reference.soft_lookup(q, keys, values)  # demo cells read the course's functions",
    "class Cache:\n    def __init__(self, attn):\n        super().__init__()\n        self.k = attn.w_k",
    "x = getattr(module, 'weight')\nprint(fn.__name__, type(x).__doc__)",
    "scores = q @ k.T / math.sqrt(d)\nweights = scores.softmax(-1)",
    "layers = list(model.modules())\ncount = sum(p.numel() for p in model.parameters())",
    "path = run.os_path if hasattr(run, 'os_path') else None",
    'print("the os module is not needed here")\nout = np.einsum("ij,jk->ik", a, b)',
    "items = []\nitems.append(1)\nresults = {}\nresults.update(a=1)",
    "rows = []\nrows.append(reference.soft_lookup(q, k, v))\nrows.extend(experiment.measure(trials=5))",
    "weights = reference.soft_lookup(q, k, v)[1]\nweights.sort()",
    'grading.check("softmax_tests", stable_softmax)  # running a check again',
])
def test_honest_code_is_not_flagged(code):
    assert scan_cell(4, code, COURSE, GRADER) == []


def test_grader_names_are_the_chapter_checks_and_the_grading_machinery():
    setup = ("from xattn_edu.chapters.library_lookup import checks as grading, reference\n"
             "from xattn_edu.chapters.support.exercise import Case\nfrom xattn_edu.chapters.support.plots import heat\n"
             "import xattn_edu.chapters.spotlight.checks as other")
    assert grader_names([setup]) == {"grading", "Case", "other"}


def test_course_names_come_from_imports_of_the_course_package():
    setup = ("import numpy as np\nfrom xattn_edu.chapters.library_lookup import checks as grading, reference\n"
             "import xattn_edu")
    assert course_names([setup]) == {"grading", "reference", "xattn_edu"}


def test_a_flag_concerns_only_the_graded_cells_after_it():
    def test_cell(grade_id):
        return nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "grade_id": grade_id,
                                                                         "locked": True}})

    setup = nbformat.v4.new_code_cell("import numpy", metadata={"nbgrader": {"locked": True, "grade_id": "setup"}})
    cells = [setup, test_cell("a_tests"), nbformat.v4.new_code_cell("import sys"), test_cell("b_tests")]
    flags = scan_notebook(cells, {"setup", "a_tests", "b_tests"})
    assert [(f.cell, f.rule) for f in flags] == [(2, "import")]
    assert list(concerned_cells(cells, flags)) == ["b_tests"]


def test_a_cell_that_only_claims_to_be_locked_is_scanned():
    claims = {"nbgrader": {"locked": True, "grade_id": "made_up"}}
    cells = [nbformat.v4.new_code_cell("import gc", metadata=claims)]
    assert [f.rule for f in scan_notebook(cells, {"setup"})] == ["import"]
