"""Chapter 7 widgets: move a prompt point over a scene; pick a caption word and see where it looked.

* :func:`prompt_view` runs the trained segmenter on one scene with a point prompt at (x, y) and
  returns what the widget shows (the mask, where the mask and point tokens look, the IoU with each
  shape); :func:`render_prompt_html` draws it (inline PNGs and text); :func:`make_prompt_widget` wires
  an x slider (the first slider) and a y slider to it.
* :func:`caption_view` captions one test image and returns the attention of one written word over the
  patches in one decoder layer; :func:`render_caption_html` and :func:`make_caption_widget` (three
  drop-downs: image, word, layer) show it.

The view functions are plain computations, unit-tested without a browser.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.chapters.applications import digits, shapes
from xattn_edu.chapters.applications.captioner import PatchCaptioner, greedy_caption, word_attention
from xattn_edu.chapters.applications.overlay import attention_overlay, img_tag, mask_overlay
from xattn_edu.chapters.applications.promptable import PromptableSegmenter, iou
from xattn_edu.chapters.applications.reference import peak_to_digit
from xattn_edu.chapters.support.live import live_html


@dataclass(frozen=True)
class PromptView:
    """What the prompt widget shows for one click."""

    point: tuple[float, float]  # (x, y) in pixels
    image: np.ndarray  # (H, W) the scene
    probability: np.ndarray  # (H, W) predicted mask probability (the first mask)
    mask_attention: np.ndarray  # (rows, cols) the mask token's last attention over the patches (mean of heads)
    point_attention: np.ndarray  # (rows, cols) the point token's last attention over the patches
    under_point: tuple[str, ...]  # the shapes covering the clicked pixel
    shape_names: tuple[str, ...]  # every shape of the scene
    shape_iou: tuple[float, ...]  # IoU of the predicted mask with each shape


@torch.no_grad()
def prompt_view(model: PromptableSegmenter, scenes: shapes.SceneBatch, index: int, x: float, y: float) -> PromptView:
    """Segment scene ``index`` of ``scenes`` from a click at pixel (x, y)."""
    xy, kind = shapes.point_prompt(x, y)
    image = scenes.images[index:index + 1]
    result = model(image, torch.tensor([xy], dtype=torch.float32), torch.tensor([kind]))
    probability = torch.sigmoid(result.logits[0, 0])
    attention = result.attention[0].mean(dim=0)  # (T, N): mask tokens, then the two prompt tokens
    rows = model.rows
    names = tuple(scenes.kinds[index])
    size = image.shape[-1]
    covered = scenes.shapes[index, :, min(int(y), size - 1), min(int(x), size - 1)]  # (S,)
    own = scenes.shapes[index, : len(names)]
    return PromptView(
        point=(float(x), float(y)),
        image=image[0].numpy(),
        probability=probability.numpy(),
        mask_attention=attention[0].reshape(rows, rows).numpy(),
        point_attention=attention[model.config.n_masks].reshape(rows, rows).numpy(),
        under_point=tuple(name for name, hit in zip(names, covered.tolist(), strict=False) if hit),
        shape_names=names,
        shape_iou=tuple(float(v) for v in iou(probability[None] > 0.5, own)),
    )


def render_prompt_html(view: PromptView, patch: int) -> str:
    """Three inline images (mask over the scene, the mask token's and the point token's attention) and a summary."""
    under = ", ".join(view.under_point) or "background"
    scores = " · ".join(f"{name}: {value:.2f}" for name, value in zip(view.shape_names, view.shape_iou, strict=True))
    row, column = np.unravel_index(int(np.argmax(view.mask_attention)), view.mask_attention.shape)
    images = [img_tag(mask_overlay(view.image, view.probability, view.point), title="predicted mask"),
              img_tag(attention_overlay(view.image, view.mask_attention, patch), title="mask token attention"),
              img_tag(attention_overlay(view.image, view.point_attention, patch), title="point token attention")]
    return (
        "<div>"
        f"<div>click at (x, y) = ({view.point[0]:.1f}, {view.point[1]:.1f}) on <b>{html.escape(under)}</b>; "
        f"predicted mask: {int((view.probability > 0.5).sum())} pixels</div>"
        f"<div>IoU of the mask with each shape: {html.escape(scores)}</div>"
        f"<div>{''.join(images)}</div>"
        "<div style='font-size:90%'>left: predicted mask (red) and the click (yellow); middle: where the mask "
        f"token looks (peak at patch row {row}, column {column}); right: where the point token looks "
        "(colours: attention weight, 0 dark to 1 yellow)</div>"
        "</div>"
    )


def make_prompt_widget(model: PromptableSegmenter, scenes: shapes.SceneBatch, index: int = 0,
                       x: float = 8.5, y: float = 8.5):
    """An x slider (first), a y slider and the live view of :func:`render_prompt_html` for scene ``index``.

    The sliders move the click from pixel centre to pixel centre (0.5, 1.5, ...) and redraw on release.

    Returns:
        An ``ipywidgets.VBox`` (x slider, y slider, HTML output; see ``live_html`` for the CSS classes).
    """
    import ipywidgets as widgets

    size = model.config.scene.size
    # Each redraw runs the model; redrawing on release only keeps a drag from queueing stale redraws.
    x_slider = widgets.FloatSlider(value=x, min=0.5, max=size - 0.5, step=1.0, description="x (pixels)",
                                   continuous_update=False)
    y_slider = widgets.FloatSlider(value=y, min=0.5, max=size - 0.5, step=1.0, description="y (pixels)",
                                   continuous_update=False)
    patch = model.config.scene.patch
    return live_html([x_slider, y_slider],
                     lambda px, py: render_prompt_html(prompt_view(model, scenes, index, px, py), patch))


@dataclass(frozen=True)
class CaptionView:
    """What the caption widget shows for one written word."""

    image: np.ndarray  # (H, W)
    words: tuple[str, ...]  # the caption the model wrote (greedy), without <eos>
    truth: tuple[str, ...]  # the true caption
    word: int  # the selected word's position (clipped to the caption)
    attention: np.ndarray  # (rows, cols) that word's attention over the patches (last layer, mean of heads)
    peak: tuple[int, int]  # (row, column) of the peak patch
    slot: int  # the digit slot of the peak patch (0 = left)
    gold: tuple[int, ...]  # the slots the true word at this position is about (empty past the true caption)


@torch.no_grad()
def caption_view(model: PatchCaptioner, batch: digits.NumberBatch, example: int, word: int,
                 layer: int = 0) -> CaptionView:
    """Caption image ``example`` of ``batch`` and return where its word ``word`` looked (in decoder ``layer``)."""
    layout = model.config.layout
    image = batch.images[example:example + 1]
    written = greedy_caption(model, image)  # (1, T)
    words = digits.decode_caption(written[0])
    word = min(max(word, 0), len(words), written.shape[1] - 1)  # position len(words) is the <eos> step
    weights = word_attention(model, image, written, layer=layer)[0, word]  # (N,)
    index, slot = peak_to_digit(weights, layout.grid[1], layout.patch, layout.slot)
    number = int(batch.numbers[example])
    gold = digits.gold_slots(number)
    return CaptionView(image[0].numpy(), tuple(words), tuple(digits.number_words(number)), word,
                       weights.reshape(layout.grid).numpy(), divmod(int(index), layout.grid[1]), int(slot),
                       gold[word] if word < len(gold) else ())


def render_caption_html(view: CaptionView, patch: int) -> str:
    """The written caption with the selected word in bold, and that word's attention painted on the image."""
    shown = [f"<b style='background:#ffe680'>{html.escape(w)}</b>" if i == view.word else html.escape(w)
             for i, w in enumerate(view.words)]
    shown.append("<b style='background:#ffe680'>&lt;eos&gt;</b>" if view.word == len(view.words) else "&lt;eos&gt;")
    if view.gold:
        verdict = "on a digit it names" if view.slot in view.gold else f"not on the digit it names (slot {view.gold})"
    else:
        verdict = "(no true word at this position)"
    return (
        "<div>"
        f"<div>model wrote: {' '.join(shown)} &nbsp; (true: {html.escape(digits.caption_text(list(view.truth)))})</div>"
        f"<div>{img_tag(attention_overlay(view.image, view.attention, patch), scale=10, title='attention')}</div>"
        f"<div>peak at patch row {view.peak[0]}, column {view.peak[1]} → digit slot {view.slot}: {verdict}</div>"
        "</div>"
    )


def make_caption_widget(model: PatchCaptioner, batch: digits.NumberBatch, examples: int = 8):
    """Three drop-downs (test image, word of its caption, decoder layer) and the live :func:`render_caption_html`."""
    import ipywidgets as widgets

    example = widgets.Dropdown(options=[(f"image {i}: {int(batch.numbers[i])}", i) for i in range(examples)],
                               value=0, description="image")
    word = widgets.Dropdown(options=[(f"word {i + 1}", i) for i in range(digits.MAX_WORDS + 1)], value=0,
                            description="word")
    layer = widgets.Dropdown(options=[(f"layer {i + 1}", i) for i in range(model.config.n_layers)], value=0,
                             description="layer")
    patch = model.config.layout.patch
    return live_html([example, word, layer],
                     lambda e, w, n: render_caption_html(caption_view(model, batch, e, w, n), patch))
