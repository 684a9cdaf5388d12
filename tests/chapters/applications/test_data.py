"""Chapter 7 data: numbers in words from scikit-learn's digits, and the shape scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xattn_edu.chapters.applications import digits, shapes


@pytest.mark.parametrize("number, words, text", [
    (342, ["three", "hundred", "forty", "two"], "three hundred forty-two"),
    (300, ["three", "hundred"], "three hundred"),
    (110, ["one", "hundred", "ten"], "one hundred ten"),
    (7, ["seven"], "seven"),
    (0, ["zero"], "zero"),
    (40, ["forty"], "forty"),
    (915, ["nine", "hundred", "fifteen"], "nine hundred fifteen"),
    (777, ["seven", "hundred", "seventy", "seven"], "seven hundred seventy-seven"),
])
def test_numbers_in_words(number, words, text):
    assert digits.number_words(number) == words
    assert digits.caption_text(words) == text
    assert digits.decode_caption(digits.encode_caption(number)) == words


def test_every_number_fits_the_caption_length_and_the_vocabulary():
    lengths = [len(digits.number_words(n)) for n in range(1000)]
    assert max(lengths) == digits.MAX_WORDS
    assert {w for n in range(1000) for w in digits.number_words(n)} | set(digits.SPECIALS) == set(digits.VOCAB)
    with pytest.raises(ValueError):
        digits.number_words(1000)


@pytest.mark.parametrize("number, slots", [
    (342, [(0,), (0,), (1,), (2,)]), (315, [(0,), (0,), (1, 2)]), (40, [(1,)]), (7, [(2,)]), (0, [(2,)]),
    (300, [(0,), (0,)]), (508, [(0,), (0,), (2,)]),
])
def test_each_word_names_the_slots_of_its_digits(number, slots):
    assert digits.gold_slots(number) == slots


def test_number_images_are_deterministic_right_aligned_and_drawn_from_their_own_split():
    layout = digits.Layout()
    first = digits.make_numbers(6, split="test", seed=4, numbers=[5, 42, 342, 7, 100, 999])
    again = digits.make_numbers(6, split="test", seed=4, numbers=[5, 42, 342, 7, 100, 999])
    assert torch.equal(first.images, again.images)
    assert first.images.shape == (6, layout.height, layout.width)
    ink = first.images.reshape(6, layout.height, layout.slots, layout.slot).sum(dim=(1, 3)) > 0  # (B, slots)
    assert ink.tolist()[:3] == [[False, False, True], [False, True, True], [True, True, True]]
    assert first.targets[2].tolist() == digits.encode_caption(342)
    train = digits.make_numbers(4, split="train", seed=4, numbers=[5, 42, 342, 7])
    assert not torch.equal(train.images[:4], first.images[:4])
    with pytest.raises(ValueError):
        digits.make_numbers(2, split="validation")


def test_the_digit_pool_is_scikit_learns_bundled_digits():
    images, labels = digits.digit_pool()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(labels[: digits.TRAIN_IMAGES]) == set(range(10)) == set(labels[digits.TRAIN_IMAGES:])


def test_layout_rejects_slots_that_do_not_split_into_patches():
    with pytest.raises(ValueError):
        digits.Layout(slot=10, patch=4)


@pytest.mark.parametrize("kind", shapes.SHAPES)
def test_shapes_are_filled_around_their_centre(kind):
    mask = shapes.shape_mask(kind, 12.0, 12.0, 6.0, 24)
    assert mask[12, 12] and not mask[0, 0] and 40 < mask.sum() < 150


def test_scenes_prompt_a_shape_they_contain():
    batch = shapes.make_scenes(64, seed=3)
    assert batch.images.shape == (64, 24, 24) and batch.shapes.shape == (64, 3, 24, 24)
    is_point = batch.prompt_kind[:, 0] == shapes.POINT
    assert is_point.any() and (~is_point).any()
    under = shapes.shapes_at(batch, batch.prompt_xy[:, 0])  # (B, S)
    assert under[is_point, batch.target[is_point]].all()  # every click is on its target
    boxes = batch.prompt_xy[~is_point]  # (b, 2, 2): corners around the target's pixels, within a pixel
    for corners, mask in zip(boxes, batch.masks[~is_point], strict=True):
        ys, xs = np.nonzero(mask.numpy())
        assert corners[0, 0] <= xs.min() + 1 and corners[1, 0] >= xs.max() and corners[0, 1] <= ys.min() + 1
    assert torch.equal(shapes.make_scenes(4, seed=9).images, shapes.make_scenes(4, seed=9).images)


def test_clicked_reprompts_scenes_at_given_points():
    batch = shapes.make_scenes(3, seed=1)
    ys, xs = np.nonzero(batch.shapes[2, 1].numpy())
    clicked = shapes.clicked(batch, [2, 2], [(xs[0] + 0.5, ys[0] + 0.5), (0.5, 0.5)])
    assert clicked.prompt_kind.tolist() == [[shapes.POINT, shapes.NOT_A_POINT]] * 2
    assert shapes.shapes_at(clicked, clicked.prompt_xy[:, 0])[0, 1]
    assert torch.equal(clicked.images[0], batch.images[2])
