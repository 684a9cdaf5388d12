"""Scaled dot-product attention: one readable path and one fused path that agree.

The readable path spells the computation out::

    scores  = query @ key^T * scale            # (..., Tq, Tk)
    scores  = scores + bias                    # optional additive bias (e.g. relative positions)
    scores  = scores where visible else -inf   # visible: the mask allows the key and its bias is not -inf
    weights = softmax(scores, over keys)       # each row sums to 1
    output  = weights @ value                  # (..., Tq, Dv)

The fused path hands the same inputs to ``torch.nn.functional.scaled_dot_product_attention``
(flash / memory-efficient kernels on a GPU). Both follow the same three rules:

**A row with no finite score.** A key is *visible* to a query when the mask (and ``key_mask``)
allows it and the bias, cast to the scores' dtype, is not ``-inf``. A query with no visible key has
no finite score, whether the mask, the bias or both hid its keys: its weights are all 0, its output
is the zero vector and the gradients through it are 0, never NaN. (A ``+inf`` or NaN bias is an
error in the bias, not a mask, and gives NaN.)

**Dtypes.** query, key and value share one floating dtype; under ``torch.autocast`` they only need
to share the dtype autocast computes them in (float32, float16 and bfloat16 inputs are cast to
autocast's dtype, float64 stays). The bias may be any floating dtype (a float32
``RelativePositionBias`` with bfloat16 activations, say): it is cast to the scores' dtype, as the
fused kernels do, before anything else, so a float32 bias of -1e9 is -inf in float16. The softmax
runs in float32 for half-precision scores (in float64 for float64 ones) and the weights are cast
back to the scores' dtype. Anything else raises ``ValueError`` naming the dtypes.

**Mask layouts.** Masks are **boolean**, ``True`` where the query may attend to the key. ``mask``
and ``bias`` have exactly as many axes as the scores ``(..., Tq, Tk)``, each one the scores' size
or 1: padding ``(B, 1, 1, Tk)``, causal ``(1, 1, Tq, Tk)`` for 4-D scores. Fewer axes are refused
for every size, because broadcasting aligns from the right: a ``(B, Tk)`` padding mask would be
read as ``(Tq, Tk)``, silently wrong whenever B == Tq. A per-sentence padding mask ``(B, Tk)`` (the
layout of ``nn.MultiheadAttention``'s ``key_padding_mask``, but with our polarity: True = real
token) goes in ``key_mask`` instead; it is combined with ``mask`` by ``&``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_AUTOCAST_CASTS = (torch.float32, torch.float16, torch.bfloat16)  # dtypes autocast recasts for matmul


def _compute_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype a matmul of ``tensor`` runs in: autocast's when it is on for the tensor's device, else its own."""
    device = tensor.device.type
    if tensor.dtype in _AUTOCAST_CASTS and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return tensor.dtype


def _layouts(n_axes: int) -> str:
    """The accepted mask layouts for scores with ``n_axes`` axes, in words."""
    if n_axes < 3:
        return "(Tq, Tk) or (1, Tk)"
    ones = "1, " * (n_axes - 3)
    return f"padding (B, {ones}1, Tk), causal (1, {ones}Tq, Tk), or a (B, Tk) padding mask as key_mask="


def _check_dtypes(query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None) -> None:
    dtypes = f"query {query.dtype}, key {key.dtype}, value {value.dtype}"
    if not all(t.is_floating_point() for t in (query, key, value)):
        raise ValueError(f"query, key and value must be floating tensors; got {dtypes}")
    if len({_compute_dtype(t) for t in (query, key, value)}) > 1:
        autocast = " (or, under torch.autocast, one dtype that autocast casts to the same)"
        raise ValueError(f"query, key and value must share one dtype{autocast}; got {dtypes}")
    if bias is not None and not bias.is_floating_point():
        raise ValueError(f"bias must be a floating tensor (any float dtype; it is cast to the scores'), "
                         f"got dtype {bias.dtype}")


def _check_mask_shape(name: str, extra: Tensor, scores_shape: tuple[int, ...], shapes: str) -> None:
    n_axes = len(scores_shape)
    if extra.dim() != n_axes:
        raise ValueError(
            f"{name} of shape {tuple(extra.shape)} has {extra.dim()} axes, the scores (..., Tq, Tk) = "
            f"{scores_shape} have {n_axes}: give the {name} one axis per score axis (size 1 to share it): "
            f"{_layouts(n_axes)}. Fewer axes are refused because broadcasting aligns them from the right "
            f"(a (B, Tk) mask would be read as (Tq, Tk)); {shapes}"
        )
    if any(size not in (1, full) for size, full in zip(extra.shape, scores_shape, strict=True)):
        raise ValueError(f"{name} of shape {tuple(extra.shape)} does not broadcast to the scores (..., Tq, Tk) "
                         f"= {scores_shape}: each axis must be the scores' size or 1; {shapes}")


def check_attention_inputs(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    key_mask: Tensor | None = None,
) -> None:
    """Raise ``ValueError`` naming the shapes or dtypes when the inputs cannot be attended together.

    Expected: query (..., Tq, Dk), key (..., Tk, Dk), value (..., Tk, Dv) with the same leading
    dimensions and one dtype (see the module docstring for autocast); mask boolean and bias floating,
    each with one axis per score axis (..., Tq, Tk) of the scores' size or 1; key_mask boolean (B, Tk).
    """
    shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
    if query.dim() < 2 or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(f"query, key and value need the same rank (at least 2: (..., T, D)); got {shapes}")
    if query.shape[:-2] != key.shape[:-2] or key.shape[:-2] != value.shape[:-2]:
        raise ValueError(f"query, key and value must share leading (batch/head) dimensions; got {shapes}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key widths differ (Dk {query.shape[-1]} vs {key.shape[-1]}); got {shapes}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value lengths differ (Tk {key.shape[-2]} vs {value.shape[-2]}); got {shapes}")
    _check_dtypes(query, key, value, bias)
    scores_shape = (*query.shape[:-1], key.shape[-2])
    for name, extra in (("mask", mask), ("key_mask", key_mask)):
        if extra is not None and extra.dtype != torch.bool:
            raise ValueError(f"{name} must be boolean (True = may attend), got dtype {extra.dtype}")
    if mask is not None:
        _check_mask_shape("mask", mask, scores_shape, shapes)
    if bias is not None:
        _check_mask_shape("bias", bias, scores_shape, shapes)
    if key_mask is not None and query.dim() < 3:
        raise ValueError(f"key_mask (B, Tk) needs a batch axis: query (B, ..., Tq, Dk); got {shapes}")
    if key_mask is not None and key_mask.shape != (query.shape[0], key.shape[-2]):
        raise ValueError(f"key_mask (True = real token) must be (B, Tk) = {(query.shape[0], key.shape[-2])}, "
                         f"got shape {tuple(key_mask.shape)}; {shapes}")


def _merge_key_mask(mask: Tensor | None, key_mask: Tensor | None, n_axes: int) -> Tensor | None:
    """Combine ``mask`` (n_axes axes) with a (B, Tk) ``key_mask`` reshaped to (B, 1, ..., 1, Tk)."""
    if key_mask is None:
        return mask
    per_key = key_mask.reshape(key_mask.shape[0], *([1] * (n_axes - 2)), key_mask.shape[1])  # (B, 1, .., 1, Tk)
    return per_key if mask is None else mask & per_key


def visible_keys(mask: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """Which keys each query may attend to, or None when nothing is hidden.

    Args:
        mask: boolean, broadcastable to (..., Tq, Tk); True = may attend.
        bias: float, broadcastable to (..., Tq, Tk), already in the scores' dtype.

    Returns:
        Boolean (..., Tq, Tk): True where the mask allows the key and its bias is not -inf. A row with
        no True entry has no finite score; every path gives it zero weights and a zero output.
    """
    if bias is None:
        return mask
    finite = ~bias.isneginf()
    return finite if mask is None else mask & finite


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over the keys in float32 at least (float64 stays), cast back to the scores' dtype."""
    return torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(scores.dtype)


def attention_weights(
    query: Tensor,
    key: Tensor,
    mask: Tensor | None = None,
    *,
    key_mask: Tensor | None = None,
    bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Attention weights softmax(query key^T * scale + bias) over the visible keys (the readable path).

    Args:
        query: (..., Tq, Dk).
        key: (..., Tk, Dk).
        mask: boolean, one axis per score axis (..., Tq, Tk), each that size or 1; True = may attend.
        key_mask: boolean (B, Tk), True = real token; combined with ``mask``.
        bias: float (any float dtype), one axis per score axis, added to the scores before the softmax.
        scale: multiplier of the scores; default 1/sqrt(Dk).

    Returns:
        (..., Tq, Tk) weights in the scores' dtype; each row sums to 1, or is all 0 for a row with no
        finite score (see the module docstring for that rule, the dtypes and the mask layouts).

    Raises:
        ValueError: shapes, dtypes or mask layouts that :func:`check_attention_inputs` refuses.
    """
    check_attention_inputs(query, key, key, mask, bias, key_mask)
    return _readable_weights(query, key, _merge_key_mask(mask, key_mask, query.dim()), bias, scale)


def _readable_weights(query: Tensor, key: Tensor, mask: Tensor | None, bias: Tensor | None,
                      scale: float | None) -> Tensor:
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale  # (..., Tq, Tk)
    if bias is not None:
        bias = bias.to(scores.dtype)
        scores = scores + bias
    return masked_softmax(scores, visible_keys(mask, bias))


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis among the keys the mask allows; a row with no allowed key is all 0.

    Hidden scores are replaced by -inf (``masked_fill``), not added to, and a row whose every key is
    hidden gets scores of 0 for the softmax (no 0/0) and weights of 0 after it: its weights and their
    gradients are 0, never NaN. The softmax runs in float32 at least and is cast back.

    Args:
        scores: (..., Tk) floating scores.
        mask: boolean, broadcastable to ``scores``; True = may attend. None: every key.

    Returns:
        (..., Tk) weights; each row sums to 1, or is all 0 when every key of the row is hidden.
    """
    if mask is None:
        return _softmax(scores)
    has_key = mask.any(dim=-1, keepdim=True)  # (..., 1): the row has a visible key
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_key, 0.0)
    return _softmax(scores).masked_fill(~has_key, 0.0)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    *,
    key_mask: Tensor | None = None,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
    fused: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attend from each query to the keys and return the weighted average of the values.

    Args:
        query: (..., Tq, Dk).
        key: (..., Tk, Dk).
        value: (..., Tk, Dv).
        mask: boolean with one axis per score axis (..., Tq, Tk), each that size or 1; True = may
            attend. For 4-D scores: padding (B, 1, 1, Tk), causal (1, 1, Tq, Tk). A mask with fewer
            axes, such as (B, Tk) or (Tq, Tk), raises ``ValueError`` for every size.
        key_mask: boolean (B, Tk), True = real token (the opposite polarity of ``nn.MultiheadAttention``'s
            ``key_padding_mask``); hides padded keys from every query, combined with ``mask``.
        bias: float (any float dtype, cast to the scores'), laid out like ``mask``, added to the scores
            (relative-position bias). A bias of -inf hides that key, exactly like the mask.
        dropout_p: dropout probability on the weights (pass 0.0 when not training).
        scale: multiplier of the scores; default 1/sqrt(Dk).
        return_weights: also return the (..., Tq, Tk) weights (uses the readable path).
        fused: use ``F.scaled_dot_product_attention`` (ignored when ``return_weights``).

    Returns:
        output (..., Tq, Dv), or (output, weights) when ``return_weights``. A row with no finite
        score (every key hidden by mask, key_mask or a -inf bias) gets zero weights, a zero output
        and zero gradients. Half-precision inputs softmax in float32; see the module docstring.

    Raises:
        ValueError: shapes that cannot be attended together, q/k/v of different dtypes (outside what
            autocast casts alike), a non-boolean mask, or a mask or bias in an ambiguous layout.
    """
    check_attention_inputs(query, key, value, mask, bias, key_mask)
    mask = _merge_key_mask(mask, key_mask, query.dim())
    if fused and not return_weights:
        return _fused_attention(query, key, value, mask, bias, dropout_p, scale)
    weights = _readable_weights(query, key, mask, bias, scale)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    output = torch.matmul(dropped, value)  # (..., Tq, Dv)
    return (output, weights) if return_weights else output


def _fused_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None,
    bias: Tensor | None,
    dropout_p: float,
    scale: float | None,
) -> Tensor:
    """The fused kernel with the readable path's rules for dtypes and rows with no finite score."""
    bias = None if bias is None else bias.to(_compute_dtype(query))
    visible = visible_keys(mask, bias)
    if visible is None:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=scale)
    has_key = visible.any(dim=-1, keepdim=True)  # (..., Tq, 1)
    # A row with no visible key sees every key with score bias 0 (no NaN inside the kernel); zeroed after.
    if bias is None:
        attn_mask = visible | ~has_key
    else:
        attn_mask = bias.masked_fill(~visible, float("-inf")).masked_fill(~has_key, 0.0)
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    return output.masked_fill(~has_key, 0.0)
