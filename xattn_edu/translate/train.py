"""Training a :class:`~xattn_edu.nn.model.Seq2Seq` translator.

One loop serves a laptop CPU and a GPU cluster:

* data: length-bucketed batches of at most ``max_tokens`` padded tokens
  (:mod:`xattn_edu.translate.batching`), the corpus and tokenizers from :mod:`xattn_edu.translate.corpus`;
* loss: cross-entropy with label smoothing, summed over the batch's real target tokens
  and divided by their number (a mean per token, padding ignored);
* optimizer: AdamW (no weight decay on biases and norms), gradient clipping, and a
  learning rate that rises linearly for ``warmup`` steps, then decays as ``1/sqrt(step)``
  or along a cosine to zero at ``steps``;
* on CUDA: bf16 autocast, TF32 matrix products, fused attention and fused AdamW, and
  optionally ``torch.compile``;
* checkpoints (:mod:`xattn_edu.translate.checkpoint`) every ``save_every`` steps, at the end and on
  Ctrl-C; ``resume=True`` continues bit-for-bit where the checkpoint stopped;
* a loss that becomes NaN or infinite stops training with a :class:`UserError` and
  leaves the last good checkpoint as it was;
* several processes under ``torchrun``: each takes a disjoint share of every batch
  (:func:`xattn_edu.translate.batching.shard`) and divides its summed loss by the *whole* batch's
  target tokens (known on every process from the shared plan), so DistributedDataParallel's
  gradient average equals the single-process gradient of the same batch. Only rank 0
  writes checkpoints and progress.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.common.device import resolve_device
from xattn_edu.common.errors import UserError
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig
from xattn_edu.translate import checkpoint
from xattn_edu.translate.batching import pad_batch, shard, token_batches
from xattn_edu.translate.corpus import Corpus, EncodedPairs, TextFiles, build_corpus, encode_pairs
from xattn_edu.translate.decode import translate_ids
from xattn_edu.translate.tokenizers import tokenizer_from_dict


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    preset: str  # name of the preset this config started from
    # --- data ---
    data: str = "synthetic"  # "synthetic", "multi30k" or "text" (your own files)
    n_train: int = 20_000  # synthetic: training pairs
    n_val: int = 500  # synthetic: validation pairs; text without val files: at most this many held out
    n_test: int = 1_000  # synthetic: test pairs
    data_seed: int = 0  # synthetic corpus / held-out validation sample
    tokenizer: str = "word"  # "word" (whitespace) or "sentencepiece" (joint subword model)
    min_count: int = 1  # word tokenizer: rarer words become <unk>
    vocab_size: int = 8000  # sentencepiece: joint vocabulary size
    # --- model ---
    d_model: int = 256  # D, token vector width
    n_heads: int = 4  # h, attention heads
    n_encoder_layers: int = 3  # encoder depth
    n_decoder_layers: int = 3  # decoder depth
    d_ff: int = 1024  # feed-forward hidden width
    dropout: float = 0.1  # dropout everywhere in the model
    max_len: int = 128  # longest source / target (in ids) the model covers; longer training pairs are dropped
    # --- optimisation ---
    steps: int = 1000  # optimizer steps in total
    max_tokens: int = 4096  # padded tokens per batch (rows × longest row, summed over processes)
    lr: float = 1e-3  # peak learning rate, reached after warmup
    warmup: int = 100  # linear warm-up steps
    schedule: str = "cosine"  # decay after warm-up: "cosine" (to 0 at `steps`) or "inverse_sqrt"
    weight_decay: float = 0.01  # AdamW decoupled weight decay (matrices and embeddings only)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment decay rates
    label_smoothing: float = 0.1  # probability mass spread over the vocabulary
    clip_norm: float = 1.0  # gradient norm clip (0 = off)
    # --- bookkeeping ---
    log_every: int = 20  # steps between progress updates (and NaN checks)
    eval_every: int = 250  # steps between validations (0 = only at the end)
    val_sample: int = 200  # validation sentences decoded greedily for exact match
    save_every: int = 500  # steps between checkpoints (0 = only at the end)
    seed: int = 0  # initial weights, dropout and batch order
    # --- CUDA only ---
    bf16: bool = True  # autocast matrix products to bfloat16
    compile: bool = False  # torch.compile the model

    def __post_init__(self):
        if self.schedule not in ("cosine", "inverse_sqrt"):
            raise UserError(f"schedule must be 'cosine' or 'inverse_sqrt', got {self.schedule!r}")
        if self.steps < 1 or self.max_tokens < 1 or self.lr <= 0:
            raise UserError(f"steps, max_tokens, lr must be positive: {self.steps}, {self.max_tokens}, {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (saved in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"checkpoint has unknown training settings {sorted(unknown)} (newer xattn?)")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def model_config(self, src_vocab: int, tgt_vocab: int) -> Seq2SeqConfig:
        """The :class:`Seq2SeqConfig` of this run for the fitted vocabularies."""
        return Seq2SeqConfig(
            src_vocab=src_vocab, tgt_vocab=tgt_vocab, d_model=self.d_model, n_heads=self.n_heads,
            n_encoder_layers=self.n_encoder_layers, n_decoder_layers=self.n_decoder_layers, d_ff=self.d_ff,
            dropout=self.dropout, max_len=self.max_len, fused=True,
        )  # fmt: skip


PRESETS: dict[str, TrainConfig] = {
    # CPU, synthetic corpus, offline: >= 95 % exact match on the test split in a few minutes.
    "tiny": TrainConfig(
        preset="tiny", data="synthetic", n_train=40_000, n_val=500, n_test=1_000, tokenizer="word",
        d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=256, dropout=0.0, max_len=64,
        steps=700, max_tokens=2000, lr=2e-3, warmup=80, schedule="cosine", label_smoothing=0.1,
        log_every=10, eval_every=100, val_sample=200, save_every=100,
    ),
    # One GPU, Multi30k de→en with a joint sentencepiece vocabulary; aims at DESIGN §8
    # (38.5 tokenized BLEU within 20 s of training on one H100). Estimated, not measured (no
    # GPU or Multi30k copy where this was written): a batch of 25k padded tokens holds roughly
    # 1,500 pairs, so an epoch (29k pairs) is about 20 steps and 400 steps about 20 epochs.
    # Untuned: sweep steps and lr on a GPU.
    "multi30k": TrainConfig(
        preset="multi30k", data="multi30k", tokenizer="sentencepiece", vocab_size=8000,
        d_model=512, n_heads=8, n_encoder_layers=3, n_decoder_layers=3, d_ff=2048, dropout=0.1, max_len=128,
        steps=400, max_tokens=25_000, lr=1e-3, warmup=60, schedule="cosine", label_smoothing=0.1,
        log_every=20, eval_every=200, val_sample=200, save_every=0, bf16=True,
    ),
}  # fmt: skip


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name``; :class:`UserError` listing the choices otherwise."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, TextFiles | None]:
    """The run's settings from ``xattn train`` options: a preset (or, with ``--resume``, the
    checkpoint's own settings) with ``--steps``, ``--seed`` and ``--compile`` applied."""
    text_files = None
    paths = {name: Path(value) if (value := getattr(args, name)) else None
             for name in ("train_src", "train_tgt", "val_src", "val_tgt")}  # fmt: skip
    if args.train_src:
        text_files = TextFiles(**paths)
    elif args.train_tgt or args.val_src or args.val_tgt:
        raise UserError("--train-tgt/--val-src/--val-tgt need --train-src")
    if args.resume:
        cfg = checkpoint.read_train_config(args.out)
    else:
        cfg = get_preset(args.preset)
        if text_files is not None:
            cfg = dataclasses.replace(cfg, data="text")
    changes: dict[str, Any] = {"compile": args.compile}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.seed is not None and not args.resume:
        changes["seed"] = args.seed
    return dataclasses.replace(cfg, **changes), text_files


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based): linear warm-up, then decay."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "inverse_sqrt":
        return math.sqrt(max(cfg.warmup, 1) / (step + 1))
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    """What a training run reports."""

    step: int  # optimizer steps taken in total (including before a resume)
    seconds: float  # wall time of this run's training loop (validation excluded)
    target_tokens_per_second: float  # real (non-pad) target tokens trained on per second, all processes
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, mean train loss per token since last)
    # {"step", "seconds" (training loop so far), "val_loss", "exact_match" (percent)}
    validations: list[dict[str, float]] = field(default_factory=list)
    dropped: int = 0  # training pairs left out for exceeding max_len
    model: Seq2Seq | None = None  # the trained model (not wrapped for DDP or compiled)


@dataclass(frozen=True)
class _Distributed:
    """This process's place in a ``torchrun`` job (world_size 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed_from_env() -> _Distributed:
    """This process's rank, as ``torchrun`` sets it in the environment (world_size 1 without one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return _Distributed()
    return _Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    """The device to train on; under torchrun each process takes the GPU of its local rank."""
    device = resolve_device(device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)  # before NCCL starts, so each process uses its own GPU
    return device


class _Split:
    """Encoded pairs as padded tensors; ``batch(rows)`` slices to the rows' longest sequence."""

    def __init__(self, encoded: EncodedPairs, pad_id: int):
        self.src = pad_batch(encoded.src, pad_id)  # (N, Ls)
        self.tgt = pad_batch(encoded.tgt, pad_id)  # (N, Lt), bos … eos
        self.src_len = [len(s) for s in encoded.src]
        self.tgt_len = [len(t) - 1 for t in encoded.tgt]  # tokens the decoder reads (and predicts)
        self.lengths = [max(a, b) for a, b in zip(self.src_len, self.tgt_len, strict=True)]

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: list[int], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(src (B, Ts), tgt_in (B, Tt), tgt_out (B, Tt)) on ``device``."""
        index = torch.tensor(rows, dtype=torch.long)
        src = self.src[index, : max(self.src_len[r] for r in rows)]
        tgt = self.tgt[index, : max(self.tgt_len[r] for r in rows) + 1]
        src, tgt = src.to(device, non_blocking=True), tgt.to(device, non_blocking=True)
        return src, tgt[:, :-1], tgt[:, 1:]

    def target_tokens(self, rows: list[int]) -> int:
        return sum(self.tgt_len[r] for r in rows)


def _summed_loss(model: nn.Module, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, *, pad_id: int,
                 label_smoothing: float, autocast: bool) -> Tensor:
    """Cross-entropy (label-smoothed if asked) summed over the real target tokens (a scalar).

    src (B, Ts); tgt_in, tgt_out (B, Tt): the decoder's input and the tokens it must predict.
    """
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = model(src, tgt_in)  # (B, Tt, V)
    return F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=pad_id,
                           label_smoothing=label_smoothing, reduction="sum")  # fmt: skip


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and embeddings; leave biases and layer-norm gains alone."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def _exact_match(model: Seq2Seq, split: _Split, rows: list[int], tgt_tok) -> float:
    """Percentage of ``rows`` whose greedy translation equals the reference exactly."""
    sources = [split.src[r, : split.src_len[r]].tolist() for r in rows]
    outputs = translate_ids(model, sources, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id)
    references = [split.tgt[r, 1 : split.tgt_len[r]].tolist() for r in rows]  # without bos and eos
    return 100.0 * sum(out.tokens == ref for out, ref in zip(outputs, references, strict=True)) / max(1, len(rows))


def validate(model: Seq2Seq, split: _Split, cfg: TrainConfig, tgt_tok, device: torch.device) -> dict[str, float]:
    """Mean validation loss per target token (no label smoothing) and greedy exact match on a sample."""
    autocast = device.type == "cuda" and cfg.bf16
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for rows in token_batches(split.lengths, cfg.max_tokens, seed=0):
            src, tgt_in, tgt_out = split.batch(rows, device)
            total += float(_summed_loss(model, src, tgt_in, tgt_out, pad_id=model.cfg.pad_id, label_smoothing=0.0,
                                        autocast=autocast))  # fmt: skip
            tokens += split.target_tokens(rows)
    result = {"val_loss": total / max(1, tokens)}
    if cfg.val_sample > 0:
        result["exact_match"] = _exact_match(model, split, list(range(min(cfg.val_sample, len(split)))), tgt_tok)
    model.train(was_training)
    return result


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                disable=not enabled)  # fmt: skip


def _say(bar, message: str, quiet: bool) -> None:
    if not quiet:
        bar.write(message, file=sys.stderr)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    data_dir: str | Path | None = None,
    text_files: TextFiles | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    corpus: Corpus | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) and keep checkpoints in ``out_dir``.

    Args:
        cfg: the run's settings; on resume the checkpoint's settings are used, except ``steps`` and ``compile``.
        out_dir: checkpoint directory. Must not hold a checkpoint unless ``resume``.
        device: "cpu", "cuda" or a torch.device (default: CUDA when present).
        data_dir: Multi30k files already on disk (nothing is downloaded then).
        text_files: training (and validation) files for the "text" data source.
        resume: continue from ``out_dir``'s checkpoint: weights, optimizer, schedule, batch
            position and random state, so the result equals an uninterrupted run.
        stop_after: end this session after that many steps in total (checkpoint saved), with
            the schedule still planned for ``cfg.steps``; resume later to finish.
        progress: show a tqdm bar (default: when stderr is a terminal; only on rank 0).
        quiet: no validation/summary lines on stderr either.
        corpus: pairs and tokenizers already built (tests); default :func:`build_corpus`.

    Returns:
        A :class:`TrainResult`. Raises :class:`UserError` for bad input or a non-finite loss.
    """
    out_dir = Path(out_dir)
    has_checkpoint = checkpoint.checkpoint_path(out_dir).is_file()
    if resume and not has_checkpoint:
        raise UserError(f"--resume: {out_dir} holds no checkpoint to continue")
    if not resume and has_checkpoint:
        raise UserError(f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose another --out")
    state = checkpoint.load(out_dir) if resume else None
    if state is not None:
        cfg = dataclasses.replace(TrainConfig.from_dict(state["train_config"]), steps=cfg.steps, compile=cfg.compile)

    dist_info = _distributed_from_env()
    device = _resolve_device(device, dist_info.local_rank)
    if dist_info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # --- data ---
    tokenizers = None
    if state is not None:
        tokenizers = (tokenizer_from_dict(state["src_tokenizer"]), tokenizer_from_dict(state["tgt_tokenizer"]))
    if corpus is None:
        corpus = build_corpus(cfg, data_dir=data_dir, text_files=text_files, tokenizers=tokenizers)
    src_tok, tgt_tok = tokenizers or (corpus.src_tokenizer, corpus.tgt_tokenizer)
    encoded = encode_pairs(corpus.train, src_tok, tgt_tok, cfg.max_len)
    if not encoded.src:
        raise UserError(f"every training pair is longer than max_len={cfg.max_len} positions; raise max_len")
    train_split = _Split(encoded, tgt_tok.pad_id)
    val_encoded = encode_pairs(corpus.val, src_tok, tgt_tok, cfg.max_len)
    val_split = _Split(val_encoded, tgt_tok.pad_id) if val_encoded.src else None
    longest = max(train_split.lengths)
    if longest * dist_info.world_size > cfg.max_tokens:
        raise UserError(f"max_tokens={cfg.max_tokens} cannot hold one {longest}-token pair per process")

    # --- model and optimizer ---
    torch.manual_seed(cfg.seed)
    model_cfg = cfg.model_config(src_tok.vocab_size, tgt_tok.vocab_size)
    model = Seq2Seq(model_cfg).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                  fused=on_cuda)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    step, epoch, position = 0, 0, 0
    torch.manual_seed(cfg.seed + 1 + dist_info.rank)  # dropout differs between processes
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, (epoch, position) = int(state["step"]), state["position"]
        if dist_info.main:
            checkpoint.set_rng_states(state["rng"])
        else:  # only rank 0's generator state is saved; the others start a fresh stream
            torch.manual_seed(cfg.seed + 1 + dist_info.rank + 7919 * step)
    del state  # the loaded copy of the weights and optimizer is no longer needed
    runner: nn.Module = model
    if dist_info.world_size > 1:
        runner = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if cfg.compile:
        if on_cuda:
            runner = torch.compile(runner)
        elif dist_info.main and not quiet:
            print("note: --compile is only used on CUDA; training uncompiled", file=sys.stderr)
    autocast = on_cuda and cfg.bf16

    def save() -> None:
        if dist_info.main:
            checkpoint.save(out_dir, {
                "model": model.state_dict(), "model_config": model_cfg.to_dict(), "train_config": cfg.to_dict(),
                "src_tokenizer": src_tok.to_dict(), "tgt_tokenizer": tgt_tok.to_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": step, "position": (epoch, position), "rng": checkpoint.rng_states(),
            })  # fmt: skip

    # --- loop ---
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress(cfg.steps, step, show and dist_info.main and not quiet)
    for name, pairs, kept in (("training", corpus.train, encoded), ("validation", corpus.val, val_encoded)):
        if dist_info.main and kept.dropped:
            _say(bar, f"left out {kept.dropped} of {len(pairs)} {name} pairs longer than max_len={cfg.max_len}",
                 quiet)  # fmt: skip
    result = TrainResult(step=step, seconds=0.0, target_tokens_per_second=0.0, dropped=encoded.dropped)
    loss_sum = torch.zeros((), device=device)  # summed loss and tokens since the last report
    tokens_since, tokens_total = 0, 0
    last_checked = step
    saved_any = has_checkpoint
    run_start = time.perf_counter()
    excluded = 0.0  # seconds spent validating and saving

    def check_and_report() -> None:
        """Sum the loss over processes, stop on NaN/inf, and update progress (every process calls it)."""
        nonlocal loss_sum, tokens_since, last_checked
        total = loss_sum.detach().clone()
        if dist_info.world_size > 1:
            dist.all_reduce(total)
        mean = float(total) / max(1, tokens_since)
        if not math.isfinite(mean):
            bar.close()
            kept = f"the last checkpoint in {out_dir} is kept" if saved_any else "nothing was saved"
            raise UserError(f"training loss became {mean} between steps {last_checked} and {step} "
                            f"(lr={cfg.lr}); stopped, {kept}. Try a lower --lr or more warmup.")  # fmt: skip
        result.history.append((step, mean))
        elapsed = time.perf_counter() - run_start - excluded
        bar.set_postfix(loss=f"{mean:.3f}", tgt_tok_s=f"{tokens_total / max(elapsed, 1e-9):,.0f}", refresh=False)
        bar.update(step - bar.n)
        loss_sum = torch.zeros((), device=device)
        tokens_since, last_checked = 0, step

    with _StopOnInterrupt(enabled=dist_info.world_size == 1) as interrupt:
        while step < end and not interrupt.requested:
            plan = token_batches(train_split.lengths, cfg.max_tokens, seed=cfg.seed, epoch=epoch)
            while position < len(plan) and step < end and not interrupt.requested:
                batch = plan[position]
                position += 1
                if len(batch) < dist_info.world_size:
                    continue  # too small to give every process a row (the same on every process)
                rows = shard(batch, dist_info.rank, dist_info.world_size)
                src, tgt_in, tgt_out = train_split.batch(rows, device)
                n_tokens = train_split.target_tokens(batch)  # the whole batch, all processes
                summed = _summed_loss(runner, src, tgt_in, tgt_out, pad_id=tgt_tok.pad_id,
                                      label_smoothing=cfg.label_smoothing, autocast=autocast)  # fmt: skip
                # DDP averages gradients over processes; scale so the average is the per-token mean.
                (summed * (dist_info.world_size / n_tokens)).backward()
                if cfg.clip_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                loss_sum += summed.detach()
                tokens_since += n_tokens
                tokens_total += n_tokens
                due_eval = val_split is not None and cfg.eval_every and step % cfg.eval_every == 0
                due_save = cfg.save_every and step % cfg.save_every == 0
                if step % cfg.log_every == 0 or step == end or due_eval or due_save:
                    check_and_report()
                if (due_eval or due_save) and step < end:
                    started = time.perf_counter()
                    if due_eval and dist_info.main:
                        scores = validate(model, val_split, cfg, tgt_tok, device)
                        result.validations.append({"step": step, "seconds": time.perf_counter() - run_start - excluded,
                                                   **scores})  # fmt: skip
                        _say(bar, _describe(step, scores), quiet)
                    if due_save:
                        save()
                        saved_any = True
                    excluded += time.perf_counter() - started
            if position >= len(plan):
                epoch, position = epoch + 1, 0
    result.seconds = time.perf_counter() - run_start - excluded
    if step > last_checked:
        check_and_report()
    save()
    bar.close()
    if interrupt.requested:
        if dist_info.main and not quiet:
            print(f"interrupted after step {step}; checkpoint saved, continue with --resume", file=sys.stderr)
        raise KeyboardInterrupt
    result.step, result.model = step, model
    result.target_tokens_per_second = tokens_total / max(result.seconds, 1e-9)
    if dist_info.main and val_split is not None:
        scores = validate(model, val_split, cfg, tgt_tok, device)
        result.validations.append({"step": step, "seconds": result.seconds, **scores})
        _say(bar, _describe(step, scores), quiet)
    if dist_info.main:
        _say(bar, f"step {step}: {result.seconds:.1f} s training, {result.target_tokens_per_second:,.0f} target "
                  f"tokens/s; checkpoint in {out_dir}", quiet)  # fmt: skip
    return result


class _StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step (and save); a second one stops at once.

    Single-process runs only: under torchrun every process must stop at the same step, so
    there Ctrl-C keeps its usual meaning (the periodic checkpoints remain).
    """

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self.enabled = enabled
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnInterrupt:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _describe(step: int, scores: dict[str, float]) -> str:
    text = f"step {step}: val loss {scores['val_loss']:.3f}"
    if "exact_match" in scores:
        text += f", exact match {scores['exact_match']:.1f} %"
    return text

