"""Training the chapter's translator with the package's loop, keeping checkpoints to look back at.

The package's :mod:`xattn_edu.translate.train` does the work (length-bucketed batches, AdamW with
warm-up and decay, label smoothing, gradient clipping; bf16 autocast and TF32 on a GPU). This module
drives it one step at a time so the notebook can draw the loss as it falls, and keeps a copy of the
weights every ``snapshot_every`` steps (also written to ``out_dir``): the checkpoints the chapter
replays to watch cross-attention learn to align.

Every call into :mod:`xattn_edu.translate` for training sits in this module.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from xattn_edu.chapters.translation.data import ChapterData, ChapterRun
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate import train as package_train
from xattn_edu.translate.config import OptimConfig


@dataclass(frozen=True)
class Snapshot:
    """The weights at one step of training."""

    step: int  # optimizer steps taken
    state: dict[str, Tensor]  # a CPU copy of the model's state_dict
    val_loss: float  # mean validation loss per target token (no label smoothing)
    exact_match: float  # percent of a validation sample translated exactly (greedy)


@dataclass
class TrainingLog:
    """What a training run reports as it goes."""

    steps: list[int] = field(default_factory=list)  # step of each loss report
    losses: list[float] = field(default_factory=list)  # mean training loss per target token since the last report
    snapshots: list[Snapshot] = field(default_factory=list)  # checkpoints, the first at step 0
    seconds: float = 0.0  # wall time of the training steps (checks and snapshots excluded)
    target_tokens: int = 0  # real target tokens trained on


def lr_schedule(optim: OptimConfig) -> list[float]:
    """The learning rate at every optimizer step: linear warm-up, then the configured decay."""
    return [optim.lr * package_train.lr_factor(step, optim) for step in range(optim.steps)]


def run_folder(keep: bool) -> Path:
    """A new temporary folder for the run's checkpoints; removed when Python exits unless ``keep``.

    Kept, it can be used afterwards with ``xattn translate`` and ``xattn evaluate``; fast runs (tests,
    graders) leave nothing behind.
    """
    folder = Path(tempfile.mkdtemp(prefix="xattn-ch06-"))
    if not keep:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def start(run: ChapterRun, data: ChapterData, out_dir: str | Path, device: torch.device | None = None):
    """A training session: the model, the optimizer and the batches of the run, ready for its first step.

    ``out_dir`` must not hold a checkpoint yet; the final weights are saved there (``checkpoint.pt``).
    """
    return package_train.setup(run.config, out_dir, device=device, corpus=data.corpus, quiet=True)


def autocast_dtype(session) -> str:
    """What the session's matrix products run in: "bfloat16 (autocast)" on a GPU with bf16 on, else "float32"."""
    return "bfloat16 (autocast)" if session.autocast else "float32"


def _snapshot(session, out_dir: Path) -> Snapshot:
    """Copy the weights, score them on the validation split, and write them to ``out_dir``."""
    state = {name: value.detach().to("cpu", copy=True) for name, value in session.model.state_dict().items()}
    torch.save(state, out_dir / f"snapshot_{session.step:06d}.pt")
    if session.val_split is None:
        return Snapshot(session.step, state, float("nan"), float("nan"))
    scores = package_train.validate(session.model, session.val_split, session.cfg, session.tgt_tok, session.device)
    return Snapshot(session.step, state, scores["val_loss"], scores.get("exact_match", float("nan")))


def train_with_snapshots(session, snapshot_every: int, *, on_report: Callable[[TrainingLog], None] | None = None,
                         progress: bool = True) -> TrainingLog:  # fmt: skip
    """Train to the end of the session's schedule, reporting the loss and keeping snapshots.

    Args:
        session: from :func:`start`.
        snapshot_every: steps between snapshots (the first at step 0, the last at the end).
        on_report: called with the log after every loss report (every ``log_every`` steps).
        progress: show a progress bar.

    Returns:
        The :class:`TrainingLog`; the final weights are also saved in the session's ``out_dir``.
    """
    from tqdm.auto import tqdm

    cfg, out_dir = session.cfg, Path(session.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = TrainingLog(snapshots=[_snapshot(session, out_dir)])
    bar = tqdm(total=cfg.optim.steps, unit="step", disable=not progress)
    summed, tokens = torch.zeros((), device=session.device), 0
    while session.step < cfg.optim.steps:
        started = time.perf_counter()
        loss, n_tokens = package_train.train_step(session, session.next_batch())
        summed, tokens = summed + loss, tokens + n_tokens
        log.seconds += time.perf_counter() - started
        if session.step % cfg.log_every == 0 or session.step == cfg.optim.steps:
            log.steps.append(session.step)
            log.losses.append(float(summed) / tokens)
            log.target_tokens += tokens
            summed, tokens = torch.zeros((), device=session.device), 0
            bar.set_postfix(loss=f"{log.losses[-1]:.3f}", refresh=False)
            bar.update(session.step - bar.n)
            if on_report is not None:
                on_report(log)
        if session.step % snapshot_every == 0 or session.step == cfg.optim.steps:
            log.snapshots.append(_snapshot(session, out_dir))
    bar.close()
    session.save()
    return log


def model_at(session, snapshot: Snapshot) -> Seq2Seq:
    """A CPU copy of the session's model with the weights of ``snapshot`` (eval mode)."""
    model = Seq2Seq(session.model.cfg)
    model.load_state_dict(snapshot.state)
    return model.eval()


def training_batch(session, rows: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``rows`` training pairs as a padded batch on the session's device:
    (src (B, Ts), tgt_in (B, Tt), tgt_out (B, Tt))."""
    return session.train_split.batch(list(range(min(rows, len(session.train_split)))), session.device)


def validation_batch(session, rows: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``rows`` validation pairs as a padded batch on the session's device, like :func:`training_batch`."""
    return session.val_split.batch(list(range(min(rows, len(session.val_split)))), session.device)


def package_loss(logits: Tensor, tgt_out: Tensor, pad_id: int, label_smoothing: float) -> Tensor:
    """The loss the package's training step minimises: label-smoothed cross-entropy summed over the real
    target tokens, divided by their number (logits (B, Tt, V), tgt_out (B, Tt))."""
    summed = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=pad_id,
                             label_smoothing=label_smoothing, reduction="sum")  # fmt: skip
    return summed / (tgt_out != pad_id).sum()


class LiveLoss:
    """A loss plot redrawn in place as training reports (one figure, updated through a display handle)."""

    def __init__(self, total_steps: int, title: str = "training loss, as it falls") -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.figure, self.ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
        self.total_steps, self.title = total_steps, title
        self._draw(TrainingLog())
        self.handle = display(self.figure, display_id=True)
        plt.close(self.figure)  # shown through the handle only, not again at the end of the cell

    def _draw(self, log: TrainingLog) -> None:
        ax = self.ax
        ax.clear()
        ax.plot(log.steps, log.losses, "-", label="training (label-smoothed)")
        checks = [s for s in log.snapshots if s.step > 0]
        if checks:
            ax.plot([s.step for s in checks], [s.val_loss for s in checks], "o-", label="validation")
        ax.set_xlim(0, self.total_steps)
        ax.set_xlabel("optimizer step", fontsize=9)
        ax.set_ylabel("loss per target token (nats)", fontsize=9)
        ax.set_title(self.title, fontsize=10)
        ax.legend(fontsize=8)

    def update(self, log: TrainingLog) -> None:
        """Redraw with everything ``log`` holds so far."""
        self._draw(log)
        if self.handle is not None:
            self.handle.update(self.figure)
