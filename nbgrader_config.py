"""nbgrader settings of the xattn course.

Instructors run the standard ``nbgrader`` commands from the repository root, which is the nbgrader
course root (see docs/instructor.md). ``xattn build`` and ``xattn grade`` read this same file, so a
change here (stub text, timeouts...) changes the release, the self-grader and class grading alike.
"""

import os

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

from xattn_edu.grader.autograde import VerifyResults, XattnExecute
from xattn_edu.grader.hide_hidden_tests import HideHiddenTests
from xattn_edu.grader.math_offline import RenderMathOffline

c = get_config()  # noqa: F821  (nbgrader provides get_config when it loads this file)

# The course and where nbgrader keeps each stage, relative to the course root (this directory).
c.CourseDirectory.course_id = "xattn"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "source"  # master notebooks, written by `xattn build --nbgrader-source`
c.CourseDirectory.release_directory = "release"  # what students fetch
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# What a student sees in place of solution code.
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# Autograding: a cell that runs longer than this many seconds is interrupted and scores 0.
c.ExecutePreprocessor.timeout = 120
# A test cell the student deleted is put back from the master copy (and graded) instead of vanishing.
c.OverwriteCells.add_missing_cells = True

# nbgrader's autograde steps, with the course's two: XattnExecute runs grading kernels in fast mode (experiments
# shrink to seconds; only grading kernels, never a student's or instructor's own) with the run's seed for the
# hidden cases; VerifyResults keeps a test cell's points only if the verifier, a process no submitted code runs
# in, agrees with what the cell recorded, and applies the static scan of the student's cells
# (docs/instructor.md, "What the grader guarantees").
c.Autograde.autograde_preprocessors = [
    XattnExecute, VerifyResults, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
    AssignLatePenalties, CheckCellMetadata,
]
# What code flagged by the scan costs: "zero" (the test cells after it score 0) or "review" (scores stand).
c.VerifyResults.on_flag = "zero"

# Feedback shows the hidden tests' verdicts but not their code (nbgrader would show it, issue #917).
# Formulas are MathML, so feedback reads offline (no MathJax from a CDN).
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, RenderMathOffline, CSSHTMLHeaderPreprocessor]
