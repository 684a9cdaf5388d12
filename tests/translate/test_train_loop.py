"""The training loop's stopping rule, its progress without a terminal, and its CPU threads."""

import os
import re

import pytest
import torch

from xattn_edu.common import device as device_module
from xattn_edu.common.errors import UserError
from xattn_edu.translate import checkpoint
from xattn_edu.translate import train as train_module
from xattn_edu.translate.config import RunConfig, get_preset
from xattn_edu.translate.train import train

MICRO = get_preset("tiny").with_values({
    "data.n_train": 200, "data.n_val": 10, "data.n_test": 10, "model.d_model": 32, "model.n_heads": 2,
    "model.n_encoder_layers": 1, "model.n_decoder_layers": 1, "model.d_ff": 64, "optim.steps": 12,
    "optim.max_tokens": 400, "optim.warmup": 3, "log_every": 1, "eval_every": 2, "save_every": 0, "val_sample": 4,
    "stop_exact_match": 0.0,
})  # fmt: skip


@pytest.fixture
def scripted_exact_match(monkeypatch):
    """Validations report the exact match values given, one per validation (the loss stays real)."""
    real = train_module.validate

    def script(*values):
        remaining = list(values)

        def validate(*args, **kwargs):
            return {**real(*args, **kwargs), "exact_match": remaining.pop(0) if remaining else 0.0}

        monkeypatch.setattr(train_module, "validate", validate)

    return script


def test_training_stops_at_the_first_validation_that_reaches_the_goal(tmp_path, scripted_exact_match, capsys):
    scripted_exact_match(40.0, 98.9, 99.0, 100.0)
    result = train(MICRO.with_values({"stop_exact_match": 99.0}), tmp_path, device="cpu")
    assert result.reached_goal and result.step == 6 and checkpoint.load(tmp_path).step == 6
    assert [(v["step"], v["exact_match"]) for v in result.validations] == [(2, 40.0), (4, 98.9), (6, 99.0)]
    assert "step 6 of 12 (validation exact match 99.0 % reached stop_exact_match=99)" in capsys.readouterr().err


def test_without_a_goal_every_step_is_taken(tmp_path, scripted_exact_match):
    scripted_exact_match(100.0, 100.0)
    result = train(MICRO, tmp_path, device="cpu", quiet=True)  # stop_exact_match = 0: off
    assert not result.reached_goal and result.step == 12 and result.validations[-1]["step"] == 12


def test_the_goal_is_a_percentage():
    with pytest.raises(UserError, match=r"stop_exact_match must be in \[0, 100\], got 101"):
        MICRO.with_values({"stop_exact_match": 101})
    assert RunConfig().stop_exact_match == 0 and get_preset("tiny").stop_exact_match > 98


def _progress_lines(err: str) -> list[int]:
    return [int(m) for m in re.findall(r"^step (\d+)/12: loss [\d.]+, [\d,]+ target tokens/s, \d+ s$", err, re.M)]


def test_without_a_terminal_progress_is_plain_lines_every_few_seconds(tmp_path, capsys, monkeypatch):
    train(MICRO, tmp_path / "a", device="cpu")  # stderr is captured: not a terminal
    lines = _progress_lines(capsys.readouterr().err)
    assert lines[0] == 1 and lines[-1] == 12  # the first report at once, the last step at the end
    monkeypatch.setattr(train_module._Progress, "LINE_SECONDS", 0.0)
    train(MICRO, tmp_path / "b", device="cpu")
    err = capsys.readouterr().err
    assert _progress_lines(err) == list(range(1, 13)) and "\r" not in err  # every report, no bar
    train(MICRO, tmp_path / "c", device="cpu", progress=False)
    assert _progress_lines(capsys.readouterr().err) == []
    train(MICRO, tmp_path / "d", device="cpu", quiet=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("cores", "idle", "threads"), [(2, 0.0, 1), (2, 0.4, 1), (2, 1.4, 1), (2, 1.6, 2), (2, 2.0, 2),
                                                         (2, 9.0, 2), (16, 3.6, 4), (1, 1.0, 1)])  # fmt: skip
def test_threads_are_the_idle_cores_at_least_one(cores, idle, threads):
    assert device_module.cpu_threads(cores=cores, idle=idle) == threads


def test_idle_cores_are_measured_between_none_and_all():
    idle = device_module.idle_cores(0.05)
    assert idle is None or 0.0 <= idle <= os.cpu_count()


def test_training_uses_its_share_of_the_idle_cores_and_restores_torchs_count(tmp_path, monkeypatch):
    for name in device_module.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(device_module, "cpu_threads", lambda: 4)
    seen = []
    real_step = train_module.train_step
    monkeypatch.setattr(train_module, "train_step", lambda *a: (seen.append(torch.get_num_threads()), real_step(*a))[1])
    before = torch.get_num_threads()
    result = train(MICRO.with_values({"optim.steps": 2}), tmp_path / "one", device="cpu", quiet=True)
    assert result.threads == 4 and seen == [4, 4] and torch.get_num_threads() == before
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # three processes of one torchrun job on this machine
    assert train(MICRO.with_values({"optim.steps": 1}), tmp_path / "three", device="cpu", quiet=True).threads == 1


def test_a_thread_variable_set_by_the_user_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(device_module, "cpu_threads", lambda: pytest.fail("the user's choice is not overridden"))
    result = train(MICRO.with_values({"optim.steps": 1}), tmp_path, device="cpu", quiet=True)
    assert result.threads == torch.get_num_threads()
