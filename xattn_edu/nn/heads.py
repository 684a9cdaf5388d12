"""Multi-head attention. Self- and cross-attention are one module.

``attn(x)`` is self-attention: queries, keys and values all come from ``x``.
``attn(x, context=memory)`` is cross-attention: queries come from ``x`` (the decoder),
keys and values from ``memory`` (the encoder). The output always has the queries' length.

Each head attends in its own ``Dh = D / h`` dimensional subspace; the heads' outputs are
concatenated and mixed by an output projection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xattn_edu.nn.attention import scaled_dot_product_attention
from xattn_edu.nn.cache import GrowingKV, StaticKV
from xattn_edu.nn.positional import RotaryEmbedding


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with optional caches and positional hooks.

    Args:
        d_model: D, width of the inputs and the output.
        n_heads: h; must divide D.
        bias: whether the four projections have a bias.
        dropout: dropout on the attention weights while training.
        fused: use ``F.scaled_dot_product_attention`` (same numbers as the readable path).
        rotary: rotate queries and keys by their positions (rotary embedding), if given.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        fused: bool = True,
        rotary: RotaryEmbedding | None = None,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout, self.fused, self.rotary = dropout, fused, rotary
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def share_kv_from(self, other: MultiHeadAttention) -> None:
        """Tie weights: use ``other``'s key and value projections (the same parameters) from now on."""
        if other.d_model != self.d_model:
            raise ValueError(f"cannot share K/V projections of width {other.d_model} with {self.d_model}")
        self.k_proj, self.v_proj = other.k_proj, other.v_proj

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) → (B, h, T, Dh)."""
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        """(B, h, T, Dh) → (B, T, D)."""
        return x.transpose(1, 2).flatten(-2)

    def project_keys_values(
        self, source: Tensor, key_pos: Tensor | None = None, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Project source (B, Tk, D) into per-head keys and values, each (B, h, Tk, Dh).

        ``key_pos`` (B or 1, Tk, D) is added to the input of the key projection only; ``positions``
        (Tk,) rotates the keys when the module has a rotary embedding.
        """
        key = self.split_heads(self.k_proj(source if key_pos is None else source + key_pos))
        value = self.split_heads(self.v_proj(source))
        if self.rotary is not None:
            key = self.rotary(key, positions)
        return key, value

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        key_mask: Tensor | None = None,
        cache: GrowingKV | StaticKV | None = None,
        bias: Tensor | None = None,
        query_pos: Tensor | None = None,
        key_pos: Tensor | None = None,
        query_positions: Tensor | None = None,
        key_positions: Tensor | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from x to itself (self-attention) or to ``context`` (cross-attention).

        Args:
            x: (B, Tq, D) the queries' source.
            context: (B, Tk, D) memory to attend to; None for self-attention.
            mask: boolean with four axes (B or 1, h or 1, Tq or 1, Tk), True = may attend: padding
                (B, 1, 1, Tk) from ``masks.padding_mask``, causal (1, 1, Tq, Tk). Fewer axes, such as (B, Tk)
                or (Tq, Tk), raise ``ValueError`` for every size (broadcasting would read (B, Tk) as (Tq, Tk)).
            key_mask: boolean (B, Tk), True = real token: ``nn.MultiheadAttention``'s ``key_padding_mask``
                layout with our polarity; combined with ``mask``. With a ``GrowingKV``, Tk includes the cache.
            cache: ``GrowingKV`` (self-attention: x holds only the new positions) or ``StaticKV``
                (cross-attention: the memory is projected on the first call; later calls may pass no context).
            bias: float (1 or B, h or 1, Tq, Tk) added to the scores (e.g. ``RelativePositionBias``), any float
                dtype (cast to the scores'); a -inf entry hides that key like the mask.
            query_pos, key_pos: (B or 1, Tq or Tk, D), batch first, added to the query (key) projection's input.
            query_positions, key_positions: rotary positions; default: after the cache, and 0..Tk-1 for context.
            return_weights: also return the attention weights (B, h, Tq, Tk).

        Returns:
            (B, Tq, D), or ((B, Tq, D), (B, h, Tq, Tk)) when ``return_weights``, by the rules of
            :func:`xattn_edu.nn.attention.scaled_dot_product_attention`: a query with no finite score (every
            key hidden by mask, key_mask or a -inf bias) gets zero weights and finite gradients (its output is
            ``out_proj``'s bias); under ``torch.autocast`` the scores run in autocast's dtype, the bias is cast
            to it, and half-precision scores are softmaxed in float32.

        Raises:
            ValueError: wrong shapes, a mask of < 4 axes, a misused cache, or q and cached k/v dtypes differing.
        """
        cross = context is not None or isinstance(cache, StaticKV)
        self._check_inputs(x, context, cache, cross)
        self._check_positions(x, query_pos, key_pos, context if cross else x)  # context None: cached keys
        if self.rotary is not None:
            query_positions, key_positions = self._rotary_positions(x, context, cache, query_positions, key_positions)

        query = self.split_heads(self.q_proj(x if query_pos is None else x + query_pos))  # (B, h, Tq, Dh)
        if self.rotary is not None:
            query = self.rotary(query, query_positions)
        key, value = self._keys_values(x, context, cache, key_pos, key_positions)  # (B, h, Tk, Dh) each
        result = scaled_dot_product_attention(
            query, key, value, mask, bias=bias, dropout_p=self.dropout if self.training else 0.0,
            return_weights=return_weights, fused=self.fused, key_mask=key_mask,
        )
        output, weights = result if return_weights else (result, None)
        output = self.out_proj(self.merge_heads(output))  # (B, Tq, D)
        return (output, weights) if return_weights else output

    def _keys_values(self, x: Tensor, context: Tensor | None, cache, key_pos: Tensor | None,
                     key_positions: Tensor | None) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Keys and values (B, h, Tk, Dh): the static cache's (filled on first use), or projected now
        from ``context`` (else ``x``) and, with a growing cache, appended to the cached ones."""
        if isinstance(cache, StaticKV):
            if not cache.filled:
                cache.fill(*self.project_keys_values(context, key_pos, key_positions))
            return cache.key, cache.value
        key, value = self.project_keys_values(x if context is None else context, key_pos, key_positions)
        if isinstance(cache, GrowingKV):
            key, value = cache.append(key, value)  # (B, h, offset + Tq, Dh)
        return key, value

    def _check_inputs(self, x: Tensor, context: Tensor | None, cache, cross: bool) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, Tq, D={self.d_model}), got shape {tuple(x.shape)}")
        if context is not None and (context.dim() != 3 or context.shape[-1] != self.d_model
                                    or context.shape[0] != x.shape[0]):
            raise ValueError(
                f"context must be (B={x.shape[0]}, Tk, D={self.d_model}), got shape {tuple(context.shape)}"
            )
        if cross and isinstance(cache, GrowingKV):
            raise ValueError("a GrowingKV cache is for self-attention; cross-attention takes a StaticKV cache")
        if isinstance(cache, StaticKV) and not cache.filled and context is None:
            raise ValueError("an empty StaticKV cache needs the context (memory) on the first call")

    def _check_positions(self, x: Tensor, query_pos: Tensor | None, key_pos: Tensor | None,
                         source: Tensor | None) -> None:
        """Position vectors are batch first (B or 1, T, D): a (T, D) tensor would broadcast ambiguously."""
        for name, pos, seq in (("query_pos", query_pos, x), ("key_pos", key_pos, source)):
            if pos is None or seq is None:  # no key_pos check when a filled StaticKV holds the keys
                continue
            if pos.dim() != 3 or pos.shape[0] not in (1, x.shape[0]) or pos.shape[1:] != seq.shape[1:]:
                raise ValueError(
                    f"{name} must be (B={x.shape[0]} or 1, T={seq.shape[1]}, D={self.d_model}), batch first; "
                    f"got shape {tuple(pos.shape)} (transpose a sequence-first (T, B, D) tensor; give a (T, D) "
                    f"one a leading axis of 1)"
                )

    def _rotary_positions(self, x: Tensor, context: Tensor | None, cache, query_positions: Tensor | None,
                          key_positions: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Default rotary positions: queries after the cached ones, cross-attention keys at 0..Tk-1."""
        offset = cache.length if isinstance(cache, GrowingKV) else 0
        if query_positions is None:
            query_positions = torch.arange(offset, offset + x.shape[1], device=x.device)
        if key_positions is None and context is None and not isinstance(cache, StaticKV):
            key_positions = query_positions
        elif key_positions is None and context is not None:
            key_positions = torch.arange(context.shape[1], device=x.device)
        return query_positions, key_positions
