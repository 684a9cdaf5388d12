"""Chapter 3 widget: step through decoding and watch cross-attention read the cached source.

The widget shows a real translator's cross-attention (the notebook passes the weights of the model it
trained, :mod:`xattn_edu.chapters.two_modes.translator`) one decoding step at a time, beside the two
caches that decoding keeps: the static cache of the source's keys and values (complete from the first
step, projected once) and the growing cache of the decoder's own keys and values (one entry more per
step).

:func:`decoding_step_view` computes what the widget shows at one step (unit-tested without a
browser); :func:`render_step_html` draws it; :func:`make_two_modes_widget` wires a step slider and a
head selector to it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.support.live import live_html
from xattn_edu.chapters.support.plots import weight_css

BOS = "<s>"


@dataclass(frozen=True)
class DecodingExample:
    """One translated sentence and its cross-attention, as the widget steps through it."""

    source: tuple[str, ...]  # the Ts source tokens the memory holds (keys and values)
    target: tuple[str, ...]  # the Tt target tokens, one written per step
    weights: np.ndarray  # (h, Tt, Ts) cross-attention of every head; row t is the step writing target[t]
    heads: tuple[str, ...]  # a name per head, e.g. "head 1"

    def __post_init__(self):
        shape = (len(self.heads), len(self.target), len(self.source))
        if np.shape(self.weights) != shape:
            raise ValueError(f"weights must be (h, Tt, Ts) = {shape}, got {np.shape(self.weights)}")


def example_from_maps(source: Sequence[str], target: Sequence[str], weights) -> DecodingExample:
    """A :class:`DecodingExample` from one layer's (h, Tt, Ts) weights (a tensor or an array), heads named 1..h."""
    weights = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=float)
    return DecodingExample(tuple(source), tuple(target), weights,
                           tuple(f"head {index + 1}" for index in range(weights.shape[0])))


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


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


def decoding_step_view(example: DecodingExample, step: int, head: str) -> StepView:
    """What the widget shows at decoding ``step`` (1-based) for ``head`` of ``example``.

    Returns:
        A :class:`StepView`; ``weights`` has shape (Ts,).

    Raises:
        ValueError: a step outside 1..Tt or an unknown head.
    """
    n_target, n_source = len(example.target), len(example.source)
    if not 1 <= step <= n_target:
        raise ValueError(f"step must be in 1..{n_target}, got {step}")
    if head not in example.heads:
        raise ValueError(f"unknown head {head!r}; heads are {example.heads}")
    inputs = (BOS, *example.target[: step - 1])  # the decoder has been fed these, one per step
    return StepView(
        step=step,
        head=head,
        decoder_input=inputs[-1],
        writing=example.target[step - 1],
        weights=example.weights[example.heads.index(head), step - 1],
        static_entries=example.source,
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
        f"<b>{html.escape(view.writing)}</b> &nbsp;·&nbsp; <i>{html.escape(view.head)}</i></div>"
        "<div style='margin-top:4px'>cross-attention over the source (queries: decoder, keys/values: encoder)</div>"
        f"<table style='border-collapse:collapse'><tr>{source_row}</tr><tr>{weight_row}</tr></table>"
        f"<div style='margin-top:6px'>static cross-attention K/V ({_entries(len(view.static_entries))}, "
        f"{static_note})</div>"
        f"<table style='border-collapse:collapse'><tr>{static_row}</tr></table>"
        f"<div style='margin-top:6px'>growing self-attention K/V ({_entries(len(view.growing_entries))}, "
        "one added this step)</div>"
        f"<table style='border-collapse:collapse'><tr>{growing_row}</tr></table>"
        f"<div style='margin-top:6px'>K/V projections so far: {view.projections_cached} with both caches, "
        f"{view.projections_recomputed} recomputing everything ({saved} saved)</div>"
        "</div>"
    )


def make_two_modes_widget(example: DecodingExample, step: int = 1):
    """A decoding-step slider, a head selector and the live HTML view of ``example``.

    Returns:
        An ``ipywidgets.VBox``: the step slider (CSS class ``xattn-slider``), the head buttons and the
        ``HTML`` output (CSS class ``xattn-live-output``).
    """
    import ipywidgets as widgets

    step_slider = widgets.IntSlider(value=step, min=1, max=len(example.target), step=1, description="step")
    head_buttons = widgets.ToggleButtons(options=list(example.heads), value=example.heads[0], description="head")
    return live_html([step_slider, head_buttons],
                     lambda s, h: render_step_html(decoding_step_view(example, s, h)))
