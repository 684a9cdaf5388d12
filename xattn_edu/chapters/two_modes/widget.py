"""Chapter 3 widget: step through decoding and watch cross-attention read a cached library.

A fixed, hand-set example (no training, so it is instant and the same every time): the English
source "yesterday the cat saw the mouse ." is translated into German "gestern sah die Katze die Maus ."
(the verb moves forward after the fronted adverb). Three heads have hand-set queries and keys:

* ``alignment`` looks at the source word being translated;
* ``content`` spreads over the content words (cat, saw, mouse) and the aligned word;
* ``neighbourhood`` looks at the aligned word and its two neighbours.

The weights are computed by :func:`xattn_edu.nn.attention.attention_weights` from those queries and
keys. Each source token's key is a one-hot vector, so a query is simply a row of scores.
:func:`decoding_step_view` computes what the widget shows at one decoding step (unit-tested without
a browser): the cross-attention row over the source, which cache entries exist, and how many
key/value projections the caches save. :func:`render_step_html` draws it; :func:`make_two_modes_widget`
wires a step slider and a head selector to it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.chapters.support.live import live_html
from xattn_edu.chapters.support.plots import weight_css
from xattn_edu.nn.attention import attention_weights

SOURCE = ("yesterday", "the", "cat", "saw", "the", "mouse", ".")
TARGET = ("gestern", "sah", "die", "Katze", "die", "Maus", ".")
ALIGNMENT = (0, 3, 1, 2, 4, 5, 6)  # TARGET[t] translates SOURCE[ALIGNMENT[t]]
HEADS = ("alignment", "content", "neighbourhood")
BOS = "<s>"
_CONTENT_WORDS = (2, 3, 5)  # cat, saw, mouse


def _head_scores(head: str, aligned: int, n_source: int) -> np.ndarray:
    """The hand-set query of one head at one step, written as the scores it gives each source key."""
    scores = np.zeros(n_source)
    if head == "alignment":
        scores[aligned] = 4.0
    elif head == "content":
        scores[list(_CONTENT_WORDS)] = 2.0
        scores[aligned] += 1.0
    elif head == "neighbourhood":
        for offset, score in ((-1, 1.5), (0, 3.0), (1, 1.5)):
            if 0 <= aligned + offset < n_source:
                scores[aligned + offset] = score
    else:
        raise ValueError(f"unknown head {head!r}; heads are {HEADS}")
    return scores


def cross_attention_weights() -> np.ndarray:
    """(h, Tt, Ts) cross-attention weights of the example: every head, every decoding step."""
    n_source = len(SOURCE)
    keys = torch.eye(n_source, dtype=torch.float64)  # (Ts, Dh): one-hot keys, Dh = Ts
    scale = math.sqrt(n_source)  # undo attention's 1/sqrt(Dh), so the hand-set scores are the logits
    queries = torch.tensor(
        np.array([[_head_scores(head, a, n_source) * scale for a in ALIGNMENT] for head in HEADS])
    )  # (h, Tt, Dh)
    return attention_weights(queries, keys.expand(len(HEADS), -1, -1)).numpy()  # (h, Tt, Ts)


WEIGHTS = cross_attention_weights()


@dataclass(frozen=True)
class StepView:
    """Everything the decoding widget shows at one step for one head."""

    step: int  # decoding step, 1 .. Tt
    head: str  # which head's weights are shown
    decoder_input: str  # the token fed at this step (BOS, then the previous output)
    writing: str  # the target token produced at this step
    weights: np.ndarray  # (Ts,) this head's cross-attention over the source at this step
    static_entries: tuple[str, ...]  # source tokens whose K/V sit in the static cache (all of them)
    static_projected_now: bool  # True only at step 1: the memory is projected once
    growing_entries: tuple[str, ...]  # decoder tokens whose K/V sit in the self-attention cache (grows by one)
    projections_cached: int  # positions whose K/V were projected so far, with both caches
    projections_recomputed: int  # the same without caches (prefix and memory re-projected every step)


def decoding_step_view(step: int, head: str = HEADS[0]) -> StepView:
    """What the widget shows at decoding ``step`` (1-based) for ``head``.

    Returns:
        A :class:`StepView`; ``weights`` has shape (Ts,) and sums to 1.
    """
    n_target, n_source = len(TARGET), len(SOURCE)
    if not 1 <= step <= n_target:
        raise ValueError(f"step must be in 1..{n_target}, got {step}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; heads are {HEADS}")
    inputs = (BOS, *TARGET[: step - 1])  # the decoder has been fed these, one per step
    return StepView(
        step=step,
        head=head,
        decoder_input=inputs[-1],
        writing=TARGET[step - 1],
        weights=WEIGHTS[HEADS.index(head), step - 1],
        static_entries=SOURCE,
        static_projected_now=step == 1,
        growing_entries=inputs,
        projections_cached=n_source + step,  # memory once, then one new decoder position per step
        projections_recomputed=step * n_source + step * (step + 1) // 2,  # memory and whole prefix every step
    )


def _cell(text: str, weight: float | None = None, bold: bool = False, new: bool = False) -> str:
    style = "padding:2px 6px;border:1px solid #ccc;text-align:center;font-family:monospace"
    if weight is not None:
        style += f";{weight_css(weight)}"
    if new:
        style += ";outline:2px solid #e08000"
    label = f"<b>{html.escape(text)}</b>" if bold else html.escape(text)
    return f"<td style='{style}'>{label}</td>"


def render_step_html(view: StepView) -> str:
    """HTML for a step: the attention row over the source (viridis, 0 dark to 1 yellow), then both caches."""
    source_row = "".join(_cell(token, weight=float(w), bold=w == view.weights.max())
                         for token, w in zip(view.static_entries, view.weights, strict=True))
    weight_row = "".join(_cell(f"{w:.2f}") for w in view.weights)
    static_row = "".join(_cell(token, new=view.static_projected_now) for token in view.static_entries)
    growing_row = "".join(_cell(token, new=i == len(view.growing_entries) - 1)
                          for i, token in enumerate(view.growing_entries))
    static_note = "projected now, once" if view.static_projected_now else "reused, nothing projected"
    saved = view.projections_recomputed - view.projections_cached
    return (
        "<div>"
        f"<div>step {view.step}: the decoder reads <b>{html.escape(view.decoder_input)}</b> and writes "
        f"<b>{html.escape(view.writing)}</b> &nbsp;·&nbsp; head <i>{html.escape(view.head)}</i></div>"
        "<div style='margin-top:4px'>cross-attention over the source (queries: decoder, keys/values: encoder)</div>"
        f"<table style='border-collapse:collapse'><tr>{source_row}</tr><tr>{weight_row}</tr></table>"
        f"<div style='margin-top:6px'>static cross-attention K/V ({len(view.static_entries)} entries, "
        f"{static_note})</div><table style='border-collapse:collapse'><tr>{static_row}</tr></table>"
        f"<div style='margin-top:6px'>growing self-attention K/V ({len(view.growing_entries)} entries, "
        "one added this step)</div>"
        f"<table style='border-collapse:collapse'><tr>{growing_row}</tr></table>"
        f"<div style='margin-top:6px'>K/V projections so far: {view.projections_cached} with both caches, "
        f"{view.projections_recomputed} recomputing everything ({saved} saved)</div>"
        "</div>"
    )


def make_two_modes_widget(step: int = 1, head: str = HEADS[0]):
    """A decoding-step slider, a head selector and the live HTML view.

    Returns:
        An ``ipywidgets.VBox``: the step slider (CSS class ``xattn-slider``), the head buttons and the
        ``HTML`` output (CSS class ``xattn-live-output``).
    """
    import ipywidgets as widgets

    step_slider = widgets.IntSlider(value=step, min=1, max=len(TARGET), step=1, description="step")
    head_buttons = widgets.ToggleButtons(options=list(HEADS), value=head, description="head")
    return live_html([step_slider, head_buttons], lambda s, h: render_step_html(decoding_step_view(s, h)))
