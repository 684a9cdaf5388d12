"""What the decoding caches cost in memory, and why multi-query and grouped-query attention exist.

While a decoder writes T tokens for a batch of B sentences of Tk source tokens, each of its L layers
keeps the keys and values of its self-attention (T positions, growing) and of its cross-attention
(Tk memory positions, static), each D numbers wide:

    cache bytes = 2 · L · (T + Tk) · D · B · bytes per number

(the 2: keys and values). :func:`cache_bytes` evaluates it; :func:`measured_cache_bytes` decodes with
the package's :class:`~xattn_edu.nn.cache.DecoderCache` and adds up the bytes its tensors hold.

Every decoding step reads the whole cache once, so a long cache makes each step wait for memory.
Grouped-query attention (Ainslie et al., 2023; multi-query attention, Shazeer, 2019, is the case of
one group) keeps fewer key/value heads, g instead of h, each shared by h/g query heads: the cache and
the bytes read per step shrink by h/g. :func:`grouped_query_attention` computes it without copying
the shared keys; :func:`time_cache_read` times one decoding step's attention over a long cache.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from xattn_edu.nn.attention import scaled_dot_product_attention
from xattn_edu.nn.model import Seq2Seq


def cache_bytes(n_layers: int, d_model: int, tgt_len: int, src_len: int, batch: int, bytes_per_number: int,
                n_heads: int = 1, kv_heads: int | None = None) -> int:
    """2 · L · (T + Tk) · D_kv · B · bytes, with D_kv = D · kv_heads / n_heads (D when kv_heads is None).

    Args:
        n_layers: L, decoder layers.
        d_model: D.
        tgt_len: T, decoder positions cached by self-attention (tokens written so far).
        src_len: Tk, memory positions cached by cross-attention (0 for a decoder-only model).
        batch: B, sentences decoded together.
        bytes_per_number: 4 for float32, 2 for float16/bfloat16.
        n_heads, kv_heads: query heads h and key/value heads g (grouped-query attention keeps g < h).

    Returns:
        The bytes the two caches hold.
    """
    kv_width = d_model if kv_heads is None else d_model * kv_heads // n_heads
    return 2 * n_layers * (tgt_len + src_len) * kv_width * batch * bytes_per_number


@torch.inference_mode()
def measured_cache_bytes(model: Seq2Seq, src: Tensor, steps: int, bos_id: int = 1) -> int:
    """Decode ``steps`` tokens greedily with both caches; return the bytes the cache tensors hold then.

    Args:
        model: an eval-mode :class:`~xattn_edu.nn.model.Seq2Seq`.
        src: (B, Tk) source ids.
        steps: T, tokens fed to the decoder.
        bos_id: the first decoder input.
    """
    memory, memory_mask = model.encode(src)
    cache = model.new_cache()
    token = torch.full((src.shape[0], 1), bos_id, device=src.device)
    for _ in range(steps):
        hidden = model.decode(token, memory, memory_mask, cache=cache)  # (B, 1, D)
        token = model.logits(hidden).argmax(-1)  # (B, 1)
    tensors = [t for layer in cache.layers for part in (layer.self_attn, layer.cross_attn)
               for t in (part.key, part.value)]
    return sum(t.numel() * t.element_size() for t in tensors)


def grouped_query_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Attention of h query heads over g shared key/value heads (g divides h; g = h is plain multi-head).

    Args:
        query: (B, h, Tq, Dh).
        key, value: (B, g, Tk, Dh); key/value head i serves query heads i·h/g .. (i+1)·h/g - 1.

    Returns:
        (B, h, Tq, Dh), equal to multi-head attention with each key/value head repeated h/g times.
    """
    batch, heads, length, head_dim = query.shape
    groups = key.shape[1]
    if heads % groups:
        raise ValueError(f"{groups} key/value heads cannot be shared evenly by {heads} query heads")
    grouped = query.reshape(batch, groups, heads // groups * length, head_dim)  # (B, g, h/g · Tq, Dh)
    out = scaled_dot_product_attention(grouped, key, value)  # (B, g, h/g · Tq, Dh)
    return out.reshape(batch, heads, length, head_dim)


@dataclass(frozen=True)
class CacheRead:
    """One decoding step's attention over a long cache, with g key/value heads."""

    kv_heads: int  # g
    cache_mib: float  # MiB of keys and values the step reads
    ms_per_step: float  # median wall time of one step's attention (one new query per head)


@torch.inference_mode()
def time_cache_read(kv_heads: int, *, heads: int = 16, head_dim: int = 64, cache_len: int = 16_384,
                    repeats: int = 15, seed: int = 0) -> CacheRead:
    """Median time of one decoding step's attention (1 query per head, B = 1) over ``cache_len`` cached positions."""
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(1, heads, 1, head_dim, generator=generator)
    key, value = (torch.randn(1, kv_heads, cache_len, head_dim, generator=generator) for _ in range(2))
    grouped_query_attention(query, key, value)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grouped_query_attention(query, key, value)
        times.append(time.perf_counter() - start)
    cache_mib = (key.numel() + value.numel()) * key.element_size() / 2**20
    return CacheRead(kv_heads, cache_mib, 1e3 * statistics.median(times))


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: bytes in binary units with three significant digits."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = min(int(math.log(max(count, 1), 1024)), len(units) - 1)
    return f"{count / 1024**power:.3g} {units[power]}"
