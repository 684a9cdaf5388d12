"""Chapter 4 widgets: how much variance attention removes, and where the gradient goes.

* :func:`uncertainty_view` computes what the first widget shows for a correlation (or, in the
  nonlinear case, a strength) and a context size: the samples, the attention read-out's curve, and the
  residual variance it leaves next to the bound; :func:`render_uncertainty_html` draws it as inline SVG;
  :func:`make_uncertainty_widget` wires a slider for rho, one for n and a nonlinear toggle to it.
* :func:`gradient_view` / :func:`render_gradient_html` / :func:`make_gradient_widget`: a variant selector
  and a depth slider over the per-layer gradient norms at initialisation, on one fixed log scale.

All of it is computed on demand (and memoised within the session), nothing is stored.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from xattn_edu.chapters.superpowers.gradient_flow import VARIANTS, bottom_top_ratio, gradient_profile
from xattn_edu.chapters.superpowers.uncertainty import bandwidth_for, readout_predictions
from xattn_edu.chapters.support.live import live_html

CONTEXT_SIZES = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
"""The context sizes the n slider offers."""

TEST_POINTS = 400
"""Fresh X values (the quantiles of N(0, 1)) over which the residual variance is averaged."""

GRID = np.linspace(-3.0, 3.0, 81)
"""Where the read-out's curve is drawn."""


@dataclass(frozen=True)
class UncertaintyView:
    """Everything the uncertainty widget shows (Var(Y) = 1 in both cases)."""

    rho: float  # the slider: the correlation (Gaussian) or the strength s (nonlinear)
    n_context: int  # context items the read-out attends over
    nonlinear: bool  # False: Y = rho X + noise; True: Y = s (X**2 - 1) / sqrt(2) + noise (Corr(X, Y) = 0)
    x: np.ndarray  # (n,) context inputs (the keys)
    y: np.ndarray  # (n,) context targets (the values)
    grid_prediction: np.ndarray  # (len(GRID),) the read-out's prediction along GRID
    truth: np.ndarray  # (len(GRID),) the true E[Y | X] along GRID
    sample_rho: float  # correlation of the context samples
    attention_residual: float  # share of Var(Y) the read-out leaves on fresh data (see uncertainty_view)
    linear_residual: float  # share the least-squares line fitted to the context leaves, the same way
    bound: float  # share the best possible predictor leaves: 1 - rho**2 (or 1 - s**2)


def _targets(x: np.ndarray, noise: np.ndarray, rho: float, nonlinear: bool) -> tuple[np.ndarray, np.ndarray]:
    """(y, E[y | x]) with Var(y) = 1: a line of slope rho, or a parabola of strength rho."""
    signal = rho * (x**2 - 1.0) / math.sqrt(2.0) if nonlinear else rho * x
    return signal + math.sqrt(max(0.0, 1.0 - rho**2)) * noise, signal


@lru_cache(maxsize=64)
def _draws(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed standard-normal draws (X and the noise) for n context items: same n, same samples."""
    rng = np.random.default_rng(n)
    return rng.standard_normal(n), rng.standard_normal(n)


_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((i + 0.5) / TEST_POINTS) for i in range(TEST_POINTS)])


def uncertainty_view(rho: float, n_context: int, nonlinear: bool = False) -> UncertaintyView:
    """What the uncertainty widget shows for one setting (deterministic: the same inputs, the same view).

    The residual variance of a predictor f on fresh data is ``(1 - rho**2) + E_X[(E[Y|X] - f(X))**2]``
    (the noise it cannot know, plus its own error), the expectation taken over the quantiles of X.

    Raises:
        ValueError: ``|rho| > 1`` or ``n_context < 2``.
    """
    if abs(rho) > 1 or n_context < 2:
        raise ValueError(f"need |rho| <= 1 and at least 2 context items, got rho={rho}, n={n_context}")
    x, noise = _draws(n_context)
    y, _ = _targets(x, noise, rho, nonlinear)
    predictions = readout_predictions(x, y, np.concatenate([_NORMAL_QUANTILES, GRID]), bandwidth_for(n_context))
    truth = _targets(_NORMAL_QUANTILES, np.zeros(TEST_POINTS), rho, nonlinear)[1]
    slope, intercept = np.polyfit(x, y, 1)
    return UncertaintyView(
        rho=rho, n_context=n_context, nonlinear=nonlinear, x=x, y=y,
        grid_prediction=predictions[TEST_POINTS:], truth=_targets(GRID, np.zeros_like(GRID), rho, nonlinear)[1],
        sample_rho=float(np.corrcoef(x, y)[0, 1]) if np.std(y) > 0 else 0.0,
        attention_residual=1.0 - rho**2 + float(np.mean((truth - predictions[:TEST_POINTS]) ** 2)),
        linear_residual=1.0 - rho**2 + float(np.mean((truth - slope * _NORMAL_QUANTILES - intercept) ** 2)),
        bound=1.0 - rho**2,
    )


def _polyline(xs, ys, to_px, colour: str, dash: str = "") -> str:
    points = " ".join(f"{px:.1f},{py:.1f}" for px, py in (to_px(a, b) for a, b in zip(xs, ys, strict=True)))
    return f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='2' {dash}/>"


def _axes(width: int, height: int, pad: int, xlabel: str, ylabel: str) -> str:
    return (f"<rect x='{pad}' y='8' width='{width - pad - 8}' height='{height - pad - 8}' fill='none' stroke='#999'/>"
            f"<text x='{(width + pad) / 2}' y='{height - 6}' font-size='11' text-anchor='middle'>{xlabel}</text>"
            f"<text x='12' y='{height / 2}' font-size='11' text-anchor='middle' "
            f"transform='rotate(-90 12 {height / 2})'>{ylabel}</text>")


def _scatter_svg(view: UncertaintyView, width: int = 300, height: int = 240, pad: int = 34) -> str:
    def to_px(a, b):
        return pad + (a + 3) / 6 * (width - pad - 8), 8 + (3 - b) / 6 * (height - pad - 8)

    shown = np.arange(view.n_context)[: 400]  # at most 400 dots
    dots = "".join(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='2' fill='#3b6ea8' fill-opacity='0.45'/>"
                   for px, py in (to_px(a, b) for a, b in zip(view.x[shown], view.y[shown], strict=True))
                   if 0 <= py <= height)
    inside = np.abs(view.grid_prediction) <= 3
    curve = _polyline(GRID[inside], view.grid_prediction[inside], to_px, "#d9480f")
    truth = _polyline(GRID[np.abs(view.truth) <= 3], view.truth[np.abs(view.truth) <= 3], to_px, "#222",
                      "stroke-dasharray='4 3'")
    return (f"<svg width='{width}' height='{height}'>{_axes(width, height, pad, 'X (query)', 'Y (value)')}"
            f"{dots}{truth}{curve}</svg>")


def _residual_svg(view: UncertaintyView, width: int = 260, height: int = 240, pad: int = 34) -> str:
    def to_px(a, b):
        return pad + (a + 1) / 2 * (width - pad - 8), 8 + (1.2 - b) / 1.2 * (height - pad - 8)

    rhos = np.linspace(-1, 1, 81)
    bound = _polyline(rhos, 1 - rhos**2, to_px, "#222", "stroke-dasharray='4 3'")
    marks = "".join(f"<text x='{pad - 3}' y='{to_px(-1, t)[1] + 4:.1f}' font-size='10' text-anchor='end'>{t:g}</text>"
                    for t in (0.0, 0.5, 1.0))
    marks += "".join(f"<text x='{to_px(t, 0)[0]:.1f}' y='{height - pad + 12}' font-size='10' "
                     f"text-anchor='middle'>{t:g}</text>" for t in (-1.0, 0.0, 1.0))
    for value, colour in ((view.linear_residual, "#2b8a3e"), (view.attention_residual, "#d9480f")):
        px, py = to_px(view.rho, min(value, 1.2))
        marks += f"<circle cx='{px:.1f}' cy='{py:.1f}' r='5' fill='{colour}'/>"
    return (f"<svg width='{width}' height='{height}'>"
            f"{_axes(width, height, pad, 'rho (or strength s)', 'residual variance / Var(Y)')}{bound}{marks}</svg>")


def render_uncertainty_html(view: UncertaintyView) -> str:
    """The view as HTML: the scatter and curves, the residual variances against 1 - rho**2, and the numbers."""
    case = ("Y = s (X&sup2; - 1)/&radic;2 + noise: correlation 0 whatever s" if view.nonlinear
            else "Y = &rho; X + noise")
    legend = ("<span style='color:#d9480f'>&#9644; attention read-out</span> &nbsp; "
              "<span style='color:#222'>- - true E[Y|X] / the bound 1 - &rho;&sup2;</span> &nbsp; "
              "<span style='color:#2b8a3e'>&#9679; best line</span>")
    return (
        f"<div><div><b>{case}</b>, &rho; (or s) = {view.rho:+.2f}, n = {view.n_context} context items, "
        f"kernel width h = {bandwidth_for(view.n_context):.2f}</div>"
        f"<div style='display:flex;gap:12px'>{_scatter_svg(view)}{_residual_svg(view)}</div><div>{legend}</div>"
        "<table style='font-family:monospace'>"
        f"<tr><td>correlation of the samples</td><td>{view.sample_rho:+.3f}</td></tr>"
        f"<tr><td>variance left by attention</td><td>{view.attention_residual:.3f}</td></tr>"
        f"<tr><td>variance left by the best line</td><td>{view.linear_residual:.3f}</td></tr>"
        f"<tr><td>bound 1 - (&rho; or s)&sup2;</td><td>{view.bound:.3f}</td></tr></table></div>"
    )


def make_uncertainty_widget(rho: float = 0.6, n_context: int = 256, nonlinear: bool = False):
    """A rho slider (first), a context-size slider and a nonlinear toggle over :func:`render_uncertainty_html`.

    Returns:
        An ``ipywidgets.VBox``: the two sliders, the checkbox, then the ``HTML`` output.
    """
    import ipywidgets as widgets

    rho_slider = widgets.FloatSlider(value=rho, min=-0.95, max=0.95, step=0.05, description="ρ (or s)")
    size_slider = widgets.SelectionSlider(options=CONTEXT_SIZES, value=n_context, description="context n")
    toggle = widgets.Checkbox(value=nonlinear, description="nonlinear: Y from X²")
    return live_html([rho_slider, size_slider, toggle],
                     lambda r, n, nl: render_uncertainty_html(uncertainty_view(r, n, nl)))


# ----------------------------------------------------------------------------- gradient norms

LOG_RANGE = (-4.0, 2.0)
"""The fixed log10 scale of the gradient widget: every variant and depth is drawn on it."""

VARIANT_NAMES = {variant.name: variant for variant in VARIANTS}


@dataclass(frozen=True)
class GradientView:
    """Per-layer gradient norms of one variant at one depth, at initialisation."""

    variant: str  # the variant's name (see gradient_flow.Variant.name)
    depth: int  # L, encoder layers
    norms: np.ndarray  # (L,) gradient norm of each encoder layer's parameters, bottom first
    ratio: float  # norms[0] / norms[-1]


def gradient_view(variant: str, depth: int) -> GradientView:
    """The gradient profile the widget shows (seed 0, one batch; memoised by ``gradient_profile``).

    Raises:
        KeyError: an unknown variant name.
    """
    norms = gradient_profile(VARIANT_NAMES[variant], int(depth))
    return GradientView(variant, int(depth), np.asarray(norms), bottom_top_ratio(norms))


def render_gradient_html(view: GradientView, width: int = 520, height: int = 230, pad: int = 44) -> str:
    """Bars of log10(norm) per layer on the fixed :data:`LOG_RANGE` scale, with the bottom/top ratio."""
    low, high = LOG_RANGE
    plot_h = height - pad - 10
    bar_w = (width - pad - 10) / view.depth

    def y_of(log_value):
        return 10 + (high - min(max(log_value, low), high)) / (high - low) * plot_h

    bars = ""
    for index, norm in enumerate(view.norms):
        top = y_of(math.log10(max(norm, 1e-300)))
        bars += (f"<rect x='{pad + index * bar_w + 1:.1f}' y='{top:.1f}' width='{max(bar_w - 2, 1):.1f}' "
                 f"height='{10 + plot_h - top:.1f}' fill='#3b6ea8'><title>layer {index + 1}: {norm:.3g}</title></rect>")
    ticks = "".join(f"<text x='{pad - 4}' y='{y_of(t) + 4:.1f}' font-size='10' text-anchor='end'>1e{int(t)}</text>"
                    f"<line x1='{pad}' x2='{width - 10}' y1='{y_of(t):.1f}' y2='{y_of(t):.1f}' stroke='#eee'/>"
                    for t in np.arange(low, high + 1))
    svg = (f"<svg width='{width}' height='{height}'>{ticks}{bars}"
           f"<text x='{(width + pad) / 2}' y='{height - 8}' font-size='11' text-anchor='middle'>"
           f"encoder layer 1 (bottom) ... {view.depth} (top)</text></svg>")
    return (f"<div><div><b>{html.escape(view.variant)}</b>, L = {view.depth}: gradient norm of each encoder "
            f"layer's parameters at initialisation (log scale, the same for every variant)</div>{svg}"
            f"<div style='font-family:monospace'>bottom / top = {view.ratio:.3g}; "
            f"bottom {view.norms[0]:.3g}, top {view.norms[-1]:.3g}</div></div>")


def make_gradient_widget(variant: str = VARIANTS[0].name, depth: int = 12):
    """A variant selector and a depth slider over :func:`render_gradient_html`."""
    import ipywidgets as widgets

    chooser = widgets.Dropdown(options=list(VARIANT_NAMES), value=variant, description="variant",
                               layout=widgets.Layout(width="360px"))
    slider = widgets.IntSlider(value=depth, min=2, max=24, step=1, description="depth L")
    return live_html([chooser, slider], lambda v, d: render_gradient_html(gradient_view(v, d)))
