"""Real cross-attention: Chapter 3 trains the package's own translator at a tiny budget and reads its heads.

:func:`train_tiny_translator` is this chapter's only door to :mod:`xattn_edu.translate`: it trains a
small :class:`~xattn_edu.nn.model.Seq2Seq` on the synthetic English→German corpus with
``xattn_edu.translate.train.train``, keeps a copy of the model at a few steps (to watch attention
form), and scores the result with ``xattn_edu.translate.evaluate.evaluate`` (exact match and the
alignment error rate of cross-attention against the corpus's gold word links). Everything else here
works on the returned model with :mod:`xattn_edu.nn` alone.

:func:`cross_attention_maps` reads every decoder layer's cross-attention weights for one sentence
pair from a teacher-forced pass; :func:`strongest_source` says which source word a head reads most
when it writes a given target word.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from xattn_edu.chapters.two_modes.kv_cache import cpu_threads
from xattn_edu.nn.model import Seq2Seq

EXAMPLE_SOURCE = "yesterday the cat saw the mouse ."
"""A test sentence of the synthetic grammar: English simple past becomes the German perfect."""
EXAMPLE_TARGET = "Gestern hat die Katze die Maus gesehen ."
"""Its translation: "hat" comes second (verb-second after the fronted adverb), "gesehen" goes last."""
EXAMPLE_LINKS = ((0, 0), (1, 2), (2, 3), (3, 1), (3, 6), (4, 4), (5, 5), (6, 7))
"""Gold (source index, target index) links: "saw" becomes both "hat" (target 1) and "gesehen" (target 6)."""


@dataclass(frozen=True)
class TranslatorBudget:
    """How much training the chapter spends on its translator."""

    steps: int  # optimizer steps in all
    snapshots: tuple[int, ...]  # steps after which a copy of the model is kept (0: before training)
    n_train: int  # synthetic training pairs
    n_val: int  # validation pairs, scored by evaluate (exact match, alignment error rate)
    d_model: int = 64  # D
    n_heads: int = 4  # h
    n_layers: int = 2  # encoder and decoder layers each
    lr: float = 5e-3  # peak learning rate (the tiny preset's schedule: warm-up, then cosine decay)
    warmup: int = 30  # warm-up steps
    max_tokens: int = 1000  # padded tokens per batch


FULL_BUDGET = TranslatorBudget(steps=400, snapshots=(0, 50, 100, 200, 400), n_train=10_000, n_val=200)
"""About a minute on two CPU cores: most words aligned, most sentences translated exactly."""
FAST_BUDGET = TranslatorBudget(steps=6, snapshots=(0, 3, 6), n_train=1_000, n_val=20)
"""``XATTN_FAST=1``: a handful of steps, seconds; the attention it shows is still mostly unformed."""


@dataclass
class TinyTranslator:
    """A trained translator and what its training and evaluation reported."""

    model: Seq2Seq  # trained, eval mode, on the CPU
    snapshots: list[tuple[int, Seq2Seq]]  # (step, a copy of the model after that many steps), eval mode
    history: list[tuple[int, float]]  # (step, mean training loss per target token since the last entry)
    exact_match: float  # percentage of validation sentences translated exactly (greedy)
    aer: float  # alignment error rate of cross-attention averaged over layers and heads (0 best, 1 worst)
    best_head: tuple[int, int, float]  # (layer, head, its alignment error rate), both counted from 0
    seconds: float  # wall time of training, evaluation included
    encode_source: Callable[[str], list[int]]  # source text -> ids, as in training (ends with <eos>)
    encode_target: Callable[[str], list[int]]  # target text -> ids (no <bos>, no <eos>)
    bos_id: int  # the decoder's start token
    translate: Callable[[str], str]  # greedy translation of one source sentence


def train_tiny_translator(budget: TranslatorBudget, *, seed: int = 0, progress: bool = True,
                          threads: int | None = 1) -> TinyTranslator:
    """Train the package's translator on the synthetic corpus for ``budget.steps`` steps, on the CPU.

    Uses ``xattn_edu.translate`` (the only function of this chapter that does): the ``tiny`` preset with
    the budget's sizes, trained in stages that stop at each snapshot step and resume (a resumed run
    equals an uninterrupted one), then ``evaluate`` on the validation split. The checkpoint lives in a
    temporary directory that is deleted afterwards.

    Args:
        budget: steps, snapshot steps, corpus and model sizes.
        seed: weights, dropout and batch order (the corpus is the same for every seed).
        progress: a tqdm bar per stage and a validation line after it (on stderr).
        threads: torch CPU threads while training and evaluating (the session's count is restored after);
            one by default, as fast as two for matrices this small, and steady on a busy machine. None: torch's.

    Returns:
        A :class:`TinyTranslator`.
    """
    from xattn_edu.translate import evaluate as evaluation
    from xattn_edu.translate import train as training
    from xattn_edu.translate.checkpoint import load_model
    from xattn_edu.translate.config import get_preset
    from xattn_edu.translate.corpus import encode_source
    from xattn_edu.translate.translator import translate_lines

    cfg = get_preset("tiny").with_values({
        "data.n_train": budget.n_train, "data.n_val": budget.n_val, "data.n_test": budget.n_val,
        "model.d_model": budget.d_model, "model.d_ff": 2 * budget.d_model, "model.n_heads": budget.n_heads,
        "model.n_encoder_layers": budget.n_layers, "model.n_decoder_layers": budget.n_layers,
        "optim.lr": budget.lr, "optim.warmup": budget.warmup, "optim.max_tokens": budget.max_tokens,
        "optim.steps": budget.steps, "eval_every": 0, "save_every": 0, "val_sample": 0, "seed": seed,
    })  # fmt: skip
    start = time.perf_counter()
    snapshots, history = [], []
    with cpu_threads(torch.device("cpu"), threads), tempfile.TemporaryDirectory(prefix="xattn-ch3-") as out:
        for index, stop in enumerate(sorted(set(budget.snapshots) | {budget.steps})):
            result = training.train(cfg, out, device="cpu", resume=index > 0, stop_after=stop, progress=progress,
                                    quiet=not progress)
            history.extend(result.history)
            if stop in budget.snapshots:
                snapshots.append((stop, copy.deepcopy(result.model).eval()))
        report, _ = evaluation.evaluate(out, split="val", device="cpu")
        loaded = load_model(out)
    src_tok, tgt_tok = loaded.src_tokenizer, loaded.tgt_tokenizer
    return TinyTranslator(
        model=loaded.model, snapshots=snapshots, history=history, exact_match=report.exact_match,
        aer=report.aer, best_head=(report.aer_best_head["layer"], report.aer_best_head["head"],
                                   report.aer_best_head["aer"]),
        seconds=time.perf_counter() - start,
        encode_source=lambda text: encode_source(src_tok, text), encode_target=tgt_tok.encode,
        bos_id=tgt_tok.bos_id, translate=lambda text: translate_lines(loaded, [text])[0].text,
    )  # fmt: skip


@torch.inference_mode()
def cross_attention_maps(model: Seq2Seq, source_ids: list[int], target_ids: list[int], bos_id: int) -> Tensor:
    """Every decoder layer's cross-attention for one sentence pair, from one teacher-forced pass.

    Args:
        model: a :class:`~xattn_edu.nn.model.Seq2Seq` (put in eval mode here).
        source_ids: the source as the model reads it (its tokens, then <eos>): Ts ids.
        target_ids: the target's Tt ids (no <bos>, no <eos>).
        bos_id: the decoder's start token.

    Returns:
        (L, h, Tt, Ts) weights; row j is the step that writes ``target_ids[j]`` (it has read <bos> and
        the targets before j), and each row sums to 1 over the source.
    """
    model.eval()
    src = torch.tensor([source_ids])  # (1, Ts)
    tgt_in = torch.tensor([[bos_id, *target_ids]])  # (1, Tt + 1): the last position is not needed
    memory, memory_mask = model.encode(src)
    _, weights = model.decode(tgt_in[:, :-1], memory, memory_mask, return_weights=True)
    return torch.stack(weights)[:, 0]  # (L, h, Tt, Ts)


def strongest_source(maps: Tensor, layer: int, head: int, target_index: int) -> int:
    """The source position that head ``head`` of layer ``layer`` weighs most when writing target ``target_index``."""
    return int(maps[layer, head, target_index].argmax())
