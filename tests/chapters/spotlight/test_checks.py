"""Chapter 2 grading: the checks catch each classic mistake with its message, and grading outcomes are exact.

The first part calls the checks of :mod:`xattn_edu.chapters.spotlight.checks` directly (fast) on the
solution's functions (taken from ``solutions/02_spotlight.py``) and on broken variants. The second
part autogrades whole notebooks with nbgrader (seconds each), so each mistake notebook carries one
independent mistake per exercise and the test asserts every cell's score.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers.grading import grade, replace_solution, solution_notebook
from xattn_edu.chapters.spotlight import checks as grading
from xattn_edu.chapters.spotlight import reference as spotlight
from xattn_edu.nn import attention

CHAPTER = "02_spotlight"
POINTS = {
    "entropy_tests": 2,
    "entropy_zeros_tests": 1,
    "scaled_scores_tests": 2,
    "temperature_tests": 2,
    "temperature_extremes_tests": 1,
    "masked_attention_tests": 2,
    "masked_attention_mask_tests": 2,
    "masked_attention_empty_tests": 1,
}
CHECKS = {  # exercise -> (visible, hidden) check pairs, one per graded cell
    "attention_entropy": [(grading.check_entropy, grading.check_entropy_hidden),
                          (grading.check_entropy_zeros, grading.check_entropy_zeros_hidden)],
    "scaled_scores": [(grading.check_scaled_scores, grading.check_scaled_scores_hidden)],
    "temperature_softmax": [(grading.check_temperature, grading.check_temperature_hidden),
                            (grading.check_temperature_extremes, grading.check_temperature_extremes_hidden)],
    "masked_attention": [(grading.check_masked_attention, grading.check_masked_attention_hidden),
                         (grading.check_masked_attention_mask, grading.check_masked_attention_mask_hidden),
                         (grading.check_masked_attention_empty, grading.check_masked_attention_empty_hidden)],
}


@functools.cache
def solution(name: str):
    """The solution's function ``name``, executed from the chapter source's solution cells."""
    namespace = {"np": np, "math": math, "torch": torch}
    for cell in solution_notebook(CHAPTER).cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").endswith("_solution"):
            exec(cell.source, namespace)
    return namespace[name]


def outcomes(fn, exercise: str) -> list[str]:
    """For each graded cell of ``exercise``: "ok", or the AssertionError message of the first failing check."""
    results = []
    for visible, hidden in CHECKS[exercise]:
        try:
            visible(fn)
            hidden(fn)
            results.append("ok")
        except AssertionError as err:
            results.append(str(err))
    return results


# ----------------------------------------------------------------------------- the checks, called directly

@pytest.mark.parametrize("exercise", CHECKS)
def test_the_solution_passes_every_check(exercise, capsys):
    assert outcomes(solution(exercise), exercise) == ["ok"] * len(CHECKS[exercise])
    assert capsys.readouterr().err == ""  # stderr in a test cell scores 0


def entropy_log_of_zero(weights):
    return -np.sum(weights * np.log(weights), axis=-1)


def entropy_in_bits(weights):
    positive = weights > 0
    return -np.sum(np.where(positive, weights * np.log2(np.where(positive, weights, 1.0)), 0.0), axis=-1)


def entropy_without_minus(weights):
    return -solution("attention_entropy")(weights)


def entropy_with_axis_0(weights):
    positive = weights > 0
    return -np.sum(np.where(positive, weights * np.log(np.where(positive, weights, 1.0)), 0.0), axis=0)


def test_entropy_mistakes_lose_their_cell_with_a_message():
    zeros = outcomes(entropy_log_of_zero, "attention_entropy")
    assert zeros[0] == "ok" and "np.log(0) is -inf" in zeros[1]
    assert all("log base 2" in message for message in outcomes(entropy_in_bits, "attention_entropy"))
    assert "the sign is flipped" in outcomes(entropy_without_minus, "attention_entropy")[0]
    assert "summed over axis 0 instead of the last axis" in outcomes(entropy_with_axis_0, "attention_entropy")[0]


def scores_unscaled(query, keys):
    return query @ keys.T


def scores_over_d(query, keys):
    return query @ keys.T / keys.shape[-1]


def scores_over_sqrt_n(query, keys):
    return query @ keys.T / np.sqrt(keys.shape[0])


@pytest.mark.parametrize("fn, phrase", [
    (scores_unscaled, "raw dot products: divide them by sqrt(d)"),
    (scores_over_d, "divided by d = 4; divide by its square root"),
    (scores_over_sqrt_n, "divided by sqrt(n) = sqrt(3) (the number of keys)"),
])
def test_scale_mistakes_are_named(fn, phrase):
    [message] = outcomes(fn, "scaled_scores")
    assert phrase in message


def temperature_without_max(scores, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    exps = np.exp(scores / temperature)
    return exps / np.sum(exps, axis=-1, keepdims=True)


def temperature_multiplied(scores, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    return solution("temperature_softmax")(scores * temperature * temperature, temperature)


def temperature_unchecked(scores, temperature):
    scaled = scores / temperature
    exps = np.exp(scaled - np.max(scaled, axis=-1, keepdims=True))
    return exps / np.sum(exps, axis=-1, keepdims=True)


def test_temperature_mistakes_lose_their_cell_with_a_message():
    overflow = outcomes(temperature_without_max, "temperature_softmax")
    assert overflow[0] == "ok" and "np.exp overflows" in overflow[1]
    assert "multiplied by the temperature" in outcomes(temperature_multiplied, "temperature_softmax")[0]
    unchecked = outcomes(temperature_unchecked, "temperature_softmax")
    assert "should raise ValueError" in unchecked[0] and unchecked[1] == "ok"


def attention_mask_after_softmax(query, keys, values, mask=None):
    weights = torch.softmax(query @ keys.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ values, weights


def attention_nan_rows(query, keys, values, mask=None):
    scores = query @ keys.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ values, weights


def attention_mask_ignored(query, keys, values, mask=None):
    return solution("masked_attention")(query, keys, values, None)


def attention_mask_inverted(query, keys, values, mask=None):
    return solution("masked_attention")(query, keys, values, None if mask is None else ~mask)


def attention_unscaled(query, keys, values, mask=None):
    return solution("masked_attention")(query * math.sqrt(query.shape[-1]), keys, values, mask)


def attention_numpy_output(query, keys, values, mask=None):
    output, weights = solution("masked_attention")(query, keys, values, mask)
    return output.numpy(), weights


def test_masking_mistakes_lose_exactly_their_cells_with_a_message():
    after = outcomes(attention_mask_after_softmax, "masked_attention")
    assert after[0] == "ok" and after[2] == "ok"
    assert "the mask is applied after the softmax" in after[1]
    nan_rows = outcomes(attention_nan_rows, "masked_attention")
    assert nan_rows[:2] == ["ok", "ok"] and "softmax of all -inf is 0/0 = nan" in nan_rows[2]
    ignored = outcomes(attention_mask_ignored, "masked_attention")
    assert ignored[0] == "ok" and "the mask is ignored" in ignored[1] and "must get weights 0" in ignored[2]
    assert "the mask is inverted" in outcomes(attention_mask_inverted, "masked_attention")[1]
    unscaled = outcomes(attention_unscaled, "masked_attention")
    assert all("not divided by sqrt(d) = sqrt(" in message for message in unscaled[:2])
    assert "should be a torch tensor" in outcomes(attention_numpy_output, "masked_attention")[0]


def entropy_by_reference(weights):
    return spotlight.attention_entropy(weights)


def entropy_by_torch_library(weights):
    return torch.special.entr(torch.as_tensor(weights)).sum(-1).numpy()


def scores_by_reference(query, keys):
    from xattn_edu.chapters.spotlight.reference import scaled_scores as shortcut

    return shortcut(query, keys)


def temperature_by_torch(scores, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    return torch.softmax(torch.as_tensor(scores) / temperature, dim=-1).numpy()


def attention_by_reference(query, keys, values, mask=None):
    return attention.scaled_dot_product_attention(query, keys, values, mask, return_weights=True)


def attention_by_fused_kernel(query, keys, values, mask=None):
    weights = solution("masked_attention")(query, keys, values, mask)[1]
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask), weights


@pytest.mark.parametrize("fn, exercise, forbidden", [
    (entropy_by_reference, "attention_entropy", "xattn_edu.chapters.spotlight.reference.attention_entropy"),
    (entropy_by_torch_library, "attention_entropy", "torch.special.entr"),
    (scores_by_reference, "scaled_scores", "xattn_edu.chapters.spotlight.reference.scaled_scores"),
    (temperature_by_torch, "temperature_softmax", "torch.softmax"),
    (attention_by_reference, "masked_attention", "xattn_edu.nn.attention.scaled_dot_product_attention"),
    (attention_by_fused_kernel, "masked_attention", "torch.nn.functional.scaled_dot_product_attention"),
])
def test_calling_a_reference_fails_every_cell_of_the_exercise(fn, exercise, forbidden):
    for message in outcomes(fn, exercise):
        assert f"calls the reference implementation `{forbidden}`" in message


# ----------------------------------------------------------------------------- whole notebooks, autograded

@pytest.mark.slow
def test_classic_mistakes_lose_exactly_their_points(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # np.log of exact zeros: nan entropy for one-hot or masked rows
    notebook = replace_solution(notebook, "entropy_solution", "return -np.sum(weights * np.log(weights), axis=-1)")
    # forgot the 1/sqrt(d) scale
    notebook = replace_solution(notebook, "scaled_scores_solution", "return query @ keys.T")
    # no max subtraction: fine at T >= 0.5, nan at T = 0.001
    notebook = replace_solution(notebook, "temperature_solution", """
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        exps = np.exp(scores / temperature)
        return exps / np.sum(exps, axis=-1, keepdims=True)
    """)
    # the mask applied after the softmax: masked keys are 0 but the rows no longer sum to 1
    notebook = replace_solution(notebook, "masked_attention_solution", """
        weights = torch.softmax(query @ keys.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
        if mask is not None:
            weights = weights * mask
        return weights @ values, weights
    """)
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "entropy_zeros_tests": 0, "scaled_scores_tests": 0, "temperature_extremes_tests": 0,
                      "masked_attention_mask_tests": 0}
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "np.log(0) is -inf" in reasons["entropy_zeros_tests"]
    assert "raw dot products" in reasons["scaled_scores_tests"]
    assert "np.exp overflows" in reasons["temperature_extremes_tests"]
    assert "applied after the softmax" in reasons["masked_attention_mask_tests"]


@pytest.mark.slow
def test_solutions_that_call_the_references_score_zero_on_those_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    notebook = replace_solution(notebook, "entropy_solution", """
        from xattn_edu.chapters.spotlight.reference import attention_entropy as shortcut
        return shortcut(weights)
    """)
    notebook = replace_solution(notebook, "scaled_scores_solution", """
        import importlib
        return getattr(importlib.import_module("xattn_edu.chapters.spotlight.reference"), "scaled_scores")(query, keys)
    """)
    notebook = replace_solution(notebook, "temperature_solution", """
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        return torch.softmax(torch.as_tensor(scores) / temperature, dim=-1).numpy()
    """)
    notebook = replace_solution(notebook, "masked_attention_solution", """
        return attention.scaled_dot_product_attention(query, keys, values, mask, return_weights=True)
    """)
    report = grade(notebook, CHAPTER, tmp_path)
    assert {e.grade_id: e.score for e in report.exercises} == {grade_id: 0 for grade_id in POINTS}
    assert all("calls the reference implementation" in e.reason for e in report.exercises)
