"""`xattn evaluate` / `xattn translate` on a small checkpoint written in the test."""

import dataclasses
import io
import json

import pytest
import torch

from tests.translate.small_run import TRAIN_CFG, save_untrained_run
from xattn_edu.cli import main
from xattn_edu.translate import checkpoint, metrics, translator
from xattn_edu.translate import evaluate as evaluation
from xattn_edu.translate.config import DataConfig
from xattn_edu.translate.corpus import encode_source, load_splits
from xattn_edu.translate.data import synthetic
from xattn_edu.translate.data.synthetic import generate
from xattn_edu.translate.decode import Translation
from xattn_edu.translate.metrics import alignment_error_rate, chrf, exact_match, sacre_bleu, tokenized_bleu
from xattn_edu.translate.translator import translate_lines


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """An untrained model saved exactly as training saves one (without the state to resume from)."""
    return save_untrained_run(tmp_path_factory.mktemp("run"))


def test_report_matches_the_metrics_of_its_hypotheses(checkpoint_dir):
    report, hypotheses = evaluation.evaluate(checkpoint_dir, split="test", device="cpu")
    loaded = checkpoint.load_model(checkpoint_dir)
    # The references are scored as written: "Heute sieht der Mann den Hund." (detokenized, cased).
    references = [loaded.tgt_tokenizer.form.detokenize(t) for _, t in load_splits(TRAIN_CFG.data)["test"]]
    assert all(not r.endswith(" .") and r[0].isupper() for r in references)
    assert report.sentences == len(hypotheses) == TRAIN_CFG.data.n_test
    assert report.bleu_tok == pytest.approx(tokenized_bleu(hypotheses, references).score)
    assert report.sacrebleu == pytest.approx(sacre_bleu(hypotheses, references).score)
    assert report.chrf == pytest.approx(chrf(hypotheses, references).score)
    assert report.exact_match == pytest.approx(exact_match(hypotheses, references))
    assert "case:lc" in report.bleu_tok_signature and "case:mixed" in report.sacrebleu_signature
    assert report.bleu_tokenize == "13a" and "tok:13a" in report.sacrebleu_signature and "nc:6" in report.chrf_signature
    assert 0.0 <= report.aer <= 1.0 and len(report.aer_per_layer) == TRAIN_CFG.model.n_decoder_layers
    assert report.decode_seconds > 0 and report.untranslated == []
    # the 300 training pairs miss some test words; that is the only warning
    assert len(report.warnings) == 1 and "source sentences have words the model never saw" in report.warnings[0]
    sources = [s for s, _ in load_splits(TRAIN_CFG.data)["test"]]
    assert [r.text for r in translate_lines(loaded, sources, batch_size=7)] == hypotheses


class _Oracle:
    """Stands in for the decoder: knows each test source's reference and gold alignment."""

    def __init__(self, checkpoint_dir):
        loaded = checkpoint.load_model(checkpoint_dir)
        self.pairs = {}
        data = TRAIN_CFG.data
        for pair in synthetic.make_splits(data.n_train, data.n_val, data.n_test).test:
            src = tuple(encode_source(loaded.src_tokenizer, pair.src_text))
            self.pairs[src] = (loaded.tgt_tokenizer.encode(pair.tgt_text), pair)

    def translate_ids(self, model, sources, **_):
        return [Translation(self.pairs[tuple(s)][0], 0.0) for s in sources]

    def cross_attention(self, model, src, targets, *, bos_id):
        """One-hot attention on the first gold source word of each target word, plus a zero <eos> column."""
        out = []
        for row, target in zip(src.tolist(), targets, strict=True):
            ids = tuple(i for i in row if i != 0)
            _, pair = self.pairs[ids]
            weights = torch.zeros(2, 4, len(target), len(ids))
            for t in range(len(target)):
                weights[:, :, t, min(s for s, tt in pair.alignment if tt == t)] = 1.0
            out.append(weights)
        return out


def test_scores_of_a_perfect_translator(checkpoint_dir, monkeypatch):
    oracle = _Oracle(checkpoint_dir)
    monkeypatch.setattr(translator, "translate_ids", oracle.translate_ids)
    monkeypatch.setattr(evaluation, "cross_attention", oracle.cross_attention)
    report, hypotheses = evaluation.evaluate(checkpoint_dir, device="cpu", batch_size=6)
    pairs = [pair for _, pair in oracle.pairs.values()]
    # Words the small training split never showed come out as <unk>; everything else is exact.
    tgt_tok = checkpoint.load_model(checkpoint_dir).tgt_tokenizer
    assert hypotheses == [tgt_tok.form.detokenize(tgt_tok.decode(tgt_tok.encode(p.tgt_text))) for p in pairs]
    in_vocabulary = [p for p in pairs if "<unk>" not in tgt_tok.tokens(p.tgt_text)]
    assert report.exact_match == pytest.approx(100 * len(in_vocabulary) / len(pairs)) and report.exact_match > 50
    predicted = [{(min(s for s, tt in p.alignment if tt == t), t) for t in range(len(p.tgt))} for p in pairs]
    expected = alignment_error_rate(predicted, [p.alignment for p in pairs])
    assert 0.0 < expected < 0.1  # some German words have two English sources; one link each is predicted
    assert report.aer == pytest.approx(expected)
    assert report.aer_per_layer == pytest.approx([expected, expected])


def test_cli_evaluate_json_and_table(checkpoint_dir, capsys):
    assert main(["evaluate", str(checkpoint_dir), "--json", "--device", "cpu", "--split", "val"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"bleu_tok", "sacrebleu", "chrf", "bleu_tokenize", "exact_match", "aer", "decode_seconds"} <= set(result)
    assert result["sentences"] == TRAIN_CFG.data.n_val
    assert main(["evaluate", str(checkpoint_dir), "--device", "cpu", "--beam", "2", "--split", "val"]) == 0
    table = capsys.readouterr().out
    assert "BLEU (tokenized)" in table and "chrF" in table and "AER" in table and "beam 2" in table


def test_cli_translate_arguments_and_stdin(checkpoint_dir, capsys, monkeypatch):
    sentences = ["the man sees the dog .", "today the woman reads a book ."]
    assert main(["translate", str(checkpoint_dir), *sentences]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(sentences) + "\n\n"))
    assert main(["translate", str(checkpoint_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [*lines, ""]  # the empty line keeps its place


def test_evaluate_builds_the_synthetic_corpus_once_and_defaults_to_the_test_split(checkpoint_dir, monkeypatch):
    calls = []
    real = synthetic.make_splits
    monkeypatch.setattr(synthetic, "make_splits", lambda *a, **k: calls.append(a) or real(*a, **k))
    report, _ = evaluation.evaluate(checkpoint_dir, device="cpu")
    assert len(calls) == 1
    assert report.split == "test" and report.aer is not None


def _write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def test_cli_evaluates_and_translates_a_run_trained_on_text_files(tmp_path, monkeypatch, capsys, cli_user_error):
    """Regression: the config records the files (absolute), so evaluate finds them from another folder."""
    data = tmp_path / "data"
    data.mkdir()
    pairs = generate(60, seed=7)
    _write_lines(data / "a.en", [p.src_text for p in pairs])
    _write_lines(data / "a.de", [p.tgt_text for p in pairs])
    monkeypatch.chdir(data)
    assert main(["train", "--train-src", "a.en", "--train-tgt", "a.de", "--steps", "3", "--out", "run",
                 "--device", "cpu", "--no-progress", "--set", "data.n_val=5"]) == 0  # fmt: skip
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = str(data / "run")
    assert main(["evaluate", run, "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["split"], result["sentences"], result["aer"]) == ("val", 5, None)
    assert main(["evaluate", run, "--device", "cpu", "--split", "val"]) == 0
    assert "split:            val (5 sentences" in capsys.readouterr().out
    assert "has no 'test' split; try --split val" in cli_user_error("evaluate", run, "--split", "test")
    assert main(["translate", run, pairs[0].src_text]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "{missing}"], "no such checkpoint directory"),
        (["evaluate", "{empty}"], "no checkpoint.pt"),
        (["evaluate", "{broken}"], "damaged or not an xattn checkpoint"),
        (["evaluate", "{ckpt}", "--split", "dev"], "unknown split"),
        (["evaluate", "{ckpt}", "--beam", "0"], "--beam"),
        (["translate", "{ckpt}", "a dog .", "--beam", "0"], "--beam"),
        (["translate", "{ckpt}", "a dog .", "--device", "gpu7"], "not a device name"),
    ],
)
def test_cli_user_errors(checkpoint_dir, tmp_path, cli_user_error, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "broken": tmp_path / "broken",
             "ckpt": checkpoint_dir}  # fmt: skip
    assert message in cli_user_error(*[a.format(**paths) for a in args])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU is present")
def test_cuda_without_a_gpu_is_a_user_error(checkpoint_dir, cli_user_error):
    assert "no CUDA GPU" in cli_user_error("evaluate", str(checkpoint_dir), "--device", "cuda")


# --- your own test files (faults 4 and 5) -------------------------------------------------------

ENGLISH = ["i like cats .", "it is raining today .", "where is the station ?", "he is reading a book .",
           "mother is cooking in the kitchen .", "i will go to school tomorrow .", "the bread here is good .",
           "children are playing in the park .", "the train is late .", "please open the window ."]  # fmt: skip
JAPANESE = ["私は猫が好きです。", "今日は雨が降っています。", "駅はどこですか。", "彼は本を読んでいる。",
            "母は台所で料理をしている。", "明日は学校に行きます。", "この店のパンはおいしい。",
            "子供たちが公園で遊んでいる。", "電車が遅れています。", "窓を開けてください。"]  # fmt: skip


@pytest.fixture(scope="module")
def japanese_run(tmp_path_factory):
    """An untrained English→Japanese run on the user's text (target language not recorded)."""
    cfg = dataclasses.replace(TRAIN_CFG, data=DataConfig(source="text"))
    return save_untrained_run(tmp_path_factory.mktemp("ja"), cfg, list(zip(ENGLISH, JAPANESE, strict=True)))


def _perfect(monkeypatch, run):
    """Make decoding return each source's reference (an oracle translator)."""
    loaded = checkpoint.load_model(run)
    answer = {tuple(encode_source(loaded.src_tokenizer, en)): loaded.tgt_tokenizer.encode(ja)
              for en, ja in zip(ENGLISH, JAPANESE, strict=True)}  # fmt: skip
    monkeypatch.setattr(translator, "translate_ids", lambda model, src, **_: [Translation(answer[tuple(s)], 0.0)
                                                                             for s in src])  # fmt: skip


def test_a_perfect_japanese_translation_scores_100(japanese_run, tmp_path, monkeypatch, capsys):
    """Regression (fault 4): the 13a tokenizer made 10 perfect unspaced sentences score 0.0."""
    _perfect(monkeypatch, japanese_run)
    _write_lines(tmp_path / "test.en", ENGLISH)
    _write_lines(tmp_path / "test.ja", JAPANESE)
    args = ["evaluate", str(japanese_run), "--src", str(tmp_path / "test.en"), "--ref", str(tmp_path / "test.ja")]
    assert main([*args, "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["bleu_tokenize"] in ("char", "ja-mecab") and f"tok:{result['bleu_tokenize']}" in result[
        "sacrebleu_signature"]  # fmt: skip
    assert result["sacrebleu"] == pytest.approx(100) and result["bleu_tok"] == pytest.approx(100)
    assert result["chrf"] == pytest.approx(100) and result["exact_match"] == 100 and result["sentences"] == 10
    assert "xattn evaluate: warning: the references look unspaced (Japanese)" in captured.err
    assert main([*args, "--bleu-tokenize", "13a"]) == 0  # the user's choice wins, with a warning
    captured = capsys.readouterr()
    assert "sacreBLEU:        0.00" in captured.out and "chrF:             100.00" in captured.out
    assert "the 13a BLEU tokenizer splits only at spaces" in captured.err


def test_the_recorded_target_language_picks_the_tokenizer(tmp_path, monkeypatch):
    cfg = dataclasses.replace(TRAIN_CFG, data=DataConfig(source="text", tgt_lang="ja"))
    run = save_untrained_run(tmp_path / "run", cfg, list(zip(ENGLISH, JAPANESE, strict=True)))
    _perfect(monkeypatch, run)
    _write_lines(tmp_path / "test.en", ENGLISH)
    _write_lines(tmp_path / "test.ja", JAPANESE)
    monkeypatch.setattr(metrics, "_installed", lambda name: name != "ja-mecab")  # without sacrebleu[ja]
    report, _ = evaluation.evaluate(run, src_file=tmp_path / "test.en", ref_file=tmp_path / "test.ja", device="cpu")
    assert report.bleu_tokenize == "char" and report.sacrebleu == pytest.approx(100)
    assert len(report.warnings) == 1 and "the target language ja calls for the ja-mecab" in report.warnings[0]


def test_one_hypothesis_per_source_line_and_too_long_sources_count_as_empty(checkpoint_dir, tmp_path):
    pairs = load_splits(TRAIN_CFG.data)["test"][:4]
    sources = [s for s, _ in pairs]
    sources[1] = " ".join(["the dog sees the man"] * 10) + " ."  # longer than the model's 40 positions
    _write_lines(tmp_path / "src", sources)
    _write_lines(tmp_path / "ref", [t for _, t in pairs])
    report, hypotheses = evaluation.evaluate(checkpoint_dir, src_file=tmp_path / "src", ref_file=tmp_path / "ref",
                                             device="cpu")  # fmt: skip
    assert len(hypotheses) == 4 and hypotheses[1] == "" and report.untranslated == [2]
    assert report.sentences == 4 and report.aer is None and report.split == str(tmp_path / "src")
    assert any("line 2" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("src", "ref", "extra", "message"),
    [
        (["a ."] * 10, ["b ."] * 9, [], "has 10 lines but {ref} has 9"),
        (["a .", "b .", "c ."], ["a .", "", "c ."], [], "{ref}, line 2: empty sentence"),
        (["a .", "   "], ["a .", "b ."], [], "{src}, line 2: empty sentence"),
        (["a ."], ["b ."], ["--split", "val"], "leave them out with --src/--ref"),
        (["a ."], ["b ."], ["--data-dir", "."], "leave them out with --src/--ref"),
        (["a ."], None, [], "--src and --ref go together"),
        (["a ."], ["b ."], ["--bleu-tokenize", "spm"], "unknown BLEU tokenizer 'spm'"),
    ],
)
def test_test_file_errors_are_one_line(checkpoint_dir, tmp_path, cli_user_error, src, ref, extra, message):
    _write_lines(tmp_path / "s.en", src)
    args = ["evaluate", str(checkpoint_dir), "--src", str(tmp_path / "s.en"), *extra]
    if ref is not None:
        _write_lines(tmp_path / "r.de", ref)
        args += ["--ref", str(tmp_path / "r.de")]
    assert message.format(src=tmp_path / "s.en", ref=tmp_path / "r.de") in cli_user_error(*args)
