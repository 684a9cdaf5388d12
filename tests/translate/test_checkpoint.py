"""Checkpoints: round trip, atomic replacement, clear errors for missing or damaged files."""

import dataclasses

import pytest
import torch

from xattn_edu.common.errors import UserError
from xattn_edu.translate import checkpoint
from xattn_edu.translate.corpus import encode_source
from xattn_edu.translate.tokenizers import WordTokenizer
from xattn_edu.translate.train import get_preset, train

MICRO = dataclasses.replace(
    get_preset("tiny"), n_train=200, n_val=10, n_test=10, d_model=32, n_heads=2, n_encoder_layers=1,
    n_decoder_layers=1, d_ff=64, steps=3, max_tokens=400, warmup=2, log_every=1, eval_every=0, save_every=0,
    val_sample=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(MICRO, out, device="cpu", quiet=True)
    return out


def test_load_model_rebuilds_the_trained_translator(trained):
    state = torch.load(checkpoint.checkpoint_path(trained), weights_only=True)
    loaded = checkpoint.load_model(trained, "cpu")
    assert not loaded.model.training
    assert loaded.step == 3 and loaded.train_config == MICRO
    assert isinstance(loaded.src_tokenizer, WordTokenizer)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name
    ids = torch.tensor([encode_source(loaded.src_tokenizer, "the man sees the dog .")])
    tgt = torch.tensor([[loaded.tgt_tokenizer.bos_id]])
    assert loaded.model(ids, tgt).shape == (1, 1, loaded.tgt_tokenizer.vocab_size)


def test_checkpoint_holds_everything_needed_to_resume(trained):
    state = checkpoint.load(trained)
    assert {"optimizer", "scheduler", "step", "position", "rng"} <= set(state)
    assert state["scheduler"]["last_epoch"] == 3


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    checkpoint.save(tmp_path, {"value": torch.ones(2)})
    checkpoint.save(tmp_path, {"value": torch.zeros(2)})
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT_FILE]
    assert torch.equal(torch.load(checkpoint.checkpoint_path(tmp_path))["value"], torch.zeros(2))


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"value": torch.ones(2)})
    before = checkpoint.checkpoint_path(tmp_path).read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, {"value": torch.zeros(2)})
    assert checkpoint.checkpoint_path(tmp_path).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT_FILE]


def test_missing_directory_or_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint directory"):
        checkpoint.load_model(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no checkpoint.pt"):
        checkpoint.load_model(tmp_path)


def test_damaged_or_foreign_file_is_a_user_error(tmp_path):
    checkpoint.checkpoint_path(tmp_path).write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="damaged"):
        checkpoint.load_model(tmp_path)
    torch.save({"weights": torch.ones(1)}, checkpoint.checkpoint_path(tmp_path))
    with pytest.raises(UserError, match="missing"):
        checkpoint.load_model(tmp_path)


def test_truncated_checkpoint_is_a_user_error(trained, tmp_path):
    data = checkpoint.checkpoint_path(trained).read_bytes()
    checkpoint.checkpoint_path(tmp_path).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        checkpoint.load_model(tmp_path)
