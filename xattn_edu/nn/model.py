"""A small Transformer encoder-decoder built from the package's own attention modules.

The encoder reads the whole source at once (bidirectional self-attention). Each decoder
layer runs causal self-attention over the target so far, then cross-attention from the
target (queries) to the encoder memory (keys and values), then a feed-forward network.
Pre-layer-norm residual blocks by default (``x + f(norm(x))``); post-norm is an option.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from xattn_edu.nn.cache import DecoderCache, LayerCache
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import causal_mask, decoder_self_mask, padding_mask
from xattn_edu.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Hyper-parameters of :class:`Seq2Seq`."""

    src_vocab: int  # V_src, source vocabulary size
    tgt_vocab: int  # V_tgt, target vocabulary size
    d_model: int = 256  # D, width of every token vector
    n_heads: int = 4  # h, attention heads per attention module (must divide D)
    n_encoder_layers: int = 3  # depth of the encoder stack
    n_decoder_layers: int = 3  # depth of the decoder stack
    d_ff: int = 1024  # hidden width of the feed-forward blocks
    dropout: float = 0.1  # on embeddings, residual branches and attention weights
    max_len: int = 256  # longest source or target sequence the positions cover
    positional: str = "sinusoidal"  # "sinusoidal" (fixed) or "learned" absolute positions
    activation: str = "relu"  # feed-forward non-linearity: "relu" or "gelu"
    pre_norm: bool = True  # layer norm before each sublayer (stable without warm-up tricks)
    tie_output: bool = True  # output projection shares the target embedding matrix
    tie_kv: bool = False  # every attention module shares one K and one V projection
    fused: bool = True  # fused attention kernel (identical numbers to the readable path)
    pad_id: int = 0  # padding token id in both vocabularies

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {self.positional!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")

    def to_dict(self) -> dict:
        """Plain dict (saved in checkpoints)."""
        return asdict(self)


def _attention(cfg: Seq2SeqConfig) -> MultiHeadAttention:
    return MultiHeadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, fused=cfg.fused)


class FeedForward(nn.Sequential):
    """Position-wise two-layer MLP: (B, T, D) → (B, T, D)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str):
        act = nn.ReLU() if activation == "relu" else nn.GELU()
        super().__init__(nn.Linear(d_model, d_ff), act, nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class Residual(nn.Module):
    """A residual block around one sublayer, pre-norm ``x + f(norm(x))`` or post-norm ``norm(x + f(x))``."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        """x (B, T, D) → (B, T, D)."""
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    """Bidirectional self-attention then feed-forward."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.self_attn = _attention(cfg)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout, cfg.activation)
        self.attn_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.ff_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, Ts, D), mask (B, 1, 1, Ts) → (B, Ts, D)."""
        x = self.attn_block(x, lambda h: self.self_attn(h, mask=mask))
        return self.ff_block(x, self.ff)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the memory, then feed-forward."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.self_attn, self.cross_attn = _attention(cfg), _attention(cfg)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout, cfg.activation)
        self.self_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.cross_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.ff_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None,
        memory_mask: Tensor | None,
        cache: LayerCache | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, Tt, D), memory (B, Ts, D) → (x (B, Tt, D), cross weights (B, h, Tt, Ts) or None)."""
        self_cache = cache.self_attn if cache else None
        cross_cache = cache.cross_attn if cache else None
        x = self.self_block(x, lambda h: self.self_attn(h, mask=self_mask, cache=self_cache))
        weights = []

        def cross(h: Tensor) -> Tensor:
            out = self.cross_attn(h, context=memory, mask=memory_mask, cache=cross_cache,
                                  return_weights=return_weights)
            if return_weights:
                out, w = out
                weights.append(w)
            return out

        x = self.cross_block(x, cross)
        return self.ff_block(x, self.ff), (weights[0] if weights else None)


class Seq2Seq(nn.Module):
    """Transformer encoder-decoder for translation.

    ``forward(src, tgt_in)`` gives next-token logits for teacher forcing; ``encode`` then
    repeated ``next_token_logits(..., cache=...)`` (or ``decode``) calls give the same logits one
    step at a time, with a full, partial or no K/V cache.
    """

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(cfg.src_vocab, cfg.d_model, padding_idx=cfg.pad_id)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, cfg.d_model, padding_idx=cfg.pad_id)
        position_cls = SinusoidalPositionalEncoding if cfg.positional == "sinusoidal" else LearnedPositionalEmbedding
        self.positions = position_cls(cfg.d_model, cfg.max_len)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        # Pre-norm stacks end with a norm; post-norm layers already end normalised.
        self.encoder_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab, bias=False)
        self._init_weights()
        if cfg.tie_output:
            self.generator.weight = self.tgt_embed.weight
        if cfg.tie_kv:
            attentions = [m for m in self.modules() if isinstance(m, MultiHeadAttention)]
            for attention in attentions[1:]:
                attention.share_kv_from(attentions[0])

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if param.dim() > 1 and "positions" not in name:
                nn.init.xavier_uniform_(param)
        for embedding in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embedding.weight, std=self.cfg.d_model ** -0.5)
            embedding.weight.data[self.cfg.pad_id].zero_()

    def _embed(self, ids: Tensor, embedding: nn.Embedding, offset: int = 0) -> Tensor:
        """ids (B, T) → scaled token vectors plus positions (B, T, D)."""
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor (B, T), got {tuple(ids.shape)} {ids.dtype}")
        if offset + ids.shape[1] > self.cfg.max_len:
            raise ValueError(
                f"sequence of length {offset + ids.shape[1]} is longer than the model's maximum "
                f"({self.cfg.max_len} positions)"
            )
        positions = torch.arange(offset, offset + ids.shape[1], device=ids.device)
        x = embedding(ids) * math.sqrt(self.cfg.d_model) + self.positions(positions)
        return self.embed_dropout(x)

    def embed_target(self, tgt: Tensor, offset: int = 0) -> Tensor:
        """Decoder input vectors: tgt (B, Tt) ids at positions offset.. → (B, Tt, D)."""
        return self._embed(tgt, self.tgt_embed, offset)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, Ts) ids → (memory (B, Ts, D), memory_mask (B, 1, 1, Ts))."""
        memory_mask = padding_mask(ids=src, pad_id=self.cfg.pad_id)
        x = self._embed(src, self.src_embed)
        for layer in self.encoder_layers:
            x = layer(x, memory_mask)
        return self.encoder_norm(x), memory_mask

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor,
        *,
        cache: DecoderCache | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Decoder hidden states for target ids.

        Args:
            tgt: (B, Tt) target ids: the positions after the ``cache.length`` ones the cache holds
                (with a self-attention cache usually Tt = 1; without one, the whole prefix).
            memory: (B, Ts, D) encoder output (may be None once the cache holds its cross-attention keys/values).
            memory_mask: (B, 1, 1, Ts) True = real source token.
            cache: a ``DecoderCache`` (full or partial, see :meth:`new_cache`) for incremental
                decoding, updated in place; the target is then causal without padding.
            return_weights: also return cross-attention weights, one (B, h, Tt, Ts) per layer.

        Returns:
            hidden (B, Tt, D), or (hidden, [weights per layer]).
        """
        offset = cache.length if cache is not None else 0
        if cache is None:
            self_mask = decoder_self_mask(tgt, self.cfg.pad_id)  # (B, 1, Tt, Tt)
        else:
            self_mask = causal_mask(tgt.shape[1], offset + tgt.shape[1], device=tgt.device)
        x = self.embed_target(tgt, offset)
        all_weights = []
        for i, layer in enumerate(self.decoder_layers):
            x, weights = layer(x, memory, self_mask, memory_mask, cache.layers[i] if cache else None, return_weights)
            all_weights.append(weights)
        hidden = self.decoder_norm(x)
        return (hidden, all_weights) if return_weights else hidden

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden (B, Tt, D) → next-token logits (B, Tt, V_tgt)."""
        return self.generator(hidden)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher forcing: src (B, Ts), tgt (B, Tt) (starting with BOS) → logits (B, Tt, V_tgt)."""
        memory, memory_mask = self.encode(src)
        return self.logits(self.decode(tgt, memory, memory_mask))

    def next_token_logits(
        self, prefix: Tensor, memory: Tensor | None, memory_mask: Tensor, cache: DecoderCache | None = None
    ) -> Tensor:
        """Logits of the token after each prefix: prefix (B, t) starting with BOS → (B, V_tgt).

        The one decoding step every loop uses. The positions the cache already holds
        (``cache.length``: t - 1 with a self-attention cache, 0 without) are not fed again; the
        rest of the prefix runs through the decoder. ``memory`` (B, Ts, D) and ``memory_mask``
        (B, 1, 1, Ts) as in :meth:`decode`. Without a cache (None) every step is a full pass.
        """
        new = prefix[:, cache.length :] if cache is not None else prefix  # (B, t - cached)
        hidden = self.decode(new, memory, memory_mask, cache=cache)
        return self.logits(hidden[:, -1])  # (B, V_tgt)

    def new_cache(self, *, self_attn: bool = True, cross_attn: bool = True) -> DecoderCache:
        """An empty cache for incremental decoding with this model, keeping the K/V named True.

        ``self_attn``: the growing cache of decoder self-attention (else the prefix is recomputed);
        ``cross_attn``: the static cache of the projected memory (else projected at every step).
        """
        return DecoderCache.empty(len(self.decoder_layers), self_attn=self_attn, cross_attn=cross_attn)
