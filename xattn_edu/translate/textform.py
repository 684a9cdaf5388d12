"""The written form of a corpus side, so that what people type is read the way the data was written.

A model only knows the strings it was trained on. The synthetic corpus writes English in lower
case with the full stop and the comma as tokens of their own ("the dog sees the man ."); a user
types "The dog sees the man." A :class:`TextForm` records three facts about the training text of
one side and applies them to new input (:meth:`TextForm.normalize`):

* ``nfc``: the text is in Unicode normal form C, so input is composed the same way (a "ü" typed as
  "u" plus a combining diaeresis becomes the one character the vocabulary holds);
* ``lowercase``: the text has no upper-case letter, so input is lower-cased;
* ``split_punctuation``: every run of punctuation characters (Unicode category P) stands apart as
  a token of its own, so input gets spaces around each run ("man." → "man .").

Each fact is *inferred* from the training sentences (:meth:`TextForm.infer`): it holds only if it
holds for every sentence, so normalising the training text itself changes nothing. Tokenizers
fit the form with their vocabulary, apply it in ``encode`` and store it with themselves, so a
checkpoint carries it to ``xattn translate`` and ``xattn evaluate``.

:meth:`TextForm.detokenize` writes a model's output the way people write: with punctuation split
off, closing marks (``. , ; : ! ? % ) ] } » …``) join the word before them and opening marks
(``( [ { « ¿ ¡``) the word after; other marks (quotes, dashes) keep their spaces, since their
direction cannot be told from the token alone. Case is left as the model wrote it.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

_PUNCTUATION = "".join(
    chr(c) for c in range(min(sys.maxunicode, 0xFFFF) + 1) if unicodedata.category(chr(c)).startswith("P")
)
_PUNCT_RUN = re.compile(f"[{re.escape(_PUNCTUATION)}]+")
_WORD_WITH_PUNCT = re.compile(f"[^\\s{re.escape(_PUNCTUATION)}][{re.escape(_PUNCTUATION)}]|"
                              f"[{re.escape(_PUNCTUATION)}][^\\s{re.escape(_PUNCTUATION)}]")  # fmt: skip
_CLOSING = ".,;:!?%)]}»…"
_OPENING = "([{«¿¡"
_SPACE_BEFORE_CLOSING = re.compile(f" +([{re.escape(_CLOSING)}]+)(?= |$)")
_SPACE_AFTER_OPENING = re.compile(f"(?:(?<= )|^)([{re.escape(_OPENING)}]+) +")


@dataclass(frozen=True)
class TextForm:
    """How one side of a corpus is written; the default changes nothing (identity)."""

    nfc: bool = False  # the text is Unicode NFC: compose input the same way
    lowercase: bool = False  # the text has no upper-case letter: lower-case input
    split_punctuation: bool = False  # punctuation runs are tokens of their own: split them off input

    @classmethod
    def infer(cls, sentences: Iterable[str]) -> TextForm:
        """The form every one of ``sentences`` has (a fact false for one sentence is False).

        ``split_punctuation`` also needs at least one punctuation mark in the text: text without
        any says nothing about how punctuation is written.
        """
        nfc = lowercase = split = True
        seen_punctuation = False
        for sentence in sentences:
            nfc = nfc and unicodedata.is_normalized("NFC", sentence)
            lowercase = lowercase and sentence == sentence.lower()
            if split:
                seen_punctuation = seen_punctuation or _PUNCT_RUN.search(sentence) is not None
                split = _WORD_WITH_PUNCT.search(sentence) is None
        return cls(nfc=nfc, lowercase=lowercase, split_punctuation=split and seen_punctuation)

    def normalize(self, text: str) -> str:
        """``text`` written in this form: composed, lower-cased, punctuation split off, as recorded.

        With ``split_punctuation`` the tokens are joined by single spaces; otherwise spacing is kept.
        """
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        if self.lowercase:
            text = text.lower()
        if self.split_punctuation:
            text = " ".join(_PUNCT_RUN.sub(lambda m: f" {m.group(0)} ", text).split())
        return text

    def detokenize(self, text: str) -> str:
        """Text in this form as people write it: split-off punctuation joined again (see module doc)."""
        if not self.split_punctuation:
            return text
        text = " ".join(text.split())
        return _SPACE_AFTER_OPENING.sub(r"\1", _SPACE_BEFORE_CLOSING.sub(r"\1", text))

    def to_dict(self) -> dict[str, bool]:
        """JSON-ready dict; :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextForm:
        """Inverse of :meth:`to_dict`."""
        return cls(**{name: bool(values[name]) for name in ("nfc", "lowercase", "split_punctuation")})
