"""The README's main job against the recipe it replaced, both run in one go; one JSON object.

    python benchmarks/main_job.py --out docs/results/main_job.json      # on an idle machine: about 2 minutes
    python benchmarks/main_job.py --repeats 3                           # alternate the two recipes 3 times
    python benchmarks/main_job.py --dry-run                             # a few steps: checks the script only

Each recipe is the two commands a user types, run as subprocesses of this Python and timed from
outside (wall seconds; CPU seconds of the children; the 1-minute load average before and after):

* **now**: ``xattn train --preset tiny --out DIR`` then ``xattn evaluate DIR --json``, exactly as the
  README says, with no thread variable in the environment (the command picks its threads);
* **before**: the same two commands with the settings the ``tiny`` preset had before issue 18
  (:data:`RECIPE_BEFORE`, given as ``--set`` values, so later changes to the preset do not move
  this baseline) and ``OMP_NUM_THREADS`` set to torch's default thread count, which is what
  torch used then. Any speed-up in shared code (the model, the loop) helps both alike; the ratio
  measures the recipe: schedule, batch, early stop, evaluations, threads.

Running both in the same invocation, interleaved, makes the ratio robust to a machine whose speed
drifts; on a shared machine the wall times still swing with the other jobs (the JSON keeps the
load average of every command), so record figures from an idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The `tiny` preset and loop settings on branch main before issue 18 (commit 53eaad1): every setting
# that preset gave, plus the defaults it relied on. stop_exact_match did not exist then (0 = off).
RECIPE_BEFORE = {
    "model.d_model": 128, "model.n_heads": 4, "model.n_encoder_layers": 2, "model.n_decoder_layers": 2,
    "model.d_ff": 256, "model.dropout": 0.0, "model.max_len": 64, "model.positional": "sinusoidal",
    "model.activation": "relu", "model.pre_norm": True, "model.tie_output": True, "model.tie_kv": False,
    "model.fused": True,
    "data.source": "synthetic", "data.n_train": 40_000, "data.n_val": 500, "data.n_test": 1_000, "data.seed": 0,
    "tokenizer.kind": "word", "tokenizer.min_count": 1,
    "optim.steps": 700, "optim.max_tokens": 2000, "optim.lr": 2e-3, "optim.warmup": 80, "optim.schedule": "cosine",
    "optim.weight_decay": 0.01, "optim.betas": "0.9,0.98", "optim.label_smoothing": 0.1, "optim.clip_norm": 1.0,
    "seed": 0, "log_every": 10, "eval_every": 100, "val_sample": 200, "save_every": 100, "stop_exact_match": 0.0,
    "time_budget": 0.0,
}  # fmt: skip

# --dry-run: a corpus and a run small enough to check the script in seconds (measures nothing).
DRY_RUN = {
    "data.n_train": 300, "data.n_val": 20, "data.n_test": 20, "model.d_model": 32, "model.d_ff": 64,
    "optim.steps": 4, "optim.warmup": 2, "eval_every": 2, "save_every": 0, "val_sample": 10, "log_every": 1,
}  # fmt: skip

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
GOAL = {"test_exact_match": 98.0, "seconds": 60.0, "ratio": 2.4}  # issue 18's targets for "now"


def _set_options(values: dict) -> list[str]:
    """``--set KEY=VALUE`` options for the settings ``values``."""
    def text(value) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [part for key, value in values.items() for part in ("--set", f"{key}={text(value)}")]


def _environment(threads: int | None) -> dict[str, str]:
    """This process's environment without thread variables (``threads`` None) or with OMP_NUM_THREADS set."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def torch_default_threads() -> int:
    """The thread count torch picks by itself on this machine (a fresh process with no thread variable)."""
    code = "import torch; print(torch.get_num_threads())"
    done = subprocess.run([sys.executable, "-c", code], env=_environment(None), capture_output=True, text=True,
                          check=True)  # fmt: skip
    return int(done.stdout.strip())


def _timed(command: list[str], env: dict[str, str]) -> dict:
    """Run ``xattn COMMAND...`` to the end: wall and children's CPU seconds, load before and after, output."""
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "xattn_edu", *command], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"xattn {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "stdout": done.stdout,
        "stderr_tail": done.stderr.strip().splitlines()[-12:],
    }


def run_recipe(name: str, settings: list[str], env: dict[str, str]) -> dict:
    """Train then evaluate one recipe in a fresh folder; its times and test scores."""
    with tempfile.TemporaryDirectory(prefix=f"main_job_{name}_") as folder:
        out = str(Path(folder) / "run")
        train = _timed(["train", "--preset", "tiny", "--out", out, *settings], env)
        evaluate = _timed(["evaluate", out, "--json"], env)
    scores = json.loads(evaluate.pop("stdout"))
    train.pop("stdout")
    return {
        "recipe": name,
        "seconds": round(train["seconds"] + evaluate["seconds"], 2),
        "cpu_seconds": round(train["cpu_seconds"] + evaluate["cpu_seconds"], 2),
        "test_exact_match": scores["exact_match"],
        "test_bleu_tok": round(scores["bleu_tok"], 2),
        "test_chrf": round(scores["chrf"], 2),
        "train": train,
        "evaluate": {**evaluate, "scores": scores},
    }


def summarise(runs: list[dict], dry_run: bool) -> dict:
    """Median seconds of each recipe, the ratio, and whether issue 18's targets are met."""
    median = {name: statistics.median(r["seconds"] for r in runs if r["recipe"] == name) for name in ("now", "before")}
    now = [r for r in runs if r["recipe"] == "now"]
    ratio = median["before"] / median["now"]
    worst_match = min(r["test_exact_match"] for r in now)
    return {
        "now_seconds_median": median["now"],
        "before_seconds_median": median["before"],
        "ratio": round(ratio, 2),
        "now_test_exact_match_lowest": worst_match,
        "goal": GOAL,
        "goal_met": None if dry_run else (worst_match >= GOAL["test_exact_match"] and median["now"] <= GOAL["seconds"]
                                          and ratio >= GOAL["ratio"]),  # fmt: skip
    }


def main() -> None:
    """Run both recipes ``--repeats`` times, alternating which goes first; print and optionally write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here (folders are created)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each recipe (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="tiny corpus and a few steps: checks the script")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from xattn_edu.common.device import hardware_info, idle_cores, usable_cores

    extra = _set_options(DRY_RUN) if args.dry_run else []
    before_threads = torch_default_threads()
    recipes = {
        "now": (extra, _environment(None)),
        "before": (_set_options(RECIPE_BEFORE) + extra, _environment(before_threads)),
    }
    report = {
        "benchmark": "README main job: xattn train --preset tiny, then xattn evaluate (test split, greedy)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        **hardware_info(),
        "usable_cores": usable_cores(),
        "idle_cores_at_start": idle_cores(1.0),
        "before_omp_num_threads": before_threads,
        "recipe_before": RECIPE_BEFORE,
        "runs": [],
    }
    for repeat in range(args.repeats):
        order = ("now", "before") if repeat % 2 == 0 else ("before", "now")
        for name in order:
            report["runs"].append(run_recipe(name, *recipes[name]))
            print(f"{name}: {report['runs'][-1]['seconds']} s, test exact match "
                  f"{report['runs'][-1]['test_exact_match']:.2f} %", file=sys.stderr)  # fmt: skip
    report["load_average_end"] = round(os.getloadavg()[0], 2)
    report["summary"] = summarise(report["runs"], args.dry_run)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
