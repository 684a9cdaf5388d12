"""The references of Chapter 6, "Translation": what each graded exercise asks for, written once.

* :func:`encoder_layer` and :func:`decoder_layer`: one pre-norm layer of the package's
  :class:`~xattn_edu.nn.model.Seq2Seq`, assembled from its parts (``x + f(norm(x))`` around each
  sublayer), with the attention passed in as a function so the student's own multi-head attention
  (Chapter 3's ``multi_head_attention(x, attn, context, mask)``) can stand in for the package's;
* :func:`translation_loss`: the training loss, cross-entropy per real target token with label
  smoothing, as ``torch.nn.functional.cross_entropy(..., ignore_index=pad, label_smoothing=eps)`` defines it;
* :func:`greedy_decode`: batched greedy decoding with the static cross-attention cache and the growing
  self-attention cache (Chapter 3), and :func:`greedy_decode_uncached`, the slow loop it must equal;
* :func:`alignment_error_rate`: AER (Och & Ney, 2003) of the links read off attention weights.

Shapes: B batch, Ts source length, Tt target length, D model width, V target vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from xattn_edu.nn.model import DecoderLayer, EncoderLayer, Seq2Seq

Attention = Callable[..., Tensor]
"""``attention(x, attn, context=None, mask=None) -> (B, Tq, D)``: multi-head attention with ``attn``'s weights."""


def encoder_layer(layer: EncoderLayer, x: Tensor, mask: Tensor | None, attention: Attention) -> Tensor:
    """One pre-norm encoder layer: bidirectional self-attention, then the feed-forward network.

    ``x + attention(norm1(x))`` then ``x + ff(norm2(x))``, the norms being ``layer.attn_block.norm``
    and ``layer.ff_block.norm`` (dropout is left out: the layer runs in eval mode).

    Args:
        layer: the package's ``EncoderLayer`` (its ``self_attn``, ``ff`` and the two norms are used).
        x: (B, Ts, D) source vectors.
        mask: (B, 1, 1, Ts) boolean, True = real token (or None).
        attention: multi-head attention, ``attention(x, attn, context, mask)``.

    Returns:
        (B, Ts, D).
    """
    x = x + attention(layer.attn_block.norm(x), layer.self_attn, None, mask)
    return x + layer.ff(layer.ff_block.norm(x))


def decoder_layer(layer: DecoderLayer, x: Tensor, memory: Tensor, self_mask: Tensor | None,
                  memory_mask: Tensor | None, attention: Attention) -> Tensor:  # fmt: skip
    """One pre-norm decoder layer: causal self-attention, cross-attention to the memory, feed-forward.

    Args:
        layer: the package's ``DecoderLayer`` (``self_attn``, ``cross_attn``, ``ff`` and the norms of
            ``self_block``, ``cross_block``, ``ff_block``).
        x: (B, Tt, D) target vectors.
        memory: (B, Ts, D) encoder output.
        self_mask: (B or 1, 1, Tt, Tt) boolean, causal (and target padding), True = may attend.
        memory_mask: (B, 1, 1, Ts) boolean, True = real source token.
        attention: multi-head attention, ``attention(x, attn, context, mask)``.

    Returns:
        (B, Tt, D).
    """
    x = x + attention(layer.self_block.norm(x), layer.self_attn, None, self_mask)
    x = x + attention(layer.cross_block.norm(x), layer.cross_attn, memory, memory_mask)
    return x + layer.ff(layer.ff_block.norm(x))


def translation_loss(logits: Tensor, targets: Tensor, pad_id: int, label_smoothing: float = 0.0) -> Tensor:
    """Mean label-smoothed cross-entropy per real (non-padding) target token.

    With ``eps = label_smoothing`` the target distribution puts ``1 - eps`` on the right token and
    spreads ``eps`` uniformly over all V classes, so the loss of one token is
    ``(1 - eps) * (-log p[target]) + eps * mean_c(-log p[c])`` (PyTorch's definition). Padding
    positions are left out of the sum and of the count.

    Args:
        logits: (B, Tt, V) unnormalised scores.
        targets: (B, Tt) integer ids, ``pad_id`` where there is no token.
        pad_id: the padding id.
        label_smoothing: eps in [0, 1).

    Returns:
        A scalar tensor: summed loss of the real tokens divided by their number.
    """
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, Tt, V)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, Tt)
    smooth = -log_probs.mean(dim=-1)  # (B, Tt): cross-entropy against the uniform distribution
    per_token = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    real = targets != pad_id
    return per_token[real].sum() / real.sum()


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, bos_id: int, eos_id: int, max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding of a padded batch with both caches: encode once, feed one new token per step.

    Args:
        model: the translator (eval mode).
        src: (B, Ts) padded source ids.
        bos_id, eos_id: the target's start and end ids.
        max_new_tokens: a sentence stops after this many tokens if it has not written EOS.

    Returns:
        B lists of generated ids, without BOS and EOS.
    """
    memory, memory_mask = model.encode(src)  # (B, Ts, D), (B, 1, 1, Ts)
    cache = model.new_cache()  # a growing self-attention K/V and a static cross-attention K/V per layer
    rows = torch.arange(src.shape[0])  # the sentence of each row still decoding
    token = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)  # (N, 1)
    outputs: list[list[int]] = [[] for _ in range(src.shape[0])]
    for _ in range(max_new_tokens):
        hidden = model.decode(token, memory, memory_mask, cache=cache)  # (N, 1, D): only the new position
        token = model.logits(hidden[:, -1]).argmax(dim=-1, keepdim=True)  # (N, 1)
        going = token[:, 0] != eos_id
        for row, value in zip(rows[going].tolist(), token[going, 0].tolist(), strict=True):
            outputs[row].append(value)
        if not going.all():  # drop finished sentences from the batch, their cache rows too
            keep = going.nonzero()[:, 0]
            if keep.numel() == 0:
                break
            cache.reorder(keep)
            rows, token, memory, memory_mask = rows[keep.cpu()], token[keep], memory[keep], memory_mask[keep]
    return outputs


@torch.no_grad()
def greedy_decode_uncached(model: Seq2Seq, src: Tensor, bos_id: int, eos_id: int,
                           max_new_tokens: int) -> list[list[int]]:  # fmt: skip
    """The slow loop greedy decoding must equal: each sentence alone, its whole prefix run again every step.

    Args and returns as :func:`greedy_decode`.
    """
    outputs = []
    for row in src:
        source = row[row != model.cfg.pad_id][None]  # (1, S): the sentence without padding
        prefix = [bos_id]
        while len(prefix) <= max_new_tokens:
            logits = model(source, torch.tensor([prefix], device=src.device))  # (1, t, V)
            token = int(logits[0, -1].argmax())
            if token == eos_id:
                break
            prefix.append(token)
        outputs.append(prefix[1:])
    return outputs


def attention_links(weights: np.ndarray) -> set[tuple[int, int]]:
    """Hard links from attention (Tt, Ts): each target word t links to its most attended source word."""
    return {(int(s), t) for t, s in enumerate(np.asarray(weights).argmax(axis=-1))}


def alignment_error_rate(attentions: Sequence[np.ndarray], gold: Sequence[Iterable[tuple[int, int]]]) -> float:
    """Corpus AER of argmax links against gold links, with every gold link sure (P = S).

    ``AER = 1 - 2 |A ∩ S| / (|A| + |S|)``, the counts summed over all sentences before dividing.

    Args:
        attentions: per sentence, (Tt, Ts) weights of each target word (row) over the source words.
        gold: per sentence, the gold (source index, target index) links.

    Returns:
        AER in [0, 1]; 0 when the argmax links are exactly the gold links.
    """
    predicted = [attention_links(weights) for weights in attentions]
    sure = [set(map(tuple, links)) for links in gold]
    hits = sum(len(a & s) for a, s in zip(predicted, sure, strict=True))
    return 1.0 - 2.0 * hits / (sum(map(len, predicted)) + sum(map(len, sure)))
