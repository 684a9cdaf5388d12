"""The small encoder-decoder of Chapter 5, with the three details the chapter varies as switches.

Built from :mod:`xattn_edu.nn`: the layers are ``nn.model.EncoderLayer`` and ``nn.model.DecoderLayer``;
for the placements of Part 1 each decoder layer's cross-attention is a :class:`PositionedCrossAttention`,
a ``MultiHeadAttention`` that passes the package's positional hooks (``query_pos``, ``key_pos``, ``bias``,
a rotary embedding) to itself.

* ``positions`` says where position information enters:
  ``"embeddings"`` adds sinusoidal vectors to both sides' token embeddings (the usual Transformer);
  every other value keeps the encoder and the decoder's self-attention position-free and puts
  position only into the cross-attention: ``"none"``; ``"queries"`` (target position vectors added to
  the input of the query projection); ``"keys"`` (source position vectors added to the input of the key
  projection); ``"both"``; ``"relative"`` (a learned bias per head and per distance
  ``source position - target position`` added to the scores); ``"rotary"`` (queries rotated by their
  target position, keys by their source position).
* ``causal_encoder``: each source position attends only to itself and earlier ones.
* ``wait_k``: decoder step t may cross-attend only to source positions ``< t + k`` (simultaneous
  translation's wait-k policy); None lets every step see the whole source.

Token ids: 0 is padding in both vocabularies; the target starts with a BOS token chosen by the task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import causal_mask, decoder_self_mask, padding_mask
from xattn_edu.nn.model import DecoderLayer, EncoderLayer, Seq2SeqConfig
from xattn_edu.nn.positional import RelativePositionBias, RotaryEmbedding, sinusoidal_table

PLACEMENTS = ("none", "queries", "keys", "both", "relative", "rotary")
"""Where the cross-attention gets position from when the rest of the model has none (Part 1)."""

PAD = 0


@dataclass(frozen=True)
class DetailsConfig:
    """Hyper-parameters of :class:`DetailsModel`."""

    src_vocab: int  # V_src, source vocabulary size (id 0 = padding)
    tgt_vocab: int  # V_tgt, target vocabulary size (id 0 = padding)
    d_model: int = 32  # D, width of every token vector
    n_heads: int = 2  # h, heads per attention module
    n_encoder_layers: int = 1  # depth of the encoder
    n_decoder_layers: int = 1  # depth of the decoder
    d_ff: int = 64  # hidden width of the feed-forward blocks
    max_len: int = 32  # longest source or target sequence
    positions: str = "embeddings"  # "embeddings" or one of PLACEMENTS (see the module docstring)
    causal_encoder: bool = False  # source position j sees only positions <= j
    wait_k: int | None = None  # decoder step t sees source positions < t + wait_k; None = all

    def __post_init__(self):
        if self.positions not in ("embeddings", *PLACEMENTS):
            raise ValueError(f"positions must be 'embeddings' or one of {PLACEMENTS}, got {self.positions!r}")
        if self.wait_k is not None and self.wait_k < 1:
            raise ValueError(f"wait_k must be at least 1 (or None), got {self.wait_k}")

    def layer_config(self) -> Seq2SeqConfig:
        """The ``Seq2SeqConfig`` that configures the package's encoder and decoder layers (no dropout)."""
        return Seq2SeqConfig(self.src_vocab, self.tgt_vocab, d_model=self.d_model, n_heads=self.n_heads,
                             d_ff=self.d_ff, dropout=0.0, max_len=self.max_len)


def wait_k_mask(tgt_len: int, src_len: int, k: int | None, device=None) -> Tensor:
    """Cross-attention mask of the wait-k policy: step t may read source positions j < t + k.

    Returns:
        (1, 1, Tt, Ts) boolean, True = may attend; all True when ``k`` is None.
    """
    steps = torch.arange(tgt_len, device=device)[:, None]
    sources = torch.arange(src_len, device=device)[None, :]
    allowed = torch.ones(tgt_len, src_len, dtype=torch.bool, device=device) if k is None else sources < steps + k
    return allowed[None, None]


class PositionedCrossAttention(MultiHeadAttention):
    """Cross-attention that adds position information itself, where its placement puts it.

    Args:
        d_model, n_heads: D and h.
        placement: one of :data:`PLACEMENTS` (``"none"`` adds nothing).
        max_len: the longest target or source it will see.
    """

    def __init__(self, d_model: int, n_heads: int, placement: str, max_len: int):
        rotary = RotaryEmbedding(d_model // n_heads) if placement == "rotary" else None
        super().__init__(d_model, n_heads, rotary=rotary)
        self.placement = placement
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)
        self.relative = RelativePositionBias(n_heads, max_len) if placement == "relative" else None

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None, **kwargs):
        """As ``MultiHeadAttention.forward`` with ``context`` (B, Ts, D) required; positions are added here."""
        tgt_len, src_len = x.shape[1], context.shape[1]
        if self.placement in ("queries", "both"):
            kwargs["query_pos"] = self.table[None, :tgt_len]  # (1, Tt, D), batch first
        if self.placement in ("keys", "both"):
            kwargs["key_pos"] = self.table[None, :src_len]  # (1, Ts, D)
        if self.relative is not None:
            steps, sources = torch.arange(tgt_len, device=x.device), torch.arange(src_len, device=x.device)
            kwargs["bias"] = self.relative(steps, sources)  # (1, h, Tt, Ts)
        return super().forward(x, context, mask, **kwargs)


class DetailsModel(nn.Module):
    """A Transformer encoder-decoder whose position placement, encoder direction and cross mask are switches.

    ``forward(src, tgt_in)`` gives logits (B, Tt, V_tgt); ``embed_source`` then ``from_source_vectors``
    does the same from the encoder's input vectors, so a probe can differentiate with respect to them.
    """

    def __init__(self, cfg: DetailsConfig):
        super().__init__()
        self.cfg = cfg
        layer_cfg = cfg.layer_config()
        self.src_embed = nn.Embedding(cfg.src_vocab, cfg.d_model, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, cfg.d_model, padding_idx=PAD)
        self.register_buffer("table", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
        self.encoder_layers = nn.ModuleList(EncoderLayer(layer_cfg) for _ in range(cfg.n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(layer_cfg) for _ in range(cfg.n_decoder_layers))
        if cfg.positions in PLACEMENTS:
            for layer in self.decoder_layers:
                layer.cross_attn = PositionedCrossAttention(cfg.d_model, cfg.n_heads, cfg.positions, cfg.max_len)
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        for embedding in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embedding.weight, std=cfg.d_model ** -0.5)
            embedding.weight.data[PAD].zero_()

    def attentions(self) -> list[MultiHeadAttention]:
        """Every attention module: encoder self-attention, then per decoder layer self- and cross-attention."""
        return [m for m in self.modules() if isinstance(m, MultiHeadAttention)]

    def _embed(self, ids: Tensor, embedding: nn.Embedding) -> Tensor:
        x = embedding(ids) * math.sqrt(self.cfg.d_model)  # (B, T, D)
        return x + self.table[: ids.shape[1]] if self.cfg.positions == "embeddings" else x

    def embed_source(self, src: Tensor) -> Tensor:
        """src ids (B, Ts) → the encoder's input vectors (B, Ts, D)."""
        return self._embed(src, self.src_embed)

    def encode(self, vectors: Tensor, src_mask: Tensor) -> Tensor:
        """Encoder input vectors (B, Ts, D) and padding mask (B, 1, 1, Ts) → memory (B, Ts, D)."""
        mask = src_mask & causal_mask(vectors.shape[1], device=vectors.device) if self.cfg.causal_encoder else src_mask
        for layer in self.encoder_layers:
            vectors = layer(vectors, mask)
        return self.encoder_norm(vectors)

    def from_source_vectors(self, vectors: Tensor, src: Tensor, tgt_in: Tensor,
                            return_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, Tt, V_tgt) from the encoder's input vectors (B, Ts, D), the source ids (B, Ts)
        (for padding) and the decoder input ids (B, Tt); with ``return_weights`` also the cross-attention
        weights of every decoder layer, each (B, h, Tt, Ts)."""
        src_mask = padding_mask(ids=src, pad_id=PAD)  # (B, 1, 1, Ts)
        memory = self.encode(vectors, src_mask)
        tgt_len, src_len = tgt_in.shape[1], src.shape[1]
        memory_mask = src_mask & wait_k_mask(tgt_len, src_len, self.cfg.wait_k, device=src.device)
        self_mask = decoder_self_mask(tgt_in, PAD)
        x, all_weights = self._embed(tgt_in, self.tgt_embed), []
        for layer in self.decoder_layers:
            x, weights = layer(x, memory, self_mask, memory_mask, return_weights=return_weights)
            all_weights.append(weights)
        logits = self.generator(self.decoder_norm(x))
        return (logits, all_weights) if return_weights else logits

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: src (B, Ts), tgt_in (B, Tt) → logits (B, Tt, V_tgt)."""
        return self.from_source_vectors(self.embed_source(src), src, tgt_in)
