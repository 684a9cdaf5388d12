"""benchmarks/gpu.py --dry-run: every stage of the prepared GPU run executes on the CPU (tiny model, made-up data)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def test_every_stage_of_the_gpu_run_executes_in_a_dry_run(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert list(stages) == ["train", "evaluation", "decoding", "attention", "torchrun", "baseline"]
    assert all("result" in stage for stage in stages.values()), {k: v.get("error") for k, v in stages.items()}
    assert report["dry_run"] and report["device"].startswith("cpu") and "load_average_1min" in report

    trained = stages["train"]["result"]
    assert trained["steps"] == 4 and trained["target_tokens_per_second"] > 0
    assert [row["step"] for row in trained["validations"]] == [2, 4]
    assert {(row["set"], row["beam_size"]) for row in stages["evaluation"]["result"]} == {
        (name, beam) for name in ("val", "test_2017_flickr") for beam in (1, 4)}
    assert stages["decoding"]["result"]["results"][0]["same_outputs"] is True
    attention = stages["attention"]["result"]
    assert attention["readable_ms"] > 0 and attention["fused_ms"] > 0
    assert stages["torchrun"]["result"]["backend"] == "gloo"
    assert "1 torchrun process, gloo" in stages["torchrun"]["result"]["summary"]
    baseline = stages["baseline"]["result"]
    assert baseline["epochs"] == 1 and len(baseline["val_bleu_tok_by_epoch"]) == 1


def test_stages_past_the_time_budget_are_skipped_and_say_so(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--budget", "0"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]  # over budget from the start: all skipped, none failed
    assert all("skipped" in stage for stage in json.loads(out.read_text())["stages"].values())
