"""Claim (article 3147337): attending to context shrinks the variance of a prediction in proportion to rho**2.

For a jointly Gaussian pair, ``Var(Y | X) = (1 - rho**2) Var(Y)`` exactly. The measurements here check it
three ways and find where it stops:

* :func:`measure_rho_sweep`: for a grid of correlations, the share of Var(Y) removed by the true
  conditional mean, by the least-squares line fitted to samples, and by an attention read-out over a
  context set (:func:`~xattn_edu.chapters.superpowers.reference.attention_readout`); :func:`fit_line`
  fits the removed share against rho**2 (slope, intercept, R**2);
* :func:`measure_binned`: Var(Y) within narrow slices of X, the definition of the conditional variance;
* :func:`measure_context_sizes`: how the read-out's residual variance approaches the bound as the
  number of context items n grows;
* :func:`measure_nonlinear`: Y = X**2 + noise has rho = 0, yet X determines most of Y;
* :func:`measure_multiple`: several context variables: the removed share is the squared multiple
  correlation R**2, not the sum of the single rho**2.

Variances are in units of Var(Y) (fractions) unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.chapters.superpowers.reference import attention_readout, variance_reduction

RHOS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""The correlations of the sweep."""


def gaussian_pairs(n: int, rho: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n samples of standard Gaussian (X, Y) with correlation ``rho``: ``Y = rho X + sqrt(1 - rho**2) Z``.

    Returns:
        ``(x, y)``, each (n,).
    """
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    return x, rho * x + np.sqrt(1.0 - rho**2) * z


def square_pairs(n: int, rng: np.random.Generator, noise_var: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """n samples of ``Y = X**2 + noise``, X ~ N(0, 1), noise ~ N(0, noise_var): rho(X, Y) = E[X**3] = 0.

    Returns:
        ``(x, y)``, each (n,); Var(Y) = 2 + noise_var, of which X determines 2.
    """
    x = rng.standard_normal(n)
    return x, x**2 + np.sqrt(noise_var) * rng.standard_normal(n)


def bandwidth_for(n: int, dims: int = 1) -> float:
    """Kernel width for n context items in ``dims`` dimensions with unit spread: Silverman's rule of thumb.

    ``h = (4 / (dims + 2)) ** (1 / (dims + 4)) * n ** (-1 / (dims + 4))`` (Silverman 1986, eq. 4.14): wide
    enough to average several items, narrow enough to follow the curve; it shrinks as n grows.
    """
    return float((4.0 / (dims + 2)) ** (1.0 / (dims + 4)) * n ** (-1.0 / (dims + 4)))


def readout_predictions(x_context, y_context, x_query, bandwidth: float | None = None, chunk: int = 2048):
    """Attention read-out predictions of y at ``x_query`` from the context set (keys x, values y).

    Args:
        x_context: (n,) or (n, d) context inputs (the keys).
        y_context: (n,) context targets (the values).
        x_query: (m,) or (m, d) where to predict (the queries).
        bandwidth: kernel width; default :func:`bandwidth_for` ``(n, d)``.

    Returns:
        (m,) float64 predictions.
    """
    keys = torch.as_tensor(np.asarray(x_context, dtype=float).reshape(len(y_context), -1))  # (n, d)
    queries = torch.as_tensor(np.asarray(x_query, dtype=float).reshape(len(x_query), -1))  # (m, d)
    values = torch.as_tensor(np.asarray(y_context, dtype=float))[:, None]  # (n, 1)
    bandwidth = bandwidth_for(len(keys), keys.shape[1]) if bandwidth is None else bandwidth
    parts = [attention_readout(queries[i:i + chunk], keys, values, bandwidth)[0][:, 0]
             for i in range(0, len(queries), chunk)]
    return torch.cat(parts).numpy()


def residual_share(y: np.ndarray, prediction: np.ndarray, var_y: float) -> float:
    """``mean((y - prediction)**2) / var_y``: the share of the variance a predictor leaves."""
    return float(np.mean((y - prediction) ** 2) / var_y)


@dataclass(frozen=True)
class RhoRow:
    """Shares of Var(Y) removed at one correlation (Var(Y) = 1)."""

    rho: float  # correlation of X and Y
    analytic: float  # rho**2: what the conditional mean removes in theory
    simulated: float  # removed by the true conditional mean rho * x on fresh samples
    linear: float  # removed by the least-squares line fitted to the context samples (sample r**2)
    attention: float  # removed by the attention read-out over the context samples, on fresh test samples


def measure_rho_sweep(rhos=RHOS, n_context: int = 1000, n_test: int = 4000, seed: int = 0,
                      reduction=variance_reduction) -> list[RhoRow]:
    """For each rho: what the conditional mean, the fitted line and the attention read-out remove.

    ``reduction(x, y)`` computes the fitted line's share (the notebook passes the student's version).
    """
    rows = []
    for index, rho in enumerate(rhos):
        rng = np.random.default_rng([seed, index])
        x_context, y_context = gaussian_pairs(n_context, rho, rng)
        x_test, y_test = gaussian_pairs(n_test, rho, rng)
        attention = readout_predictions(x_context, y_context, x_test)
        rows.append(RhoRow(rho, rho**2, 1.0 - residual_share(y_test, rho * x_test, 1.0),
                           reduction(x_context, y_context), 1.0 - residual_share(y_test, attention, 1.0)))
    return rows


@dataclass(frozen=True)
class LineFit:
    """A least-squares line ``y = slope * x + intercept`` and how well it fits."""

    slope: float  # fitted slope
    intercept: float  # fitted intercept
    r_squared: float  # share of the spread of y the line explains (1 = every point on the line)


def fit_line(x, y) -> LineFit:
    """Fit ``y = slope * x + intercept`` by least squares (e.g. removed share against rho**2)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return LineFit(float(slope), float(intercept), variance_reduction(x, y))


@dataclass(frozen=True)
class BinnedRow:
    """Var(Y) among samples whose X falls in one narrow slice."""

    x_center: float  # centre of the slice of X
    count: int  # samples in the slice
    variance: float  # sample variance of Y within the slice (in units of Var(Y) = 1)


def measure_binned(rho: float, n: int = 200_000, edges=(-2.0, -1.0, 0.0, 1.0, 2.0), width: float = 0.1,
                   seed: int = 0) -> list[BinnedRow]:
    """Var(Y | X near c) for a few centres c: the conditional variance by its definition, on samples."""
    x, y = gaussian_pairs(n, rho, np.random.default_rng(seed))
    rows = []
    for center in edges:
        inside = np.abs(x - center) < width / 2
        rows.append(BinnedRow(float(center), int(inside.sum()), float(np.var(y[inside]))))
    return rows


@dataclass(frozen=True)
class SizeRow:
    """The attention read-out's residual variance for one context size."""

    n_context: int  # n, context items (keys and values)
    bandwidth: float  # kernel width used (Silverman's rule for n)
    residual: float  # share of Var(Y) left on fresh test samples (the bound is 1 - rho**2)


def measure_context_sizes(rho: float = 0.8, sizes=(4, 16, 64, 256, 1024, 4096), n_test: int = 4000,
                          repeats: int = 5, seed: int = 0) -> list[SizeRow]:
    """Residual variance of the read-out as the context grows (mean over ``repeats`` context sets)."""
    rows = []
    for size in sizes:
        residuals = []
        for repeat in range(repeats):
            rng = np.random.default_rng([seed, size, repeat])
            x_context, y_context = gaussian_pairs(size, rho, rng)
            x_test, y_test = gaussian_pairs(n_test, rho, rng)
            residuals.append(residual_share(y_test, readout_predictions(x_context, y_context, x_test), 1.0))
        rows.append(SizeRow(size, bandwidth_for(size), float(np.mean(residuals))))
    return rows


@dataclass(frozen=True)
class PredictorRow:
    """What one predictor leaves of Var(Y) in the nonlinear case."""

    predictor: str  # "none (the mean)", "best line", "attention read-out", "true E[Y|X] = X**2"
    residual: float  # share of Var(Y) left on fresh test samples


@dataclass(frozen=True)
class NonlinearResult:
    """Y = X**2 + noise: correlation, and what each predictor leaves."""

    sample_rho: float  # correlation of X and Y measured on the context samples (0 in theory)
    var_y: float  # Var(Y) measured on the test samples (2 + noise_var in theory)
    rows: list[PredictorRow]  # one per predictor


def measure_nonlinear(n_context: int = 2000, n_test: int = 4000, noise_var: float = 0.5,
                      seed: int = 0) -> NonlinearResult:
    """The case rho = 0 with a strong dependence: the best line removes nothing, attention most."""
    rng = np.random.default_rng(seed)
    x_context, y_context = square_pairs(n_context, rng, noise_var)
    x_test, y_test = square_pairs(n_test, rng, noise_var)
    var_y = float(np.var(y_test))
    slope, intercept = np.polyfit(x_context, y_context, 1)
    predictions = {
        "none (the mean)": np.full(n_test, y_context.mean()),
        "best line": slope * x_test + intercept,
        "attention read-out": readout_predictions(x_context, y_context, x_test),
        "true E[Y|X] = X**2": x_test**2,
    }
    rows = [PredictorRow(name, residual_share(y_test, p, var_y)) for name, p in predictions.items()]
    return NonlinearResult(float(np.corrcoef(x_context, y_context)[0, 1]), var_y, rows)


@dataclass(frozen=True)
class MultipleResult:
    """Two correlated context variables and one target."""

    rho_each: tuple[float, float]  # correlation of Y with X1 and with X2 (theory)
    r_squared: float  # squared multiple correlation (theory): what the best predictor from both removes
    linear: float  # removed by the least-squares plane fitted to the context samples
    attention: float  # removed by the attention read-out with 2-D keys, on fresh test samples
    single_attention: tuple[float, float]  # removed by the read-out from X1 alone and from X2 alone


def measure_multiple(beta=(0.6, 0.4), x_corr: float = 0.5, noise_var: float = 0.3, n_context: int = 2000,
                     n_test: int = 4000, seed: int = 0, reduction=variance_reduction) -> MultipleResult:
    """Y = beta . X + noise with Corr(X1, X2) = ``x_corr``: the removed share is R**2, not rho1**2 + rho2**2.

    ``reduction(x, y)`` computes the fitted plane's share (the notebook passes the student's version).
    """
    beta, cov_x = np.asarray(beta), np.array([[1.0, x_corr], [x_corr, 1.0]])
    explained = float(beta @ cov_x @ beta)
    var_y = explained + noise_var
    rho_each = tuple(float(v) for v in (cov_x @ beta) / np.sqrt(var_y))
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov_x)

    def draw(n):
        x = rng.standard_normal((n, 2)) @ chol.T  # (n, 2) with covariance cov_x
        return x, x @ beta + np.sqrt(noise_var) * rng.standard_normal(n)

    (x_context, y_context), (x_test, y_test) = draw(n_context), draw(n_test)
    both = 1.0 - residual_share(y_test, readout_predictions(x_context, y_context, x_test), var_y)
    singles = tuple(1.0 - residual_share(y_test, readout_predictions(x_context[:, j], y_context, x_test[:, j]), var_y)
                    for j in range(2))
    return MultipleResult(rho_each, explained / var_y, reduction(x_context, y_context), both, singles)
