"""Attention over patches painted onto the image, for figures and for the widgets' inline PNGs.

One colour scale everywhere (the chapter's heatmap convention): viridis from weight 0 to weight 1,
blended half and half with the grey image so the digits or shapes stay readable.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from xattn_edu.chapters.support.plots import CMAP, WEIGHT_LIMITS


def upsample(per_patch: np.ndarray, patch: int) -> np.ndarray:
    """(rows, cols) values, one per patch → (rows * patch, cols * patch) pixels."""
    return np.kron(np.asarray(per_patch, dtype=float), np.ones((patch, patch)))


def attention_overlay(image: np.ndarray, weights: np.ndarray, patch: int, alpha: float = 0.55) -> np.ndarray:
    """RGB (H, W, 3) in [0, 1]: the grey image blended with the viridis colour of each patch's weight.

    Args:
        image: (H, W) grey levels (clipped to [0, 1]).
        weights: (H / patch, W / patch) attention weights, coloured on the fixed 0–1 scale.
        patch: patch side in pixels.
        alpha: share of the attention colour in the blend.
    """
    import matplotlib

    grey = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)[..., None].repeat(3, axis=-1)
    low, high = WEIGHT_LIMITS
    colour = matplotlib.colormaps[CMAP](np.clip((upsample(weights, patch) - low) / (high - low), 0.0, 1.0))[..., :3]
    return (1 - alpha) * grey + alpha * colour


def mask_overlay(image: np.ndarray, probability: np.ndarray, point: tuple[float, float] | None = None) -> np.ndarray:
    """RGB (H, W, 3): the grey image, tinted red in proportion to the mask probability; the point in yellow."""
    grey = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    rgb = np.stack([grey * (1 - p) + p * 0.9, grey * (1 - 0.7 * p), grey * (1 - 0.7 * p)], axis=-1)
    if point is not None:
        row = min(max(int(point[1]), 0), grey.shape[0] - 1)
        column = min(max(int(point[0]), 0), grey.shape[1] - 1)
        rgb[row, column] = (1.0, 0.9, 0.0)
    return rgb


def png_data_uri(rgb: np.ndarray, scale: int = 8) -> str:
    """A ``data:image/png;base64,...`` URI of an (H, W, 3) RGB image in [0, 1], each pixel ``scale`` x ``scale``."""
    from matplotlib.image import imsave

    big = np.repeat(np.repeat(np.clip(rgb, 0.0, 1.0), scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    imsave(buffer, big, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img_tag(rgb: np.ndarray, scale: int = 8, title: str = "") -> str:
    """An HTML ``<img>`` showing ``rgb`` inline (see :func:`png_data_uri`)."""
    title = html.escape(title, quote=True)
    return (f"<img src='{png_data_uri(rgb, scale)}' title='{title}' alt='{title}' "
            "style='image-rendering:pixelated;margin:2px;border:1px solid #888'>")


def image_panels(rgbs, titles, *, suptitle: str, colorbar: str | None = "attention weight", ncols: int | None = None):
    """A row (or grid) of RGB panels with one title each, and one 0–1 viridis colour bar for the figure.

    Args:
        rgbs: P images (H, W, 3) in [0, 1], e.g. from :func:`attention_overlay` or :func:`mask_overlay`.
        titles: P panel titles.
        suptitle: what to notice, over the whole figure.
        colorbar: the colour bar's label; None for no colour bar (mask panels).
        ncols: panels per row (default: all in one row, at most 6).

    Returns:
        ``(figure, axes)``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if len(rgbs) != len(titles):
        raise ValueError(f"got {len(titles)} titles for {len(rgbs)} panels")
    ncols = ncols or min(len(rgbs), 6)
    nrows = -(-len(rgbs) // ncols)
    height, width = rgbs[0].shape[:2]
    panel_width = min(1.8 * width / height, 3.0)  # inches
    panel_height = panel_width * height / width
    fig, grid = plt.subplots(nrows, ncols, figsize=(ncols * panel_width + 1.0, nrows * (panel_height + 0.35) + 0.4),
                             layout="constrained", squeeze=False)
    for ax in grid.flat[len(rgbs):]:
        ax.remove()
    axes = list(grid.flat[: len(rgbs)])
    for ax, rgb, title in zip(axes, rgbs, titles, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if colorbar:
        fig.colorbar(ScalarMappable(Normalize(*WEIGHT_LIMITS), CMAP), ax=axes, shrink=0.8, label=colorbar)
    fig.suptitle(suptitle, fontsize=10)
    return fig, axes


def show_patches(image: np.ndarray, patch: int, *, slot: int | None = None, ax=None, title: str = ""):
    """The grey image with its patch grid (thin lines), patch numbers, and digit slots (thick lines) if given."""
    import matplotlib.pyplot as plt

    height, width = image.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(0.22 * width + 0.4, 0.22 * height + 0.6), layout="constrained")
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    for x in range(0, width + 1, patch):
        ax.axvline(x - 0.5, color="tab:blue", lw=2.0 if slot and x % slot == 0 else 0.6)
    for y in range(0, height + 1, patch):
        ax.axhline(y - 0.5, color="tab:blue", lw=0.6)
    for n in range((height // patch) * (width // patch)):
        row, column = divmod(n, width // patch)
        ax.text(column * patch - 0.3, row * patch + 0.3, str(n), fontsize=6, color="tab:red", va="top")
    ax.set_xlabel("x (pixels)", fontsize=8)
    ax.set_ylabel("y (pixels)", fontsize=8)
    ax.set_title(title, fontsize=9)
    return ax


def show_sequence(patches: np.ndarray, positions: np.ndarray, patch: int, *, per_row: int = 14, title: str = ""):
    """The N patches (N, p*p) side by side in sequence order, ``per_row`` to a line, each boxed and labelled.

    Each patch is labelled with its index n and its grid (row, column).

    Returns:
        ``(figure, axes)``, one Axes per line.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    patches = np.asarray(patches, dtype=float)
    lines = -(-len(patches) // per_row)
    fig, axes = plt.subplots(lines, 1, figsize=(0.62 * per_row + 0.3, 1.05 * lines + 0.4), layout="constrained",
                             squeeze=False)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    for line, ax in enumerate(axes[:, 0]):
        chunk = range(line * per_row, min((line + 1) * per_row, len(patches)))
        strip = np.full((patch, per_row * (patch + 1) - 1), np.nan)
        for slot, n in enumerate(chunk):
            x0 = slot * (patch + 1)
            strip[:, x0:x0 + patch] = patches[n].reshape(patch, patch)
            ax.add_patch(Rectangle((x0 - 0.5, -0.5), patch, patch, fill=False, edgecolor="tab:blue", lw=0.8))
        ax.imshow(strip, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([slot * (patch + 1) + (patch - 1) / 2 for slot in range(len(chunk))],
                      labels=[f"{n}\n({positions[n][0]},{positions[n][1]})" for n in chunk], fontsize=7)
        ax.set_yticks([])
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    axes[-1, 0].set_xlabel("sequence position n and (row, column) of the patch", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig, list(axes[:, 0])
