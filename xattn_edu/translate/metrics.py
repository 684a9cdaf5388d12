"""Translation quality and attention diagnostics.

* :func:`sacre_bleu`: corpus BLEU by sacreBLEU on detokenized text (mixed case, exponential
  smoothing), plus the signature string that makes the number reproducible.
* :func:`tokenized_bleu`: the figure translation tutorials usually report, "lowercased
  tokenized BLEU": sacreBLEU with ``lowercase=True``, so both sides are lowercased, split into
  tokens and scored with 4-gram BLEU.
* :func:`chrf`: sacreBLEU's chrF (character n-gram F-score, chrF2): it needs no word tokenizer,
  so it means the same in every language.
* :func:`exact_match`: percentage of outputs equal to their reference (whitespace-normalised).
* Alignment error rate (Och & Ney, 2003) of links read off cross-attention against gold
  word alignments: :func:`attention_links`, :func:`alignment_error_rate`, :func:`attention_aer`.
* How spread out each attention row is: :func:`xattn_edu.chapters.spotlight.reference.attention_entropy`.

**BLEU's tokenizer.** BLEU counts word n-grams, so it needs words. sacreBLEU's default ``13a``
tokenizer splits on spaces and punctuation; a language written without spaces between words
(Japanese, Chinese, Thai) then becomes one "word" per sentence, and even a perfect translation
of a few sentences scores 0. :func:`choose_bleu_tokenizer` picks the tokenizer by this rule:

1. the one the user names (``xattn evaluate --bleu-tokenize``), from :data:`BLEU_TOKENIZERS`;
2. else the target language's: ``zh`` → ``zh``, ``ja`` → ``ja-mecab``, ``ko`` → ``ko-mecab``,
   Thai, Lao, Khmer, Burmese, Tibetan, Dzongkha → ``char``, any other language → ``13a``;
3. else, when most letters of the references are of a script written without spaces: any kana
   → as ``ja``, else mostly Han → ``zh``, else ``char``;
4. else ``13a``.

``ja-mecab`` and ``ko-mecab`` need extra packages (``pip install "sacrebleu[ja]"`` or
``"sacrebleu[ko]"``); without them ``char`` is used, with a warning. A warning is also given when
the references look unspaced (:func:`looks_unspaced`) and the tokenizer in use splits only on
spaces and punctuation (``13a``, ``intl``, ``none``), or when the tokenizer had to be guessed
from the script. The tokenizer is always in the signature (``tok:char``).

Scores are percentages (0-100) throughout; AER is a fraction (0 = perfect).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF
from torch import Tensor

from xattn_edu.common.errors import UserError

Link = tuple[int, int]  # (source index, target index)

BLEU_TOKENIZERS = ("13a", "intl", "zh", "ja-mecab", "ko-mecab", "char", "none")
"""sacreBLEU tokenizers offered (those that need no download); ``spm``/``flores`` fetch a model, so they are not."""
_SPACE_BASED = frozenset({"13a", "intl", "none"})  # split on spaces (and punctuation) only
_NEEDS_PACKAGES = {"ja-mecab": "sacrebleu[ja]", "ko-mecab": "sacrebleu[ko]"}
_LANGUAGE_TOKENIZER = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab",
                       **dict.fromkeys(("th", "lo", "km", "my", "bo", "dz"), "char")}  # fmt: skip
# Code point ranges of scripts written without spaces between words: (first, last, script).
_UNSPACED_SCRIPTS = (
    (0x3040, 0x30FF, "kana"), (0x31F0, 0x31FF, "kana"), (0xFF66, 0xFF9F, "kana"),
    (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"), (0xF900, 0xFAFF, "han"), (0x20000, 0x3134F, "han"),
    (0x0E00, 0x0EFF, "other"), (0x0F00, 0x0FFF, "other"), (0x1000, 0x109F, "other"), (0x1780, 0x17FF, "other"),
)  # fmt: skip


@dataclass(frozen=True)
class Score:
    """A corpus score (BLEU or chrF) and the sacreBLEU signature that describes how it was computed."""

    score: float  # 0-100
    signature: str  # e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def _script(char: str) -> str | None:
    """"kana", "han" or "other" for a letter of a script written without spaces, else None."""
    point = ord(char)
    return next((script for first, last, script in _UNSPACED_SCRIPTS if first <= point <= last), None)


def _unspaced_scripts(sentences: Iterable[str]) -> tuple[float, dict[str, int]]:
    """(share of letters in unspaced scripts, count of those letters by script)."""
    letters, counts = 0, {"kana": 0, "han": 0, "other": 0}
    for sentence in sentences:
        for char in sentence:
            if unicodedata.category(char)[0] == "L":
                letters += 1
                script = _script(char)
                if script:
                    counts[script] += 1
    return (sum(counts.values()) / letters if letters else 0.0), counts


def looks_unspaced(sentences: Iterable[str]) -> bool:
    """Whether most letters of ``sentences`` belong to scripts written without spaces (CJK, Thai, ...)."""
    return _unspaced_scripts(sentences)[0] > 0.5


@functools.cache
def _installed(tokenize: str) -> bool:
    """Whether sacreBLEU can build this tokenizer here (the MeCab ones need extra packages)."""
    try:
        BLEU(tokenize=tokenize)
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class BleuTokenizer:
    """The sacreBLEU tokenizer chosen for a target side, and what the user should know about it."""

    name: str  # one of BLEU_TOKENIZERS
    warnings: tuple[str, ...] = ()  # one line each


def _usable(name: str, why: str) -> BleuTokenizer:
    """``name``, or ``char`` with a warning when the packages ``name`` needs are missing."""
    if name not in _NEEDS_PACKAGES or _installed(name):
        return BleuTokenizer(name)
    return BleuTokenizer("char", (f"{why} calls for the {name} BLEU tokenizer, which needs "
                                  f"`pip install \"{_NEEDS_PACKAGES[name]}\"`; using char instead",))  # fmt: skip


def _by_script(counts: dict[str, int], language: str | None) -> BleuTokenizer:
    """The tokenizer for unspaced references whose language does not say (unknown, or a spaced one)."""
    script = "kana" if counts["kana"] else max(counts, key=counts.get)  # only Japanese writes kana
    chosen = _usable({"kana": "ja-mecab", "han": "zh", "other": "char"}[script], "the script of the references")
    described = f"target language is {language}" if language else "target language is unknown"
    label = {"kana": "Japanese", "han": "Chinese characters", "other": "Thai, Lao, Khmer, Burmese or Tibetan"}[script]
    return BleuTokenizer(chosen.name, (*chosen.warnings, (
        f"the references look unspaced ({label}) but the {described}; BLEU uses the "
        f"{chosen.name} tokenizer, picked from the script (choose one with --bleu-tokenize)")))  # fmt: skip


def check_bleu_tokenizer(name: str) -> None:
    """:class:`UserError` unless ``name`` is in :data:`BLEU_TOKENIZERS` and its packages are installed."""
    if name not in BLEU_TOKENIZERS:
        raise UserError(f"unknown BLEU tokenizer {name!r}; choose one of {', '.join(BLEU_TOKENIZERS)}")
    if not _installed(name):
        raise UserError(f"the {name} BLEU tokenizer needs `pip install \"{_NEEDS_PACKAGES[name]}\"`")


def choose_bleu_tokenizer(references: Sequence[str], *, language: str | None = None,
                          override: str | None = None) -> BleuTokenizer:  # fmt: skip
    """The sacreBLEU tokenizer for ``references`` (see the module doc for the rule).

    Args:
        references: the target-side sentences to be scored.
        language: the target language's code ("ja", "de", "zh-Hans"), or None if unknown.
        override: a tokenizer the user named; :class:`UserError` if unknown or not installed.
    """
    share, counts = _unspaced_scripts(references)
    unspaced = share > 0.5
    base = language.split("-")[0].lower() if language else None
    if override is not None:
        check_bleu_tokenizer(override)
        chosen = BleuTokenizer(override)
    elif base in _LANGUAGE_TOKENIZER:
        chosen = _usable(_LANGUAGE_TOKENIZER[base], f"the target language {language}")
    elif unspaced:
        chosen = _by_script(counts, language)
    else:
        chosen = BleuTokenizer("13a")
    if unspaced and chosen.name in _SPACE_BASED:
        chosen = BleuTokenizer(chosen.name, (*chosen.warnings, (
            f"the references look unspaced (no spaces between words) but the {chosen.name} BLEU tokenizer "
            "splits only at spaces and punctuation, so BLEU is near 0; try --bleu-tokenize char, or read chrF")))
    return chosen


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU needs at least one sentence")


def _bleu(hypotheses: Sequence[str], references: Sequence[str], lowercase: bool, tokenize: str) -> Score:
    _check_pairs(hypotheses, references)
    # force=True: user files may hold tokenized text; sacreBLEU would print a warning about it.
    bleu = BLEU(lowercase=lowercase, tokenize=tokenize, force=True)
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return Score(score.score, str(bleu.get_signature()))


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> Score:
    """sacreBLEU on detokenized text (one reference per sentence), case-sensitive, with ``tokenize``."""
    return _bleu(hypotheses, references, lowercase=False, tokenize=tokenize)


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> Score:
    """Lowercased tokenized BLEU: lowercase, ``tokenize`` (default ``13a``), 4-gram corpus BLEU."""
    return _bleu(hypotheses, references, lowercase=True, tokenize=tokenize)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """sacreBLEU's chrF2 (character 6-grams, beta 2, case-sensitive, spaces ignored); no tokenizer needed."""
    _check_pairs(hypotheses, references)
    metric = CHRF()
    return Score(metric.corpus_score(list(hypotheses), [list(references)]).score, str(metric.get_signature()))


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Percentage of hypotheses identical to their reference after collapsing whitespace (case-sensitive)."""
    _check_pairs(hypotheses, references)
    same = sum(h.split() == r.split() for h, r in zip(hypotheses, references, strict=True))
    return 100.0 * same / len(hypotheses)


def attention_links(weights: Tensor) -> set[Link]:
    """Hard alignment from attention: each target row links to its most attended source position.

    Args:
        weights: (Tt, Ts) attention of each target token over the source tokens.

    Returns:
        {(argmax source index, target index)} with one link per target token.
    """
    if weights.dim() != 2:
        raise ValueError(f"weights must be (Tt, Ts), got shape {tuple(weights.shape)}")
    if weights.shape[0] and not weights.shape[1]:
        raise ValueError(f"weights of shape {tuple(weights.shape)} have target rows but no source positions")
    return {(int(s), t) for t, s in enumerate(weights.argmax(dim=-1).tolist())}


def alignment_error_rate(
    predicted: Iterable[set[Link]],
    sure: Iterable[Iterable[Link]],
    possible: Iterable[Iterable[Link]] | None = None,
) -> float:
    """Corpus alignment error rate ``1 - (|A∩S| + |A∩P|) / (|A| + |S|)``, counts summed over sentences.

    Args:
        predicted: per sentence, the predicted links A.
        sure: per sentence, the gold sure links S.
        possible: per sentence, the gold possible links P (S ⊆ P); defaults to P = S.

    Returns:
        AER in [0, 1]; 0 when A = S.
    """
    predicted, sure = list(predicted), [set(s) for s in sure]
    possible = sure if possible is None else [set(p) | s for p, s in zip(possible, sure, strict=True)]
    if not (len(predicted) == len(sure) == len(possible)):
        raise ValueError(f"{len(predicted)} predicted alignments but {len(sure)} gold ones")
    hit_sure = sum(len(a & s) for a, s in zip(predicted, sure, strict=True))
    hit_possible = sum(len(a & p) for a, p in zip(predicted, possible, strict=True))
    total = sum(len(a) for a in predicted) + sum(len(s) for s in sure)
    if total == 0:
        raise ValueError("AER is undefined with no predicted and no gold links")
    return 1.0 - (hit_sure + hit_possible) / total


@dataclass(frozen=True)
class AttentionAER:
    """AER of cross-attention links, per decoder layer and head and after averaging the weights."""

    per_head: list[list[float]]  # [layer][head]: links from that head's weights alone
    per_layer: list[float]  # [layer]: links from the weights averaged over that layer's heads
    average: float  # links from the weights averaged over every layer and head

    def best_head(self) -> tuple[int, int, float]:
        """(layer, head, AER) of the head whose links agree best with the gold alignment."""
        return min(((i, j, a) for i, row in enumerate(self.per_head) for j, a in enumerate(row)),
                   key=lambda x: x[2])  # fmt: skip


def attention_aer(attentions: Sequence[Tensor], gold: Sequence[Iterable[Link]]) -> AttentionAER:
    """AER of argmax links read off cross-attention, with the gold links as sure links (P = S).

    Args:
        attentions: per sentence, (L, h, Tt, Ts) weights of each target token (row) over the
            source tokens (columns), indexed like the gold links.
        gold: per sentence, the gold (source index, target index) links.
    """
    if len(attentions) != len(gold):
        raise ValueError(f"{len(attentions)} attention tensors but {len(gold)} gold alignments")
    if not attentions:
        raise ValueError("AER needs at least one sentence")
    if any(a.dim() != 4 for a in attentions):
        raise ValueError(f"attention must be (L, h, Tt, Ts) per sentence, got {[tuple(a.shape) for a in attentions]}")
    gold = [set(g) for g in gold]
    n_layers, n_heads = attentions[0].shape[:2]

    def aer_of(select) -> float:
        return alignment_error_rate([attention_links(select(a)) for a in attentions], gold)

    per_head = [[aer_of(lambda a, i=i, j=j: a[i, j]) for j in range(n_heads)] for i in range(n_layers)]
    per_layer = [aer_of(lambda a, i=i: a[i].mean(dim=0)) for i in range(n_layers)]
    return AttentionAER(per_head, per_layer, aer_of(lambda a: a.mean(dim=(0, 1))))
