"""Turning a trained :class:`~xattn_edu.nn.model.Seq2Seq` into a translator: greedy and beam search.

Decoding writes the target one token at a time. At each step the decoder needs the
next-token distribution for every prefix written so far. Two ways to get it:

* **cached** (the default): the encoder memory's cross-attention keys/values are projected
  once (``StaticKV``) and each step feeds only the newest token, whose self-attention key and
  value are appended to a growing cache (``GrowingKV``); a step costs O(t) attention work.
* **uncached** (the baseline): every step runs the decoder over the whole prefix again, as a
  plain ``nn.Transformer`` loop does; a step costs O(t²). Same numbers, much slower.

Both search strategies work on a batch of padded sources and give each sentence exactly the
output it would get alone:

* the length limit is per sentence: at most ``source length + margin`` generated tokens
  (EOS included), capped by the model's ``max_len``; at the last allowed step EOS is forced;
* a sentence that has finished is dropped from the batch (its cache rows too), so the
  remaining ones run on a smaller batch.

Beam search keeps ``k`` prefixes per sentence, ranked by the sum of token log-probabilities.
A prefix that ends in EOS among the ``k`` best candidates of a step is *finished*; a sentence
stops once it has ``k`` finished hypotheses (or hits its length limit). The winner is the
finished hypothesis with the best length-normalised score, using the GNMT length penalty
(Wu et al., 2016)::

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

with ``|Y|`` the number of generated tokens including EOS. ``alpha = 0`` ranks by raw
log-probability (which favours short outputs); ``alpha = 1`` is close to per-token averaging.
With ``k = 1`` beam search is exactly greedy search.

Cross-attention weights of the chosen outputs come from one teacher-forced decoder pass over
``[BOS] + output`` (:func:`cross_attention`): row ``j`` is the attention of the step that
wrote output token ``j``, identical to what the decoder computed step by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate.batching import pad_batch


@dataclass
class Translation:
    """One decoded sentence."""

    tokens: list[int]  # generated target ids, without BOS and EOS
    log_prob: float  # log P(tokens + EOS | source), summed over the generated tokens
    attention: Tensor | None = None  # (L, h, len(tokens), Ts) cross-attention over the real source tokens


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``; divide a log-probability by it."""
    return ((5.0 + length) / 6.0) ** alpha


def length_limits(src: Tensor, pad_id: int, margin: int, max_len: int) -> Tensor:
    """Most tokens (EOS included) each sentence may generate: its source length + margin, at most max_len.

    Args:
        src: (B, Ts) padded source ids.

    Returns:
        (B,) int64 limits, each >= 1.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    lengths = (src != pad_id).sum(dim=1)
    return (lengths + margin).clamp(min=1, max=max_len)


class _Stepper:
    """Next-token log-probabilities for a batch of prefixes, with or without the K/V cache.

    ``select(index)`` keeps/duplicates rows (finished sentences, beam reordering).
    """

    def __init__(self, model: Seq2Seq, memory: Tensor, memory_mask: Tensor, use_cache: bool):
        self.model, self.memory, self.memory_mask = model, memory, memory_mask
        self.cache = model.new_cache(self_attn=use_cache, cross_attn=use_cache)  # without: an empty shell

    def log_probs(self, prefixes: Tensor) -> Tensor:
        """prefixes (N, t) starting with BOS → log-probabilities of the next token (N, V)."""
        logits = self.model.next_token_logits(prefixes, self.memory, self.memory_mask, self.cache)  # (N, V)
        return torch.log_softmax(logits.float(), dim=-1)

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (N',) of the memory, its mask and the cache."""
        self.memory = self.memory.index_select(0, index)
        self.memory_mask = self.memory_mask.index_select(0, index)
        self.cache.reorder(index)


def _force_eos(log_probs: Tensor, rows: Tensor, eos_id: int) -> Tensor:
    """Set every token but EOS to -inf in the rows where ``rows`` is True: log_probs (..., V)."""
    not_eos = torch.ones(log_probs.shape[-1], dtype=torch.bool, device=log_probs.device)
    not_eos[eos_id] = False
    return log_probs.masked_fill(rows[..., None] & not_eos, float("-inf"))


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq, src: Tensor, *, bos_id: int, eos_id: int, margin: int = 10, use_cache: bool = True
) -> list[Translation]:
    """Pick the most likely next token at every step.

    Args:
        model: the translator, in eval mode (:func:`generate` takes care of that).
        src: (B, Ts) padded source ids.
        bos_id, eos_id: target start and end ids.
        margin: a sentence may generate up to its source length + margin tokens (EOS included).
        use_cache: incremental decoding with the K/V cache; False recomputes the prefix every step.

    Returns:
        One :class:`Translation` per source row, in order.
    """
    memory, memory_mask = model.encode(src)  # (B, Ts, D), (B, 1, 1, Ts)
    stepper = _Stepper(model, memory, memory_mask, use_cache)
    limits = length_limits(src, model.cfg.pad_id, margin, model.cfg.max_len)
    rows = torch.arange(src.shape[0], device=src.device)  # original sentence of each active row
    prefixes = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    scores = torch.zeros(src.shape[0], device=src.device)
    results: list[Translation | None] = [None] * src.shape[0]
    step = 0
    while rows.numel():
        log_probs = _force_eos(stepper.log_probs(prefixes), step + 1 >= limits[rows], eos_id)  # (N, V)
        token = log_probs.argmax(dim=-1)  # (N,)
        scores = scores + log_probs.gather(1, token[:, None])[:, 0]
        prefixes = torch.cat([prefixes, token[:, None]], dim=1)
        done = (token == eos_id).nonzero()[:, 0]  # rows that just wrote EOS
        outputs = zip(rows[done].tolist(), prefixes[done, 1:-1].tolist(), scores[done].tolist(), strict=True)
        for row, tokens, log_prob in outputs:
            results[row] = Translation(tokens, log_prob)
        keep = (token != eos_id).nonzero()[:, 0]
        if keep.numel() < rows.numel():
            stepper.select(keep)
            rows, prefixes, scores = rows[keep], prefixes[keep], scores[keep]
        step += 1
    return results


Hypothesis = tuple[float, float, list[int]]  # (length-normalised score, log-probability, tokens without BOS/EOS)


def _collect_finished(finished: list[list[Hypothesis]], sentences: Tensor, generated: Tensor, top_scores: Tensor,
                      top_beam: Tensor, is_eos: Tensor, k: int, penalty: float) -> None:  # fmt: skip
    """Add the candidates among each sentence's k best that end in EOS to its finished hypotheses.

    sentences (N,) original indices; generated (N*k, t) tokens of each beam so far (without BOS);
    top_scores, top_beam, is_eos (N, 2k) of the step's best candidates; penalty: the GNMT length penalty.
    """
    ended_i, ended_j = (is_eos[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero(as_tuple=True)
    ended_tokens = generated[ended_i * k + top_beam[ended_i, ended_j]].tolist()
    sentence_ids = sentences.tolist()
    ended = zip(ended_i.tolist(), top_scores[ended_i, ended_j].tolist(), ended_tokens, strict=True)
    for i, log_prob, tokens in ended:
        finished[sentence_ids[i]].append((log_prob / penalty, log_prob, tokens))


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    margin: int = 10,
    use_cache: bool = True,
) -> list[Translation]:
    """Keep the ``beam_size`` best prefixes per sentence; return the best finished one by GNMT score.

    Args:
        model, src, bos_id, eos_id, margin, use_cache: as in :func:`greedy_search`.
        beam_size: k, prefixes kept per sentence.
        alpha: GNMT length-penalty exponent (0 = rank by raw log-probability).

    Returns:
        One :class:`Translation` per source row, in order.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    k, n_sent, device = beam_size, src.shape[0], src.device
    memory, memory_mask = model.encode(src)  # (B, Ts, D), (B, 1, 1, Ts)
    expand = torch.arange(n_sent, device=device).repeat_interleave(k)  # (B*k,): row b*k + j is beam j of b
    stepper = _Stepper(model, memory.index_select(0, expand), memory_mask.index_select(0, expand), use_cache)
    limits = length_limits(src, model.cfg.pad_id, margin, model.cfg.max_len)
    sentences = torch.arange(n_sent, device=device)  # original index of each active sentence (N,)
    prefixes = torch.full((n_sent * k, 1), bos_id, dtype=torch.long, device=device)  # (N*k, t)
    beam_scores = torch.full((n_sent, k), float("-inf"), device=device)  # (N, k)
    beam_scores[:, 0] = 0.0  # all beams start as the same prefix: let only one of them expand
    finished: list[list[Hypothesis]] = [[] for _ in range(n_sent)]
    step = 0
    while sentences.numel():
        n = sentences.numel()
        forced = step + 1 >= limits[sentences]  # (N,)
        log_probs = _force_eos(stepper.log_probs(prefixes).view(n, k, -1), forced[:, None], eos_id)  # (N, k, V)
        vocab = log_probs.shape[-1]
        candidates = (beam_scores[:, :, None] + log_probs).view(n, k * vocab)  # (N, k*V)
        top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (N, 2k)
        top_beam, top_token = top_index // vocab, top_index % vocab
        is_eos = top_token == eos_id
        # Candidates ending in EOS among the k best are finished hypotheses.
        _collect_finished(finished, sentences, prefixes[:, 1:], top_scores, top_beam, is_eos, k,
                          length_penalty(step + 1, alpha))  # fmt: skip
        # The k best candidates that do not end in EOS continue (at most k of the 2k end in EOS).
        rank = is_eos.long() * top_index.shape[1] + torch.arange(top_index.shape[1], device=device)
        chosen = rank.argsort(dim=1)[:, :k]  # (N, k) positions in the top list
        n_finished = torch.tensor([len(finished[s]) for s in sentences.tolist()], device=device)
        keep = ~(forced | (n_finished >= k))  # (N,)
        source_rows = torch.arange(n, device=device)[:, None] * k + top_beam.gather(1, chosen)  # (N, k)
        index = source_rows[keep].flatten()
        stepper.select(index)
        prefixes = torch.cat([prefixes[index], top_token.gather(1, chosen)[keep].view(-1, 1)], dim=1)
        beam_scores = top_scores.gather(1, chosen)[keep]
        sentences = sentences[keep]
        step += 1
    return [_best(hypotheses) for hypotheses in finished]


def _best(hypotheses: list[Hypothesis]) -> Translation:
    """The finished hypothesis with the best length-normalised score (the first one on ties)."""
    _, log_prob, tokens = max(hypotheses, key=lambda h: h[0])
    return Translation(tokens, log_prob)


@torch.inference_mode()
def cross_attention(model: Seq2Seq, src: Tensor, targets: Sequence[Sequence[int]], *, bos_id: int) -> list[Tensor]:
    """Cross-attention weights for given target token lists, from one teacher-forced pass.

    Args:
        src: (B, Ts) padded source ids.
        targets: B lists of target ids (no BOS/EOS), e.g. decoded outputs or references.
        bos_id: target start id.

    Returns:
        B tensors (L, h, m_b, S_b): per decoder layer and head, row ``j`` is the attention of the
        step that predicts ``targets[b][j]`` over the S_b non-padding source positions.
    """
    if len(targets) != src.shape[0]:
        raise ValueError(f"got {len(targets)} targets for a source batch of shape {tuple(src.shape)}")
    memory, memory_mask = model.encode(src)
    tgt_in = pad_batch([[bos_id, *t] for t in targets], model.cfg.pad_id).to(src.device)  # (B, T)
    _, weights = model.decode(tgt_in, memory, memory_mask, return_weights=True)
    stacked = torch.stack(weights, dim=1)  # (B, L, h, T, Ts)
    real = src != model.cfg.pad_id  # (B, Ts)
    return [stacked[b, :, :, : len(t)][..., real[b]].float().cpu() for b, t in enumerate(targets)]


def generate(
    model: Seq2Seq,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 1,
    alpha: float = 0.6,
    margin: int = 10,
    use_cache: bool = True,
    return_attention: bool = False,
) -> list[Translation]:
    """Translate a padded batch: greedy search for ``beam_size == 1``, beam search otherwise.

    The model is put in eval mode (and restored afterwards); decoding runs under ``torch.inference_mode()``.

    Args:
        src: (B, Ts) padded source ids on the model's device.
        return_attention: fill ``Translation.attention`` (L, h, m, S) for each output.
        Others: see :func:`beam_search`.
    """
    if src.dim() != 2:
        raise ValueError(f"src must be (B, Ts) token ids, got shape {tuple(src.shape)}")
    was_training = model.training
    model.eval()
    try:
        common = dict(bos_id=bos_id, eos_id=eos_id, margin=margin, use_cache=use_cache)
        if beam_size == 1:
            results = greedy_search(model, src, **common)
        else:
            results = beam_search(model, src, beam_size=beam_size, alpha=alpha, **common)
        if return_attention:
            weights = cross_attention(model, src, [r.tokens for r in results], bos_id=bos_id)
            for result, attention in zip(results, weights, strict=True):
                result.attention = attention
    finally:
        model.train(was_training)
    return results


def translate_ids(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    *,
    bos_id: int,
    eos_id: int,
    batch_size: int = 128,
    **options,
) -> list[Translation]:
    """Translate many id lists in batches of similar length (less padding); results in input order.

    Args:
        sources: source id lists, as the model was trained on them (e.g. ending in EOS).
        batch_size: sentences per batch.
        options: ``beam_size``, ``alpha``, ``margin``, ``use_cache``, ``return_attention`` of :func:`generate`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[Translation | None] = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad_batch([sources[i] for i in chunk], model.cfg.pad_id).to(device)
        for i, result in zip(chunk, generate(model, src, bos_id=bos_id, eos_id=eos_id, **options), strict=True):
            results[i] = result
    return results
