"""The architecture figure of Chapter 5: one cross-attention, and every place the chapter's details act on it."""

from __future__ import annotations

BOXES = {  # name: (x, y, width, height, text)
    "source": (0.02, 0.04, 0.24, 0.10, r"source tokens $x_0 \dots x_{T_s-1}$"),
    "encoder": (0.02, 0.26, 0.24, 0.14, "encoder self-attention\nbidirectional or causal ⑤"),
    "target": (0.72, 0.04, 0.26, 0.10, r"target so far: BOS, $y_0 \dots y_{t-1}$"),
    "decoder": (0.72, 0.26, 0.26, 0.14, "decoder self-attention\n(causal)"),
    "wk": (0.04, 0.55, 0.09, 0.09, "W_K ⑦"),
    "wv": (0.15, 0.55, 0.09, 0.09, "W_V ⑦"),
    "wq": (0.79, 0.55, 0.12, 0.09, "W_Q"),
    "scores": (0.36, 0.70, 0.28, 0.12, r"scores $q_t \cdot k_j / \sqrt{d}$" + "\n+ bias b(j − t) ③   mask: wait-k ⑥"),
    "output": (0.36, 0.88, 0.28, 0.09, "softmax, weighted sum of the values"),
}
ARROWS = [  # (from (x, y), to (x, y))
    ((0.14, 0.14), (0.14, 0.26)), ((0.085, 0.40), (0.085, 0.55)), ((0.195, 0.40), (0.195, 0.55)),
    ((0.85, 0.14), (0.85, 0.26)), ((0.85, 0.40), (0.85, 0.55)),
    ((0.085, 0.64), (0.42, 0.70)), ((0.85, 0.64), (0.58, 0.70)), ((0.5, 0.82), (0.5, 0.88)),
    ((0.195, 0.64), (0.36, 0.925)),
]
NOTES = [  # (x, y, text, horizontal alignment): where each detail enters
    (0.215, 0.47, "② + position vector of j (keys)", "left"),
    (0.835, 0.47, "① + position vector of t (queries)", "right"),
    (0.5, 0.62, "④ rotary: turn $q_t$ by t and $k_j$ by j", "center"),
]
LEGEND = ("Part 1, where position goes: ① queries, ② keys, ③ relative bias, ④ rotary.  Part 2, leakage: "
          "⑤ encoder direction, ⑥ wait-k mask.  Part 3: ⑦ W_K and W_V tied across attention modules.")


def architecture_figure():
    """Draw the cross-attention of an encoder-decoder with the chapter's seven details numbered on it.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(9, 5.2), layout="constrained")
    for name, (x, y, w, h, text) in BOXES.items():
        colour = {"source": "#dbe9f6", "encoder": "#dbe9f6", "wk": "#dbe9f6", "wv": "#dbe9f6",
                  "scores": "#e8f5e9", "output": "#e8f5e9"}.get(name, "#fde9d9")
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", facecolor=colour, edgecolor="#555"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)
    for start, end in ARROWS:
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#333", "lw": 1})
    for x, y, text, align in NOTES:
        ax.text(x, y, text, fontsize=8, color="#8e2a2a", ha=align)
    ax.text(0.5, -0.04, LEGEND, ha="center", va="top", fontsize=7.5, wrap=True)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.12, 1)
    ax.axis("off")
    ax.set_title("one cross-attention: keys and values from the encoder (blue), queries from the decoder (orange)",
                 fontsize=10)
    return fig
