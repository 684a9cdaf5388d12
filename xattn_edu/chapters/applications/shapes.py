"""Synthetic scenes for the promptable segmenter: a few see-through shapes, a prompt, the mask to predict.

Each scene holds two or three shapes (discs, squares, triangles) drawn with their own grey level; where
shapes overlap their levels add up, so every outline stays visible. A prompt picks one shape: either a
**point** (a pixel of that shape, chosen at random) or a **box** (its bounding box, a pixel or so off).
The target is that shape's whole mask. A point where two shapes overlap is ambiguous: the scene
generator picked one of the two shapes, and the prompt alone cannot tell which.

Prompts are two tokens, each a position (x, y in pixels, measured from the top-left corner) and a
kind: a point is ``(POINT, NOT_A_POINT)``, a box is ``(BOX_CORNER_1, BOX_CORNER_2)`` (top-left,
bottom-right).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

POINT, BOX_CORNER_1, BOX_CORNER_2, NOT_A_POINT = 0, 1, 2, 3
PROMPT_KINDS = 4
SHAPES = ("disc", "square", "triangle")


@dataclass(frozen=True)
class SceneConfig:
    """Size of the scenes and of their shapes."""

    size: int = 24  # H = W, pixels
    patch: int = 4  # patch side used by the segmenter; must divide ``size``
    min_shapes: int = 2  # fewest shapes in a scene
    max_shapes: int = 3  # most shapes in a scene (S)
    min_radius: float = 3.5  # smallest shape half-size, pixels
    max_radius: float = 7.0  # largest shape half-size, pixels
    box_fraction: float = 0.3  # fraction of prompts that are boxes (the others are points)

    def __post_init__(self):
        if self.size % self.patch:
            raise ValueError(f"patch {self.patch} must divide the scene size {self.size}")


def shape_mask(kind: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """(size, size) bool mask of one shape centred at (cx, cy), judged at pixel centres."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if kind == "disc":
        return (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2
    if kind == "square":
        return (np.abs(x - cx) <= radius * 0.85) & (np.abs(y - cy) <= radius * 0.85)
    if kind == "triangle":  # apex up, base at cy + radius
        height = (y - (cy - radius)) / (2 * radius)  # 0 at the apex, 1 at the base
        return (height >= 0) & (height <= 1) & (np.abs(x - cx) <= height * radius)
    raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")


@dataclass(frozen=True)
class SceneBatch:
    """A batch of scenes with one prompt each."""

    images: Tensor  # (B, H, W) float32
    shapes: Tensor  # (B, S, H, W) bool, every shape's mask (empty for missing shapes)
    kinds: list[list[str]]  # the kind of each shape of each scene
    target: Tensor  # (B,) int64, the prompted shape
    prompt_xy: Tensor  # (B, 2, 2) float32, the two prompt positions in pixels (x, y)
    prompt_kind: Tensor  # (B, 2) int64, POINT / BOX_CORNER_1 / BOX_CORNER_2 / NOT_A_POINT

    @property
    def masks(self) -> Tensor:
        """(B, H, W) bool, the target mask of each scene."""
        return self.shapes[torch.arange(len(self.target)), self.target]


def _scene(rng: np.random.Generator, config: SceneConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    count = int(rng.integers(config.min_shapes, config.max_shapes + 1))
    shapes = np.zeros((config.max_shapes, config.size, config.size), dtype=bool)
    image = np.zeros((config.size, config.size), dtype=np.float32)
    kinds = []
    for index in range(count):
        radius = rng.uniform(config.min_radius, config.max_radius)
        cx, cy = rng.uniform(radius, config.size - radius, 2)
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        shapes[index] = shape_mask(kind, cx, cy, radius, config.size)
        image += rng.uniform(0.35, 0.65) * shapes[index]
        kinds.append(kind)
    image += rng.normal(0.0, 0.03, image.shape).astype(np.float32)
    return image, shapes, kinds


def point_prompt(x: float, y: float) -> tuple[list[list[float]], list[int]]:
    """The two prompt tokens of a click at pixel position (x, y)."""
    return [[float(x), float(y)], [0.0, 0.0]], [POINT, NOT_A_POINT]


def box_prompt(mask: np.ndarray, rng: np.random.Generator | None = None) -> tuple[list[list[float]], list[int]]:
    """The two prompt tokens of the bounding box of ``mask`` (H, W), corners jittered by up to a pixel."""
    ys, xs = np.nonzero(mask)
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1.0, ys.max() + 1.0]], dtype=float)
    if rng is not None:
        corners += rng.uniform(-1.0, 1.0, corners.shape)
    return corners.tolist(), [BOX_CORNER_1, BOX_CORNER_2]


def make_scenes(count: int, seed: int, config: SceneConfig = SceneConfig(), box_fraction: float | None = None
                ) -> SceneBatch:
    """``count`` random scenes, each with one prompt (a point or a box) on a shape chosen at random."""
    rng = np.random.default_rng([seed, 7])
    box_fraction = config.box_fraction if box_fraction is None else box_fraction
    images, shapes, kinds, targets, xys, prompt_kinds = [], [], [], [], [], []
    for _ in range(count):
        image, masks, names = _scene(rng, config)
        target = int(rng.integers(len(names)))
        if rng.random() < box_fraction:
            xy, kind = box_prompt(masks[target], rng)
        else:
            ys, xs = np.nonzero(masks[target])
            pick = int(rng.integers(len(xs)))
            xy, kind = point_prompt(xs[pick] + rng.uniform(0.1, 0.9), ys[pick] + rng.uniform(0.1, 0.9))
        images.append(image)
        shapes.append(masks)
        kinds.append(names)
        targets.append(target)
        xys.append(xy)
        prompt_kinds.append(kind)
    return SceneBatch(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(shapes)), kinds,
                      torch.tensor(targets), torch.tensor(xys, dtype=torch.float32), torch.tensor(prompt_kinds))


def shapes_at(batch: SceneBatch, xy: Tensor) -> Tensor:
    """(B, S) bool: which shapes cover the pixel under each point ``xy`` (B, 2)."""
    size = batch.images.shape[-1]
    column = xy[:, 0].floor().long().clamp(0, size - 1)
    row = xy[:, 1].floor().long().clamp(0, size - 1)
    return batch.shapes[torch.arange(len(xy)), :, row, column]


def clicked(batch: SceneBatch, rows: list[int], clicks: list[tuple[float, float]]) -> SceneBatch:
    """Scenes ``rows`` of ``batch`` (repeats allowed), each prompted by a point at the matching (x, y) click.

    The target of each is the first shape under its click (shape 0 on background).
    """
    prompts = [point_prompt(x, y) for x, y in clicks]
    xy = torch.tensor([p[0] for p in prompts], dtype=torch.float32)
    chosen = SceneBatch(batch.images[rows], batch.shapes[rows], [batch.kinds[r] for r in rows],
                        torch.zeros(len(rows), dtype=torch.int64), xy, torch.tensor([p[1] for p in prompts]))
    return SceneBatch(chosen.images, chosen.shapes, chosen.kinds, shapes_at(chosen, xy[:, 0]).int().argmax(dim=1),
                      xy, chosen.prompt_kind)
