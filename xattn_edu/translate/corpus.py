"""The sentence pairs and tokenizers a training run uses.

A :class:`~xattn_edu.translate.train.TrainConfig` names its data source:

* ``"synthetic"`` (default, offline): disjoint splits from :mod:`xattn_edu.translate.data.synthetic`,
  drawn deterministically from the config's sizes and ``data_seed``;
* ``"multi30k"``: German→English from :mod:`xattn_edu.translate.data.multi30k` (downloaded once, or
  read from ``data_dir``);
* ``"text"``: your own line-aligned files (:class:`TextFiles`); without validation files a
  seeded sample of the training pairs is held out for validation.

Tokenizers are fitted on the training split only: word-level for text that is already
tokenized (the synthetic corpus), one joint sentencepiece model for both sides otherwise.

Ids as the model sees them: a source is its tokens then ``<eos>``; a target is
``<bos>``, its tokens, ``<eos>`` (the decoder reads ``target[:-1]`` and predicts
``target[1:]``). :func:`encode_source` and :func:`encode_target` are the single place
this is decided; decoding uses the same functions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xattn_edu.common.errors import UserError
from xattn_edu.translate.data import multi30k, synthetic
from xattn_edu.translate.data.parallel_text import read_pairs
from xattn_edu.translate.tokenizers import SentencePieceTokenizer, Tokenizer, WordTokenizer

if TYPE_CHECKING:  # train.py imports this module
    from xattn_edu.translate.train import TrainConfig

Pair = tuple[str, str]  # (source sentence, target sentence)
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class TextFiles:
    """Plain parallel text (UTF-8, plain or gzip): two line-aligned files, or one ``source<TAB>target`` file."""

    train_src: Path  # training source sentences, one per line (or the TSV of pairs when train_tgt is None)
    train_tgt: Path | None = None  # training target sentences, line-aligned with train_src; None: train_src is a TSV
    val_src: Path | None = None  # validation source (or TSV); None: hold out part of the training pairs
    val_tgt: Path | None = None  # validation target; None with val_src set: val_src is a TSV


@dataclass
class Corpus:
    """Sentence pairs of every split and the tokenizers fitted on the training split."""

    train: list[Pair]  # training pairs
    val: list[Pair]  # validation pairs
    test: list[Pair]  # test pairs (empty for plain files)
    src_tokenizer: Tokenizer  # source text → ids
    tgt_tokenizer: Tokenizer  # target text → ids (the same object when shared)


@dataclass
class EncodedPairs:
    """Id sequences of the pairs that fit the model, and how many did not."""

    src: list[list[int]]  # per pair: source ids then eos
    tgt: list[list[int]]  # per pair: bos, target ids, eos
    dropped: int  # pairs left out because a side is longer than the model's max_len


def encode_source(tokenizer: Tokenizer, text: str) -> list[int]:
    """Model input ids of a source sentence: its tokens then ``<eos>``."""
    return [*tokenizer.encode(text), tokenizer.eos_id]


def encode_target(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of a target sentence: ``<bos>``, its tokens, ``<eos>``."""
    return [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]


def fits(src_ids: list[int], tgt_ids: list[int], max_len: int) -> bool:
    """Whether the model's positions cover this pair (the decoder reads ``len(tgt_ids) - 1`` ids)."""
    return len(src_ids) <= max_len and len(tgt_ids) - 1 <= max_len


def encode_pairs(pairs: list[Pair], src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int) -> EncodedPairs:
    """Encode pairs, leaving out (and counting) those longer than ``max_len`` positions."""
    encoded = EncodedPairs([], [], 0)
    for src_text, tgt_text in pairs:
        src, tgt = encode_source(src_tok, src_text), encode_target(tgt_tok, tgt_text)
        if fits(src, tgt, max_len):
            encoded.src.append(src)
            encoded.tgt.append(tgt)
        else:
            encoded.dropped += 1
    return encoded


def _check_pairs(name: str, pairs: list[Pair]) -> list[Pair]:
    for number, (src, tgt) in enumerate(pairs, start=1):
        if not src.strip() or not tgt.strip():
            raise UserError(f"{name}, pair {number}: empty sentence (every line needs text on both sides)")
    return pairs


def _text_splits(cfg: TrainConfig, files: TextFiles) -> dict[str, list[Pair]]:
    train = _check_pairs(str(files.train_src), read_pairs(files.train_src, files.train_tgt))
    if files.val_tgt is not None and files.val_src is None:
        raise UserError("a validation target file needs its validation source file")
    if files.val_src is not None:
        val = _check_pairs(str(files.val_src), read_pairs(files.val_src, files.val_tgt))
        return {"train": train, "val": val, "test": []}
    n_val = min(cfg.n_val, len(train) // 10)
    if n_val == 0:
        raise UserError(f"{files.train_src}: {len(train)} pairs are too few to hold out validation pairs")
    order = list(range(len(train)))
    random.Random(cfg.data_seed).shuffle(order)
    held_out = set(order[:n_val])
    return {
        "train": [p for i, p in enumerate(train) if i not in held_out],
        "val": [train[i] for i in sorted(held_out)],
        "test": [],
    }


def load_splits(
    cfg: TrainConfig, *, data_dir: str | Path | None = None, text_files: TextFiles | None = None
) -> dict[str, list[Pair]]:
    """``{"train": [...], "val": [...], "test": [...]}`` sentence pairs of the config's data source."""
    if cfg.data == "synthetic":
        splits = synthetic.make_splits(cfg.n_train, cfg.n_val, cfg.n_test, seed=cfg.data_seed)
        return {name: [(p.src_text, p.tgt_text) for p in getattr(splits, name)] for name in SPLIT_NAMES}
    if cfg.data == "multi30k":
        return {name: _check_pairs(f"Multi30k {name}", multi30k.load(name, data_dir=data_dir)) for name in SPLIT_NAMES}
    if cfg.data == "text":
        if text_files is None:
            raise UserError("the 'text' data source needs training files (--train-src and --train-tgt)")
        return _text_splits(cfg, text_files)
    raise UserError(f"unknown data source {cfg.data!r}; choose synthetic, multi30k or text")


def fit_tokenizers(cfg: TrainConfig, train: list[Pair]) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers fitted on the training pairs only."""
    if cfg.tokenizer == "word":
        src = WordTokenizer.train([s for s, _ in train], min_count=cfg.min_count)
        return src, WordTokenizer.train([t for _, t in train], min_count=cfg.min_count)
    if cfg.tokenizer == "sentencepiece":
        joint = SentencePieceTokenizer.train([s for s, _ in train] + [t for _, t in train], cfg.vocab_size)
        return joint, joint
    raise UserError(f"unknown tokenizer {cfg.tokenizer!r}; choose word or sentencepiece")


def build_corpus(
    cfg: TrainConfig,
    *,
    data_dir: str | Path | None = None,
    text_files: TextFiles | None = None,
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
) -> Corpus:
    """The splits of the config's data source, with tokenizers fitted on train (or the ones given)."""
    splits = load_splits(cfg, data_dir=data_dir, text_files=text_files)
    if not splits["train"]:
        raise UserError("the training split is empty")
    src_tok, tgt_tok = tokenizers or fit_tokenizers(cfg, splits["train"])
    return Corpus(splits["train"], splits["val"], splits["test"], src_tok, tgt_tok)
