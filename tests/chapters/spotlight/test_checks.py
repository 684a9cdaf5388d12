"""Chapter 2 grading: the exercise declarations' verdicts and messages, then whole-notebook grading outcomes.

The first part judges code directly with the declarations of :mod:`xattn_edu.chapters.spotlight.checks`
(fast): the chapter's solution passes every cell on many seeds, the references pass their own hidden
cases, calls to a reference fail, and each classic mistake loses exactly the cells it should, with its
message; the masked softmax is also judged on its gradient. The slow tests autograde whole notebooks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.exercises import assert_loses_exactly, lost, outcomes, solution_functions, verdicts
from tests.helpers.grading import grade, points_of, replace_solution, solution_notebook
from xattn_edu.chapters.spotlight import checks as grading
from xattn_edu.chapters.spotlight import reference as spotlight
from xattn_edu.chapters.support.exercise import NotDone, Wrong
from xattn_edu.nn import attention

CHAPTER = "02_spotlight"
EXERCISES = grading.EXERCISES
POINTS = {
    "entropy_tests": 2,
    "entropy_zeros_tests": 1,
    "scaled_scores_tests": 2,
    "temperature_tests": 2,
    "temperature_extremes_tests": 1,
    "jensen_tests": 1,
    "padding_bound_tests": 1,
    "masked_softmax_tests": 2,
    "masked_softmax_empty_tests": 2,
}
SEEDS = range(20)
REFERENCES = {
    "attention_entropy": spotlight.attention_entropy,
    "scaled_scores": spotlight.scaled_scores,
    "temperature_softmax": spotlight.temperature_softmax,
    "masked_softmax": attention.masked_softmax,
}


def solution(name):
    return solution_functions(CHAPTER)[name]


def test_every_graded_cell_is_declared_with_its_points():
    assert points_of(CHAPTER) == POINTS
    assert {exercise.grade_id for exercise in EXERCISES} == set(POINTS)


@pytest.mark.parametrize("name", sorted({exercise.name for exercise in EXERCISES}))
def test_the_solution_passes_every_cell_on_many_seeds(name, capsys):
    assert lost(EXERCISES, name, solution(name), SEEDS) == {}
    assert capsys.readouterr().err == ""  # stderr in a test cell scores 0


@pytest.mark.parametrize("exercise", list(EXERCISES), ids=lambda e: e.grade_id)
def test_the_reference_passes_its_own_hidden_cases_on_many_seeds(exercise):
    reference = REFERENCES.get(exercise.name, exercise.reference)
    assert verdicts(EXERCISES, exercise.grade_id, reference, range(200), student=False) == ""


# ----------------------------------------------------------------------------- references and library shortcuts

def entropy_by_torch_library(weights):
    return torch.special.entr(torch.as_tensor(weights)).sum(-1).numpy()


def temperature_by_torch(scores, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    return torch.softmax(torch.as_tensor(scores) / temperature, dim=-1).numpy()


def temperature_by_log_softmax(scores, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    return torch.log_softmax(torch.as_tensor(scores) / temperature, dim=-1).exp().numpy()


def masked_by_attention_weights(scores, mask=None):
    eye = torch.eye(scores.shape[-1], dtype=scores.dtype)
    return attention.attention_weights(scores.unsqueeze(-2) @ eye, eye, mask, scale=1.0).squeeze(-2)


@pytest.mark.parametrize("name, fn, forbidden", [
    *((name, fn, f"{fn.__module__}.{fn.__name__}") for name, fn in REFERENCES.items()),
    ("attention_entropy", entropy_by_torch_library, "torch.special.entr"),
    ("temperature_softmax", temperature_by_torch, "torch.softmax"),
    ("temperature_softmax", temperature_by_log_softmax, "torch.log_softmax"),  # exp(log_softmax) is a softmax
    ("masked_softmax", masked_by_attention_weights, "xattn_edu.nn.attention.attention_weights"),
])
def test_calling_a_reference_fails_every_cell_of_the_exercise(name, fn, forbidden):
    messages = outcomes(EXERCISES, name, fn)
    assert messages and all(f"calls the reference implementation `{forbidden}`" in m for m in messages.values()), \
        messages


# ----------------------------------------------------------------------------- mistakes, each losing its cells

def entropy_log_of_zero(weights):
    return -np.sum(weights * np.log(weights), axis=-1)


def entropy_in_bits(weights):
    return solution("attention_entropy")(weights) / math.log(2)


def entropy_without_minus(weights):
    return -solution("attention_entropy")(weights)


def entropy_over_axis_0(weights):
    positive = weights > 0
    return -np.sum(np.where(positive, weights * np.log(np.where(positive, weights, 1.0)), 0.0), axis=0)


def temperature_without_max(scores, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    exps = np.exp(scores / temperature)
    return exps / np.sum(exps, axis=-1, keepdims=True)


def temperature_multiplied(scores, temperature):
    return solution("temperature_softmax")(scores * temperature * temperature, temperature)


def temperature_unchecked(scores, temperature):
    scaled = scores / temperature
    exps = np.exp(scaled - np.max(scaled, axis=-1, keepdims=True))
    return exps / np.sum(exps, axis=-1, keepdims=True)


def masked_after_softmax(scores, mask=None):
    weights = torch.softmax(scores, dim=-1)
    return weights if mask is None else weights * mask


def masked_nan_rows(scores, mask=None):
    return torch.softmax(scores if mask is None else scores.masked_fill(~mask, float("-inf")), dim=-1)


def masked_large_negative(scores, mask=None):
    return torch.softmax(scores if mask is None else scores.masked_fill(~mask, -1e9), dim=-1)


def masked_additive_nan_to_num(scores, mask=None):
    if mask is None:
        return torch.softmax(scores, dim=-1)
    additive = torch.zeros(mask.shape, dtype=scores.dtype).masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores + additive, dim=-1), nan=0.0)


def masked_ignored(scores, mask=None):
    return torch.softmax(scores, dim=-1)


def masked_inverted(scores, mask=None):
    return solution("masked_softmax")(scores, None if mask is None else ~mask)


def masked_numpy(scores, mask=None):
    return solution("masked_softmax")(scores, mask).detach().numpy()


def masked_detached(scores, mask=None):
    return solution("masked_softmax")(scores.detach(), mask)


def masked_detached_normaliser(scores, mask=None):
    """Right weights, wrong gradient: the normaliser is treated as a constant."""
    exps = torch.exp(scores - scores.max(dim=-1, keepdim=True).values.detach())
    if mask is not None:
        exps = exps * mask
    total = exps.sum(dim=-1, keepdim=True).detach()
    return torch.where(total > 0, exps / torch.where(total > 0, total, 1.0), 0.0)


MISTAKES = [  # (student's name, wrong code, {cell it loses: a fragment of its message})
    ("attention_entropy", entropy_log_of_zero, {"entropy_zeros_tests": "np.log(0) is -inf"}),
    ("attention_entropy", entropy_in_bits, {"entropy_tests": "log base 2", "entropy_zeros_tests": "log base 2"}),
    ("attention_entropy", entropy_without_minus, {"entropy_tests": "the sign is flipped",
                                                  "entropy_zeros_tests": "the sign is flipped"}),
    ("attention_entropy", entropy_over_axis_0, {"entropy_tests": "summed over axis 0 instead of the last axis",
                                                "entropy_zeros_tests": "summed over axis 0 instead of the last"}),
    ("scaled_scores", lambda query, keys: query @ keys.T, {"scaled_scores_tests": "raw dot products"}),
    ("scaled_scores", lambda query, keys: query @ keys.T / keys.shape[-1], {"scaled_scores_tests": "divided by d = 4"}),
    ("scaled_scores", lambda query, keys: query @ keys.T / np.sqrt(keys.shape[0]),
     {"scaled_scores_tests": "divided by sqrt(n) = sqrt(3) (the number of keys)"}),
    ("temperature_softmax", temperature_without_max, {"temperature_extremes_tests": "np.exp overflows"}),
    ("temperature_softmax", temperature_multiplied, {"temperature_tests": "multiplied by the temperature",
                                                     "temperature_extremes_tests": "multiplied by the temperature"}),
    ("temperature_softmax", temperature_unchecked, {"temperature_tests": "should raise ValueError"}),
    ("mean_of_x", 5.0, {"jensen_tests": "never drawn"}),
    ("mean_of_x", 1.0, {"jensen_tests": "sum of the weights"}),
    ("mean_of_x", math.log(3), {"jensen_tests": "log E[X], the bound itself"}),
    ("padding_bound", math.log(10), {"padding_bound_tests": "padding keys get weight 0"}),
    ("padding_bound", 6, {"padding_bound_tests": "that is n+ itself"}),
    ("padding_bound", math.log2(6), {"padding_bound_tests": "in bits"}),
    ("masked_softmax", masked_after_softmax, {"masked_softmax_tests": "applied after the softmax",
                                              "masked_softmax_empty_tests": "applied after the softmax"}),
    ("masked_softmax", masked_nan_rows, {"masked_softmax_empty_tests": "0/0 = nan"}),
    ("masked_softmax", masked_large_negative, {"masked_softmax_empty_tests": "uniform weights"}),
    ("masked_softmax", masked_additive_nan_to_num, {"masked_softmax_empty_tests": "nan_to_num only hides it"}),
    ("masked_softmax", masked_ignored, {"masked_softmax_tests": "the mask is ignored",
                                        "masked_softmax_empty_tests": "the mask is ignored"}),
    ("masked_softmax", masked_inverted, {"masked_softmax_tests": "the mask is inverted",
                                         "masked_softmax_empty_tests": "the mask is inverted"}),
    ("masked_softmax", masked_numpy, {"masked_softmax_tests": "carries gradients back to scores",
                                      "masked_softmax_empty_tests": "carries gradients back to scores"}),
    ("masked_softmax", masked_detached, {"masked_softmax_tests": "carries gradients back to scores",
                                         "masked_softmax_empty_tests": "carries gradients back to scores"}),
    ("masked_softmax", masked_detached_normaliser, {"masked_softmax_tests": "do not depend on the scores",
                                                    "masked_softmax_empty_tests": "do not depend on the scores"}),
]


@pytest.mark.parametrize("name, fn, expected", MISTAKES)
def test_each_classic_mistake_loses_exactly_its_cells_with_its_message(name, fn, expected):
    assert_loses_exactly(EXERCISES, name, fn, expected)


def test_an_additive_mask_with_nan_to_num_passes_the_forward_checks_and_fails_only_on_the_gradient():
    exercise = EXERCISES["masked_softmax_empty_tests"]
    for case in exercise.visible():
        (weights, gradients), (expected_weights, _) = (exercise.result_of(masked_additive_nan_to_num, case),
                                                      exercise.expected(case))
        np.testing.assert_allclose(weights, expected_weights, atol=1e-12)  # the forward pass is right
        assert np.isnan(gradients["scores"]).any()
    with pytest.raises(Wrong, match="gradient that .* passes back to the scores contains nan"):
        grading.check("masked_softmax_empty_tests", masked_additive_nan_to_num)


def test_unfinished_exercises_and_unanswered_questions_say_so_in_one_line():
    def stub(scores, mask=None):
        raise NotImplementedError()

    with pytest.raises(NotDone, match=r"^Exercise 5 \(masks\) is not done yet"):
        grading.check("masked_softmax_tests", stub)
    with pytest.raises(NotDone, match=r"^Exercise 4 \(the bound with padding\) is not done yet"):
        grading.check("padding_bound_tests", None)


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
    # the zero weights counted in E[X]; the padding bound right
    notebook = replace_solution(notebook, "bound_answers", "mean_of_x = 5.0\npadding_bound = math.log(6)")
    # an additive -inf mask and nan_to_num: right weights, nan gradient for a row that sees nothing
    notebook = replace_solution(notebook, "masked_softmax_solution", """
        if mask is None:
            return torch.softmax(scores, dim=-1)
        additive = torch.zeros(mask.shape, dtype=scores.dtype).masked_fill(~mask, float("-inf"))
        return torch.nan_to_num(torch.softmax(scores + additive, dim=-1), nan=0.0)
    """)
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "entropy_zeros_tests": 0, "scaled_scores_tests": 0, "temperature_extremes_tests": 0,
                      "jensen_tests": 0, "masked_softmax_empty_tests": 0}, report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "np.log(0) is -inf" in reasons["entropy_zeros_tests"]
    assert "raw dot products" in reasons["scaled_scores_tests"]
    assert "np.exp overflows" in reasons["temperature_extremes_tests"]
    assert "never drawn" in reasons["jensen_tests"]
    assert "nan_to_num only hides it" in reasons["masked_softmax_empty_tests"]


@pytest.mark.slow
def test_solutions_that_call_the_references_score_zero_on_those_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    notebook = replace_solution(notebook, "entropy_solution", "return reference.attention_entropy(weights)")
    notebook = replace_solution(notebook, "scaled_scores_solution", "return reference.scaled_scores(query, keys)")
    notebook = replace_solution(notebook, "temperature_solution", """
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        return torch.softmax(torch.as_tensor(scores) / temperature, dim=-1).numpy()
    """)
    notebook = replace_solution(notebook, "masked_softmax_solution", "return reference_masked_softmax(scores, mask)")
    report = grade(notebook, CHAPTER, tmp_path)
    called = {"entropy_tests", "entropy_zeros_tests", "scaled_scores_tests", "temperature_tests",
              "temperature_extremes_tests", "masked_softmax_tests", "masked_softmax_empty_tests"}
    assert {e.grade_id: e.score for e in report.exercises} == {g: 0 if g in called else p for g, p in POINTS.items()}
    assert all("calls the reference implementation" in e.reason for e in report.exercises if e.grade_id in called)
