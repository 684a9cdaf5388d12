"""What a trained promptable segmenter does: mask quality, following a moving click, ambiguous clicks.

* :func:`measure_iou` — mean IoU on unseen scenes, by prompt: a point on one shape, a box, a point
  where two shapes overlap (scored against the shape the scene generator had chosen, a coin flip);
* :func:`follow_click` — a click slides from one shape to another across a fixed scene; the IoU of
  the prediction with each shape, step by step;
* :func:`measure_ambiguity` — clicks inside the overlap of two shapes: the mean mask probability in the
  part only the favoured shape covers, in the part only the other covers, in the overlap and outside.
  With several masks per click, how well the best mask matches each of the two shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.chapters.applications import shapes
from xattn_edu.chapters.applications.promptable import PromptableSegmenter, iou

ShapeSpec = tuple[str, float, float, float, float]
"""(kind, centre x, centre y, half-size, grey level) of one hand-placed shape."""

FOLLOW_SCENE: tuple[ShapeSpec, ...] = (("disc", 6.0, 12.0, 4.5, 0.5), ("square", 17.5, 12.0, 4.5, 0.55))
"""Two shapes side by side with background between them: the click slides from one to the other."""

WIDGET_SCENE: tuple[ShapeSpec, ...] = (("disc", 8.0, 8.0, 5.5, 0.5), ("square", 13.0, 11.0, 5.0, 0.45),
                                       ("triangle", 16.0, 18.5, 4.5, 0.6))
"""A disc and a square that overlap, and a triangle: the widget's scene."""


def scene_from_specs(specs: Sequence[ShapeSpec], config: shapes.SceneConfig | None = None) -> shapes.SceneBatch:
    """A batch of one hand-placed scene (no noise), prompted by a click on the first shape's centre."""
    config = config or shapes.SceneConfig()
    masks = np.zeros((max(config.max_shapes, len(specs)), config.size, config.size), dtype=bool)
    image = np.zeros((config.size, config.size), dtype=np.float32)
    for index, (kind, cx, cy, radius, level) in enumerate(specs):
        masks[index] = shapes.shape_mask(kind, cx, cy, radius, config.size)
        image += level * masks[index]
    xy, kind = shapes.point_prompt(specs[0][1], specs[0][2])
    return shapes.SceneBatch(torch.from_numpy(image[None]), torch.from_numpy(masks[None]),
                             [[spec[0] for spec in specs]], torch.tensor([0]),
                             torch.tensor([xy], dtype=torch.float32), torch.tensor([kind]))


@torch.no_grad()
def _probabilities(model: PromptableSegmenter, batch: shapes.SceneBatch, chunk: int = 128) -> torch.Tensor:
    """(B, K, H, W) mask probabilities for every prompt of ``batch``."""
    parts = [torch.sigmoid(model(batch.images[s:s + chunk], batch.prompt_xy[s:s + chunk],
                                 batch.prompt_kind[s:s + chunk]).logits) for s in range(0, len(batch.target), chunk)]
    return torch.cat(parts)


@dataclass(frozen=True)
class IoUScores:
    """Mean IoU of the predicted mask (probability > 0.5; the best of K masks) with the target mask."""

    counts: dict[str, int]  # prompts of each kind in the test set
    mean_iou: dict[str, float]  # mean IoU by kind of prompt


def measure_iou(model: PromptableSegmenter, count: int = 600, seed: int = 99_999) -> IoUScores:
    """Mean IoU on ``count`` unseen scenes (half point prompts, half boxes), by kind of prompt."""
    batch = shapes.make_scenes(count, seed=seed, config=model.config.scene, box_fraction=0.5)
    scores = iou(_probabilities(model, batch) > 0.5, batch.masks[:, None]).max(dim=1).values  # (B,)
    is_box = batch.prompt_kind[:, 0] == shapes.BOX_CORNER_1
    covering = shapes.shapes_at(batch, batch.prompt_xy[:, 0]).sum(dim=1)
    groups = {"point on one shape": ~is_box & (covering == 1), "box": is_box,
              "point on two or more shapes": ~is_box & (covering > 1)}
    return IoUScores({k: int(g.sum()) for k, g in groups.items()},
                     {k: float(scores[g].mean()) if g.any() else float("nan") for k, g in groups.items()})


@dataclass(frozen=True)
class FollowStep:
    """The prediction for one click position along the path."""

    x: float  # click position, pixels (y is fixed)
    under: str  # the shape under the click, or "background"
    iou: tuple[float, ...]  # IoU of the predicted mask with each shape of the scene
    area: int  # predicted mask area, pixels


def follow_click(model: PromptableSegmenter, steps: int = 24, specs: Sequence[ShapeSpec] = FOLLOW_SCENE
                 ) -> list[FollowStep]:
    """Slide a click horizontally across the scene through the shapes' centres; predict at every step."""
    scene = scene_from_specs(specs, model.config.scene)
    size, y = model.config.scene.size, specs[0][2]
    xs = np.linspace(1.0, size - 1.0, steps)
    batch = shapes.clicked(scene, [0] * steps, [(float(x), y) for x in xs])
    masks = _probabilities(model, batch)[:, 0] > 0.5  # (steps, H, W)
    own = scene.shapes[0, : len(specs)]  # (S, H, W)
    covered = shapes.shapes_at(batch, batch.prompt_xy[:, 0])[:, : len(specs)]
    return [FollowStep(float(x), next((specs[s][0] for s in range(len(specs)) if covered[i, s]), "background"),
                       tuple(float(v) for v in iou(masks[i][None], own)), int(masks[i].sum()))
            for i, x in enumerate(xs)]


@dataclass(frozen=True)
class AmbiguityScores:
    """What the segmenter predicts for clicks inside the overlap of exactly two shapes."""

    prompts: int  # ambiguous clicks measured
    favoured_only: float  # mean probability in the part covered only by the shape the mask favours
    other_only: float  # mean probability in the part covered only by the other shape
    overlap: float  # mean probability in the overlap
    outside: float  # mean probability outside both shapes
    best_iou_each: tuple[float, float]  # mean over clicks of max over masks of IoU with (favoured, other) shape


def _overlap_clicks(count: int, seed: int, config: shapes.SceneConfig) -> tuple[shapes.SceneBatch, torch.Tensor]:
    """Scenes in which shapes 0 and 1 overlap by at least 6 pixels, clicked inside the overlap."""
    rng = np.random.default_rng([seed, 11])
    scenes = shapes.make_scenes(8 * count, seed=seed, config=config, box_fraction=0.0)
    both = scenes.shapes[:, 0] & scenes.shapes[:, 1]
    keep = [b for b in range(len(both)) if int(both[b].sum()) >= 6][:count]
    clicks = []
    for b in keep:
        ys, xs = np.nonzero(both[b].numpy())
        pick = int(rng.integers(len(xs)))
        clicks.append((xs[pick] + 0.5, ys[pick] + 0.5))
    batch = shapes.clicked(scenes, keep, clicks)
    return batch, torch.stack([scenes.shapes[keep, 0], scenes.shapes[keep, 1]], dim=1)  # (B, 2, H, W)


def measure_ambiguity(model: PromptableSegmenter, count: int = 200, seed: int = 4_242) -> AmbiguityScores:
    """Click inside the overlap of two shapes (``count`` unseen scenes); where does the predicted mask go?"""
    batch, pair = _overlap_clicks(count, seed, model.config.scene)
    probability = _probabilities(model, batch)  # (B, K, H, W)
    first = probability[:, 0]
    only = [pair[:, 0] & ~pair[:, 1], pair[:, 1] & ~pair[:, 0]]
    means = torch.stack([(first * m).sum(dim=(-1, -2)) / m.sum(dim=(-1, -2)).clamp(min=1) for m in only], dim=1)
    favoured = means.argmax(dim=1)  # (B,) the shape whose own part gets the higher probability
    rows = torch.arange(len(favoured))
    overlap, outside = pair[:, 0] & pair[:, 1], ~(pair[:, 0] | pair[:, 1])
    best = iou((probability > 0.5)[:, :, None], pair[:, None]).max(dim=1).values  # (B, 2)
    return AmbiguityScores(
        prompts=len(favoured),
        favoured_only=float(means[rows, favoured].mean()),
        other_only=float(means[rows, 1 - favoured].mean()),
        overlap=float(((first * overlap).sum(dim=(-1, -2)) / overlap.sum(dim=(-1, -2))).mean()),
        outside=float(((first * outside).sum(dim=(-1, -2)) / outside.sum(dim=(-1, -2))).mean()),
        best_iou_each=(float(best[rows, favoured].mean()), float(best[rows, 1 - favoured].mean())),
    )


def example_panels(model: PromptableSegmenter, count: int = 6, seed: int = 31_337
                   ) -> tuple[list[np.ndarray], list[str]]:
    """RGB panels of unseen scenes with their prompt and the predicted mask, and titles naming prompt and IoU."""
    from xattn_edu.chapters.applications.overlay import mask_overlay

    batch = shapes.make_scenes(count, seed=seed, config=model.config.scene, box_fraction=0.5)
    probability = _probabilities(model, batch)[:, 0]
    scores = iou(probability[:, None] > 0.5, batch.masks[:, None])[:, 0]
    rgbs, titles = [], []
    for b in range(count):
        is_box = int(batch.prompt_kind[b, 0]) == shapes.BOX_CORNER_1
        rgb = mask_overlay(batch.images[b].numpy(), probability[b].numpy(),
                           None if is_box else tuple(batch.prompt_xy[b, 0].tolist()))
        if is_box:
            (x0, y0), (x1, y1) = batch.prompt_xy[b].round().long().clamp(0, batch.images.shape[-1] - 1).tolist()
            rgb[[y0, y1], x0:x1 + 1] = (1.0, 0.9, 0.0)  # the box outline in yellow
            rgb[y0:y1 + 1, [x0, x1]] = (1.0, 0.9, 0.0)
        target = batch.kinds[b][int(batch.target[b])]
        titles.append(f"{'box' if is_box else 'click'} on {target}: IoU {float(scores[b]):.2f}")
        rgbs.append(rgb)
    return rgbs, titles


def click_panels(model: PromptableSegmenter, specs: Sequence[ShapeSpec], click: tuple[float, float]
                 ) -> list[np.ndarray]:
    """One RGB panel per mask the model writes for a click at (x, y) on a hand-placed scene."""
    from xattn_edu.chapters.applications.overlay import mask_overlay

    scene = scene_from_specs(specs, model.config.scene)
    batch = shapes.clicked(scene, [0], [click])
    probability = _probabilities(model, batch)[0]  # (K, H, W)
    return [mask_overlay(scene.images[0].numpy(), p.numpy(), click) for p in probability]
