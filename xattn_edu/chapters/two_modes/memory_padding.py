"""Claim (Chapter 3): without a memory padding mask, cross-attention depends on how much padding a batch adds.

Sentences in a batch are padded to the longest one. The padding positions of the encoder memory are
not zero vectors (a padding embedding plus a position), so a query that may attend to them gives them
weight and mixes their values into its output. :func:`padding_sensitivity` pads one sentence's memory
with 0, 1, ... extra positions and measures how far the cross-attention output moves from the unpadded
output, without and with the padding mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import padding_mask


@dataclass(frozen=True)
class PaddingRow:
    """How much padding the memory with ``pads`` positions moves the cross-attention output."""

    pads: int  # padding positions appended to the memory
    weight_on_padding: float  # largest total weight a query gives the padding positions, without the mask
    change_without_mask: float  # max |output - unpadded output| without a mask
    change_with_mask: float  # the same with the padding mask (True = real token)


@torch.no_grad()
def padding_sensitivity(
    max_pads: int = 8, d_model: int = 32, n_heads: int = 4, src_len: int = 5, tgt_len: int = 3, seed: int = 0
) -> list[PaddingRow]:
    """Cross-attention from ``tgt_len`` queries to a ``src_len``-token memory padded with 0..``max_pads`` positions."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = MultiHeadAttention(d_model, n_heads, fused=False).eval()
    queries = torch.randn(1, tgt_len, d_model, generator=generator)  # (1, Tq, D) decoder states
    memory = torch.randn(1, src_len, d_model, generator=generator)  # (1, Ts, D) real encoder outputs
    padding = torch.randn(1, max_pads, d_model, generator=generator)  # what the encoder gives padding positions
    unpadded = attn(queries, context=memory)  # (1, Tq, D)
    rows = []
    for pads in range(max_pads + 1):
        padded = torch.cat([memory, padding[:, :pads]], dim=1)  # (1, Ts + pads, D)
        mask = padding_mask(torch.tensor([src_len]), src_len + pads)  # (1, 1, 1, Ts + pads)
        without, weights = attn(queries, context=padded, return_weights=True)  # weights (1, h, Tq, Ts + pads)
        with_mask = attn(queries, context=padded, mask=mask)
        rows.append(PaddingRow(
            pads=pads,
            weight_on_padding=float(weights[..., src_len:].sum(-1).max()),
            change_without_mask=float((without - unpadded).abs().max()),
            change_with_mask=float((with_mask - unpadded).abs().max()),
        ))
    return rows
