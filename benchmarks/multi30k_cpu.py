"""Multi30k de→en on this machine's CPU: our ``multi30k-cpu`` preset against the PyTorch tutorial recipe at equal time.

    python benchmarks/multi30k_cpu.py --data-dir DIR [--budget 720] [--eval-every 60] [--out FILE]

In one run, on the same data (``train`` to learn, ``val`` to score, read from ``--data-dir``):

1. **ours**: ``xattn_edu.translate.train.train`` with the ``multi30k-cpu`` preset, its training loop
   stopped after ``--budget`` seconds at the latest, then ``xattn_edu.translate.evaluate.evaluate`` on
   ``val`` (greedy). The curve is the run's own record: tokenized BLEU of all val sentences at each
   validation, against the training-loop seconds. ``total_seconds`` is the wall time of everything
   a user waits for: reading the data, fitting the tokenizer, training, validations and the evaluation.
2. **tutorial**: ``benchmarks/tutorial_transformer.py`` (the PyTorch "Language Translation with
   nn.Transformer" recipe) trained for the same ``--budget`` seconds, its val BLEU measured every
   ``--eval-every`` seconds of training and at the end.

Both curves count training time only (validation is paused out), and both score greedy translations of
the 1,014 val sentences with the same tokenized BLEU (lowercased, sacreBLEU 13a) against the raw English
references (ours in the curve against the references its tokenizer reads back, which differ only in
whitespace; the final ``evaluate`` figure is against the raw file). ``comparison`` gives the ratio of the
BLEU each reached at the budget and, at every curve point after ``--ahead-after`` seconds, which was
ahead (each side's latest validation at or before that time).

The JSON (stdout, and ``--out``) records the hardware, torch's thread count and the 1-minute load average
before, between and after the two runs: figures from a machine shared with other jobs are not the
machine's speed. Set no OMP_NUM_THREADS to use every core, as a user would.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tutorial_transformer beside this file

import tutorial_transformer  # noqa: E402

from xattn_edu.common.device import hardware_info, resolve_device  # noqa: E402
from xattn_edu.translate.config import get_preset  # noqa: E402
from xattn_edu.translate.data import multi30k  # noqa: E402
from xattn_edu.translate.evaluate import evaluate  # noqa: E402
from xattn_edu.translate.metrics import tokenized_bleu  # noqa: E402
from xattn_edu.translate.train import train  # noqa: E402


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run_ours(data_dir: Path, budget: float, preset: str = "multi30k-cpu", changes: dict | None = None) -> dict:
    """Train and evaluate the preset on val; its curve, final scores and wall times."""
    cfg = get_preset(preset).with_values({"data.data_dir": data_dir, "time_budget": budget, **(changes or {})})
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        result = train(cfg, out, device="cpu", progress=False, quiet=True)
        trained = time.perf_counter() - start
        report, _ = evaluate(out, split="val", device="cpu")
        total = time.perf_counter() - start
    return {
        "preset": preset, "settings": changes or {},
        "curve": [{"seconds": v["seconds"], "step": v["step"], "bleu": v["bleu"]} for v in result.validations],
        "steps": result.step, "train_loop_seconds": result.seconds,
        "target_tokens_per_second": result.target_tokens_per_second,
        "train_call_seconds": trained, "total_seconds": total, "cpu_seconds": time.process_time() - cpu,
        "val_bleu_tok": report.bleu_tok, "val_bleu_signature": report.bleu_tok_signature,
        "val_sacrebleu": report.sacrebleu, "val_chrf": report.chrf,
    }  # fmt: skip


def run_tutorial(data_dir: Path, budget: float, eval_every: float) -> dict:
    """Train the tutorial recipe for ``budget`` seconds on the same data; its curve."""
    train_pairs, val = multi30k.load("train", data_dir=data_dir), multi30k.load("val", data_dir=data_dir)
    references = [en for _, en in val]
    start, cpu = time.perf_counter(), time.process_time()
    result = tutorial_transformer.train_for(train_pairs, val, budget, lambda hyps: bleu(hyps, references),
                                            eval_every=eval_every)  # fmt: skip
    return {**result, "total_seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Tokenized BLEU (lowercased, 13a), 0-100."""
    return tokenized_bleu(hypotheses, references, "13a").score


def latest(curve: list[dict], seconds: float) -> float | None:
    """BLEU of the last point of ``curve`` at or before ``seconds`` (None before the first)."""
    reached = [p["bleu"] for p in curve if p["seconds"] <= seconds]
    return reached[-1] if reached else None


def compare(ours: list[dict], theirs: list[dict], after: float) -> dict:
    """Who is ahead at every curve point after ``after`` seconds, and the ratio of the final BLEU."""
    times = sorted({p["seconds"] for p in ours + theirs if p["seconds"] > after})
    points = [{"seconds": t, "ours": latest(ours, t), "tutorial": latest(theirs, t)} for t in times]
    points = [p for p in points if p["ours"] is not None and p["tutorial"] is not None]
    final_ours, final_theirs = ours[-1]["bleu"], theirs[-1]["bleu"]
    return {
        "bleu_at_budget": {"ours": final_ours, "tutorial": final_theirs},
        "ratio_at_budget": final_ours / final_theirs if final_theirs else None,
        "ahead_after_seconds": after,
        "points": points,
        "ours_ahead_at_every_point": bool(points) and all(p["ours"] > p["tutorial"] for p in points),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run both, print (and write) the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder with train.* and val.* of Multi30k")
    parser.add_argument("--budget", type=float, default=720.0, help="training seconds for each (default 720)")
    parser.add_argument("--eval-every", type=float, default=60.0, help="tutorial: seconds between validations")
    parser.add_argument("--ahead-after", type=float, default=60.0, help="compare the curves after this many seconds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting of our preset (development runs: eval_every=20, optim.steps=60)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    changes = {}
    for pair in args.set:
        key, _, text = pair.partition("=")
        changes[key] = type(get_preset("multi30k-cpu").value(key))(text)

    report = {"benchmark": "multi30k_cpu", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              **hardware_info(resolve_device("cpu")), "threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "budget_seconds": args.budget}  # fmt: skip
    report["ours"] = run_ours(args.data_dir, args.budget, changes=changes)
    report["load_average_between"] = _load()
    report["tutorial"] = run_tutorial(args.data_dir, args.budget, args.eval_every)
    report["load_average_after"] = _load()
    report["comparison"] = compare(report["ours"]["curve"], report["tutorial"]["curve"], args.ahead_after)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
