"""Reference solutions of Chapter 5's exercises, written once and correctly.

* :func:`positioned_scores`: cross-attention scores with absolute positions on the queries, the keys,
  both or neither;
* :func:`relative_position_bias`: the score bias of each query-key pair, read from a learned table by
  their clipped distance;
* :func:`future_influence`: how much one decoder step depends on each source position (the leakage probe);
* :func:`tie_kv`: share the key and value projections of a model's attention modules and report the saving.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from xattn_edu.nn.heads import MultiHeadAttention

PLACEMENTS = ("none", "queries", "keys", "both")
SCOPES = ("all", "cross")


def positioned_scores(target: Tensor, source: Tensor, w_query: Tensor, w_key: Tensor, table: Tensor,
                      placement: str) -> Tensor:
    """Scaled cross-attention scores with absolute position vectors added before the projections.

    The query of target position t is ``(target[:, t] + table[t]) @ w_query`` when the placement puts
    positions on the queries, ``target[:, t] @ w_query`` otherwise; the key of source position j is
    ``(source[:, j] + table[j]) @ w_key`` or ``source[:, j] @ w_key`` in the same way. Target and source
    positions both count from 0.

    Args:
        target: (B, Tt, D) decoder states (the queries' side).
        source: (B, Ts, D) encoder memory (the keys' side).
        w_query, w_key: (D, Dk) projections.
        table: (max_len, D) position vectors; row p belongs to position p.
        placement: "none", "queries", "keys" or "both".

    Returns:
        (B, Tt, Ts) scores ``q · k / sqrt(Dk)``.

    Raises:
        ValueError: for any other placement.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if placement in ("queries", "both"):
        target = target + table[: target.shape[1]]
    if placement in ("keys", "both"):
        source = source + table[: source.shape[1]]
    queries, keys = target @ w_query, source @ w_key  # (B, Tt, Dk), (B, Ts, Dk)
    return queries @ keys.transpose(-2, -1) / math.sqrt(w_key.shape[-1])


def relative_position_bias(table: Tensor, query_positions: Tensor, key_positions: Tensor) -> Tensor:
    """The relative-position bias: one learned number per head and per clipped distance.

    With ``M = (table.shape[0] - 1) // 2``, the bias of query i and key j in head h is
    ``table[clip(key_positions[j] - query_positions[i], -M, M) + M, h]`` (Shaw et al., 2018; T5 uses
    the same idea with log-spaced buckets).

    Args:
        table: (2M + 1, h) learned biases; row ``d + M`` belongs to distance d.
        query_positions: (Tq,) integer positions of the queries.
        key_positions: (Tk,) integer positions of the keys.

    Returns:
        (h, Tq, Tk) bias to add to the scores of each head.
    """
    reach = (table.shape[0] - 1) // 2
    distance = key_positions[None, :] - query_positions[:, None]  # (Tq, Tk)
    return table[distance.clamp(-reach, reach) + reach].permute(2, 0, 1)  # (h, Tq, Tk)


def future_influence(step_score: Callable[[Tensor], Tensor], source: Tensor, step: int,
                     visible: int) -> tuple[Tensor, Tensor]:
    """How strongly decoder step ``step`` depends on each source position, and the share from the future.

    Args:
        step_score: maps source vectors (B, Ts, D) to one score per example and decoder step (B, Tt),
            e.g. the log-probability of the right token; example b's scores depend on example b only.
        source: (B, Ts, D) the source vectors (the encoder's input).
        step: t, the decoder step to probe.
        visible: how many source positions step t may honestly use (positions 0 .. visible - 1).

    Returns:
        ``(influence, future_share)``: influence (B, Ts) with ``influence[b, j]`` the Euclidean norm of
        d score[b, t] / d source[b, j]; future_share (B,) the part of each row's total influence that comes
        from positions ``j >= visible`` (0 where the total is 0).
    """
    source = source.detach().clone().requires_grad_(True)
    scores = step_score(source)  # (B, Tt)
    (gradient,) = torch.autograd.grad(scores[:, step].sum(), source)  # examples are independent: sum, then split
    influence = gradient.norm(dim=-1)  # (B, Ts)
    total = influence.sum(-1)
    future = influence[:, visible:].sum(-1)
    return influence, torch.where(total > 0, future / torch.where(total > 0, total, 1.0), 0.0)


def _attention_modules(model: nn.Module, scope: str) -> list[MultiHeadAttention]:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    return [module for name, module in model.named_modules() if isinstance(module, MultiHeadAttention)
            and (scope == "all" or name.endswith("cross_attn"))]


def tie_kv(model: nn.Module, scope: str) -> int:
    """Make attention modules share one key projection and one value projection; return the saving.

    ``scope="all"``: every ``MultiHeadAttention`` in the model (encoder self-attention, decoder
    self-attention, cross-attention, every layer) uses the first one's ``k_proj`` and ``v_proj``.
    ``scope="cross"``: only the cross-attention modules (named ``...cross_attn``) share theirs; self-attention
    keeps its own. Queries and output projections are never shared, and K is not tied to V.

    Args:
        model: e.g. a ``Seq2Seq``; changed in place.
        scope: "all" or "cross".

    Returns:
        How many trainable numbers the model lost (shared parameters count once).

    Raises:
        ValueError: for any other scope.
    """
    modules = _attention_modules(model, scope)
    before = sum(p.numel() for p in model.parameters())
    for module in modules[1:]:
        module.k_proj, module.v_proj = modules[0].k_proj, modules[0].v_proj
    return before - sum(p.numel() for p in model.parameters())
