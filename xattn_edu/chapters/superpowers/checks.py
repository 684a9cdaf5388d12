"""The graded exercises of Chapter 4, "Superpowers, measured", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is. Each exercise and the mistake
it is built to catch:

* ``conditional_variance_tests``: ``(1 - rho**2) * var_y`` (``1 - rho``, the removed part ``rho**2 var_y``,
  a standard deviation for a variance and a forgotten ``var_y`` are named), ``ValueError`` for
  ``|rho| > 1`` or a negative variance;
* ``conditional_mean_tests``: the slope ``rho * std_y / std_x`` (a missing or inverted ratio, variances
  for standard deviations) and both means;
* ``variance_reduction_tests`` / ``variance_reduction_multi_tests``: the share removed by a fitted line
  with an intercept (r instead of r**2, the share left, the variance removed, a line through the
  origin are named); with several variables the plane, not the first column or the sum of single r**2;
* ``readout_tests`` / ``readout_gradient_tests``: Gaussian-kernel scores ``-|q - k|**2 / (2 h**2)``
  (a dot product, the sign, the factor 2, the softmax axis are named); gradients with respect to
  queries, keys and values, and queries far from every key;
* ``grad_norms_tests`` / ``grad_norms_stale_tests``: one norm per layer, ``sqrt`` of the summed squares
  over all its parameters (summed norms, squared norms, weight norms, top-first order are named);
  gradients from an earlier step cleared first;
* ``mix_layers_tests``: the softmax-weighted sum over layers and its gradients (raw scores, the
  plain mean, the top layer alone are named).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xattn_edu.chapters.superpowers import reference as ref
from xattn_edu.chapters.superpowers.gradient_flow import reversal_batch, task_loss
from xattn_edu.chapters.superpowers.stacks import Stack, StackConfig
from xattn_edu.chapters.support.checks import (
    as_array,
    as_pair,
    assert_close_to_reference,
    assert_finite,
    assert_rows_sum_to_one,
    assert_shape,
)
from xattn_edu.chapters.support.exercise import Case, Exercise, Exercises, Wrong, expect_raise, expect_value
from xattn_edu.chapters.support.gradients import with_gradients

REFERENCE = "xattn_edu.chapters.superpowers.reference"
MIX_REFERENCE = "xattn_edu.chapters.superpowers.stacks.mix_layers"
SOFTMAX = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax", "torch.special.softmax")
"""Writing a softmax was Chapter 1; here the point is what goes into it, so torch's softmax is allowed."""
MODEL_CODE = ("xattn_edu.nn.attention", "torch.nn.functional.scaled_dot_product_attention", *SOFTMAX)
"""What the model of the gradient-norm exercises runs in its forward pass (attention is not the point there)."""


def _raises(case: Case) -> bool:
    return isinstance(case.note, dict) and "raises" in case.note


# ----------------------------------------------------------------------------- conditional_variance

def _variance(rho, var_y, raises: str = "") -> Case:
    label = f"`conditional_variance(rho={_show(rho)}, var_y={_show(var_y)})`"
    return Case(label, (rho, var_y), note={"raises": raises} if raises else None)


def _show(value: Any) -> str:
    return np.array2string(np.asarray(value), precision=3, separator=", ")


def _judge_variance(case: Case, got: Any, expected: Any) -> None:
    rho, var_y = (np.asarray(a, dtype=float) for a in case.args)
    if _raises(case):
        expect_raise(got, case, "ValueError", case.note["raises"])
        return
    got = as_array(expect_value(got, case, "the conditional variance"), case.label)
    mistakes = {
        "uses 1 - rho; the variance shrinks by the SQUARED correlation, 1 - rho**2.": (1 - rho) * var_y,
        "this is the part of Var(Y) that X explains (rho**2 var_y); return what is LEFT, (1 - rho**2) var_y.":
            rho**2 * var_y,
        "multiplies by the standard deviation; var_y is already a variance: (1 - rho**2) * var_y.":
            (1 - rho**2) * np.sqrt(var_y),
        "forgot to multiply by var_y: (1 - rho**2) is the share left, in units of Var(Y).": (1 - rho**2) + 0 * var_y,
    }
    assert_close_to_reference(got, expected, case.label, mistakes=mistakes,
                              hint="Var(Y | X) = (1 - rho**2) * Var(Y), element by element.")


CONDITIONAL_VARIANCE = Exercise(
    grade_id="conditional_variance_tests", title="Exercise 1 (the conditional variance)", name="conditional_variance",
    reference=ref.conditional_variance, judge=_judge_variance, forbid=(REFERENCE,),
    passed="(1 - rho**2) Var(Y), for numbers and arrays, and ValueError for impossible inputs",
    visible=lambda: [_variance(0.6, 1.0), _variance(-0.5, 4.0), _variance(np.array([0.0, 0.5, 1.0]), 2.0),
                     _variance(1.5, 1.0, raises="a correlation lies between -1 and 1")],
    hidden=lambda rng: [_variance(rng.uniform(-1, 1, 5), rng.uniform(0.5, 3.0, 5)),  # element-wise
                        _variance(-1.0, 3.0), _variance(-0.3, 2.0), _variance(0.7, 0.0),
                        _variance(0.2, -1.0, raises="a variance is never negative"),
                        _variance(np.array([0.5, -1.2]), 1.0, raises="a correlation lies between -1 and 1")],
)


# ----------------------------------------------------------------------------- conditional_mean

def _mean(x, rho, mean_x, std_x, mean_y, std_y) -> Case:
    label = (f"`conditional_mean(x={_show(x)}, rho={rho}, mean_x={mean_x}, std_x={std_x}, mean_y={mean_y}, "
             f"std_y={std_y})`")
    return Case(label, (x, rho, mean_x, std_x, mean_y, std_y))


def _judge_mean(case: Case, got: Any, expected: Any) -> None:
    x, rho, mean_x, std_x, mean_y, std_y = case.args
    x = np.asarray(x, dtype=float)
    got = as_array(expect_value(got, case, "the conditional mean"), case.label)
    mistakes = {
        "the slope is rho * std_y / std_x; yours forgot the ratio of the standard deviations.":
            mean_y + rho * (x - mean_x),
        "the ratio is upside down: the slope is rho * std_y / std_x (units of Y per unit of X).":
            mean_y + rho * std_x / std_y * (x - mean_x),
        "uses variances in the slope; it is rho * std_y / std_x, with standard deviations.":
            mean_y + rho * std_y**2 / std_x**2 * (x - mean_x),
        "measure x from its mean: the slope multiplies (x - mean_x).": mean_y + rho * std_y / std_x * x,
        "forgot mean_y: the prediction starts from Y's mean and moves by the slope times (x - mean_x).":
            rho * std_y / std_x * (x - mean_x),
    }
    assert_close_to_reference(got, expected, case.label, mistakes=mistakes,
                              hint="E[Y | X = x] = mean_y + rho * std_y / std_x * (x - mean_x).")


CONDITIONAL_MEAN = Exercise(
    grade_id="conditional_mean_tests", title="Exercise 1 (the conditional mean)", name="conditional_mean",
    reference=ref.conditional_mean, judge=_judge_mean, forbid=(REFERENCE,),
    passed="the best predictor mean_y + rho std_y / std_x (x - mean_x) is right",
    visible=lambda: [_mean(np.array([-1.0, 0.0, 2.0]), 0.5, 0.0, 1.0, 0.0, 1.0),
                     _mean(np.array([0.0, 1.0, 3.0]), 0.8, 1.0, 2.0, -3.0, 0.5)],
    hidden=lambda rng: [_mean(rng.normal(2, 3, 6), float(rng.uniform(-1, 1)), 2.0, 3.0, float(rng.normal()),
                              float(rng.uniform(0.5, 4))),
                        _mean(np.array([5.0, -5.0]), 0.0, 1.0, 2.0, 7.0, 3.0),  # rho = 0: always mean_y
                        _mean(np.array([1.5]), -0.7, -1.0, 0.5, 2.0, 4.0)],
)


# ----------------------------------------------------------------------------- variance_reduction

def _reduction(x: np.ndarray, y: np.ndarray, what: str) -> Case:
    return Case(f"`variance_reduction(x, y)` with x of shape {x.shape} ({what})", (x, y))


def _gaussian_sample(rng: np.random.Generator, n: int, rho: float, shift=(0.0, 0.0)) -> tuple[np.ndarray, ...]:
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    return x + shift[0], rho * x + np.sqrt(1 - rho**2) * z + shift[1]


def _one_variable_mistakes(x: np.ndarray, y: np.ndarray, removed: float) -> dict[str, float]:
    r = float(np.corrcoef(x, y)[0, 1])
    slope = float(x @ y / (x @ x))
    return {
        "this is r, the correlation itself; the share removed is r**2 (a negative r removes variance too).": r,
        "this is the share LEFT (1 - r**2); return the share removed.": 1 - removed,
        "this is the variance removed, not its share: divide by Var(y).": removed * float(np.var(y)),
        "the line has no intercept (it goes through the origin); fit a + b x, e.g. with a column of ones.":
            1 - float(np.mean((y - slope * x) ** 2) / np.var(y)),
    }


def _judge_reduction(case: Case, got: Any, expected: float) -> None:
    x, y = case.args
    got = as_array(expect_value(got, case, "a share between 0 and 1"), case.label)
    if got.size != 1:
        raise Wrong(f"{case.label} should return one number (a share of Var(y)), got an array of shape {got.shape}.")
    mistakes = _one_variable_mistakes(x.reshape(len(y), -1)[:, 0], y, expected)
    if x.ndim == 2 and x.shape[1] > 1:
        columns = [ref.variance_reduction(x[:, j], y) for j in range(x.shape[1])]
        mistakes = {
            "only the first column is used; fit y on ALL the columns of x at once (a plane, not a line).": columns[0],
            "adds up the single r**2 of each column; correlated columns share information, so fit them "
            "together (the squared multiple correlation).": sum(columns),
            "the plane has no intercept; add a column of ones to x.":
                1 - float(np.mean((y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) ** 2) / np.var(y)),
        }
    assert_close_to_reference(got.reshape(()), expected, case.label, rtol=1e-6, atol=1e-9, mistakes=mistakes,
                              hint="Fit y = a + x @ b by least squares, then 1 - mean(residual**2) / var(y).")


VARIANCE_REDUCTION = Exercise(
    grade_id="variance_reduction_tests", title="Exercise 2 (one context variable)", name="variance_reduction",
    reference=ref.variance_reduction, judge=_judge_reduction, forbid=(REFERENCE,),
    passed="the share a fitted line removes is right (the sample r**2)",
    visible=lambda: [_reduction(np.arange(5.0), 2 * np.arange(5.0) + 1, "y on a line: everything removed"),
                     _reduction(*_gaussian_sample(np.random.default_rng(0), 200, 0.6), "200 samples, rho = 0.6")],
    hidden=lambda rng: [_reduction(*_gaussian_sample(rng, 300, -0.7), "negative correlation"),
                        _reduction(*_gaussian_sample(rng, 300, 0.5, shift=(4.0, -3.0)), "means far from 0"),
                        _reduction(*_gaussian_sample(rng, 6, 0.3, shift=(1.0, 2.0)), "six samples")],
)


def _several(rng: np.random.Generator, n: int, k: int, corr: float, shift: float = 0.0) -> tuple[np.ndarray, ...]:
    cov = np.full((k, k), corr) + (1 - corr) * np.eye(k)
    x = rng.standard_normal((n, k)) @ np.linalg.cholesky(cov).T
    return x + shift, x @ rng.uniform(0.3, 1.0, k) + 0.5 * rng.standard_normal(n) + shift


def _column(x: np.ndarray, y: np.ndarray) -> Case:
    return _reduction(x[:, None], y, "one variable as a column")


VARIANCE_REDUCTION_MULTI = Exercise(
    grade_id="variance_reduction_multi_tests", title="Exercise 2 (several context variables)",
    name="variance_reduction", reference=ref.variance_reduction, judge=_judge_reduction, forbid=(REFERENCE,),
    passed="with several context variables the share is the squared multiple correlation",
    visible=lambda: [_reduction(*_several(np.random.default_rng(1), 300, 2, 0.5), "two correlated variables")],
    hidden=lambda rng: [_reduction(*_several(rng, 400, 3, 0.6), "three correlated variables"),
                        _reduction(*_several(rng, 400, 2, 0.3, shift=5.0), "means far from 0"),
                        _column(*_gaussian_sample(rng, 100, 0.4))],
)


# ----------------------------------------------------------------------------- attention_readout

def _readout(queries, keys, values, bandwidth: float, what: str) -> Case:
    tensors = [torch.as_tensor(a, dtype=torch.float64) for a in (queries, keys, values)]
    label = (f"`attention_readout(queries, keys, values, bandwidth={bandwidth})` with shapes "
             f"{tuple(tensors[0].shape)}, {tuple(tensors[1].shape)}, {tuple(tensors[2].shape)} ({what})")
    return Case(label, (*tensors, bandwidth))


def _weights_from(scores: torch.Tensor, dim: int = -1) -> np.ndarray:
    return torch.softmax(scores, dim=dim).numpy()


def _readout_mistakes(case: Case) -> dict[str, np.ndarray]:
    queries, keys, values, h = case.args
    squared = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(-1)  # (Tq, n)
    return {
        "these weights come from dot products q . k; kernel regression scores closeness: -|q - k|**2 / (2 h**2).":
            _weights_from(queries @ keys.T / h**2),
        "the weights favour FAR keys: the score is MINUS the squared distance.": _weights_from(squared / (2 * h**2)),
        "the bandwidth is not used: divide the squared distance by 2 * bandwidth**2.": _weights_from(-squared),
        "divides by bandwidth**2 instead of 2 * bandwidth**2 (the Gaussian kernel has a 2).":
            _weights_from(-squared / h**2),
        "normalised over the queries (axis 0); each query's weights must sum to 1 over the keys.":
            _weights_from(-squared / (2 * h**2), dim=0),
    }


def _judge_readout(case: Case, got: Any, expected: Any) -> None:
    got = expect_value(got, case, "a pair (predictions, weights)")
    gradients = expected_gradients = None
    if isinstance(expected[1], dict):  # run with gradients: (result, {input name: gradient}) on both sides
        got, gradients = as_pair(got, case.label, ("predictions, weights", "gradients"))
        expected, expected_gradients = expected
    output, weights = as_pair(got, case.label, ("predictions", "weights"))
    weights, output = as_array(weights, f"the weights from {case.label}"), as_array(output, case.label)
    what = f"the weights from {case.label}"
    assert_finite(weights, what, "Subtract each row's largest score before exponentiating (or use torch.softmax).")
    assert_close_to_reference(weights, expected[1], what, mistakes=_readout_mistakes(case),
                              hint="weights = softmax over the keys of -|q - k|**2 / (2 * bandwidth**2).")
    assert_rows_sum_to_one(weights, what)
    assert_close_to_reference(output, expected[0], f"the predictions from {case.label}",
                              hint="predictions = weights @ values, shape (Tq, dv).")
    if gradients is not None:
        for name, wanted in expected_gradients.items():
            assert_close_to_reference(as_array(gradients[name], name), wanted, f"the gradient with respect to {name}",
                                      rtol=1e-6, atol=1e-10, hint="Build the result from torch operations only "
                                      "(no numpy round trip, no .detach(), no in-place writes).")


def _line_data(rng: np.random.Generator, n: int, tq: int):
    keys = rng.uniform(-2, 2, (n, 1))
    return rng.uniform(-2, 2, (tq, 1)), keys, 0.5 * keys + 0.3 * rng.standard_normal((n, 1))


READOUT = Exercise(
    grade_id="readout_tests", title="Exercise 3 (the attention read-out)", name="attention_readout",
    reference=ref.attention_readout, judge=_judge_readout, forbid=(REFERENCE,), allow=SOFTMAX,
    passed="Gaussian-kernel weights over the keys and their weighted average of the values are right",
    visible=lambda: [_readout([[0.0]], [[-1.0], [0.0], [2.0]], [[1.0], [5.0], [-3.0]], 0.8, "three context items"),
                     _readout(*_line_data(np.random.default_rng(2), 20, 4), 0.5, "20 items on a noisy line")],
    hidden=lambda rng: [_readout(*_line_data(rng, 50, 7), 0.3, "narrow kernel"),
                        _readout(*_line_data(rng, 1, 3), 1.0, "one context item: weight 1"),
                        _readout(*_line_data(rng, 4, 4), 2.0, "as many queries as keys")],
)
READOUT_GRADIENT = Exercise(
    grade_id="readout_gradient_tests", title="Exercise 3 (gradients, several dimensions, far queries)",
    name="attention_readout", reference=ref.attention_readout, judge=_judge_readout, forbid=(REFERENCE,),
    allow=SOFTMAX, run=with_gradients(wrt=("queries", "keys", "values")),
    passed="the gradients reach queries, keys and values, in several dimensions, even far from every key",
    visible=lambda: [_readout(*(np.random.default_rng(3).standard_normal(s) for s in ((3, 2), (5, 2), (5, 2))),
                              0.8, "2-D keys and values")],
    hidden=lambda rng: [_readout(rng.standard_normal((4, 3)), rng.standard_normal((6, 3)),
                                 rng.standard_normal((6, 1)), 0.5, "3-D keys"),
                        _readout(rng.standard_normal((2, 1)) + 30.0, rng.standard_normal((5, 1)),
                                 rng.standard_normal((5, 2)), 0.1, "queries far from every key")],
)


# ----------------------------------------------------------------------------- layer_grad_norms

def _norms(depth: int, seed: int, *, stale: bool = False, residual: bool = True, pre_norm: bool = True) -> Case:
    kind = f"{'pre' if pre_norm else 'post'}-norm{'' if residual else ' without residuals'}"
    label = (f"`layer_grad_norms(model.encoder_layers, loss)` for an encoder of {depth} {kind} layers"
             + (", whose parameters still hold gradients from an earlier step" if stale else ""))
    config = StackConfig(vocab=12, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=depth, n_decoder_layers=2,
                         residual=residual, pre_norm=pre_norm)
    return Case(label, note={"config": config, "seed": seed, "stale": stale})


def _per_layer(model: Stack, values) -> np.ndarray:
    """``values(parameter)`` -> a flat tensor; one norm per encoder layer of all its parameters' values."""
    return np.array([float(torch.linalg.vector_norm(torch.cat([values(p).flatten() for p in layer.parameters()])))
                     for layer in model.encoder_layers])


def _run_norms(implementation: Any, case: Case) -> dict:
    """Build the case's model, optionally leave stale gradients, then call ``implementation(layers, loss)``.

    Returns the implementation's result and, computed afterwards from the model, the results of known
    mistakes (meaningful for the reference run, whose gradients are then exactly this loss's).
    """
    note = case.note
    with torch.random.fork_rng():
        torch.manual_seed(note["seed"])
        model = Stack(note["config"])
        generator = torch.Generator().manual_seed(note["seed"] + 1)
        if note["stale"]:
            task_loss(model, reversal_batch(4, generator)).backward()
        stale = {p: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for p in model.parameters()}
        result = implementation(model.encoder_layers, task_loss(model, reversal_batch(4, generator)))
    grad = {p: (p.grad if p.grad is not None else torch.zeros_like(p)) for p in model.parameters()}
    norms = _per_layer(model, lambda p: grad[p])
    mistakes = {
        "keeps the gradients of an earlier step: clear them first (layers.zero_grad()), then call loss.backward().":
            _per_layer(model, lambda p: grad[p] + stale[p]),
        "adds up the norms of the separate parameters; take the square root of the summed squares of ALL of a "
        "layer's gradient entries.":
            np.array([sum(float(torch.linalg.vector_norm(grad[p])) for p in layer.parameters())
                      for layer in model.encoder_layers]),
        "these are squared norms: take the square root of the sum of squares.": norms**2,
        "these are the norms of the weights, not of their gradients (p.grad).": _per_layer(model, lambda p: p.detach()),
        "the layers are in reverse order: norms[0] belongs to layers[0], the bottom layer.": norms[::-1].copy(),
    }
    return {"norms": result, "mistakes": mistakes}


def _judge_norms(case: Case, got: Any, expected: dict) -> None:
    got = expect_value(got, case, "one gradient norm per layer")
    norms = as_array(got["norms"] if isinstance(got, dict) else None, case.label)
    depth = case.note["config"].n_encoder_layers
    assert_shape(norms.reshape(-1) if norms.size == depth else norms, (depth,), case.label,
                 "Return one number per layer (a list or a 1-D tensor), bottom layer first.")
    assert_close_to_reference(norms.reshape(-1), expected["norms"], case.label, rtol=1e-4, atol=1e-7,
                              mistakes=expected["mistakes"],
                              hint="norms[l] = sqrt(sum of p.grad**2 over every parameter p of layers[l]).")


_NORMS_COMMON = {"name": "layer_grad_norms", "reference": ref.layer_grad_norms, "judge": _judge_norms,
                 "run": _run_norms, "forbid": (REFERENCE,), "allow": MODEL_CODE}
GRAD_NORMS = Exercise(
    grade_id="grad_norms_tests", title="Exercise 4 (per-layer gradient norms)", **_NORMS_COMMON,
    passed="one norm per layer, of all its parameters' gradients, bottom layer first",
    visible=lambda: [_norms(3, 0)],
    hidden=lambda rng: [_norms(5, int(rng.integers(1000))), _norms(2, int(rng.integers(1000)), pre_norm=False),
                        _norms(4, int(rng.integers(1000)), residual=False)],
)
GRAD_NORMS_STALE = Exercise(
    grade_id="grad_norms_stale_tests", title="Exercise 4 (gradients left by an earlier step)", **_NORMS_COMMON,
    passed="gradients of an earlier step are cleared before the backward pass",
    visible=lambda: [_norms(3, 1, stale=True)],
    hidden=lambda rng: [_norms(6, int(rng.integers(1000)), stale=True, pre_norm=False),
                        _norms(2, int(rng.integers(1000)), stale=True, residual=False)],
)


# ----------------------------------------------------------------------------- mix_layers

def _mix(rng: np.random.Generator, layers: int, batch: int, length: int, width: int, scale: float = 1.0) -> Case:
    states = torch.as_tensor(rng.standard_normal((layers, batch, length, width)))
    logits = torch.as_tensor(scale * rng.standard_normal(layers))
    return Case(f"`mix_layers(states, logits)` with states {tuple(states.shape)} and logits {tuple(logits.shape)}",
                (states, logits))


def _judge_mix(case: Case, got: Any, expected: Any) -> None:
    states, logits = (a.numpy() for a in case.args)
    result, gradients = as_pair(expect_value(got, case, "the mixed memory"), case.label, ("memory", "gradients"))
    memory = as_array(result, case.label)
    weights = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    mistakes = {
        "uses the raw logits as weights; turn them into weights with a softmax over the layers first.":
            np.einsum("l,lbtd->btd", logits, states),
        "this is the plain mean of the layers; weight layer l by softmax(logits)[l].": states.mean(axis=0),
        "this is the top layer alone (what standard cross-attention reads); mix ALL the layers.": states[-1],
        "weights the layers in reverse order: softmax(logits)[l] belongs to states[l].":
            np.einsum("l,lbtd->btd", weights[::-1], states),
    }
    assert_close_to_reference(memory, expected[0], case.label, mistakes=mistakes,
                              hint="memory = sum over l of softmax(logits)[l] * states[l], shape (B, Ts, D).")
    for name, wanted in expected[1].items():
        assert_close_to_reference(as_array(gradients[name], name), wanted, f"the gradient with respect to {name}",
                                  rtol=1e-6, atol=1e-10, hint="Use torch operations only, so gradients reach the "
                                  "logits (no numpy, no .detach(), no .item()).")


MIX_LAYERS = Exercise(
    grade_id="mix_layers_tests", title="Exercise 5 (transparent attention's memory)", name="mix_layers",
    reference=ref.mix_layers, judge=_judge_mix, forbid=(REFERENCE, MIX_REFERENCE), allow=SOFTMAX,
    run=with_gradients(wrt=("states", "logits")),
    passed="a softmax-weighted sum of every layer, with gradients to the states and the mixing logits",
    visible=lambda: [_mix(np.random.default_rng(4), 4, 2, 3, 5)],
    hidden=lambda rng: [_mix(rng, 7, 1, 4, 3, scale=3.0), _mix(rng, 2, 3, 1, 2), _mix(rng, 13, 2, 2, 4)],
)

EXERCISES = Exercises("04_superpowers", [CONDITIONAL_VARIANCE, CONDITIONAL_MEAN, VARIANCE_REDUCTION,
                                         VARIANCE_REDUCTION_MULTI, READOUT, READOUT_GRADIENT, GRAD_NORMS,
                                         GRAD_NORMS_STALE, MIX_LAYERS])
check = EXERCISES.check
record = EXERCISES.record
