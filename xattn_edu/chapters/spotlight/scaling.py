"""Claim (article 3180887, Vaswani et al.): dot products grow with the width d, so scores are divided by sqrt(d).

Two measurements with random Gaussian queries and keys (entries of mean 0, variance 1):

* :func:`measure_dot_product_variance` — the sample variance of ``q · k`` for each width ``d``:
  about ``d`` raw, about 1 after dividing by ``sqrt(d)``, about ``1/d`` after dividing by ``d``.
* :func:`measure_saturation` — one query against ``n`` keys, with and without the scale: how
  peaked the softmax gets (largest weight, entropy as a share of ``log n``) and how much gradient
  survives it: the norm of the softmax Jacobian ``d weights / d scores`` and of the gradient that
  reaches the query through a whole attention step (autograd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.chapters.spotlight.reference import attention_entropy

DIMS = (1, 16, 64, 256, 1024)
"""The widths the chapter measures."""


@dataclass(frozen=True)
class VarianceRow:
    """Sample mean and variance of ``q · k`` at one width d, raw and divided by sqrt(d)."""

    dim: int  # width d of the query and key
    samples: int  # (q, k) pairs drawn
    mean: float  # sample mean of q · k (0 expected)
    variance: float  # sample variance of q · k (d expected)
    scaled_variance: float  # sample variance of q · k / sqrt(d) (1 expected)
    over_d_variance: float  # sample variance of q · k / d (1 / d expected: the 1/d scale of muP-style models)


@dataclass(frozen=True)
class SaturationRow:
    """How peaked the softmax is, and how much gradient survives it, at one width d."""

    dim: int  # width d of the query and keys
    scaled: bool  # True: scores divided by sqrt(d); False: raw dot products
    n_keys: int  # keys each query attends over
    trials: int  # random (query, keys, values) sets
    mean_max_weight: float  # average largest weight (1/n = uniform, 1 = one-hot)
    saturated_share: float  # share of trials whose largest weight exceeds 0.99
    mean_entropy_fraction: float  # average entropy / log n (1 = uniform, 0 = one-hot)
    median_jacobian_norm: float  # median Frobenius norm of d weights / d scores
    median_query_grad_norm: float  # median norm of the gradient reaching the query


def measure_dot_product_variance(
    dims: tuple[int, ...] = DIMS, samples: int = 20_000, seed: int = 0, chunk: int = 4096
) -> list[VarianceRow]:
    """Variance of ``q · k`` for ``q, k ~ N(0, I_d)``, raw and divided by ``sqrt(d)``, for each ``d``."""
    rng = np.random.default_rng(seed)
    rows = []
    for dim in dims:
        products = []
        for start in range(0, samples, chunk):
            size = min(chunk, samples - start)
            q, k = rng.standard_normal((size, dim)), rng.standard_normal((size, dim))
            products.append(np.einsum("sd,sd->s", q, k))  # (size,) one dot product per pair
        dots = np.concatenate(products)
        rows.append(VarianceRow(dim, samples, float(dots.mean()), float(dots.var()),
                                float((dots / math.sqrt(dim)).var()), float((dots / dim).var())))
    return rows


def softmax_jacobian_norm(weights: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the softmax Jacobian ``diag(w) - w w^T`` for each distribution.

    Args:
        weights: (..., n) softmax outputs.

    Returns:
        (...) norms; 0 for a one-hot row (a saturated softmax passes no gradient to its scores).
    """
    jacobian = torch.diag_embed(weights) - weights.unsqueeze(-1) * weights.unsqueeze(-2)  # (..., n, n)
    return torch.linalg.matrix_norm(jacobian)


def measure_saturation(
    dims: tuple[int, ...] = DIMS,
    n_keys: int = 16,
    trials: int = 500,
    d_value: int = 8,
    seed: int = 0,
) -> list[SaturationRow]:
    """Softmax peakedness and surviving gradient with and without the ``1/sqrt(d)`` scale.

    For each width, ``trials`` sets of one query (d,), ``n_keys`` keys (n, d) and values
    (n, d_value), all standard Gaussian, are attended once with the scale and once without
    (the same sets for both). The gradient reaching the query is that of
    ``loss = sum(output * g)`` for a random Gaussian ``g`` (d_value,), a stand-in for whatever
    the layers above send back.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for dim in dims:
        query = torch.randn(trials, 1, dim, generator=generator, dtype=torch.float64)  # (trials, 1, d)
        keys = torch.randn(trials, n_keys, dim, generator=generator, dtype=torch.float64)  # (trials, n, d)
        values = torch.randn(trials, n_keys, d_value, generator=generator, dtype=torch.float64)  # (trials, n, dv)
        upstream = torch.randn(trials, 1, d_value, generator=generator, dtype=torch.float64)  # (trials, 1, dv)
        for scaled in (False, True):
            q = query.clone().requires_grad_(True)
            scale = 1.0 / math.sqrt(dim) if scaled else 1.0
            weights = torch.softmax(q @ keys.transpose(-2, -1) * scale, dim=-1)  # (trials, 1, n)
            (weights @ values * upstream).sum().backward()
            weights = weights.detach()[:, 0]  # (trials, n)
            top = weights.max(dim=-1).values
            rows.append(SaturationRow(
                dim=dim,
                scaled=scaled,
                n_keys=n_keys,
                trials=trials,
                mean_max_weight=float(top.mean()),
                saturated_share=float((top > 0.99).double().mean()),
                mean_entropy_fraction=float(attention_entropy(weights).mean() / math.log(n_keys)),
                median_jacobian_norm=float(softmax_jacobian_norm(weights).median()),
                median_query_grad_norm=float(q.grad[:, 0].norm(dim=-1).median()),
            ))
    return rows
