"""Watch it learn: a query trained to fetch one key learns with scaled scores and stalls with raw ones.

The claim of Chapter 2: unscaled dot products of wide vectors saturate the softmax, and a saturated
softmax passes almost no gradient, so queries and keys stop learning. Here one query, among ``n``
random keys of width ``d``, is trained by plain gradient descent to put its weight on a target key.
The values are one-hot labels (value ``i`` is the ``i``-th unit vector), so the retrieved value is the
weight vector itself, and the loss is its squared distance to the target's label. The same start,
keys and learning rate are used with raw scores ``q · k`` and with scaled scores ``q · k / sqrt(d)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class FetchRun:
    """One query trained to fetch the target key, with raw or scaled scores."""

    scaled: bool  # True: scores divided by sqrt(d); False: raw dot products
    dim: int  # width d of the query and keys
    learning_rate: float  # step size of plain gradient descent
    target_weight: np.ndarray  # (steps + 1,) weight on the target key at each step
    losses: np.ndarray  # (steps + 1,) squared distance of the retrieved value to the target's label
    gradient_norms: np.ndarray  # (steps + 1,) |d loss / d query| at each step


def _problem(dim: int, n_keys: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random keys (n, d) and start query (d,), and the target: the key ranked in the middle at the start."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(n_keys, dim, generator=generator, dtype=torch.float64)
    query = torch.randn(dim, generator=generator, dtype=torch.float64)
    target = int((keys @ query).argsort()[n_keys // 2])
    return keys, query, target


def train_fetch(dim: int = 256, n_keys: int = 8, *, scaled: bool, steps: int = 100, learning_rate: float = 1.0,
                seed: int = 0) -> FetchRun:
    """Train one query by gradient descent to put its weight on a target key.

    Args:
        dim: width d of the query and the keys (entries standard Gaussian).
        n_keys: number of keys.
        scaled: divide the scores by sqrt(d).
        steps: gradient-descent steps.
        learning_rate: step size.
        seed: the random keys and start query (the same for raw and scaled runs).

    Returns:
        A :class:`FetchRun` with the target weight, loss and gradient norm at every step.
    """
    keys, start, target = _problem(dim, n_keys, seed)
    labels = torch.eye(n_keys, dtype=torch.float64)  # (n, n): value i is the i-th unit vector
    scale = 1.0 / math.sqrt(dim) if scaled else 1.0
    query = start.clone().requires_grad_(True)
    weights, losses, norms = [], [], []
    for _ in range(steps + 1):
        w = torch.softmax(keys @ query * scale, dim=-1)  # (n,)
        loss = ((w @ labels - labels[target]) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, query)
        weights.append(float(w[target].detach()))
        losses.append(float(loss.detach()))
        norms.append(float(grad.norm()))
        with torch.no_grad():
            query -= learning_rate * grad
    return FetchRun(scaled, dim, learning_rate, np.array(weights), np.array(losses), np.array(norms))
