"""Chapter 1 widget: turn and stretch a 2-D query among a shelf of books, watch the weights move.

Each book has a 2-D key (what its spine says) and a value: a colour, so the retrieved value
(the softmax-weighted average of the colours) can be seen as one blended swatch.
:func:`lookup_view` computes everything the widget shows (unit-tested without a browser);
:func:`render_lookup_html` turns it into HTML bars; :func:`make_lookup_widget` wires sliders to it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.library_lookup.reference import soft_lookup
from xattn_edu.chapters.support.live import live_html
from xattn_edu.chapters.support.plots import css_rgb


@dataclass(frozen=True)
class Book:
    """One book on the shelf: its key and its value (a colour)."""

    title: str  # shown on the bars and the plot
    key: tuple[float, float]  # the 2-D "spine": what the book is about
    colour: tuple[float, float, float]  # the value: an RGB colour in [0, 1]


# Five books around the circle; different key lengths make some spines "louder" than others.
SHELF: tuple[Book, ...] = (
    Book("Astronomy", (1.6, 0.0), (0.12, 0.30, 0.75)),
    Book("Botany", (0.45, 1.4), (0.20, 0.62, 0.25)),
    Book("Cooking", (-1.1, 0.8), (0.90, 0.55, 0.10)),
    Book("Poetry", (-1.0, -1.0), (0.70, 0.20, 0.60)),
    Book("Sailing", (0.6, -1.3), (0.15, 0.65, 0.70)),
)


@dataclass(frozen=True)
class LookupView:
    """Everything the lookup widget shows for one query."""

    query: np.ndarray  # (2,) the query vector: scale * (cos angle, sin angle)
    scores: np.ndarray  # (n,) query · key for each book
    weights: np.ndarray  # (n,) softmax of the scores, sums to 1
    retrieved: np.ndarray  # (3,) weighted average of the book colours
    best: tuple[str, ...]  # titles of the books sharing the top score (one title: what a hard lookup returns)
    titles: tuple[str, ...]  # the n book titles, in shelf order


def lookup_view(angle_deg: float, scale: float, books: Sequence[Book] = SHELF) -> LookupView:
    """What the widget shows for a query at ``angle_deg`` degrees with length ``scale``.

    Args:
        angle_deg: direction of the query, counter-clockwise from the x axis.
        scale: length of the query; 0 gives uniform weights, large values a near-hard lookup.
        books: the shelf, n books.

    Returns:
        A :class:`LookupView` with scores and weights of shape (n,) and the retrieved colour (3,).
    """
    angle = np.deg2rad(angle_deg)
    query = scale * np.array([np.cos(angle), np.sin(angle)])  # (2,)
    keys = np.array([book.key for book in books], dtype=float)  # (n, 2)
    values = np.array([book.colour for book in books], dtype=float)  # (n, 3)
    retrieved, weights = soft_lookup(query, keys, values)
    scores = keys @ query  # (n,)
    tied = np.abs(scores - scores.max()) <= 1e-9 * max(1.0, float(np.abs(scores).max()))
    return LookupView(
        query=query,
        scores=scores,
        weights=weights,
        retrieved=retrieved,
        best=tuple(book.title for book, top in zip(books, tied, strict=True) if top),
        titles=tuple(book.title for book in books),
    )


def _hard_lookup_text(view: LookupView) -> str:
    """What a hard lookup does with this query: one book, or no single answer when the top score is shared."""
    if len(view.best) == 1:
        return f"hard lookup would return <b>{html.escape(view.best[0])}</b>"
    if len(view.best) == len(view.titles):
        return "all scores tie: a hard lookup has no single best book, the soft one returns the plain average"
    return f"the top score is shared by {html.escape(', '.join(view.best))}: a hard lookup has no single answer"


def render_lookup_html(view: LookupView, books: Sequence[Book] = SHELF) -> str:
    """HTML for a view: one bar per book (width = weight), the retrieved colour, what a hard lookup returns."""
    rows = []
    for book, score, weight in zip(books, view.scores, view.weights, strict=True):
        rows.append(
            "<tr>"
            f"<td style='padding-right:8px'>{html.escape(book.title)}</td>"
            f"<td style='text-align:right;padding-right:8px;font-family:monospace'>{score:+.2f}</td>"
            "<td style='width:220px'><div style='background:#eee;width:200px;height:14px'>"
            f"<div style='background:{css_rgb(book.colour)};width:{200 * weight:.1f}px;height:14px'></div>"
            "</div></td>"
            f"<td style='font-family:monospace'>{weight:.3f}</td>"
            "</tr>"
        )
    swatch = css_rgb(view.retrieved)
    return (
        "<div>"
        f"<div>query = ({view.query[0]:+.2f}, {view.query[1]:+.2f}) &nbsp; {_hard_lookup_text(view)}</div>"
        "<table style='border-collapse:collapse;margin:4px 0'>"
        "<tr><th style='text-align:left'>book</th><th>score</th><th style='text-align:left'>weight</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
        f"<div>retrieved value (weighted average of the colours): "
        f"<span style='display:inline-block;width:40px;height:14px;background:{swatch};"
        f"vertical-align:middle;border:1px solid #888'></span> "
        f"<span style='font-family:monospace'>({', '.join(f'{c:.2f}' for c in view.retrieved)})</span></div>"
        "</div>"
    )


def make_lookup_widget(books: Sequence[Book] = SHELF, angle_deg: float = 30.0, scale: float = 1.0):
    """Two sliders (angle, length of the query) and a live table of weights and the retrieved colour.

    Returns:
        An ``ipywidgets.VBox``; its ``.children`` are the angle slider, the scale slider and the
        ``HTML`` output (CSS class ``xattn-live-output``; sliders carry ``xattn-slider``).
    """
    import ipywidgets as widgets

    angle = widgets.FloatSlider(value=angle_deg, min=0.0, max=360.0, step=1.0, description="angle (°)")
    length = widgets.FloatSlider(value=scale, min=0.0, max=6.0, step=0.1, description="length")
    return live_html([angle, length], lambda a, s: render_lookup_html(lookup_view(a, s, books), books))


def draw_shelf(books: Sequence[Book] = SHELF, queries: dict[str, np.ndarray] | None = None, ax=None,
               title: str = "keys (arrows) and queries (dashed)"):
    """A small static picture: each book's key as an arrow in its value's colour, and query arrows (dashed).

    Book titles go in a legend beside the axes (its key for the value colours), so no arrow crosses a
    title; each query's label sits beside its tip, offset at right angles to the arrow.

    Args:
        books: the shelf.
        queries: label -> (2,) query vector to draw (a zero vector is skipped: it has no direction).
        ax: an existing matplotlib Axes, or None for a new small figure.
        title: the axes title.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    for book in books:
        ax.annotate("", xy=book.key, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": book.colour, "lw": 2.5})
    drawn = {label: np.asarray(query, dtype=float) for label, query in (queries or {}).items()
             if np.linalg.norm(query) > 0}
    for label, query in drawn.items():
        ax.annotate("", xy=tuple(query), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "black", "ls": "--"})
        across = np.array([-query[1], query[0]]) / np.linalg.norm(query)  # unit vector at right angles
        ax.text(*(query + 0.28 * across), label, ha="center", va="center", fontsize=8, style="italic")
    reach = 1.2 * max([1.0] + [abs(c) for book in books for c in book.key] +
                      [abs(c) for q in drawn.values() for c in q])
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.axhline(0, color="#ccc", lw=0.5)
    ax.axvline(0, color="#ccc", lw=0.5)
    handles = [Line2D([0], [0], color=book.colour, lw=6, label=book.title) for book in books]
    handles.append(Line2D([0], [0], color="black", ls="--", label="query"))
    ax.legend(handles=handles, title="key colour = value", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.set_title(title, fontsize=10)
    return ax
