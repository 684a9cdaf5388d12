"""Boolean attention masks. Convention: ``True`` = the query may attend to that key.

Every mask here has four dimensions that broadcast to the scores ``(B, h, Tq, Tk)``:
padding masks are ``(B, 1, 1, Tk)`` (the same keys are hidden from every head and query),
causal masks are ``(1, 1, Tq, Tk)``. Combine them with ``&``. Attention refuses masks with fewer axes
(broadcasting would read a ``(B, Tk)`` mask as ``(Tq, Tk)``); a ``(B, Tk)`` padding mask goes in its
``key_mask`` argument instead.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(
    lengths: Tensor | None = None, max_len: int | None = None, *, ids: Tensor | None = None, pad_id: int | None = None
) -> Tensor:
    """Hide the padding keys, described by each sequence's length or by its token ids.

    Give either ``lengths`` (keys at positions >= the length are padding) or ``ids`` and ``pad_id``
    (keys whose token is the padding token are padding, wherever they sit).

    Args:
        lengths: (B,) integer lengths.
        max_len: Tk with ``lengths``; defaults to ``lengths.max()``.
        ids: (B, Tk) token ids.
        pad_id: id of the padding token, with ``ids``.

    Returns:
        (B, 1, 1, Tk) boolean mask, True = a real token (may be attended to). Its (B, Tk) slice
        ``[:, 0, 0]`` is what ``MultiHeadAttention``'s ``key_mask`` takes.

    Raises:
        ValueError: neither or both descriptions, a wrong rank, or a length above ``max_len``.
    """
    if (lengths is None) == (ids is None) or (ids is not None and (pad_id is None or max_len is not None)):
        raise ValueError("padding_mask takes either lengths (B,) [and max_len] or ids (B, Tk) with pad_id")
    if ids is not None:
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, Tk), got shape {tuple(ids.shape)}")
        return (ids != pad_id)[:, None, None, :]  # (B, 1, 1, Tk)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    max_len = int(lengths.max()) if max_len is None else max_len
    if lengths.numel() and int(lengths.max()) > max_len:
        raise ValueError(f"a length ({int(lengths.max())}) exceeds max_len ({max_len})")
    positions = torch.arange(max_len, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Tk)


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Each query sees its own position and the past, never the future.

    The queries are the *last* ``q_len`` positions of a ``k_len``-long sequence, so the same
    function serves a full forward pass (``q_len == k_len``) and cached decoding, where a step's
    new queries attend to every earlier key held in the cache.

    Returns:
        (1, 1, Tq, Tk) boolean mask, True on and below the shifted diagonal.
    """
    k_len = q_len if k_len is None else k_len
    if k_len < q_len:
        raise ValueError(f"causal mask needs k_len >= q_len, got Tq={q_len}, Tk={k_len}")
    offset = k_len - q_len
    query_pos = torch.arange(q_len, device=device)[:, None] + offset
    key_pos = torch.arange(k_len, device=device)[None, :]
    return (key_pos <= query_pos)[None, None]  # (1, 1, Tq, Tk)


def decoder_self_mask(tgt_ids: Tensor, pad_id: int) -> Tensor:
    """Decoder self-attention: causal and blind to target padding.

    Args:
        tgt_ids: (B, Tt) target ids.

    Returns:
        (B, 1, Tt, Tt) boolean mask.
    """
    return padding_mask(ids=tgt_ids, pad_id=pad_id) & causal_mask(tgt_ids.shape[1], device=tgt_ids.device)
