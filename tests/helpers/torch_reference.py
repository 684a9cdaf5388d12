"""Helpers for comparing our modules with torch's own, weight for weight."""

import torch
from torch import nn

from xattn_edu.nn.heads import MultiHeadAttention


@torch.no_grad()
def copy_attention_weights(dst: nn.MultiheadAttention, src: MultiHeadAttention) -> None:
    """Make ``dst`` compute the same function as ``src`` (same D and h): copy its q/k/v/out projections."""
    dst.in_proj_weight.copy_(torch.cat([src.q_proj.weight, src.k_proj.weight, src.v_proj.weight]))  # (3D, D)
    dst.in_proj_bias.copy_(torch.cat([src.q_proj.bias, src.k_proj.bias, src.v_proj.bias]))  # (3D,)
    dst.out_proj.weight.copy_(src.out_proj.weight)
    dst.out_proj.bias.copy_(src.out_proj.bias)
