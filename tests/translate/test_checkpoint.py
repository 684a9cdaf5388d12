"""Checkpoints: round trip, atomic replacement, format versions (format 1 migrated), clear errors."""

import shutil

import pytest
import torch

from xattn_edu.common.errors import UserError
from xattn_edu.translate import checkpoint
from xattn_edu.translate.config import get_preset
from xattn_edu.translate.corpus import encode_source
from xattn_edu.translate.evaluate import evaluate
from xattn_edu.translate.tokenizers import WordTokenizer
from xattn_edu.translate.train import train

MICRO = get_preset("tiny").with_values({
    "data.n_train": 200, "data.n_val": 10, "data.n_test": 10, "model.d_model": 32, "model.n_heads": 2,
    "model.n_encoder_layers": 1, "model.n_decoder_layers": 1, "model.d_ff": 64, "optim.steps": 3,
    "optim.max_tokens": 400, "optim.lr": 2e-3, "optim.warmup": 2, "log_every": 1, "eval_every": 0, "save_every": 0,
    "val_sample": 4, "stop_exact_match": 0.0,
})  # fmt: skip

# MICRO as the old TrainConfig.to_dict() wrote it (fields and order of `git show 580411c:xattn_edu/translate/train.py`).
OLD_TRAIN_CONFIG = {
    "preset": "tiny", "data": "synthetic", "n_train": 200, "n_val": 10, "n_test": 10, "data_seed": 0,
    "tokenizer": "word", "min_count": 1, "vocab_size": 8000, "d_model": 32, "n_heads": 2, "n_encoder_layers": 1,
    "n_decoder_layers": 1, "d_ff": 64, "dropout": 0.0, "max_len": 64, "steps": 3, "max_tokens": 400, "lr": 2e-3,
    "warmup": 2, "schedule": "cosine", "weight_decay": 0.01, "betas": (0.9, 0.98), "label_smoothing": 0.1,
    "clip_norm": 1.0, "log_every": 1, "eval_every": 0, "val_sample": 4, "save_every": 0, "seed": 0, "bf16": True,
    "compile": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(MICRO, out, device="cpu", quiet=True)
    return out


def _old_format(saved: checkpoint.Checkpoint, train_config: dict) -> dict:
    """``saved`` written the way checkpoints were before the layer split (format 1: flat, no version)."""
    state = {
        "model": saved.model, "model_config": saved.config.model.to_dict(), "train_config": train_config,
        "src_tokenizer": saved.src_tokenizer.to_dict(), "tgt_tokenizer": saved.tgt_tokenizer.to_dict(),
        "step": saved.step,
    }  # fmt: skip
    if saved.resume is not None:
        state.update(optimizer=saved.resume.optimizer, scheduler=saved.resume.scheduler,
                     position=saved.resume.position, rng=saved.resume.rng)  # fmt: skip
    return state


def _small_checkpoint(value: torch.Tensor) -> checkpoint.Checkpoint:
    tok = WordTokenizer.train(["a b c"])
    cfg = MICRO.with_vocabularies(tok.vocab_size, tok.vocab_size, tok.pad_id)
    return checkpoint.Checkpoint(cfg, {"value": value}, tok, tok, step=0)


def test_load_model_rebuilds_the_trained_translator(trained):
    state = torch.load(checkpoint.checkpoint_path(trained), weights_only=True)
    assert state["format_version"] == checkpoint.FORMAT_VERSION
    loaded = checkpoint.load_model(trained, "cpu")
    assert not loaded.model.training
    src_tok, tgt_tok = loaded.src_tokenizer, loaded.tgt_tokenizer
    assert loaded.step == 3
    assert loaded.config == MICRO.with_vocabularies(src_tok.vocab_size, tgt_tok.vocab_size, tgt_tok.pad_id)
    assert isinstance(src_tok, WordTokenizer)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name
    ids = torch.tensor([encode_source(src_tok, "the man sees the dog .")])
    tgt = torch.tensor([[tgt_tok.bos_id]])
    assert loaded.model(ids, tgt).shape == (1, 1, tgt_tok.vocab_size)


def test_checkpoint_holds_everything_needed_to_resume(trained):
    saved = checkpoint.load(trained)
    assert saved.resume is not None and len(saved.resume.position) == 2 and "cpu" in saved.resume.rng
    assert saved.resume.scheduler["last_epoch"] == 3


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    checkpoint.save(tmp_path, _small_checkpoint(torch.ones(2)))
    checkpoint.save(tmp_path, _small_checkpoint(torch.zeros(2)))
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT_FILE]
    assert torch.equal(checkpoint.load(tmp_path).model["value"], torch.zeros(2))


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, _small_checkpoint(torch.ones(2)))
    before = checkpoint.checkpoint_path(tmp_path).read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, _small_checkpoint(torch.zeros(2)))
    assert checkpoint.checkpoint_path(tmp_path).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT_FILE]


def test_a_format_1_checkpoint_loads_evaluates_and_resumes_like_the_new_one(trained, tmp_path):
    new = checkpoint.load(trained)
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    torch.save(_old_format(new, OLD_TRAIN_CONFIG), checkpoint.checkpoint_path(old_dir))
    migrated = checkpoint.load(old_dir)
    assert migrated.config == new.config and migrated.step == new.step
    assert migrated.resume.position == new.resume.position
    assert evaluate(old_dir, split="val", device="cpu")[1] == evaluate(trained, split="val", device="cpu")[1]
    shutil.copytree(trained, tmp_path / "new")
    longer = MICRO.with_values({"optim.steps": 5})
    train(longer, old_dir, device="cpu", quiet=True, resume=True)
    train(longer, tmp_path / "new", device="cpu", quiet=True, resume=True)
    a, b = checkpoint.load(old_dir).model, checkpoint.load(tmp_path / "new").model
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_format_1_text_run_loads_and_evaluate_says_its_files_were_not_recorded(trained, tmp_path, cli_user_error):
    torch.save(_old_format(checkpoint.load(trained), {**OLD_TRAIN_CONFIG, "data": "text"}),
               checkpoint.checkpoint_path(tmp_path))  # fmt: skip
    assert checkpoint.load_model(tmp_path).config.data.source == "text"
    assert "names no training files" in cli_user_error("evaluate", str(tmp_path), "--device", "cpu")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"format_version": 3, "config": {}}, "checkpoint format 3 is not one this xattn reads"),
        ({"train_config": {**OLD_TRAIN_CONFIG, "warp": 9}, "model": {}, "model_config": {}, "src_tokenizer": {},
          "tgt_tokenizer": {}}, r"format 1 with unknown training settings \['warp'\]"),
        ({"train_config": OLD_TRAIN_CONFIG}, "missing model, model_config"),
        ({"weights": torch.ones(1)}, "missing format_version"),
    ],
)  # fmt: skip
def test_unknown_versions_and_foreign_files_are_refused_by_name(tmp_path, state, message):
    torch.save(state, checkpoint.checkpoint_path(tmp_path))
    with pytest.raises(UserError, match=message):
        checkpoint.load_model(tmp_path)


def test_missing_directory_or_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint directory"):
        checkpoint.load_model(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no checkpoint.pt"):
        checkpoint.load_model(tmp_path)


def test_damaged_file_is_a_user_error(tmp_path):
    checkpoint.checkpoint_path(tmp_path).write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="damaged"):
        checkpoint.load_model(tmp_path)


def test_truncated_checkpoint_is_a_user_error(trained, tmp_path):
    data = checkpoint.checkpoint_path(trained).read_bytes()
    checkpoint.checkpoint_path(tmp_path).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        checkpoint.load_model(tmp_path)
