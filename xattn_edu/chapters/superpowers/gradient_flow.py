"""Claim (article 3194527): cross-attention is a gradient "superhighway" that bypasses the encoder's layers.

Cross-attention reads the TOP encoder layer only, so a gradient that reaches encoder layer 1 still
crosses layers 2..L on its way down. The measurements here follow the gradient layer by layer:

* :func:`gradient_profile`: the gradient norm of each encoder layer's parameters after one backward
  pass (:func:`~xattn_edu.chapters.superpowers.reference.layer_grad_norms`), for any
  :class:`Variant` (cross-attention in every decoder layer, in one, none, or reading a mixture of all
  encoder layers; with or without residual connections; pre- or post-norm) at any depth;
* :func:`train_variant`: a short training run on a small task (reverse the source sequence), with
  the loss at every step and the gradient profile before and after.

Everything is measured on the CPU in float32, with fixed seeds; results are cached within a run
(:func:`gradient_profile` is memoised) and never stored between runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from xattn_edu.chapters.superpowers.reference import layer_grad_norms
from xattn_edu.chapters.superpowers.stacks import Stack, StackConfig

VOCAB = 12
"""Token ids 1..11 are symbols; 0 starts the target (BOS), and separates source and target when there is no encoder."""

SOURCE_LENGTH = 8
"""Tokens per source sequence of the reversal task."""


@dataclass(frozen=True)
class Variant:
    """A wiring of the model: how the decoder reaches the encoder, the residuals, where the norm sits."""

    cross: str  # "every", "one", "none" (decoder-only, source as a prefix) or "mixture" (all encoder layers)
    residual: bool = True  # residual connections around every sublayer
    pre_norm: bool = True  # layer norm before each sublayer (True) or after the residual sum (False)

    @property
    def name(self) -> str:
        """A short label, e.g. ``"every, pre-norm"`` or ``"none, post-norm, no residual"``."""
        return f"{self.cross}, {'pre' if self.pre_norm else 'post'}-norm" + ("" if self.residual else ", no residual")

    def config(self, depth: int, n_decoder_layers: int = 4, d_model: int = 32) -> StackConfig:
        """The :class:`StackConfig` of this variant with an encoder side of ``depth`` layers."""
        return StackConfig(vocab=VOCAB, d_model=d_model, n_heads=4, d_ff=2 * d_model, n_encoder_layers=depth,
                           n_decoder_layers=n_decoder_layers, cross=self.cross, residual=self.residual,
                           pre_norm=self.pre_norm)


VARIANTS = tuple(Variant(cross, residual, pre_norm)
                 for residual in (True, False) for pre_norm in (True, False) for cross in ("every", "one", "none")) \
    + (Variant("mixture", True, True), Variant("mixture", True, False))
"""The 12 standard wirings (cross-attention every / one / none, residual or not, pre- or post-norm), then
transparent attention (mixture) with residuals, pre- and post-norm."""


def reversal_batch(batch: int, generator: torch.Generator, length: int = SOURCE_LENGTH):
    """A batch of the reversal task: the target is the source read backwards.

    Returns:
        ``(src, tgt_in, tgt_out)``, int64 of shapes (B, Ts), (B, Ts), (B, Ts): ``tgt_in`` is BOS (0)
        then the target shifted right, ``tgt_out`` the target.
    """
    src = torch.randint(1, VOCAB, (batch, length), generator=generator)
    tgt_out = src.flip(1)
    tgt_in = torch.cat([torch.zeros(batch, 1, dtype=torch.long), tgt_out[:, :-1]], dim=1)
    return src, tgt_in, tgt_out


def task_loss(model: Stack, batch) -> torch.Tensor:
    """Mean cross-entropy (nats per target token) of ``model`` on a :func:`reversal_batch`."""
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)  # (B, Tt, V)
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())


def build(variant: Variant, depth: int, seed: int, d_model: int = 32) -> Stack:
    """The model of ``variant`` with ``depth`` encoder layers, initialised from ``seed``."""
    torch.manual_seed(seed)
    return Stack(variant.config(depth, d_model=d_model))


@lru_cache(maxsize=512)
def gradient_profile(variant: Variant, depth: int, seed: int = 0, batch: int = 32) -> np.ndarray:
    """Per-layer gradient norms of the encoder side at initialisation (one batch, one backward pass).

    Returns:
        (L,) float64, bottom layer first. Memoised: the same arguments return the same (read-only) array.
    """
    model = build(variant, depth, seed)
    generator = torch.Generator().manual_seed(10_000 + seed)
    norms = layer_grad_norms(model.encoder_layers, task_loss(model, reversal_batch(batch, generator)))
    result = norms.double().numpy()
    result.flags.writeable = False
    return result


def bottom_top_ratio(norms: np.ndarray) -> float:
    """``norms[0] / norms[-1]``: how much of the top layer's gradient is left at the bottom layer."""
    return float(norms[0] / norms[-1]) if norms[-1] > 0 else math.inf


@dataclass(frozen=True)
class ProfileRow:
    """The gradient profile of one variant at one depth, averaged over seeds."""

    variant: Variant  # the wiring
    depth: int  # L, encoder layers
    norms: np.ndarray  # (L,) geometric mean over seeds of each layer's gradient norm, bottom first
    ratio: float  # geometric mean over seeds of bottom/top


def measure_profiles(variants=VARIANTS, depths=(6, 12, 24), seeds=(0, 1, 2)) -> list[ProfileRow]:
    """:func:`gradient_profile` for every variant and depth, averaged (geometrically) over ``seeds``."""
    rows = []
    for depth in depths:
        for variant in variants:
            profiles = np.stack([gradient_profile(variant, depth, seed) for seed in seeds])  # (seeds, L)
            logs = np.log(np.maximum(profiles, 1e-300))
            ratios = logs[:, 0] - logs[:, -1]
            rows.append(ProfileRow(variant, depth, np.exp(logs.mean(axis=0)), float(np.exp(ratios.mean()))))
    return rows


@dataclass(frozen=True)
class TrainRun:
    """A short training run of one variant."""

    variant: Variant  # the wiring
    depth: int  # L, encoder layers
    lr: float  # peak learning rate of Adam
    warmup: int  # steps of linear warm-up from 0 to lr (0: the full rate from the first step)
    seed: int  # initialisation and data seed
    losses: np.ndarray  # (steps,) training loss at each step (nan after a divergence)
    norms_before: np.ndarray  # (L,) gradient profile at initialisation
    norms_after: np.ndarray  # (L,) gradient profile after training (on a fresh batch)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last tenth of the steps (nats per token; log 11 = chance)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return float(np.mean(tail))


@lru_cache(maxsize=256)
def train_variant(variant: Variant, depth: int, steps: int, *, lr: float = 1e-3, warmup: int = 0, seed: int = 0,
                  batch: int = 32) -> TrainRun:
    """Train ``variant`` on the reversal task with Adam for ``steps`` steps; record the losses and profiles.

    A loss that becomes nan or inf stops the run; the remaining losses are nan. Memoised: the same
    arguments return the same run (its arrays are read-only).
    """
    model = build(variant, depth, seed)
    data = torch.Generator().manual_seed(20_000 + seed)
    before = layer_grad_norms(model.encoder_layers, task_loss(model, reversal_batch(batch, data)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup
                                                 else 1.0)
    losses = np.full(steps, np.nan)
    for step in range(steps):
        loss = task_loss(model, reversal_batch(batch, data))
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses[step] = loss.item()
    after = layer_grad_norms(model.encoder_layers, task_loss(model, reversal_batch(batch, data)))
    arrays = [losses, before.double().numpy(), after.double().numpy()]
    for array in arrays:
        array.flags.writeable = False
    return TrainRun(variant, depth, lr, warmup, seed, *arrays)


def measure_warmup(depths=(2, 6, 12), seeds=(0, 1), steps: int = 300, lr: float = 1e-3,
                   warmup: int = 100) -> list[TrainRun]:
    """Post-norm encoders of growing depth trained WITHOUT warm-up, standard cross-attention against the
    mixture of all layers; then the standard one at the largest depth WITH ``warmup`` steps of warm-up."""
    runs = [train_variant(Variant(cross, True, False), depth, steps, lr=lr, seed=seed)
            for depth in depths for cross in ("every", "mixture") for seed in seeds]
    return runs + [train_variant(Variant("every", True, False), depths[-1], steps, lr=lr, warmup=warmup, seed=seed)
                   for seed in seeds]
