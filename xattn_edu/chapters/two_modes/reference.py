"""Reference answers of Chapter 3, "Looking inward, looking across", built on the package's modules.

The graded exercises are checked against these (:mod:`xattn_edu.chapters.two_modes.checks`): each
has the signature the notebook's exercise asks for and delegates to :mod:`xattn_edu.nn`, so the
grader compares a student's code with the code the course trains its translator with.

Shapes: B batch, Tq queries, Tk memory (keys), T decoder positions, D model width, h heads,
Dh = D / h head width. Masks are boolean, True = may attend.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xattn_edu.nn import masks
from xattn_edu.nn.cache import GrowingKV, LayerCache, StaticKV
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import DecoderLayer


def padding_mask_from_lengths(lengths: Tensor, max_len: int) -> Tensor:
    """(B, 1, 1, Tk) boolean, True on the real tokens: key j of sentence b is real when j < lengths[b]."""
    return masks.padding_mask(lengths, max_len)


def causal_mask(size: int) -> Tensor:
    """(1, 1, T, T) boolean, True where key j <= query i (the diagonal included)."""
    return masks.causal_mask(size)


def multi_head_attention(x: Tensor, attn: MultiHeadAttention, context: Tensor | None = None,
                         mask: Tensor | None = None) -> Tensor:
    """Self-attention of x (B, Tq, D), or cross-attention to context (B, Tk, D): (B, Tq, D)."""
    return attn(x, context=context, mask=mask)


class CrossAttentionCache:
    """Cross-attention whose memory keys and values are projected once (:class:`~xattn_edu.nn.cache.StaticKV`)."""

    def __init__(self, attn: MultiHeadAttention):
        self.attn = attn
        self.cache = StaticKV()
        self.key = self.value = self.mask = None  # (B, h, Tk, Dh), (B, h, Tk, Dh), broadcastable mask

    def fill(self, memory: Tensor, memory_mask: Tensor | None = None) -> None:
        """Project the memory (B, Tk, D) once."""
        self.cache.fill(*self.attn.project_keys_values(memory))
        self.key, self.value, self.mask = self.cache.key, self.cache.value, memory_mask

    def step(self, x: Tensor) -> Tensor:
        """Cross-attention output (B, t, D) of the new decoder positions x (B, t, D)."""
        return self.attn(x, mask=self.mask, cache=self.cache)


class SelfAttentionCache:
    """Decoder self-attention fed one position per step (:class:`~xattn_edu.nn.cache.GrowingKV`)."""

    def __init__(self, attn: MultiHeadAttention):
        self.attn = attn
        self.cache = GrowingKV()
        self.key = self.value = None  # (B, h, t, Dh) after t steps

    def step(self, x_t: Tensor) -> Tensor:
        """Output (B, 1, D) of the new position x_t (B, 1, D) over every position so far."""
        out = self.attn(x_t, cache=self.cache)
        self.key, self.value = self.cache.key, self.cache.value
        return out


def incremental_decode(layer: DecoderLayer, x: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
    """Run a decoder layer one position at a time with both caches: (B, T, D), equal to its full forward pass."""
    cache = LayerCache()
    steps = [layer(x[:, t:t + 1], memory, None, memory_mask, cache)[0] for t in range(x.shape[1])]
    return torch.cat(steps, dim=1)  # (B, T, D)


def two_item_output(value_a: Tensor, value_b: Tensor, gap: float) -> Tensor:
    """What one head returns when only two keys matter and key a scores ``gap`` more than key b.

    The softmax over two scores is the logistic function of their difference:
    w_a = e^{s_a} / (e^{s_a} + e^{s_b}) = 1 / (1 + e^{-gap}), w_b = 1 - w_a.

    Returns:
        w_a value_a + w_b value_b, of the values' shape; the average of the two when gap = 0.
    """
    weight_a = 1.0 / (1.0 + math.exp(-gap))
    return weight_a * value_a + (1.0 - weight_a) * value_b


def head_score_variance(d_model: int, n_heads: int) -> tuple[float, float]:
    """Variance of one head's raw score q·k, and the scale that brings it to 1.

    With independent query and key components of mean 0 and variance 1, a head's dot product adds
    Dh = D / h products, each of variance 1, so its variance is Dh (Vaswani et al., 2017, footnote 4).

    Returns:
        (Dh, 1 / sqrt(Dh)).
    """
    head_dim = d_model // n_heads
    return float(head_dim), 1.0 / math.sqrt(head_dim)
