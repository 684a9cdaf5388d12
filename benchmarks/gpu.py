"""Every GPU figure of issue 18 in one call (about 5 minutes on one H100/H200, no network); one JSON file.

    python benchmarks/gpu.py --data-dir DIR --out $OUT/gpu.json [--steps N] [--set KEY=VALUE ...]
    python benchmarks/gpu.py --dry-run --out FILE      # every stage on the CPU in seconds (CI runs this)

``DIR`` holds the raw Multi30k files (``train``, ``val`` and ``test_2017_flickr``, ``.de.gz``/``.en.gz``).
The stages, in order; each one's figures (or its error) go into the JSON as soon as it ends, so a
run cut short still leaves what it measured, and a stage that would start after ``--budget``
seconds is skipped and says so:

1. ``train``: the ``multi30k`` preset (with ``--steps`` and ``--set`` changes), validating every
   ``eval_every`` steps on all of val: loss, exact match and (where the loop reports it) tokenized
   BLEU against the training seconds; target tokens per second; the seconds at which validation
   BLEU first reached 38.5 (issue 18: within 20 s).
2. ``evaluation``: :func:`xattn_edu.translate.evaluate.evaluate` of that checkpoint, greedy and beam 4,
   on val and on test_2017_flickr (the test set in the folder), with decode seconds.
3. ``decoding``: 1,000 test_2017_flickr sources decoded greedily with the K/V cache and by recomputing
   the whole prefix at every step (``benchmarks/translate.py``'s timing; identical outputs asserted).
4. ``attention``: readable vs fused attention, forward + backward, bf16, B16 h16 T2048 Dh64
   (DESIGN §8; ``benchmarks/attention.py``'s timing).
5. ``torchrun``: ``xattn train`` under a 1-process ``torchrun`` (NCCL on a GPU, gloo on the CPU), a few
   steps, checking that the distributed path (process group, DDP) starts and trains.
6. ``baseline``: the tuned plain ``nn.Transformer`` recipe (``benchmarks/transformer_baseline.py``) on the
   same data and vocabulary, validation BLEU after every epoch against its training seconds.

``--dry-run`` runs the same stages on the CPU with a tiny model, a few dozen made-up sentence
pairs written in the Multi30k file layout, gloo, and a few steps; its figures mean nothing, its
point is that every stage runs. The exit status is 1 if any stage failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
sys.path[:0] = [str(ROOT), str(BENCHMARKS)]

import attention as attention_bench  # noqa: E402
import torch  # noqa: E402
import transformer_baseline  # noqa: E402
import translate as translate_bench  # noqa: E402

from xattn_edu.cli import _settings  # noqa: E402  (--set KEY=VALUE typed as `xattn train --set` types it)
from xattn_edu.common.device import hardware_info, resolve_device  # noqa: E402
from xattn_edu.translate.checkpoint import load_model  # noqa: E402
from xattn_edu.translate.config import get_preset  # noqa: E402
from xattn_edu.translate.corpus import encode_source  # noqa: E402
from xattn_edu.translate.data import multi30k  # noqa: E402
from xattn_edu.translate.evaluate import evaluate  # noqa: E402
from xattn_edu.translate.train import train  # noqa: E402

TEST_SET = "test_2017_flickr"
BLEU_GOAL = 38.5  # issue 18: tokenized BLEU on val within 20 s of training

# What --dry-run changes: a model and data small enough for seconds on a CPU.
DRY_SETTINGS = {
    "model.d_model": 32, "model.n_heads": 2, "model.n_encoder_layers": 1, "model.n_decoder_layers": 1,
    "model.d_ff": 64, "tokenizer.vocab_size": 120, "optim.steps": 4, "optim.warmup": 2, "optim.max_tokens": 600,
    "eval_every": 2, "log_every": 1,
}  # fmt: skip
DRY_BASELINE_SHAPE = {"d_model": 32, "n_heads": 2, "layers": 1, "d_ff": 64, "dropout": 0.1}


def dry_run_data(folder: Path) -> Path:
    """A few dozen made-up German→English pairs (from the synthetic corpus, sides swapped) in Multi30k's layout."""
    from xattn_edu.translate.data import synthetic

    made = synthetic.make_splits(120, 24, 24, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, pairs in (("train", made.train), ("val", made.val), ("test_2016_flickr", made.test),
                        (TEST_SET, made.test)):  # fmt: skip
        for language, side in (("de", "tgt_text"), ("en", "src_text")):
            text = "".join(getattr(p, side) + "\n" for p in pairs)  # plain: a made-up .gz fails its SHA-256
            (folder / f"{stem}.{language}").write_text(text, encoding="utf-8")
    return folder


def stage_train(args, device: torch.device, run_dir: Path) -> dict:
    """Train the multi30k preset; speed and the validation curve."""
    values = {"data.data_dir": args.data_dir, "eval_every": 40, "val_sample": 1014, "save_every": 0,
              **(DRY_SETTINGS if args.dry_run else {}), **_settings(args.set)}  # fmt: skip
    if args.steps:
        values["optim.steps"] = args.steps
    cfg = get_preset("multi30k").with_values(values)
    result = train(cfg, run_dir, device=device, progress=False)
    curve = [{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()} for row in result.validations]
    reached = next((row["seconds"] for row in curve if row.get("bleu", -1.0) >= BLEU_GOAL), None)
    return {
        "config": cfg.to_dict(), "steps": result.step, "train_seconds": round(result.seconds, 2),
        "target_tokens_per_second": round(result.target_tokens_per_second), "validations": curve,
        "bleu_in_validations": any("bleu" in row for row in curve),
        f"train_seconds_to_val_bleu_{BLEU_GOAL}": reached,
    }  # fmt: skip


def stage_evaluation(args, device: torch.device, run_dir: Path) -> list[dict]:
    """Greedy and beam-4 scores on val and on the test set (read by name from --data-dir)."""
    rows = []
    for beam in (1, 4):
        for name in ("val", TEST_SET):
            report, _ = evaluate(run_dir, split=name, data_dir=args.data_dir, beam_size=beam, device=device)
            keep = ("sentences", "beam_size", "bleu_tok", "sacrebleu", "chrf", "exact_match", "decode_seconds",
                    "bleu_tok_signature", "warnings")  # fmt: skip
            rows.append({"set": name, **{k: v for k, v in report.to_dict().items() if k in keep}})
    return rows


def stage_decoding(args, device: torch.device, run_dir: Path) -> dict:
    """Cached vs uncached greedy decoding of up to 1,000 test sentences (identical outputs asserted)."""
    loaded = load_model(run_dir, device)
    pairs = multi30k.load(TEST_SET, data_dir=args.data_dir)
    sources = [encode_source(loaded.src_tokenizer, s) for s, _ in pairs][:1000]
    rows = translate_bench.compare_decoding(loaded.model, sources, repeats=1 if args.dry_run else 3,
                                            batch_size=128, beam=1, margin=10)  # fmt: skip
    return {"sentences": len(sources), "source_tokens": sum(map(len, sources)), "results": rows}


def stage_attention(args, device: torch.device) -> dict:
    """Readable vs fused attention, forward + backward (bf16 on a GPU, float32 on the CPU)."""
    shape = ("dry run: B1 h2 T64 Dh16", 1, 2, 64, 16) if args.dry_run else attention_bench.LONG_GPU
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    repeats = 1 if args.dry_run else 10
    row = {"shape": shape[0], "dtype": str(dtype).removeprefix("torch."), "repeats": repeats}
    for name, fused in (("readable", False), ("fused", True)):
        row[f"{name}_ms"] = round(attention_bench.time_fwd_bwd(fused, shape, device, dtype, repeats), 3)
    row["speedup"] = round(row["readable_ms"] / row["fused_ms"], 2)
    return row


def stage_torchrun(args, device: torch.device, work: Path) -> dict:
    """``xattn train`` under a 1-process torchrun: exit status, wall seconds and its summary line."""
    settings = {**(DRY_SETTINGS if args.dry_run else {}), "eval_every": 0, "val_sample": 0, "save_every": 0}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               "-m", "xattn_edu", "train", "--preset", "multi30k", "--data-dir", str(args.data_dir),
               "--out", str(work / "torchrun"), "--steps", "2" if args.dry_run else "30", "--device", device.type,
               "--no-progress", *(part for key, value in settings.items() for part in ("--set", f"{key}={value}"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    backend = "nccl" if device.type == "cuda" else "gloo"
    summary = next((line for line in reversed(done.stderr.splitlines()) if "torchrun process" in line), "")
    if done.returncode != 0 or backend not in summary:
        raise RuntimeError(f"torchrun exit status {done.returncode}, no '{backend}' summary:\n{done.stderr[-2000:]}")
    return {"processes": 1, "backend": backend, "seconds": round(time.perf_counter() - start, 2), "summary": summary}


def stage_baseline(args, device: torch.device, run_dir: Path) -> dict:
    """The tuned nn.Transformer recipe, same data and vocabulary."""
    if args.dry_run:
        return transformer_baseline.run(run_dir, args.data_dir, device, epochs=1, batch_size=16,
                                        shape=DRY_BASELINE_SHAPE, limit=64)  # fmt: skip
    return transformer_baseline.run(run_dir, args.data_dir, device, epochs=args.baseline_epochs)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder with the raw Multi30k files")
    default_out = Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None
    parser.add_argument("--out", type=Path, default=default_out, help="the JSON file (default: $OUT/gpu.json)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting of the preset, e.g. optim.lr=2e-3, compile=true (repeatable)")
    parser.add_argument("--baseline-epochs", type=int, default=10, help="epochs of the nn.Transformer recipe")
    parser.add_argument("--budget", type=float, default=450.0, help="start no stage after this many seconds")
    parser.add_argument("--dry-run", action="store_true", help="every stage on the CPU, tiny, in seconds")
    args = parser.parse_args()
    if args.out is None:
        parser.error("--out is required when $OUT is not set")
    if args.data_dir is None and not args.dry_run:
        parser.error("--data-dir is required (the folder with the Multi30k .gz files), unless --dry-run")
    return args


def main() -> int:
    """Run every stage within the budget, writing the JSON after each; 1 if a stage failed."""
    args = _arguments()
    device = resolve_device("cpu" if args.dry_run else "cuda")
    started = time.perf_counter()
    report: dict = {"benchmark": "issue 18 GPU run: multi30k preset, evaluation, decoding, attention, torchrun, "
                                 "nn.Transformer baseline",  # fmt: skip
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "dry_run": args.dry_run, **hardware_info(device), "stages": {}}  # fmt: skip
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["cuda"] = torch.version.cuda
    with tempfile.TemporaryDirectory(prefix="xattn_gpu_") as tmp:
        work = Path(tmp)
        if args.dry_run:
            args.data_dir = dry_run_data(work / "multi30k")
        run_dir = work / "run"
        stages: list[tuple[str, Callable[[], object]]] = [
            ("train", lambda: stage_train(args, device, run_dir)),
            ("evaluation", lambda: stage_evaluation(args, device, run_dir)),
            ("decoding", lambda: stage_decoding(args, device, run_dir)),
            ("attention", lambda: stage_attention(args, device)),
            ("torchrun", lambda: stage_torchrun(args, device, work)),
            ("baseline", lambda: stage_baseline(args, device, run_dir)),
        ]
        failed = False
        for name, stage in stages:
            elapsed = time.perf_counter() - started
            if elapsed > args.budget:
                report["stages"][name] = {"skipped": f"{elapsed:.0f} s spent, over the --budget of {args.budget:g} s"}
            else:
                print(f"[{elapsed:6.1f} s] {name}", file=sys.stderr, flush=True)
                begun = time.perf_counter()
                try:
                    result = stage()
                    report["stages"][name] = {"result": result, "stage_seconds": round(time.perf_counter() - begun, 2)}
                except Exception as err:  # record it and go on: the other stages' figures still count
                    failed = True
                    report["stages"][name] = {"error": f"{type(err).__name__}: {err}",
                                              "traceback": traceback.format_exc()}  # fmt: skip
            report["total_seconds"] = round(time.perf_counter() - started, 2)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({name: sorted(stage) for name, stage in report["stages"].items()}), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
