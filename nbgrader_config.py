"""nbgrader settings of the xattn course.

Instructors run the standard ``nbgrader`` commands from the repository root, which is the nbgrader
course root (see docs/instructor.md). ``xattn build`` and ``xattn grade`` read this same file, so a
change here (stub text, timeouts...) changes the release, the self-grader and class grading alike.
"""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades

from xattn_edu.grader.hide_hidden_tests import HideHiddenTests

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

# Notebooks shrink their experiments when XATTN_FAST=1; every grading kernel inherits this, so grading a
# chapter takes seconds. Graded tests never depend on the outcome of a long run.
os.environ.setdefault("XATTN_FAST", "1")

# Feedback shows the hidden tests' verdicts but not their code (nbgrader would show it, issue #917).
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
