"""Scaled dot-product attention: one readable path and one fused path that agree.

The readable path spells the computation out::

    scores  = query @ key^T * scale            # (..., Tq, Tk)
    scores  = scores + bias                    # optional additive bias (e.g. relative positions)
    scores  = scores where mask else -inf      # mask: True = may attend
    weights = softmax(scores, over keys)       # each row sums to 1
    output  = weights @ value                  # (..., Tq, Dv)

The fused path hands the same inputs to ``torch.nn.functional.scaled_dot_product_attention``
(flash / memory-efficient kernels on a GPU). Both treat a query whose every key is masked the
same way: its weights are all 0 and its output is the zero vector, never NaN.

Mask convention (used everywhere in xattn_edu): a **boolean** tensor, ``True`` where the
query may attend to the key, broadcastable to ``(..., Tq, Tk)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def check_attention_inputs(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None, bias: Tensor | None = None
) -> None:
    """Raise ``ValueError`` naming the shapes when the inputs cannot be attended together.

    Expected: query (..., Tq, Dk), key (..., Tk, Dk), value (..., Tk, Dv) with the same leading
    dimensions; mask boolean and bias floating, both broadcastable to (..., Tq, Tk).
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
    scores_shape = (*query.shape[:-1], key.shape[-2])
    for name, extra in (("mask", mask), ("bias", bias)):
        if extra is None:
            continue
        if name == "mask" and extra.dtype != torch.bool:
            raise ValueError(f"mask must be boolean (True = may attend), got dtype {extra.dtype}")
        if name == "bias" and not extra.is_floating_point():
            raise ValueError(f"bias must be a floating tensor, got dtype {extra.dtype}")
        try:
            broadcast = torch.broadcast_shapes(extra.shape, scores_shape)
        except RuntimeError:
            broadcast = None
        if broadcast != torch.Size(scores_shape):
            raise ValueError(
                f"{name} of shape {tuple(extra.shape)} does not broadcast to the scores (..., Tq, Tk) = "
                f"{scores_shape}; {shapes}"
            )


def _rows_with_a_key(mask: Tensor) -> Tensor:
    """(..., Tq, 1) boolean: True where the query row may attend to at least one key."""
    return mask.any(dim=-1, keepdim=True)


def attention_weights(
    query: Tensor,
    key: Tensor,
    mask: Tensor | None = None,
    *,
    bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Attention weights softmax(query key^T * scale + bias) over the keys the mask allows.

    Args:
        query: (..., Tq, Dk).
        key: (..., Tk, Dk).
        mask: boolean, broadcastable to (..., Tq, Tk); True = may attend.
        bias: float, broadcastable to (..., Tq, Tk), added to the scores before the softmax.
        scale: multiplier of the scores; default 1/sqrt(Dk).

    Returns:
        (..., Tq, Tk) weights; each row sums to 1, or is all 0 when every key of the row is masked.
    """
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale  # (..., Tq, Tk)
    if bias is not None:
        scores = scores + bias
    return masked_softmax(scores, mask)


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis among the keys the mask allows; a row with no allowed key is all 0.

    Masked scores are replaced (``masked_fill``), not added to, so a row whose every key is masked
    has weights 0 and a gradient of 0, never NaN: its scores are left unmasked for the softmax
    (no 0/0) and its weights zeroed after it.

    Args:
        scores: (..., Tk) floating scores.
        mask: boolean, broadcastable to ``scores``; True = may attend. None: every key.

    Returns:
        (..., Tk) weights; each row sums to 1, or is all 0 when every key of the row is masked.
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    has_key = _rows_with_a_key(mask)
    scores = scores.masked_fill(~(mask | ~has_key), float("-inf"))
    return torch.softmax(scores, dim=-1).masked_fill(~has_key, 0.0)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    *,
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
        mask: boolean, broadcastable to (..., Tq, Tk); True = may attend.
        bias: float, broadcastable to (..., Tq, Tk), added to the scores (relative-position bias).
        dropout_p: dropout probability on the weights (pass 0.0 when not training).
        scale: multiplier of the scores; default 1/sqrt(Dk).
        return_weights: also return the (..., Tq, Tk) weights (uses the readable path).
        fused: use ``F.scaled_dot_product_attention`` (ignored when ``return_weights``).

    Returns:
        output (..., Tq, Dv), or (output, weights) when ``return_weights``. A query with every
        key masked gets zero weights and a zero output.
    """
    check_attention_inputs(query, key, value, mask, bias)
    if fused and not return_weights:
        return _fused_attention(query, key, value, mask, bias, dropout_p, scale)
    weights = attention_weights(query, key, mask, bias=bias, scale=scale)
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
    """The fused kernel with the readable path's semantics for fully masked rows."""
    bias = None if bias is None else bias.to(query.dtype)
    if mask is None:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    has_key = _rows_with_a_key(mask)
    safe_mask = mask | ~has_key
    attn_mask = safe_mask if bias is None else bias.masked_fill(~safe_mask, float("-inf"))
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    return output.masked_fill(~has_key, 0.0)
