"""The architecture figure of Chapter 6: the encoder-decoder, with cross-attention where the two meet."""

from __future__ import annotations

ENCODER = ("source embedding + positions", "self-attention (every word sees every word)", "feed-forward")
DECODER = ("target embedding + positions (BOS y1 … )", "causal self-attention (no peeking ahead)",
           "cross-attention: Q from here, K and V from the memory", "feed-forward")  # fmt: skip
_BLOCK = "#dce9f5"
_CROSS = "#f7d9c4"


def _box(ax, x: float, y: float, text: str, colour: str, width: float = 3.4, height: float = 0.62) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04",
                                facecolor=colour, edgecolor="#333", linewidth=0.8))  # fmt: skip
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str = "#333") -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": colour, "linewidth": 1.1})


def draw_architecture(ax=None, n_encoder: int = 2, n_decoder: int = 2, source: str = "source words",
                      target: str = "target words written so far"):
    """Draw the encoder (left) and decoder (right) stacks and the memory feeding every cross-attention.

    Every block inside a layer is a pre-norm residual block ``x + f(norm(x))``.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8.6, 4.6), layout="constrained")
    enc_x, dec_x = 2.0, 7.0
    enc_y = [0.5, 1.75, 2.7]
    dec_y = [0.5, 1.75, 2.7, 3.65]
    for i, (y, text) in enumerate(zip(enc_y, ENCODER, strict=True)):
        _box(ax, enc_x, y, text, "#eeeeee" if i == 0 else _BLOCK)
    for i, (y, text) in enumerate(zip(dec_y, DECODER, strict=True)):
        _box(ax, dec_x, y, text, "#eeeeee" if i == 0 else _CROSS if i == 2 else _BLOCK)
    for ys, x in ((enc_y, enc_x), (dec_y, dec_x)):
        for low, high in zip(ys, ys[1:], strict=False):
            _arrow(ax, (x, low + 0.31), (x, high - 0.31))
    _box(ax, enc_x, 3.9, "norm → memory (B, Ts, D)", "#fff4c2")
    _arrow(ax, (enc_x, 3.01), (enc_x, 3.59))
    _box(ax, dec_x, 4.9, "norm → output projection → next-word probabilities", "#eeeeee")
    _arrow(ax, (dec_x, 4.01), (dec_x, 4.59))
    _arrow(ax, (enc_x + 1.7, 3.9), (dec_x - 1.7, 2.75), colour="#c0501f")
    ax.text(enc_x + 1.8, 4.0, "K, V to every\ndecoder layer", fontsize=8, color="#c0501f", va="bottom")
    for x, y0, y1, label in ((enc_x, 1.12, 3.15, f"× {n_encoder} encoder layers"),
                             (dec_x, 1.12, 4.15, f"× {n_decoder} decoder layers")):  # fmt: skip
        ax.add_patch(plt.Rectangle((x - 1.95, y0), 3.9, y1 - y0, fill=False, linestyle="--", edgecolor="#777"))
        ax.text(x - 1.9, y0 + 0.03, label, fontsize=7.5, color="#555", va="bottom")
    ax.text(4.5, 5.3, "inside a layer, every block is a pre-norm residual block: x + f(norm(x))", ha="center",
            fontsize=8, color="#555")
    ax.text(enc_x, -0.15, source, ha="center", fontsize=8)
    ax.text(dec_x, -0.15, target, ha="center", fontsize=8)
    ax.set_xlim(0, 9.2)
    ax.set_ylim(-0.4, 5.5)
    ax.axis("off")
    ax.set_title("The translator: the encoder reads once, every decoder layer looks back through cross-attention",
                 fontsize=10)  # fmt: skip
    return ax
