"""Figures shared by the chapters: one heatmap style for attention weights, in figures and in widgets.

Conventions (``DESIGN.md``, "Plots"): a perceptually uniform colormap (viridis), a colour scale
fixed at 0–1 for attention weights and shared by every panel of a figure (one colour bar), the
tokens as tick labels on both axes with axis labels, long labels rotated so they do not
collide, titles passed in by the caller, and figures small enough to sit beside the text.

* :func:`attention_heatmap` draws one (Tq, Tk) matrix;
* :func:`heatmap_panels` draws a row (or grid) of them on one scale with one colour bar;
* :func:`weight_css` colours an HTML table cell (the widgets) on the same scale;
* :func:`line_chart` plots measured curves (and predictions) against one x axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

CMAP = "viridis"
"""The colormap of every heatmap: perceptually uniform, readable in grey and by most colour-blind readers."""

WEIGHT_LIMITS = (0.0, 1.0)
"""The colour scale of attention weights: 0 (dark) to 1 (yellow), whatever the matrix holds."""

_ROTATE_OVER = 3
"""x tick labels longer than this many characters are rotated by 45 degrees."""


def _matrix(weights) -> np.ndarray:
    """A float numpy copy of an array-like or a torch tensor (detached, on the CPU)."""
    return np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=float)


def _checked(weights, row_labels: Sequence[str], col_labels: Sequence[str], what: str = "weights") -> np.ndarray:
    matrix = _matrix(weights)
    if matrix.ndim != 2 or matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"{what} must be (Tq, Tk) = ({len(row_labels)}, {len(col_labels)}) to match the labels, "
            f"got shape {matrix.shape}"
        )
    return matrix


def _norm(matrices: Sequence[np.ndarray], limits: tuple[float, float] | None):
    """One colour scale: ``limits``, or the range of all the matrices when ``limits`` is None."""
    from matplotlib.colors import Normalize

    if limits is None:
        low = min(float(m.min()) for m in matrices)
        high = max(float(m.max()) for m in matrices)
        limits = (low, high if high > low else low + 1e-9)
    return Normalize(*limits)


def _size(n_rows: int, n_cols: int, annotate: bool) -> tuple[float, float]:
    """Inches for one panel: a third of an inch per cell (half when the cells hold numbers), within bounds."""
    cell_width, cell_height = (0.5, 0.38) if annotate else (0.32, 0.3)
    return min(max(0.6 + cell_width * n_cols, 2.2), 4.5), min(max(0.9 + cell_height * n_rows, 1.8), 4.0)


def _rotate(*label_lists: Sequence[str]) -> bool:
    """Whether x tick labels should be rotated: when any of them is long."""
    return max((len(label) for labels in label_lists for label in labels), default=0) > _ROTATE_OVER


def _text_colour(rgba) -> str:
    """Black on light cells, white on dark ones (by the cell's luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _draw(ax, matrix: np.ndarray, row_labels, col_labels, norm, *, title: str, xlabel: str, ylabel: str,
          annotate: bool, rotate: bool):
    """Draw one matrix on ``ax`` with ``norm``; returns the image (no colour bar)."""
    image = ax.imshow(matrix, cmap=CMAP, norm=norm, aspect="auto")
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), fontsize=8,
                  rotation=45 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    if annotate:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color=_text_colour(image.cmap(norm(value))))
    return image


def attention_heatmap(
    weights,
    query_labels: Sequence[str],
    key_labels: Sequence[str],
    *,
    title: str = "",
    ax=None,
    limits: tuple[float, float] | None = WEIGHT_LIMITS,
    annotate: bool = False,
    colorbar: bool = True,
    xlabel: str = "keys (attended to)",
    ylabel: str = "queries",
    label: str = "attention weight",
):
    """Draw a (Tq, Tk) matrix as a heatmap: rows are queries, columns keys, the labels on the axes.

    Args:
        weights: array-like or torch tensor of shape (Tq, Tk), e.g. attention weights (rows sum to 1).
        query_labels: Tq row labels (e.g. target tokens).
        key_labels: Tk column labels (e.g. source tokens); rotated when longer than 3 characters.
        title: what the reader should notice.
        ax: an existing matplotlib Axes; a new small figure is made when None.
        limits: (low, high) of the colour scale; the default (0, 1) suits attention weights,
            None spans the matrix's own range (for scores or other matrices).
        annotate: write each value in its cell (for small matrices).
        colorbar: draw a colour bar beside the axes.
        xlabel, ylabel: the axis labels; ``label`` the colour bar's.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: when ``weights`` is not 2-D with one row per query label and one column per key label.
    """
    import matplotlib.pyplot as plt

    matrix = _checked(weights, query_labels, key_labels)
    if ax is None:
        width, height = _size(*matrix.shape, annotate)
        _, ax = plt.subplots(figsize=(width + (0.8 if colorbar else 0.0), height), layout="constrained")
    image = _draw(ax, matrix, query_labels, key_labels, _norm([matrix], limits), title=title, xlabel=xlabel,
                  ylabel=ylabel, annotate=annotate, rotate=_rotate(key_labels))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    return ax


def _per_panel(labels: Sequence[str] | Sequence[Sequence[str]], n_panels: int, what: str) -> list[Sequence[str]]:
    """One label list for every panel: the same list repeated, or one list given per panel."""
    if len(labels) and not isinstance(labels[0], str):
        if len(labels) != n_panels:
            raise ValueError(f"{what}: got {len(labels)} label lists for {n_panels} panels")
        return list(labels)
    return [labels] * n_panels


def heatmap_panels(
    matrices,
    query_labels: Sequence[str] | Sequence[Sequence[str]],
    key_labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    titles: Sequence[str],
    suptitle: str = "",
    ncols: int | None = None,
    limits: tuple[float, float] | None = WEIGHT_LIMITS,
    annotate: bool = False,
    xlabel: str = "keys (attended to)",
    ylabel: str = "queries",
    label: str = "attention weight",
):
    """Draw several (Tq, Tk) matrices side by side on ONE colour scale with ONE colour bar.

    Args:
        matrices: a sequence of P matrices, or an array/tensor of shape (P, Tq, Tk) (e.g. one per head).
        query_labels, key_labels: the labels of every panel, or one list of labels per panel.
        titles: P panel titles.
        suptitle: a title over the whole figure.
        ncols: panels per row (default: up to 3, rows as even as possible: 4 panels make a 2 x 2 grid).
        limits: as in :func:`attention_heatmap`; None spans the range of all the panels together.
        annotate, xlabel, ylabel, label: as in :func:`attention_heatmap`.

    Returns:
        ``(figure, axes)``: axes is the flat list of the P panel Axes. Their images share one
        ``Normalize``; the colour bar belongs to the first image.

    Raises:
        ValueError: when there are no panels, when titles or label lists do not count P, or when a
        matrix does not match its labels.
    """
    import matplotlib.pyplot as plt

    panels = list(matrices)
    if not panels:
        raise ValueError("heatmap_panels needs at least one matrix")
    if len(titles) != len(panels):
        raise ValueError(f"got {len(titles)} titles for {len(panels)} panels")
    rows = _per_panel(query_labels, len(panels), "query_labels")
    cols = _per_panel(key_labels, len(panels), "key_labels")
    checked = [_checked(m, r, c, f"panel {p}") for p, (m, r, c) in enumerate(zip(panels, rows, cols, strict=True))]
    ncols = min(ncols or math.ceil(len(panels) / math.ceil(len(panels) / 3)), len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width, height = np.max([_size(*m.shape, annotate) for m in checked], axis=0)
    fig, grid = plt.subplots(nrows, ncols, figsize=(ncols * width + 0.8, nrows * height + (0.3 if suptitle else 0)),
                             layout="constrained", squeeze=False)
    for extra in grid.flat[len(panels):]:
        extra.remove()
    axes = list(grid.flat[: len(panels)])
    norm = _norm(checked, limits)
    rotate = _rotate(*cols)  # one rule for the whole figure
    images = [_draw(ax, m, r, c, norm, title=t, xlabel=xlabel, ylabel=ylabel, annotate=annotate, rotate=rotate)
              for ax, m, r, c, t in zip(axes, checked, rows, cols, titles, strict=True)]
    if all(list(r) == list(rows[0]) for r in rows):  # the same rows everywhere: label them once per row
        for ax in (ax for index, ax in enumerate(axes) if index % ncols):
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
    fig.colorbar(images[0], ax=axes, shrink=0.9, aspect=25, pad=0.02, label=label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig, axes


@lru_cache(maxsize=1)
def _cmap():
    import matplotlib

    return matplotlib.colormaps[CMAP]


def css_rgb(rgb: Sequence[float]) -> str:
    """CSS ``rgb(r,g,b)`` for a colour with channels in [0, 1] (clipped)."""
    r, g, b = (round(255 * min(max(float(c), 0.0), 1.0)) for c in rgb[:3])
    return f"rgb({r},{g},{b})"


def weight_css(weight: float) -> str:
    """CSS for an HTML cell showing an attention weight: the heatmap's colour on the 0–1 scale, readable text.

    Returns:
        ``"background:rgb(...);color:black|white"``.
    """
    rgba = _cmap()(min(max(float(weight), WEIGHT_LIMITS[0]), WEIGHT_LIMITS[1]))
    return f"background:{css_rgb(rgba)};color:{_text_colour(rgba)}"


_MARKERS = ("o-", "s-", "^-", "D-", "v-")


def _set_scale(set_scale, scale: str) -> None:
    set_scale("log", base=2) if scale == "log2" else set_scale(scale)


def line_chart(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    predictions: Mapping[str, Sequence[float]] | None = None,
    xscale: str = "linear",
    yscale: str = "linear",
    ax=None,
):
    """Measured curves against one x axis, as every chapter's experiments plot them.

    Args:
        x: N x values, shared by every curve.
        series: label -> N measured values; each curve gets its own marker, in order.
        xlabel, ylabel, title: the axis labels (both required) and what to notice.
        predictions: label -> N values from a formula, drawn as dotted black lines.
        xscale, yscale: ``"linear"``, ``"log"`` or ``"log2"`` (a log axis with ticks at powers of 2).
        ax: an existing matplotlib Axes; a new small figure is made when None.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: when a curve does not have one value per x.
    """
    import matplotlib.pyplot as plt

    curves = [(label, values, _MARKERS[i % len(_MARKERS)]) for i, (label, values) in enumerate(series.items())]
    curves += [(label, values, "k:") for label, values in (predictions or {}).items()]
    for label, values, _ in curves:
        if len(values) != len(x):
            raise ValueError(f"curve {label!r} has {len(values)} values for {len(x)} x values")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
    for label, values, style in curves:
        ax.plot(list(x), list(values), style, label=label)
    _set_scale(ax.set_xscale, xscale)
    _set_scale(ax.set_yscale, yscale)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return ax
