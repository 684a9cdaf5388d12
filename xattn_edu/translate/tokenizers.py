"""Tokenizers: text ↔ integer ids, fitted on training sentences only.

Two tokenizers share one interface (:class:`Tokenizer`):

* :class:`WordTokenizer` splits on whitespace and keeps every word seen at least
  ``min_count`` times in the training sentences; anything else becomes ``<unk>``. It suits
  the chapters and the synthetic corpus, whose text is already tokenized.
* :class:`SentencePieceTokenizer` learns subword units with the ``sentencepiece``
  library, trained in memory from an iterator of sentences (no temporary files), so the
  model is a few hundred kilobytes of bytes that travel inside a checkpoint. For a
  translation corpus we train **one joint model on both sides** (``train(src + tgt)``):
  names and numbers get the same pieces in both languages and source and target can
  share an embedding table (each side keeps its own written form: :meth:`~SentencePieceTokenizer.with_form`).
  Two per-side models work too: train one per language.

Both use the same special ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3.
:meth:`~Tokenizer.encode` returns the ids of the text only; add ``bos_id``/``eos_id``
where a model needs them. :meth:`~Tokenizer.decode` drops pad/bos/eos. Training is
deterministic: the same sentences give the same vocabulary (and the same model bytes).

Training also records how the sentences are written (:class:`~xattn_edu.translate.textform.TextForm`:
lower case, punctuation split off, Unicode NFC) in the tokenizer's ``form``; ``encode``,
``tokens`` and ``unknown`` first bring any text into that form, so "The dog sees the man." reads
like the training sentence "the dog sees the man ." (the training text itself is unchanged by it).
``form.detokenize`` turns decoded text back into written text. A special token typed as text
(``"<eos>"``) is an unknown word, never the special id.

Persistence: ``to_dict()`` gives a JSON-ready dict (store it in a checkpoint),
:func:`tokenizer_from_dict` rebuilds it; ``save(path)`` / :func:`load_tokenizer` do the
same through a JSON file.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import sentencepiece as spm

from xattn_edu.common.errors import UserError
from xattn_edu.translate.textform import TextForm

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_DROPPED_ON_DECODE = frozenset({PAD_ID, BOS_ID, EOS_ID})


@runtime_checkable
class Tokenizer(Protocol):
    """What the training and decoding code relies on."""

    pad_id: int
    bos_id: int
    eos_id: int
    unk_id: int
    form: TextForm  # how the training text is written; encode() brings input into this form

    @property
    def vocab_size(self) -> int:
        """V, the number of ids (specials included); ids are ``0 … V-1``."""
        ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no bos/eos added)."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, skipping pad/bos/eos."""
        ...

    def tokens(self, text: str) -> list[str]:
        """The token strings ``encode`` maps to ids (labels for attention plots)."""
        ...

    def unknown(self, text: str) -> list[str]:
        """The parts of ``text`` (in the tokenizer's form) that ``encode`` maps to ``<unk>``, in order."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description from which :func:`tokenizer_from_dict` rebuilds it."""
        ...

    def save(self, path: str | Path) -> None:
        """Write ``to_dict()`` as JSON to ``path``."""
        ...


class _Persistent:
    """Saving, loading and equality through ``to_dict``, shared by both tokenizers."""

    kind = ""
    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path):
        """Read a tokenizer saved with ``save``; it must be of this class."""
        tokenizer = load_tokenizer(path)
        if not isinstance(tokenizer, cls):
            raise UserError(f"{path}: holds a {tokenizer.kind} tokenizer, not a {cls.kind} one")
        return tokenizer

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


class WordTokenizer(_Persistent):
    """Whitespace-separated words; unknown words map to ``<unk>``."""

    kind = "word"

    def __init__(self, vocabulary: Sequence[str], form: TextForm | None = None) -> None:
        """``vocabulary`` lists every token by id and must start with the four specials.

        ``form`` is how the training text is written; None infers it from the vocabulary's words
        (what tokenizers saved before forms were recorded get).
        """
        if tuple(vocabulary[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a word vocabulary must start with {SPECIALS}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("a word vocabulary must not repeat tokens")
        self.vocabulary = tuple(vocabulary)
        self.form = form if form is not None else TextForm.infer(self.vocabulary[len(SPECIALS) :])
        self._ids = {token: i for i, token in enumerate(self.vocabulary) if token not in SPECIALS}

    @classmethod
    def train(cls, sentences: Iterable[str], min_count: int = 1) -> WordTokenizer:
        """Keep the words seen at least ``min_count`` times, most frequent first (ties: alphabetical);
        record the sentences' written form."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        sentences = list(sentences)
        form = TextForm.infer(sentences)
        counts = Counter(word for sentence in sentences for word in form.normalize(sentence).split())
        kept = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))  # fmt: skip
        return cls([*SPECIALS, *kept], form)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(word, UNK_ID) for word in self.form.normalize(text).split()]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocabulary[i] for i in map(int, ids) if i not in _DROPPED_ON_DECODE)

    def tokens(self, text: str) -> list[str]:
        return [word if word in self._ids else UNK for word in self.form.normalize(text).split()]

    def unknown(self, text: str) -> list[str]:
        return [word for word in self.form.normalize(text).split() if word not in self._ids]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": list(self.vocabulary), "form": self.form.to_dict()}


class SentencePieceTokenizer(_Persistent):
    """Subword units learned by sentencepiece (unigram or BPE), kept as model bytes."""

    kind = "sentencepiece"

    def __init__(self, model: bytes, form: TextForm | None = None) -> None:
        """``model`` is a serialized sentencepiece model (``model_bytes`` of a trained one); ``form`` how
        its training text is written (None: as typed, what models saved before forms were recorded get)."""
        self.model_bytes = bytes(model)
        self.form = form or TextForm()
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_bytes)
        found = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id())
        if found != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
            raise ValueError(f"sentencepiece model has special ids {found}, expected (0, 1, 2, 3)")

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int = 8000,
        *,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
    ) -> SentencePieceTokenizer:
        """Learn up to ``vocab_size`` pieces from ``sentences`` (fewer if the text is small); record their form."""
        sentences = list(sentences)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                hard_vocab_limit=False,  # a small corpus yields a smaller vocabulary, not an error
                pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
                pad_piece=PAD, bos_piece=BOS, eos_piece=EOS, unk_piece=UNK,
                num_threads=1,  # single-threaded training is reproducible
                minloglevel=2,  # keep the trainer's progress log off stderr
            )  # fmt: skip
        except RuntimeError as err:
            raise UserError(f"sentencepiece training failed: {err}") from err
        return cls(model.getvalue(), TextForm.infer(sentences))

    def with_form(self, form: TextForm) -> SentencePieceTokenizer:
        """The same model for text written in ``form`` (one joint model, each language with its own form)."""
        return SentencePieceTokenizer(self.model_bytes, form)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(self.form.normalize(text), out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([i for i in map(int, ids) if i not in _DROPPED_ON_DECODE])

    def tokens(self, text: str) -> list[str]:
        return self._sp.encode(self.form.normalize(text), out_type=str)

    def unknown(self, text: str) -> list[str]:
        text = self.form.normalize(text)
        pieces = zip(self._sp.encode(text, out_type=int), self._sp.encode(text, out_type=str), strict=True)
        return [piece.lstrip("\u2581") for i, piece in pieces if i == UNK_ID]  # an unknown piece is its own text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": base64.b64encode(self.model_bytes).decode("ascii"),
                "form": self.form.to_dict()}  # fmt: skip


def tokenizer_from_dict(state: dict[str, Any]) -> WordTokenizer | SentencePieceTokenizer:
    """Rebuild a tokenizer from ``to_dict()`` output."""
    kind = state.get("kind")
    form = TextForm.from_dict(state["form"]) if "form" in state else None  # absent: saved before forms
    if kind == WordTokenizer.kind:
        return WordTokenizer(state["vocabulary"], form)
    if kind == SentencePieceTokenizer.kind:
        return SentencePieceTokenizer(base64.b64decode(state["model"]), form)
    raise UserError(f"unknown tokenizer kind {kind!r}")


def load_tokenizer(path: str | Path) -> WordTokenizer | SentencePieceTokenizer:
    """Read a tokenizer written by ``save`` (either kind)."""
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return tokenizer_from_dict(state)
    except FileNotFoundError as err:
        raise UserError(f"{path}: no such tokenizer file") from err
    except (UserError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as err:
        raise UserError(f"{path}: not a saved tokenizer ({err})") from err
