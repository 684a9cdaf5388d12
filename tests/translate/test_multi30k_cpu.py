"""The ``multi30k-cpu`` preset on a few hundred real Multi30k pairs, the time budget and validation BLEU,
the tutorial baseline of ``benchmarks/tutorial_transformer.py`` and the benchmark's comparison.

Everything runs on the CPU in seconds: the preset's recipe with a narrow model, a few steps.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from tests.translate.multi30k_sample import copy_head
from xattn_edu.cli import main
from xattn_edu.common.errors import UserError
from xattn_edu.translate import checkpoint
from xattn_edu.translate.config import get_preset
from xattn_edu.translate.corpus import build_corpus, load_splits
from xattn_edu.translate.evaluate import evaluate
from xattn_edu.translate.tokenizers import SentencePieceTokenizer
from xattn_edu.translate.train import train
from xattn_edu.translate.translator import translate_lines

# nn.Transformer's encoder takes its nested-tensor fast path when it reads padded sources in eval mode
pytestmark = pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# The preset's recipe with a model small enough for seconds; the vocabulary, data and schedule kinds are the preset's.
NARROW = {"model.d_model": 32, "model.n_heads": 2, "model.n_encoder_layers": 1, "model.n_decoder_layers": 1,
          "model.d_ff": 64, "tokenizer.vocab_size": 500, "optim.steps": 4, "optim.warmup": 2, "eval_every": 2,
          "val_sample": 40, "optim.max_tokens": 1200}  # fmt: skip


def _module(name: str):
    """A script of benchmarks/ imported as a module."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """300 training, 40 validation and 30 test_2017_flickr pairs of the real files, and no other file."""
    return copy_head(tmp_path_factory.mktemp("multi30k"), {"train": 300, "val": 40, "test_2017_flickr": 30})


@pytest.fixture(scope="module")
def run(sample, tmp_path_factory):
    """The preset trained for a few steps on the sample (with the training result)."""
    out = tmp_path_factory.mktemp("run") / "out"
    cfg = get_preset("multi30k-cpu").with_values({**NARROW, "data.data_dir": sample})
    return out, train(cfg, out, device="cpu", quiet=True)


def test_preset_is_sized_for_two_cores_and_records_its_data():
    cfg = get_preset("multi30k-cpu")
    assert cfg.data.source == "multi30k" and cfg.tokenizer.kind == "sentencepiece"
    assert cfg.model.d_model < get_preset("multi30k").model.d_model  # not the GPU preset's model
    assert 0 < cfg.time_budget <= 15 * 60
    assert cfg.val_sample >= 1014  # validation BLEU on the whole val split
    assert cfg.optim.label_smoothing > 0 and cfg.optim.schedule == "cosine"


def test_preset_trains_on_real_pairs_with_validation_bleu_against_seconds(run):
    out, result = run
    assert result.step == 4
    seconds = [v["seconds"] for v in result.validations]
    assert [v["step"] for v in result.validations] == [2, 4] and seconds == sorted(seconds) and seconds[0] > 0
    assert all(0 <= v["bleu"] <= 100 and 0 <= v["exact_match"] <= 100 for v in result.validations)
    loaded = checkpoint.load_model(out)
    assert isinstance(loaded.tgt_tokenizer, SentencePieceTokenizer)
    # real text: cased and punctuated on both sides, so input is read as typed
    assert not loaded.src_tokenizer.form.lowercase and not loaded.tgt_tokenizer.form.split_punctuation


def test_tokenizer_is_fitted_on_train_only(sample):
    """A word that occurs in val only is not a piece of the vocabulary; the same word in train is."""
    cfg = get_preset("multi30k-cpu").with_values({**NARROW, "data.data_dir": sample})
    corpus = build_corpus(cfg)
    assert corpus.test == []  # never read for training
    val_words = {w.strip(".,") for _, en in corpus.val for w in en.split()}
    train_words = {w.strip(".,") for _, en in corpus.train for w in en.split()}
    pieces = {corpus.tgt_tokenizer._sp.id_to_piece(i).lstrip("\u2581") for i in range(corpus.tgt_tokenizer.vocab_size)}
    only_val = {w for w in val_words - train_words if len(w) > 6}
    assert only_val and not only_val & pieces
    assert {w for w in train_words if len(w) > 6} & pieces


def test_training_reads_no_test_file_and_evaluation_reads_only_the_one_asked(sample, tmp_path):
    data = get_preset("multi30k-cpu").with_values({"data.data_dir": sample}).data
    splits = load_splits(data)
    assert len(splits.train) == 300 and len(splits.val) == 40
    assert len(splits["test_2017_flickr"]) == 30
    with pytest.raises(UserError, match=r"test_2016_flickr\.de\.gz not found.*--data-dir"):
        splits["test"]  # test_2016_flickr is not in the folder, and only now is it looked for
    with pytest.raises(UserError, match="unknown split 'dev'; choose one of train, val, test, test_2016_flickr"):
        splits["dev"]


def test_evaluate_scores_val_and_a_test_set_by_name(run):
    out, result = run
    report, hypotheses = evaluate(out, split="val", device="cpu")
    assert report.sentences == 40 and len(hypotheses) == 40
    assert report.bleu_tok == pytest.approx(result.validations[-1]["bleu"], abs=1e-6)  # the record's figure
    report, _ = evaluate(out, split="test_2017_flickr", device="cpu")
    assert (report.split, report.sentences) == ("test_2017_flickr", 30)


def test_cli_evaluates_a_test_set_by_name_and_names_a_missing_file_and_the_option(run, capsys, cli_user_error):
    out, _ = run
    assert main(["evaluate", str(out), "--split", "test_2017_flickr", "--json"]) == 0
    assert '"split": "test_2017_flickr"' in capsys.readouterr().out
    err = cli_user_error("evaluate", str(out))  # default: test, i.e. test_2016_flickr, absent
    assert "test_2016_flickr.de.gz not found" in err and "--data-dir" in err


def test_translate_reads_and_writes_real_sentences(run):
    out, _ = run
    loaded = checkpoint.load_model(out)
    lines = ["Ein Mann in einem blauen Hemd steht auf einer Leiter.", "", "Zwei Hunde spielen im Schnee!"]
    results = translate_lines(loaded, lines)
    assert len(results) == 3 and results[1].text == ""
    for result in (results[0], results[2]):
        assert result.error is None and result.text == result.text.strip()
        assert " ." not in result.text and " !" not in result.text  # written text, not pieces


def test_time_budget_stops_training_early_and_still_validates(sample, tmp_path, capsys):
    cfg = get_preset("multi30k-cpu").with_values({**NARROW, "data.data_dir": sample, "eval_every": 0,
                                                  "time_budget": 1e-9})  # fmt: skip
    result = train(cfg, tmp_path / "out", device="cpu")
    assert result.step == 0  # spent before the first step
    assert [v["step"] for v in result.validations] == [0]
    assert "time budget of 1e-09 s spent at step 0 of 4" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "out").step == 0
    with pytest.raises(UserError, match="time_budget must be at least 0"):
        cfg.with_values({"time_budget": -1.0})


# --- the tutorial baseline and the benchmark -------------------------------------------------------


def test_tutorial_tokens_and_vocabulary():
    tutorial = _module("tutorial_transformer")
    assert tutorial.tokenize("A man's t-shirt, (blue).") == ["A", "man's", "t-shirt", ",", "(", "blue", ")", "."]
    vocab = tutorial.Vocabulary(["a dog runs .", "a cat runs .", "one bird"], min_freq=2)
    assert vocab.tokens == ["<unk>", "<pad>", "<bos>", "<eos>", ".", "a", "runs"]  # seen twice; ties: alphabetical
    assert vocab.encode("a bird runs") == [tutorial.BOS, 5, tutorial.UNK, 6, tutorial.EOS]
    assert vocab.decode([5, tutorial.UNK, 6, tutorial.EOS]) == "a runs"


def test_tutorial_greedy_in_batches_equals_one_at_a_time():
    tutorial = _module("tutorial_transformer")
    torch.manual_seed(0)
    model = tutorial.TutorialTransformer(20, 30, d_model=16, n_heads=2, layers=1, d_ff=16)
    sources = [[2, 5, 6, 3], [2, 7, 3], [2, 8, 9, 10, 11, 3]]
    together = tutorial.greedy(model, sources)
    assert together == [tutorial.greedy(model, [s])[0] for s in sources]
    assert all(len(out) <= len(src) + 5 for out, src in zip(together, sources, strict=True))


def test_tutorial_recipe_trains_and_scores_on_real_pairs(sample):
    tutorial = _module("tutorial_transformer")
    bench = _module("multi30k_cpu")
    from xattn_edu.translate.data import multi30k

    train_pairs, val = multi30k.load("train", data_dir=sample), multi30k.load("val", data_dir=sample)
    scored = []

    def score(hypotheses):
        scored.append(hypotheses)
        return bench.bleu(hypotheses, [en for _, en in val])

    result = tutorial.train_for(train_pairs, val, 0.5, score, eval_every=0.2,
                                model_size={"d_model": 16, "n_heads": 2, "layers": 1, "d_ff": 16})  # fmt: skip
    assert result["steps"] >= 1 and len(scored[-1]) == 40
    assert [p["seconds"] for p in result["curve"]] == sorted(p["seconds"] for p in result["curve"])
    assert result["curve"][-1]["seconds"] >= 0.5 and 4 < result["src_vocab"] < 1000


def test_benchmark_comparison_takes_each_side_latest_point():
    bench = _module("multi30k_cpu")
    ours = [{"seconds": 50, "bleu": 5.0}, {"seconds": 100, "bleu": 20.0}, {"seconds": 200, "bleu": 31.0}]
    theirs = [{"seconds": 60, "bleu": 2.0}, {"seconds": 120, "bleu": 8.0}, {"seconds": 200, "bleu": 12.4}]
    result = bench.compare(ours, theirs, after=60)
    assert [(p["seconds"], p["ours"], p["tutorial"]) for p in result["points"]] == [
        (100, 20.0, 2.0), (120, 20.0, 8.0), (200, 31.0, 12.4)]
    assert result["ours_ahead_at_every_point"] and result["ratio_at_budget"] == pytest.approx(31.0 / 12.4)
    assert not bench.compare(ours, [{"seconds": 90, "bleu": 25.0}, *theirs[2:]], after=60)["ours_ahead_at_every_point"]
