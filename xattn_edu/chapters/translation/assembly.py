"""The whole translator assembled from layer functions: the student's, or the reference's, on the package's weights.

:class:`~xattn_edu.nn.model.Seq2Seq` holds the weights (embeddings, layers, norms, output projection);
:func:`assembled_logits` runs them with the encoder-layer, decoder-layer and attention functions it is
given, so the chapter can show that the model a student assembles computes exactly what the package's
``model(src, tgt_in)`` computes, with the student's own attention switched in or out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xattn_edu.chapters.translation.reference import Attention
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import decoder_self_mask, padding_mask
from xattn_edu.nn.model import Seq2Seq


def package_attention(x: Tensor, attn: MultiHeadAttention, context: Tensor | None = None,
                      mask: Tensor | None = None) -> Tensor:  # fmt: skip
    """The package's multi-head attention, called like Chapter 3's ``multi_head_attention``.

    Args:
        x: (B, Tq, D) where the queries come from.
        attn: the module whose projections are used.
        context: (B, Tk, D) memory for cross-attention; None for self-attention.
        mask: boolean, four axes broadcastable to (B, h, Tq, Tk), True = may attend.

    Returns:
        (B, Tq, D).
    """
    return attn(x, context=context, mask=mask)


def embed_source(model: Seq2Seq, src: Tensor) -> Tensor:
    """Source vectors as ``model.encode`` starts from them (eval mode): scaled embeddings plus positions.

    src (B, Ts) ids → (B, Ts, D).
    """
    positions = torch.arange(src.shape[1], device=src.device)
    return model.src_embed(src) * math.sqrt(model.cfg.d_model) + model.positions(positions)


def assembled_logits(model: Seq2Seq, src: Tensor, tgt_in: Tensor, *, encoder_layer, decoder_layer,
                     attention: Attention = package_attention) -> Tensor:  # fmt: skip
    """Teacher-forced logits of ``model``'s weights, computed layer by layer with the functions given.

    Args:
        model: a pre-norm ``Seq2Seq`` in eval mode (dropout would make the comparison random).
        src: (B, Ts) padded source ids.
        tgt_in: (B, Tt) decoder input ids (BOS first), padded.
        encoder_layer: ``encoder_layer(layer, x, mask, attention)``, as in Exercise 1.
        decoder_layer: ``decoder_layer(layer, x, memory, self_mask, memory_mask, attention)``, Exercise 2.
        attention: ``attention(x, attn, context, mask)``, multi-head attention.

    Returns:
        (B, Tt, V) logits; equal to ``model(src, tgt_in)`` when the three functions are right.

    Raises:
        ValueError: for a post-norm model (the exercises assemble pre-norm layers) or one in training mode.
    """
    if not model.cfg.pre_norm:
        raise ValueError("assembled_logits assembles pre-norm layers; this model is post-norm")
    if model.training:
        raise ValueError("call model.eval() first: dropout would make the two forward passes differ")
    memory_mask = padding_mask(ids=src, pad_id=model.cfg.pad_id)  # (B, 1, 1, Ts)
    x = embed_source(model, src)
    for layer in model.encoder_layers:
        x = encoder_layer(layer, x, memory_mask, attention)
    memory = model.encoder_norm(x)
    y = model.embed_target(tgt_in)
    self_mask = decoder_self_mask(tgt_in, model.cfg.pad_id)  # (B, 1, Tt, Tt): causal and target padding
    for layer in model.decoder_layers:
        y = decoder_layer(layer, y, memory, self_mask, memory_mask, attention)
    return model.logits(model.decoder_norm(y))
