"""Chapter 4 grading: every declaration's verdicts and messages, then whole notebooks through the grader.

The first tests judge implementations directly with the declarations (what the grader's verifier
does, milliseconds each): correct code written differently from the reference passes every case of
every cell on many seeds, a call to the reference fails, and each typical mistake fails exactly the
cells meant to catch it, with its message, while passing the others. The slow tests grade whole
notebooks with nbgrader.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.helpers.grading import grade, replace_solution, solution_notebook
from xattn_edu.chapters.superpowers import checks as grading
from xattn_edu.chapters.superpowers import reference as ref

CHAPTER = "04_superpowers"
POINTS = {
    "conditional_variance_tests": 1,
    "conditional_mean_tests": 1,
    "variance_reduction_tests": 1,
    "variance_reduction_multi_tests": 1,
    "readout_tests": 1,
    "readout_gradient_tests": 1,
    "grad_norms_tests": 1,
    "grad_norms_stale_tests": 1,
    "mix_layers_tests": 1,
}
CELLS_OF = {
    "conditional_variance": ["conditional_variance_tests"],
    "conditional_mean": ["conditional_mean_tests"],
    "variance_reduction": ["variance_reduction_tests", "variance_reduction_multi_tests"],
    "attention_readout": ["readout_tests", "readout_gradient_tests"],
    "layer_grad_norms": ["grad_norms_tests", "grad_norms_stale_tests"],
    "mix_layers": ["mix_layers_tests"],
}


def first_failure(grade_id: str, implementation, seed: int = 0) -> str:
    """The judge's message on the first visible or hidden case ``implementation`` gets wrong, or ""."""
    exercise = grading.EXERCISES[grade_id]
    for case in exercise.cases(seed):
        message = exercise.verdict(case, exercise.result_of(implementation, case))
        if message:
            return message
    return ""


# ----------------------------------------------------------------------------- correct code, written differently

def conditional_variance(rho, var_y):
    rho = np.asarray(rho, dtype=float)
    if (abs(rho) > 1).any() or (np.asarray(var_y) < 0).any():
        raise ValueError("impossible input")
    return var_y - rho * rho * var_y


def conditional_mean(x, rho, mean_x, std_x, mean_y, std_y):
    z = (np.asarray(x, dtype=float) - mean_x) / std_x
    return mean_y + std_y * rho * z


def variance_reduction(x, y):
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    centred_x, centred_y = x - x.mean(0), y - y.mean()
    b = np.linalg.solve(centred_x.T @ centred_x, centred_x.T @ centred_y)
    return 1 - np.var(centred_y - centred_x @ b) / np.var(y)


def attention_readout(queries, keys, values, bandwidth):
    scores = (2 * queries @ keys.T - (keys**2).sum(-1)) / (2 * bandwidth**2)  # |q|^2 cancels in the softmax
    scores = scores - scores.max(dim=-1, keepdim=True).values
    weights = scores.exp() / scores.exp().sum(dim=-1, keepdim=True)
    return weights @ values, weights


def layer_grad_norms(layers, loss):
    for p in layers.parameters():
        p.grad = None
    loss.backward()
    return [torch.nn.utils.get_total_norm([p.grad for p in layer.parameters()]).item() for layer in layers]


def mix_layers(states, logits):
    weights = torch.exp(logits - logits.max())
    return torch.tensordot(weights / weights.sum(), states, dims=1)


CORRECT = {
    "conditional_variance": conditional_variance,
    "conditional_mean": conditional_mean,
    "variance_reduction": variance_reduction,
    "attention_readout": attention_readout,
    "layer_grad_norms": layer_grad_norms,
    "mix_layers": mix_layers,
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_code_written_another_way_passes_every_case_on_many_seeds(name):
    for grade_id in CELLS_OF[name]:
        for seed in range(3 if name == "layer_grad_norms" else 20):
            assert first_failure(grade_id, CORRECT[name], seed) == "", (grade_id, seed)
        grading.check(grade_id, CORRECT[name])  # the visible test prints and does not raise


@pytest.mark.parametrize("name", list(CORRECT))
def test_the_reference_passes_its_own_hidden_cases_on_many_seeds(name):
    for grade_id in CELLS_OF[name]:
        exercise = grading.EXERCISES[grade_id]
        for seed in range(3 if name == "layer_grad_norms" else 30):
            for case in exercise.cases(seed):
                assert exercise.verdict(case, exercise.result_of(exercise.reference, case, student=False)) == ""


@pytest.mark.parametrize("name", list(CORRECT))
def test_calling_the_reference_fails_every_cell(name):
    for grade_id in CELLS_OF[name]:
        assert "calls the reference implementation" in first_failure(grade_id, getattr(ref, name))


def test_the_stubs_are_reported_as_not_done():
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not done yet"):
        grading.check("readout_tests", stub)


# ----------------------------------------------------------------------------- typical mistakes

def variance_one_minus_rho(rho, var_y):
    return (1 - np.asarray(rho)) * var_y


def variance_removed_part(rho, var_y):
    return np.asarray(rho) ** 2 * var_y


def variance_no_checks(rho, var_y):
    return (1 - np.asarray(rho) ** 2) * var_y


def mean_inverted_ratio(x, rho, mean_x, std_x, mean_y, std_y):
    return mean_y + rho * std_x / std_y * (np.asarray(x) - mean_x)


def mean_not_centred(x, rho, mean_x, std_x, mean_y, std_y):
    return mean_y + rho * std_y / std_x * np.asarray(x)


def reduction_r(x, y):
    return float(np.corrcoef(x, y)[0, 1])


def reduction_through_origin(x, y):
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    b, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(1 - np.mean((y - x @ b) ** 2) / np.var(y))


def reduction_sum_of_singles(x, y):
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    return float(sum(np.corrcoef(column, y)[0, 1] ** 2 for column in x.T))


def readout_dot_product(queries, keys, values, bandwidth):
    weights = torch.softmax(queries @ keys.T / bandwidth**2, dim=-1)
    return weights @ values, weights


def readout_no_half(queries, keys, values, bandwidth):
    weights = torch.softmax(-((queries[:, None] - keys[None]) ** 2).sum(-1) / bandwidth**2, dim=-1)
    return weights @ values, weights


def readout_numpy(queries, keys, values, bandwidth):
    q, k, v = (t.detach().numpy() for t in (queries, keys, values))
    scores = -((q[:, None] - k[None]) ** 2).sum(-1) / (2 * bandwidth**2)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ v, weights


def readout_unstable(queries, keys, values, bandwidth):
    weights = torch.exp(-((queries[:, None] - keys[None]) ** 2).sum(-1) / (2 * bandwidth**2))
    weights = weights / weights.sum(-1, keepdim=True)
    return weights @ values, weights


def norms_keep_stale(layers, loss):
    loss.backward()
    return [torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters())) for layer in layers]


def norms_summed(layers, loss):
    layers.zero_grad()
    loss.backward()
    return [sum(p.grad.norm() for p in layer.parameters()) for layer in layers]


def norms_squared(layers, loss):
    layers.zero_grad()
    loss.backward()
    return [sum((p.grad**2).sum() for p in layer.parameters()) for layer in layers]


def norms_of_weights(layers, loss):
    layers.zero_grad()
    loss.backward()
    return [torch.sqrt(sum((p**2).sum() for p in layer.parameters())) for layer in layers]


def norms_top_first(layers, loss):
    return layer_grad_norms(layers, loss)[::-1]


def mix_raw_logits(states, logits):
    return torch.einsum("l,lbtd->btd", logits, states)


def mix_mean(states, logits):
    return states.mean(0) + 0 * logits.sum()


def mix_top(states, logits):
    return states[-1] + 0 * logits.sum()


def mix_detached(states, logits):
    return torch.einsum("l,lbtd->btd", torch.softmax(logits, 0).detach(), states)


# (function, {cell: message it must fail with}); every other cell of the same function must pass.
MISTAKES = [
    (variance_one_minus_rho, {"conditional_variance_tests": "uses 1 - rho"}),
    (variance_removed_part, {"conditional_variance_tests": "part of Var.Y. that X explains"}),
    (variance_no_checks, {"conditional_variance_tests": "should raise ValueError"}),
    (mean_inverted_ratio, {"conditional_mean_tests": "upside down"}),
    (mean_not_centred, {"conditional_mean_tests": "measure x from its mean"}),
    (reduction_r, {"variance_reduction_tests": "this is r, the correlation itself",
                   "variance_reduction_multi_tests": ""}),
    (reduction_through_origin, {"variance_reduction_tests": "no intercept",
                                "variance_reduction_multi_tests": "no intercept"}),
    (reduction_sum_of_singles, {"variance_reduction_multi_tests": "adds up the single r..2"}),
    (readout_dot_product, {"readout_tests": "dot products", "readout_gradient_tests": "dot products"}),
    (readout_no_half, {"readout_tests": "instead of 2 . bandwidth..2", "readout_gradient_tests": ""}),
    (readout_numpy, {"readout_gradient_tests": "torch tensor that carries gradients"}),
    (readout_unstable, {"readout_gradient_tests": "contains nan"}),
    (norms_keep_stale, {"grad_norms_stale_tests": "keeps the gradients of an earlier step"}),
    (norms_summed, {"grad_norms_tests": "adds up the norms", "grad_norms_stale_tests": "adds up the norms"}),
    (norms_squared, {"grad_norms_tests": "squared norms", "grad_norms_stale_tests": "squared norms"}),
    (norms_of_weights, {"grad_norms_tests": "norms of the weights", "grad_norms_stale_tests": "norms of the weights"}),
    (norms_top_first, {"grad_norms_tests": "reverse order", "grad_norms_stale_tests": "reverse order"}),
    (mix_raw_logits, {"mix_layers_tests": "raw logits"}),
    (mix_mean, {"mix_layers_tests": "plain mean"}),
    (mix_top, {"mix_layers_tests": "top layer alone"}),
    (mix_detached, {"mix_layers_tests": "gradient with respect to logits"}),
]
FUNCTION_OF = {grade_id: name for name, cells in CELLS_OF.items() for grade_id in cells}


@pytest.mark.parametrize("mistake, failing", MISTAKES, ids=[m.__name__ for m, _ in MISTAKES])
def test_each_typical_mistake_fails_exactly_its_cells_with_its_message(mistake, failing):
    cells = CELLS_OF[FUNCTION_OF[next(iter(failing))]]
    for grade_id in cells:
        message = first_failure(grade_id, mistake)
        if failing.get(grade_id):
            assert message, f"{mistake.__name__} passed {grade_id}"
            assert re.search(failing[grade_id], message), message
        elif grade_id in failing:
            assert message, f"{mistake.__name__} passed {grade_id}"
        else:
            assert message == "", f"{mistake.__name__} failed {grade_id}: {message}"


def test_a_mistake_only_hidden_cases_catch_passes_the_visible_test():
    grading.check("readout_gradient_tests", readout_unstable)  # the visible keys are close to the queries
    assert "contains nan" in first_failure("readout_gradient_tests", readout_unstable)


# ----------------------------------------------------------------------------- whole notebooks (slow)

@pytest.mark.slow
def test_mistakes_in_a_notebook_lose_exactly_their_cells(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # a line through the origin: right for centred data, wrong when the means are far from 0
    notebook = replace_solution(notebook, "variance_reduction_solution", """
        x = np.asarray(x, dtype=float).reshape(len(y), -1)
        b, *_ = np.linalg.lstsq(x, y, rcond=None)
        return float(1 - np.mean((y - x @ b) ** 2) / np.var(y))
    """)
    # stale gradients from an earlier step are kept
    notebook = replace_solution(notebook, "grad_norms_solution", """
        loss.backward()
        return torch.stack([torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters())) for layer in layers])
    """)
    # the reference, reached through an alias
    notebook = replace_solution(notebook, "mix_layers_solution", """
        from xattn_edu.chapters.superpowers.stacks import mix_layers as mix
        return mix(states, logits)
    """)
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "variance_reduction_tests": 0, "variance_reduction_multi_tests": 0,
                      "grad_norms_stale_tests": 0, "mix_layers_tests": 0}, report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "no intercept" in reasons["variance_reduction_tests"]
    assert "keeps the gradients of an earlier step" in reasons["grad_norms_stale_tests"]
    assert "calls the reference implementation" in reasons["mix_layers_tests"]


def test_the_solution_raises_no_flag_in_the_graders_scan():
    from xattn_edu.grader import scan

    notebook = solution_notebook(CHAPTER)
    locked = {c.metadata.nbgrader["grade_id"] for c in notebook.cells
              if c.get("metadata", {}).get("nbgrader", {}).get("locked")}
    assert scan.scan_notebook([dict(c) for c in notebook.cells], locked) == []
