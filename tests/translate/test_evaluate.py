"""`xattn evaluate` / `xattn translate` on a small checkpoint written in the test."""

import io
import json

import pytest
import torch

from xattn_edu.cli import main
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate import checkpoint
from xattn_edu.translate import evaluate as evaluation
from xattn_edu.translate.config import DataConfig, RunConfig, TokenizerConfig, model_config
from xattn_edu.translate.corpus import encode_source, fit_tokenizers, load_splits
from xattn_edu.translate.data import synthetic
from xattn_edu.translate.data.synthetic import generate
from xattn_edu.translate.decode import Translation
from xattn_edu.translate.metrics import alignment_error_rate, exact_match, sacre_bleu, tokenized_bleu

TRAIN_CFG = RunConfig(
    preset="test", data=DataConfig(source="synthetic", n_train=300, n_val=20, n_test=25),
    tokenizer=TokenizerConfig(kind="word"),
    model=model_config(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0,
                       max_len=40),
)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """An untrained model saved exactly as training saves one (without the state to resume from)."""
    directory = tmp_path_factory.mktemp("run")
    src_tok, tgt_tok = fit_tokenizers(TRAIN_CFG.tokenizer, load_splits(TRAIN_CFG.data).train)
    torch.manual_seed(0)
    cfg = TRAIN_CFG.with_vocabularies(src_tok.vocab_size, tgt_tok.vocab_size, tgt_tok.pad_id)
    checkpoint.save(directory, checkpoint.Checkpoint(cfg, Seq2Seq(cfg.model).state_dict(), src_tok, tgt_tok, step=0))
    return directory


def test_report_matches_the_metrics_of_its_hypotheses(checkpoint_dir):
    report, hypotheses = evaluation.evaluate(checkpoint_dir, split="test", device="cpu")
    references = [t for _, t in load_splits(TRAIN_CFG.data)["test"]]
    assert report.sentences == len(hypotheses) == TRAIN_CFG.data.n_test
    assert report.bleu_tok == pytest.approx(tokenized_bleu(hypotheses, references).score)
    assert report.sacrebleu == pytest.approx(sacre_bleu(hypotheses, references).score)
    assert report.exact_match == pytest.approx(exact_match(hypotheses, references))
    assert "case:lc" in report.bleu_tok_signature and "case:mixed" in report.sacrebleu_signature
    assert 0.0 <= report.aer <= 1.0 and len(report.aer_per_layer) == TRAIN_CFG.model.n_decoder_layers
    assert report.decode_seconds > 0
    loaded = checkpoint.load_model(checkpoint_dir)
    sources = [s for s, _ in load_splits(TRAIN_CFG.data)["test"]]
    assert evaluation.translate_texts(loaded, sources, batch_size=7) == hypotheses


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
    monkeypatch.setattr(evaluation, "translate_ids", oracle.translate_ids)
    monkeypatch.setattr(evaluation, "cross_attention", oracle.cross_attention)
    report, hypotheses = evaluation.evaluate(checkpoint_dir, device="cpu", batch_size=6)
    pairs = [pair for _, pair in oracle.pairs.values()]
    # Words the small training split never showed come out as <unk>; everything else is exact.
    tgt_tok = checkpoint.load_model(checkpoint_dir).tgt_tokenizer
    assert hypotheses == [tgt_tok.decode(tgt_tok.encode(p.tgt_text)) for p in pairs]
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
    assert {"bleu_tok", "sacrebleu", "exact_match", "aer", "decode_seconds"} <= set(result)
    assert result["sentences"] == TRAIN_CFG.data.n_val
    assert main(["evaluate", str(checkpoint_dir), "--device", "cpu", "--beam", "2", "--split", "val"]) == 0
    table = capsys.readouterr().out
    assert "BLEU (tokenized)" in table and "AER" in table and "beam 2" in table


def test_cli_translate_arguments_and_stdin(checkpoint_dir, capsys, monkeypatch):
    sentences = ["the man sees the dog .", "today the woman reads a book ."]
    assert main(["translate", str(checkpoint_dir), *sentences]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(sentences) + "\n\n"))
    assert main(["translate", str(checkpoint_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


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
        (["translate", "{ckpt}", " ".join(["dog"] * 60)], "more than the model's maximum of 40"),
        (["translate", "{ckpt}", "a dog .", "--beam", "0"], "--beam"),
        (["translate", "{ckpt}", "  "], "empty"),
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
