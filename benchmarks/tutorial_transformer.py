"""The PyTorch tutorial recipe, "Language Translation with nn.Transformer and torchtext", written here.

The baseline `benchmarks/multi30k_cpu.py` trains beside our ``multi30k-cpu`` preset for the same
wall time. It follows the tutorial's recipe (pytorch.org/tutorials/beginner/translation_transformer.html)
without torchtext or spaCy models, which this project does not use:

* tokens: a regular expression instead of spaCy's tokenizers: words (inner hyphens and apostrophes
  kept: "t-shirt", "man's") and single punctuation marks, case kept (:func:`tokenize`);
* vocabularies: one per language, the training words seen at least twice, specials first
  (``<unk>`` 0, ``<pad>`` 1, ``<bos>`` 2, ``<eos>`` 3), unknown words → ``<unk>`` (:class:`Vocabulary`);
* model: ``nn.Transformer`` with D 512, 8 heads, 3+3 layers, feed-forward 512, dropout 0.1;
  embeddings scaled by sqrt(D), sinusoidal positions with dropout, a separate output layer,
  Xavier-uniform initialisation of every matrix (:class:`TutorialTransformer`);
* training: batches of 128 sentence pairs (shuffled each epoch, seeded), cross-entropy with padding
  ignored, Adam with lr 1e-4, betas (0.9, 0.98), eps 1e-9, no schedule, no clipping, no label smoothing;
* decoding: greedy, at most source length + 5 tokens, the whole prefix recomputed at every step (no
  cache), as the tutorial does; here in batches of sentences rather than one at a time (the same outputs).

A translation is its tokens joined by spaces, without the special tokens. Scored by tokenized BLEU
(lowercased, 13a), which splits punctuation off both sides, so the tokens' spacing does not matter.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

UNK, PAD, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>")
_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words (with inner hyphens and apostrophes) and single punctuation marks of ``text``, case kept."""
    return _TOKEN.findall(text)


class Vocabulary:
    """Token ↔ id for one language: specials first, then the training words seen ``min_freq`` times or more."""

    def __init__(self, sentences: Sequence[str], min_freq: int = 2) -> None:
        counts = Counter(token for sentence in sentences for token in tokenize(sentence))
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        self.tokens = [*SPECIALS, *kept]
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """``<bos>``, the ids of the tokens (unknown → ``<unk>``), ``<eos>``."""
        return [BOS, *(self.ids.get(t, UNK) for t in tokenize(text)), EOS]

    def decode(self, ids: Sequence[int]) -> str:
        """The tokens of ``ids`` joined by spaces, special tokens left out."""
        return " ".join(self.tokens[i] for i in ids if i >= len(SPECIALS))


class TutorialTransformer(nn.Module):
    """The tutorial's ``Seq2SeqTransformer``: embeddings × sqrt(D) + sinusoidal positions → nn.Transformer → linear."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 512, n_heads: int = 8, layers: int = 3,
                 d_ff: int = 512, dropout: float = 0.1, max_len: int = 5000) -> None:  # fmt: skip
        super().__init__()
        self.transformer = nn.Transformer(d_model, n_heads, layers, layers, d_ff, dropout, batch_first=True)
        self.src_embedding = nn.Embedding(src_vocab, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab, d_model)
        self.generator = nn.Linear(d_model, tgt_vocab)
        self.dropout = nn.Dropout(dropout)
        den = torch.exp(-torch.arange(0, d_model, 2) * math.log(10000) / d_model)
        position = torch.arange(max_len).unsqueeze(1)
        table = torch.zeros(max_len, d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * den), torch.cos(position * den)
        self.register_buffer("positions", table)  # (max_len, D)
        self.scale = math.sqrt(d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _embed(self, embedding: nn.Embedding, ids: Tensor) -> Tensor:
        return self.dropout(embedding(ids) * self.scale + self.positions[: ids.shape[1]])  # (B, T, D)

    def encode(self, src: Tensor) -> Tensor:
        """src (B, S) → memory (B, S, D)."""
        return self.transformer.encoder(self._embed(self.src_embedding, src), src_key_padding_mask=src == PAD)

    def decode(self, tgt: Tensor, memory: Tensor, src: Tensor) -> Tensor:
        """tgt (B, T) read causally against memory (B, S, D) → logits (B, T, V)."""
        causal = torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool, device=tgt.device).triu(1)  # True: hidden
        hidden = self.transformer.decoder(self._embed(self.tgt_embedding, tgt), memory, tgt_mask=causal,
                                          tgt_key_padding_mask=tgt == PAD, memory_key_padding_mask=src == PAD)
        return self.generator(hidden)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """src (B, S), tgt (B, T) → logits (B, T, V)."""
        return self.decode(tgt, self.encode(src), src)


def _pad(rows: Sequence[Sequence[int]]) -> Tensor:
    """(B, longest) with PAD after each row."""
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


@torch.inference_mode()
def greedy(model: TutorialTransformer, sources: Sequence[Sequence[int]], batch_size: int = 128) -> list[list[int]]:
    """Greedy output ids (without bos/eos) of each source (ids with bos and eos): at most its length + 5
    tokens, no cache."""
    model.eval()
    outputs: list[list[int]] = []
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        src = _pad(chunk)
        memory = model.encode(src)
        limit = torch.tensor([len(s) + 5 for s in chunk])
        tgt = torch.full((len(chunk), 1), BOS, dtype=torch.long)
        done = torch.zeros(len(chunk), dtype=torch.bool)
        for step in range(int(limit.max())):
            word = model.decode(tgt, memory, src)[:, -1].argmax(-1)
            word = torch.where(done, PAD, word)
            tgt = torch.cat([tgt, word[:, None]], dim=1)
            done |= (word == EOS) | (step + 1 >= limit)
            if done.all():
                break
        outputs += [[int(i) for i in row[1:] if i not in (PAD, EOS)] for row in tgt]
    model.train()
    return outputs


@dataclass(frozen=True)
class Recipe:
    """The tutorial's settings."""

    batch_size: int = 128  # sentence pairs per batch
    lr: float = 1e-4  # Adam's learning rate, constant
    min_freq: int = 2  # a training word seen fewer times is <unk>
    seed: int = 0  # initial weights, dropout, batch order


def train_for(train: Sequence[tuple[str, str]], val: Sequence[tuple[str, str]], seconds: float,
              score: Callable[[list[str]], float], *, eval_every: float = 60.0, recipe: Recipe = Recipe(),
              model_size: dict | None = None) -> dict:  # fmt: skip
    """Train the tutorial recipe for ``seconds`` of training time; score greedy val translations as it goes.

    ``score(hypotheses)`` gives the BLEU of the val translations (in val order). Validation runs every
    ``eval_every`` seconds of training and at the end; its time is not counted as training.
    ``model_size`` overrides :class:`TutorialTransformer` arguments (tests use a small one).

    Returns ``{"curve": [{"seconds", "step", "epochs", "bleu"}...], "steps", "target_tokens_per_second",
    "src_vocab", "tgt_vocab"}``.
    """
    torch.manual_seed(recipe.seed)
    src_vocab = Vocabulary([s for s, _ in train], recipe.min_freq)
    tgt_vocab = Vocabulary([t for _, t in train], recipe.min_freq)
    pairs = [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in train]
    val_sources = [src_vocab.encode(s) for s, _ in val]  # the tutorial's source has <bos> and <eos> too
    model = TutorialTransformer(len(src_vocab), len(tgt_vocab), **(model_size or {}))
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), eps=1e-9)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    rng = random.Random(recipe.seed)
    curve, step, tokens, trained, next_eval = [], 0, 0, 0.0, eval_every

    def validate() -> None:
        hypotheses = [tgt_vocab.decode(ids) for ids in greedy(model, val_sources)]
        epochs = step * recipe.batch_size / len(pairs)
        curve.append({"seconds": trained, "step": step, "epochs": epochs, "bleu": score(hypotheses)})

    while trained < seconds:
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), recipe.batch_size):
            began = time.perf_counter()
            rows = [pairs[i] for i in order[start : start + recipe.batch_size]]
            src, tgt = _pad([s for s, _ in rows]), _pad([t for _, t in rows])
            logits = model(src, tgt[:, :-1])  # (B, T, V)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step, tokens = step + 1, tokens + int((tgt[:, 1:] != PAD).sum())
            trained += time.perf_counter() - began
            if trained >= next_eval and trained < seconds:
                validate()
                next_eval += eval_every
            if trained >= seconds:
                break
    validate()
    return {"curve": curve, "steps": step, "target_tokens_per_second": tokens / max(trained, 1e-9),
            "src_vocab": len(src_vocab), "tgt_vocab": len(tgt_vocab)}
