"""Figures shared by the chapters: attention heatmaps with tokens on the axes.

Conventions: perceptually uniform colormaps (viridis), a colour bar, token labels on both
axes, a title that says what to notice, small figures that sit beside the text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def attention_heatmap(
    weights,
    query_labels: Sequence[str],
    key_labels: Sequence[str],
    *,
    title: str = "",
    ax=None,
    cmap: str = "viridis",
    annotate: bool = False,
):
    """Draw a (Tq, Tk) attention matrix: rows are queries, columns keys.

    Args:
        weights: array-like or tensor of shape (Tq, Tk), each row a distribution.
        query_labels: Tq labels for the rows (e.g. target tokens).
        key_labels: Tk labels for the columns (e.g. source tokens).
        title: what the reader should notice.
        ax: an existing matplotlib Axes; a new small figure is made when None.
        annotate: write each weight in its cell (for small matrices).

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    matrix = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=float)
    if matrix.ndim != 2 or matrix.shape != (len(query_labels), len(key_labels)):
        raise ValueError(
            f"weights must be (Tq, Tk) = ({len(query_labels)}, {len(key_labels)}) to match the labels, "
            f"got shape {matrix.shape}"
        )
    if ax is None:
        width = 1.2 + 0.45 * len(key_labels)
        height = 1.0 + 0.4 * len(query_labels)
        _, ax = plt.subplots(figsize=(min(max(width, 3.0), 9.0), min(max(height, 2.2), 7.0)))
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=max(1e-9, float(matrix.max())), aspect="auto")
    ax.set_xticks(range(len(key_labels)), labels=list(key_labels), rotation=45, ha="right")
    ax.set_yticks(range(len(query_labels)), labels=list(query_labels))
    ax.set_xlabel("keys (attended to)")
    ax.set_ylabel("queries")
    if title:
        ax.set_title(title, fontsize=10)
    if annotate:
        threshold = matrix.max() / 2
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > threshold else "white")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax
