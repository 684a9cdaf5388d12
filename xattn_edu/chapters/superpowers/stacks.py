"""Small Transformer stacks for the gradient-flow experiments of Chapter 4, one per wiring variant.

Every variant has an encoder side of ``L`` layers and a decoder side of ``L_dec`` layers of the same
width, built from :class:`xattn_edu.nn.heads.MultiHeadAttention` and the boolean masks of
:mod:`xattn_edu.nn.masks` (True = may attend). What changes is how the decoder reaches the source:

* ``"every"``: an encoder-decoder; every decoder layer cross-attends to the top encoder layer
  (the standard Transformer, Vaswani et al. 2017);
* ``"one"``: the same, but only the first (lowest) decoder layer has a cross-attention;
* ``"none"``: no cross-attention at all: one decoder-only stack of ``L + L_dec`` layers reads
  ``source, SEP, target`` (the source is a prefix it sees bidirectionally, the target causally).
  Its bottom ``L`` layers play the encoder's part and are what :attr:`encoder_layers` returns;
* ``"mixture"``: every decoder layer cross-attends to a learned softmax-weighted mixture of ALL
  encoder states (the embeddings and each layer's output), "transparent attention"
  (Bapna et al. 2018, *Training Deeper Neural Machine Translation Models with Transparent
  Attention*, EMNLP): the one wiring with a real path from the loss to every encoder layer.

Each sublayer sits in a :class:`Sublayer` that is pre-norm or post-norm, with or without the
residual connection. No dropout: the experiments compare wirings, not regularisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import causal_mask
from xattn_edu.nn.positional import SinusoidalPositionalEncoding

CROSS = ("every", "one", "none", "mixture")
"""The wirings between decoder and encoder, in the order the chapter shows them."""


@dataclass(frozen=True)
class StackConfig:
    """One model of the gradient-flow experiments."""

    vocab: int  # V, token ids 0..V-1
    d_model: int = 32  # D, width of every token vector
    n_heads: int = 4  # h, heads per attention module (must divide D)
    d_ff: int = 64  # hidden width of the feed-forward blocks
    n_encoder_layers: int = 12  # L, depth of the encoder side (bottom L layers when cross="none")
    n_decoder_layers: int = 4  # L_dec, depth of the decoder side
    cross: str = "every"  # how the decoder reaches the source: one of CROSS
    residual: bool = True  # x + f(...) around each sublayer; False keeps f(...) alone
    pre_norm: bool = True  # layer norm before each sublayer (True) or after the sum (False, the 2017 original)
    max_len: int = 64  # longest sequence the positions cover

    def __post_init__(self):
        if self.cross not in CROSS:
            raise ValueError(f"cross must be one of {CROSS}, got {self.cross!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if self.n_encoder_layers < 1 or self.n_decoder_layers < 1:
            raise ValueError("a stack needs at least one encoder and one decoder layer")


class Sublayer(nn.Module):
    """One sublayer ``f`` wrapped four ways: pre/post-norm, with/without the residual connection.

    pre-norm: ``x + f(norm(x))`` (``f(norm(x))`` without residual); post-norm: ``norm(x + f(x))``
    (``norm(f(x))`` without residual). Shapes: x (B, T, D) -> (B, T, D).
    """

    def __init__(self, d_model: int, residual: bool, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.residual, self.pre_norm = residual, pre_norm

    def forward(self, x: Tensor, f) -> Tensor:
        if self.pre_norm:
            out = f(self.norm(x))
            return x + out if self.residual else out
        out = f(x)
        return self.norm(x + out if self.residual else out)


def _feed_forward(cfg: StackConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(), nn.Linear(cfg.d_ff, cfg.d_model))


class Layer(nn.Module):
    """Self-attention, an optional cross-attention, then a feed-forward network.

    ``forward(x, self_mask, memory)``: x (B, T, D), self_mask broadcastable to (B, h, T, T),
    memory (B, Ts, D) or None (no cross-attention) -> (B, T, D).
    """

    def __init__(self, cfg: StackConfig, cross: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads)
        self.self_block = Sublayer(cfg.d_model, cfg.residual, cfg.pre_norm)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads) if cross else None
        self.cross_block = Sublayer(cfg.d_model, cfg.residual, cfg.pre_norm) if cross else None
        self.ff = _feed_forward(cfg)
        self.ff_block = Sublayer(cfg.d_model, cfg.residual, cfg.pre_norm)

    def forward(self, x: Tensor, self_mask: Tensor | None, memory: Tensor | None = None) -> Tensor:
        x = self.self_block(x, lambda h: self.self_attn(h, mask=self_mask))
        if self.cross_attn is not None:
            x = self.cross_block(x, lambda h: self.cross_attn(h, context=memory))
        return self.ff_block(x, self.ff)


def mix_layers(states: Tensor, logits: Tensor) -> Tensor:
    """The transparent-attention memory: a softmax-weighted sum of the encoder's states.

    Args:
        states: (L+1, B, Ts, D), the embeddings then each encoder layer's output.
        logits: (L+1,), one learned score per state (Bapna et al. 2018, eq. 4).

    Returns:
        (B, Ts, D): ``sum_l softmax(logits)_l * states[l]``.
    """
    weights = torch.softmax(logits, dim=0)  # (L+1,)
    return torch.einsum("l,lbtd->btd", weights, states)


class Stack(nn.Module):
    """An encoder-decoder (or decoder-only) model wired as ``cfg.cross`` says; see the module docstring.

    ``forward(src, tgt_in)``: src (B, Ts), tgt_in (B, Tt) token ids -> logits (B, Tt, V), one
    prediction per target position (teacher forcing).
    """

    def __init__(self, cfg: StackConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.d_model)
        self.positions = SinusoidalPositionalEncoding(cfg.d_model, cfg.max_len)
        depth, dec = cfg.n_encoder_layers, cfg.n_decoder_layers
        if cfg.cross == "none":
            self.layers = nn.ModuleList(Layer(cfg, cross=False) for _ in range(depth + dec))
        else:
            self.layers = nn.ModuleList([*(Layer(cfg, cross=False) for _ in range(depth)),
                                         *(Layer(cfg, cross=cfg.cross != "one" or i == 0) for i in range(dec))])
        # A pre-norm stack ends with a norm, on the memory and before the output; post-norm layers end normalised.
        self.memory_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.mix_logits = nn.Parameter(torch.zeros(dec, depth + 1)) if cfg.cross == "mixture" else None
        self.head = nn.Linear(cfg.d_model, cfg.vocab)
        for name, param in self.named_parameters():
            if param.dim() > 1 and "mix_logits" not in name:
                nn.init.xavier_uniform_(param)

    @property
    def encoder_layers(self) -> nn.ModuleList:
        """The L layers that read the source: the encoder, or the decoder-only stack's bottom L layers."""
        return self.layers[: self.cfg.n_encoder_layers]

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The L_dec layers that make the predictions."""
        return self.layers[self.cfg.n_encoder_layers:]

    def _embed(self, ids: Tensor) -> Tensor:
        """ids (B, T) -> token vectors plus positions (B, T, D)."""
        if ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"a sequence of {ids.shape[1]} tokens is longer than max_len={self.cfg.max_len}")
        return self.embed(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        if self.cfg.cross == "none":
            return self._forward_prefix(src, tgt_in)
        states = [self._embed(src)]
        for layer in self.encoder_layers:
            states.append(layer(states[-1], None))  # bidirectional: no mask
        x = self._embed(tgt_in)
        mask = causal_mask(tgt_in.shape[1], device=tgt_in.device)  # (1, 1, Tt, Tt)
        for i, layer in enumerate(self.decoder_layers):
            if self.mix_logits is not None:
                memory = self.memory_norm(mix_layers(torch.stack(states), self.mix_logits[i]))
            else:
                memory = self.memory_norm(states[-1])
            x = layer(x, mask, memory)
        return self.head(self.final_norm(x))

    def _forward_prefix(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Decoder-only: one stack over ``src ++ tgt_in``; predictions at the target positions."""
        ts, tt = src.shape[1], tgt_in.shape[1]
        x = self._embed(torch.cat([src, tgt_in], dim=1))  # (B, Ts + Tt, D)
        mask = prefix_mask(ts, tt, device=src.device)
        for layer in self.layers:
            x = layer(x, mask)
        return self.head(self.final_norm(x[:, ts:]))


def prefix_mask(prefix: int, rest: int, device: torch.device | str | None = None) -> Tensor:
    """Prefix-LM mask: every position sees the whole prefix, the rest also sees itself and its past.

    Args:
        prefix: length of the prefix (the source), seen bidirectionally.
        rest: length of what follows (the target), seen causally.

    Returns:
        (1, 1, T, T) boolean, T = prefix + rest; True = may attend. The prefix never sees the rest.
    """
    total = prefix + rest
    keys = torch.arange(total, device=device)
    return causal_mask(total, device=device) | (keys < prefix)[None, None, None, :]
