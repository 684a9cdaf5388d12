"""Translate people's text with a trained checkpoint: one result per input line, whatever happens.

What a person types is not the training data's form: "The dog sees the man." against the
training sentence "the dog sees the man .". The tokenizers bring it into that form themselves
(:mod:`xattn_edu.translate.textform`: case, punctuation split, Unicode composition, as the
training text has them), and the output is detokenized ("Der Hund sieht den Mann.").

The contract of :func:`translate_lines`, which ``xattn translate`` and ``xattn evaluate`` rely on:

* exactly one :class:`LineResult` per input line, in order;
* an empty (or blank) line gives an empty translation, not an error and not a missing line;
* a line that cannot be translated (longer than the model's positions) gets ``text=None`` and an
  ``error`` saying why; every other line is still translated;
* words the model never saw are listed in ``unknown`` (they are read as ``<unk>``), so the caller
  can warn about them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xattn_edu.common.errors import UserError
from xattn_edu.translate.checkpoint import LoadedModel
from xattn_edu.translate.corpus import encode_source
from xattn_edu.translate.decode import translate_ids


@dataclass(frozen=True)
class EncodedLine:
    """One input line made ready for the model."""

    ids: list[int] | None  # source ids then <eos>; None for a blank line or one that does not fit
    error: str | None  # why the line cannot be translated, or None
    unknown: tuple[str, ...]  # words of the line the source vocabulary lacks (read as <unk>)


@dataclass(frozen=True)
class LineResult:
    """The outcome for one input line."""

    text: str | None  # the translation as written (detokenized); "" for a blank line; None if it failed
    error: str | None  # why the line could not be translated, or None
    unknown: tuple[str, ...]  # words of the line the model never saw in training (each read as <unk>)


def check_beam(beam_size: int) -> None:
    """:class:`UserError` unless ``beam_size`` >= 1."""
    if beam_size < 1:
        raise UserError(f"--beam must be at least 1, got {beam_size}")


def encode_line(loaded: LoadedModel, text: str) -> EncodedLine:
    """Source ids of ``text`` in the training data's form, or why it cannot be translated."""
    if not text.strip():
        return EncodedLine(None, None, ())
    tokenizer, max_len = loaded.src_tokenizer, loaded.model.cfg.max_len
    ids = encode_source(tokenizer, text)
    unknown = tuple(tokenizer.unknown(text))
    if len(ids) > max_len:
        return EncodedLine(None, f"{len(ids)} tokens (with <eos>), more than the model's maximum of {max_len}",
                           unknown)  # fmt: skip
    return EncodedLine(ids, None, unknown)


def decode_lines(loaded: LoadedModel, encoded: Sequence[EncodedLine], *, beam_size: int = 1,
                 batch_size: int = 128) -> list[str | None]:  # fmt: skip
    """The written translation of every encoded line ("" for a blank line, None for one that failed)."""
    check_beam(beam_size)
    tgt = loaded.tgt_tokenizer
    todo = [line.ids for line in encoded if line.ids is not None]
    outputs = iter(translate_ids(loaded.model, todo, bos_id=tgt.bos_id, eos_id=tgt.eos_id, beam_size=beam_size,
                                 batch_size=batch_size) if todo else [])  # fmt: skip
    return [
        tgt.form.detokenize(tgt.decode(next(outputs).tokens)) if line.ids is not None
        else None if line.error else ""
        for line in encoded
    ]  # fmt: skip


def translate_lines(loaded: LoadedModel, lines: Sequence[str], *, beam_size: int = 1,
                    batch_size: int = 128) -> list[LineResult]:  # fmt: skip
    """Translate every line it can (see the module doc): one :class:`LineResult` per line, in order."""
    encoded = [encode_line(loaded, line) for line in lines]
    texts = decode_lines(loaded, encoded, beam_size=beam_size, batch_size=batch_size)
    return [LineResult(text, line.error, line.unknown) for text, line in zip(texts, encoded, strict=True)]
