"""What a query that may see no key gets: four conventions, their weights and their gradients.

A row whose every key is masked has no softmax in the mathematical sense (every exponential is 0),
so what it returns is a convention. :func:`compare_conventions` runs four of them on the same scores,
mask and values, as one attention step (weights, then their average of the values, then a loss), and
reports for each the weights of a fully masked row, whether the loss is finite and whether the
gradients reaching the scores and the values are:

* ``-inf`` then a plain softmax: NaN weights (0/0), which spread into the output, the loss and the
  gradient of the values;
* a large negative fill (``-1e9``): uniform weights over keys the query may not see;
* an additive ``-inf`` mask, then ``nan_to_num``: zero weights, but a NaN gradient for the scores (the
  NaN is only hidden in the forward pass);
* this course's :func:`xattn_edu.nn.attention.masked_softmax`: zero weights, zero gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.nn.attention import masked_softmax

CONVENTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "-inf, plain softmax": lambda s, m: torch.softmax(s.masked_fill(~m, float("-inf")), dim=-1),
    "-1e9 fill": lambda s, m: torch.softmax(s.masked_fill(~m, -1e9), dim=-1),
    "+(-inf), nan_to_num": lambda s, m: torch.nan_to_num(
        torch.softmax(s + torch.zeros_like(s).masked_fill(~m, float("-inf")), dim=-1)),
    "masked_softmax (course)": masked_softmax,
}
"""name -> ``weights = convention(scores, mask)`` (mask: True = may attend)."""


@dataclass(frozen=True)
class ConventionRow:
    """One convention on rows that may see no key."""

    name: str  # the convention
    empty_weights: np.ndarray  # (Tk,) the weights of the first fully masked row
    loss_finite: bool  # whether the loss computed from the attention output is a number
    gradient_finite: bool  # whether every entry of d loss / d scores and d loss / d values is finite
    empty_gradient: np.ndarray  # (Tk,) the gradient reaching the scores of that row


def compare_conventions(scores: torch.Tensor, mask: torch.Tensor, d_value: int = 3, seed: int = 0
                        ) -> list[ConventionRow]:
    """Each convention in one attention step on ``scores`` (..., Tk) with ``mask`` (same shape).

    The values (..., Tk, d_value) and the loss ``sum(output * g)`` (a fixed random ``g``, a stand-in for
    what the layers above send back) come from ``seed``. Raises ``ValueError`` when no row of ``mask``
    is fully masked.
    """
    empty = ~mask.any(dim=-1)  # (...,)
    if not empty.any():
        raise ValueError("the mask has no fully masked row to compare the conventions on")
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(*scores.shape, d_value, generator=generator, dtype=scores.dtype)  # (..., Tk, dv)
    upstream = torch.randn(*scores.shape[:-1], d_value, generator=generator, dtype=scores.dtype)  # (..., dv)
    rows = []
    for name, convention in CONVENTIONS.items():
        leaf, value_leaf = scores.detach().clone().requires_grad_(True), values.clone().requires_grad_(True)
        weights = convention(leaf, mask)  # (..., Tk)
        loss = ((weights.unsqueeze(-2) @ value_leaf).squeeze(-2) * upstream).sum()
        score_grad, value_grad = torch.autograd.grad(loss, (leaf, value_leaf))
        finite = bool(torch.isfinite(score_grad).all() and torch.isfinite(value_grad).all())
        rows.append(ConventionRow(name, weights.detach()[empty][0].numpy(), bool(torch.isfinite(loss)), finite,
                                  score_grad[empty][0].numpy()))
    return rows
