"""Chapter 3's architecture figure, drawn with matplotlib (no image files).

:func:`draw_encoder_decoder` draws an encoder-decoder Transformer as the package builds it
(:class:`~xattn_edu.nn.model.Seq2Seq`): the encoder's layers, each self-attention then a feed-forward
network; the decoder's layers, each masked self-attention, cross-attention, feed-forward; and one
arrow from the encoder's top layer (the *memory*) into the cross-attention of **every** decoder layer:
that is where the keys and values of every cross-attention come from.
"""

from __future__ import annotations

ENCODER_COLOUR, DECODER_COLOUR, CROSS_COLOUR, MEMORY_COLOUR = "#dbe8f5", "#e6f2dc", "#fde0b5", "#c7dcf0"


def _box(ax, x: float, y: float, width: float, height: float, text: str, colour: str, *, bold: bool = False):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="#555555", linewidth=0.8))
    ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=8,
            fontweight="bold" if bold else "normal")


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str = "#555555", **style) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, color=colour, linewidth=1.0,
                                 shrinkA=0, shrinkB=0, **style))


def draw_encoder_decoder(n_layers: int = 3, ax=None):
    """Draw an encoder-decoder with ``n_layers`` layers on each side.

    Args:
        n_layers: encoder layers and decoder layers (the same number on both sides here).
        ax: a matplotlib Axes to draw on; a new figure sized to the stack is made when None.

    Returns:
        The Axes. Each decoder layer's cross-attention box receives one arrow from the memory box,
        labelled "K, V"; the axes are hidden (it is a diagram).

    Raises:
        ValueError: when ``n_layers`` is not a positive integer.
    """
    import matplotlib.pyplot as plt

    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    layer_height, gap, top = 1.35, 0.35, 1.0 + n_layers * 1.7
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 1.6 + 1.05 * n_layers), layout="constrained")
    enc_x, dec_x, width = 0.0, 4.2, 2.6
    _box(ax, enc_x, 0.0, width, 0.55, "source words + positions", "#f2f2f2")
    _box(ax, dec_x, 0.0, width, 0.55, "target words so far + positions", "#f2f2f2")
    for side_x in (enc_x, dec_x):
        _arrow(ax, (side_x + width / 2, 0.55), (side_x + width / 2, 0.55 + gap))
    memory_y = 0.55 + gap + n_layers * (layer_height + gap)
    for layer in range(n_layers):
        y = 0.55 + gap + layer * (layer_height + gap)
        _box(ax, enc_x, y, width, layer_height, f"encoder layer {layer + 1}\nself-attention\n(every word sees every "
                                                 "word)\nthen feed-forward", ENCODER_COLOUR)
        parts = [("feed-forward", DECODER_COLOUR), ("cross-attention\nQ from here", CROSS_COLOUR),
                 ("masked self-attention", DECODER_COLOUR)]
        part_height = (layer_height - 0.1) / 3
        for index, (text, colour) in enumerate(parts):
            _box(ax, dec_x + 0.15, y + 0.05 + (2 - index) * part_height, width - 0.3, part_height - 0.06, text,
                 colour, bold=index == 1)
        ax.text(dec_x + width + 0.08, y + layer_height / 2, f"decoder\nlayer {layer + 1}", fontsize=8, va="center")
        cross_y = y + 0.05 + part_height * 1.5
        _arrow(ax, (enc_x + width + 0.05, memory_y + 0.25), (dec_x + 0.15, cross_y), colour="#c05000",
               connectionstyle="arc3,rad=0.12")
        ax.text(dec_x - 0.35, cross_y + 0.12, "K, V", fontsize=7, color="#c05000", ha="right")
        for side_x in (enc_x, dec_x):
            _arrow(ax, (side_x + width / 2, y + layer_height), (side_x + width / 2, y + layer_height + gap))
    _box(ax, enc_x, memory_y, width, 0.5, "memory: the encoder's top layer", MEMORY_COLOUR, bold=True)
    _box(ax, dec_x, memory_y, width, 0.5, "scores for the next word", "#f2f2f2")
    ax.set_xlim(-0.2, dec_x + width + 1.0)
    ax.set_ylim(-0.2, max(top, memory_y + 0.7))
    ax.axis("off")
    ax.set_title("every decoder layer's cross-attention reads the encoder's top layer", fontsize=10)
    return ax
