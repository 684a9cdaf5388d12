"""The chapter's two live views of cross-attention.

* :func:`make_checkpoint_widget`: a checkpoint slider (with layer and head selectors) that replays how
  one sentence's cross-attention map sharpened during training, with its entropy and, when gold
  links exist, its AER; gold links are outlined.
* :func:`make_translation_widget`: type or pick a source sentence; its translation and the
  cross-attention map of the chosen layer and head.

The views are pure functions (:func:`checkpoint_view`, :func:`translation_view`) rendered to HTML
(:func:`render_map_html`), so they are tested without a browser. Cells are coloured on the heatmaps'
fixed 0–1 scale.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.spotlight.reference import attention_entropy
from xattn_edu.chapters.support.live import live_html
from xattn_edu.chapters.support.plots import weight_css
from xattn_edu.chapters.translation.attention_maps import AttentionHistory, writes
from xattn_edu.chapters.translation.decoding import translate_text
from xattn_edu.chapters.translation.reference import alignment_error_rate

MEAN = -1
"""The head selector's value for "mean of the heads"."""


@dataclass(frozen=True)
class MapView:
    """One cross-attention map as the widgets show it."""

    title: str  # what the map is (step, layer, head)
    source: list[str]  # column labels: the source words
    target: list[str]  # row labels: the target words written at each step
    weights: np.ndarray  # (m, S) attention of each target row over the source words
    gold: frozenset[tuple[int, int]]  # gold (source, target) links to outline; empty when there are none
    notes: tuple[str, ...]  # lines under the map (entropy, AER, the translation, unknown words)


def _select(maps: np.ndarray, layer: int, head: int) -> np.ndarray:
    """(L, h, m, S) → (m, S): one head, or the mean of the layer's heads when ``head == MEAN``."""
    return maps[layer].mean(axis=0) if head == MEAN else maps[layer, head]


def _who(layer: int, head: int) -> str:
    return f"layer {layer + 1}, {'mean of the heads' if head == MEAN else f'head {head + 1}'}"


def checkpoint_view(history: AttentionHistory, index: int, layer: int, head: int, sentence: int = 0) -> MapView:
    """The map of ``sentence`` at checkpoint ``index`` of ``history``, for one layer and head (or their mean)."""
    aset = history.aset
    weights = _select(writes([history.maps[index][sentence]])[0], layer, head)
    gold = frozenset(map(tuple, aset.gold[sentence])) if aset.gold is not None else frozenset()
    notes = [f"mean entropy of the rows: {float(attention_entropy(weights).mean()):.3f} nats "
             f"(uniform over the source: {np.log(weights.shape[1]):.3f})"]
    if gold:
        notes.append(f"AER of this map against the gold links (outlined): "
                     f"{alignment_error_rate([weights], [sorted(gold)]):.3f}")
    title = f"step {history.steps[index]} · {_who(layer, head)}"
    return MapView(title, aset.source_tokens[sentence], aset.target_tokens[sentence], weights, gold, tuple(notes))


def _cell(text: str, style: str = "") -> str:
    base = "padding:2px 5px;border:1px solid #ddd;text-align:center;font-family:monospace;font-size:12px"
    return f"<td style='{base};{style}'>{html.escape(text)}</td>"


def render_map_html(view: MapView) -> str:
    """The map as an HTML table: source words across, target words down, each cell coloured by its weight."""
    header = "<tr>" + _cell("") + "".join(_cell(word, "font-weight:bold") for word in view.source) + "</tr>"
    body = []
    for t, (word, row) in enumerate(zip(view.target, view.weights, strict=True)):
        cells = "".join(
            _cell(f"{w:.2f}", weight_css(w) + (";outline:2px solid #e0451f;outline-offset:-2px"
                                               if (s, t) in view.gold else ""))
            for s, w in enumerate(row))  # fmt: skip
        body.append(f"<tr>{_cell(word, 'font-weight:bold;text-align:right')}{cells}</tr>")
    notes = "".join(f"<div>{html.escape(note)}</div>" for note in view.notes)
    return (f"<div><div style='margin-bottom:4px'><b>{html.escape(view.title)}</b></div>"
            f"<table style='border-collapse:collapse'>{header}{''.join(body)}</table>"
            f"<div style='margin-top:4px'>{notes}</div></div>")  # fmt: skip


def _layer_head_controls(n_layers: int, n_heads: int, layer: int, head: int):
    import ipywidgets as widgets

    layers = widgets.Dropdown(options=[(f"layer {i + 1}", i) for i in range(n_layers)], value=layer,
                              description="layer")  # fmt: skip
    heads = widgets.Dropdown(options=[("mean of the heads", MEAN)] + [(f"head {j + 1}", j) for j in range(n_heads)],
                             value=head, description="head")  # fmt: skip
    return layers, heads


def make_checkpoint_widget(history: AttentionHistory, sentence: int = 0, layer: int | None = None,
                           head: int = MEAN):  # fmt: skip
    """A checkpoint slider with layer and head selectors over the live map of one sentence.

    Returns:
        An ``ipywidgets.VBox``: the slider (CSS class ``xattn-slider``), the two selectors and the
        HTML map (``xattn-live-output``).
    """
    import ipywidgets as widgets

    n_layers, n_heads = history.maps[0][sentence].shape[:2]
    slider = widgets.IntSlider(value=len(history.steps) - 1, min=0, max=len(history.steps) - 1, step=1,
                               description="checkpoint")  # fmt: skip
    layers, heads = _layer_head_controls(n_layers, n_heads, n_layers - 1 if layer is None else layer, head)
    return live_html([slider, layers, heads],
                     lambda i, l, h: render_map_html(checkpoint_view(history, i, l, h, sentence)))  # noqa: E741


def translation_view(translate, text: str, layer: int, head: int) -> MapView:
    """The translation of ``text`` and its cross-attention map (one layer and head, or their mean).

    ``translate(text)`` returns what :func:`~xattn_edu.chapters.translation.decoding.translate_text` does.
    An empty text or one the model cannot take gives a view with no rows and a note saying why.
    """
    if not text.strip():
        return MapView("type a sentence", [], [], np.zeros((0, 0)), frozenset(), ("nothing to translate",))
    try:
        source, target, attention, unknown, written = translate(text)
    except ValueError as error:
        return MapView("cannot translate", [], [], np.zeros((0, 0)), frozenset(), (str(error),))
    notes = [f"translation: {written}"]
    if unknown:
        notes.append(f"words the model never saw (read as <unk>): {', '.join(unknown)}")
    weights = _select(attention, layer, head) if target else np.zeros((0, len(source)))
    return MapView(f"cross-attention · {_who(layer, head)}", source, target, weights, frozenset(), tuple(notes))


def make_translation_widget(model, src_tok, tgt_tok, examples: Sequence[str], layer: int | None = None,
                            head: int = MEAN):  # fmt: skip
    """A text box (type, or pick one of ``examples``) with layer and head selectors over the live map."""
    import ipywidgets as widgets

    translate = functools.lru_cache(maxsize=64)(lambda text: translate_text(model, src_tok, tgt_tok, text))
    text = widgets.Combobox(value=examples[0], options=list(examples), ensure_option=False, continuous_update=False,
                            description="source", layout=widgets.Layout(width="90%"))  # fmt: skip
    n_layers, n_heads = model.cfg.n_decoder_layers, model.cfg.n_heads
    layers, heads = _layer_head_controls(n_layers, n_heads, n_layers - 1 if layer is None else layer, head)
    return live_html([text, layers, heads], lambda t, l, h: render_map_html(translation_view(translate, t, l, h)))  # noqa: E741
