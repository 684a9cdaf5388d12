"""Key/value caches for incremental decoding.

While a decoder writes its output one token at a time, two kinds of keys and values exist:

- **Cross-attention** reads the encoder's memory, which never changes during decoding. Its
  keys and values are projected once, at the first step, and reused: ``StaticKV``.
- **Decoder self-attention** reads the tokens written so far. Each step adds the new token's
  key and value, so this cache grows by one entry per step: ``GrowingKV``.

Tensors are stored per head: ``(B, h, T, Dh)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


class StaticKV:
    """Cross-attention keys/values of the encoder memory, projected once per layer."""

    def __init__(self) -> None:
        self.key: Tensor | None = None  # (B, h, Tk, Dh)
        self.value: Tensor | None = None  # (B, h, Tk, Dh)

    @property
    def filled(self) -> bool:
        """True once the memory has been projected."""
        return self.key is not None

    def fill(self, key: Tensor, value: Tensor) -> None:
        """Store the projected memory: key, value (B, h, Tk, Dh)."""
        self.key, self.value = key, value

    def reorder(self, index: Tensor) -> None:
        """Keep/duplicate batch rows (beam search): index (B',) into the batch dimension."""
        if self.filled:
            self.key, self.value = self.key.index_select(0, index), self.value.index_select(0, index)


class GrowingKV:
    """Self-attention keys/values of every token written so far; grows at each step."""

    def __init__(self) -> None:
        self.key: Tensor | None = None  # (B, h, T, Dh)
        self.value: Tensor | None = None  # (B, h, T, Dh)

    @property
    def length(self) -> int:
        """Number of cached positions T."""
        return 0 if self.key is None else self.key.shape[-2]

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new positions' key, value (B, h, t, Dh); return all keys and values (B, h, T + t, Dh)."""
        if self.key is None:
            self.key, self.value = key, value
        else:
            self.key = torch.cat((self.key, key), dim=-2)
            self.value = torch.cat((self.value, value), dim=-2)
        return self.key, self.value

    def reorder(self, index: Tensor) -> None:
        """Keep/duplicate batch rows (beam search): index (B',) into the batch dimension."""
        if self.key is not None:
            self.key, self.value = self.key.index_select(0, index), self.value.index_select(0, index)


@dataclass
class LayerCache:
    """The two caches of one decoder layer; a ``None`` member means "recompute those keys/values each step"."""

    self_attn: GrowingKV | None = field(default_factory=GrowingKV)
    cross_attn: StaticKV | None = field(default_factory=StaticKV)


@dataclass
class DecoderCache:
    """One ``LayerCache`` per decoder layer.

    A cache may keep both kinds of keys/values, or only one of them (a partial cache): without
    the growing self-attention cache every step feeds the whole prefix again; without the static
    cross-attention cache every step projects the memory again. The numbers are the same either way.
    """

    layers: list[LayerCache]

    @classmethod
    def empty(cls, n_layers: int, *, self_attn: bool = True, cross_attn: bool = True) -> DecoderCache:
        """A cache for a decoder of ``n_layers`` layers, before the first step, keeping the K/V named True."""
        return cls([LayerCache(GrowingKV() if self_attn else None, StaticKV() if cross_attn else None)
                    for _ in range(n_layers)])  # fmt: skip

    @property
    def length(self) -> int:
        """Target positions held in the self-attention cache: the offset of the next input (0 if it keeps none)."""
        first = self.layers[0].self_attn if self.layers else None
        return first.length if first is not None else 0

    def reorder(self, index: Tensor) -> None:
        """Reorder every layer's caches along the batch dimension: index (B',)."""
        for layer in self.layers:
            for kv in (layer.self_attn, layer.cross_attn):
                if kv is not None:
                    kv.reorder(index)
