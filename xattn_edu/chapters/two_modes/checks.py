"""The graded exercises of Chapter 3, "Looking inward, looking across", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is. Each test cell calls
``grading.check("<grade_id>", student_code)`` (the visible test) and, in its hidden part,
``grading.record(...)``; the grader's verifier judges the recorded results with these declarations,
against :mod:`xattn_edu.chapters.two_modes.reference` run through the same ``run``. Each exercise and
the mistakes it is built to name:

* ``padding_mask_tests``: boolean, (B, 1, 1, Tk), True on real tokens (inverted polarity, a flat
  (B, Tk) mask, ``<=`` instead of ``<``, a float mask);
* ``causal_mask_tests``: boolean, (1, 1, T, T), the diagonal kept (no diagonal, inverted polarity,
  ``triu`` instead of ``tril``, a square (T, T) mask);
* ``mha_self_tests`` / ``mha_cross_tests``: multi-head attention against the package's module with
  the same weights, output *and* gradients (missing or wrong scale, one big head, a head split or
  merge that is a plain reshape, both plain reshapes, no output projection, mask inverted or ignored,
  context ignored, queries and memory swapped);
* ``two_items_tests`` / ``head_variance_tests``: two derivations (what one head returns when two keys
  matter; the variance of one head's score and the scale that fixes it);
* ``static_cache_tests``: a scenario (fill once, step through the queries): the memory projected
  exactly once and never read again, the steps equal full cross-attention;
* ``growing_cache_tests``: a scenario (one position per step): one key and value appended per step,
  only the new position projected, the steps equal causal self-attention;
* ``decoder_step_tests``: a decoder layer run position by position equals its full forward pass,
  one position per step, the memory projected once and masked.

Class exercises are scenarios: ``run`` builds the student's class with the case's module, calls its
methods in order and returns every output and counter (projection calls, cache lengths) the judge needs.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xattn_edu.chapters.support.checks import (
    as_array,
    as_pair,
    assert_close_to_reference,
    assert_finite,
    assert_shape,
)
from xattn_edu.chapters.support.exercise import Case, Exercise, Exercises, Wrong, expect_value
from xattn_edu.chapters.support.gradients import with_gradients
from xattn_edu.chapters.two_modes import reference as ref
from xattn_edu.nn import masks
from xattn_edu.nn.attention import scaled_dot_product_attention
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import DecoderLayer, Seq2SeqConfig

FORBIDDEN = (
    "xattn_edu.chapters.two_modes.reference",
    "xattn_edu.nn.masks",
    "xattn_edu.nn.heads",
    "xattn_edu.nn.cache",
    "xattn_edu.nn.model.DecoderLayer.forward",
    "xattn_edu.nn.model.Seq2Seq.decode",
    "torch.nn.MultiheadAttention.forward",
    "torch.nn.functional.multi_head_attention_forward",
)
"""Besides the package's attention and ``F.scaled_dot_product_attention`` (forbidden by default)."""

ALLOWED = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax", "torch.special.softmax")
"""Softmax is a building block here (the notebook's ``attend`` uses it), not the exercise."""

RTOL, ATOL = 1e-6, 1e-9  # float64 results summed in another order than the reference's

POLARITY_HINT = (
    "In this course True means 'may attend' (the opposite of nn.MultiheadAttention's masks, where True "
    "means 'blocked')."
)
GRADIENT_HINT = (
    "Keep the whole computation in torch on the tensors you were given (no .detach(), no numpy round trip, "
    "no in-place writes into them), and keep `attend`'s care for rows with no visible key."
)


def _exercise(grade_id: str, title: str, name: str, reference: Any, judge, run, passed: str, visible, hidden
              ) -> Exercise:
    """An exercise of this chapter: the package's references forbidden, a library softmax allowed."""
    return Exercise(grade_id=grade_id, title=title, name=name, reference=reference, judge=judge, run=run,
                    passed=passed, visible=visible, hidden=hidden, forbid=FORBIDDEN, allow=ALLOWED)


def _call(implementation: Any, case: Case) -> Any:
    return implementation(*case.args, **case.kwargs)


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    """A float64 tensor drawn from ``rng`` (the same numbers in the kernel and in the verifier)."""
    return torch.from_numpy(scale * rng.standard_normal(shape))


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def make_attention(d_model: int, n_heads: int, seed: int, bias: bool = True) -> MultiHeadAttention:
    """A float64 reference module (readable path, eval mode) with random weights and nonzero biases."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attn = MultiHeadAttention(d_model, n_heads, bias=bias, fused=False).double().eval()
        with torch.no_grad():
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
                if proj.bias is not None:
                    proj.bias.normal_(0.0, 0.1)  # nonzero biases, so forgetting one shows
    return attn


def make_decoder_layer(d_model: int, n_heads: int, seed: int) -> DecoderLayer:
    """A float64 pre-norm decoder layer (no dropout, eval mode) with random weights."""
    cfg = Seq2SeqConfig(src_vocab=2, tgt_vocab=2, d_model=d_model, n_heads=n_heads, d_ff=2 * d_model,
                        dropout=0.0, fused=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DecoderLayer(cfg).double().eval()


def _mask_result(got: Any, case: Case) -> np.ndarray:
    got = expect_value(got, case, "a boolean mask")
    if not isinstance(got, np.ndarray):
        raise Wrong(f"{case.label} should return a torch tensor, got {type(got).__name__}.")
    if got.dtype != bool:
        raise Wrong(f"{case.label} has dtype {got.dtype}; masks are boolean (True = may attend). A comparison such "
                    "as `positions < lengths` gives a bool tensor directly.")
    return got


# ----------------------------------------------------------------------------- padding_mask_from_lengths

def _padding(lengths: list[int], max_len: int) -> Case:
    return Case(f"`padding_mask_from_lengths(torch.tensor({lengths}), max_len={max_len})`",
                (torch.tensor(lengths), max_len))


def _judge_padding(case: Case, got: Any, expected: np.ndarray) -> None:
    mask = _mask_result(got, case)
    lengths, max_len = case.args[0].numpy(), case.args[1]
    if mask.shape == (expected.shape[0], expected.shape[-1]) and (mask == expected[:, 0, 0, :]).all():
        raise Wrong(f"{case.label} has shape {mask.shape}, expected (B, 1, 1, Tk) = {expected.shape}: add the two "
                    "singleton axes (mask[:, None, None, :]) so it broadcasts over heads and queries.")
    mistakes = {
        f"True marks the padding; it should mark the real tokens. {POLARITY_HINT}": ~expected,
        "position `length` is marked as a real token; positions 0 .. length-1 are real, so compare with `<`, "
        "not `<=`.": (np.arange(max_len)[None, :] <= lengths[:, None])[:, None, None, :],
    }
    assert_close_to_reference(mask.astype(float), expected, case.label, mistakes=mistakes,
                              hint="Key position j of sentence b is real exactly when j < lengths[b].")


def _padding_hidden(rng: np.random.Generator) -> list[Case]:
    max_len = int(rng.integers(3, 10))
    lengths = [int(n) for n in rng.integers(1, max_len + 1, size=int(rng.integers(2, 6)))]
    return [_padding([0, 3], 3),  # an empty sentence: a row of False
            _padding([4], 4),  # one sentence, no padding
            _padding([1, 1, 2, 7], 9),  # max_len longer than every sentence
            _padding([1], 1),
            _padding(lengths, max_len)]


PADDING = _exercise(
    "padding_mask_tests", "Exercise 1 (padding mask)", "padding_mask_from_lengths", ref.padding_mask_from_lengths,
    _judge_padding, _call, "boolean, shape (B, 1, 1, Tk), True on the real tokens",
    visible=lambda: [_padding([3, 1, 5], 5), _padding([2, 4], 6)], hidden=_padding_hidden,
)


# ----------------------------------------------------------------------------- causal_mask

def _causal(size: int) -> Case:
    return Case(f"`causal_mask({size})`", (size,))


def _judge_causal(case: Case, got: Any, expected: np.ndarray) -> None:
    mask = _mask_result(got, case)
    size = case.args[0]
    if mask.shape == (size, size) and (mask == expected[0, 0]).all():
        raise Wrong(f"{case.label} has shape {mask.shape}, expected (1, 1, T, T) = {expected.shape}: add two leading "
                    "singleton axes so it broadcasts over the batch and the heads.")
    mistakes = {
        "the diagonal is False, so a position may not attend to itself (and the first position sees nothing). "
        "Keep the diagonal: key position j is visible to query i when j <= i.":
            np.tril(np.ones((size, size), dtype=bool), k=-1)[None, None],
        f"True marks the future positions; it should mark the visible past (and the present). {POLARITY_HINT}":
            ~expected,
        "each query sees the future and not the past: row i (a query) should be True for columns j <= i "
        "(torch.tril, not torch.triu).": expected.transpose(0, 1, 3, 2),
    }
    assert_close_to_reference(mask.astype(float), expected, case.label, mistakes=mistakes if size > 1 else {},
                              hint="Row i is query position i, column j key position j; True where j <= i.")


CAUSAL = _exercise(
    "causal_mask_tests", "Exercise 2 (causal mask)", "causal_mask", ref.causal_mask, _judge_causal, _call,
    "boolean, shape (1, 1, T, T), True on and below the diagonal",
    visible=lambda: [_causal(4), _causal(6)],
    hidden=lambda rng: [_causal(1), _causal(2), _causal(17), _causal(int(rng.integers(3, 12)))],
)


# ----------------------------------------------------------------------------- multi_head_attention

def _split(t: Tensor, heads: int, plain_reshape: bool) -> Tensor:
    """(B, T, D) -> (B, h, T, Dh), or the plain-reshape mistake."""
    if plain_reshape:
        return t.reshape(t.shape[0], heads, t.shape[1], -1)
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge(t: Tensor, plain_reshape: bool) -> Tensor:
    """(B, h, T, Dh) -> (B, T, D), or the plain-reshape mistake."""
    if plain_reshape:
        return t.reshape(t.shape[0], t.shape[2], -1)
    return t.transpose(1, 2).flatten(-2)


@torch.no_grad()
def _mha_variant(x: Tensor, attn: MultiHeadAttention, context: Tensor | None = None, mask: Tensor | None = None, *,
                 heads: int | None = None, scale: float | None = None, flip_mask: bool = False,
                 ignore_mask: bool = False, output_projection: bool = True, swap: bool = False,
                 plain_split: bool = False, plain_merge: bool = False) -> np.ndarray:
    """Multi-head attention written out, with switches that reproduce classic mistakes (all off = correct)."""
    queries_from, memory = (x, x if context is None else context)
    if swap:
        queries_from, memory = memory, queries_from
    heads = heads or attn.n_heads
    query, key, value = (_split(proj(source), heads, plain_split) for proj, source in
                         ((attn.q_proj, queries_from), (attn.k_proj, memory), (attn.v_proj, memory)))
    mask = None if mask is None or ignore_mask else (~mask if flip_mask else mask)
    out = _merge(scaled_dot_product_attention(query, key, value, mask, scale=scale), plain_merge)  # (B, Tq, D)
    return (attn.out_proj(out) if output_projection else out).numpy()


def _mha_mistakes(x: Tensor, attn: MultiHeadAttention, context: Tensor | None, mask: Tensor | None) -> dict:
    mistakes = {
        "the scores are not scaled: divide query·key by sqrt(Dh), the width of one head.":
            _mha_variant(x, attn, context, mask, scale=1.0),
        "the scores are divided by sqrt(D); divide by sqrt(Dh) = sqrt(D / h), the width of one head.":
            _mha_variant(x, attn, context, mask, scale=1.0 / math.sqrt(attn.d_model)),
        "the output projection is missing: after merging the heads, apply attn.out_proj.":
            _mha_variant(x, attn, context, mask, output_projection=False),
    }
    if attn.n_heads > 1:
        mistakes.update({
            "the head split and the head merge are both plain reshapes. They undo each other, but in between "
            "each 'head' holds a slice of the flattened sequence instead of Dh features of every position: split "
            "with reshape to (B, T, h, Dh) then transpose(1, 2); merge with transpose(1, 2) then reshape to "
            "(B, T, D).": _mha_variant(x, attn, context, mask, plain_split=True, plain_merge=True),
            "the heads are split with a plain reshape to (B, h, T, Dh), which mixes positions and heads: reshape "
            "to (B, T, h, Dh), then transpose(1, 2).": _mha_variant(x, attn, context, mask, plain_split=True),
            "the heads are merged with a plain reshape from (B, h, T, Dh), which mixes heads and positions: "
            "transpose(1, 2) back to (B, T, h, Dh) first, then reshape to (B, T, D).":
                _mha_variant(x, attn, context, mask, plain_merge=True),
            "this is one head over all D dimensions: split the projections into h heads of width Dh, attend in "
            "each head separately, then merge.": _mha_variant(x, attn, context, mask, heads=1),
        })
    if mask is not None:
        mistakes[f"the mask is applied the wrong way round: fill the scores with -inf where the mask is False. "
                 f"{POLARITY_HINT}"] = _mha_variant(x, attn, context, mask, flip_mask=True)
        mistakes["the mask is ignored: pass it to attend, which hides the keys where it is False."] = (
            _mha_variant(x, attn, context, mask, ignore_mask=True))
    if context is not None:
        mistakes["`context` is ignored: in cross-attention the keys and values come from `context`, "
                 "only the queries from `x`."] = _mha_variant(x, attn, None, None)
        if context.shape == x.shape and mask is None:
            mistakes["queries and memory are swapped: the queries come from x (the decoder), the keys and values "
                     "from context (the encoder)."] = _mha_variant(x, attn, context, None, swap=True)
    return mistakes


def _judge_mha(case: Case, got: Any, expected: Any) -> None:
    output, gradients = expect_value(got, case, "the attention output (B, Tq, D)")
    output = as_array(output, case.label)
    expected_output, expected_gradients = expected
    x, attn = case.args
    context, mask = case.kwargs.get("context"), case.kwargs.get("mask")
    if context is not None and context.shape[1] != x.shape[1] and output.shape[:2] == (x.shape[0], context.shape[1]):
        raise Wrong(f"{case.label} has the memory's length {context.shape[1]}, not the queries' length "
                    f"{x.shape[1]}: the queries come from x (the decoder), keys and values from context (the "
                    "encoder); the output follows the queries.")
    assert_shape(output, expected_output.shape, case.label, "The output has one D-wide row per query: (B, Tq, D).")
    if mask is not None:
        _diagnose_nan_rows(output, mask, attn.n_heads, case.label)
    assert_close_to_reference(output, expected_output, case.label, rtol=RTOL, atol=ATOL,
                              mistakes=_mha_mistakes(x, attn, context, mask),
                              hint="Project, split into heads, attend per head, merge, then the output projection.")
    for name, wanted in expected_gradients.items():
        what = f"the gradient of the output of {case.label} with respect to `{name}`"
        gradient = as_array(gradients.get(name) if isinstance(gradients, dict) else None, what)
        assert_finite(gradient, what, GRADIENT_HINT)
        assert_close_to_reference(gradient, wanted, what, rtol=RTOL, atol=ATOL, hint=GRADIENT_HINT)


def _diagnose_nan_rows(output: np.ndarray, mask: Tensor, heads: int, label: str) -> None:
    """Name inverted polarity when the NaN rows of the output are exactly rows whose every key the mask allows."""
    nan_rows = ~np.isfinite(output).all(axis=-1)  # (B, Tq)
    if not nan_rows.any():
        return
    shape = (output.shape[0], heads, output.shape[1], mask.shape[-1])
    empty = (~mask.expand(shape).any(-1)).any(1).numpy()  # (B, Tq): rows with no key to attend to
    empty_if_flipped = (~(~mask).expand(shape).any(-1)).any(1).numpy()
    if not empty.any() and (nan_rows <= empty_if_flipped).all():
        raise Wrong(f"{label}: the mask is applied the wrong way round (the NaN rows are those whose every key the "
                    f"mask allows): hide the keys where the mask is False. {POLARITY_HINT}")


def _mha(x: Tensor, attn: MultiHeadAttention, context: Tensor | None = None, mask: Tensor | None = None) -> Case:
    parts = [f"x {tuple(x.shape)}", "attn"]
    kwargs = {}
    if context is not None:
        parts.append(f"context={tuple(context.shape)}")
        kwargs["context"] = context
    if mask is not None:
        parts.append(f"mask={tuple(mask.shape)}")
        kwargs["mask"] = mask
    return Case(f"`multi_head_attention({', '.join(parts)})` with h = {attn.n_heads}", (x, attn), kwargs)


def _random_mask(rng: np.random.Generator, *shape: int) -> Tensor:
    """A boolean mask whose every row has at least one True and one False (so both polarities show)."""
    mask = rng.random(shape) < 0.5
    mask[..., 0], mask[..., -1] = True, False
    return torch.from_numpy(mask)


def _mha_self_visible() -> list[Case]:
    rng = np.random.default_rng(1)
    attn, x = make_attention(16, 4, seed=0), _randn(rng, 2, 5, 16)
    return [_mha(x, attn), _mha(x, attn, mask=masks.causal_mask(5))]


def _mha_self_hidden(rng: np.random.Generator) -> list[Case]:
    return [
        _mha(_randn(rng, 3, 7, 12), make_attention(12, 3, _seed(rng)), mask=_random_mask(rng, 3, 1, 7, 7)),
        _mha(_randn(rng, 1, 4, 8), make_attention(8, 1, _seed(rng))),  # one head
        _mha(_randn(rng, 2, 3, 8), make_attention(8, 8, _seed(rng))),  # Dh = 1
        _mha(_randn(rng, 2, 1, 16), make_attention(16, 2, _seed(rng), bias=False)),  # one position
        _mha(_randn(rng, 2, 6, 16, scale=30.0), make_attention(16, 4, _seed(rng)), mask=masks.causal_mask(6)),
    ]


def _mha_cross_visible() -> list[Case]:
    rng = np.random.default_rng(3)
    attn, x, memory = make_attention(16, 4, seed=2), _randn(rng, 2, 3, 16), _randn(rng, 2, 7, 16)
    return [_mha(x, attn, memory), _mha(x, attn, memory, _random_mask(rng, 2, 1, 3, 7)),
            _mha(x, attn, memory, masks.padding_mask(torch.tensor([7, 4]), 7))]


def _mha_cross_hidden(rng: np.random.Generator) -> list[Case]:
    attn = make_attention(12, 3, _seed(rng))
    lengths = torch.from_numpy(rng.integers(1, 7, size=3))
    return [
        _mha(_randn(rng, 2, 1, 12), attn, _randn(rng, 2, 9, 12)),  # a single query
        _mha(_randn(rng, 2, 5, 12), attn, _randn(rng, 2, 1, 12)),  # a single memory position
        _mha(_randn(rng, 3, 4, 12), attn, _randn(rng, 3, 4, 12)),  # Tq == Tk: swapping keeps the shape
        _mha(_randn(rng, 3, 2, 12), attn, _randn(rng, 3, 6, 12), masks.padding_mask(lengths, 6)),
        # sentence 0 is all padding: its queries see no key (zero weights, finite gradients)
        _mha(_randn(rng, 2, 2, 12), attn, _randn(rng, 2, 5, 12), masks.padding_mask(torch.tensor([0, 5]), 5)),
    ]


MHA_SELF = _exercise(
    "mha_self_tests", "Exercise 3 (self-attention)", "multi_head_attention", ref.multi_head_attention, _judge_mha,
    with_gradients(wrt=("x",), run=_call, output=lambda result: result),
    "self-attention matches MultiHeadAttention, output and gradients", _mha_self_visible, _mha_self_hidden,
)
MHA_CROSS = _exercise(
    "mha_cross_tests", "Exercise 3 (cross-attention)", "multi_head_attention", ref.multi_head_attention, _judge_mha,
    with_gradients(wrt=("x", "context"), run=_call, output=lambda result: result),
    "cross-attention matches MultiHeadAttention (the output follows the queries), output and gradients",
    _mha_cross_visible, _mha_cross_hidden,
)


# ----------------------------------------------------------------------------- the two derivations

def _two_items(value_a: list[float], value_b: list[float], gap: float) -> Case:
    return Case(f"`two_item_output(value_a={value_a}, value_b={value_b}, gap={gap:.4g})`",
                (torch.tensor(value_a, dtype=torch.float64), torch.tensor(value_b, dtype=torch.float64), gap))


def _judge_two_items(case: Case, got: Any, expected: np.ndarray) -> None:
    output = as_array(expect_value(got, case, "the head's output vector"), case.label)
    value_a, value_b, gap = (case.args[0].numpy(), case.args[1].numpy(), case.args[2])
    share = 1.0 / (1.0 + math.exp(-gap))
    mistakes = {
        "the two weights are swapped: the key with the higher score gets the larger weight, "
        "w_a = 1 / (1 + e^(-gap)).": (1 - share) * value_a + share * value_b,
        "this is the gap itself used as a weight; the weights are softmax([s_a, s_b]), which depends only on "
        "the gap: w_a = e^(s_a) / (e^(s_a) + e^(s_b)) = 1 / (1 + e^(-gap)).": gap * value_a + (1 - gap) * value_b,
        "the weights are not normalised: e^(s_a) / (e^(s_a) + e^(s_b)) needs the denominator.":
            math.exp(gap) * value_a + value_b,
    }
    if gap != 0:
        mistakes["this is the plain average; it is what the head returns only when the two scores are equal "
                 "(gap = 0)."] = (value_a + value_b) / 2
    assert_close_to_reference(output, expected, case.label, rtol=1e-6, atol=1e-9, mistakes=mistakes,
                              hint="Only the two keys matter: w_a = e^(s_a) / (e^(s_a) + e^(s_b)), w_b = 1 - w_a, "
                                   "output = w_a value_a + w_b value_b.")


def _two_items_hidden(rng: np.random.Generator) -> list[Case]:
    width = int(rng.integers(2, 6))
    return [_two_items([float(v) for v in rng.standard_normal(width)], [float(v) for v in rng.standard_normal(width)],
                       float(rng.uniform(-5, 5))) for _ in range(3)] + [_two_items([1.0], [3.0], -math.log(3.0))]


TWO_ITEMS = _exercise(
    "two_items_tests", "Exercise 4a (one head, two items)", "two_item_output", ref.two_item_output, _judge_two_items,
    _call, "the head's output is the logistic blend of the two values",
    visible=lambda: [_two_items([2.0, 0.0], [0.0, 4.0], 0.0), _two_items([1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                                                                          math.log(9.0))],
    hidden=_two_items_hidden,
)


def _variance(d_model: int, n_heads: int) -> Case:
    return Case(f"`head_score_variance(d_model={d_model}, n_heads={n_heads})`", (d_model, n_heads))


def _judge_variance(case: Case, got: Any, expected: tuple[float, float]) -> None:
    variance, scale = as_pair(expect_value(got, case, "a pair (variance, scale)"), case.label, ("variance", "scale"))
    variance, scale = (float(as_array(v, case.label)) for v in (variance, scale))
    d_model, n_heads = case.args
    head_dim = d_model / n_heads
    if not math.isclose(variance, expected[0], rel_tol=1e-9):
        named = {d_model: f"{d_model} = D is the variance of a dot product over all D features; one head's "
                          f"dot product adds only Dh = D / h products.",
                 math.sqrt(head_dim): "that is the standard deviation; the variance of a sum of Dh independent "
                                      "products, each of variance 1, is Dh."}
        close = [message for value, message in named.items() if math.isclose(variance, value, rel_tol=1e-9)]
        raise Wrong(f"{case.label} gives variance {variance:g}, expected {expected[0]:g}. "
                    f"{close[0] if close else 'Each of the Dh products q_i k_i has mean 0 and variance 1.'}")
    if not math.isclose(scale, expected[1], rel_tol=1e-9):
        named = {1 / math.sqrt(d_model): "1/sqrt(D) scales for the full width; one head needs 1/sqrt(Dh).",
                 1 / head_dim: "dividing by Dh brings the variance to 1/Dh; divide by sqrt(Dh) to bring it to 1.",
                 math.sqrt(head_dim): "multiplying by sqrt(Dh) makes the variance larger; divide by it."}
        close = [message for value, message in named.items() if math.isclose(scale, value, rel_tol=1e-9)]
        raise Wrong(f"{case.label} gives scale {scale:g}, expected {expected[1]:g}. "
                    f"{close[0] if close else 'Scaling a number by c multiplies its variance by c².'}")


def _variance_hidden(rng: np.random.Generator) -> list[Case]:
    cases = []
    for _ in range(3):
        n_heads = int(rng.choice([1, 2, 4, 8, 16]))
        cases.append(_variance(n_heads * int(rng.integers(2, 129)), n_heads))
    return cases + [_variance(8, 8)]


HEAD_VARIANCE = _exercise(
    "head_variance_tests", "Exercise 4b (the variance of one head's scores)", "head_score_variance",
    ref.head_score_variance, _judge_variance, _call, "variance Dh, scale 1/sqrt(Dh)",
    visible=lambda: [_variance(512, 8), _variance(64, 4)], hidden=_variance_hidden,
)


# ----------------------------------------------------------------------------- caches: scenarios

class _ProjectionCounter:
    """Counts the calls (and the rows of each call) of an attention module's projections, through forward hooks."""

    def __init__(self, attn: MultiHeadAttention) -> None:
        self.rows: dict[str, list[int]] = {name: [] for name in ("q_proj", "k_proj", "v_proj", "out_proj")}
        self._handles = [getattr(attn, name).register_forward_hook(self._hook(name)) for name in self.rows]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            self.rows[name].append(int(inputs[0].shape[-2]) if inputs[0].dim() >= 2 else 1)
        return hook

    def calls(self, name: str) -> int:
        return len(self.rows[name])

    def __enter__(self) -> _ProjectionCounter:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()


def _construct(cls: Any, attn: MultiHeadAttention, name: str) -> Any:
    if not isinstance(cls, type):
        raise Wrong(f"expected the class `{name}` itself (without parentheses), got {type(cls).__name__}")
    return cls(attn)


def _tensor_steps(outputs: list[Any], name: str, shape: str) -> Tensor:
    if any(not isinstance(out, Tensor) for out in outputs):
        raise Wrong(f"`{name}.step` should return a tensor {shape}.")
    return torch.cat(outputs, dim=1)


def _shape_of(value: Any) -> tuple[int, ...] | None:
    return tuple(int(n) for n in value.shape) if isinstance(value, Tensor) else None


@torch.no_grad()
def _run_static(cls: Any, case: Case) -> dict[str, Any]:
    """Fill the cache once, step through x in chunks; then again, overwriting the memory and the K/V weights after fill.

    Returns the steps' outputs of both runs, the key's shape after fill and the K/V projection calls
    made by fill and by the steps.
    """
    attn, x, memory, mask, chunks = case.args
    result: dict[str, Any] = {}
    for poison in (False, True):
        module, source = copy.deepcopy(attn), memory.clone()
        with _ProjectionCounter(module) as counter:
            cache = _construct(cls, module, "CrossAttentionCache")
            cache.fill(source, mask)
            filled = (counter.calls("k_proj"), counter.calls("v_proj"))
            key_shape = _shape_of(getattr(cache, "key", None))
            if poison:  # a step that re-reads the memory, by any route, now gets other numbers
                source.copy_(torch.flip(source, dims=[1]) + 1.0)
                module.k_proj.weight.mul_(-2.0)
                module.v_proj.weight.mul_(-2.0)
            steps = [cache.step(piece) for piece in torch.split(x, chunks, dim=1)]
        output = _tensor_steps(steps, "CrossAttentionCache", "(B, t, D) for t new positions")
        if poison:
            result["output_after_overwrite"] = output
        else:
            result.update(output=output, key_shape=key_shape, fill_kv=filled,
                          step_kv=(counter.calls("k_proj") - filled[0], counter.calls("v_proj") - filled[1]))
    return result


def _judge_static(case: Case, got: Any, expected: dict[str, Any]) -> None:
    got = expect_value(got, case, "its step outputs")
    attn, x, memory, mask, chunks = case.args
    if got["fill_kv"] == (0, 0) and got["step_kv"] != (0, 0):
        raise Wrong(f"{case.label}: `fill` did not project the memory, `step` did. Project keys and values once in "
                    "fill(); step() only projects the new queries.")
    if got["key_shape"] != expected["key_shape"]:
        found = "no tensor attribute `key`" if got["key_shape"] is None else f"`key` of shape {got['key_shape']}"
        raise Wrong(f"after `fill`, {case.label} has {found}: store the projected keys split into heads as self.key "
                    f"{expected['key_shape']} = (B, h, Tk, Dh), and the values as self.value.")
    if got["fill_kv"] != (1, 1) or got["step_kv"] != (0, 0):
        calls = [a + b for a, b in zip(got["fill_kv"], got["step_kv"], strict=True)]
        raise Wrong(f"{case.label}: the memory was projected again ({calls[0]} key and {calls[1]} value projections "
                    f"for {len(chunks)} step(s)). It never changes while decoding: project it once in fill() and "
                    "reuse self.key / self.value in step().")
    what = f"the steps of {case.label} put together"
    output = as_array(got["output"], what)
    assert_close_to_reference(output, expected["output"], what, rtol=RTOL, atol=ATOL,
                              mistakes=_mha_mistakes(x, attn, memory, mask),
                              hint="step(x) is cross-attention from x's queries to the stored keys and values, "
                                   "with the stored memory mask, then the output projection.")
    if not np.allclose(as_array(got["output_after_overwrite"], what), output, rtol=RTOL, atol=ATOL):
        raise Wrong(f"{case.label}: after fill(), overwriting the memory and the key/value weights changed what "
                    "step() returns, so step() still reads the memory. Project it once in fill() and reuse the "
                    "stored keys and values.")


def _static(attn: MultiHeadAttention, x: Tensor, memory: Tensor, mask: Tensor | None, chunks: list[int]) -> Case:
    masked = "" if mask is None else ", memory_mask"
    label = f"`CrossAttentionCache` (fill(memory {tuple(memory.shape)}{masked}), then steps of {chunks} positions)"
    return Case(label, (attn, x, memory, mask, chunks))


def _static_visible() -> list[Case]:
    rng = np.random.default_rng(6)
    attn, x, memory = make_attention(16, 4, seed=5), _randn(rng, 2, 4, 16), _randn(rng, 2, 6, 16)
    return [_static(attn, x, memory, None, [1, 1, 1, 1]),
            _static(attn, x, memory, masks.padding_mask(torch.tensor([6, 3]), 6), [1, 1, 1, 1])]


def _static_hidden(rng: np.random.Generator) -> list[Case]:
    attn = make_attention(12, 3, _seed(rng))
    x, memory = _randn(rng, 3, 5, 12), _randn(rng, 3, 8, 12)
    mask = masks.padding_mask(torch.from_numpy(rng.integers(1, 9, size=3)), 8)
    return [_static(attn, x, memory, mask, [1] * 5),
            _static(attn, x, memory, mask, [2, 3]),  # several new queries per step
            _static(make_attention(8, 2, _seed(rng)), _randn(rng, 1, 3, 8), _randn(rng, 1, 1, 8), None, [1, 1, 1])]


STATIC_CACHE = _exercise(
    "static_cache_tests", "Exercise 5 (the static cross-attention cache)", "CrossAttentionCache",
    ref.CrossAttentionCache, _judge_static, _run_static,
    "the memory is projected once, in fill; the steps match full cross-attention", _static_visible, _static_hidden,
)


# ----------------------------------------------------------------------------- growing self-attention cache

@torch.no_grad()
def _run_growing(cls: Any, case: Case) -> dict[str, Any]:
    """Feed x one position per step; returns the steps' outputs, the cached length after each step, the K rows."""
    attn, x = case.args
    lengths = []
    with _ProjectionCounter(attn) as counter:
        cache = _construct(cls, attn, "SelfAttentionCache")
        outputs = []
        for t in range(x.shape[1]):
            outputs.append(cache.step(x[:, t:t + 1]))
            key = getattr(cache, "key", None)
            lengths.append(int(key.shape[-2]) if isinstance(key, Tensor) and key.dim() == 4 else -1)
    return {"output": _tensor_steps(outputs, "SelfAttentionCache", "(B, 1, D)"), "key_lengths": lengths,
            "most_key_rows": max(counter.rows["k_proj"], default=0)}


def _judge_growing(case: Case, got: Any, expected: dict[str, Any]) -> None:
    got = expect_value(got, case, "its step outputs")
    attn, x = case.args
    for step, (length, wanted) in enumerate(zip(got["key_lengths"], expected["key_lengths"], strict=True), 1):
        if length != wanted:
            found = "no (B, h, t, Dh) tensor `key`" if length < 0 else f"{length} positions"
            raise Wrong(f"{case.label}: after step {step}, `cache.key` should hold {wanted} positions (B, h, {wanted}, "
                        f"Dh), found {found}: each step appends exactly one key and one value (torch.cat along "
                        "the time axis, dim=2).")
    if got["most_key_rows"] > 1:
        raise Wrong(f"{case.label}: the key projection ran on {got['most_key_rows']} positions in one step. Project "
                    "only the new position and keep the earlier keys and values in the cache.")
    with torch.no_grad():
        only_itself = attn.out_proj(attn.v_proj(x)).numpy()  # each position attending only to itself
    what = f"the steps of {case.label} put together"
    assert_close_to_reference(
        as_array(got["output"], what), expected["output"], what, rtol=RTOL, atol=ATOL,
        mistakes={"each position attends only to itself: the new query must attend to every cached key, "
                  "the new one included.": only_itself},
        hint="step(x_t): project x_t, append its key and value, attend from its query to all stored keys, merge "
             "the heads, output projection.",
    )


def _growing(attn: MultiHeadAttention, x: Tensor) -> Case:
    return Case(f"`SelfAttentionCache` fed x {tuple(x.shape)} one position per step", (attn, x))


GROWING_CACHE = _exercise(
    "growing_cache_tests", "Exercise 6 (the growing self-attention cache)", "SelfAttentionCache",
    ref.SelfAttentionCache, _judge_growing, _run_growing,
    "one key and value appended per step; the steps match causal self-attention",
    visible=lambda: [_growing(make_attention(16, 4, seed=7), _randn(np.random.default_rng(8), 2, 5, 16))],
    hidden=lambda rng: [_growing(make_attention(12, 3, _seed(rng)), _randn(rng, 3, 9, 12)),
                        _growing(make_attention(8, 1, _seed(rng)), _randn(rng, 1, 1, 8)),  # a single step
                        _growing(make_attention(8, 2, _seed(rng), bias=False), _randn(rng, 2, 6, 8, scale=20.0))],
)


# ----------------------------------------------------------------------------- one decoder layer, incrementally

@torch.no_grad()
def _run_decoder(fn: Any, case: Case) -> dict[str, Any]:
    """Run the student's incremental decoding; returns its output and the projection calls it made."""
    layer, x, memory, memory_mask = case.args
    with _ProjectionCounter(layer.self_attn) as self_counter, _ProjectionCounter(layer.cross_attn) as cross_counter:
        output = fn(layer, x, memory, memory_mask)
    return {"output": output, "self_query_calls": self_counter.calls("q_proj"),
            "most_self_query_rows": max(self_counter.rows["q_proj"], default=0),
            "memory_projections": cross_counter.calls("k_proj")}


def _judge_decoder(case: Case, got: Any, expected: dict[str, Any]) -> None:
    got = expect_value(got, case, "the decoder layer's outputs (B, T, D)")
    layer, x, memory, memory_mask = case.args
    steps = x.shape[1]
    if got["most_self_query_rows"] > 1 or got["self_query_calls"] not in (0, steps):
        raise Wrong(f"{case.label}: the self-attention ran {got['self_query_calls']} time(s) on up to "
                    f"{got['most_self_query_rows']} positions; decoding feeds one position per step ({steps} steps "
                    "of 1 position), with a SelfAttentionCache holding the earlier ones.")
    if got["memory_projections"] > 1:
        raise Wrong(f"{case.label}: the memory was projected {got['memory_projections']} times; fill one "
                    "CrossAttentionCache before the loop and reuse it at every step.")
    with torch.no_grad():
        unmasked = layer(x, memory, masks.causal_mask(steps), None)[0].numpy()
    what = f"the output of {case.label}"
    assert_close_to_reference(
        as_array(got["output"], what), expected["output"], what, rtol=RTOL, atol=ATOL,
        mistakes={"padded memory positions are attended to: pass memory_mask to the cross-attention cache.":
                  unmasked},
        hint="Per step: h = layer.self_block(x_t, self_cache.step); h = layer.cross_block(h, cross_cache.step); "
             "h = layer.ff_block(h, layer.ff).",
    )


def _decoder(layer: DecoderLayer, x: Tensor, memory: Tensor, lengths: list[int]) -> Case:
    label = f"`incremental_decode(layer, x {tuple(x.shape)}, memory {tuple(memory.shape)}, memory_mask)`"
    return Case(label, (layer, x, memory, masks.padding_mask(torch.tensor(lengths), memory.shape[1])))


def _decoder_hidden(rng: np.random.Generator) -> list[Case]:
    layer = make_decoder_layer(12, 3, _seed(rng))
    lengths = [4, 1, int(rng.integers(1, 5))]
    return [_decoder(layer, _randn(rng, 3, 8, 12), _randn(rng, 3, 4, 12), lengths),
            _decoder(layer, _randn(rng, 1, 1, 12), _randn(rng, 1, 6, 12), [6])]  # a single step


DECODER_STEP = _exercise(
    "decoder_step_tests", "Exercise 6 (one decoder layer, step by step)", "incremental_decode",
    ref.incremental_decode, _judge_decoder, _run_decoder,
    "step-by-step decoding equals the layer's full forward pass",
    visible=lambda: [_decoder(make_decoder_layer(16, 4, seed=10), _randn(np.random.default_rng(9), 2, 5, 16),
                              _randn(np.random.default_rng(19), 2, 7, 16), [7, 4])],
    hidden=_decoder_hidden,
)

EXERCISES = Exercises("03_two_modes", [PADDING, CAUSAL, MHA_SELF, MHA_CROSS, TWO_ITEMS, HEAD_VARIANCE, STATIC_CACHE,
                                       GROWING_CACHE, DECODER_STEP])
check = EXERCISES.check
record = EXERCISES.record
