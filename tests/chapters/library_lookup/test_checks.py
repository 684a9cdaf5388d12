"""Chapter 1 grading: the exercise declarations' verdicts and messages, then whole-notebook grading outcomes.

The first tests judge code directly with the declarations of :mod:`xattn_edu.chapters.library_lookup.checks`
(milliseconds): the chapter's solution and code written another way pass every cell on many seeds, the
reference passes its own hidden cases, a call to the reference fails, and each classic mistake loses
exactly the cells it should, with its message. The slow tests autograde whole notebooks with nbgrader.
"""

import math

import numpy as np
import pytest

from tests.helpers.exercises import assert_loses_exactly, lost, outcomes, solution_functions, verdicts
from tests.helpers.grading import delete_cell, grade, grade_scores, replace_cell, replace_solution, solution_notebook
from xattn_edu.chapters.library_lookup import checks as grading
from xattn_edu.chapters.library_lookup import reference as lookup
from xattn_edu.chapters.support.exercise import NotDone, Wrong

CHAPTER = "01_library_lookup"
EXERCISES = grading.EXERCISES
POINTS = {
    "relevance_tests": 1,
    "relevance_batch_tests": 1,
    "softmax_tests": 1,
    "softmax_stability_tests": 2,
    "zero_score_tests": 1,
    "soft_lookup_tests": 1,
    "soft_lookup_batch_tests": 1,
    "equal_scores_tests": 2,
    "orthogonal_query_tests": 1,
    "no_equal_scores_tests": 1,
}
NAMES = {"relevance_scores", "stable_softmax", "zero_score_weight", "soft_lookup", "equal_score_query"}
SEEDS = range(20)


def solution(name):
    return solution_functions(CHAPTER)[name]


def test_every_graded_cell_is_declared_with_its_points():
    from tests.helpers.grading import points_of

    assert points_of(CHAPTER) == POINTS
    assert {exercise.grade_id for exercise in EXERCISES} == set(POINTS)
    assert {exercise.name for exercise in EXERCISES} == NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_the_solution_passes_every_cell_on_many_seeds(name, capsys):
    assert lost(EXERCISES, name, solution(name), SEEDS) == {}
    assert capsys.readouterr().err == ""  # stderr in a test cell scores 0


REFERENCES = {
    "relevance_scores": lookup.relevance_scores,
    "stable_softmax": lookup.softmax,
    "soft_lookup": lookup.soft_lookup,
    "equal_score_query": lookup.equal_score_query,
}


@pytest.mark.parametrize("exercise", list(EXERCISES), ids=lambda e: e.grade_id)
def test_the_reference_passes_its_own_hidden_cases_on_many_seeds(exercise):
    reference = REFERENCES.get(exercise.name, exercise.reference)
    assert verdicts(EXERCISES, exercise.grade_id, reference, range(200), student=False) == ""


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_calling_the_reference_fails_every_cell_of_the_exercise(name):
    messages = outcomes(EXERCISES, name, REFERENCES[name])
    expected = "calls the reference implementation `xattn_edu.chapters.library_lookup.reference"
    assert messages and all(expected in message for message in messages.values()), messages


# ----------------------------------------------------------------------------- correct code, written another way

def softmax_by_logsumexp(scores, axis=-1):
    top = np.max(scores, axis=axis, keepdims=True)
    return np.exp(scores - top - np.log(np.sum(np.exp(scores - top), axis=axis, keepdims=True)))


def equal_scores_by_projection(keys, level):
    """QR instead of SVD, solve instead of lstsq where the keys are square."""
    n, d = keys.shape
    basis, triangle = np.linalg.qr(keys.T, mode="complete")  # (d, d): the first columns span the keys
    rank = int(np.sum(np.abs(np.diag(triangle)) > 1e-10 * np.abs(triangle).max()))
    if level == 0:
        if rank == d:
            raise ValueError("the keys span the space")
        return 3.0 * basis[:, rank]
    query = np.linalg.solve(keys, np.full(n, level)) if n == d else np.linalg.pinv(keys) @ np.full(n, level)
    if np.abs(keys @ query - level).max() > 1e-6 * abs(level):
        raise ValueError("no common solution")
    return query


@pytest.mark.parametrize("name, fn", [("stable_softmax", softmax_by_logsumexp),
                                      ("equal_score_query", equal_scores_by_projection),
                                      ("zero_score_weight", 1 / (math.e**2 + 2)),
                                      ("zero_score_weight", np.float64(0.10651))])
def test_right_answers_written_another_way_pass(name, fn):
    assert lost(EXERCISES, name, fn, SEEDS) == {}


# ----------------------------------------------------------------------------- mistakes, each losing its cells

def global_max_softmax(scores, axis=-1):
    exps = np.exp(scores - np.max(scores))
    return exps / np.sum(exps, axis=axis, keepdims=True)


def naive_softmax(scores, axis=-1):
    exps = np.exp(scores)
    return exps / np.sum(exps, axis=axis, keepdims=True)


def last_axis_softmax(scores, axis=-1):
    return solution("stable_softmax")(scores, axis=-1)


def in_place_softmax(scores, axis=-1):
    scores -= np.max(scores, axis=axis, keepdims=True)
    exps = np.exp(scores)
    return exps / np.sum(exps, axis=axis, keepdims=True)


def no_return_softmax(scores, axis=-1):
    solution("stable_softmax")(scores, axis)


def query_axis_lookup(query, keys, values):
    weights = solution("stable_softmax")(query @ keys.T, axis=0)
    return weights @ values, weights


def raw_score_lookup(query, keys, values):
    scores = query @ keys.T
    return scores @ values, scores


def output_only_lookup(query, keys, values):
    return solution("soft_lookup")(query, keys, values)[0]


def unit_length_query(keys, level):
    query = solution("equal_score_query")(keys, level)
    return query / np.linalg.norm(query)


def orthogonal_for_every_level(keys, level):
    return solution("equal_score_query")(keys, 0.0)


def zero_vector_for_level_zero(keys, level):
    return np.zeros(keys.shape[1]) if level == 0 else solution("equal_score_query")(keys, level)


def orthogonal_when_it_can(keys, level):
    n, d = keys.shape
    return solution("equal_score_query")(keys, 0.0 if n < d else level)


def unchecked_least_squares(keys, level):
    query = np.linalg.lstsq(keys, np.full(keys.shape[0], float(level)), rcond=None)[0]
    if level == 0:
        _, singular, vt = np.linalg.svd(keys, full_matrices=True)
        rank = int(np.sum(singular > 1e-10 * singular.max()))
        return vt[min(rank, keys.shape[1] - 1)]  # no ValueError when the keys span the space
    return query


MISTAKES = [  # (student's name, wrong code, {cell it loses: a fragment of its message})
    ("relevance_scores", lambda query, keys: query * keys, {"relevance_tests": "one number per key",
                                                            "relevance_batch_tests": "relevance_scores"}),
    ("relevance_scores", lambda query, keys: keys @ query.T, {"relevance_batch_tests": "looks transposed"}),
    ("stable_softmax", naive_softmax, {"softmax_stability_tests": "np.exp overflows"}),
    ("stable_softmax", global_max_softmax, {"softmax_stability_tests": "max of each row"}),
    ("stable_softmax", last_axis_softmax, {"softmax_tests": "normalised along axis 1 instead of axis 0",
                                           "softmax_stability_tests": "normalised along axis"}),
    ("stable_softmax", in_place_softmax, {"softmax_tests": "changed one of its input arrays in place",
                                          "softmax_stability_tests": "in place"}),
    ("stable_softmax", no_return_softmax, {"softmax_tests": "forget the `return`",
                                           "softmax_stability_tests": "forget the `return`"}),
    ("zero_score_weight", 1 / 3, {"zero_score_tests": "1/3 is the uniform share: a score of 0 is not neutral"}),
    ("zero_score_weight", 0.0, {"zero_score_tests": "does not mean weight 0"}),
    ("zero_score_weight", "0.11", {"zero_score_tests": "should be a number"}),
    ("soft_lookup", query_axis_lookup, {"soft_lookup_batch_tests": "normalised along axis 0 instead of axis -1"}),
    ("soft_lookup", raw_score_lookup, {"soft_lookup_tests": "raw relevance scores",
                                       "soft_lookup_batch_tests": "raw relevance scores"}),
    ("soft_lookup", output_only_lookup, {"soft_lookup_tests": "should return a pair",
                                         "soft_lookup_batch_tests": "should return a pair"}),
    ("equal_score_query", unit_length_query, {"equal_scores_tests": "Do not rescale"}),
    ("equal_score_query", orthogonal_for_every_level, {"equal_scores_tests": "your code raised ValueError"}),
    ("equal_score_query", zero_vector_for_level_zero, {"orthogonal_query_tests": "returned the zero vector",
                                                       "no_equal_scores_tests": "should raise ValueError"}),
    ("equal_score_query", orthogonal_when_it_can, {"equal_scores_tests": "orthogonal to every key (all scores 0)"}),
    ("equal_score_query", unchecked_least_squares, {"no_equal_scores_tests": "should raise ValueError"}),
]


@pytest.mark.parametrize("name, fn, expected", MISTAKES)
def test_each_classic_mistake_loses_exactly_its_cells_with_its_message(name, fn, expected):
    assert_loses_exactly(EXERCISES, name, fn, expected)


def test_a_global_max_fails_a_visible_check_not_only_a_hidden_one():
    with pytest.raises(Wrong, match="max of each row"):
        grading.check("softmax_stability_tests", global_max_softmax)


def test_the_visible_check_prints_one_line_and_an_unfinished_exercise_says_so(capsys):
    grading.check("softmax_tests", solution("stable_softmax"))
    assert capsys.readouterr().out.count("\n") == 1

    def stub(scores, axis=-1):
        raise NotImplementedError()

    with pytest.raises(NotDone, match=r"^Exercise 2 \(shapes and axis\) is not done yet"):
        grading.check("softmax_tests", stub)
    with pytest.raises(NotDone, match=r"^Exercise 3 \(a score of 0\) is not done yet"):
        grading.check("zero_score_tests", None)


def test_a_question_answered_with_a_function_is_told_to_give_a_number():
    assert "should return a number, not a function" in verdicts(EXERCISES, "zero_score_tests", lambda: 0.1065)


# ----------------------------------------------------------------------------- whole notebooks, autograded

@pytest.mark.slow
def test_overflow_wrong_axis_and_a_reference_call_lose_exactly_their_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # softmax without subtracting the max: fine for small scores, nan near 1000
    notebook = replace_solution(notebook, "softmax_solution", """
        exps = np.exp(scores)
        return exps / np.sum(exps, axis=axis, keepdims=True)
    """)
    # weights normalised over the queries instead of the keys: invisible for a single query
    notebook = replace_solution(notebook, "soft_lookup_solution", """
        weights = stable_softmax(relevance_scores(query, keys), axis=0)
        return weights @ values, weights
    """)
    # the reference, reached through an alias
    notebook = replace_solution(notebook, "equal_scores_solution", """
        from xattn_edu.chapters.library_lookup.reference import equal_score_query as f
        return f(keys, level)
    """)
    # the uniform share: a score of 0 taken for neutral
    notebook = replace_solution(notebook, "zero_score_answer", "zero_score_weight = 1 / 3")
    # tampered test cells are restored from the master copy and graded
    notebook = replace_cell(notebook, "relevance_tests", "pass")
    notebook = delete_cell(notebook, "softmax_tests")
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "softmax_stability_tests": 0, "soft_lookup_batch_tests": 0, "zero_score_tests": 0,
                      "equal_scores_tests": 0, "orthogonal_query_tests": 0, "no_equal_scores_tests": 0}
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "np.exp overflows" in reasons["softmax_stability_tests"]
    assert "normalised along axis 0 instead of axis -1" in reasons["soft_lookup_batch_tests"]
    assert "not neutral" in reasons["zero_score_tests"]
    reference = "xattn_edu.chapters.library_lookup.reference.equal_score_query"
    assert f"calls the reference implementation `{reference}`" in reasons["equal_scores_tests"]


@pytest.mark.slow
def test_a_reference_softmax_elementwise_scores_and_a_missing_error_lose_exactly_their_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # elementwise products summed over the last axis: right for one query, broken for a batch
    notebook = replace_solution(notebook, "relevance_solution", "return np.sum(query * keys, axis=-1)")
    # the reference softmax (imported by the setup cell); soft_lookup reaches it too, through stable_softmax
    notebook = replace_solution(notebook, "softmax_solution", "return reference.softmax(scores, axis=axis)")
    # least squares without checking the result: no ValueError when no query ties the scores
    notebook = replace_solution(notebook, "equal_scores_solution", """
        n, d = keys.shape
        _, singular, vt = np.linalg.svd(keys, full_matrices=True)
        rank = int(np.sum(singular > 1e-10 * singular.max()))
        if level == 0:
            return vt[min(rank, d - 1)]
        return np.linalg.lstsq(keys, np.full(n, float(level)), rcond=None)[0]
    """)
    scores = grade_scores(notebook, CHAPTER, tmp_path)
    assert scores == {**POINTS, "relevance_batch_tests": 0, "softmax_tests": 0, "softmax_stability_tests": 0,
                      "soft_lookup_tests": 0, "soft_lookup_batch_tests": 0, "no_equal_scores_tests": 0}
