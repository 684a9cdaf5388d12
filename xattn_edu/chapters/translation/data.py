"""The chapter's training run: which data, which model, how long; and its sentence pairs.

Two data sources, one notebook:

* ``"synthetic"`` (the default, offline): the package's English→German grammar with gold word
  alignments. A small model trains on a 2-core CPU in a few minutes (seconds in fast mode).
* ``"multi30k"``: German→English image captions, read from a folder holding the raw files
  (``train.de.gz``, ``val.en.gz``, ``test_2016_flickr.de.gz``, ...; the ``--data-dir`` of the CLI), or
  downloaded when no folder is given. It uses the package's ``multi30k`` preset on a GPU and its
  ``multi30k-cpu`` preset (sized for 2 CPU cores) elsewhere; there are no gold alignments, so the
  alignment sections are skipped.

The test split is never loaded here: only :mod:`~xattn_edu.chapters.translation.evaluation` reads it,
once, at the end. Tokenizers are fitted on the training split only (the chapter measures why).

Every call into :mod:`xattn_edu.translate` for data sits in this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from xattn_edu.translate.config import PRESETS, RunConfig
from xattn_edu.translate.corpus import Corpus, check_pairs, fit_tokenizers, load_splits
from xattn_edu.translate.data import multi30k

SOURCES = ("synthetic", "multi30k")
TEST_SETS = multi30k.TEST_SETS
"""The published Multi30k test sets (German and English sides), by file name."""
FAST_MULTI30K_PAIRS = 2000
"""Training pairs kept in fast mode from a large Multi30k training file."""


@dataclass(frozen=True)
class ChapterRun:
    """What the chapter trains and how it looks at it."""

    config: RunConfig  # the package's run config: model, data, tokenizer, optimisation
    snapshot_every: int  # steps between the checkpoints kept for the slider and the curves
    analysis_pairs: int  # validation pairs whose cross-attention is read at every checkpoint
    test_set: str  # Multi30k: the published test set scored at the end (synthetic: its own test split)
    fast: bool  # the shrunken run of XATTN_FAST=1

    @property
    def source(self) -> str:
        """"synthetic" or "multi30k"."""
        return self.config.data.source

    @property
    def has_alignments(self) -> bool:
        """Whether gold word alignments exist (the synthetic corpus with its word tokenizer)."""
        return self.source == "synthetic" and self.config.tokenizer.kind == "word"


# The chapter's synthetic model: two layers a side (the per-layer pictures need two), on the schedule the
# `tiny` preset had before the main job was tuned for speed (issue 18), and no early stop.
_SYNTHETIC_BASE = {"model.n_encoder_layers": 2, "model.n_decoder_layers": 2, "optim.lr": 2e-3,
                   "optim.max_tokens": 2000, "eval_every": 100, "save_every": 100, "stop_exact_match": 0.0}
_SYNTHETIC_FULL = {**_SYNTHETIC_BASE, "data.n_train": 20_000, "data.n_val": 500, "data.n_test": 1_000,
                   "optim.steps": 500, "optim.warmup": 50, "log_every": 10, "val_sample": 100}
_SYNTHETIC_FAST = {**_SYNTHETIC_BASE, "model.d_model": 64, "model.d_ff": 128, "data.n_train": 1_500,
                   "data.n_val": 100, "data.n_test": 100, "optim.steps": 30, "optim.warmup": 10,
                   "optim.max_tokens": 600, "log_every": 5, "val_sample": 20}
_MULTI30K_FAST = {"model.d_model": 32, "model.n_heads": 4, "model.n_encoder_layers": 2, "model.n_decoder_layers": 2,
                  "model.d_ff": 64, "model.dropout": 0.0, "tokenizer.vocab_size": 400, "optim.steps": 10,
                  "optim.warmup": 3, "optim.max_tokens": 1_500, "log_every": 5, "val_sample": 10}


def chapter_run(source: str = "synthetic", *, fast: bool, data_dir: str | Path | None = None,
                test_set: str = "test_2016_flickr", device: torch.device | None = None) -> ChapterRun:  # fmt: skip
    """The run the notebook trains: the synthetic corpus on a CPU, or Multi30k (the GPU preset on a GPU).

    Args:
        source: "synthetic" or "multi30k".
        fast: shrink everything to seconds (XATTN_FAST=1).
        data_dir: Multi30k only: the folder holding the raw files (None: download them).
        test_set: Multi30k only: the published test set scored at the end, one of :data:`TEST_SETS`.
        device: where it will train (chooses the Multi30k model size); default CUDA when present.

    Raises:
        ValueError: an unknown source or test set, or a data folder for the synthetic corpus.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if test_set not in TEST_SETS:
        raise ValueError(f"unknown Multi30k test set {test_set!r}; choose one of {', '.join(TEST_SETS)}")
    if source == "synthetic":
        if data_dir is not None:
            raise ValueError("data_dir names a folder of Multi30k files; the synthetic corpus is generated")
        config = PRESETS["tiny"].with_values(_SYNTHETIC_FAST if fast else _SYNTHETIC_FULL)
        return ChapterRun(config, 10 if fast else 50, 30 if fast else 200, test_set, fast)
    gpu = (device or torch.device("cuda" if torch.cuda.is_available() else "cpu")).type == "cuda"
    preset = PRESETS["multi30k" if gpu else "multi30k-cpu"]  # the package's recipe for the machine it runs on
    config = preset.with_values({**(_MULTI30K_FAST if fast else {}), "data.data_dir": data_dir})
    steps = config.optim.steps
    return ChapterRun(config, max(1, steps // 8), 30 if fast else 200, test_set, fast)


@dataclass
class ChapterData:
    """The training and validation pairs, the tokenizers fitted on training, and the gold alignments."""

    corpus: Corpus  # train and val pairs and the tokenizers; its test list stays empty (see evaluation)
    val_alignments: list | None  # gold (source word, target word) links of each validation pair, or None


def load_data(run: ChapterRun) -> ChapterData:
    """The run's training and validation pairs, tokenizers fitted on the training pairs only.

    Synthetic: the splits the run config describes (disjoint, with gold alignments). Multi30k: ``train``
    and ``val`` from the run's folder (or the download cache), the first :data:`FAST_MULTI30K_PAIRS`
    training pairs in fast mode. The test pairs are not read.
    """
    data = run.config.data
    if run.source == "synthetic":
        splits = load_splits(data)  # generated together, so the splits are disjoint; the test pairs stay unused
        train, val, gold = splits.train, splits.val, splits.alignments["val"]
    else:
        train, val = (check_pairs(multi30k.load(split, data_dir=data.data_dir), f"Multi30k {split}")
                      for split in ("train", "val"))  # fmt: skip
        train, gold = (train[:FAST_MULTI30K_PAIRS] if run.fast else train), None
    src_tok, tgt_tok = fit_tokenizers(run.config.tokenizer, train)
    return ChapterData(Corpus(train, val, [], src_tok, tgt_tok), gold)


def alignment_lines(source: list[str], target: list[str], links) -> list[str]:
    """Each target word with the source words the gold links join it to, e.g. ``"  2 sieht    <- sees"``."""
    linked: dict[int, list[str]] = {}
    for s, t in sorted(links):
        linked.setdefault(t, []).append(source[s])
    width = max(map(len, target), default=0)
    return [f"{t:3d} {word:<{width}} <- {' '.join(linked.get(t, ['(nothing)']))}" for t, word in enumerate(target)]
