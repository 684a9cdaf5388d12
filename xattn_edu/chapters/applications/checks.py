"""The graded exercises of Chapter 7, "Applications", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is. Each exercise and the
mistakes it is built to catch:

* ``patchify_tests``: patches in reading order with their pixels row by row (a plain reshape, a
  column-first grid and pixels listed column by column are named), gradients reach the images;
  ``patchify_positions_tests``: (row, column) positions (swapped columns are named) and ``ValueError``
  when the image does not split into whole patches;
* ``latent_tests``: queries from the latents shared by the batch, keys and values from the inputs,
  the 1/sqrt(Dk) scale, softmax over the inputs (swapped roles, a missing scale, the wrong softmax
  axis and a missing value projection are named), gradients to every input;
  ``latent_mask_tests``: padded inputs get weight exactly 0 (an ignored or inverted mask is named);
* ``prompt_weights_tests``: the prompt → patch weights of step 1; ``prompt_logits_tests``: both
  residual connections, step 2 reading the *updated* tokens, logits from the mask token (token 0)
  scaled by 1/sqrt(D), with gradients;
* ``peak_patch_tests`` / ``peak_digit_tests``: the argmax over the patches, and the slot of the peak
  patch's centre (row for column, a forgotten patch size and the left edge for the centre are named).

Softmax is a building block here, not the exercise: ``torch.softmax`` and its aliases are allowed.
The chapter's reference module and the package's attention modules are forbidden while graded code runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from xattn_edu.chapters.applications import reference as ref
from xattn_edu.chapters.support.checks import (
    as_array,
    as_pair,
    assert_close_to_reference,
    assert_rows_sum_to_one,
    assert_same_structure_close,
    assert_shape,
)
from xattn_edu.chapters.support.exercise import Case, Exercise, Exercises, Wrong, expect_raise, expect_value
from xattn_edu.chapters.support.gradients import with_gradients

FORBID = ("xattn_edu.chapters.applications.reference", "xattn_edu.nn.heads")
ALLOW = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax", "torch.special.softmax")
RTOL, ATOL = 1e-6, 1e-9  # float64 inputs: results computed in another order still agree this closely


def _tensor(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy(scale * rng.standard_normal(shape))


def _grads_close(got: dict, expected: dict, label: str, hint: str) -> None:
    if not isinstance(got, dict):
        raise Wrong(f"{label}: the gradients could not be computed from your result. {hint}")
    assert_same_structure_close(got, expected, f"the gradients of {label}", rtol=1e-5, atol=1e-8, hint=hint)


# ----------------------------------------------------------------------------- patchify

def _patchify(images: torch.Tensor, patch: int, raises: bool = False) -> Case:
    label = f"`patchify(images, patch={patch})` with images of shape {tuple(images.shape)}"
    return Case(label, (images, patch), note={"raises": raises})


def _numbered(batch: int, height: int, width: int) -> torch.Tensor:
    return torch.arange(batch * height * width, dtype=torch.float64).reshape(batch, height, width)


def _patch_mistakes(images: torch.Tensor, patch: int) -> dict[str, np.ndarray]:
    b, h, w = images.shape
    rows, cols = h // patch, w // patch
    grid = images.reshape(b, rows, patch, cols, patch)
    return {
        "a plain reshape mixes rows of different patches: reshape to (B, H/p, p, W/p, p), move the two grid "
        "axes in front (permute(0, 1, 3, 2, 4)), then flatten.": images.reshape(b, rows * cols, patch * patch),
        "the patches go down the columns first; number them in reading order, row by row (patch n sits at "
        "row n // (W/p), column n % (W/p)).": grid.permute(0, 3, 1, 2, 4).reshape(b, rows * cols, patch * patch),
        "each patch lists its pixels column by column; list them row by row (the pixel axes in the order "
        "(p rows, p columns)).": grid.permute(0, 1, 3, 4, 2).reshape(b, rows * cols, patch * patch),
    }


def _judge_patches(case: Case, got: Any, expected: Any) -> None:
    result, grads = expect_value(got, case, "a pair (patches, positions)")
    expected_result, expected_grads = expected
    images, patch = case.args
    patches, _ = as_pair(result, case.label, ("patches", "positions"))
    patches = as_array(patches, f"the patches from {case.label}")
    assert_close_to_reference(patches, expected_result[0], f"the patches from {case.label}", rtol=RTOL, atol=ATOL,
                              mistakes={k: v.numpy() for k, v in _patch_mistakes(images, patch).items()},
                              hint="patches[b, n] holds the p*p pixels of patch n of image b, row by row.")
    _grads_close(grads, expected_grads, case.label, "Build the patches with torch reshapes and permutes only.")


def _judge_positions(case: Case, got: Any, expected: Any) -> None:
    if case.note["raises"]:
        images, patch = case.args
        expect_raise(got, case, "ValueError", f"{tuple(images.shape[1:])} pixels do not split into "
                                              f"{patch} x {patch} patches")
        return
    _, positions = as_pair(expect_value(got, case, "a pair (patches, positions)"), case.label,
                           ("patches", "positions"))
    positions = as_array(positions, f"the positions from {case.label}")
    wanted = expected[1]
    assert_close_to_reference(positions, wanted, f"the positions from {case.label}",
                              mistakes={"these are (column, row); give (row, column).": wanted[:, ::-1]},
                              hint="positions[n] = (n // (W/p), n % (W/p)), shape (N, 2).")


PATCHIFY = Exercise(
    grade_id="patchify_tests", title="Exercise 1 (the patches)", name="patchify",
    reference=ref.patchify, judge=_judge_patches, run=with_gradients(wrt=("images",)),
    passed="patches in reading order, pixels row by row, gradients reach the images",
    forbid=FORBID, allow=ALLOW,
    visible=lambda: [_patchify(_numbered(1, 4, 6), 2), _patchify(_tensor(np.random.default_rng(70), 2, 8, 8), 4)],
    hidden=lambda rng: [_patchify(_tensor(rng, 3, 6, 9), 3),  # not square
                        _patchify(_tensor(rng, 2, 3, 5), 1),  # one pixel per patch
                        _patchify(_tensor(rng, 1, 4, 4), 4),  # one patch per image
                        _patchify(_tensor(rng, 2, 12, 36), 4)],  # the chapter's number images
)
PATCHIFY_POSITIONS = Exercise(
    grade_id="patchify_positions_tests", title="Exercise 1 (positions and errors)", name="patchify",
    reference=ref.patchify, judge=_judge_positions, passed="(row, column) positions, ValueError for partial patches",
    forbid=FORBID, allow=ALLOW,
    visible=lambda: [_patchify(_numbered(1, 4, 6), 2), _patchify(_numbered(1, 5, 4), 2, raises=True)],
    hidden=lambda rng: [_patchify(_tensor(rng, 2, 6, 9), 3),
                        _patchify(_tensor(rng, 1, 8, 4), 4),  # taller than wide: rows and columns differ
                        _patchify(_tensor(rng, 2, 8, 6), 4, raises=True),  # width not a multiple
                        _patchify(_tensor(rng, 1, 3, 3), 2, raises=True)],
)


# ----------------------------------------------------------------------------- latent_cross_attention

def _latent(rng: np.random.Generator, batch: int, m: int, n: int, d: int, d_in: int, d_k: int, d_v: int,
            mask: np.ndarray | None = None) -> Case:
    args = (_tensor(rng, m, d), _tensor(rng, batch, n, d_in), _tensor(rng, d, d_k, scale=0.7),
            _tensor(rng, d_in, d_k, scale=0.7), _tensor(rng, d_in, d_v))
    label = (f"`latent_cross_attention(latents, inputs, w_q, w_k, w_v{', mask' if mask is not None else ''})` "
             f"with M = {m} latents, inputs {(batch, n, d_in)}, Dk = {d_k}, Dv = {d_v}")
    return Case(label, args, {} if mask is None else {"mask": torch.from_numpy(mask)})


def _latent_variant(latents, inputs, w_q, w_k, w_v, mask=None, *, scale=True, axis=-1, value=True, polarity=True):
    """The latent cross-attention with switches that reproduce classic mistakes (the defaults are right)."""
    q, k = latents @ w_q, inputs @ w_k
    v = inputs @ w_v if value else inputs
    scores = q @ k.transpose(-1, -2) / (math.sqrt(k.shape[-1]) if scale else 1.0)  # (B, M, N)
    if mask is not None:
        keep = mask if polarity else ~mask
        scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=axis)
    return weights @ v, weights


def _latent_mistakes(case: Case) -> tuple[dict, dict]:
    """Known wrong (output, weights) pairs, keyed by their message; one dict for outputs, one for weights."""
    args, mask = case.args, case.kwargs.get("mask")
    variants = {
        "the scores are not divided by sqrt(Dk) (Dk = the width of the keys).": {"scale": False},
        "the softmax runs over the latents (axis -2); each latent's weights must sum to 1 over the N inputs "
        "(the last axis).": {"axis": -2},
        "the values are the raw inputs; project them with w_v first.": {"value": False},
    }
    if mask is not None:
        variants["the mask is ignored: scores where mask is False must become -inf before the softmax."] = {}
        variants["the mask is inverted: True means 'a real input, may attend' in this course."] = {"polarity": False}
    outputs, weights = {}, {}
    for message, switches in variants.items():
        use_mask = None if "ignored" in message else mask
        out, w = _latent_variant(*args, mask=use_mask, **switches)
        outputs[message], weights[message] = out.numpy(), w.numpy()
    return outputs, weights


def _judge_latent(case: Case, got: Any, expected: Any) -> None:
    result, grads = expect_value(got, case, "(output, weights)")
    (expected_out, expected_w), expected_grads = expected
    out, weights = as_pair(result, case.label, ("output", "weights"))
    latents, inputs = case.args[0], case.args[1]
    mistaken_out, mistaken_w = _latent_mistakes(case)
    weights = as_array(weights, f"the weights from {case.label}")
    if weights.shape == (inputs.shape[0], inputs.shape[1], latents.shape[0]) != expected_w.shape:
        raise Wrong(f"the weights from {case.label} have shape {weights.shape}: the inputs are asking the latents. "
                    "Queries come from the latents (M of them), keys and values from the inputs: (B, M, N).")
    assert_close_to_reference(weights, expected_w, f"the weights from {case.label}", rtol=RTOL, atol=ATOL,
                              mistakes=mistaken_w, hint="weights = softmax(q k^T / sqrt(Dk)) over the inputs, "
                                                        "q = latents @ w_q, k = inputs @ w_k.")
    assert_rows_sum_to_one(weights, f"the weights from {case.label}")
    out = as_array(out, f"the output from {case.label}")
    assert_close_to_reference(out, expected_out, f"the output from {case.label}", rtol=RTOL, atol=ATOL,
                              mistakes=mistaken_out, hint="output = weights @ (inputs @ w_v), shape (B, M, Dv).")
    _grads_close(grads, expected_grads, case.label, "Compute with torch operations only (no numpy, no .detach()).")


_LATENT_RUN = with_gradients(wrt=("latents", "inputs", "w_q", "w_k", "w_v"))


def _padding(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    lengths = rng.integers(1, n + 1, batch)
    return np.arange(n)[None, :] < lengths[:, None]


LATENT = Exercise(
    grade_id="latent_tests", title="Exercise 3 (latents read the inputs)", name="latent_cross_attention",
    reference=ref.latent_cross_attention, judge=_judge_latent, run=_LATENT_RUN, forbid=FORBID, allow=ALLOW,
    passed="queries from the shared latents, keys and values from the inputs, scaled, with gradients",
    visible=lambda: [_latent(np.random.default_rng(71), 1, 2, 3, 2, 2, 2, 2),
                     _latent(np.random.default_rng(72), 2, 3, 5, 4, 6, 4, 3)],
    hidden=lambda rng: [_latent(rng, 3, 1, 7, 4, 4, 8, 2),  # one latent
                        _latent(rng, 2, 4, 1, 3, 5, 3, 3),  # one input: every weight is 1
                        _latent(rng, 2, 4, 4, 4, 4, 4, 4),  # M == N: the wrong axis keeps the shapes
                        _latent(rng, 1, 5, 50, 8, 3, 16, 6)],
)
LATENT_MASK = Exercise(
    grade_id="latent_mask_tests", title="Exercise 3 (padded inputs)", name="latent_cross_attention",
    reference=ref.latent_cross_attention, judge=_judge_latent, run=_LATENT_RUN, forbid=FORBID, allow=ALLOW,
    passed="padded inputs get weight 0",
    visible=lambda: [_latent(np.random.default_rng(73), 2, 3, 5, 4, 4, 4, 2,
                             mask=np.array([[True, True, True, False, False], [True] * 5]))],
    hidden=lambda rng: [_latent(rng, 3, 2, 6, 4, 3, 4, 2, mask=_padding(rng, 3, 6)),
                        _latent(rng, 2, 4, 4, 4, 4, 4, 4, mask=np.array([[True, False, False, False], [True] * 4])),
                        _latent(rng, 4, 3, 9, 5, 5, 8, 3, mask=_padding(rng, 4, 9))],
)


# ----------------------------------------------------------------------------- prompt_mask_logits

def _prompt(rng: np.random.Generator, batch: int, tokens: int, n: int, d: int, scale: float = 0.5) -> Case:
    to_image = tuple(_tensor(rng, d, d, scale=scale) for _ in range(3))
    to_prompt = tuple(_tensor(rng, d, d, scale=scale) for _ in range(3))
    label = (f"`prompt_mask_logits(prompt, patches, to_image, to_prompt)` with prompt {(batch, tokens, d)} and "
             f"patches {(batch, n, d)}")
    return Case(label, (_tensor(rng, batch, tokens, d), _tensor(rng, batch, n, d), to_image, to_prompt))


def _prompt_variant(prompt, patches, to_image, to_prompt, *, residual_1=True, residual_2=True, updated=True,
                    token=0, scale=True, axis=-1):
    """The two-way step with switches that reproduce classic mistakes (the defaults are right)."""
    def attend(queries, context, w_q, w_k, w_v):
        scores = (queries @ w_q) @ (context @ w_k).transpose(-1, -2) / math.sqrt(w_k.shape[-1])
        weights = torch.softmax(scores, dim=axis)
        return weights @ (context @ w_v), weights

    read, weights = attend(prompt, patches, *to_image)
    tokens = prompt + read if residual_1 else read
    read_back, _ = attend(patches, tokens if updated else prompt, *to_prompt)
    image = patches + read_back if residual_2 else read_back
    logits = image @ tokens[:, token, :, None] / (math.sqrt(prompt.shape[-1]) if scale else 1.0)
    return logits.squeeze(-1), weights


PROMPT_MISTAKES = {
    "step 1 forgot its residual: the tokens after step 1 are prompt + what they read, not only what they read.":
        {"residual_1": False},
    "step 2 forgot its residual: the patches after step 2 are patches + what they read.": {"residual_2": False},
    "in step 2 the patches read the original prompt; they must read the tokens updated by step 1.": {"updated": False},
    "the logits use the last token; the mask token is token 0 (tokens[:, 0]).": {"token": -1},
    "the logits are not divided by sqrt(D).": {"scale": False},
    "the softmax runs over the queries; each query's weights must sum to 1 over the keys (the last axis).":
        {"axis": -2},
}


def _judge_prompt_weights(case: Case, got: Any, expected: Any) -> None:
    _, weights = as_pair(expect_value(got, case, "(logits, weights)"), case.label, ("logits", "weights"))
    weights = as_array(weights, f"the weights from {case.label}")
    mistakes = {m: _prompt_variant(*case.args, **s)[1].numpy() for m, s in PROMPT_MISTAKES.items() if "axis" in s}
    mistakes["these weights have the patches asking the prompt: step 1's queries are the prompt tokens "
             "(B, Tp, N)."] = _prompt_variant(case.args[1], case.args[0], case.args[2], case.args[3])[1].numpy()
    assert_close_to_reference(weights, expected[1], f"the weights from {case.label}", rtol=RTOL, atol=ATOL,
                              mistakes=mistakes, hint="Step 1: softmax((prompt W_q)(patches W_k)^T / sqrt(D)) "
                                                      "over the patches, shape (B, Tp, N).")
    assert_rows_sum_to_one(weights, f"the weights from {case.label}")


def _judge_prompt_logits(case: Case, got: Any, expected: Any) -> None:
    result, grads = expect_value(got, case, "(logits, weights)")
    (expected_logits, _), expected_grads = expected
    logits, _ = as_pair(result, case.label, ("logits", "weights"))
    logits = as_array(logits, f"the mask logits from {case.label}")
    batch, n = case.args[1].shape[:2]
    assert_shape(logits, (batch, n), f"the mask logits from {case.label}", "One logit per patch: (B, N).")
    mistakes = {m: _prompt_variant(*case.args, **s)[0].numpy() for m, s in PROMPT_MISTAKES.items()}
    assert_close_to_reference(logits, expected_logits, f"the mask logits from {case.label}", rtol=RTOL, atol=ATOL,
                              mistakes=mistakes, hint="logits[b, n] = image[b, n] . tokens[b, 0] / sqrt(D).")
    _grads_close(grads, expected_grads, case.label, "Compute with torch operations only (no numpy, no .detach()).")


PROMPT_WEIGHTS = Exercise(
    grade_id="prompt_weights_tests", title="Exercise 4 (the prompt reads the patches)", name="prompt_mask_logits",
    reference=ref.prompt_mask_logits, judge=_judge_prompt_weights, forbid=FORBID, allow=ALLOW,
    passed="the prompt tokens' weights over the patches are right",
    visible=lambda: [_prompt(np.random.default_rng(74), 1, 2, 4, 4), _prompt(np.random.default_rng(75), 2, 3, 6, 8)],
    hidden=lambda rng: [_prompt(rng, 2, 1, 5, 4),  # the mask token alone
                        _prompt(rng, 2, 3, 3, 6),  # Tp == N: the wrong axis keeps the shapes
                        _prompt(rng, 3, 2, 36, 16, scale=0.3)],
)
PROMPT_LOGITS = Exercise(
    grade_id="prompt_logits_tests", title="Exercise 4 (the mask logits)", name="prompt_mask_logits",
    reference=ref.prompt_mask_logits, judge=_judge_prompt_logits, run=with_gradients(wrt=("prompt", "patches")),
    forbid=FORBID, allow=ALLOW, passed="both residual steps and the mask logits are right, with gradients",
    visible=lambda: [_prompt(np.random.default_rng(76), 1, 2, 4, 4), _prompt(np.random.default_rng(77), 2, 3, 6, 8)],
    hidden=lambda rng: [_prompt(rng, 2, 1, 5, 4), _prompt(rng, 1, 2, 1, 4),  # a single patch
                        _prompt(rng, 3, 3, 36, 16, scale=0.3)],
)


# ----------------------------------------------------------------------------- peak_to_digit

def _peak(weights: np.ndarray, grid_width: int, patch: int, slot_width: int) -> Case:
    label = (f"`peak_to_digit(weights, grid_width={grid_width}, patch={patch}, slot_width={slot_width})` with "
             f"weights of shape {weights.shape}")
    return Case(label, (torch.from_numpy(weights), grid_width, patch, slot_width))


def _rows(rng: np.random.Generator, *shape: int) -> np.ndarray:
    scores = 3.0 * rng.standard_normal(shape)
    exps = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def _judge_peak_patch(case: Case, got: Any, expected: Any) -> None:
    index, _ = as_pair(expect_value(got, case, "(patch_index, digit)"), case.label, ("patch_index", "digit"))
    index = as_array(index, f"the patch index from {case.label}")
    weights = case.args[0].numpy()
    mistakes = {"these are the largest weights, not where they are: use argmax.": weights.max(axis=-1)}
    if weights.ndim > 1:
        mistakes["the argmax runs over the rows; take it over the patches (the last axis)."] = weights.argmax(axis=0)
    assert_close_to_reference(index, expected[0], f"the patch index from {case.label}", mistakes=mistakes,
                              hint="patch_index = the argmax of each row over its N patches.")


def _judge_peak_digit(case: Case, got: Any, expected: Any) -> None:
    index, digit = as_pair(expect_value(got, case, "(patch_index, digit)"), case.label, ("patch_index", "digit"))
    digit = as_array(digit, f"the digit slot from {case.label}")
    peak = expected[0]
    grid_width, patch, slot_width = case.args[1:]
    column, row = peak % grid_width, peak // grid_width
    mistakes = {
        "this uses the patch's row; the digits sit side by side, so the slot depends on the column "
        "(patch_index % grid_width).": ((2 * row + 1) * patch) // (2 * slot_width),
        "the column counts patches, not pixels: multiply by the patch size before dividing by slot_width.":
            column // slot_width,
        "this uses the patch's left edge; use its centre, (column + 1/2) * patch pixels from the left.":
            (column * patch) // slot_width,
    }
    assert_close_to_reference(digit, expected[1], f"the digit slot from {case.label}", mistakes=mistakes,
                              hint="digit = floor((column + 1/2) * patch / slot_width).")


_LAYOUT = (9, 4, 12)  # the chapter's images: 9 patches across, 4-pixel patches, 12-pixel digit slots
PEAK_PATCH = Exercise(
    grade_id="peak_patch_tests", title="Exercise 2 (the peak patch)", name="peak_to_digit",
    reference=ref.peak_to_digit, judge=_judge_peak_patch, forbid=FORBID, allow=ALLOW,
    passed="the argmax over the patches is right",
    visible=lambda: [_peak(np.array([[0.1, 0.6, 0.1, 0.1, 0.05, 0.05], [0.0, 0.0, 0.0, 0.2, 0.1, 0.7]]), 3, 4, 4),
                     _peak(_rows(np.random.default_rng(78), 5, 27), *_LAYOUT)],
    hidden=lambda rng: [_peak(_rows(rng, 27), *_LAYOUT),  # one row
                        _peak(_rows(rng, 2, 4, 27), *_LAYOUT),  # (B, T, N)
                        _peak(_rows(rng, 6, 6), 3, 2, 3)],  # as many rows as patches
)
PEAK_DIGIT = Exercise(
    grade_id="peak_digit_tests", title="Exercise 2 (the digit it points at)", name="peak_to_digit",
    reference=ref.peak_to_digit, judge=_judge_peak_digit, forbid=FORBID, allow=ALLOW,
    passed="the peak patch's column, in pixels, gives its digit slot",
    visible=lambda: [_peak(np.array([[0.1, 0.6, 0.1, 0.1, 0.05, 0.05], [0.0, 0.0, 0.0, 0.2, 0.1, 0.7]]), 3, 4, 4),
                     _peak(np.eye(27)[[0, 4, 8, 9, 13, 26]], *_LAYOUT)],
    hidden=lambda rng: [_peak(_rows(rng, 2, 5, 27), *_LAYOUT),
                        _peak(np.eye(36)[[2, 3, 4, 5, 6, 7, 8]], 9, 4, 10),  # slots not aligned with patches
                        _peak(np.eye(8)[[1, 2, 5, 6]], 2, 3, 3),  # two columns, two rows: row vs column matters
                        _peak(_rows(rng, 40, 18), 6, 5, 10)],
)

EXERCISES = Exercises("07_applications", [PATCHIFY, PATCHIFY_POSITIONS, PEAK_PATCH, PEAK_DIGIT, LATENT, LATENT_MASK,
                                          PROMPT_WEIGHTS, PROMPT_LOGITS])
check = EXERCISES.check
record = EXERCISES.record
