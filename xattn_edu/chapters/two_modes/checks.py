"""Checks for Chapter 3, "Two modes of thought" (self- vs cross-attention, masks, heads, caches).

Test cells call ``check_<exercise>(...)`` (visible) and ``check_<exercise>_hidden(...)`` (edge
cases). Each check computes the expected result with the package's torch reference first
(:mod:`xattn_edu.nn.masks`, :class:`xattn_edu.nn.heads.MultiHeadAttention`, :class:`xattn_edu.nn.model.DecoderLayer`),
then runs the student's code with those references forbidden (:data:`FORBIDDEN`). Library softmax is
allowed here: writing it was Chapter 1's point, this chapter is about where Q, K and V come from.

Known mistakes are recognised by computing what they would produce (:func:`_mha_variant`) and
naming them: inverted mask polarity, a causal mask without its diagonal, a missing 1/sqrt(Dh),
swapped query and memory, memory re-projected at every decoding step.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xattn_edu.chapters.support.checks import (
    as_array,
    assert_close_to_reference,
    assert_shape,
    call_student,
    student_name,
)
from xattn_edu.chapters.support.guard import forbid_reference
from xattn_edu.nn import masks as ref_masks
from xattn_edu.nn.attention import scaled_dot_product_attention
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import DecoderLayer, Seq2SeqConfig

FORBIDDEN = (
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
"""Softmax is a building block here, not the exercise."""

RTOL, ATOL = 1e-4, 1e-5  # float32 results computed in a different order than the reference

POLARITY_HINT = (
    "In this course True means 'may attend' (the opposite of nn.MultiheadAttention's masks, where True "
    "means 'blocked')."
)


def _call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """The student's code, guarded: the package's references and fused kernels are forbidden."""
    return call_student(fn, *args, guard_extra=FORBIDDEN, guard_allow=ALLOWED, **kwargs)


def _mask_result(result: Any, what: str) -> Tensor:
    if result is None:
        raise AssertionError(f"{what} returned None; did you forget the `return` statement?")
    if not isinstance(result, Tensor):
        raise AssertionError(f"{what} should return a torch tensor, got {type(result).__name__}")
    if result.dtype != torch.bool:
        raise AssertionError(
            f"{what} has dtype {result.dtype}; masks are boolean (True = may attend). "
            "A comparison such as `positions < lengths` gives a bool tensor directly."
        )
    return result


# ----------------------------------------------------------------------------- padding_mask_from_lengths

def _check_padding_case(fn: Callable, lengths: list[int], max_len: int) -> None:
    lengths_t = torch.tensor(lengths)
    expected = ref_masks.padding_mask(lengths_t, max_len)
    what = f"`{fn.__name__}(torch.tensor({lengths}), max_len={max_len})`"
    got = _mask_result(_call(fn, lengths_t, max_len), what)
    flat = expected[:, 0, 0, :]  # (B, Tk)
    if tuple(got.shape) == tuple(flat.shape) and torch.equal(got, flat):
        raise AssertionError(
            f"{what} has shape {tuple(got.shape)}, expected (B, 1, 1, Tk) = {tuple(expected.shape)}: add the two "
            "singleton axes (mask[:, None, None, :]) so it broadcasts over heads and queries."
        )
    mistakes = {
        f"True marks the padding; it should mark the real tokens. {POLARITY_HINT}": ~expected,
        "position `length` is marked as a real token; positions 0 .. length-1 are real, so compare with `<`, "
        "not `<=`.": (torch.arange(max_len)[None, :] <= lengths_t[:, None])[:, None, None, :],
    }
    assert_close_to_reference(as_array(got, what), as_array(expected, what), what,
                              mistakes={k: as_array(v, what) for k, v in mistakes.items()},
                              hint="Key position j of sentence b is real exactly when j < lengths[b].")


def check_padding_mask(fn: Callable) -> None:
    """Visible: three sentences of lengths 3, 1, 5 padded to 5 keys."""
    _check_padding_case(fn, [3, 1, 5], 5)
    _check_padding_case(fn, [2, 4], 6)
    print(f"{student_name(fn)}: shape (B, 1, 1, Tk), True on real tokens.")


def check_padding_mask_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_padding_mask``: inputs the visible check leaves out."""
    _check_padding_case(fn, [0, 3], 3)  # an empty sentence: a row of False
    _check_padding_case(fn, [4], 4)  # one sentence, no padding
    _check_padding_case(fn, [1, 1, 2, 7], 9)  # max_len longer than every sentence
    _check_padding_case(fn, [1], 1)


# ----------------------------------------------------------------------------- causal_mask

def _check_causal_case(fn: Callable, size: int) -> None:
    expected = ref_masks.causal_mask(size)
    what = f"`{fn.__name__}({size})`"
    got = _mask_result(_call(fn, size), what)
    square = expected[0, 0]
    if tuple(got.shape) == (size, size) and torch.equal(got, square):
        raise AssertionError(
            f"{what} has shape {tuple(got.shape)}, expected (1, 1, T, T) = {tuple(expected.shape)}: add two leading "
            "singleton axes so it broadcasts over the batch and the heads."
        )
    strictly_lower = torch.tril(torch.ones(size, size, dtype=torch.bool), diagonal=-1)[None, None]
    mistakes = {
        "the diagonal is False, so a position may not attend to itself (and the first position sees nothing). "
        "Keep the diagonal: key position j is visible to query i when j <= i.": strictly_lower,
        f"True marks the future positions; it should mark the visible past (and the present). {POLARITY_HINT}":
            ~expected,
        "each query sees the future and not the past: row i (a query) should be True for columns j <= i "
        "(torch.tril, not torch.triu).": expected.transpose(-1, -2),
    }
    if size > 1:  # for T = 1 the known mistakes coincide with other answers
        assert_close_to_reference(as_array(got, what), as_array(expected, what), what,
                                  mistakes={k: as_array(v, what) for k, v in mistakes.items()},
                                  hint="Row i is query position i, column j key position j; True where j <= i.")
    else:
        assert_close_to_reference(as_array(got, what), as_array(expected, what), what,
                                  hint="A single position attends to itself: [[[[True]]]].")


def check_causal_mask(fn: Callable) -> None:
    """Visible: T = 4 and T = 6."""
    _check_causal_case(fn, 4)
    _check_causal_case(fn, 6)
    print(f"{student_name(fn)}: shape (1, 1, T, T), True on and below the diagonal.")


def check_causal_mask_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_causal_mask``: inputs the visible check leaves out."""
    _check_causal_case(fn, 1)
    _check_causal_case(fn, 2)
    _check_causal_case(fn, 17)


# ----------------------------------------------------------------------------- multi_head_attention

def make_attention(d_model: int, n_heads: int, seed: int, bias: bool = True) -> MultiHeadAttention:
    """A reference module with random weights (eval mode) whose projections the exercises use."""
    torch.manual_seed(seed)
    attn = MultiHeadAttention(d_model, n_heads, bias=bias, fused=False).eval()
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            if proj.bias is not None:
                proj.bias.normal_(0.0, 0.1)  # nonzero biases, so forgetting one shows
    return attn


@torch.no_grad()
def _mha_variant(
    x: Tensor, attn: MultiHeadAttention, context: Tensor | None = None, mask: Tensor | None = None, *,
    n_heads: int | None = None, scale: float | None = None, flip_mask: bool = False, ignore_mask: bool = False,
    output_projection: bool = True, swap: bool = False, naive_split: bool = False,
) -> Tensor:
    """Multi-head attention written out, with switches that reproduce classic mistakes (all off = correct)."""
    queries_from, memory = (x, context if context is not None else x)
    if swap:
        queries_from, memory = memory, queries_from
    heads = n_heads or attn.n_heads

    def split(t: Tensor) -> Tensor:  # (B, T, D) -> (B, h, T, Dh)
        if naive_split:  # reshapes without moving the head axis in front of the time axis
            return t.reshape(t.shape[0], heads, t.shape[1], -1)
        return t.unflatten(-1, (heads, -1)).transpose(1, 2)

    query, key, value = split(attn.q_proj(queries_from)), split(attn.k_proj(memory)), split(attn.v_proj(memory))
    if mask is not None and not ignore_mask:
        mask = ~mask if flip_mask else mask
    else:
        mask = None
    out = scaled_dot_product_attention(query, key, value, mask, scale=scale)  # (B, h, Tq, Dh)
    merged = out.transpose(1, 2).flatten(-2)  # (B, Tq, D)
    return attn.out_proj(merged) if output_projection else merged


def _mha_mistakes(x: Tensor, attn: MultiHeadAttention, context: Tensor | None, mask: Tensor | None) -> dict:
    d_model, heads = attn.d_model, attn.n_heads
    mistakes = {
        "the scores are not scaled: divide query·key by sqrt(Dh), the width of one head.":
            _mha_variant(x, attn, context, mask, scale=1.0),
        "the scores are divided by sqrt(D); divide by sqrt(Dh) = sqrt(D / h), the width of one head.":
            _mha_variant(x, attn, context, mask, scale=1.0 / math.sqrt(d_model)),
        "the output projection is missing: after merging the heads, apply attn.out_proj.":
            _mha_variant(x, attn, context, mask, output_projection=False),
    }
    if heads > 1:
        mistakes["this is one head over all D dimensions: split the projections into h heads of width Dh, "
                 "attend in each head separately, then merge."] = _mha_variant(x, attn, context, mask, n_heads=1)
        mistakes["the heads are split the wrong way: reshape (B, T, D) to (B, T, h, Dh) and then transpose to "
                 "(B, h, T, Dh); a direct reshape to (B, h, T, Dh) mixes positions and heads."] = _mha_variant(
            x, attn, context, mask, naive_split=True)
    if mask is not None:
        mistakes[f"the mask is applied the wrong way round: fill the scores with -inf where the mask is False. "
                 f"{POLARITY_HINT}"] = _mha_variant(x, attn, context, mask, flip_mask=True)
        mistakes["the mask is ignored: set the scores of masked (False) keys to -inf before the softmax."] = (
            _mha_variant(x, attn, context, mask, ignore_mask=True))
    if context is not None:
        mistakes["`context` is ignored: in cross-attention the keys and values come from `context`, "
                 "only the queries from `x`."] = _mha_variant(x, attn, None, None)
    return {message: wrong.numpy() for message, wrong in mistakes.items()}


def _check_mha_case(fn: Callable, attn: MultiHeadAttention, x: Tensor, context: Tensor | None = None,
                    mask: Tensor | None = None) -> None:
    with torch.no_grad():
        expected = attn(x, context=context, mask=mask)  # (B, Tq, D)
    parts = [f"x {tuple(x.shape)}"]
    kwargs: dict[str, Tensor] = {}
    if context is not None:
        parts.append(f"context {tuple(context.shape)}")
        kwargs["context"] = context
    if mask is not None:
        parts.append(f"mask {tuple(mask.shape)}")
        kwargs["mask"] = mask
    what = f"`{fn.__name__}({', '.join(parts)})` (h = {attn.n_heads})"
    with torch.no_grad():
        got = as_array(_call(fn, x, attn, **kwargs), what)
    if context is not None and context.shape[1] != x.shape[1] and got.shape[:2] == (x.shape[0], context.shape[1]):
        raise AssertionError(
            f"{what} has the memory's length {context.shape[1]}, not the queries' length {x.shape[1]}: the queries "
            "come from x (the decoder), keys and values from context (the encoder); the output follows the queries."
        )
    assert_shape(got, tuple(expected.shape), what, "The output has one D-wide row per query: (B, Tq, D).")
    if mask is not None:
        _diagnose_nan_rows(got, mask, x.shape[0], what)
    assert_close_to_reference(got, expected.numpy(), what, rtol=RTOL, atol=ATOL,
                              mistakes=_mha_mistakes(x, attn, context, mask),
                              hint="Project, split into heads, softmax(QK^T / sqrt(Dh)) V per head, merge, "
                                   "then the output projection.")


def _diagnose_nan_rows(got: np.ndarray, mask: Tensor, batch: int, what: str) -> None:
    """Name the cause when some output rows are NaN: no visible key (needs zero weights) or inverted polarity."""
    nan_rows = ~np.isfinite(got).all(axis=-1)  # (B, Tq)
    if not nan_rows.any():
        return
    shape = (batch, mask.shape[1], got.shape[1], mask.shape[-1])
    empty = (~mask.expand(shape).any(-1)).any(1).numpy()  # (B, Tq) rows with no key to attend to
    empty_if_flipped = (~(~mask).expand(shape).any(-1)).any(1).numpy()
    if not empty.any() and (nan_rows <= empty_if_flipped).all():
        raise AssertionError(
            f"{what}: the mask is applied the wrong way round (the NaN rows are those whose every key would be "
            f"visible): fill the scores with -inf where the mask is False. {POLARITY_HINT}"
        )


def _random_mask(shape: tuple[int, ...], seed: int) -> Tensor:
    """A boolean mask whose every row has at least one True and one False (so both polarities are visible)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=generator) < 0.5
    mask[..., 0], mask[..., -1] = True, False
    return mask


def check_mha_self(fn: Callable) -> None:
    """Visible: self-attention, without a mask and with the causal mask."""
    attn = make_attention(16, 4, seed=0)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    _check_mha_case(fn, attn, x)
    _check_mha_case(fn, attn, x, mask=ref_masks.causal_mask(5))
    print(f"{student_name(fn)}: self-attention matches MultiHeadAttention (no mask, causal mask).")


def check_mha_self_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_mha_self``: inputs the visible check leaves out."""
    generator = torch.Generator().manual_seed(11)
    _check_mha_case(fn, make_attention(12, 3, seed=12), torch.randn(3, 7, 12, generator=generator),
                    mask=_random_mask((3, 1, 7, 7), seed=13))
    _check_mha_case(fn, make_attention(8, 1, seed=14), torch.randn(1, 4, 8, generator=generator))  # one head
    _check_mha_case(fn, make_attention(8, 8, seed=15), torch.randn(2, 3, 8, generator=generator))  # Dh = 1
    _check_mha_case(fn, make_attention(16, 2, seed=16, bias=False), torch.randn(2, 1, 16, generator=generator))
    _check_mha_case(fn, make_attention(16, 4, seed=17), 30 * torch.randn(2, 6, 16, generator=generator),
                    mask=ref_masks.causal_mask(6))  # large scores


def check_mha_cross(fn: Callable) -> None:
    """Visible: cross-attention, Tq = 3 queries over Tk = 7 memory positions, with a padding mask."""
    attn = make_attention(16, 4, seed=2)
    generator = torch.Generator().manual_seed(3)
    x, memory = torch.randn(2, 3, 16, generator=generator), torch.randn(2, 7, 16, generator=generator)
    _check_mha_case(fn, attn, x, context=memory)
    _check_mha_case(fn, attn, x, context=memory, mask=_random_mask((2, 1, 3, 7), seed=4))
    _check_mha_case(fn, attn, x, context=memory, mask=ref_masks.padding_mask(torch.tensor([7, 4]), 7))
    print(f"{student_name(fn)}: cross-attention matches MultiHeadAttention (output length follows the queries).")


def check_mha_cross_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_mha_cross``: inputs the visible check leaves out."""
    generator = torch.Generator().manual_seed(21)
    attn = make_attention(12, 3, seed=22)
    _check_mha_case(fn, attn, torch.randn(2, 1, 12, generator=generator),
                    context=torch.randn(2, 9, 12, generator=generator))  # a single query
    _check_mha_case(fn, attn, torch.randn(2, 5, 12, generator=generator),
                    context=torch.randn(2, 1, 12, generator=generator))  # a single memory position
    _check_mha_case(fn, attn, torch.randn(3, 4, 12, generator=generator),
                    context=torch.randn(3, 4, 12, generator=generator),
                    mask=_random_mask((3, 1, 4, 4), seed=23))  # Tq == Tk: swapping keeps the shape
    _check_mha_case(fn, attn, torch.randn(3, 2, 12, generator=generator),
                    context=torch.randn(3, 6, 12, generator=generator),
                    mask=ref_masks.padding_mask(torch.tensor([6, 1, 3]), 6))
    what = f"`{fn.__name__}` on a sentence whose every memory position is padding"
    empty = ref_masks.padding_mask(torch.tensor([0, 5]), 5)  # sentence 0 has no real token
    x, memory = torch.randn(2, 2, 12, generator=generator), torch.randn(2, 5, 12, generator=generator)
    with torch.no_grad():
        got = as_array(_call(fn, x, attn, context=memory, mask=empty), what)
    if not np.isfinite(got).all():
        raise AssertionError(f"{what} gives NaN: when a query may attend to no key, give it all-zero weights "
                             "(e.g. torch.nan_to_num on the weights, or zero the rows that have no True).")
    _check_mha_case(fn, attn, x, context=memory, mask=empty)


# ----------------------------------------------------------------------------- caches

class _ProjectionCounter:
    """Counts calls (and rows) of each projection of an attention module through forward hooks."""

    def __init__(self, attn: MultiHeadAttention) -> None:
        self.calls = {name: 0 for name in ("q_proj", "k_proj", "v_proj", "out_proj")}
        self.rows = {name: [] for name in self.calls}
        self._handles = [getattr(attn, name).register_forward_hook(self._hook(name)) for name in self.calls]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            self.calls[name] += 1
            self.rows[name].append(inputs[0].shape[-2] if inputs[0].dim() >= 2 else 1)
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _steps_of(x: Tensor, chunks: list[int]) -> list[Tensor]:
    """Split x (B, T, D) along time into consecutive pieces of the given lengths."""
    return list(torch.split(x, chunks, dim=1))


def _run(student: str, fn: Callable, *args: Any) -> Any:
    """Like :func:`call_student` but without copying the inputs: the grader watches what the student keeps."""
    with warnings.catch_warnings(), forbid_reference(*FORBIDDEN, allow=ALLOWED, student=student):
        warnings.simplefilter("ignore")
        return fn(*args)


def _construct(cls: Any, attn: MultiHeadAttention) -> Any:
    name = getattr(cls, "__name__", repr(cls))
    if not isinstance(cls, type):
        raise AssertionError(f"expected the class `{name}` itself (without parentheses), got {type(cls).__name__}")
    return _run(f"`{name}`", cls, attn)




def _run_static(cls: Any, attn: MultiHeadAttention, x: Tensor, memory: Tensor, mask: Tensor | None,
                chunks: list[int], what: str, poison: bool) -> Tensor:
    """Build the student's cache on copies, fill it once, step through x in ``chunks``; returns the steps (B, T, D).

    Projection calls are counted: keys and values exactly once, inside ``fill``. ``poison``: after ``fill``,
    the memory tensor and the key/value weights are overwritten with other (finite) numbers, so a step that
    re-reads the memory by any route (not only through ``attn.k_proj``) returns something else.
    """
    name = getattr(cls, "__name__", "CrossAttentionCache")
    student_attn, student_memory = copy.deepcopy(attn), memory.clone()
    counter = _ProjectionCounter(student_attn)
    try:
        with torch.no_grad():
            cache = _construct(cls, student_attn)
            _run(f"`{name}.fill`", cache.fill, student_memory, mask)
            filled = dict(counter.calls)
            key = getattr(cache, "key", None)
            if not isinstance(key, Tensor):
                raise AssertionError(f"after `fill`, {what} has no tensor attribute `key`: store the projected keys "
                                     "as self.key (B, h, Tk, Dh) and the values as self.value.")
            assert_shape(np.empty(tuple(key.shape)), (x.shape[0], attn.n_heads, memory.shape[1], attn.head_dim),
                         f"`cache.key` after fill ({what})", "Keep the keys split into heads: (B, h, Tk, Dh).")
            if poison:
                student_memory.copy_(torch.flip(student_memory, dims=[1]) + 1.0)
                student_attn.k_proj.weight.mul_(-2.0)
                student_attn.v_proj.weight.mul_(-2.0)
            outputs = [_run(f"`{name}.step`", cache.step, piece) for piece in _steps_of(x, chunks)]
    finally:
        counter.remove()
    if filled["k_proj"] == 0 and counter.calls["k_proj"] > 0:
        raise AssertionError(f"{what}: `fill` did not project the memory, `step` did. Project keys and values "
                             "once in fill(); step() only projects the new queries.")
    extra = counter.calls["k_proj"] - filled["k_proj"] + counter.calls["v_proj"] - filled["v_proj"]
    if extra > 0 or filled["k_proj"] > 1 or filled["v_proj"] > 1:
        raise AssertionError(
            f"{what}: the memory was projected again ({counter.calls['k_proj']} key and {counter.calls['v_proj']} "
            f"value projections for {len(chunks)} step(s)). It never changes while decoding: project it once in "
            "fill() and reuse self.key / self.value in step()."
        )
    if any(not isinstance(out, Tensor) for out in outputs):
        raise AssertionError(f"`{name}.step` should return a tensor (B, t, D) for t new positions.")
    return torch.cat(outputs, dim=1)


def _check_static_case(cls: Any, attn: MultiHeadAttention, x: Tensor, memory: Tensor, mask: Tensor | None,
                       chunks: list[int], poison: bool = False) -> None:
    """The concatenated steps must equal full cross-attention; with ``poison``, the memory must not be re-read."""
    name = getattr(cls, "__name__", "CrossAttentionCache")
    with torch.no_grad():
        expected = attn(x, context=memory, mask=mask)  # (B, Tq, D)
    what = f"`{name}` (memory {tuple(memory.shape)}, queries fed {chunks} positions per step)"
    got = _run_static(cls, attn, x, memory, mask, chunks, what, poison=False)
    assert_close_to_reference(as_array(got, what), expected.numpy(), what, rtol=RTOL, atol=ATOL,
                              mistakes=_mha_mistakes(x, attn, memory, mask),
                              hint="step(x) is cross-attention from x's queries to the stored keys and values, "
                                   "with the stored memory mask, then the output projection.")
    if poison:
        again = _run_static(cls, attn, x, memory, mask, chunks, what, poison=True)
        if not torch.allclose(again, got, rtol=RTOL, atol=ATOL, equal_nan=True):
            raise AssertionError(
                f"{what}: after fill(), overwriting the memory and the key/value weights changed what step() "
                "returns, so step() still reads the memory. Project it once in fill() and reuse the stored keys "
                "and values."
            )


def check_static_cache(cls: Any) -> None:
    """Visible: fill once, then 4 steps of one query each; the memory must be projected exactly once."""
    attn = make_attention(16, 4, seed=5)
    generator = torch.Generator().manual_seed(6)
    x, memory = torch.randn(2, 4, 16, generator=generator), torch.randn(2, 6, 16, generator=generator)
    _check_static_case(cls, attn, x, memory, None, [1, 1, 1, 1])
    _check_static_case(cls, attn, x, memory, ref_masks.padding_mask(torch.tensor([6, 3]), 6), [1, 1, 1, 1])
    print(f"`{getattr(cls, '__name__', cls)}`: memory projected once; steps match full cross-attention.")


def check_static_cache_hidden(cls: Any) -> None:
    """The hidden edge cases of ``check_static_cache``: inputs the visible check leaves out."""
    generator = torch.Generator().manual_seed(31)
    attn = make_attention(12, 3, seed=32)
    x, memory = torch.randn(3, 5, 12, generator=generator), torch.randn(3, 8, 12, generator=generator)
    mask = ref_masks.padding_mask(torch.tensor([8, 2, 5]), 8)
    _check_static_case(cls, attn, x, memory, mask, [1] * 5, poison=True)
    _check_static_case(cls, attn, x, memory, mask, [2, 3], poison=True)  # several new queries per step
    _check_static_case(cls, make_attention(8, 2, seed=33), torch.randn(1, 3, 8, generator=generator),
                       torch.randn(1, 1, 8, generator=generator), None, [1, 1, 1], poison=True)


# ----------------------------------------------------------------------------- growing self-attention cache

def _check_growing_case(cls: Any, attn: MultiHeadAttention, x: Tensor) -> None:
    """Feed x one position at a time; the steps must equal causal self-attention over all of x."""
    name = getattr(cls, "__name__", "SelfAttentionCache")
    steps = x.shape[1]
    with torch.no_grad():
        expected = attn(x, mask=ref_masks.causal_mask(steps))  # (B, T, D)
        only_itself = attn.out_proj(attn.v_proj(x))  # each position attending only to itself
    student_attn = copy.deepcopy(attn)
    what = f"`{name}` fed x {tuple(x.shape)} one position per step"
    counter = _ProjectionCounter(student_attn)
    outputs = []
    try:
        with torch.no_grad():
            cache = _construct(cls, student_attn)
            for t in range(steps):
                outputs.append(_run(f"`{name}.step`", cache.step, x[:, t:t + 1]))
                key = getattr(cache, "key", None)
                if not isinstance(key, Tensor) or key.dim() != 4 or key.shape[-2] != t + 1:
                    length = key.shape[-2] if isinstance(key, Tensor) and key.dim() == 4 else None
                    raise AssertionError(
                        f"{what}: after step {t + 1}, `cache.key` should hold {t + 1} positions, "
                        f"(B, h, {t + 1}, Dh), "
                        f"got {tuple(key.shape) if isinstance(key, Tensor) else type(key).__name__}"
                        f"{'' if length is None else f' ({length} positions)'}: each step appends exactly one key "
                        "and one value (torch.cat along the time axis)."
                    )
    finally:
        counter.remove()
    if max(counter.rows["k_proj"], default=0) > 1:
        raise AssertionError(f"{what}: the key projection ran on {max(counter.rows['k_proj'])} positions in one step. "
                             "Project only the new position and keep the earlier keys and values in the cache.")
    if any(not isinstance(out, Tensor) for out in outputs):
        raise AssertionError(f"`{name}.step` should return a tensor (B, 1, D).")
    got = torch.cat(outputs, dim=1)
    assert_close_to_reference(
        as_array(got, what), expected.numpy(), what, rtol=RTOL, atol=ATOL,
        mistakes={"each position attends only to itself: the new query must attend to every cached key, "
                  "the new one included.": only_itself.numpy()},
        hint="step(x_t): project x_t, append its key and value, attend from its query to all stored keys, "
             "merge the heads, output projection.",
    )


def check_growing_cache(cls: Any) -> None:
    """Visible: 5 steps; the cache grows by one position per step and matches causal self-attention."""
    _check_growing_case(cls, make_attention(16, 4, seed=7), torch.randn(2, 5, 16,
                                                                         generator=torch.Generator().manual_seed(8)))
    print(f"`{getattr(cls, '__name__', cls)}`: grows one position per step; matches causal self-attention.")


def check_growing_cache_hidden(cls: Any) -> None:
    """The hidden edge cases of ``check_growing_cache``: inputs the visible check leaves out."""
    generator = torch.Generator().manual_seed(41)
    _check_growing_case(cls, make_attention(12, 3, seed=42), torch.randn(3, 9, 12, generator=generator))
    _check_growing_case(cls, make_attention(8, 1, seed=43), torch.randn(1, 1, 8, generator=generator))  # 1 step
    _check_growing_case(cls, make_attention(8, 2, seed=44, bias=False), 20 * torch.randn(2, 6, 8,
                                                                                          generator=generator))


# ----------------------------------------------------------------------------- one decoder layer, incrementally

def make_decoder_layer(d_model: int, n_heads: int, seed: int) -> DecoderLayer:
    """A reference decoder layer (pre-norm, no dropout, eval mode) with random weights."""
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(src_vocab=2, tgt_vocab=2, d_model=d_model, n_heads=n_heads, d_ff=2 * d_model,
                        dropout=0.0, fused=False)
    return DecoderLayer(cfg).eval()


def _check_decode_case(fn: Callable, layer: DecoderLayer, x: Tensor, memory: Tensor, memory_mask: Tensor) -> None:
    steps = x.shape[1]
    with torch.no_grad():
        expected, _ = layer(x, memory, ref_masks.causal_mask(steps), memory_mask)  # (B, T, D)
        unmasked, _ = layer(x, memory, ref_masks.causal_mask(steps), None)
    student_layer = copy.deepcopy(layer)
    what = f"`{fn.__name__}(layer, x {tuple(x.shape)}, memory {tuple(memory.shape)}, memory_mask)`"
    self_counter = _ProjectionCounter(student_layer.self_attn)
    cross_counter = _ProjectionCounter(student_layer.cross_attn)
    try:
        with torch.no_grad():
            got = _run(student_name(fn), fn, student_layer, x.clone(), memory.clone(), memory_mask.clone())
    finally:
        self_counter.remove()
        cross_counter.remove()
    got = as_array(got, what)
    if max(self_counter.rows["q_proj"], default=0) > 1 or self_counter.calls["q_proj"] not in (0, steps):
        raise AssertionError(
            f"{what}: the self-attention ran {self_counter.calls['q_proj']} time(s) on up to "
            f"{max(self_counter.rows['q_proj'], default=0)} positions; decoding feeds one position per step "
            f"({steps} steps of 1 position), with a SelfAttentionCache holding the earlier ones."
        )
    if cross_counter.calls["k_proj"] > 1 and cross_counter.calls["k_proj"] == steps:
        raise AssertionError(f"{what}: the memory was projected at every step; fill one CrossAttentionCache "
                             "before the loop and reuse it.")
    assert_close_to_reference(
        got, expected.numpy(), what, rtol=RTOL, atol=ATOL,
        mistakes={"padded memory positions are attended to: pass memory_mask to the cross-attention cache.":
                  unmasked.numpy()},
        hint="Per step: x_t = layer.self_block(x_t, self_cache.step); x_t = layer.cross_block(x_t, cross_cache.step); "
             "x_t = layer.ff_block(x_t, layer.ff).",
    )


def check_decoder_step(fn: Callable) -> None:
    """Visible: one decoder layer run position by position equals its full (teacher-forced) forward pass."""
    generator = torch.Generator().manual_seed(9)
    layer = make_decoder_layer(16, 4, seed=10)
    x, memory = torch.randn(2, 5, 16, generator=generator), torch.randn(2, 7, 16, generator=generator)
    _check_decode_case(fn, layer, x, memory, ref_masks.padding_mask(torch.tensor([7, 4]), 7))
    print(f"{student_name(fn)}: step-by-step decoding equals the layer's full forward pass.")


def check_decoder_step_hidden(fn: Callable) -> None:
    """The hidden edge cases of ``check_decoder_step``: inputs the visible check leaves out."""
    generator = torch.Generator().manual_seed(51)
    layer = make_decoder_layer(12, 3, seed=52)
    x, memory = torch.randn(3, 8, 12, generator=generator), torch.randn(3, 4, 12, generator=generator)
    _check_decode_case(fn, layer, x, memory, ref_masks.padding_mask(torch.tensor([4, 1, 2]), 4))
    x, memory = torch.randn(1, 1, 12, generator=generator), torch.randn(1, 6, 12, generator=generator)
    _check_decode_case(fn, layer, x, memory, ref_masks.padding_mask(torch.tensor([6]), 6))  # a single step
