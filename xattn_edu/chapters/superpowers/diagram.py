"""The figure of the four wirings Chapter 4 compares: where cross-attention reads, and where the residual stream runs.

:func:`draw_wirings` draws one small panel per wiring (``every``, ``one``, ``none``, ``mixture``): encoder
layers as boxes on the left, decoder layers on the right, the residual stream as a grey band through each
stack, and cross-attention as orange arrows. Only matplotlib; nothing is measured here.
"""

from __future__ import annotations

from xattn_edu.chapters.superpowers.stacks import CROSS

TITLES = {
    "every": "every decoder layer reads\nthe TOP encoder layer",
    "one": "only the first decoder layer\nreads the top encoder layer",
    "none": "no cross-attention: one stack,\nsource as a prefix",
    "mixture": "every decoder layer reads a\nlearned mix of ALL encoder layers",
}
_ENC, _DEC = 4, 3  # layers drawn per side (the experiments use more)
_BOX_W, _BOX_H, _GAP = 1.6, 0.55, 0.35


def _box(ax, x: float, y: float, label: str, colour: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), _BOX_W, _BOX_H, boxstyle="round,pad=0.03", facecolor=colour,
                                edgecolor="#444", lw=0.8, zorder=3))
    ax.text(x + _BOX_W / 2, y + _BOX_H / 2, label, ha="center", va="center", fontsize=7, zorder=4)


def _stack(ax, x: float, labels: list[str], colour: str, start: float = 0.0) -> list[float]:
    """Boxes bottom-up from height ``start`` with the residual band behind them; returns each box's y."""
    heights = [start + i * (_BOX_H + _GAP) for i in range(len(labels))]
    ax.plot([x + _BOX_W / 2] * 2, [start - 0.3, heights[-1] + _BOX_H + 0.3], color="#ccc", lw=6, zorder=1,
            solid_capstyle="butt")
    for y, label in zip(heights, labels, strict=True):
        _box(ax, x, y, label, colour)
    return heights


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str = "#d9480f") -> None:
    ax.annotate("", xy=end, xytext=start, zorder=5,
                arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.3, "connectionstyle": "arc3,rad=0.12"})


def _panel(ax, cross: str) -> None:
    enc_labels = [f"enc {i + 1}" for i in range(_ENC - 1)] + ["enc L"]
    dec_labels = [f"dec {i + 1}" for i in range(_DEC)]
    if cross == "none":
        labels = [f"layer {i + 1}" for i in range(_ENC - 1)] + ["layer L"] + [f"layer L+{i + 1}" for i in range(_DEC)]
        _stack(ax, 1.4, labels, "#e7f0fa")
        ax.text(2.2, -0.75, "input: source, SEP, target", ha="center", fontsize=7)
        return
    enc = _stack(ax, 0.0, enc_labels, "#e7f0fa")
    dec = _stack(ax, 2.9, dec_labels, "#fdf0e6", start=1.2)
    ax.text(0.8, -0.75, "source", ha="center", fontsize=7)
    ax.text(3.7, 0.45, "target", ha="center", fontsize=7)
    readers = dec if cross != "one" else dec[:1]
    sources = enc if cross == "mixture" else enc[-1:]
    for yd in readers:
        for ye in sources:
            _arrow(ax, (_BOX_W, ye + _BOX_H / 2), (2.9, yd + _BOX_H / 2))


def draw_wirings(crosses=CROSS, axes=None):
    """One panel per wiring in ``crosses``; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(crosses), figsize=(2.6 * len(crosses), 3.4), layout="constrained")
    for ax, cross in zip(axes, crosses, strict=True):
        _panel(ax, cross)
        ax.set_xlim(-0.3, 4.8)
        ax.set_ylim(-1.0, 6.4)
        ax.set_axis_off()
        ax.set_title(f"{cross}: {TITLES[cross]}", fontsize=8)
    figure = axes[0].figure
    figure.suptitle("Grey band: the residual stream through each stack. Orange: cross-attention.", fontsize=9)
    return figure
