"""Claim: a vocabulary fitted on every split leaks test words into the model; fit it on training only.

Two measurements:

* :func:`word_leak` (word vocabularies): which test word types never occur in training. A vocabulary
  built on all splits has an entry for each of them, so the model's input and output layers are sized
  and indexed by test data, and the unknown-word rate of the test set reads 0 % when an honest
  vocabulary would read them as ``<unk>``. :func:`synthetic_leak_table` measures it for several sizes
  of the synthetic training split.
* :func:`subword_leak` (sentencepiece): a subword model fitted on all splits learns test words as
  pieces of their own; measured as pieces per test word and the share of test words kept whole, with
  the model fitted on training only and on all splits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from xattn_edu.translate.data import synthetic
from xattn_edu.translate.tokenizers import SentencePieceTokenizer


@dataclass(frozen=True)
class WordLeak:
    """Test words a training-only vocabulary lacks: what an all-splits vocabulary would take from the test set."""

    train_sentences: int  # sentences the training vocabulary is built from
    test_tokens: int  # running words of the test side
    test_types: int  # distinct words of the test side
    unseen_types: int  # distinct test words that never occur in training
    unseen_share: float  # fraction of the test's running words of those types (<unk> to an honest vocabulary)
    examples: tuple[str, ...]  # a few of them, most frequent first


def word_leak(train: Sequence[str], test: Sequence[str], n_examples: int = 5) -> WordLeak:
    """Compare the words of ``test`` with those of ``train`` (whitespace-separated, as written)."""
    known = {word for sentence in train for word in sentence.split()}
    counts = Counter(word for sentence in test for word in sentence.split())
    unseen = {word: n for word, n in counts.items() if word not in known}
    examples = tuple(sorted(unseen, key=lambda w: (-unseen[w], w))[:n_examples])
    total = sum(counts.values())
    return WordLeak(len(train), total, len(counts), len(unseen), sum(unseen.values()) / max(1, total), examples)


def synthetic_leak_table(sizes: Sequence[int], n_test: int = 1000, seed: int = 0, side: str = "tgt") -> list[WordLeak]:
    """:func:`word_leak` of the synthetic corpus's test split against training splits of each size.

    ``side``: "src" (English) or "tgt" (German). Each size draws its own disjoint splits with ``seed``.
    """
    rows = []
    for size in sizes:
        splits = synthetic.make_splits(size, 0, n_test, seed=seed)
        text = (lambda p: p.src_text) if side == "src" else (lambda p: p.tgt_text)
        rows.append(word_leak([text(p) for p in splits.train], [text(p) for p in splits.test]))
    return rows


@dataclass(frozen=True)
class SubwordLeak:
    """How a subword model fitted on all splits cuts the test words, against one fitted on training only."""

    vocab_size: int  # pieces asked for
    pieces_per_word_train_only: float  # mean pieces per test word, model fitted on training
    pieces_per_word_all_splits: float  # the same, model fitted on training + validation + test
    whole_words_train_only: float  # fraction of test words that are one piece, model fitted on training
    whole_words_all_splits: float  # the same, all splits


def _cuts(tokenizer: SentencePieceTokenizer, test: Sequence[str]) -> tuple[float, float]:
    """(mean pieces per word, fraction of words that are one piece) over the test sentences."""
    pieces = [sum(piece != "\u2581" for piece in tokenizer.tokens(word))  # a lone word-start mark is no piece
              for sentence in test for word in sentence.split()]
    return sum(pieces) / max(1, len(pieces)), sum(n == 1 for n in pieces) / max(1, len(pieces))


def subword_leak(train: Sequence[str], other: Sequence[str], test: Sequence[str], vocab_size: int) -> SubwordLeak:
    """Fit two sentencepiece models (on ``train``; on ``train + other + test``) and cut the test words with each."""
    honest = SentencePieceTokenizer.train(list(train), vocab_size)
    leaky = SentencePieceTokenizer.train([*train, *other, *test], vocab_size)
    (honest_pieces, honest_whole), (leaky_pieces, leaky_whole) = _cuts(honest, test), _cuts(leaky, test)
    return SubwordLeak(vocab_size, honest_pieces, leaky_pieces, honest_whole, leaky_whole)


def synthetic_subword_leak(n_train: int, n_held_out: int, vocab_size: int, seed: int = 0) -> SubwordLeak:
    """:func:`subword_leak` on the German side of fresh synthetic splits (``n_train`` and ``n_held_out`` pairs)."""
    splits = synthetic.make_splits(n_train, 0, n_held_out, seed=seed)
    return subword_leak([p.tgt_text for p in splits.train], [], [p.tgt_text for p in splits.test], vocab_size)
