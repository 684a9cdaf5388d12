"""The tuned plain ``nn.Transformer`` recipe on Multi30k de→en: the yardstick for the ``multi30k`` preset.

    python benchmarks/transformer_baseline.py --checkpoint RUN --data-dir DIR [--epochs 10] [--device cuda]

The model is the PyTorch tutorial's translator: ``torch.nn.Transformer`` (D 512, 8 heads, 3+3 layers,
feed-forward 512, dropout 0.1, batch first, post-norm), token embeddings scaled by √D plus sinusoidal
positions, and a linear generator. The recipe is the tuned one of issue 18: TF32 matrix products,
length-bucketed batches of 256 sentences, Adam (β 0.9/0.98, ε 1e-9) at lr 7e-4 after a linear warm-up
and constant afterwards, label smoothing 0.1. Greedy decoding recomputes the decoder over the whole
prefix at every step, as the tutorial's loop does (batched here).

For a side-by-side with our run nothing else differs: the same training and validation pairs, the
same ids (the sentencepiece tokenizers saved in ``RUN``'s checkpoint) and the same score
(tokenized BLEU of the detokenized greedy output against the written validation references,
:func:`xattn_edu.translate.metrics.tokenized_bleu`), recorded after every epoch against the training
seconds (validation excluded). Prints one JSON object; :func:`run` returns it (``benchmarks/gpu.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.common.device import hardware_info, resolve_device, synchronize
from xattn_edu.nn.positional import sinusoidal_table
from xattn_edu.translate.checkpoint import load
from xattn_edu.translate.corpus import encode_source, encode_target, load_splits
from xattn_edu.translate.metrics import choose_bleu_tokenizer, tokenized_bleu

TUTORIAL_SHAPE = {"d_model": 512, "n_heads": 8, "layers": 3, "d_ff": 512, "dropout": 0.1}


class TutorialTransformer(nn.Module):
    """``nn.Transformer`` with embeddings, sinusoidal positions and a generator, as in the PyTorch tutorial."""

    def __init__(self, src_vocab: int, tgt_vocab: int, pad_id: int, *, d_model: int, n_heads: int, layers: int,
                 d_ff: int, dropout: float, max_len: int = 256) -> None:  # fmt: skip
        super().__init__()
        self.pad_id, self.scale = pad_id, math.sqrt(d_model)
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, d_model), nn.Embedding(tgt_vocab, d_model)
        self.register_buffer("positions", sinusoidal_table(max_len, d_model), persistent=False)  # (max_len, D)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(d_model, n_heads, layers, layers, d_ff, dropout, batch_first=True)
        self.generator = nn.Linear(d_model, tgt_vocab)

    def _embed(self, ids: Tensor, embedding: nn.Embedding) -> Tensor:
        """ids (B, T) → (B, T, D)."""
        return self.dropout(embedding(ids) * self.scale + self.positions[: ids.shape[1]])

    def encode(self, src: Tensor) -> Tensor:
        """src (B, Ts) → memory (B, Ts, D)."""
        return self.transformer.encoder(self._embed(src, self.src_embed), src_key_padding_mask=src == self.pad_id)

    def decode(self, tgt: Tensor, memory: Tensor, src: Tensor) -> Tensor:
        """tgt (B, Tt) starting with BOS, memory (B, Ts, D) → logits (B, Tt, V). nn's masks: True = hidden."""
        causal = torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool, device=tgt.device).triu(1)  # (Tt, Tt)
        hidden = self.transformer.decoder(self._embed(tgt, self.tgt_embed), memory, tgt_mask=causal,
                                          tgt_key_padding_mask=tgt == self.pad_id,
                                          memory_key_padding_mask=src == self.pad_id)  # fmt: skip
        return self.generator(hidden)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher forcing: src (B, Ts), tgt (B, Tt) → logits (B, Tt, V)."""
        return self.decode(tgt, self.encode(src), src)


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """Batches of ``batch_size`` indices of similar length: shuffle, sort pools of ``pool`` batches, shuffle batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> Tensor:
    """Right-padded (B, T) long tensor on ``device``."""
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in rows], device=device)


@torch.inference_mode()
def greedy(model: TutorialTransformer, sources: Sequence[Sequence[int]], bos_id: int, eos_id: int,
           device: torch.device, batch_size: int = 256, margin: int = 10) -> list[list[int]]:  # fmt: skip
    """Greedy outputs (without BOS and EOS), recomputing the decoder over the prefix at every step."""
    model.eval()
    outputs: list[list[int]] = [[] for _ in sources]
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        src = _pad([sources[i] for i in rows], model.pad_id, device)
        memory = model.encode(src)
        prefix = torch.full((len(rows), 1), bos_id, device=device)
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        for _ in range(src.shape[1] + margin):
            step = model.decode(prefix, memory, src)[:, -1].argmax(-1)  # (B,)
            step = torch.where(done, torch.full_like(step, eos_id), step)
            prefix, done = torch.cat([prefix, step[:, None]], dim=1), done | (step == eos_id)
            if bool(done.all()):
                break
        for i, ids in zip(rows, prefix[:, 1:].tolist(), strict=True):
            outputs[i] = ids[: ids.index(eos_id)] if eos_id in ids else ids
    model.train()
    return outputs


def _val_bleu(model, sources, references, tgt_tok, device) -> float:
    """Tokenized BLEU of the greedy translations of ``sources`` against the written ``references``."""
    hypotheses = [tgt_tok.form.detokenize(tgt_tok.decode(ids))
                  for ids in greedy(model, sources, tgt_tok.bos_id, tgt_tok.eos_id, device)]  # fmt: skip
    tokenizer = choose_bleu_tokenizer(references, language="en").name
    return tokenized_bleu(hypotheses, references, tokenizer).score


def run(checkpoint: str | Path, data_dir: str | Path | None, device: str | torch.device, *, epochs: int = 10,
        batch_size: int = 256, lr: float = 7e-4, warmup: int = 100, shape: dict | None = None,
        limit: int | None = None) -> dict:  # fmt: skip
    """Train the tutorial model with the tuned recipe on the checkpoint's data and vocabulary; the report.

    ``shape``: the model's size (default :data:`TUTORIAL_SHAPE`); ``limit``: use only that many training and
    validation pairs (a dry run)."""
    device = resolve_device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    saved = load(checkpoint)
    src_tok, tgt_tok = saved.src_tokenizer, saved.tgt_tokenizer
    data = saved.config.data if data_dir is None else dataclasses.replace(saved.config.data, data_dir=Path(data_dir))
    splits = load_splits(data)
    train_pairs, val_pairs = splits.train[:limit], splits.val[:limit]
    src = [encode_source(src_tok, s) for s, _ in train_pairs]
    tgt = [encode_target(tgt_tok, t) for _, t in train_pairs]
    val_sources = [encode_source(src_tok, s) for s, _ in val_pairs]
    val_references = [tgt_tok.form.detokenize(t) for _, t in val_pairs]

    torch.manual_seed(0)
    shape = shape or TUTORIAL_SHAPE
    model = TutorialTransformer(src_tok.vocab_size, tgt_tok.vocab_size, tgt_tok.pad_id, **shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)))
    rng, seconds, tokens, history = random.Random(0), 0.0, 0, []
    for epoch in range(1, epochs + 1):
        synchronize(device)
        start = time.perf_counter()
        for rows in bucketed_batches([max(len(src[i]), len(tgt[i])) for i in range(len(src))], batch_size, rng):
            s = _pad([src[i] for i in rows], tgt_tok.pad_id, device)
            t = _pad([tgt[i] for i in rows], tgt_tok.pad_id, device)
            logits = model(s, t[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), t[:, 1:].flatten(), ignore_index=tgt_tok.pad_id,
                                   label_smoothing=0.1)  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            tokens += int((t[:, 1:] != tgt_tok.pad_id).sum())
        synchronize(device)
        seconds += time.perf_counter() - start
        bleu = _val_bleu(model, val_sources, val_references, tgt_tok, device)
        history.append({"epoch": epoch, "seconds": round(seconds, 2), "val_bleu_tok": round(bleu, 2)})
    return {
        "recipe": "nn.Transformer, tutorial shape; TF32, length buckets, Adam lr 7e-4 with warm-up then constant, "
                  "label smoothing 0.1",
        "shape": shape, "batch_sentences": batch_size, "lr": lr, "warmup_steps": warmup, "epochs": epochs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_pairs": len(src), "val_pairs": len(val_sources),
        "train_seconds": round(seconds, 2), "target_tokens_per_second": round(tokens / max(seconds, 1e-9)),
        "val_bleu_tok_by_epoch": history, "best_val_bleu_tok": max(h["val_bleu_tok"] for h in history),
    }  # fmt: skip


def main() -> None:
    """Train and score the baseline; print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a run of ours whose data and tokenizers to use")
    parser.add_argument("--data-dir", help="where the Multi30k files are now (default: where the run read them)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    report = run(args.checkpoint, args.data_dir, args.device, epochs=args.epochs)
    print(json.dumps({**hardware_info(resolve_device(args.device)), **report}, indent=2))


if __name__ == "__main__":
    main()
