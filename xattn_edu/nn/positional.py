"""Positional information for attention, in four flavours.

Dot products ignore order, so position has to be injected somewhere. Each flavour here
takes explicit positions, so a caller decides whether queries, keys or both carry them:

- ``SinusoidalPositionalEncoding`` and ``LearnedPositionalEmbedding`` return vectors
  ``(..., T, D)`` to add to token embeddings, or (with ``MultiHeadAttention``'s
  ``query_pos``/``key_pos``) to the inputs of the query or key projection only.
- ``RelativePositionBias`` returns a per-head additive score bias ``(1, h, Tq, Tk)`` that
  depends only on the distance ``key_position - query_position``.
- ``RotaryEmbedding`` rotates query/key vectors ``(B, h, T, Dh)`` by position-dependent angles,
  so their dot product depends on the positions only through their difference.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _check_positions(positions: Tensor, max_len: int) -> None:
    if positions.numel() and (int(positions.max()) >= max_len or int(positions.min()) < 0):
        raise ValueError(
            f"positions must lie in [0, {max_len}); got max {int(positions.max())}: the sequence is longer "
            f"than the model's maximum length ({max_len})"
        )


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """The fixed sine/cosine table of "Attention Is All You Need".

    Row ``p`` holds ``sin(p / 10000^(2i/D))`` in even columns and ``cos(...)`` in odd ones.

    Returns:
        (max_len, D) float32 table.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encodings need an even d_model, got {d_model}")
    positions = torch.arange(max_len, dtype=torch.float32)[:, None]  # (T, 1)
    frequencies = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies)
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed (not learned) sinusoidal position vectors.

    Args:
        d_model: D, the width of the vectors.
        max_len: the largest position + 1 it can encode.
    """

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """positions: integer (T,) or (B, T) → position vectors (T, D) or (B, T, D)."""
        _check_positions(positions, self.max_len)
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (BERT/GPT style).

    Args:
        d_model: D, the width of the vectors.
        max_len: number of positions it has vectors for.
    """

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, positions: Tensor) -> Tensor:
        """positions: integer (T,) or (B, T) → position vectors (T, D) or (B, T, D)."""
        _check_positions(positions, self.max_len)
        return self.embedding(positions)


class RelativePositionBias(nn.Module):
    """A learned score bias per head and per clipped distance (Shaw et al. / T5 style, unbucketed).

    Args:
        n_heads: h.
        max_distance: distances beyond ±max_distance share the edge bias.
    """

    def __init__(self, n_heads: int, max_distance: int = 16):
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Embedding(2 * max_distance + 1, n_heads)
        nn.init.zeros_(self.bias.weight)

    def forward(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """query_positions (Tq,), key_positions (Tk,) → bias (1, h, Tq, Tk) to add to the scores."""
        distance = key_positions[None, :] - query_positions[:, None]  # (Tq, Tk)
        index = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.bias(index).permute(2, 0, 1)[None]  # (1, h, Tq, Tk)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer): rotate pairs of channels by position-dependent angles.

    Args:
        head_dim: Dh, must be even.
        base: the wavelength base of the angles.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head width, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate x (B, h, T, Dh) at positions (T,) or (B or 1, T); returns x's shape and dtype (math in float32)."""
        if positions.dim() not in (1, 2) or positions.shape[-1] != x.shape[-2] or (
                positions.dim() == 2 and positions.shape[0] not in (1, x.shape[0])):
            raise ValueError(f"need one position per token, (T,) or (B or 1, T): x (B, h, T, Dh) = {tuple(x.shape)}, "
                             f"positions {tuple(positions.shape)}")
        angles = positions.to(self.inv_freq.dtype)[..., None] * self.inv_freq  # (..., T, Dh/2)
        if angles.dim() == 3:
            angles = angles[:, None]  # (B, 1, T, Dh/2): same angles for every head
        cos, sin = angles.cos(), angles.sin()
        pairs = x.float().unflatten(-1, (-1, 2))  # (B, h, T, Dh/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)
