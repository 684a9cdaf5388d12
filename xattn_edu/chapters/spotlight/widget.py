"""Chapter 2 widget: turn the temperature, the width d and the 1/sqrt(d) scale, watch the spotlight.

A fixed little library of six books has random keys of width ``d`` (the same keys for the same
``d``); four queries ask it questions: one close to a single book, one halfway between two
books, a random one and the zero query. :func:`spotlight_view` computes their attention weights
and entropies (unit-tested without a browser), :func:`render_spotlight_html` draws them as a
coloured table, and :func:`make_spotlight_widget` wires the controls to it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from xattn_edu.chapters.library_lookup.reference import relevance_scores
from xattn_edu.chapters.spotlight.reference import attention_entropy, max_entropy, scaled_scores, temperature_softmax
from xattn_edu.chapters.support.live import live_html
from xattn_edu.chapters.support.plots import weight_css

BOOKS = ("Astronomy", "Botany", "Cooking", "Poetry", "Sailing", "Zoology")
"""The keys (columns of the table)."""

QUERIES = ("close to Botany", "Astronomy + Sailing", "a random question", "zero query")
"""The queries (rows of the table)."""

WIDTHS = (1, 4, 16, 64, 256, 1024)
"""The widths ``d`` the widget offers."""


@dataclass(frozen=True)
class SpotlightView:
    """Everything the spotlight widget shows for one setting of its controls."""

    temperature: float  # T: the scores are divided by it before the softmax
    dim: int  # width d of the queries and keys
    scaled: bool  # True when the scores are divided by sqrt(d)
    scores: np.ndarray  # (Tq, n) scores fed to the softmax (before the temperature)
    weights: np.ndarray  # (Tq, n) attention weights, each row sums to 1
    entropy: np.ndarray  # (Tq,) entropy of each row, nats
    entropy_fraction: np.ndarray  # (Tq,) entropy / log n (0 = one-hot, 1 = uniform)
    log_n: float  # log(n): the entropy of uniform weights
    query_labels: tuple[str, ...]  # Tq row labels
    key_labels: tuple[str, ...]  # n column labels


@lru_cache(maxsize=len(WIDTHS) + 4)
def library(dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed keys (n, d) and queries (Tq, d) for width ``dim`` (the same arrays for the same ``dim``).

    Entries of the keys are standard Gaussian, so every query-key dot product has variance about d.
    """
    if dim < 1:
        raise ValueError(f"the width d must be at least 1, got {dim}")
    rng = np.random.default_rng([seed, dim])
    keys = rng.standard_normal((len(BOOKS), dim))  # (n, d)
    queries = np.stack([
        keys[1] + 0.3 * rng.standard_normal(dim),  # close to Botany
        (keys[0] + keys[4]) / math.sqrt(2.0),  # halfway between Astronomy and Sailing
        rng.standard_normal(dim),  # a random question
        np.zeros(dim),  # the zero query
    ])  # (Tq, d)
    keys.setflags(write=False)
    queries.setflags(write=False)
    return keys, queries


def spotlight_view(temperature: float, dim: int, scaled: bool = True) -> SpotlightView:
    """What the widget shows for temperature ``temperature``, width ``dim`` and the scale on or off.

    Returns:
        A :class:`SpotlightView` with (Tq, n) scores and weights and (Tq,) entropies.
    """
    keys, queries = library(dim)
    scores = scaled_scores(queries, keys) if scaled else relevance_scores(queries, keys)  # (Tq, n)
    weights = temperature_softmax(scores, temperature)  # (Tq, n)
    entropy = attention_entropy(weights)  # (Tq,)
    log_n = max_entropy(len(BOOKS))
    return SpotlightView(temperature, dim, scaled, scores, weights, entropy, entropy / log_n, log_n,
                         QUERIES, BOOKS)


def render_spotlight_html(view: SpotlightView) -> str:
    """HTML for a view: a weights table coloured with viridis (0 dark, 1 yellow) and an entropy readout per query."""
    cell = "padding:2px 6px;font-family:monospace;text-align:center"
    header = "".join(f"<th style='padding:2px 6px'>{html.escape(key)}</th>" for key in view.key_labels)
    rows = []
    for label, weights, entropy, fraction in zip(view.query_labels, view.weights, view.entropy,
                                                 view.entropy_fraction, strict=True):
        cells = "".join(f"<td style='{cell};{weight_css(w)}'>{w:.3f}</td>" for w in weights)
        rows.append(
            f"<tr><td style='padding-right:8px'>{html.escape(label)}</td>{cells}"
            f"<td style='{cell}'>{entropy:.3f} nats</td><td style='{cell}'>{100 * fraction:.1f} %</td></tr>"
        )
    spread = float(view.scores[:3].std())  # the zero query's scores are all 0 and would dilute the figure
    scale = "divided by &radic;d" if view.scaled else "raw dot products (no &radic;d)"
    return (
        "<div>"
        f"<div>T = {view.temperature:.3g}, d = {view.dim}, scores: {scale}; "
        f"spread (std) of the non-zero queries' scores = {spread:.2f}</div>"
        "<table style='border-collapse:collapse;margin:4px 0'>"
        f"<tr><th style='text-align:left'>query \\ key</th>{header}"
        f"<th style='padding:2px 6px'>entropy</th><th style='padding:2px 6px'>of log n = {view.log_n:.3f}</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )


def make_spotlight_widget(temperature: float = 1.0, dim: int = 64, scaled: bool = True):
    """Temperature (log scale), width d and scale on/off controls over the live weights table.

    Returns:
        An ``ipywidgets.VBox``; its ``.children`` are the temperature slider, the width slider,
        the scale checkbox and the ``HTML`` output (CSS class ``xattn-live-output``; the sliders
        carry ``xattn-slider``).
    """
    import ipywidgets as widgets

    labels = {"style": {"description_width": "initial"}}  # the whole label, never cut to "temperat…"
    temp = widgets.FloatLogSlider(value=temperature, base=10, min=-2, max=2, step=0.05, description="temperature T",
                                  **labels)
    width = widgets.SelectionSlider(options=WIDTHS, value=dim, description="width d", **labels)
    scale = widgets.Checkbox(value=scaled, description="divide scores by √d", indent=False)
    return live_html([temp, width, scale], lambda t, d, on: render_spotlight_html(spotlight_view(t, d, on)))
