"""Looking inside: the cross-attention of every decoder layer and head, read at every checkpoint.

The maps are read the way the model computes them when it translates, in one teacher-forced pass over
the reference ``BOS y1 ... ym`` (:func:`xattn_edu.translate.decode.cross_attention`): decoder row ``j``
is the step that *writes* target word ``j`` (it reads word ``j - 1``). Two readings of a map as a
word alignment are compared:

* **writes** (the usual one): target word ``j`` links to the source word row ``j`` attends to most;
* **reads**: target word ``j`` links to the source word attended to by row ``j + 1``, the step that
  has just read word ``j``.

Each map also gets the entropy of its rows (Chapter 2's measure, in nats), the spread of the spotlight.
Every call into :mod:`xattn_edu.translate` for attention sits in this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xattn_edu.chapters.spotlight.reference import attention_entropy
from xattn_edu.chapters.translation.data import ChapterData
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate.batching import pad_batch
from xattn_edu.translate.corpus import encode_source
from xattn_edu.translate.decode import cross_attention

AER = Callable[[Sequence[np.ndarray], Sequence], float]
"""``aer(attentions, gold)``: corpus AER of (Tt, Ts) maps against gold (source, target) links."""


@dataclass(frozen=True)
class AlignmentSet:
    """Validation pairs whose cross-attention the chapter reads, with their labels and gold links."""

    sources: list[list[int]]  # source ids, then EOS
    targets: list[list[int]]  # target ids (no BOS, no EOS)
    source_tokens: list[list[str]]  # the source tokens as text (heatmap labels), without EOS
    target_tokens: list[list[str]]  # the target tokens as text
    gold: list[list[tuple[int, int]]] | None  # gold (source word, target word) links, or None (no alignments)
    bos_id: int  # the target's BOS id (what the decoder reads first)
    eos_id: int  # the target's EOS id (the extra row of every map predicts it)


def alignment_set(data: ChapterData, n: int, max_len: int) -> AlignmentSet:
    """The first ``n`` validation pairs that fit ``max_len`` positions, encoded by the run's tokenizers."""
    src_tok, tgt_tok = data.corpus.src_tokenizer, data.corpus.tgt_tokenizer
    rows = ([], [], [], [], [])
    gold = data.val_alignments
    for index, (source, target) in enumerate(data.corpus.val):
        src_ids, tgt_ids = encode_source(src_tok, source), tgt_tok.encode(target)
        if len(src_ids) > max_len or len(tgt_ids) + 2 > max_len:
            continue
        for column, value in zip(rows, (src_ids, tgt_ids, src_tok.tokens(source), tgt_tok.tokens(target),
                                        None if gold is None else list(gold[index])), strict=True):  # fmt: skip
            column.append(value)
        if len(rows[0]) == n:
            break
    return AlignmentSet(*rows[:4], None if gold is None else rows[4], tgt_tok.bos_id, tgt_tok.eos_id)


@torch.no_grad()
def read_maps(model: Seq2Seq, aset: AlignmentSet, batch_size: int = 64) -> list[np.ndarray]:
    """Cross-attention of every sentence: (L, h, m + 1, S) float32, row ``m`` the step that writes EOS.

    The source's EOS column is dropped (S = source words), so columns match the gold links.
    """
    device = next(model.parameters()).device
    maps = []
    for start in range(0, len(aset.sources), batch_size):
        sources = aset.sources[start : start + batch_size]
        targets = [[*t, aset.eos_id] for t in aset.targets[start : start + batch_size]]
        src = pad_batch(sources, model.cfg.pad_id).to(device)
        weights = cross_attention(model.eval(), src, targets, bos_id=aset.bos_id)
        maps += [w[..., : len(ids) - 1].numpy() for w, ids in zip(weights, sources, strict=True)]
    return maps


def writes(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Row ``j`` of each map is the step that writes target word ``j``: (L, h, m, S)."""
    return [m[:, :, :-1] for m in maps]


def reads(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Row ``j`` is the step that has just read target word ``j`` (the next one): (L, h, m, S)."""
    return [m[:, :, 1:] for m in maps]


@dataclass(frozen=True)
class AERGrid:
    """AER of every head, of each layer's head average, and of the average of everything."""

    per_head: np.ndarray  # (L, h)
    per_layer: np.ndarray  # (L,): the layer's heads averaged first
    average: float  # every layer and head averaged first

    def best_head(self) -> tuple[int, int, float]:
        """(layer, head, AER) of the head that agrees best with the gold links (0-based)."""
        layer, head = np.unravel_index(int(np.argmin(self.per_head)), self.per_head.shape)
        return int(layer), int(head), float(self.per_head[layer, head])


def aer_grid(rows: Sequence[np.ndarray], gold: Sequence, aer: AER) -> AERGrid:
    """AER of the (L, h, m, S) maps ``rows`` against ``gold``, with the AER function given."""
    n_layers, n_heads = rows[0].shape[:2]
    per_head = np.array([[aer([m[i, j] for m in rows], gold) for j in range(n_heads)] for i in range(n_layers)])
    per_layer = np.array([aer([m[i].mean(axis=0) for m in rows], gold) for i in range(n_layers)])
    return AERGrid(per_head, per_layer, aer([m.mean(axis=(0, 1)) for m in rows], gold))


def diagonal_maps(aset: AlignmentSet) -> list[np.ndarray]:
    """A baseline that reads no model: target word j attends to source word round(j (S - 1) / (m - 1))."""
    maps = []
    for source, target in zip(aset.source_tokens, aset.target_tokens, strict=True):
        s, m = len(source), len(target)
        weights = np.zeros((m, s))
        weights[np.arange(m), np.rint(np.arange(m) * (s - 1) / max(1, m - 1)).astype(int)] = 1.0
        maps.append(weights)
    return maps


def mean_entropy(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Mean entropy (nats) of the attention rows of each layer and head over all sentences: (L, h)."""
    return np.mean(np.concatenate([attention_entropy(m) for m in rows], axis=-1), axis=-1)


def uniform_entropy(rows: Sequence[np.ndarray]) -> float:
    """The mean entropy the rows would have if each spread evenly over its sentence's source words (log S)."""
    return float(np.mean(np.concatenate([np.full(m.shape[2], np.log(m.shape[3])) for m in rows])))


@dataclass
class AttentionHistory:
    """The cross-attention maps of the analysis sentences at each checkpoint of a training run."""

    steps: list[int]  # optimizer step of each checkpoint
    maps: list[list[np.ndarray]]  # per checkpoint, per sentence: (L, h, m + 1, S) from :func:`read_maps`
    aset: AlignmentSet  # the sentences


def history(models: Sequence[tuple[int, Seq2Seq]], aset: AlignmentSet) -> AttentionHistory:
    """Read the maps of ``aset`` with each (step, model) of a run."""
    return AttentionHistory([step for step, _ in models], [read_maps(model, aset) for _, model in models], aset)
