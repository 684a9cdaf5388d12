"""Training checkpoints: one self-contained file, replaced atomically.

A checkpoint directory holds ``checkpoint.pt`` with everything needed to translate
(model weights and configuration, both tokenizers, the training configuration) and to
continue training exactly where it stopped (optimizer, learning-rate schedule, step,
position in the batch plan, random number generator states).

Writes go to a temporary file in the same directory that is then renamed over the old
one (``os.replace`` is atomic), so an interrupted or failed write never leaves a broken
checkpoint behind: the directory always holds the last complete one.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from xattn_edu.common.errors import UserError
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig
from xattn_edu.translate.tokenizers import Tokenizer, tokenizer_from_dict

if TYPE_CHECKING:  # train.py imports this module; the config type is only needed for hints
    from xattn_edu.translate.train import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"


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


def save(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically; return the path.

    ``state`` is built by the training loop (see :func:`xattn_edu.translate.train.train`): keys
    ``model``, ``model_config``, ``train_config``, ``src_tokenizer``, ``tgt_tokenizer``
    (``to_dict()`` form), ``optimizer``, ``scheduler``, ``step``, ``position``, ``rng``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory)
    fd, tmp_name = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def load(directory: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """Read the state dict written by :func:`save`; :class:`UserError` if missing or damaged.

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
    missing = {"model", "model_config", "train_config", "src_tokenizer", "tgt_tokenizer"} - set(state)
    if missing:
        raise UserError(f"{path}: not an xattn checkpoint (missing {', '.join(sorted(missing))})")
    return state


def read_train_config(directory: str | Path) -> TrainConfig:
    """The training settings saved in ``directory``'s checkpoint."""
    from xattn_edu.translate.train import TrainConfig

    return TrainConfig.from_dict(load(directory, mmap=True)["train_config"])


@dataclass
class LoadedModel:
    """A trained translator ready for decoding."""

    model: Seq2Seq  # in eval mode, on the requested device
    src_tokenizer: Tokenizer  # source text → ids
    tgt_tokenizer: Tokenizer  # target ids → text
    train_config: TrainConfig  # how it was trained (preset, data source, ...)
    step: int  # optimizer steps taken


def load_model(directory: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the model and tokenizers saved in ``directory`` (eval mode, on ``device``, default CPU)."""
    from xattn_edu.translate.train import TrainConfig

    device = torch.device(device or "cpu")
    state = load(directory, map_location=device)
    model = Seq2Seq(Seq2SeqConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return LoadedModel(
        model=model.to(device).eval(),
        src_tokenizer=tokenizer_from_dict(state["src_tokenizer"]),
        tgt_tokenizer=tokenizer_from_dict(state["tgt_tokenizer"]),
        train_config=TrainConfig.from_dict(state["train_config"]),
        step=int(state["step"]),
    )
