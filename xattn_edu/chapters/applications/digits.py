"""Numbers written with scikit-learn's bundled 8x8 handwritten digits, and the same numbers in words.

A :class:`Layout` puts up to three digits side by side, right-aligned (hundreds, tens, units), each
8x8 digit at a random offset inside its own square slot; the image of 342 reads "three hundred
forty-two". Every word of a caption also names the slots it is about (:func:`gold_slots`), which is
how the chapter scores whether attention looks at the right digit.

The digits come from ``sklearn.datasets.load_digits`` (1,797 images, shipped inside the scikit-learn
package: nothing is downloaded). The first :data:`TRAIN_IMAGES` images are used for training, the rest
for testing, so test numbers are drawn with digit images never trained on (the split is by image,
not by writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2
VOCAB: tuple[str, ...] = SPECIALS + ONES + TEENS + TENS[2:] + ("hundred",)
"""Every token the captioner can write: 3 specials, then 28 words."""
WORD_ID = {word: index for index, word in enumerate(VOCAB)}
MAX_WORDS = 4
"""The longest caption ("seven hundred seventy seven")."""

TRAIN_IMAGES = 1300
"""Digits 0..1299 of load_digits are the training pool, the other 497 the test pool."""


@dataclass(frozen=True)
class Layout:
    """Where the digits of a number go in its image."""

    slots: int = 3  # digits per image: hundreds, tens, units (numbers 0..999)
    slot: int = 12  # side of a digit's square slot, pixels; an 8x8 digit sits at a random offset inside
    patch: int = 4  # patch side used to cut the image; must divide ``slot``, so slots align with patches

    def __post_init__(self):
        if self.slot < 8 or self.slot % self.patch:
            raise ValueError(f"a slot must hold an 8x8 digit and split into patches; got slot {self.slot}, "
                             f"patch {self.patch}")

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return self.slot

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return self.slot * self.slots

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid."""
        return self.height // self.patch, self.width // self.patch


@lru_cache(maxsize=1)
def digit_pool() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: images (1797, 8, 8) in [0, 1] and labels (1797,) int64 (read-only arrays)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    labels = data.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def number_words(number: int) -> list[str]:
    """The words of ``number`` (0..999), e.g. 342 → ['three', 'hundred', 'forty', 'two']."""
    if not 0 <= number <= 999:
        raise ValueError(f"numbers from 0 to 999 only, got {number}")
    hundreds, rest = divmod(number, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    tens, units = divmod(rest, 10)
    if tens == 1:
        words.append(TEENS[units])
    else:
        if tens:
            words.append(TENS[tens])
        if units or not words:
            words.append(ONES[units])
    return words


def caption_text(words: list[str]) -> str:
    """Words as a person writes them: 'three hundred forty-two' (a hyphen between tens and units)."""
    text = " ".join(words)
    for tens in TENS[2:]:
        for unit in ONES[1:]:
            text = text.replace(f"{tens} {unit}", f"{tens}-{unit}")
    return text


def gold_slots(number: int, slots: int = 3) -> list[tuple[int, ...]]:
    """For each word of ``number``, the digit slots (0 = left) the word is about.

    The hundreds word and "hundred" point at the hundreds slot; a tens word at the tens slot; a
    teen at both the tens and the units slot (it needs both digits); a units word (or "zero") at
    the units slot. Digits are right-aligned, so the units digit is always in slot ``slots - 1``.
    """
    hundreds_slot, tens_slot, units_slot = slots - 3, slots - 2, slots - 1
    out = []
    for word in number_words(number):
        if word == "hundred" or (word in ONES and len(out) == 0 and number >= 100):
            out.append((hundreds_slot,))
        elif word in TEENS:
            out.append((tens_slot, units_slot))
        elif word in TENS:
            out.append((tens_slot,))
        else:
            out.append((units_slot,))
    return out


def encode_caption(number: int) -> list[int]:
    """Token ids of the caption: words then <eos> (no <bos>)."""
    return [WORD_ID[word] for word in number_words(number)] + [EOS]


def decode_caption(ids) -> list[str]:
    """Words of a token id sequence, up to the first <eos> (specials dropped)."""
    words = []
    for index in ids:
        if int(index) == EOS:
            break
        if int(index) >= len(SPECIALS):
            words.append(VOCAB[int(index)])
    return words


@dataclass(frozen=True)
class NumberBatch:
    """A batch of written numbers."""

    images: Tensor  # (B, H, W) float32 in [0, 1]
    numbers: Tensor  # (B,) int64, the numbers written
    targets: Tensor  # (B, MAX_WORDS + 1) int64 caption ids then <eos>, padded with <pad>


def make_numbers(count: int, *, split: str = "train", seed: int = 0, layout: Layout = Layout(),
                 numbers: list[int] | None = None) -> NumberBatch:
    """``count`` images of random numbers 0..999 (or of ``numbers``), written with digits of ``split``.

    Args:
        count: B, how many images.
        split: "train" (digits 0..1299 of the pool) or "test" (the others).
        seed: the same seed gives the same images.
        layout: where the digits go.
        numbers: the numbers to write (length B); random when None.

    Returns:
        A :class:`NumberBatch`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    pool_images, pool_labels = digit_pool()
    pool = np.arange(TRAIN_IMAGES) if split == "train" else np.arange(TRAIN_IMAGES, len(pool_labels))
    by_digit = [pool[pool_labels[pool] == d] for d in range(10)]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    numbers = list(rng.integers(0, 10 ** layout.slots, count)) if numbers is None else list(numbers)
    images = np.zeros((len(numbers), layout.height, layout.width), dtype=np.float32)
    targets = np.full((len(numbers), MAX_WORDS + 1), PAD, dtype=np.int64)
    for b, number in enumerate(numbers):
        text = str(int(number))
        for position, char in enumerate(text):
            slot = layout.slots - len(text) + position
            dy, dx = rng.integers(0, layout.slot - 8 + 1, 2)
            x0 = slot * layout.slot + dx
            images[b, dy:dy + 8, x0:x0 + 8] = pool_images[rng.choice(by_digit[int(char)])]
        caption = encode_caption(int(number))
        targets[b, :len(caption)] = caption
    return NumberBatch(torch.from_numpy(images), torch.tensor(numbers, dtype=torch.int64), torch.from_numpy(targets))
