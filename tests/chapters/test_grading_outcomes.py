"""Every chapter, graded whole: the solution earns every point, the untouched release earns none.

Chapter-specific mistakes (each losing exactly its exercises' points) are in test_grading_<chapter>.py.
"""

import pytest

from tests.helpers.grading import grade, points_of, release_notebook, solution_notebook
from xattn_edu.grader.build import find_chapters

CHAPTERS = [chapter.name for chapter in find_chapters()]


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_solution_scores_full_marks(chapter, tmp_path):
    report = grade(solution_notebook(chapter), chapter, tmp_path)
    points = points_of(chapter)
    assert {e.grade_id: e.max_score for e in report.exercises} == points
    assert {e.grade_id: e.score for e in report.exercises} == points, report.table()
    assert report.score == report.max_score == sum(points.values())


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_untouched_release_scores_zero_on_every_exercise(chapter, tmp_path):
    report = grade(release_notebook(chapter), chapter, tmp_path)
    assert {e.grade_id: e.score for e in report.exercises} == dict.fromkeys(points_of(chapter), 0)
    assert all(e.reason for e in report.exercises), report.table()
