"""Evaluate a trained checkpoint on a split, and translate new sentences with it.

``xattn evaluate DIR`` decodes a split of the data the checkpoint's run config records (``test``
by default, ``val`` for data without a test split, such as your own text files), in batches,
and reports:

* ``bleu_tok``: lowercased tokenized BLEU (:func:`xattn_edu.translate.metrics.tokenized_bleu`);
* ``sacrebleu``: sacreBLEU on the detokenized text, with its signature;
* ``exact_match``: percentage of outputs identical to the reference;
* ``aer``: alignment error rate of cross-attention against the gold word alignments —
  synthetic corpus only (``None``, printed "n/a", otherwise). The attention is read in a
  teacher-forced pass over the *reference* translation, so every sentence is scored, even
  one the model mistranslates; the links come from the attention averaged over all decoder
  layers and heads (per-layer and best-head figures are reported too);
* ``decode_seconds``: wall time of decoding the split (not of loading or scoring).

``xattn translate DIR "sentence" ...`` (or lines on stdin) prints one translation per line.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from xattn_edu.common.device import describe_device, resolve_device, synchronize
from xattn_edu.common.errors import UserError
from xattn_edu.translate.batching import pad_batch
from xattn_edu.translate.checkpoint import LoadedModel, load_model
from xattn_edu.translate.corpus import SPLIT_NAMES, Splits, encode_source, load_splits
from xattn_edu.translate.decode import cross_attention, translate_ids
from xattn_edu.translate.metrics import attention_aer, exact_match, sacre_bleu, tokenized_bleu


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one checkpoint on one split."""

    split: str  # "train", "val" or "test"
    sentences: int  # sentence pairs decoded
    beam_size: int  # 1 = greedy
    bleu_tok: float  # lowercased tokenized BLEU, 0-100
    bleu_tok_signature: str  # sacreBLEU signature of bleu_tok (case:lc)
    sacrebleu: float  # detokenized sacreBLEU, 0-100
    sacrebleu_signature: str  # its signature
    exact_match: float  # percentage of outputs equal to the reference
    aer: float | None  # AER of layer- and head-averaged cross-attention (synthetic corpus only)
    aer_per_layer: list[float] | None  # AER of each decoder layer's head-averaged attention
    aer_best_head: dict[str, float] | None  # {"layer", "head", "aer"} of the best single head
    decode_seconds: float  # wall time of decoding the split
    device: str  # where it ran, e.g. "cpu (2 threads)"

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    def table(self) -> str:
        """A short human-readable summary."""
        aer = "n/a" if self.aer is None else f"{self.aer:.3f}"
        if self.aer_per_layer is not None:
            layers = ", ".join(f"{a:.3f}" for a in self.aer_per_layer)
            best = self.aer_best_head
            aer += f" (per layer: {layers}; best head: layer {best['layer']} head {best['head']} {best['aer']:.3f})"
        search = "greedy" if self.beam_size == 1 else f"beam {self.beam_size}"
        return "\n".join([
            f"split:            {self.split} ({self.sentences} sentences, {search}, {self.device})",
            f"BLEU (tokenized): {self.bleu_tok:.2f}  [{self.bleu_tok_signature}]",
            f"sacreBLEU:        {self.sacrebleu:.2f}  [{self.sacrebleu_signature}]",
            f"exact match:      {self.exact_match:.2f} %",
            f"AER:              {aer}",
            f"decode seconds:   {self.decode_seconds:.2f}",
        ])  # fmt: skip


def _sources(loaded: LoadedModel, sentences: Sequence[str], what: str) -> list[list[int]]:
    """Encode source sentences as in training; UserError for empty or too long ones."""
    max_len = loaded.model.cfg.max_len
    encoded = []
    for number, text in enumerate(sentences, start=1):
        if not text.strip():
            raise UserError(f"{what} {number} is empty")
        ids = encode_source(loaded.src_tokenizer, text)
        if len(ids) > max_len:
            raise UserError(
                f"{what} {number} has {len(ids)} tokens (with <eos>), more than the model's maximum of {max_len}"
            )
        encoded.append(ids)
    return encoded


def _check_beam(beam_size: int) -> None:
    if beam_size < 1:
        raise UserError(f"--beam must be at least 1, got {beam_size}")


def translate_texts(
    loaded: LoadedModel, sentences: Sequence[str], *, beam_size: int = 1, batch_size: int = 128
) -> list[str]:
    """Translate source sentences with a loaded checkpoint; one output string per input."""
    _check_beam(beam_size)
    outputs = translate_ids(
        loaded.model, _sources(loaded, sentences, "sentence"), bos_id=loaded.tgt_tokenizer.bos_id,
        eos_id=loaded.tgt_tokenizer.eos_id, beam_size=beam_size, batch_size=batch_size,
    )  # fmt: skip
    return [loaded.tgt_tokenizer.decode(o.tokens) for o in outputs]


def _aer(loaded: LoadedModel, sources: list[list[int]], references: list[str], gold, batch_size: int):
    """Teacher-forced cross-attention over each reference, scored against the gold links."""
    model, tgt_tok = loaded.model, loaded.tgt_tokenizer
    device = next(model.parameters()).device
    attentions = []
    for start in range(0, len(sources), batch_size):
        src_ids = sources[start : start + batch_size]
        targets = [tgt_tok.encode(r) for r in references[start : start + batch_size]]
        if any(len(t) + 1 > model.cfg.max_len for t in targets):
            raise UserError(f"a reference is longer than the model's maximum of {model.cfg.max_len} tokens")
        src = pad_batch(src_ids, model.cfg.pad_id).to(device)  # (B, Ts)
        weights = cross_attention(model, src, targets, bos_id=tgt_tok.bos_id)  # (L, h, Tt, S) each
        attentions += [w[..., : len(s) - 1] for w, s in zip(weights, src_ids, strict=True)]  # drop <eos>
    return attention_aer(attentions, gold)


def _pick_split(splits: Splits, split: str | None, source: str) -> str:
    """``split``, or by default the test split (the validation split when the data has no test split)."""
    available = splits.available()
    if split is None:
        return "test" if "test" in available else "val" if "val" in available else "train"
    if not splits[split]:
        raise UserError(f"the run's data ({source}) has no {split!r} split; try --split {available[0]}")
    return split


def evaluate(
    directory: str | Path,
    *,
    split: str | None = None,
    beam_size: int = 1,
    device: str | torch.device | None = None,
    batch_size: int = 128,
    data_dir: str | Path | None = None,
) -> tuple[EvaluationReport, list[str]]:
    """Decode a split with the checkpoint in ``directory`` and score it.

    The pairs come from the data the run's config records (its text files, Multi30k folder or
    synthetic corpus); the synthetic corpus is built once, with its gold alignments.

    Args:
        directory: a training output directory (holding ``checkpoint.pt``).
        split: "train", "val" or "test" of the run's data (default: test, or val when there is no test split).
        beam_size: 1 for greedy search, k > 1 for beam search.
        device: where to run (default: CUDA if present, else CPU).
        batch_size: sentences decoded together.
        data_dir: where the Multi30k files are now, instead of the folder the run recorded.

    Returns:
        (report, hypotheses in split order). :class:`UserError` for an unknown or missing split.
    """
    if split is not None and split not in SPLIT_NAMES:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_NAMES)}")
    _check_beam(beam_size)
    device = resolve_device(device)
    loaded = load_model(directory, device)
    data = loaded.config.data
    if data_dir is not None:
        data = dataclasses.replace(data, data_dir=Path(data_dir))
    splits = load_splits(data)
    split = _pick_split(splits, split, data.source)
    pairs = splits[split]
    sources = _sources(loaded, [s for s, _ in pairs], f"{split} sentence")
    references = [t for _, t in pairs]

    synchronize(device)
    start = time.perf_counter()
    outputs = translate_ids(loaded.model, sources, bos_id=loaded.tgt_tokenizer.bos_id,
                            eos_id=loaded.tgt_tokenizer.eos_id, beam_size=beam_size, batch_size=batch_size)
    synchronize(device)
    seconds = time.perf_counter() - start
    hypotheses = [loaded.tgt_tokenizer.decode(o.tokens) for o in outputs]

    gold = splits.alignments.get(split) if loaded.config.tokenizer.kind == "word" else None  # links between words
    aer = None if gold is None else _aer(loaded, sources, references, gold, batch_size)
    return _report(split, pairs, beam_size, hypotheses, references, aer, seconds, device), hypotheses


def _report(split: str, pairs, beam_size: int, hypotheses: list[str], references: list[str], aer,
            seconds: float, device: torch.device) -> EvaluationReport:  # fmt: skip
    tok, sacre = tokenized_bleu(hypotheses, references), sacre_bleu(hypotheses, references)
    return EvaluationReport(
        split=split, sentences=len(pairs), beam_size=beam_size,
        bleu_tok=tok.score, bleu_tok_signature=tok.signature,
        sacrebleu=sacre.score, sacrebleu_signature=sacre.signature,
        exact_match=exact_match(hypotheses, references),
        aer=None if aer is None else aer.average,
        aer_per_layer=None if aer is None else aer.per_layer,
        aer_best_head=None if aer is None else dict(zip(("layer", "head", "aer"), aer.best_head(), strict=True)),
        decode_seconds=seconds, device=describe_device(device),
    )  # fmt: skip
