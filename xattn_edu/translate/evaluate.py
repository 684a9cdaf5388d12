"""Evaluate a trained checkpoint on a split of its data, or on your own test files.

``xattn evaluate DIR`` decodes a split of the data the checkpoint's run config records (``test``
by default, ``val`` for data without a test split, such as your own text files), in batches;
``xattn evaluate DIR --src FILE --ref FILE`` decodes your own line-aligned test set instead (one
sentence per line, the same number of lines, no empty line: each problem is a one-line error
naming the file, its line or both line counts). Both report:

* ``bleu_tok``: lowercased tokenized BLEU (:func:`xattn_edu.translate.metrics.tokenized_bleu`);
* ``sacrebleu``: sacreBLEU on the detokenized, cased text, with its signature;
* ``chrf``: sacreBLEU's chrF2 on the same text (character n-grams: no word tokenizer needed);
* ``exact_match``: percentage of outputs identical to the reference (detokenized, cased,
  whitespace-normalised);
* ``aer``: alignment error rate of cross-attention against the gold word alignments —
  synthetic corpus only (``None``, printed "n/a", otherwise). The attention is read in a
  teacher-forced pass over the *reference* translation, so every sentence is scored, even
  one the model mistranslates; the links come from the attention averaged over all decoder
  layers and heads (per-layer and best-head figures are reported too);
* ``decode_seconds``: wall time of decoding the split (not of loading or scoring).

**What is compared.** Hypotheses are detokenized by the target tokenizer's recorded form
(:mod:`xattn_edu.translate.textform`), and so are the references (a no-op on text that is
already written normally), so both sides are written text: "Heute sieht der Mann den Hund."

**BLEU's tokenizer** follows :func:`xattn_edu.translate.metrics.choose_bleu_tokenizer`: the one
named by ``bleu_tokenize`` (``--bleu-tokenize``); else the target language's (the run config's
``data.tgt_lang``, or the data source's: German for the synthetic corpus, English for Multi30k);
else one picked from the references' script when they are written without spaces (Japanese,
Chinese, Thai: ``13a`` would count each sentence as one word and score a perfect translation 0);
else ``13a``. It is in both BLEU signatures and in ``bleu_tokenize``; ``warnings`` says when the
references look unspaced and what was done about it.

A source sentence longer than the model's positions cannot be translated: it counts as an empty
output (the scores see it as wrong), its number is listed in ``untranslated``, and every other
sentence is scored as usual.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from xattn_edu.common.device import describe_device, resolve_device, synchronize
from xattn_edu.common.errors import UserError
from xattn_edu.translate.batching import pad_batch
from xattn_edu.translate.checkpoint import LoadedModel, load_model
from xattn_edu.translate.corpus import Pair, Splits, check_pairs, load_splits
from xattn_edu.translate.data.parallel_text import read_parallel
from xattn_edu.translate.decode import cross_attention
from xattn_edu.translate.metrics import (
    AttentionAER,
    attention_aer,
    check_bleu_tokenizer,
    choose_bleu_tokenizer,
    chrf,
    exact_match,
    sacre_bleu,
    tokenized_bleu,
)
from xattn_edu.translate.translator import EncodedLine, check_beam, decode_lines, encode_line


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one checkpoint on one split (or one pair of test files)."""

    split: str  # "train", "val", "test" (or a Multi30k test set's name), or the source file given with --src
    sentences: int  # sentence pairs scored
    beam_size: int  # 1 = greedy
    bleu_tokenize: str  # the sacreBLEU tokenizer both BLEU figures use (13a, char, zh, ...)
    bleu_tok: float  # lowercased tokenized BLEU, 0-100
    bleu_tok_signature: str  # sacreBLEU signature of bleu_tok (case:lc, tok:...)
    sacrebleu: float  # sacreBLEU on the detokenized, cased text, 0-100
    sacrebleu_signature: str  # its signature
    chrf: float  # sacreBLEU's chrF2 on the same text, 0-100
    chrf_signature: str  # its signature
    exact_match: float  # percentage of outputs equal to the reference (detokenized, cased)
    aer: float | None  # AER of layer- and head-averaged cross-attention (synthetic corpus only)
    aer_per_layer: list[float] | None  # AER of each decoder layer's head-averaged attention
    aer_best_head: dict[str, float] | None  # {"layer", "head", "aer"} of the best single head
    decode_seconds: float  # wall time of decoding the split
    device: str  # where it ran, e.g. "cpu (2 threads)"
    untranslated: list[int] = field(default_factory=list)  # numbers (from 1) of sources too long to translate
    warnings: list[str] = field(default_factory=list)  # what the reader should know about these figures

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
            f"chrF:             {self.chrf:.2f}  [{self.chrf_signature}]",
            f"exact match:      {self.exact_match:.2f} %",
            f"AER:              {aer}",
            f"decode seconds:   {self.decode_seconds:.2f}",
        ])  # fmt: skip


def _aer(loaded: LoadedModel, encoded: list[EncodedLine], references: list[str], gold, batch_size: int):
    """Teacher-forced cross-attention over each reference, scored against the gold links.

    Only pairs whose source and reference fit the model's positions are scored; returns
    (AER, number of pairs left out)."""
    model, tgt_tok = loaded.model, loaded.tgt_tokenizer
    device = next(model.parameters()).device
    fits = []  # (source ids, target ids, gold links) of the pairs the model's positions cover
    for line, reference, links in zip(encoded, references, gold, strict=True):
        target = tgt_tok.encode(reference)
        if line.ids is not None and len(target) + 1 <= model.cfg.max_len:
            fits.append((line.ids, target, links))
    attentions = []
    for start in range(0, len(fits), batch_size):
        chunk = fits[start : start + batch_size]
        src = pad_batch([ids for ids, _, _ in chunk], model.cfg.pad_id).to(device)  # (B, Ts)
        weights = cross_attention(model, src, [t for _, t, _ in chunk], bos_id=tgt_tok.bos_id)  # (L, h, Tt, S) each
        attentions += [w[..., : len(ids) - 1] for w, (ids, _, _) in zip(weights, chunk, strict=True)]  # drop <eos>
    return (attention_aer(attentions, [links for _, _, links in fits]) if fits else None), len(encoded) - len(fits)


def _pick_split(splits: Splits, split: str | None, source: str) -> str:
    """``split``, or by default the test split (the validation split when the data has no test split)."""
    available = splits.available()
    if split is None:
        return "test" if "test" in available else "val" if "val" in available else "train"
    if not splits[split]:
        raise UserError(f"the run's data ({source}) has no {split!r} split; try --split {available[0]}")
    return split


def _test_pairs(loaded: LoadedModel, split: str | None, data_dir, src_file, ref_file):
    """(name, pairs, gold alignments or None): the user's files, or a split of the run's data."""
    if (src_file is None) != (ref_file is None):
        raise UserError("--src and --ref go together: the source sentences and their reference translations")
    if src_file is not None:
        if split is not None or data_dir is not None:
            raise UserError("--split and --data-dir choose from the run's data; leave them out with --src/--ref")
        return str(src_file), check_pairs(read_parallel(src_file, ref_file), str(src_file), str(ref_file)), None
    data = loaded.config.data
    if data_dir is not None:
        data = dataclasses.replace(data, data_dir=Path(data_dir))
    splits = load_splits(data)
    split = _pick_split(splits, split, data.source)
    gold = splits.alignments.get(split) if loaded.config.tokenizer.kind == "word" else None  # links between words
    return split, splits[split], gold


def evaluate(
    directory: str | Path,
    *,
    split: str | None = None,
    beam_size: int = 1,
    device: str | torch.device | None = None,
    batch_size: int = 128,
    data_dir: str | Path | None = None,
    src_file: str | Path | None = None,
    ref_file: str | Path | None = None,
    bleu_tokenize: str | None = None,
) -> tuple[EvaluationReport, list[str]]:
    """Decode a split (or the user's test files) with the checkpoint in ``directory`` and score it.

    The pairs come from the data the run's config records (its text files, Multi30k folder or
    synthetic corpus; the synthetic corpus is built once, with its gold alignments), or from
    ``src_file``/``ref_file``. BLEU's tokenizer follows the rule in the module doc.

    Args:
        directory: a training output directory (holding ``checkpoint.pt``).
        split: "train", "val" or "test" of the run's data (default: test, or val when there is no test split),
            or a published Multi30k test set by name ("test_2017_flickr"); only this split is read.
        beam_size: 1 for greedy search, k > 1 for beam search.
        device: where to run (default: CUDA if present, else CPU).
        batch_size: sentences decoded together.
        data_dir: where the Multi30k files are now, instead of the folder the run recorded.
        src_file, ref_file: your own test set, two line-aligned files (plain or gzip), instead of a split.
        bleu_tokenize: the sacreBLEU tokenizer for BLEU (one of ``metrics.BLEU_TOKENIZERS``; default: by the rule).

    Returns:
        (report, hypotheses in input order; "" for a source too long to translate).
        :class:`UserError` for an unknown or missing split, unreadable or mismatched files, an empty line.
    """
    check_beam(beam_size)
    if bleu_tokenize is not None:
        check_bleu_tokenizer(bleu_tokenize)  # before the decoding, not after
    device = resolve_device(device)
    loaded = load_model(directory, device)
    name, pairs, gold = _test_pairs(loaded, split, data_dir, src_file, ref_file)
    encoded = [encode_line(loaded, source) for source, _ in pairs]

    synchronize(device)
    start = time.perf_counter()
    translated = decode_lines(loaded, encoded, beam_size=beam_size, batch_size=batch_size)
    synchronize(device)
    seconds = time.perf_counter() - start
    hypotheses = ["" if text is None else text for text in translated]

    aer, left_out = (None, 0) if gold is None else _aer(loaded, encoded, [t for _, t in pairs], gold, batch_size)
    scores, warnings = _scores(loaded, pairs, hypotheses, bleu_tokenize)
    untranslated = [number for number, text in enumerate(translated, start=1) if text is None]
    report = EvaluationReport(
        split=name, sentences=len(pairs), beam_size=beam_size, **scores, **_aer_fields(aer),
        decode_seconds=seconds, device=describe_device(device), untranslated=untranslated,
        warnings=warnings + _input_warnings(encoded, untranslated, left_out, loaded.model.cfg.max_len),
    )  # fmt: skip
    return report, hypotheses


def _input_warnings(encoded: list[EncodedLine], untranslated: list[int], aer_left_out: int, max_len: int) -> list[str]:
    """What the reader should know about the sources: unseen words, sentences too long to translate or to score."""
    warnings = []
    unseen = [line.unknown for line in encoded if line.unknown]
    if unseen:
        examples = ", ".join(repr(w) for w in list(dict.fromkeys(w for words in unseen for w in words))[:5])
        warnings.append(f"{len(unseen)} of {len(encoded)} source sentences have words the model never saw in "
                        f"training (read as <unk>), e.g. {examples}")  # fmt: skip
    if untranslated:
        lines = f"line{'s' if len(untranslated) > 1 else ''} {', '.join(map(str, untranslated))}"
        warnings.append(f"{lines}: the source is longer than the model's {max_len} positions; "
                        "counted as an empty output")  # fmt: skip
    if aer_left_out:
        warnings.append(f"AER leaves out {aer_left_out} sentence(s) longer than the model's positions")
    return warnings


def _scores(loaded: LoadedModel, pairs: list[Pair], hypotheses: list[str],
            bleu_tokenize: str | None) -> tuple[dict, list[str]]:  # fmt: skip
    """BLEU (both), chrF and exact match of ``hypotheses`` against the written references, and warnings."""
    form = loaded.tgt_tokenizer.form
    references = [form.detokenize(t) for _, t in pairs]
    tokenizer = choose_bleu_tokenizer(references, language=loaded.config.data.target_language, override=bleu_tokenize)
    tok = tokenized_bleu(hypotheses, references, tokenizer.name)
    sacre, char_f = sacre_bleu(hypotheses, references, tokenizer.name), chrf(hypotheses, references)
    return {
        "bleu_tokenize": tokenizer.name, "bleu_tok": tok.score, "bleu_tok_signature": tok.signature,
        "sacrebleu": sacre.score, "sacrebleu_signature": sacre.signature,
        "chrf": char_f.score, "chrf_signature": char_f.signature,
        "exact_match": exact_match(hypotheses, references),
    }, list(tokenizer.warnings)  # fmt: skip


def _aer_fields(aer: AttentionAER | None) -> dict:
    """The report's AER fields (all None without gold alignments)."""
    if aer is None:
        return {"aer": None, "aer_per_layer": None, "aer_best_head": None}
    best = dict(zip(("layer", "head", "aer"), aer.best_head(), strict=True))
    return {"aer": aer.average, "aer_per_layer": aer.per_layer, "aer_best_head": best}
