"""The training loop, its corpus, resume, NaN handling and the ``xattn train`` command."""

import gzip
import math
import shutil
import signal

import pytest
import torch

from xattn_edu.cli import main
from xattn_edu.common.errors import UserError
from xattn_edu.translate import checkpoint
from xattn_edu.translate import train as train_module
from xattn_edu.translate.config import PRESETS, get_preset
from xattn_edu.translate.corpus import encode_source, encode_target, load_splits
from xattn_edu.translate.data.synthetic import generate
from xattn_edu.translate.tokenizers import SentencePieceTokenizer
from xattn_edu.translate.train import lr_factor, train

MICRO = get_preset("tiny").with_values({
    "data.n_train": 200, "data.n_val": 10, "data.n_test": 10, "model.d_model": 32, "model.n_heads": 2,
    "model.n_encoder_layers": 1, "model.n_decoder_layers": 1, "model.d_ff": 64, "model.dropout": 0.1,
    "optim.steps": 12, "optim.max_tokens": 400, "optim.warmup": 3, "log_every": 1, "eval_every": 0, "save_every": 0,
    "val_sample": 4,
})  # fmt: skip


def _weights(directory):
    return checkpoint.load(directory).model


@pytest.mark.parametrize("schedule", ["cosine", "inverse_sqrt"])
def test_learning_rate_warms_up_linearly_then_decays(schedule):
    optim = MICRO.with_values({"optim.warmup": 10, "optim.steps": 100, "optim.schedule": schedule}).optim
    factors = [lr_factor(s, optim) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert max(factors) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    if schedule == "cosine":
        assert factors[55] == pytest.approx(0.5, abs=0.02) and factors[-1] < 0.001
    else:
        assert factors[39] == pytest.approx(0.5)


def test_training_lowers_the_loss_and_writes_a_checkpoint(tmp_path):
    result = train(MICRO.with_values({"optim.lr": 3e-3}), tmp_path, device="cpu", quiet=True)
    assert result.step == 12 and [s for s, _ in result.history] == list(range(1, 13))
    first, last = result.history[0][1], result.history[-1][1]
    assert math.isfinite(last) and last < first - 0.5
    assert result.target_tokens_per_second > 0
    assert result.validations[-1]["step"] == 12 and "val_loss" in result.validations[-1]
    assert checkpoint.load(tmp_path).step == 12


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(MICRO, straight, device="cpu", quiet=True)
    train(MICRO, split, device="cpu", quiet=True, stop_after=5)  # 200 pairs ≈ 9 batches: crosses an epoch
    assert checkpoint.load(split).step == 5
    result = train(MICRO, split, device="cpu", quiet=True, resume=True)
    assert result.step == 12
    a, b = _weights(straight), _weights(split)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert checkpoint.load(straight).resume.position == checkpoint.load(split).resume.position


def test_ctrl_c_finishes_the_step_saves_and_resume_completes_the_run(tmp_path, monkeypatch):
    real = train_module._summed_loss
    calls = []

    def interrupted_at_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during step 3
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "_summed_loss", interrupted_at_third_step)
    cfg = MICRO.with_values({"optim.steps": 5})
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "split", device="cpu", quiet=True)
    assert checkpoint.load(tmp_path / "split").step == 3
    monkeypatch.setattr(train_module, "_summed_loss", real)
    train(cfg, tmp_path / "split", device="cpu", quiet=True, resume=True)
    train(cfg, tmp_path / "straight", device="cpu", quiet=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = train_module._summed_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 5 else loss

    monkeypatch.setattr(train_module, "_summed_loss", poisoned)
    with pytest.raises(UserError, match=r"loss became nan .* the last checkpoint .* is kept"):
        train(MICRO.with_values({"save_every": 2}), tmp_path, device="cpu", quiet=True)
    saved = checkpoint.load(tmp_path)
    assert saved.step == 4
    assert all(torch.isfinite(t).all() for t in saved.model.values())


def test_absurd_learning_rate_is_caught(tmp_path):
    cfg = MICRO.with_values({"optim.lr": 1e30, "optim.warmup": 1, "optim.clip_norm": 0.0, "optim.steps": 30,
                             "optim.label_smoothing": 0.0})  # fmt: skip
    with pytest.raises(UserError, match="loss became"):
        train(cfg, tmp_path, device="cpu", quiet=True)
    assert not checkpoint.checkpoint_path(tmp_path).exists()


def test_existing_checkpoint_is_never_overwritten_without_resume(tmp_path):
    train(MICRO.with_values({"optim.steps": 2}), tmp_path, device="cpu", quiet=True)
    before = checkpoint.checkpoint_path(tmp_path).read_bytes()
    with pytest.raises(UserError, match="already holds a checkpoint"):
        train(MICRO, tmp_path, device="cpu", quiet=True)
    assert checkpoint.checkpoint_path(tmp_path).read_bytes() == before
    with pytest.raises(UserError, match="no checkpoint to continue"):
        train(MICRO, tmp_path / "empty", device="cpu", quiet=True, resume=True)


def test_resuming_a_run_already_at_its_steps_says_there_is_nothing_to_train(tmp_path):
    train(MICRO.with_values({"optim.steps": 2}), tmp_path, device="cpu", quiet=True)
    before = checkpoint.checkpoint_path(tmp_path).read_bytes()
    with pytest.raises(UserError, match="at step 2 already and --steps is 2; nothing is left to train"):
        train(MICRO.with_values({"optim.steps": 2}), tmp_path, device="cpu", quiet=True, resume=True)
    assert checkpoint.checkpoint_path(tmp_path).read_bytes() == before
    assert train(MICRO.with_values({"optim.steps": 3}), tmp_path, device="cpu", quiet=True, resume=True).step == 3


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _text_pair_files(tmp_path, n=60, seed=5):
    pairs = generate(n, seed=seed)
    src = _write(tmp_path / "train.en", [p.src_text for p in pairs])
    tgt = _write(tmp_path / "train.de", [p.tgt_text for p in pairs])
    return src, tgt


def test_over_long_training_pairs_are_left_out_and_counted(tmp_path, capsys):
    src, tgt = _text_pair_files(tmp_path)
    cfg = MICRO.with_values({"data.source": "text", "data.train_src": src, "data.train_tgt": tgt,
                             "model.max_len": 14, "optim.steps": 2, "data.n_val": 5})  # fmt: skip
    result = train(cfg, tmp_path / "out", device="cpu")
    assert result.dropped > 0
    assert f"left out {result.dropped} of 55 training pairs longer than max_len=14" in capsys.readouterr().err
    with pytest.raises(UserError, match="every training pair is longer"):
        train(cfg.with_values({"model.max_len": 3}), tmp_path / "out2", device="cpu")


def test_encoding_conventions():
    tok = SentencePieceTokenizer.train(["a b c", "b c d"] * 20, vocab_size=20)
    assert encode_source(tok, "a b")[-1] == tok.eos_id
    target = encode_target(tok, "a b")
    assert target[0] == tok.bos_id and target[-1] == tok.eos_id and target[1:-1] == tok.encode("a b")


def test_multi30k_code_path_runs_on_cpu_with_a_tiny_override(tmp_path):
    names = {"train": ("train", 80), "val": ("val", 10), "test": ("test_2016_flickr", 10)}
    for seed, (stem, n) in enumerate(names.values()):
        pairs = generate(n, seed=10 + seed)
        _write(tmp_path / f"{stem}.de", [p.tgt_text for p in pairs])  # plain: a .gz must be the published file
        _write(tmp_path / f"{stem}.en", [p.src_text for p in pairs])
    cfg = PRESETS["multi30k"].with_values({
        "tokenizer.vocab_size": 150, "model.d_model": 32, "model.n_heads": 2, "model.d_ff": 64, "optim.steps": 2,
        "optim.max_tokens": 1000, "optim.warmup": 1, "val_sample": 4, "data.data_dir": tmp_path,
    })  # fmt: skip
    result = train(cfg, tmp_path / "out", device="cpu", quiet=True)
    assert result.step == 2
    loaded = checkpoint.load_model(tmp_path / "out")
    assert isinstance(loaded.src_tokenizer, SentencePieceTokenizer)
    assert loaded.src_tokenizer.model_bytes == loaded.tgt_tokenizer.model_bytes  # one joint vocabulary
    # each side keeps its own form: the (synthetic) German source has capitals, the English target none
    assert not loaded.src_tokenizer.form.lowercase and loaded.tgt_tokenizer.form.lowercase
    assert loaded.src_tokenizer.vocab_size <= 150


# --- the command line -------------------------------------------------------------------------


def _run_cli(capsys, *args):
    status = main(["train", *args])
    return status, capsys.readouterr().err


def test_cli_trains_from_text_files(tmp_path, capsys):
    src, tgt = _text_pair_files(tmp_path)
    out = tmp_path / "out"
    status, err = _run_cli(capsys, "--out", str(out), "--train-src", str(src), "--train-tgt", str(tgt),
                           "--steps", "2", "--device", "cpu", "--compile", "--no-progress", "--seed", "3")
    assert status == 0, err
    assert "--compile is only used on CUDA" in err
    saved = checkpoint.load_model(out).config
    assert (saved.data.source, saved.optim.steps, saved.seed, saved.compile) == ("text", 2, 3, True)
    assert (saved.data.train_src, saved.data.train_tgt) == (src, tgt)
    status, err = _run_cli(capsys, "--out", str(out), "--train-src", str(src), "--train-tgt", str(tgt),
                           "--steps", "3", "--resume", "--no-progress")
    assert status == 0, err
    assert checkpoint.load(out).step == 3


def test_cli_trains_from_a_tsv_file_like_from_two_files(tmp_path, capsys):
    src, tgt = _text_pair_files(tmp_path)
    tsv = _write(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in zip(src.read_text().splitlines(),
                                                                     tgt.read_text().splitlines(), strict=True)])
    tsv_data = MICRO.with_values({"data.source": "text", "data.train_src": tsv}).data
    two_files = MICRO.with_values({"data.source": "text", "data.train_src": src, "data.train_tgt": tgt}).data
    assert load_splits(tsv_data) == load_splits(two_files)
    status, err = _run_cli(capsys, "--out", str(tmp_path / "out"), "--train-src", str(tsv), "--steps", "1",
                           "--device", "cpu", "--no-progress")
    assert status == 0, err
    assert checkpoint.load_model(tmp_path / "out").config.data.source == "text"


def test_cli_unknown_preset(tmp_path, cli_user_error):
    assert "unknown preset 'huge'" in cli_user_error("train", "--preset", "huge", "--out", str(tmp_path))


def test_cli_missing_multi30k_data_dir(tmp_path, cli_user_error):
    err = cli_user_error("train", "--preset", "multi30k", "--out", str(tmp_path / "o"),
                         "--data-dir", str(tmp_path / "nowhere"))
    assert "no such folder" in err


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory):
    """A checkpoint trained for one step on ``_text_pair_files`` with the CLI."""
    folder = tmp_path_factory.mktemp("one_step")
    src, tgt = _text_pair_files(folder)
    status = main(["train", "--out", str(folder / "out"), "--train-src", str(src), "--train-tgt", str(tgt),
                   "--steps", "1", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert status == 0
    return folder / "out"


@pytest.mark.parametrize(
    ("problem", "match"),
    [("mismatch", "has 60 lines but"), ("empty", "the file is empty"), ("corrupt_gz", "damaged or incomplete gzip"),
     ("missing", "no such file"), ("blank_line", "train.de, line 60: empty sentence")],
)  # fmt: skip
def test_cli_bad_text_files_never_touch_an_existing_checkpoint(tmp_path, cli_user_error, one_step_run, problem, match):
    src, tgt = _text_pair_files(tmp_path)
    out = tmp_path / "out"
    shutil.copytree(one_step_run, out)
    before = checkpoint.checkpoint_path(out).read_bytes()
    if problem == "mismatch":
        _write(tgt, tgt.read_text().splitlines()[:-3])
    elif problem == "empty":
        _write(tgt, [])
    elif problem == "corrupt_gz":
        tgt.write_bytes(gzip.compress(tgt.read_bytes())[:40])
    elif problem == "missing":
        tgt.unlink()
    else:
        _write(tgt, [*tgt.read_text().splitlines()[:-1], "  "])
    err = cli_user_error("train", "--out", str(out), "--train-src", str(src), "--train-tgt", str(tgt),
                         "--steps", "2", "--resume", "--no-progress")  # fmt: skip
    assert match in err
    assert checkpoint.checkpoint_path(out).read_bytes() == before
