"""Chapter 5's two live controls, each a pure view function (unit-tested without a browser) and its HTML.

* :func:`placement_view` / :func:`make_placement_widget`: a dropdown of position placements showing a
  trained model's cross-attention on a source with repeated tokens, head by head;
* :func:`leak_view` / :func:`make_leakage_widget`: a decoding-step slider showing, for each encoder and
  cross-attention wiring, how much step t's output depends on every source position, the positions it
  has not honestly read yet marked as the future.
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from xattn_edu.chapters.details.leakage import LeakProfile
from xattn_edu.chapters.details.model import DetailsModel
from xattn_edu.chapters.details.positions import PROBE, copy_gap, cross_weights, symbol_batch
from xattn_edu.chapters.details.training import predictions
from xattn_edu.chapters.support.live import live_html
from xattn_edu.chapters.support.plots import weight_css

CELL = "padding:2px 5px;text-align:center;font-family:monospace;font-size:12px"


@dataclass(frozen=True)
class PlacementView:
    """What the placement widget shows for one model on one source."""

    placement: str  # where the model's cross-attention gets position from
    source: tuple[str, ...]  # Ts source tokens, e.g. ("A", "B", "C", "A", ...)
    predicted: tuple[str, ...]  # Tt tokens the model writes (teacher forcing)
    weights: np.ndarray  # (h, Tt, Ts) cross-attention of the last decoder layer
    largest_gap: float  # largest |w[a] - w[b]| between two copies, any step, head or layer


def placement_view(models: Mapping[str, DetailsModel], placement: str, text: str = PROBE) -> PlacementView:
    """The last cross-attention of ``models[placement]`` on the copy example ``text`` (letters A, B, ...)."""
    model, batch = models[placement], symbol_batch(text)
    letters = string.ascii_uppercase
    predicted = tuple(letters[int(i) - 2] if int(i) >= 2 else "?" for i in predictions(model, batch)[0])
    return PlacementView(placement, tuple(text), predicted, cross_weights(model, batch)[-1][0].numpy(),
                         copy_gap(model, batch).largest)


def _weight_table(weights: np.ndarray, rows: list[str], columns: list[str], title: str) -> str:
    head = "".join(f"<th style='{CELL}'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th style='{CELL};text-align:right'>{html.escape(row)}</th>"
        + "".join(f"<td style='{CELL};{weight_css(w)}'>{w:.2f}</td>" for w in line) + "</tr>"
        for row, line in zip(rows, weights, strict=True))
    return (f"<div style='display:inline-block;margin-right:16px;vertical-align:top'><div><b>{html.escape(title)}"
            f"</b></div><table style='border-collapse:collapse'><tr><th></th>{head}</tr>{body}</table></div>")


def render_placement_html(view: PlacementView) -> str:
    """HTML: one weight table per head (rows: steps and what they write, columns: source tokens), and the gap."""
    columns = [f"{token}{j}" for j, token in enumerate(view.source)]
    rows = [f"step {t} → {token}" for t, token in enumerate(view.predicted)]
    tables = "".join(_weight_table(weights, rows, columns, f"head {h}") for h, weights in enumerate(view.weights))
    right = sum(p == s for p, s in zip(view.predicted, view.source, strict=True))
    verdict = ("identical: this model cannot tell the copies apart" if view.largest_gap == 0.0
               else "the copies are told apart")
    return (f"<div><div>placement <b>{html.escape(view.placement)}</b>: copies {right} of {len(view.source)} "
            f"tokens right; largest weight difference between two copies of a token: "
            f"<b>{view.largest_gap:.3g}</b> ({verdict})</div>{tables}</div>")


def make_placement_widget(models: Mapping[str, DetailsModel], text: str = PROBE):
    """A dropdown of placements above the cross-attention maps of the trained model for each.

    Returns:
        An ``ipywidgets.VBox``: the dropdown, then the ``HTML`` output (class ``xattn-live-output``).
    """
    import ipywidgets as widgets

    choice = widgets.Dropdown(options=list(models), value=next(iter(models)), description="position on")
    return live_html([choice], lambda placement: render_placement_html(placement_view(models, placement, text)))


@dataclass(frozen=True)
class LeakView:
    """What the leakage widget shows at one decoding step."""

    step: int  # t: this step must output x_{t+1}
    visible: int  # source positions 0 .. visible-1 have honestly been read at step t
    influence: dict[str, np.ndarray]  # wiring -> (Ts,) share of step t's gradient from each source position
    future_share: dict[str, float]  # wiring -> share from positions >= visible


def leak_view(profiles: Mapping[str, LeakProfile], step: int, k: int = 1) -> LeakView:
    """Row ``step`` of every wiring's leak profile, and the share of it that comes from the future."""
    visible = step + k
    influence = {label: profile.influence[step] for label, profile in profiles.items()}
    return LeakView(step, visible, influence, {label: float(row[visible:].sum()) for label, row in influence.items()})


def render_leak_html(view: LeakView) -> str:
    """HTML: one row per wiring, one cell per source position (the future shaded by a border), and the share."""
    positions = len(next(iter(view.influence.values())))
    header = "".join(
        f"<th style='{CELL};{'border-bottom:3px solid #c0392b' if j >= view.visible else ''}'>x{j}</th>"
        for j in range(positions))
    body = "".join(
        f"<tr><th style='{CELL};text-align:right'>{html.escape(label)}</th>"
        + "".join(f"<td style='{CELL};{weight_css(w)}'>{w:.2f}</td>" for w in row)
        + f"<td style='{CELL}'><b>{view.future_share[label]:.2f}</b></td></tr>"
        for label, row in view.influence.items())
    return (f"<div><div>step {view.step} must write x{view.step + 1}; a streaming system has read "
            f"x0..x{view.visible - 1} (underlined in red: the future). Cells: share of the step's gradient from "
            f"each source position.</div><table style='border-collapse:collapse'><tr><th></th>{header}"
            f"<th style='{CELL}'>future share</th></tr>{body}</table></div>")


def make_leakage_widget(profiles: Mapping[str, LeakProfile], k: int = 1):
    """A decoding-step slider above the leak table of every wiring.

    Returns:
        An ``ipywidgets.VBox``: the slider (class ``xattn-slider``), then the output (``xattn-live-output``).
    """
    import ipywidgets as widgets

    steps = len(next(iter(profiles.values())).influence)
    slider = widgets.IntSlider(value=0, min=0, max=steps - 1, description="step t")
    return live_html([slider], lambda step: render_leak_html(leak_view(profiles, step, k)))
