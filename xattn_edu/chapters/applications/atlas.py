"""A map of cross-attention in systems students know: who asks (queries), who is read (keys and values).

:data:`USES` lists each system with where its queries and its keys/values come from and the piece of
this course that does the same thing; :func:`markdown_table` prints it and :func:`draw_map` draws it.
The descriptions follow the cited papers; see each entry's ``sources``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Use:
    """One place where cross-attention appears."""

    system: str  # the kind of system
    examples: str  # well-known models of that kind
    queries: str  # where the queries come from (who asks)
    keys_values: str  # where the keys and values come from (what is read)
    built_here: str  # the piece of this course that does the same
    sources: str  # the papers the description follows


USES: tuple[Use, ...] = (
    Use("Encoder-decoder translation", "the original Transformer; Marian, T5",
        "decoder: the target words written so far", "encoder output: one vector per source token",
        "Ch. 3 DecoderLayer, Ch. 6 translator", "Vaswani et al. 2017"),
    Use("Speech recognition decoder", "Whisper",
        "text decoder: the transcript written so far", "audio encoder output: one vector per slice of the "
        "spectrogram", "Ch. 7 captioner (audio frames in place of image patches)", "Radford et al. 2022"),
    Use("Text-to-image conditioning", "Stable Diffusion (latent diffusion U-Net)",
        "image side: every position of the U-Net's feature map", "text encoder output: one vector per prompt "
        "token", "Ch. 7 segmenter, patch → prompt step", "Rombach et al. 2022"),
    Use("Retrieval-augmented reader", "Fusion-in-Decoder, RETRO",
        "generator decoder: the answer written so far", "encoder output of the retrieved passages",
        "Ch. 1 lookup; Ch. 3 static K/V cache (passages encoded once)", "Izacard & Grave 2021; Borgeaud et al. 2022"),
    Use("Multimodal language model", "Flamingo, Llama 3.2 Vision",
        "language model: the text tokens", "vision encoder output (Flamingo: a few resampled latents)",
        "Ch. 7 captioner + latent block", "Alayrac et al. 2022; Meta 2024"),
    Use("Latent bottleneck", "Perceiver, Perceiver IO",
        "a fixed set of learned latent vectors", "the input array: pixels, audio samples, tokens",
        "Ch. 7 latent_cross_attention", "Jaegle et al. 2021"),
    Use("Promptable segmentation", "Segment Anything (SAM)",
        "prompt and mask tokens (then, the other way, image patches)",
        "image patch embeddings (then, the other way, the tokens)", "Ch. 7 prompt_mask_logits, segmenter",
        "Kirillov et al. 2023"),
)
"""The systems of the map, in the order the chapter discusses them."""


def markdown_table(uses: tuple[Use, ...] = USES) -> str:
    """The map as a Markdown table: system, examples, queries, keys/values, built here, sources."""
    lines = ["| system | examples | queries from | keys and values from | built in this course | sources |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {u.system} | {u.examples} | {u.queries} | {u.keys_values} | {u.built_here} | {u.sources} |"
              for u in uses]
    return "\n".join(lines)


def _box(ax, x: float, y: float, width: float, text: str, colour: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y - 0.36), width, 0.72, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="#555555", linewidth=0.8))
    ax.text(x + width / 2, y, textwrap.fill(text, 34), ha="center", va="center", fontsize=7)


ARCHITECTURES = (
    ("Captioner", "words written so far\n(T queries)", "image patches\n(N keys and values)",
     "decoder cross-attention\nT x N weights, once per layer"),
    ("Latent bottleneck", "M learned latents\n(M queries, M << N)", "long input\n(N keys and values)",
     "M x N weights;\nthen M x M among the latents"),
    ("Promptable segmenter", "mask + prompt tokens\n(a few queries)", "image patches\n(N keys and values)",
     "tokens → patches, then\npatches → tokens (two-way)"),
)
"""The three models of this chapter: (name, query source, key/value source, what the attention computes)."""


def draw_architectures(axes=None):
    """The three models side by side: who asks (top box), what is read (bottom box), the cross-attention between.

    Returns:
        The list of three matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(10, 3.0), layout="constrained")
    for ax, (name, queries, memory, how) in zip(axes, ARCHITECTURES, strict=True):
        _box(ax, 0.5, 2.4, 3.0, queries, "#cfe3f6")
        _box(ax, 0.5, 0.4, 3.0, memory, "#fbe0c3")
        ax.annotate("", xy=(1.2, 2.0), xytext=(1.2, 0.8), arrowprops={"arrowstyle": "->", "lw": 1.4})
        if name == "Promptable segmenter":
            ax.annotate("", xy=(1.6, 0.8), xytext=(1.6, 2.0), arrowprops={"arrowstyle": "->", "lw": 1.0, "ls": "--"})
        ax.text(1.9, 1.4, how, ha="left", va="center", fontsize=7)
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, 4)
        ax.set_ylim(-0.1, 3.0)
        ax.axis("off")
    axes[0].figure.suptitle("Queries (blue) read keys and values (orange); arrows show where values flow",
                            fontsize=10)
    return list(axes)


def draw_map(uses: tuple[Use, ...] = USES, ax=None):
    """One row per system: the query source (left) reads the key/value source (right); arrows point where values go.

    The row's system name is on the far left; under each arrow, the piece of this course that does it.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.95 * len(uses) + 0.6), layout="constrained")
    for row, use in enumerate(uses):
        y = len(uses) - 1 - row
        ax.text(0.0, y, textwrap.fill(use.system, 18), ha="left", va="center", fontsize=8, fontweight="bold")
        _box(ax, 2.0, y, 3.0, use.queries, "#cfe3f6")
        _box(ax, 7.4, y, 3.0, use.keys_values, "#fbe0c3")
        ax.annotate("", xy=(5.05, y), xytext=(7.35, y), arrowprops={"arrowstyle": "->", "lw": 1.2})
        ax.text(6.2, y + 0.12, "values flow to the queries", ha="center", va="bottom", fontsize=7, style="italic")
        ax.text(6.2, y - 0.1, textwrap.fill(use.built_here, 24), ha="center", va="top", fontsize=6, color="#444444")
    ax.text(3.5, len(uses) - 0.35, "queries (who asks)", ha="center", va="bottom", fontsize=9)
    ax.text(8.9, len(uses) - 0.35, "keys and values (what is read)", ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-0.1, 10.5)
    ax.set_ylim(-0.6, len(uses) + 0.1)
    ax.axis("off")
    ax.set_title("Cross-attention across systems: the same lookup, different queries and memories", fontsize=10)
    return ax
