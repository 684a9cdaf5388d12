"""Translation engine: decoding speed with and without the K/V cache, and evaluation of a checkpoint.

Prints one JSON object with up to three sections:

* ``decode`` (always): median seconds to translate a fixed set of random source sentences
  with a model of the ``multi30k`` preset's shape (D 512, 8 heads, 3+3 layers, FF 2048,
  joint vocabulary 8000) and **random weights**, cached vs recomputing the whole prefix at
  every step; the outputs of both are asserted identical. Random weights never predict EOS,
  so every output runs to its length limit; the margin is 0, which makes that limit the
  source length (a translation about as long as its source, as in Multi30k). Source lengths
  are drawn uniformly from 6..26 tokens (seeded).
* ``decode_checkpoint`` and ``evaluation`` (with ``--checkpoint DIR``): the
  same cached/uncached timing on the checkpoint's own test sentences (margin 10: outputs end
  at the EOS the model predicts), then :func:`xattn_edu.translate.evaluate.evaluate` greedy and with beam ``--beam``.

    python benchmarks/translate.py [--device cpu|cuda] [--sentences N] [--repeats R]
        [--batch-size B] [--beam K] [--checkpoint DIR [--data-dir DIR]] [--skip-decode]

Defaults: 1000 sentences on a GPU, 100 on a CPU. Training speed is measured by
``benchmarks/train.py``; give its checkpoint to ``--checkpoint`` for the decoding figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from xattn_edu.common.device import default_device, hardware_info, resolve_device, synchronize
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate.config import get_preset
from xattn_edu.translate.decode import translate_ids
from xattn_edu.translate.tokenizers import BOS_ID, EOS_ID, PAD_ID

VOCAB = 8000  # the multi30k preset's joint sentencepiece vocabulary


def random_sources(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """``n`` source id lists of 6..26 tokens (the last one EOS), drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(6, 27, (n,), generator=generator).tolist()
    return [[*torch.randint(4, vocab, (length - 1,), generator=generator).tolist(), EOS_ID] for length in lengths]


def time_decoding(model: Seq2Seq, sources: list[list[int]], *, use_cache: bool, repeats: int, **options):
    """(median wall seconds, median CPU seconds of this process, outputs' token lists) over ``repeats``
    runs after one warm-up. CPU seconds are less disturbed than wall time when other jobs share the cores."""
    device = next(model.parameters()).device
    wall, cpu, outputs = [], [], None
    for i in range(repeats + 1):
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        results = translate_ids(model, sources, bos_id=BOS_ID, eos_id=EOS_ID, use_cache=use_cache, **options)
        synchronize(device)
        if i:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        outputs = [r.tokens for r in results]
    return statistics.median(wall), statistics.median(cpu), outputs


def compare_decoding(model: Seq2Seq, sources: list[list[int]], repeats: int, batch_size: int, beam: int,
                     margin: int) -> list[dict]:
    """One row per search (greedy, and beam ``beam`` if > 1): cached vs uncached times, same outputs asserted."""
    rows = []
    for beam_size in sorted({1, beam}):
        options = dict(batch_size=batch_size, beam_size=beam_size, margin=margin)
        cached, cached_cpu, cached_out = time_decoding(model, sources, use_cache=True, repeats=repeats, **options)
        uncached, uncached_cpu, uncached_out = time_decoding(model, sources, use_cache=False, repeats=repeats,
                                                             **options)  # fmt: skip
        assert cached_out == uncached_out, "cached and uncached decoding disagree"
        rows.append({
            "search": "greedy" if beam_size == 1 else f"beam {beam_size}",
            "cached_s": round(cached, 3),
            "uncached_s": round(uncached, 3),
            "speedup": round(uncached / cached, 2),
            "cached_cpu_s": round(cached_cpu, 3),
            "uncached_cpu_s": round(uncached_cpu, 3),
            "cpu_speedup": round(uncached_cpu / cached_cpu, 2),
            "generated_tokens": sum(len(o) + 1 for o in cached_out),
            "same_outputs": True,
        })  # fmt: skip
    return rows


def decode_section(device: torch.device, n_sentences: int, repeats: int, batch_size: int, beam: int) -> dict:
    """Cached vs uncached decoding of random sentences with a multi30k-shaped random model."""
    torch.manual_seed(0)
    model_cfg = get_preset("multi30k").with_vocabularies(VOCAB, VOCAB, PAD_ID).model
    model = Seq2Seq(model_cfg).to(device).eval()
    sources = random_sources(n_sentences, VOCAB)
    return {
        "model": "multi30k preset shape, random weights (float32), margin 0",
        "parameters": sum(p.numel() for p in model.parameters()),
        "sentences": n_sentences,
        "source_tokens": sum(len(s) for s in sources),
        "batch_size": batch_size,
        "repeats": repeats,
        "results": compare_decoding(model, sources, repeats, batch_size, beam, margin=0),
    }


def checkpoint_decode_section(directory: Path, device: torch.device, repeats: int, batch_size: int, beam: int,
                              n_sentences: int, data_dir: Path | None) -> dict:
    """Cached vs uncached decoding of a trained checkpoint's test sentences (they stop at their own EOS)."""
    from xattn_edu.translate.checkpoint import load_model
    from xattn_edu.translate.corpus import encode_source, load_splits

    loaded = load_model(directory, device)
    data = loaded.config.data if data_dir is None else dataclasses.replace(loaded.config.data, data_dir=data_dir)
    pairs = load_splits(data)["test"][:n_sentences]
    sources = [encode_source(loaded.src_tokenizer, s) for s, _ in pairs]
    return {
        "model": f"checkpoint {directory} (preset {loaded.config.preset}, step {loaded.step})",
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "sentences": len(sources),
        "source_tokens": sum(len(s) for s in sources),
        "batch_size": batch_size,
        "repeats": repeats,
        "results": compare_decoding(loaded.model, sources, repeats, batch_size, beam, margin=10),
    }


def evaluation_section(directory: Path, device: torch.device, beam: int, batch_size: int,
                       data_dir: Path | None) -> list[dict]:
    """Greedy (and beam) evaluation of a checkpoint on its test split."""
    from xattn_edu.translate.evaluate import evaluate

    return [
        evaluate(directory, beam_size=beam_size, device=device, batch_size=batch_size, data_dir=data_dir)[0].to_dict()
        for beam_size in sorted({1, beam})
    ]


def main() -> None:
    """Time decoding (and evaluate a checkpoint if given); print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(default_device()))
    parser.add_argument("--sentences", type=int, help="sentences to decode (default: 1000 on GPU, 100 on CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median reported)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--beam", type=int, default=1, help="also time/evaluate this beam size (default: greedy only)")
    parser.add_argument("--checkpoint", type=Path, help="evaluate this trained checkpoint directory")
    parser.add_argument("--data-dir", type=Path, help="Multi30k files, for a checkpoint trained on Multi30k")
    parser.add_argument("--skip-decode", action="store_true", help="leave out the random-weights decode section")
    args = parser.parse_args()
    device = resolve_device(args.device)
    n_sentences = args.sentences or (1000 if device.type == "cuda" else 100)
    report: dict = {"benchmark": "translation: decoding speed, evaluation", **hardware_info(device),
                    "date": time.strftime("%Y-%m-%d", time.gmtime())}  # fmt: skip
    if not args.skip_decode:
        report["decode"] = decode_section(device, n_sentences, args.repeats, args.batch_size, args.beam)
    if args.checkpoint:
        report["decode_checkpoint"] = checkpoint_decode_section(args.checkpoint, device, args.repeats,
                                                                args.batch_size, args.beam, n_sentences,
                                                                args.data_dir)  # fmt: skip
        report["evaluation"] = evaluation_section(args.checkpoint, device, args.beam, args.batch_size, args.data_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
