"""Decoding a trained translator: greedy and beam search, with and without the Chapter 3 caches.

:func:`cached_vs_uncached` decodes the same sentences with the package's
:func:`~xattn_edu.translate.decode.translate_ids` twice, once with both caches (the static
cross-attention K/V and the growing self-attention K/V) and once recomputing the whole prefix at
every step, checks that the outputs are identical and times both (median of ``repeats`` runs).

Every call into :mod:`xattn_edu.translate` for decoding sits in this module.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from xattn_edu.common.device import synchronize
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate.batching import pad_batch
from xattn_edu.translate.corpus import encode_source
from xattn_edu.translate.decode import generate, translate_ids


@dataclass(frozen=True)
class SpeedRow:
    """Cached against uncached decoding of the same sentences."""

    search: str  # "greedy" or "beam k"
    sentences: int  # sentences decoded
    cached_seconds: float  # median wall time with both caches
    uncached_seconds: float  # median wall time recomputing every prefix
    identical: bool  # every output token the same both ways

    @property
    def speedup(self) -> float:
        """uncached / cached time."""
        return self.uncached_seconds / self.cached_seconds


def _timed(model: Seq2Seq, sources: Sequence[list[int]], bos: int, eos: int, beam: int, cache: bool):
    device = next(model.parameters()).device
    synchronize(device)
    start = time.perf_counter()
    outputs = translate_ids(model, sources, bos_id=bos, eos_id=eos, beam_size=beam, use_cache=cache)
    synchronize(device)
    return time.perf_counter() - start, [out.tokens for out in outputs]


def cached_vs_uncached(model: Seq2Seq, sources: Sequence[list[int]], *, bos_id: int, eos_id: int,
                       beam_sizes: Sequence[int] = (1, 4), repeats: int = 3) -> list[SpeedRow]:  # fmt: skip
    """Decode ``sources`` (id lists ending in EOS) with and without the caches, for each beam size.

    Returns one :class:`SpeedRow` per beam size (1 = greedy); times are medians over ``repeats`` runs.
    """
    rows = []
    for beam in beam_sizes:
        runs = {cache: [_timed(model, sources, bos_id, eos_id, beam, cache) for _ in range(repeats)]
                for cache in (True, False)}  # fmt: skip
        same = runs[True][0][1] == runs[False][0][1]
        times = {cache: statistics.median(seconds for seconds, _ in runs[cache]) for cache in runs}
        rows.append(SpeedRow("greedy" if beam == 1 else f"beam {beam}", len(sources), times[True], times[False], same))
    return rows


def package_greedy(model: Seq2Seq, sources: Sequence[list[int]], *, bos_id: int, eos_id: int) -> list[list[int]]:
    """The package's own greedy search with both caches, in batches: one token list per source."""
    return [out.tokens for out in translate_ids(model, sources, bos_id=bos_id, eos_id=eos_id)]


def translate_text(model: Seq2Seq, src_tok, tgt_tok, text: str, *, beam_size: int = 1):
    """Translate one sentence and read its cross-attention (teacher-forced over the output).

    Returns:
        (source tokens, output tokens, attention (L, h, len(output), len(source tokens)) as a numpy array,
        the words the source vocabulary lacks, the output as written). The source's EOS column is left out.
    """
    ids = encode_source(src_tok, text)
    if len(ids) > model.cfg.max_len:
        raise ValueError(f"the sentence has {len(ids)} tokens, more than the model's {model.cfg.max_len}")
    src = torch.tensor([ids], device=next(model.parameters()).device)
    result = generate(model, src, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, beam_size=beam_size,
                      return_attention=True)[0]  # fmt: skip
    written = tgt_tok.form.detokenize(tgt_tok.decode(result.tokens))
    output_tokens = [tgt_tok.decode([token]) or "?" for token in result.tokens]
    attention = result.attention[..., : len(ids) - 1].numpy()  # (L, h, m, S): without the source's EOS
    return src_tok.tokens(text), output_tokens, attention, src_tok.unknown(text), written


def pad_sources(sources: Sequence[list[int]], pad_id: int) -> torch.Tensor:
    """Source id lists as one right-padded batch (B, Ts)."""
    return pad_batch(sources, pad_id)
