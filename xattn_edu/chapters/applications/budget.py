"""How much work the notebook does: seconds in fast mode (tests, graders), minutes in a full run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Training steps, test-set sizes and benchmark sizes of the chapter's experiments."""

    caption_steps: int  # captioner training steps (batch 64)
    caption_test: int  # test images for the caption scores
    cost_sizes: tuple[int, ...]  # input lengths N of the time/memory sweep
    latent_length: int  # N of the majority task's training sequences
    latent_steps: int  # training steps of each long-input classifier (batch 32)
    latent_test: int  # test sequences per length
    segment_steps: int  # segmenter training steps (batch 48)
    two_mask_steps: int  # training steps of the two-mask segmenter
    segment_test: int  # test scenes for IoU and ambiguity


FULL = Budget(caption_steps=2000, caption_test=1000, cost_sizes=(1024, 2048, 4096, 8192, 16384, 32768, 65536),
              latent_length=1024, latent_steps=300, latent_test=512, segment_steps=1500, two_mask_steps=1000,
              segment_test=600)
FAST = Budget(caption_steps=60, caption_test=100, cost_sizes=(256, 1024, 2048), latent_length=256, latent_steps=40,
              latent_test=128, segment_steps=40, two_mask_steps=20, segment_test=100)


def budget(fast: bool) -> Budget:
    """:data:`FAST` when ``fast`` (``XATTN_FAST=1``), else :data:`FULL`."""
    return FAST if fast else FULL
