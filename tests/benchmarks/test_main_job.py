"""benchmarks/main_job.py: the recipe it compares against is a valid, pinned config; the summary's arithmetic."""

import importlib.util
from pathlib import Path

import pytest

from xattn_edu.cli import _settings
from xattn_edu.translate.config import get_preset, setting_types

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "main_job.py"


@pytest.fixture(scope="module")
def main_job():
    spec = importlib.util.spec_from_file_location("main_job", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_before_goes_through_the_cli_and_pins_the_old_tiny_preset(main_job):
    options = main_job._set_options(main_job.RECIPE_BEFORE)
    assert options[:2] == ["--set", "model.d_model=128"] and "--set" not in options[1::2]
    cfg = get_preset("tiny").with_values(_settings(options[1::2]))  # typed exactly as `xattn train --set` types them
    assert (cfg.optim.steps, cfg.optim.max_tokens, cfg.optim.lr, cfg.optim.warmup) == (700, 2000, 2e-3, 80)
    assert (cfg.optim.betas, cfg.model.pre_norm, cfg.stop_exact_match, cfg.eval_every) == ((0.9, 0.98), True, 0, 100)
    # Every setting that shapes the training is pinned, so later changes to the preset leave this baseline alone.
    unpinned = set(setting_types()) - set(main_job.RECIPE_BEFORE)
    assert unpinned <= {"bf16", "compile", "data.tgt_lang", "data.data_dir", "data.train_src", "data.train_tgt",
                        "data.val_src", "data.val_tgt", "tokenizer.vocab_size"}, unpinned


def test_the_summary_takes_medians_and_checks_every_goal(main_job):
    def run(recipe, seconds, match=99.0):
        return {"recipe": recipe, "seconds": seconds, "test_exact_match": match}

    runs = [run("now", 30), run("before", 80), run("now", 34, 98.5), run("before", 76)]
    summary = main_job.summarise(runs, dry_run=False)
    assert (summary["now_seconds_median"], summary["before_seconds_median"], summary["ratio"]) == (32, 78, 2.44)
    assert summary["now_test_exact_match_lowest"] == 98.5 and summary["goal_met"] is True
    assert main_job.summarise([run("now", 30, 97.9), run("before", 80)], dry_run=False)["goal_met"] is False
    assert main_job.summarise([run("now", 61), run("before", 200)], dry_run=False)["goal_met"] is False
    assert main_job.summarise([run("now", 40), run("before", 80)], dry_run=False)["goal_met"] is False  # 2.0x
    assert main_job.summarise(runs, dry_run=True)["goal_met"] is None
