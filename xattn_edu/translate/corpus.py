"""The sentence pairs and tokenizers a training run uses.

A run's :class:`~xattn_edu.translate.config.DataConfig` names its data source:

* ``"synthetic"`` (default, offline): disjoint splits from :mod:`xattn_edu.translate.data.synthetic`,
  drawn deterministically from the config's sizes and seed, with gold word alignments;
* ``"multi30k"``: German→English from :mod:`xattn_edu.translate.data.multi30k` (downloaded once, or
  read from the config's ``data_dir``), its test sets also by their published names (``test_2017_flickr``);
* ``"text"``: your own line-aligned files, named in the config; without validation files a
  seeded sample of the training pairs is held out for validation. No test split.

A split is read when it is first asked for (:class:`Splits`), so training never reads a test
split, and evaluation reads only the one it scores.

Tokenizers are fitted on the training split only: word-level for text that is already
tokenized (the synthetic corpus), one joint sentencepiece model for both sides otherwise. Each
side's tokenizer records that side's written form (:mod:`xattn_edu.translate.textform`), so
what users type is read like the training sources.

Ids as the model sees them: a source is its tokens then ``<eos>``; a target is
``<bos>``, its tokens, ``<eos>`` (the decoder reads ``target[:-1]`` and predicts
``target[1:]``). :func:`encode_source` and :func:`encode_target` are the single place
this is decided; decoding uses the same functions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xattn_edu.common.errors import UserError
from xattn_edu.translate.config import DataConfig, RunConfig, TokenizerConfig
from xattn_edu.translate.data import multi30k, synthetic
from xattn_edu.translate.data.parallel_text import read_pairs
from xattn_edu.translate.textform import TextForm
from xattn_edu.translate.tokenizers import SentencePieceTokenizer, Tokenizer, WordTokenizer

Pair = tuple[str, str]  # (source sentence, target sentence)
Alignment = tuple[tuple[int, int], ...]  # gold (source word index, target word index) links of one pair
SPLIT_NAMES = ("train", "val", "test")


class Splits:
    """The sentence pairs of every split a data source has, each read when first asked for.

    ``splits["val"]`` (or ``splits.val``) reads that split once and keeps it; nothing else is read,
    so training never opens a test file and evaluation opens only the test set it scores. A source
    may offer more names than train, val and test (Multi30k's published test sets).
    """

    def __init__(self, readers: Mapping[str, Callable[[], list[Pair]]],
                 alignments: Mapping[str, list[Alignment]] | None = None) -> None:  # fmt: skip
        """``readers``: split name → function returning its pairs; ``alignments``: split → gold links
        per pair (synthetic corpus only)."""
        self._readers = dict(readers)
        self._read: dict[str, list[Pair]] = {}
        self.alignments = dict(alignments or {})  # split → gold links per pair (synthetic)

    @classmethod
    def of(cls, train: list[Pair], val: list[Pair], test: list[Pair] | None = None,
           alignments: Mapping[str, list[Alignment]] | None = None) -> Splits:  # fmt: skip
        """Splits already in memory (``test`` None: the source has no test split)."""
        given = {"train": train, "val": val} | ({} if test is None else {"test": test})
        splits = cls({name: (lambda pairs=pairs: pairs) for name, pairs in given.items()}, alignments)
        splits._read.update(given)
        return splits

    def __getitem__(self, name: str) -> list[Pair]:
        """The pairs of split ``name`` ("train", "val", "test", or another name the source offers; one of
        train, val and test the source lacks is empty); :class:`UserError` listing the names otherwise."""
        if name not in self._readers:
            if name in SPLIT_NAMES:
                return []
            raise UserError(f"unknown split {name!r}; choose one of {', '.join(self._readers)}")
        if name not in self._read:
            self._read[name] = self._readers[name]()
        return self._read[name]

    @property
    def train(self) -> list[Pair]:
        """The training pairs."""
        return self["train"]

    @property
    def val(self) -> list[Pair]:
        """The validation pairs."""
        return self["val"]

    @property
    def test(self) -> list[Pair]:
        """The test pairs (empty when the source has no test split)."""
        return self["test"]

    def names(self) -> list[str]:
        """Every split name the source offers (nothing is read)."""
        return list(self._readers)

    def available(self) -> list[str]:
        """The splits evaluation may default to, in the order test, val, train: those the source offers,
        less those already read and found empty (nothing is read)."""
        return [name for name in reversed(SPLIT_NAMES) if name in self._readers and self._read.get(name, True)]

    def __eq__(self, other: object) -> bool:
        """Same split names with the same pairs (reads every split of both)."""
        return (isinstance(other, Splits) and self.names() == other.names()
                and all(self[name] == other[name] for name in self.names()))  # fmt: skip

    __hash__ = None  # mutable (splits are read and kept), so not hashable


@dataclass
class Corpus:
    """Sentence pairs of every split and the tokenizers fitted on the training split."""

    train: list[Pair]  # training pairs
    val: list[Pair]  # validation pairs
    test: list[Pair]  # test pairs; empty from build_corpus (a test split is read only to evaluate: load_splits)
    src_tokenizer: Tokenizer  # source text → ids
    tgt_tokenizer: Tokenizer  # target text → ids (a joint model: the same model, the target side's form)


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


def check_pairs(pairs: list[Pair], src_name: str | Path, tgt_name: str | Path | None = None) -> list[Pair]:
    """``pairs`` (one per line of ``src_name``, and of ``tgt_name`` if the targets have their own file) if no
    side is blank; else :class:`UserError` naming the file and line of the first blank one."""
    for number, (src, tgt) in enumerate(pairs, start=1):
        if not src.strip() or not tgt.strip():
            name = src_name if not src.strip() else tgt_name or src_name
            raise UserError(f"{name}, line {number}: empty sentence (every pair needs text on both sides)")
    return pairs


def _text_splits(data: DataConfig) -> Splits:
    if data.train_src is None:
        raise UserError("the 'text' data source names no training files (--train-src); runs saved before "
                        "checkpoint format 2 did not record them")  # fmt: skip
    train = check_pairs(read_pairs(data.train_src, data.train_tgt), str(data.train_src), data.train_tgt)
    if data.val_src is not None:
        val = check_pairs(read_pairs(data.val_src, data.val_tgt), str(data.val_src), data.val_tgt)
        return Splits.of(train, val)
    n_val = min(data.n_val, len(train) // 10)
    if n_val == 0:
        raise UserError(f"{data.train_src}: {len(train)} pairs are too few to hold out validation pairs")
    order = list(range(len(train)))
    random.Random(data.seed).shuffle(order)
    held_out = set(order[:n_val])
    return Splits.of([p for i, p in enumerate(train) if i not in held_out], [train[i] for i in sorted(held_out)])


def _synthetic_splits(data: DataConfig) -> Splits:
    made = synthetic.make_splits(data.n_train, data.n_val, data.n_test, seed=data.seed)
    by_name = {name: getattr(made, name) for name in SPLIT_NAMES}
    return Splits.of(*([(p.src_text, p.tgt_text) for p in by_name[name]] for name in SPLIT_NAMES),
                     alignments={name: [p.alignment for p in pairs] for name, pairs in by_name.items()})  # fmt: skip


def _multi30k_splits(data: DataConfig) -> Splits:
    """Multi30k's splits, each read (or downloaded) only when asked for: train, val, test and every
    published test set by name (``test`` is ``test_2016_flickr``)."""

    def reader(name: str) -> Callable[[], list[Pair]]:
        return lambda: check_pairs(multi30k.load(name, data_dir=data.data_dir), f"Multi30k {name}")

    return Splits({name: reader(name) for name in multi30k.split_names()})


def load_splits(data: DataConfig) -> Splits:
    """Every split of the data source ``data`` names (the synthetic corpus with its gold alignments).

    Files are read when a split is first asked for (:class:`Splits`): a run that only trains never
    opens a test file."""
    if data.source == "synthetic":
        return _synthetic_splits(data)
    if data.source == "multi30k":
        return _multi30k_splits(data)
    return _text_splits(data)


def fit_tokenizers(cfg: TokenizerConfig, train: list[Pair]) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers fitted on the training pairs only."""
    if cfg.kind == "word":
        src = WordTokenizer.train([s for s, _ in train], min_count=cfg.min_count)
        return src, WordTokenizer.train([t for _, t in train], min_count=cfg.min_count)
    sources, targets = [s for s, _ in train], [t for _, t in train]
    joint = SentencePieceTokenizer.train(sources + targets, cfg.vocab_size)
    return joint.with_form(TextForm.infer(sources)), joint.with_form(TextForm.infer(targets))


def build_corpus(cfg: RunConfig, *, tokenizers: tuple[Tokenizer, Tokenizer] | None = None) -> Corpus:
    """The training and validation pairs of the run's data source, with tokenizers fitted on train (or the
    ones given). The test split is not read (``test`` is empty): evaluation reads it, with :func:`load_splits`."""
    splits = load_splits(cfg.data)
    if not splits.train:
        raise UserError("the training split is empty")
    src_tok, tgt_tok = tokenizers or fit_tokenizers(cfg.tokenizer, splits.train)
    return Corpus(splits.train, splits.val, [], src_tok, tgt_tok)
