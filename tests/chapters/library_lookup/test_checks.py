"""Chapter 1 grading: the checks' verdicts and messages, then whole-notebook grading outcomes.

The first tests call the check functions directly (milliseconds): correct code passes every check,
the reference fails every check, and each classic mistake fails the check meant to catch it with its
teaching message. The notebook tests autograde whole notebooks with nbgrader (seconds each), so every
mistake notebook carries several independent mistakes and the test asserts every cell's score.
"""

import numpy as np
import pytest

from tests.helpers.grading import (
    delete_cell,
    grade,
    grade_scores,
    replace_cell,
    replace_solution,
    solution_notebook,
)
from xattn_edu.chapters.library_lookup import checks as grading
from xattn_edu.chapters.library_lookup import reference as lookup

CHAPTER = "01_library_lookup"
POINTS = {
    "relevance_tests": 1,
    "relevance_batch_tests": 1,
    "softmax_tests": 1,
    "softmax_stability_tests": 2,
    "soft_lookup_tests": 1,
    "soft_lookup_batch_tests": 1,
    "orthogonal_query_tests": 2,
    "orthogonal_impossible_tests": 1,
}



def relevance_scores(query, keys):
    return query @ keys.T


def stable_softmax(scores, axis=-1):
    exps = np.exp(scores - np.max(scores, axis=axis, keepdims=True))
    return exps / np.sum(exps, axis=axis, keepdims=True)


def soft_lookup(query, keys, values):
    weights = stable_softmax(relevance_scores(query, keys))
    return weights @ values, weights


def orthogonal_query(keys, rng):
    """Gram-Schmidt instead of the reference's SVD: remove from a random vector its part in the keys' span."""
    basis, triangle = np.linalg.qr(keys.T)  # (d, min(n, d)) orthonormal columns spanning the keys
    basis = basis[:, np.abs(np.diag(triangle)) > 1e-10 * np.abs(triangle).max()]
    for _ in range(3):
        query = rng.standard_normal(keys.shape[1])
        query -= basis @ (basis.T @ query)
        if np.linalg.norm(query) > 1e-8:
            return query
    raise ValueError("the keys span the space")


CORRECT = {
    "relevance": relevance_scores,
    "relevance_batch": relevance_scores,
    "softmax": stable_softmax,
    "softmax_stability": stable_softmax,
    "soft_lookup": soft_lookup,
    "soft_lookup_batch": soft_lookup,
    "orthogonal_query": orthogonal_query,
    "orthogonal_query_impossible": orthogonal_query,
}
REFERENCE = {
    "relevance": lookup.relevance_scores,
    "softmax": lookup.softmax,
    "soft_lookup": lookup.soft_lookup,
    "orthogonal_query": lookup.orthogonal_query,
}


@pytest.mark.parametrize("check", list(CORRECT))
def test_correct_code_written_another_way_passes_visible_and_hidden_checks(check):
    getattr(grading, f"check_{check}")(CORRECT[check])
    getattr(grading, f"check_{check}_hidden")(CORRECT[check])


@pytest.mark.parametrize("check", list(CORRECT))
def test_the_reference_itself_fails_every_check(check):
    reference = REFERENCE[check.removesuffix("_batch").removesuffix("_stability").removesuffix("_impossible")]
    expected = "calls the reference implementation `xattn_edu.chapters.library_lookup.reference"
    with pytest.raises(AssertionError, match=expected):
        getattr(grading, f"check_{check}")(reference)


def naive_softmax(scores, axis=-1):
    exps = np.exp(scores)
    return exps / np.sum(exps, axis=axis, keepdims=True)


def global_max_softmax(scores, axis=-1):
    exps = np.exp(scores - np.max(scores))
    return exps / np.sum(exps, axis=axis, keepdims=True)


def last_axis_softmax(scores, axis=-1):
    return stable_softmax(scores, axis=-1)


def in_place_softmax(scores, axis=-1):
    scores -= np.max(scores, axis=axis, keepdims=True)
    exps = np.exp(scores)
    return exps / np.sum(exps, axis=axis, keepdims=True)


def no_return_softmax(scores, axis=-1):
    stable_softmax(scores, axis)


def query_axis_lookup(query, keys, values):
    weights = stable_softmax(relevance_scores(query, keys), axis=0)
    return weights @ values, weights


def raw_score_lookup(query, keys, values):
    scores = relevance_scores(query, keys)
    return scores @ values, scores


def output_only_lookup(query, keys, values):
    return soft_lookup(query, keys, values)[0]


def zero_query(keys, rng):
    return np.zeros(keys.shape[1])


def random_query(keys, rng):
    return rng.standard_normal(keys.shape[1])


def never_raises(keys, rng):
    try:
        return orthogonal_query(keys, rng)
    except ValueError:
        return np.ones(keys.shape[1])


@pytest.mark.parametrize(
    "check, fn, message",
    [
        ("relevance", lambda query, keys: query * keys, "one number per key"),
        ("relevance_batch", lambda query, keys: keys @ query.T, "looks transposed"),
        ("relevance_batch_hidden", lambda query, keys: keys @ query.T, "looks transposed"),  # Tq == n too
        ("softmax_stability", naive_softmax, "np.exp overflows"),
        ("softmax_stability_hidden", global_max_softmax, "max of each row"),
        ("softmax", last_axis_softmax, "normalised along axis 1 instead of axis 0"),
        ("softmax", in_place_softmax, "changed its input array in place"),
        ("softmax", no_return_softmax, "forget the `return`"),
        ("soft_lookup_batch", query_axis_lookup, "normalised along axis 0 instead of axis -1"),
        ("soft_lookup", raw_score_lookup, "raw relevance scores"),
        ("soft_lookup", output_only_lookup, "should return a pair"),
        ("orthogonal_query", zero_query, "zero vector"),
        ("orthogonal_query", random_query, "is not orthogonal to key"),
        ("orthogonal_query_impossible", never_raises, "raise ValueError"),
    ],
)
def test_each_classic_mistake_fails_its_check_with_a_teaching_message(check, fn, message):
    with pytest.raises(AssertionError, match=message.replace("`", ".").replace("(", ".").replace(")", ".")):
        getattr(grading, f"check_{check}")(fn)


def test_a_mistake_that_only_hidden_tests_catch_passes_the_visible_ones():
    grading.check_softmax_stability(global_max_softmax)  # every visible example has a single row


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
    notebook = replace_solution(notebook, "orthogonal_solution", """
        from xattn_edu.chapters.library_lookup.reference import orthogonal_query as f
        return f(keys, rng)
    """)
    # tampered test cells are restored from the master copy and graded
    notebook = replace_cell(notebook, "relevance_tests", "pass")
    notebook = delete_cell(notebook, "softmax_tests")
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "softmax_stability_tests": 0, "soft_lookup_batch_tests": 0,
                      "orthogonal_query_tests": 0, "orthogonal_impossible_tests": 0}
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "np.exp overflows" in reasons["softmax_stability_tests"]
    assert "normalised along axis 0 instead of axis -1" in reasons["soft_lookup_batch_tests"]
    reference = "xattn_edu.chapters.library_lookup.reference.orthogonal_query"
    assert f"calls the reference implementation `{reference}`" in reasons["orthogonal_query_tests"]


@pytest.mark.slow
def test_a_reference_softmax_elementwise_scores_and_a_missing_error_lose_exactly_their_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # elementwise products summed over the last axis: right for one query, broken for a batch
    notebook = replace_solution(notebook, "relevance_solution", "return np.sum(query * keys, axis=-1)")
    # the reference softmax through an alias; soft_lookup reaches it too, through stable_softmax
    notebook = replace_solution(notebook, "softmax_solution", """
        from xattn_edu.chapters.library_lookup.reference import softmax as f
        return f(scores, axis=axis)
    """)
    # no ValueError when the keys span the space: returns the zero vector instead
    notebook = replace_solution(notebook, "orthogonal_solution", """
        d = keys.shape[1]
        _, singular, vt = np.linalg.svd(keys, full_matrices=True)
        rank = int(np.sum(singular > 1e-10 * singular.max()))
        if rank >= d:
            return np.zeros(d)
        return rng.standard_normal(d - rank) @ vt[rank:]
    """)
    scores = grade_scores(notebook, CHAPTER, tmp_path)
    assert scores == {**POINTS, "relevance_batch_tests": 0, "softmax_tests": 0, "softmax_stability_tests": 0,
                      "soft_lookup_tests": 0, "soft_lookup_batch_tests": 0, "orthogonal_impossible_tests": 0}
