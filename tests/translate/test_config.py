"""The run config: presets, dotted settings, recorded data files, the resume rule, and ``xattn train --set``."""

import dataclasses
import os

import pytest

from xattn_edu.cli import main
from xattn_edu.common.errors import UserError
from xattn_edu.nn.model import Seq2SeqConfig
from xattn_edu.translate import checkpoint
from xattn_edu.translate.config import (
    FILLED_AT_SETUP,
    LIMITS,
    PRESETS,
    RESUMABLE,
    DataConfig,
    RunConfig,
    get_preset,
    setting_types,
)


def test_presets_are_frozen_and_round_trip():
    for name, cfg in PRESETS.items():
        assert cfg.preset == name
        assert RunConfig.from_dict(cfg.to_dict()) == cfg
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.seed = 1
    big = PRESETS["multi30k"]
    assert (big.model.d_model, big.model.n_heads, big.optim.label_smoothing, big.bf16, big.tokenizer.kind) == (
        512, 8, 0.1, True, "sentencepiece")


def test_the_model_config_is_nested_not_copied():
    tiny = PRESETS["tiny"]
    assert isinstance(tiny.model, Seq2SeqConfig)
    assert (tiny.model.src_vocab, tiny.model.tgt_vocab) == (0, 0)  # filled in at setup
    filled = tiny.with_vocabularies(120, 130, 0)
    assert (filled.model.src_vocab, filled.model.tgt_vocab) == (120, 130)
    assert dataclasses.replace(filled.model, src_vocab=0, tgt_vocab=0) == tiny.model
    own = {f.name for f in dataclasses.fields(RunConfig)} | {
        f.name for section in ("data", "tokenizer", "optim") for f in dataclasses.fields(getattr(tiny, section))}
    assert not own & {f.name for f in dataclasses.fields(Seq2SeqConfig)}, "a model field is copied"


def test_every_model_field_is_a_setting_except_the_ones_the_tokenizers_fill_in():
    keys = setting_types()
    model_keys = {f"model.{f.name}" for f in dataclasses.fields(Seq2SeqConfig)}
    assert model_keys - set(FILLED_AT_SETUP) <= set(keys)
    assert not set(FILLED_AT_SETUP) & set(keys)
    assert set(RESUMABLE) <= set(keys)
    assert keys["model.pre_norm"] is bool and keys["optim.lr"] is float


def test_unknown_preset_and_setting_are_user_errors_naming_the_choices():
    with pytest.raises(UserError, match="tiny, multi30k"):
        get_preset("huge")
    with pytest.raises(UserError, match="unknown setting 'model.width'; valid keys: model.d_model, "):
        PRESETS["tiny"].with_values({"model.width": 3})
    with pytest.raises(UserError, match="filled in from the fitted tokenizers"):
        PRESETS["tiny"].with_values({"model.src_vocab": 3})
    with pytest.raises(UserError, match="positional must be"):  # the model config's own check, as a UserError
        PRESETS["tiny"].with_values({"model.positional": "alibi"})


def test_data_files_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = DataConfig(source="text", train_src="a.en", train_tgt="~/a.de")
    assert data.train_src == tmp_path / "a.en"
    assert data.train_tgt.is_absolute() and "~" not in str(data.train_tgt)
    with pytest.raises(UserError, match="needs its validation source"):
        DataConfig(source="text", train_src="a.en", val_tgt="b.de")
    with pytest.raises(UserError, match="for the 'text' data source"):
        DataConfig(source="synthetic", train_src="a.en")


def test_resuming_keeps_the_saved_settings_and_changes_only_the_resumable_ones(tmp_path):
    saved = PRESETS["tiny"].with_vocabularies(50, 60, 0)
    asked = PRESETS["tiny"].with_values({"optim.steps": 900, "compile": True})
    resumed = asked.resuming(saved)
    assert resumed.model == saved.model and (resumed.optim.steps, resumed.compile) == (900, True)
    with pytest.raises(UserError, match=r"not seed \(saved 0, asked 5\)"):
        PRESETS["tiny"].with_values({"seed": 5}).resuming(saved)


def _train(*args):
    return main(["train", "--device", "cpu", "--no-progress", "--set", "data.n_train=120", "--set", "data.n_val=5",
                 "--set", "data.n_test=5", "--set", "model.d_model=16", "--set", "model.d_ff=32", *args])


def test_cli_sets_every_kind_of_model_field(tmp_path, capsys):
    out = tmp_path / "run"
    settings = ["model.positional=learned", "model.activation=gelu", "model.pre_norm=false", "model.tie_kv=true",
                "model.tie_output=no", "model.fused=0", "optim.betas=0.8, 0.9", "optim.lr=5e-4"]
    assert _train("--out", str(out), "--steps", "1", *[a for s in settings for a in ("--set", s)]) == 0, \
        capsys.readouterr().err
    saved = checkpoint.load_model(out).config
    model = saved.model
    assert (model.positional, model.activation, model.pre_norm, model.tie_kv, model.tie_output, model.fused) == (
        "learned", "gelu", False, True, False, False)
    assert (saved.optim.betas, saved.optim.lr, saved.optim.steps) == ((0.8, 0.9), 5e-4, 1)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.width=3", "unknown setting 'model.width'; valid keys: model.d_model,"),
        ("model.pre_norm", "expects KEY=VALUE"),
        ("model.pre_norm=maybe", "model.pre_norm=maybe: expected true or false"),
        ("optim.steps=many", "optim.steps=many: expected a value of type int"),
        ("optim.betas=0.9", "expected 2 comma-separated values"),
        ("model.activation=tanh", "activation must be 'relu' or 'gelu'"),
        ("model.n_heads=3", "must divide d_model"),
        ("data.source=books", "unknown data source 'books'"),
        ("model.n_heads=0", "model.n_heads must be at least 1, got 0"),  # was a ZeroDivisionError traceback
        ("data.n_train=-5", "data.n_train must be at least 1, got -5"),  # was an endless loop
        ("optim.betas=0.9,1.5", "optim.betas must be in [0, 1)"),
        ("model.dropout=1", "model.dropout must be in [0, 1)"),
    ],
)
def test_cli_bad_settings_are_one_line_errors(tmp_path, cli_user_error, setting, message):
    assert message in cli_user_error("train", "--out", str(tmp_path / "run"), "--set", setting)
    assert not os.path.exists(tmp_path / "run")


def test_cli_resume_refuses_a_preset_and_a_changed_setting(tmp_path, cli_user_error, capsys):
    out = tmp_path / "run"
    assert _train("--out", str(out), "--steps", "1") == 0
    capsys.readouterr()
    assert "leave out --preset" in cli_user_error("train", "--out", str(out), "--resume", "--preset", "tiny")
    err = cli_user_error("train", "--out", str(out), "--resume", "--set", "model.pre_norm=false")
    assert "may change only optim.steps" in err and "model.pre_norm (saved True, asked False)" in err
    assert _train("--out", str(out), "--resume", "--steps", "2") == 0, capsys.readouterr().err
    assert checkpoint.load(out).step == 2


SEEDS = {"seed", "data.seed"}  # any integer is a seed


def test_every_numeric_setting_has_a_range_and_the_presets_are_inside_them():
    """The kind behind `--set model.n_heads=0` (a traceback) and `--set data.n_train=-5` (a hang): every
    number is checked before anything is built."""
    numeric = {key for key, kind in setting_types().items()
               if kind in (int, float) or str(kind).startswith("tuple[float")}  # fmt: skip
    assert numeric - SEEDS == set(LIMITS)
    for key in LIMITS:
        with pytest.raises(UserError, match=key.replace(".", r"\.")):
            value = PRESETS["tiny"].value(key)
            RunConfig().with_values({key: tuple(-1 for _ in value) if isinstance(value, tuple) else -1})


def test_the_target_language_is_recorded_or_follows_the_data_source():
    assert DataConfig().target_language == "de" and DataConfig(source="multi30k").target_language == "en"
    assert DataConfig(source="text").target_language is None
    assert DataConfig(source="text", tgt_lang="ja").target_language == "ja"
    assert RunConfig().with_values({"data.tgt_lang": "zh"}).data.target_language == "zh"
