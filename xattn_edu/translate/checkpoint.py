"""Training checkpoints: one self-contained, versioned file, replaced atomically.

A checkpoint directory holds ``checkpoint.pt``: a :class:`Checkpoint` with everything needed to
translate (the run's config with its model config, the weights, both tokenizers) and, for a
training run, to continue exactly where it stopped (:class:`ResumeState`: optimizer,
learning-rate schedule, position in the batch plan, random number generator states).

On disk it is a plain dict (``torch.load(weights_only=True)`` reads it) with a
``format_version``:

* format 2 (this one): ``config`` is :meth:`RunConfig.to_dict` (nested: model, data with its
  files, tokenizer, optim);
* format 1 (before the package was split into layers; no version key): a flat ``train_config``
  as the old ``TrainConfig`` wrote it, the model settings repeated in ``model_config``, and the
  resume state at the top level. It is read and migrated; a run trained on text files then
  lacks the files' names, which format 1 did not record.

Writes go through :func:`xattn_edu.common.files.atomic_write`, so an interrupted or failed
write never leaves a broken checkpoint behind: the directory always holds the last complete one.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xattn_edu.common.errors import UserError
from xattn_edu.common.files import atomic_write
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate.config import RunConfig
from xattn_edu.translate.tokenizers import Tokenizer, tokenizer_from_dict

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 2  # what save() writes; load() also reads (and migrates) format 1

# Format 1's flat TrainConfig fields → their section in RunConfig (the model's come from model_config).
_V1_SECTIONS = {
    "data": {"data": "source", "n_train": "n_train", "n_val": "n_val", "n_test": "n_test", "data_seed": "seed"},
    "tokenizer": {"tokenizer": "kind", "min_count": "min_count", "vocab_size": "vocab_size"},
    "optim": {name: name for name in ("steps", "max_tokens", "lr", "warmup", "schedule", "weight_decay", "betas",
                                      "label_smoothing", "clip_norm")},
    "": {name: name for name in ("preset", "log_every", "eval_every", "val_sample", "save_every", "seed", "bf16",
                                 "compile")},
    "model": {name: name for name in ("d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_ff",
                                      "dropout", "max_len")},
}  # fmt: skip


def checkpoint_path(directory: str | Path) -> Path:
    """The checkpoint file inside a training output directory."""
    return Path(directory) / CHECKPOINT_FILE


def rng_states() -> dict[str, Any]:
    """The torch CPU and (when present) CUDA generator states."""
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class ResumeState:
    """What continuing a training run needs beyond its weights."""

    optimizer: dict[str, Any]  # the optimizer's state_dict()
    scheduler: dict[str, Any]  # the learning-rate scheduler's state_dict()
    position: tuple[int, int]  # (epoch, index of the next batch in that epoch's plan)
    rng: dict[str, Any]  # rank 0's generator states, as rng_states() returns them


@dataclass
class Checkpoint:
    """A trained (or training) translator as saved on disk."""

    config: RunConfig  # the run's settings, vocabulary sizes filled in
    model: dict[str, Tensor]  # the Seq2Seq state_dict()
    src_tokenizer: Tokenizer  # source text → ids
    tgt_tokenizer: Tokenizer  # target ids → text (a joint model: the same model, the target side's form)
    step: int  # optimizer steps taken
    resume: ResumeState | None = None  # None: weights only, nothing to continue

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form (format :data:`FORMAT_VERSION`)."""
        return {
            "format_version": FORMAT_VERSION, "config": self.config.to_dict(), "model": self.model,
            "src_tokenizer": self.src_tokenizer.to_dict(), "tgt_tokenizer": self.tgt_tokenizer.to_dict(),
            "step": self.step, "resume": None if self.resume is None else vars(self.resume),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, state: dict[str, Any], where: str) -> Checkpoint:
        """Read either format; :class:`UserError` (naming ``where``) for anything else."""
        version = state.get("format_version", 1 if "train_config" in state else None)
        if version is None:
            raise UserError(f"{where}: not an xattn checkpoint (missing format_version)")
        if version == 1:
            state = _migrate_v1(state, where)
        elif version != FORMAT_VERSION:
            raise UserError(f"{where}: checkpoint format {version} is not one this xattn reads (formats 1 and "
                            f"{FORMAT_VERSION}); it was written by a newer xattn")  # fmt: skip
        missing = {"config", "model", "src_tokenizer", "tgt_tokenizer", "step"} - set(state)
        if missing:
            raise UserError(f"{where}: not an xattn checkpoint (missing {', '.join(sorted(missing))})")
        resume = state.get("resume")
        return cls(
            config=RunConfig.from_dict(state["config"]), model=state["model"],
            src_tokenizer=tokenizer_from_dict(state["src_tokenizer"]),
            tgt_tokenizer=tokenizer_from_dict(state["tgt_tokenizer"]), step=int(state["step"]),
            resume=None if resume is None else ResumeState(resume["optimizer"], resume["scheduler"],
                                                           tuple(resume["position"]), resume["rng"]),
        )  # fmt: skip


def _migrate_v1(state: dict[str, Any], where: str) -> dict[str, Any]:
    """Format 1 (flat ``train_config``, no version) → format 2's fields."""
    missing = {"model", "model_config", "train_config", "src_tokenizer", "tgt_tokenizer"} - set(state)
    if missing:
        raise UserError(f"{where}: not an xattn checkpoint (missing {', '.join(sorted(missing))})")
    flat = dict(state["train_config"])
    known = {old for names in _V1_SECTIONS.values() for old in names}
    if set(flat) - known:
        raise UserError(f"{where}: checkpoint format 1 with unknown training settings {sorted(set(flat) - known)}")
    config: dict[str, Any] = {"model": dict(state["model_config"])}  # the model's settings, vocabularies included
    for section, names in _V1_SECTIONS.items():
        if section != "model":
            target = config.setdefault(section, {}) if section else config
            target.update({new: flat[old] for old, new in names.items() if old in flat})
    resume = None
    if {"optimizer", "scheduler", "position", "rng"} <= set(state):
        resume = {name: state[name] for name in ("optimizer", "scheduler", "position", "rng")}
    return {**state, "config": config, "step": state.get("step", 0), "resume": resume}


def save(directory: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``directory/checkpoint.pt`` atomically; return the path."""
    target = checkpoint_path(directory)
    with atomic_write(target) as out:
        torch.save(checkpoint.to_dict(), out)
    return target


def load(directory: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> Checkpoint:
    """Read the checkpoint written by :func:`save` (or a format-1 one); :class:`UserError` if missing or damaged.

    ``mmap=True`` maps the tensors instead of reading them (cheap when only the settings are needed).
    """
    path = checkpoint_path(directory)
    if not Path(directory).is_dir():
        raise UserError(f"{directory}: no such checkpoint directory")
    if not path.is_file():
        raise UserError(f"{directory}: no {CHECKPOINT_FILE} in it (train one with `xattn train --out {directory}`)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: damaged or not an xattn checkpoint ({first_line})") from err
    if not isinstance(state, dict):
        raise UserError(f"{path}: not an xattn checkpoint (a {type(state).__name__}, not a dict)")
    return Checkpoint.from_dict(state, str(path))


def read_config(directory: str | Path) -> RunConfig:
    """The run config saved in ``directory``'s checkpoint."""
    return load(directory, mmap=True).config


@dataclass
class LoadedModel:
    """A trained translator ready for decoding."""

    model: Seq2Seq  # in eval mode, on the requested device
    src_tokenizer: Tokenizer  # source text → ids
    tgt_tokenizer: Tokenizer  # target ids → text
    config: RunConfig  # how it was trained (preset, data and its files, model, ...)
    step: int  # optimizer steps taken


def load_model(directory: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the model and tokenizers saved in ``directory`` (eval mode, on ``device``, default CPU)."""
    device = torch.device(device or "cpu")
    saved = load(directory, map_location=device)
    model = Seq2Seq(saved.config.model)
    model.load_state_dict(saved.model)
    return LoadedModel(model.to(device).eval(), saved.src_tokenizer, saved.tgt_tokenizer, saved.config, saved.step)
