"""Training a :class:`~xattn_edu.nn.model.Seq2Seq` translator.

One loop serves a laptop CPU and a GPU cluster:

* data: length-bucketed batches of at most ``max_tokens`` padded tokens
  (:mod:`xattn_edu.translate.batching`), the corpus and tokenizers from :mod:`xattn_edu.translate.corpus`;
* loss: cross-entropy with label smoothing, summed over the batch's real target tokens
  and divided by their number (a mean per token, padding ignored);
* optimizer: AdamW (no weight decay on biases and norms; the fused kernel, on the CPU too, where
  it took 2.3 ms a step against 6.5 ms for the default loop over parameters in the ``tiny`` model),
  gradient clipping, and a learning rate that rises linearly
  for ``warmup`` steps, then decays as ``1/sqrt(step)`` or along a cosine to zero at ``steps``;
* on CUDA: bf16 autocast, TF32 matrix products, fused attention, and optionally ``torch.compile``;
* checkpoints (:mod:`xattn_edu.translate.checkpoint`) every ``save_every`` steps, at the end and on
  Ctrl-C; ``resume=True`` continues bit-for-bit where the checkpoint stopped;
* a loss that becomes NaN or infinite stops training with a :class:`UserError` and
  leaves the last good checkpoint as it was;
* with ``stop_exact_match`` set, training stops at the first validation whose greedy exact
  match reaches it (the schedule stays planned for ``steps``);
* on the CPU, torch uses as many threads as the machine has idle cores
  (:func:`xattn_edu.common.device.cpu_threads`; ``OMP_NUM_THREADS`` overrides it), shared out
  between the processes of a ``torchrun`` job;
* progress goes to stderr: a tqdm bar on a terminal, a plain line every few seconds otherwise
  (a log file, a pipe, CI);
* several processes under ``torchrun``: each takes a disjoint share of every batch
  (:func:`xattn_edu.translate.batching.shard`) and divides its summed loss by the *whole* batch's
  target tokens (known on every process from the shared plan), so DistributedDataParallel's
  gradient average equals the single-process gradient of the same batch. Only rank 0
  writes checkpoints and progress.

The code has three parts: :func:`setup` builds a :class:`Session` (data, model, optimizer,
restored state), :func:`train_step` takes one optimizer step, and :func:`train` loops over the
batch plan, reporting, validating and saving on schedule.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.common.device import cpu_threads_for_this_machine, resolve_device
from xattn_edu.common.errors import UserError
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate import checkpoint, metrics
from xattn_edu.translate.batching import pad_batch, shard, token_batches
from xattn_edu.translate.config import OptimConfig, RunConfig
from xattn_edu.translate.corpus import Corpus, EncodedPairs, build_corpus, encode_pairs
from xattn_edu.translate.decode import translate_ids
from xattn_edu.translate.tokenizers import Tokenizer


def lr_factor(step: int, optim: OptimConfig) -> float:
    """Multiplier of ``optim.lr`` for optimizer step ``step`` (0-based): linear warm-up, then decay."""
    if step < optim.warmup:
        return (step + 1) / optim.warmup
    if optim.schedule == "inverse_sqrt":
        return math.sqrt(max(optim.warmup, 1) / (step + 1))
    progress = (step - optim.warmup) / max(1, optim.steps - optim.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    """What a training run reports."""

    step: int  # optimizer steps taken in total (including before a resume)
    seconds: float  # wall time of this run's training loop (validation excluded)
    target_tokens_per_second: float  # real (non-pad) target tokens trained on per second, all processes
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, mean train loss per token since last)
    # {"step", "seconds" (training loop so far), "val_loss", "exact_match" (percent), "bleu" (tokenized, 0-100)}
    validations: list[dict[str, float]] = field(default_factory=list)
    dropped: int = 0  # training pairs left out for exceeding max_len
    reached_goal: bool = False  # stopped before optim.steps: validation exact match reached stop_exact_match
    threads: int | None = None  # CPU threads torch used per process (None on a GPU)
    model: Seq2Seq | None = None  # the trained model (not wrapped for DDP or compiled)


@dataclass(frozen=True)
class _Distributed:
    """This process's place in a ``torchrun`` job (world_size 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (then a process group and DDP, even for one process)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed_from_env() -> _Distributed:
    """This process's rank, as ``torchrun`` sets it in the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...);
    a process started otherwise is rank 0 of 1. A one-process torchrun job still runs the distributed path
    (process group, DDP, collectives), so one GPU can check it."""
    if not all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
        return _Distributed()
    return _Distributed(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")),
                        launched=True)  # fmt: skip


def _start_device(device: str | torch.device | None, where: _Distributed) -> torch.device:
    """The device to train on (under torchrun each process takes the GPU of its local rank), with the
    process group started and TF32 matrix products allowed on CUDA."""
    device = resolve_device(device)
    if device.type == "cuda":
        device = torch.device("cuda", where.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)  # before NCCL starts, so each process uses its own GPU
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if where.launched and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
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


def _greedy_scores(model: Seq2Seq, split: _Split, rows: list[int], tgt_tok: Tokenizer,
                   language: str | None) -> dict[str, float]:  # fmt: skip
    """Greedy translations of ``rows``: the percentage equal to the reference, and their tokenized BLEU
    (written text against the references' decoded ids; :func:`metrics.tokenized_bleu`, tokenizer by
    :func:`metrics.choose_bleu_tokenizer` for the target ``language``)."""
    sources = [split.src[r, : split.src_len[r]].tolist() for r in rows]
    outputs = translate_ids(model, sources, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id)
    references = [split.tgt[r, 1 : split.tgt_len[r]].tolist() for r in rows]  # without bos and eos
    same = sum(out.tokens == ref for out, ref in zip(outputs, references, strict=True))
    written = [[tgt_tok.form.detokenize(tgt_tok.decode(ids)) for ids in side]
               for side in ([out.tokens for out in outputs], references)]  # fmt: skip
    bleu = metrics.tokenized_bleu(*written, metrics.choose_bleu_tokenizer(written[1], language=language).name)
    return {"exact_match": 100.0 * same / max(1, len(rows)), "bleu": bleu.score}


def validate(model: Seq2Seq, split: _Split, cfg: RunConfig, tgt_tok: Tokenizer,
             device: torch.device) -> dict[str, float]:  # fmt: skip
    """Mean validation loss per target token (no label smoothing); greedy exact match and tokenized BLEU
    on the first ``cfg.val_sample`` pairs."""
    autocast = device.type == "cuda" and cfg.bf16
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for rows in token_batches(split.lengths, cfg.optim.max_tokens, seed=0):
            src, tgt_in, tgt_out = split.batch(rows, device)
            total += float(_summed_loss(model, src, tgt_in, tgt_out, pad_id=model.cfg.pad_id, label_smoothing=0.0,
                                        autocast=autocast))  # fmt: skip
            tokens += split.target_tokens(rows)
    result = {"val_loss": total / max(1, tokens)}
    if cfg.val_sample > 0:
        rows = list(range(min(cfg.val_sample, len(split))))
        result |= _greedy_scores(model, split, rows, tgt_tok, cfg.data.target_language)
    model.train(was_training)
    return result


# --- setup -----------------------------------------------------------------------------------


@dataclass
class Session:
    """A run that is set up: what :func:`setup` builds and :func:`train_step` advances."""

    cfg: RunConfig  # the run's settings, vocabulary sizes filled in (saved in every checkpoint)
    out_dir: Path  # checkpoint directory
    where: _Distributed  # this process's rank and the number of processes
    device: torch.device  # where the model and batches live
    model: Seq2Seq  # the weights (never wrapped)
    runner: nn.Module  # what the forward pass calls: the model, wrapped for DDP and compiled if asked
    optimizer: torch.optim.Optimizer  # AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR  # warm-up then decay (lr_factor)
    src_tok: Tokenizer  # source text → ids
    tgt_tok: Tokenizer  # target text → ids
    train_split: _Split  # the encoded training pairs that fit the model
    val_split: _Split | None  # the encoded validation pairs (None when there are none)
    dropped: int = 0  # training pairs left out for exceeding max_len
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # passes over the training pairs begun
    position: int = 0  # index of the next batch in this epoch's plan
    saved_any: bool = False  # out_dir holds a checkpoint of this run
    _plan: tuple[int, list[list[int]]] | None = None  # (epoch, its batch plan), computed once per epoch

    @property
    def autocast(self) -> bool:
        """bf16 autocast is on (CUDA only)."""
        return self.device.type == "cuda" and self.cfg.bf16

    def next_batch(self) -> list[int]:
        """The next batch of training rows (every process gets the same), moving to the next epoch when needed."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, token_batches(self.train_split.lengths, self.cfg.optim.max_tokens,
                                                    seed=self.cfg.seed, epoch=self.epoch))  # fmt: skip
        if self.position >= len(self._plan[1]):
            self.epoch, self.position = self.epoch + 1, 0
            return self.next_batch()
        self.position += 1
        return self._plan[1][self.position - 1]

    def save(self) -> None:
        """Write the checkpoint (rank 0 only): weights, config, tokenizers and the state to resume from."""
        if self.where.main:
            resume = checkpoint.ResumeState(self.optimizer.state_dict(), self.scheduler.state_dict(),
                                            (self.epoch, self.position), checkpoint.rng_states())  # fmt: skip
            checkpoint.save(self.out_dir, checkpoint.Checkpoint(self.cfg, self.model.state_dict(), self.src_tok,
                                                                self.tgt_tok, self.step, resume))  # fmt: skip
        self.saved_any = True


def _saved_run(out_dir: Path, resume: bool) -> checkpoint.Checkpoint | None:
    """The checkpoint to continue (``resume``), or None for a new run into an empty ``out_dir``."""
    exists = checkpoint.checkpoint_path(out_dir).is_file()
    if resume and not exists:
        raise UserError(f"--resume: {out_dir} holds no checkpoint to continue")
    if not resume and exists:
        raise UserError(f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if not resume:
        return None
    saved = checkpoint.load(out_dir)
    if saved.resume is None:
        raise UserError(f"{out_dir}: the checkpoint holds weights only, nothing to resume")
    return saved


def _encode(cfg: RunConfig, corpus: Corpus, src_tok: Tokenizer, tgt_tok: Tokenizer, where: _Distributed,
            quiet: bool) -> tuple[_Split, _Split | None, int]:  # fmt: skip
    """(training split, validation split or None, training pairs left out): the pairs that fit ``max_len``."""
    max_len = cfg.model.max_len
    encoded = encode_pairs(corpus.train, src_tok, tgt_tok, max_len)
    if not encoded.src:
        raise UserError(f"every training pair is longer than max_len={max_len} positions; raise max_len")
    val_encoded = encode_pairs(corpus.val, src_tok, tgt_tok, max_len)
    for name, pairs, kept in (("training", corpus.train, encoded), ("validation", corpus.val, val_encoded)):
        if where.main and kept.dropped and not quiet:
            print(f"left out {kept.dropped} of {len(pairs)} {name} pairs longer than max_len={max_len}",
                  file=sys.stderr)  # fmt: skip
    train_split = _Split(encoded, tgt_tok.pad_id)
    longest = max(train_split.lengths)
    if longest * where.world_size > cfg.optim.max_tokens:
        raise UserError(f"max_tokens={cfg.optim.max_tokens} cannot hold one {longest}-token pair per process")
    val_split = _Split(val_encoded, tgt_tok.pad_id) if val_encoded.src else None
    return train_split, val_split, encoded.dropped


def _restore(session: Session, saved: checkpoint.Checkpoint) -> None:
    """Continue where ``saved`` stopped: weights, optimizer, schedule, batch position and random state."""
    session.model.load_state_dict(saved.model)
    session.optimizer.load_state_dict(saved.resume.optimizer)
    session.scheduler.load_state_dict(saved.resume.scheduler)
    session.step, (session.epoch, session.position) = saved.step, saved.resume.position
    session.saved_any = True
    if session.where.main:
        checkpoint.set_rng_states(saved.resume.rng)
    else:  # only rank 0's generator state is saved; the others start a fresh stream
        torch.manual_seed(session.cfg.seed + 1 + session.where.rank + 7919 * session.step)


def _runner(model: Seq2Seq, cfg: RunConfig, device: torch.device, where: _Distributed, quiet: bool) -> nn.Module:
    """The module the forward pass calls: wrapped for DDP under torchrun, compiled if asked (CUDA)."""
    runner: nn.Module = model
    if where.launched:
        runner = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                     else None)  # fmt: skip
    if cfg.compile and device.type == "cuda":
        runner = torch.compile(runner)
    elif cfg.compile and where.main and not quiet:
        print("note: --compile is only used on CUDA; training uncompiled", file=sys.stderr)
    return runner


def setup(cfg: RunConfig, out_dir: str | Path, *, device: str | torch.device | None = None, resume: bool = False,
          corpus: Corpus | None = None, quiet: bool = False) -> Session:  # fmt: skip
    """Everything a run needs before its first step: data, tokenizers, model, optimizer, restored state.

    With ``resume`` the checkpoint in ``out_dir`` is continued: its settings, except what
    :meth:`RunConfig.resuming` lets ``cfg`` change, its tokenizers, weights and state.
    """
    out_dir = Path(out_dir)
    saved = _saved_run(out_dir, resume)
    if saved is not None:
        cfg = cfg.resuming(saved.config)
        if saved.step >= cfg.optim.steps:
            raise UserError(f"--resume: {out_dir} is at step {saved.step} already and --steps is {cfg.optim.steps}; "
                            "nothing is left to train (pass a larger --steps)")
    where = _distributed_from_env()
    device = _start_device(device, where)
    tokenizers = (saved.src_tokenizer, saved.tgt_tokenizer) if saved is not None else None
    corpus = corpus or build_corpus(cfg, tokenizers=tokenizers)
    src_tok, tgt_tok = tokenizers or (corpus.src_tokenizer, corpus.tgt_tokenizer)
    cfg = cfg.with_vocabularies(src_tok.vocab_size, tgt_tok.vocab_size, tgt_tok.pad_id)
    train_split, val_split, dropped = _encode(cfg, corpus, src_tok, tgt_tok, where, quiet)

    torch.manual_seed(cfg.seed)
    model = Seq2Seq(cfg.model).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=cfg.optim.betas, fused=device.type in ("cuda", "cpu"))  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.optim))
    torch.manual_seed(cfg.seed + 1 + where.rank)  # dropout differs between processes
    session = Session(cfg, out_dir, where, device, model, model, optimizer, scheduler, src_tok, tgt_tok,
                      train_split, val_split, dropped)  # fmt: skip
    if saved is not None:
        _restore(session, saved)
    session.runner = _runner(model, cfg, device, where, quiet)
    return session


# --- one step ----------------------------------------------------------------------------------


def train_step(session: Session, batch: list[int]) -> tuple[Tensor, int]:
    """One optimizer step on ``batch`` (rows of the shared plan; this process trains on its shard).

    Returns (this process's summed loss, detached; real target tokens of the whole batch).
    """
    s, where = session, session.where
    rows = shard(batch, where.rank, where.world_size)
    src, tgt_in, tgt_out = s.train_split.batch(rows, s.device)
    n_tokens = s.train_split.target_tokens(batch)  # the whole batch, all processes
    summed = _summed_loss(s.runner, src, tgt_in, tgt_out, pad_id=s.tgt_tok.pad_id,
                          label_smoothing=s.cfg.optim.label_smoothing, autocast=s.autocast)  # fmt: skip
    # DDP averages gradients over processes; scale so the average is the per-token mean.
    (summed * (where.world_size / n_tokens)).backward()
    if s.cfg.optim.clip_norm > 0:
        nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.optim.clip_norm)
    s.optimizer.step()
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.step += 1
    return summed.detach(), n_tokens


# --- the loop ----------------------------------------------------------------------------------


class _Meter:
    """Training loss and time between progress reports."""

    def __init__(self, device: torch.device, step: int) -> None:
        self.device = device
        self.loss = torch.zeros((), device=device)  # summed loss since the last report (this process)
        self.tokens = 0  # target tokens since the last report (all processes)
        self.tokens_total = 0  # target tokens of this session
        self.last_step = step  # step of the last report
        self.start = time.perf_counter()
        self.excluded = 0.0  # seconds spent validating and saving

    def add(self, summed: Tensor, n_tokens: int) -> None:
        self.loss += summed
        self.tokens += n_tokens
        self.tokens_total += n_tokens

    def seconds(self) -> float:
        """Wall time of the training loop so far, validation and saving excluded."""
        return time.perf_counter() - self.start - self.excluded

    @contextmanager
    def paused(self) -> Iterator[float]:
        """Time spent in the block does not count as training; yields the training seconds so far."""
        started = time.perf_counter()
        try:
            yield self.seconds()
        finally:
            self.excluded += time.perf_counter() - started

    def take(self, launched: bool, step: int) -> tuple[float, int]:
        """(mean loss per token since the last report, summed over processes; that report's step); resets."""
        total = self.loss.detach().clone()
        if launched:
            dist.all_reduce(total)
        mean, since = float(total) / max(1, self.tokens), self.last_step
        self.loss, self.tokens, self.last_step = torch.zeros((), device=self.device), 0, step
        return mean, since


class _Progress:
    """Training progress on stderr: a tqdm bar (``"bar"``), a plain line at most every ``LINE_SECONDS``
    (``"lines"``: for a log file, a pipe or CI, where a bar would be one endless line), or nothing
    (``"off"``). Messages (validations, the summary) are written in every mode but ``quiet``."""

    LINE_SECONDS = 10.0

    def __init__(self, total: int, initial: int, mode: str, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self.total, self.mode, self.quiet = total, mode, quiet
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                        disable=mode != "bar")  # fmt: skip
        self.last_line = -math.inf  # time of the last plain line (the first report prints one at once)

    def update(self, step: int, loss: float, tokens_per_second: float, seconds: float) -> None:
        """Show the step, the mean loss per token since the last update, the speed and the training time."""
        self.bar.set_postfix(loss=f"{loss:.3f}", tgt_tok_s=f"{tokens_per_second:,.0f}", refresh=False)
        self.bar.update(step - self.bar.n)
        now = time.perf_counter()
        if self.mode == "lines" and (now - self.last_line >= self.LINE_SECONDS or step == self.total):
            self.last_line = now
            self.say(f"step {step}/{self.total}: loss {loss:.3f}, {tokens_per_second:,.0f} target tokens/s, "
                     f"{seconds:.0f} s")  # fmt: skip

    def say(self, message: str) -> None:
        """One line on stderr (above the bar on a terminal), unless quiet."""
        if not self.quiet:
            self.bar.write(message, file=sys.stderr)
            sys.stderr.flush()

    def close(self) -> None:
        self.bar.close()


def _report(s: Session, meter: _Meter, progress: _Progress, result: TrainResult) -> None:
    """Record the mean loss since the last report and update progress; stop on NaN/inf (every process calls it)."""
    mean, since = meter.take(s.where.launched, s.step)
    if not math.isfinite(mean):
        progress.close()
        kept = f"the last checkpoint in {s.out_dir} is kept" if s.saved_any else "nothing was saved"
        raise UserError(f"training loss became {mean} between steps {since} and {s.step} (lr={s.cfg.optim.lr}); "
                        f"stopped, {kept}. Try a lower learning rate or a longer warm-up "
                        "(--set optim.lr=..., --set optim.warmup=...).")  # fmt: skip
    result.history.append((s.step, mean))
    seconds = meter.seconds()
    progress.update(s.step, mean, meter.tokens_total / max(seconds, 1e-9), seconds)


def _validate(s: Session, seconds: float, result: TrainResult, progress: _Progress) -> None:
    """Score the validation split (rank 0), record it and say it."""
    scores = validate(s.model, s.val_split, s.cfg, s.tgt_tok, s.device)
    result.validations.append({"step": s.step, "seconds": seconds, **scores})
    progress.say(_describe(s.step, scores))


def _rank0_says(s: Session, flag: bool) -> bool:
    """Rank 0's ``flag``, on every process (so all of them stop at the same step)."""
    if not s.where.launched:
        return flag
    shared = torch.tensor(float(flag), device=s.device)
    dist.broadcast(shared, src=0)
    return bool(shared)


def _reached_goal(s: Session, result: TrainResult) -> bool:
    """Whether the validation just made reached ``stop_exact_match`` (rank 0 decides, every process learns it)."""
    goal = s.cfg.stop_exact_match
    if not goal:
        return False
    return _rank0_says(s, s.where.main and result.validations[-1].get("exact_match", -1.0) >= goal)


def _over_budget(s: Session, meter: _Meter) -> bool:
    """Whether the training loop has spent the run's ``time_budget``, by rank 0's clock."""
    if not s.cfg.time_budget:
        return False
    return _rank0_says(s, meter.seconds() >= s.cfg.time_budget)


def _loop(s: Session, end: int, meter: _Meter, progress: _Progress, result: TrainResult,
          interrupt: _StopOnInterrupt) -> None:  # fmt: skip
    """Take steps until ``end``, Ctrl-C or the exact-match goal, reporting, validating and saving on schedule."""
    cfg = s.cfg
    while s.step < end and not interrupt.requested and not _over_budget(s, meter):
        batch = s.next_batch()
        if len(batch) < s.where.world_size:
            continue  # too small to give every process a row (the same on every process)
        meter.add(*train_step(s, batch))
        due_eval = s.val_split is not None and cfg.eval_every and s.step % cfg.eval_every == 0
        due_save = cfg.save_every and s.step % cfg.save_every == 0
        if s.step % cfg.log_every == 0 or s.step == end or due_eval or due_save:
            _report(s, meter, progress, result)
        if (due_eval or due_save) and s.step < end:
            with meter.paused() as seconds:
                if due_eval and s.where.main:
                    _validate(s, seconds, result, progress)
                if due_save:
                    s.save()
            if due_eval and _reached_goal(s, result):
                result.reached_goal = True
                return


def _progress_mode(progress: bool | None, shown_here: bool) -> str:
    """The :class:`_Progress` mode: ``progress`` True asks for a bar, False for nothing, None for a bar on a
    terminal and plain lines elsewhere; "off" unless ``shown_here`` (rank 0, not quiet)."""
    if not shown_here or progress is False:
        return "off"
    return "bar" if progress or sys.stderr.isatty() else "lines"


def _threads(s: Session):
    """On the CPU: a context in which torch uses the idle cores, shared between this machine's processes."""
    if s.device.type != "cpu":
        return nullcontext(None)
    return cpu_threads_for_this_machine(processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def train(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    corpus: Corpus | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) and keep checkpoints in ``out_dir``.

    Args:
        cfg: the run's settings (data files included); on resume the checkpoint's settings are
            used, with the ones :meth:`RunConfig.resuming` lets ``cfg`` change.
        out_dir: checkpoint directory. Must not hold a checkpoint unless ``resume``.
        device: "cpu", "cuda" or a torch.device (default: CUDA when present).
        resume: continue from ``out_dir``'s checkpoint: weights, optimizer, schedule, batch
            position and random state, so the result equals an uninterrupted run.
        stop_after: end this session after that many steps in total (checkpoint saved), with
            the schedule still planned for ``cfg.optim.steps``; resume later to finish.
        progress: True: a tqdm bar; False: no progress; None (default): a bar when stderr is a
            terminal, else a plain line every few seconds. Rank 0 only.
        quiet: no progress, validation or summary lines on stderr at all.
        corpus: pairs and tokenizers already built (tests); default :func:`build_corpus`.

    Returns:
        A :class:`TrainResult`. Raises :class:`UserError` for bad input or a non-finite loss.
    """
    s = setup(cfg, out_dir, device=device, resume=resume, corpus=corpus, quiet=quiet)
    end = s.cfg.optim.steps if stop_after is None else min(s.cfg.optim.steps, stop_after)
    shown = s.where.main and not quiet
    bar = _Progress(s.cfg.optim.steps, s.step, _progress_mode(progress, shown), quiet=not shown)
    result = TrainResult(step=s.step, seconds=0.0, target_tokens_per_second=0.0, dropped=s.dropped)
    with _threads(s) as result.threads, _StopOnInterrupt(enabled=not s.where.launched) as interrupt:
        meter = _Meter(s.device, s.step)
        _loop(s, end, meter, bar, result, interrupt)
        result.seconds = meter.seconds()
        if s.step > meter.last_step:
            _report(s, meter, bar, result)
        s.save()
        bar.close()
        if interrupt.requested:
            bar.say(f"interrupted after step {s.step}; checkpoint saved, continue with --resume")
            raise KeyboardInterrupt
        if s.step < end and not result.reached_goal:
            bar.say(f"time budget of {s.cfg.time_budget:g} s spent at step {s.step} of {end}")
        result.step, result.model = s.step, s.model
        result.target_tokens_per_second = meter.tokens_total / max(result.seconds, 1e-9)
        if s.where.main and s.val_split is not None and not (result.validations and result.reached_goal):
            _validate(s, result.seconds, result, bar)
    bar.say(_summary(s, result))
    return result


def _summary(s: Session, result: TrainResult) -> str:
    """The last line of a run: where it stopped and why, its speed, its threads, where the checkpoint is."""
    why = ""
    if result.reached_goal:
        why = (f" of {s.cfg.optim.steps} (validation exact match {result.validations[-1]['exact_match']:.1f} % "
               f"reached stop_exact_match={s.cfg.stop_exact_match:g})")  # fmt: skip
    threads = "" if result.threads is None else f" on {result.threads} CPU thread{'s' * (result.threads > 1)}"
    if s.where.launched:
        n = s.where.world_size
        threads += f" ({n} torchrun process{'es' * (n > 1)}, {dist.get_backend()})"
    return (f"step {s.step}{why}: {result.seconds:.1f} s training{threads}, "
            f"{result.target_tokens_per_second:,.0f} target tokens/s; checkpoint in {s.out_dir}")


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
        text += f", exact match {scores['exact_match']:.1f} %, BLEU {scores['bleu']:.1f}"
    return text
