"""Watch it learn: gradient descent trains a query to fetch a target book through a soft lookup, not a hard one.

The claim of Chapter 1: only the soft lookup can be trained by plain backpropagation. Here a single
query is trained to retrieve the value (colour) of one target book from the shelf, with the loss
``|output - values[target]|^2``. Through the soft lookup the loss has a gradient with respect to the
query, and the query turns towards the target; through the hard lookup (``values[argmax]``) there is
no path from the loss back to the query (the argmax is an integer index), so its gradient is 0 and the
query never moves. Hard attention *can* be trained by other means (score-function estimators such as
REINFORCE, which sample the choice and weight its log-probability by the reward); this experiment is
about plain backpropagation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LearningRun:
    """One query trained by gradient descent through one kind of lookup."""

    kind: str  # "soft" or "hard"
    losses: np.ndarray  # (steps + 1,) loss before each step and after the last
    weights: np.ndarray  # (steps + 1, n) the lookup's weights at each step (hard: one-hot of the argmax)
    queries: np.ndarray  # (steps + 1, d) the query at each step
    gradient_norms: np.ndarray  # (steps + 1,) |d loss / d query| at each step (0 when no gradient reaches it)


def _weights(scores: torch.Tensor, hard: bool) -> torch.Tensor:
    """(n,) softmax weights, or the one-hot of the argmax (an integer choice: no gradient path)."""
    if hard:
        return torch.nn.functional.one_hot(scores.argmax(), scores.shape[-1]).to(scores.dtype)
    return torch.softmax(scores, dim=-1)


def train_query(keys: np.ndarray, values: np.ndarray, target: int, start: np.ndarray, *, hard: bool,
                steps: int = 60, learning_rate: float = 2.0) -> LearningRun:
    """Train one query with plain gradient descent to retrieve ``values[target]``.

    Args:
        keys: (n, d).
        values: (n, d_v).
        target: index of the book whose value the query should retrieve.
        start: (d,) the query before training.
        hard: train through the hard lookup (argmax) instead of the soft one.
        steps: gradient-descent steps.
        learning_rate: step size.

    Returns:
        A :class:`LearningRun` with the loss, weights, query and gradient norm at every step.
    """
    keys_t, values_t = torch.as_tensor(keys, dtype=torch.float64), torch.as_tensor(values, dtype=torch.float64)
    query = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    losses, weights, queries, norms = [], [], [], []
    for _ in range(steps + 1):
        w = _weights(keys_t @ query, hard)  # (n,)
        loss = ((w @ values_t - values_t[target]) ** 2).sum()
        # The hard output does not depend on the query through any differentiable operation:
        # backpropagation has no path to follow, which is a gradient of 0.
        grad = torch.autograd.grad(loss, query)[0] if loss.requires_grad else torch.zeros_like(query)
        losses.append(float(loss.detach()))
        weights.append(w.detach().numpy())
        queries.append(query.detach().numpy().copy())
        norms.append(float(grad.norm()))
        with torch.no_grad():
            query -= learning_rate * grad
    return LearningRun("hard" if hard else "soft", np.array(losses), np.stack(weights), np.stack(queries),
                       np.array(norms))
