"""The one small training loop the chapter's three models share."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FitConfig:
    """How long and how fast to train."""

    steps: int  # optimizer steps (one batch each)
    lr: float = 3e-3  # peak learning rate of AdamW
    warmup: int = 50  # steps of linear warm-up, then cosine decay to 5 % of the peak
    weight_decay: float = 0.01  # AdamW's decoupled weight decay
    clip: float = 1.0  # gradients are clipped to this global norm
    seed: int = 0  # torch seed set before the first step (data seeds are the caller's)
    threads: int = 1  # torch CPU threads while training: models this small run fastest on one


@dataclass(frozen=True)
class FitResult:
    """What a training run measured."""

    losses: list[float]  # the loss of every step
    seconds: float  # wall-clock training time

    def smoothed(self, window: int = 20) -> list[float]:
        """Mean loss over consecutive windows of ``window`` steps (for plots)."""
        return [sum(self.losses[i:i + window]) / len(self.losses[i:i + window])
                for i in range(0, len(self.losses), window)]


def _learning_rate(step: int, config: FitConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def fit(model: nn.Module, step_loss: Callable[[int], Tensor], config: FitConfig) -> FitResult:
    """Train ``model`` for ``config.steps`` steps; ``step_loss(step)`` returns that step's scalar loss.

    Runs on ``config.threads`` torch threads (the previous number is restored after). The model is left
    in eval mode. Returns every step's loss and the wall time.
    """
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    losses, start = [], time.perf_counter()
    try:
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, config)
            loss = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return FitResult(losses, time.perf_counter() - start)
