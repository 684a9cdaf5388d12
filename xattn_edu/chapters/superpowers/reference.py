"""Reference implementations of the Chapter 4 exercises, written once, for clarity.

Uncertainty (numpy unless said otherwise):

* :func:`conditional_variance`, :func:`conditional_mean`: Y given X for a jointly Gaussian pair;
* :func:`variance_reduction`: the share of Var(Y) that the best linear predictor from samples removes;
* :func:`attention_readout` (torch): attention as kernel regression (Nadaraya 1964, Watson 1964).

Gradient flow (torch):

* :func:`layer_grad_norms`: the gradient norm of each layer's parameters after one backward pass;
* :func:`mix_layers`: the transparent-attention memory (Bapna et al. 2018), defined with the models
  in :mod:`~xattn_edu.chapters.superpowers.stacks` and re-exported here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from xattn_edu.chapters.superpowers.stacks import mix_layers

__all__ = ["attention_readout", "conditional_mean", "conditional_variance", "layer_grad_norms", "mix_layers",
           "variance_reduction"]


def _check_rho(rho: np.ndarray) -> None:
    if np.any(np.abs(rho) > 1):
        raise ValueError(f"a correlation lies in [-1, 1], got {rho}")


def conditional_variance(rho, var_y):
    """Var(Y | X) for jointly Gaussian X, Y with correlation ``rho``: ``(1 - rho**2) * var_y``.

    Args:
        rho: correlation of X and Y, a number or an array, each in [-1, 1].
        var_y: Var(Y) >= 0 (broadcasts against ``rho``).

    Returns:
        The conditional variance, of the broadcast shape (a float for scalar inputs). It does not
        depend on the observed value of X.

    Raises:
        ValueError: ``|rho| > 1`` or ``var_y < 0``.
    """
    rho, var_y = np.asarray(rho, dtype=float), np.asarray(var_y, dtype=float)
    _check_rho(rho)
    if np.any(var_y < 0):
        raise ValueError(f"a variance is never negative, got var_y={var_y}")
    result = (1.0 - rho**2) * var_y
    return float(result) if result.ndim == 0 else result


def conditional_mean(x, rho, mean_x, std_x, mean_y, std_y):
    """E[Y | X = x] for jointly Gaussian X, Y: ``mean_y + rho * std_y / std_x * (x - mean_x)``.

    Args:
        x: observed values of X, a number or an array (N,).
        rho: correlation of X and Y, in [-1, 1].
        mean_x, std_x: mean and standard deviation (> 0) of X.
        mean_y, std_y: mean and standard deviation of Y.

    Returns:
        The conditional mean, of ``x``'s shape: the best predictor of Y from X (least squares).

    Raises:
        ValueError: ``|rho| > 1`` or ``std_x <= 0``.
    """
    _check_rho(np.asarray(rho, dtype=float))
    if std_x <= 0:
        raise ValueError(f"std_x must be positive, got {std_x}")
    result = mean_y + rho * std_y / std_x * (np.asarray(x, dtype=float) - mean_x)
    return float(result) if result.ndim == 0 else result


def variance_reduction(x, y):
    """The share of Var(y) removed by the least-squares linear predictor ``a + x @ b`` fitted to the samples.

    ``1 - mean(residual**2) / var(y)``: the sample r**2 for one context variable, the squared multiple
    correlation R**2 for several.

    Args:
        x: (N,) one context variable, or (N, k) k of them.
        y: (N,) the targets.

    Returns:
        A float in [0, 1].
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    design = np.column_stack([np.ones(len(y)), x.reshape(len(y), -1)])  # (N, 1 + k): intercept column first
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return float(1.0 - np.mean(residual**2) / np.var(y))


def attention_readout(queries: Tensor, keys: Tensor, values: Tensor, bandwidth: float) -> tuple[Tensor, Tensor]:
    """Attention as kernel regression: each query averages the values, weighted by closeness of its key.

    ``scores[t, i] = -|queries[t] - keys[i]|**2 / (2 * bandwidth**2)``, weights = softmax over i (the
    Nadaraya-Watson estimator with a Gaussian kernel). Expanding the square, the scores are the
    dot products ``q . k_i / bandwidth**2`` minus ``|k_i|**2 / (2 bandwidth**2)`` (the ``|q|**2`` term is
    the same for every key and cancels in the softmax).

    Args:
        queries: (Tq, d) where to predict (the observed context values x).
        keys: (n, d) the context samples' x.
        values: (n, dv) the context samples' y.
        bandwidth: h > 0, the kernel width: the scale of "close".

    Returns:
        ``(predictions (Tq, dv), weights (Tq, n))``; each row of weights sums to 1.
    """
    squared = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(dim=-1)  # (Tq, n) squared distances
    scores = -squared / (2 * bandwidth**2)
    scores = scores - scores.max(dim=-1, keepdim=True).values
    weights = torch.exp(scores)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ values, weights


def layer_grad_norms(layers: nn.ModuleList, loss: Tensor) -> Tensor:
    """One backward pass of ``loss``, then the gradient norm of each layer's parameters.

    Gradients left by an earlier step are cleared first, so the norms belong to this loss alone.

    Args:
        layers: the L layers of an encoder, bottom first.
        loss: a scalar that depends on them (not yet backpropagated).

    Returns:
        (L,) ``norms[l] = sqrt(sum over the parameters p of layer l of sum(p.grad**2))``.
    """
    layers.zero_grad(set_to_none=True)
    loss.backward()
    norms = []
    for layer in layers:
        grads = [p.grad.flatten() for p in layer.parameters() if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.cat(grads)) if grads else torch.zeros(()))
    return torch.stack(norms).detach()
