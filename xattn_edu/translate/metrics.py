"""Translation quality and attention diagnostics.

* :func:`sacre_bleu`: corpus BLEU by sacreBLEU on detokenized text with its default settings
  (mixed case, ``13a`` tokenizer, exponential smoothing), plus the signature string that
  makes the number reproducible. (The synthetic corpus has no detokenized form: its own
  space-separated text is scored, so there it equals the tokenized figure up to case.)
* :func:`tokenized_bleu`: the figure translation tutorials usually report, "lowercased
  tokenized BLEU". Here it is defined exactly as sacreBLEU with ``lowercase=True`` and the
  ``13a`` tokenizer: both sides are lowercased, split into words and punctuation by the
  WMT ``13a`` rules, and scored with 4-gram BLEU. On text that is already tokenized and
  lowercased (the synthetic corpus) this equals BLEU over whitespace-split tokens.
* :func:`exact_match`: percentage of outputs equal to their reference (whitespace-normalised).
* Alignment error rate (Och & Ney, 2003) of links read off cross-attention against gold
  word alignments: :func:`attention_links`, :func:`alignment_error_rate`, :func:`attention_aer`.
* How spread out each attention row is: :func:`xattn_edu.chapters.spotlight.reference.attention_entropy`.

Scores are percentages (0-100) throughout; AER is a fraction (0 = perfect).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU
from torch import Tensor

Link = tuple[int, int]  # (source index, target index)


@dataclass(frozen=True)
class BleuScore:
    """A corpus BLEU score and the sacreBLEU signature that describes how it was computed."""

    score: float  # 0-100
    signature: str  # e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU needs at least one sentence")


def _bleu(hypotheses: Sequence[str], references: Sequence[str], lowercase: bool) -> BleuScore:
    _check_pairs(hypotheses, references)
    # force=True: the synthetic corpus is tokenized text by design; do not warn about it.
    bleu = BLEU(lowercase=lowercase, tokenize="13a", force=True)
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return BleuScore(score.score, str(bleu.get_signature()))


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> BleuScore:
    """sacreBLEU on detokenized text (one reference per sentence), case-sensitive, ``13a`` tokenizer."""
    return _bleu(hypotheses, references, lowercase=False)


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> BleuScore:
    """Lowercased tokenized BLEU: lowercase, ``13a`` tokenization, 4-gram corpus BLEU (see module doc)."""
    return _bleu(hypotheses, references, lowercase=True)


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
