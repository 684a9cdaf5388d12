"""Claim (article 3192568): while a decoder writes, the encoder's keys and values never change.

So cross-attention can project the memory once and keep it (a *static* cache), while decoder
self-attention gains one key and one value per generated token (a *growing* cache). This module
decodes with each combination of the two caches and measures what they buy:

* :func:`decode_logits` — greedy or teacher-forced decoding one token at a time in one of four
  :data:`MODES`, with the package's own decoding step (:meth:`~xattn_edu.nn.model.Seq2Seq.next_token_logits`
  and a full or partial cache from :meth:`~xattn_edu.nn.model.Seq2Seq.new_cache`); every mode must give
  the logits of the full (teacher-forced) forward pass.
* :func:`projection_flops` — the attention projection FLOPs of decoding ``T`` tokens, counted
  analytically from the shapes; :func:`count_projection_flops` counts the same thing by hooking
  every projection while decoding (a test checks that the two agree).
* :func:`measure_decoding` — median wall time per generated token in each mode, for several
  output lengths, on the default device, with a progress bar if asked.

FLOP convention: a linear map ``D -> D`` applied to ``n`` positions costs ``2 n D^2`` FLOPs
(one multiply and one add per weight and position); biases are left out.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.common.device import default_device, describe_device, synchronize
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig


@dataclass(frozen=True)
class CacheMode:
    """Which of the two caches a decoding loop keeps."""

    name: str  # short label for tables and plots
    self_cache: bool  # decoder self-attention keeps a growing K/V cache (else the prefix is recomputed)
    cross_cache: bool  # cross-attention projects the memory once (else at every step)


MODES = (
    CacheMode("no cache", self_cache=False, cross_cache=False),
    CacheMode("static cross K/V", self_cache=False, cross_cache=True),
    CacheMode("growing self K/V", self_cache=True, cross_cache=False),
    CacheMode("both caches", self_cache=True, cross_cache=True),
)
"""The four decoding loops compared in Chapter 3."""

LENGTHS = (8, 16, 32, 64, 128, 256)
"""The full sweep of output lengths (``benchmarks/kv_cache.py``)."""
NOTEBOOK_LENGTHS = (8, 32, 128)
"""What the chapter measures by default: the same trend in a few seconds."""
FAST_LENGTHS = (8, 16)


@dataclass(frozen=True)
class BenchConfig:
    """The model and workload that the timing runs on (an untrained model: speed does not depend on training)."""

    d_model: int = 128  # D, model width
    n_heads: int = 4  # h
    n_layers: int = 2  # encoder and decoder layers each
    d_ff: int = 512  # feed-forward width
    vocab: int = 1000  # source and target vocabulary size
    batch: int = 4  # sentences decoded together
    src_len: int = 32  # S, source tokens per sentence (the memory length)
    repeats: int = 5  # timed runs per (mode, length), interleaved across modes; the median is reported
    seed: int = 0  # weights and source ids

    def model_config(self, max_len: int) -> Seq2SeqConfig:
        """The untrained model's settings; its positions cover ``max_len`` and the source length."""
        return Seq2SeqConfig(
            src_vocab=self.vocab, tgt_vocab=self.vocab, d_model=self.d_model, n_heads=self.n_heads,
            n_encoder_layers=self.n_layers, n_decoder_layers=self.n_layers, d_ff=self.d_ff, dropout=0.0,
            max_len=max(max_len, self.src_len),
        )


NOTEBOOK_CONFIG = BenchConfig(repeats=3)
FAST_CONFIG = BenchConfig(d_model=64, n_heads=4, n_layers=2, d_ff=128, vocab=100, batch=2, src_len=8, repeats=1)


def bench_config() -> BenchConfig:
    """The chapter's workload: three timed runs per point, or a small model and one run when ``XATTN_FAST=1``."""
    return FAST_CONFIG if fast_mode() else NOTEBOOK_CONFIG


def lengths() -> tuple[int, ...]:
    """Output lengths the chapter measures: 8, 32 and 128 tokens, or 8 and 16 in fast mode."""
    return FAST_LENGTHS if fast_mode() else NOTEBOOK_LENGTHS


def build_model(cfg: BenchConfig, max_len: int, device: torch.device | None = None) -> tuple[Seq2Seq, Tensor]:
    """An untrained model in eval mode and a batch of source ids (B, S) without padding."""
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = Seq2Seq(cfg.model_config(max_len)).eval()
    src = torch.randint(1, cfg.vocab, (cfg.batch, cfg.src_len), generator=generator)
    device = device or default_device()
    return model.to(device), src.to(device)


@torch.inference_mode()
def decode_logits(
    model: Seq2Seq, src: Tensor, mode: CacheMode, *, steps: int | None = None, tgt: Tensor | None = None,
    bos_id: int = 1,
) -> tuple[Tensor, Tensor]:
    """Decode one token at a time, keeping the caches ``mode`` names.

    Args:
        model: an eval-mode :class:`~xattn_edu.nn.model.Seq2Seq`.
        src: (B, S) source ids.
        mode: which caches to keep.
        steps: T, tokens to generate greedily (when ``tgt`` is None).
        tgt: (B, T) teacher-forced decoder inputs (starting with BOS) instead of greedy choices.
        bos_id: first decoder input when decoding greedily.

    Returns:
        (logits (B, T, V) of every step, decoder inputs (B, T) that produced them).
    """
    if (steps is None) == (tgt is None):
        raise ValueError("pass exactly one of steps (greedy) or tgt (teacher forcing)")
    memory, memory_mask = model.encode(src)
    cache = model.new_cache(self_attn=mode.self_cache, cross_attn=mode.cross_cache)
    total = tgt.shape[1] if tgt is not None else steps
    prefix = tgt[:, :1] if tgt is not None else torch.full((src.shape[0], 1), bos_id, device=src.device)
    all_logits = []
    for t in range(1, total + 1):
        logits = model.next_token_logits(prefix, memory, memory_mask, cache)  # (B, V): the package's decoding step
        all_logits.append(logits)
        if t < total:
            following = tgt[:, t:t + 1] if tgt is not None else logits.argmax(-1, keepdim=True)
            prefix = torch.cat([prefix, following], dim=1)  # (B, t + 1)
    return torch.stack(all_logits, dim=1), prefix  # (B, T, V), (B, T)


def projection_flops(mode: CacheMode, steps: int, src_len: int, d_model: int, n_layers: int) -> int:
    """Attention projection FLOPs of generating ``steps`` tokens, per sentence, counted from the shapes.

    At step t (1-based) the decoder holds t positions. In each of the ``n_layers`` decoder layers:

    * self-attention projects Q, K, V and the output: 4 maps on t positions without the growing cache
      (the whole prefix is recomputed), on 1 position with it;
    * cross-attention projects Q and the output for the same positions, and K, V of the S memory
      positions: at every step without the static cache, once (at step 1) with it.

    Each map on n positions costs 2 n D^2, so per layer: ``2 D^2 (4 n_self + 2 n_self + 2 S n_mem)``
    with n_self = t or 1 and n_mem = 1 or (1 at step 1, 0 later).
    """
    per_map = 2 * d_model * d_model
    total = 0
    for t in range(1, steps + 1):
        n_new = 1 if mode.self_cache else t  # decoder positions pushed through the layer this step
        memory_projections = 1 if (not mode.cross_cache or t == 1) else 0
        total += per_map * (4 * n_new + 2 * n_new + 2 * src_len * memory_projections)
    return total * n_layers


def count_projection_flops(model: Seq2Seq, src: Tensor, mode: CacheMode, steps: int) -> int:
    """The same FLOPs per sentence, measured: hooks on every decoder attention projection add 2·rows·in·out."""
    total = 0

    def count(module: nn.Linear, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        nonlocal total
        rows = inputs[0].numel() // module.in_features
        total += 2 * rows * module.in_features * module.out_features

    attentions = [m for layer in model.decoder_layers for m in layer.modules() if isinstance(m, MultiHeadAttention)]
    handles = [
        proj.register_forward_hook(count)
        for attn in attentions
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj)
    ]
    try:
        decode_logits(model, src, mode, steps=steps)
    finally:
        for handle in handles:
            handle.remove()
    return total // src.shape[0]


@dataclass(frozen=True)
class TimingRow:
    """Decoding time and projection work of one cache mode at one output length."""

    mode: str  # CacheMode.name
    steps: int  # T, tokens generated per sentence
    ms_per_token: float  # median over repeats of (wall time / T), whole batch, encoder included
    cpu_ms_per_token: float  # the same in process CPU time (less sensitive to other jobs on a shared machine)
    projection_gflops: float  # analytic attention projection GFLOPs per sentence for all T tokens

    @property
    def projection_mflops_per_token(self) -> float:
        """The projection work per generated token (MFLOPs per sentence), comparable with the time per token."""
        return 1e3 * self.projection_gflops / self.steps


@dataclass(frozen=True)
class DecodingReport:
    """Every timing row of one run, where it ran, and how far cached decoding strays from a full pass."""

    device: str  # describe_device() of the device that ran it
    config: BenchConfig  # the workload
    rows: tuple[TimingRow, ...]  # one per (mode, length)
    max_logit_difference: float  # largest |cached - full forward| over every mode, at the longest length

    def speedup(self, steps: int, slow: str = "no cache", fast: str = "both caches", cpu: bool = False) -> float:
        """How many times faster per token ``fast`` is than ``slow`` at output length ``steps`` (wall or CPU time)."""
        by_key = {(row.mode, row.steps): row.cpu_ms_per_token if cpu else row.ms_per_token for row in self.rows}
        return by_key[(slow, steps)] / by_key[(fast, steps)]


def max_difference_from_full_forward(model: Seq2Seq, src: Tensor, steps: int) -> float:
    """Decode greedily with every mode and compare each step's logits with one teacher-forced full forward."""
    worst = 0.0
    _, tokens = decode_logits(model, src, MODES[-1], steps=steps)
    with torch.inference_mode():
        full = model(src, tokens)  # (B, T, V): every position at once, causal mask
    for mode in MODES:
        logits, _ = decode_logits(model, src, mode, tgt=tokens)
        worst = max(worst, float((logits - full).abs().max()))
    return worst


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (on a CPU device; None or a GPU: unchanged)."""
    previous = torch.get_num_threads()
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_decoding(
    cfg: BenchConfig | None = None, steps_list: tuple[int, ...] | None = None, device: torch.device | None = None,
    threads: int | None = 1, progress: bool = False,
) -> DecodingReport:
    """Median time per generated token for every mode and output length (greedy, batch of ``cfg.batch``).

    ``threads``: torch CPU threads while measuring (the session's count is restored afterwards; the
    report's ``device`` names the count used). One by default: these matrices are too small to gain
    from splitting, and on a busy machine extra threads mostly wait for each other at every matrix
    product, which makes timings erratic and slow. None keeps torch's setting. ``progress``: a tqdm
    bar over the timed runs (on stderr).
    """
    cfg = cfg or bench_config()
    steps_list = steps_list or lengths()
    device = device or default_device()
    with cpu_threads(device, threads):
        return _measure(cfg, steps_list, device, progress)


def _measure(cfg: BenchConfig, steps_list: tuple[int, ...], device: torch.device, progress: bool) -> DecodingReport:
    from tqdm.auto import tqdm

    model, src = build_model(cfg, max(steps_list), device)
    decode_logits(model, src, MODES[-1], steps=4)  # warm-up: first-call allocations and kernel selection
    wall: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    runs = [(steps, mode) for steps in steps_list for _ in range(cfg.repeats) for mode in MODES]
    # interleaved modes, so a burst of load on a shared machine hits every mode alike
    for steps, mode in tqdm(runs, desc="timing decoding", unit="run", disable=not progress):
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        decode_logits(model, src, mode, steps=steps)
        synchronize(device)
        wall.setdefault((mode.name, steps), []).append((time.perf_counter() - start) / steps)
        cpu.setdefault((mode.name, steps), []).append((time.process_time() - start_cpu) / steps)
    rows = [
        TimingRow(mode.name, steps, 1e3 * statistics.median(wall[(mode.name, steps)]),
                  1e3 * statistics.median(cpu[(mode.name, steps)]),
                  projection_flops(mode, steps, cfg.src_len, cfg.d_model, cfg.n_layers) / 1e9)
        for steps in steps_list
        for mode in MODES
    ]
    difference = max_difference_from_full_forward(model, src, max(steps_list))
    return DecodingReport(describe_device(device), cfg, tuple(rows), difference)
