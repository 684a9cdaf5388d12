"""Chapter 6 experiments on tiny sizes: the run settings, data (synthetic and Multi30k from a temporary folder),
the tokenizer leak, low-precision traps, training with snapshots, attention maps, decoding and evaluation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.translate.multi30k_sample import copy_head
from xattn_edu.chapters.translation import (
    attention_maps,
    data,
    decoding,
    evaluation,
    leakage,
    precision,
    reference,
    training,
)
from xattn_edu.common.errors import UserError
from xattn_edu.translate.metrics import attention_aer


def tiny_run(fast: bool = True) -> data.ChapterRun:
    """The fast synthetic run, made smaller still."""
    run = data.chapter_run("synthetic", fast=fast)
    config = run.config.with_values({"model.d_model": 32, "model.d_ff": 64, "data.n_train": 300, "data.n_val": 40,
                                     "data.n_test": 40, "optim.steps": 6, "optim.warmup": 2, "optim.max_tokens": 400,
                                     "log_every": 2, "val_sample": 5})
    return dataclasses.replace(run, config=config, snapshot_every=3, analysis_pairs=12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny synthetic run trained for 6 steps: (run, data, session, log, out_dir)."""
    run = tiny_run()
    chapter_data = data.load_data(run)
    out_dir = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    session = training.start(run, chapter_data, out_dir, device=torch.device("cpu"))
    log = training.train_with_snapshots(session, run.snapshot_every, progress=False)
    return run, chapter_data, session, log, out_dir


# ----------------------------------------------------------------------------- the run and its data

def test_runs_for_each_source_and_mode():
    full, fast = data.chapter_run("synthetic", fast=False), data.chapter_run("synthetic", fast=True)
    assert full.has_alignments and fast.has_alignments
    assert fast.config.optim.steps < full.config.optim.steps and fast.config.data.n_train < full.config.data.n_train
    gpu = data.chapter_run("multi30k", fast=False, device=torch.device("cuda"))
    cpu = data.chapter_run("multi30k", fast=False, device=torch.device("cpu"))
    assert gpu.config.model.d_model == 512 and cpu.config.model.d_model < 512 and not gpu.has_alignments
    assert gpu.config.tokenizer.kind == "sentencepiece" and gpu.config.bf16
    with pytest.raises(ValueError, match="unknown data source"):
        data.chapter_run("wmt", fast=True)
    with pytest.raises(ValueError, match="test set"):
        data.chapter_run("multi30k", fast=True, test_set="test_1999")
    with pytest.raises(ValueError, match="Multi30k"):
        data.chapter_run("synthetic", fast=True, data_dir="/tmp")


def test_synthetic_data_fits_tokenizers_on_training_only_and_keeps_the_test_unread():
    run = tiny_run()
    chapter_data = data.load_data(run)
    corpus = chapter_data.corpus
    assert (len(corpus.train), len(corpus.val), corpus.test) == (300, 40, [])
    assert len(chapter_data.val_alignments) == 40
    train_words = {w for _, t in corpus.train for w in t.split()}
    assert set(corpus.tgt_tokenizer.vocabulary[4:]) == train_words
    source, target = corpus.val[0]
    lines = data.alignment_lines(source.split(), target.split(), chapter_data.val_alignments[0])
    assert len(lines) == len(target.split()) and all("<-" in line for line in lines)


def small_multi30k(folder: Path, lines: dict[str, int] | None = None) -> Path:
    """A folder with the first lines of the shared Multi30k files (train, val, test_2017_flickr)."""
    return copy_head(folder, lines or {"train": 300, "val": 60, "test_2017_flickr": 60})


def test_multi30k_from_a_folder_trains_and_scores_its_test_set_once(tmp_path):
    folder = small_multi30k(tmp_path / "multi30k")
    run = data.chapter_run("multi30k", fast=True, data_dir=folder, test_set="test_2017_flickr")
    chapter_data = data.load_data(run)
    assert (len(chapter_data.corpus.train), len(chapter_data.corpus.val)) == (300, 60)
    assert chapter_data.val_alignments is None and chapter_data.corpus.test == []
    assert chapter_data.corpus.src_tokenizer.kind == "sentencepiece"
    out_dir = tmp_path / "run"
    session = training.start(run, chapter_data, out_dir, device=torch.device("cpu"))
    log = training.train_with_snapshots(session, run.snapshot_every, progress=False)
    assert session.step == run.config.optim.steps and len(log.snapshots) >= 2
    test_split = evaluation.TestSplit(run, out_dir)
    report = test_split.score(1)
    assert report.sentences == 60 and report.aer is None and "tok:13a" in report.sacrebleu_signature
    with pytest.raises(RuntimeError, match="once already"):
        test_split.score(1)
    missing = data.chapter_run("multi30k", fast=True, data_dir=folder, test_set="test_2016_flickr")
    with pytest.raises(UserError, match="test_2016_flickr.de.gz not found"):
        evaluation.TestSplit(missing, out_dir).score(1)


# ----------------------------------------------------------------------------- the tokenizer leak

def test_word_leak_counts_test_words_missing_from_training():
    row = leakage.word_leak(["a b c", "a d"], ["a e e", "f b"])
    assert (row.test_tokens, row.test_types, row.unseen_types) == (5, 4, 2)
    assert row.unseen_share == pytest.approx(3 / 5) and row.examples == ("e", "f")


def test_the_synthetic_leak_shrinks_with_the_training_split_and_subwords_leak_too():
    rows = leakage.synthetic_leak_table((50, 400, 3000), n_test=150, seed=1)
    assert [r.train_sentences for r in rows] == [50, 400, 3000]
    assert rows[0].unseen_types > rows[1].unseen_types >= rows[2].unseen_types
    leak = leakage.synthetic_subword_leak(200, 200, vocab_size=500, seed=1)
    assert leak.pieces_per_word_all_splits <= leak.pieces_per_word_train_only
    assert 0 < leak.whole_words_train_only <= leak.whole_words_all_splits <= 1


# ----------------------------------------------------------------------------- low precision

def test_fill_values_in_each_dtype():
    rows = {(r.dtype, r.fill): r for r in precision.fill_table()}
    assert rows["float32", "-inf"].empty_row == "NaN" and rows["float32", "-inf"].hidden_weight == 0
    assert rows["bfloat16", "finfo(dtype).min"].empty_row == "uniform over hidden keys"
    assert rows["float16", "-1e9"].empty_row == "error" and rows["float16", "-1e9"].stored.startswith("error")
    assert rows["bfloat16", "-1e4"].stored == "-9984"  # bfloat16 cannot hold 10000 exactly
    assert all(r.hidden_weight == 0 for r in rows.values() if r.empty_row != "error")


def test_a_fully_hidden_query_through_the_cpu_kernels():
    rows = precision.fused_table(torch.device("cpu"))
    by = {(r.backend, r.dtype, r.mask): r for r in rows}
    assert by["MATH", "float32", "additive finfo.min"].output.startswith("mean of the values")
    assert by["MATH", "float16", "additive finfo.min"].output == "as if nothing were masked"
    assert by["EFFICIENT_ATTENTION", "float32", "boolean"].output.startswith("no kernel")
    ours = [r for r in rows if r.backend.startswith("xattn")]
    assert len(ours) == 6 and all((r.output, r.gradient) == ("zeros", "zero") for r in ours)
    summary = precision.summarize_fused(rows)
    assert len(summary) == 3 and summary[0].startswith("boolean:") and "xattn" not in " ".join(summary)


def test_rounding_the_scores_costs_more_the_larger_they_are():
    rows = precision.score_resolution((1.0, 10.0, 100.0, 1e5))
    errors = [r.bfloat16_error for r in rows]
    assert errors == sorted(errors) and errors[0] < 0.01
    assert math.isnan(rows[-1].float16_error) and not math.isnan(rows[-2].float16_error)


# ----------------------------------------------------------------------------- training and what it keeps

def test_training_keeps_snapshots_writes_them_and_reports_the_loss(trained):
    run, _, session, log, out_dir = trained
    assert [s.step for s in log.snapshots] == [0, 3, 6] and session.step == 6
    assert log.steps == [2, 4, 6] and all(math.isfinite(x) for x in log.losses) and log.target_tokens > 0
    assert sorted(p.name for p in out_dir.glob("snapshot_*.pt")) == [f"snapshot_00000{n}.pt" for n in (0, 3, 6)]
    assert (out_dir / "checkpoint.pt").is_file()
    first, last = training.model_at(session, log.snapshots[0]), training.model_at(session, log.snapshots[-1])
    assert not torch.equal(first.generator.weight, last.generator.weight)
    torch.testing.assert_close(last.generator.weight, session.model.generator.weight.cpu())


def test_the_learning_rate_warms_up_then_decays():
    optim = tiny_run().config.optim
    schedule = training.lr_schedule(optim)
    assert len(schedule) == optim.steps
    assert schedule[: optim.warmup] == sorted(schedule[: optim.warmup]) and max(schedule) <= optim.lr


def test_the_package_loss_is_the_reference_loss(trained):
    _, chapter_data, session, _, _ = trained
    src, tgt_in, tgt_out = training.training_batch(session, rows=5)
    with torch.no_grad():
        logits = session.model.eval()(src, tgt_in)
    session.model.train()
    pad = chapter_data.corpus.tgt_tokenizer.pad_id
    torch.testing.assert_close(training.package_loss(logits, tgt_out, pad, 0.1),
                               reference.translation_loss(logits, tgt_out, pad, 0.1))
    val_src, _, _ = training.validation_batch(session, rows=3)
    assert val_src.shape[0] == 3


def test_the_live_plot_draws_what_the_log_holds(trained):
    log = trained[3]
    live = training.LiveLoss(6)
    live.update(log)
    lines = live.ax.get_lines()
    assert list(lines[0].get_xdata()) == log.steps and len(lines[1].get_xdata()) == len(log.snapshots) - 1


# ----------------------------------------------------------------------------- looking inside

def test_maps_aer_and_entropy(trained):
    run, chapter_data, session, log, _ = trained
    aset = attention_maps.alignment_set(chapter_data, 10, session.model.cfg.max_len)
    assert len(aset.sources) == 10 and aset.sources[0][-1] == chapter_data.corpus.src_tokenizer.eos_id
    model = training.model_at(session, log.snapshots[-1])
    maps = attention_maps.read_maps(model, aset, batch_size=4)
    for m, source, target in zip(maps, aset.source_tokens, aset.target_tokens, strict=True):
        assert m.shape == (2, 4, len(target) + 1, len(source))
        assert np.all(m.sum(-1) <= 1.0 + 1e-5)  # the source's EOS column is left out
    writes, reads = attention_maps.writes(maps), attention_maps.reads(maps)
    assert writes[0].shape == reads[0].shape and np.array_equal(writes[0][:, :, 1:], reads[0][:, :, :-1])
    grid = attention_maps.aer_grid(writes, aset.gold, reference.alignment_error_rate)
    package = attention_aer([torch.tensor(w) for w in writes], aset.gold)
    np.testing.assert_allclose(grid.per_head, package.per_head)
    np.testing.assert_allclose(grid.per_layer, package.per_layer)
    assert grid.average == pytest.approx(package.average) and grid.best_head()[2] == grid.per_head.min()
    entropy = attention_maps.mean_entropy(writes)
    longest = max(len(s) for s in aset.source_tokens)
    assert entropy.shape == (2, 4) and (entropy > 0).all() and (entropy <= np.log(longest) + 1e-6).all()
    assert 0 < attention_maps.uniform_entropy(writes) <= np.log(longest)
    history = attention_maps.history([(s.step, training.model_at(session, s)) for s in log.snapshots], aset)
    assert history.steps == [0, 3, 6] and len(history.maps) == 3


def test_the_diagonal_baseline_links_in_order():
    aset = attention_maps.AlignmentSet([[5, 6, 7, 2]], [[4, 4, 4, 4, 4]], [["a", "b", "c"]], [list("vwxyz")],
                                       [[(0, 0), (1, 2), (2, 4)]], 1, 2)
    (weights,) = attention_maps.diagonal_maps(aset)
    assert weights.argmax(axis=1).tolist() == [0, 0, 1, 2, 2]  # round(j * 2 / 4)
    assert reference.alignment_error_rate([weights], aset.gold) == pytest.approx(1 - 6 / 8)


# ----------------------------------------------------------------------------- decoding and evaluation

def test_cached_and_uncached_decoding_agree_and_are_timed(trained):
    _, chapter_data, session, _, _ = trained
    src_tok, tgt_tok = chapter_data.corpus.src_tokenizer, chapter_data.corpus.tgt_tokenizer
    sources = [src_tok.encode(s) + [src_tok.eos_id] for s, _ in chapter_data.corpus.val[:6]]
    rows = decoding.cached_vs_uncached(session.model.eval(), sources, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id,
                                       beam_sizes=(1, 2), repeats=1)
    assert [r.search for r in rows] == ["greedy", "beam 2"] and all(r.identical for r in rows)
    assert all(r.cached_seconds > 0 and r.speedup > 0 for r in rows)
    package = decoding.package_greedy(session.model, sources, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id)
    batch = decoding.pad_sources(sources, tgt_tok.pad_id)
    ours = reference.greedy_decode(session.model, batch, tgt_tok.bos_id, tgt_tok.eos_id, batch.shape[1] + 10)
    limits = [len(ids) + 10 for ids in sources]  # the package's: source length + 10, EOS forced there
    assert all(a == b for a, b, limit in zip(ours, package, limits, strict=True) if len(b) < limit - 1)


def test_translating_a_typed_sentence_gives_tokens_attention_and_unknown_words(trained):
    _, chapter_data, session, _, _ = trained
    src_tok, tgt_tok = chapter_data.corpus.src_tokenizer, chapter_data.corpus.tgt_tokenizer
    text = chapter_data.corpus.val[0][0].replace(" .", " zorblax .")
    source, target, attention, unknown, written = decoding.translate_text(session.model.eval(), src_tok, tgt_tok,
                                                                          text.upper())  # read in the training form
    assert source == [w if w != "zorblax" else "<unk>" for w in text.split()] and unknown == ["zorblax"]
    assert attention.shape == (2, 4, len(target), len(source)) and isinstance(written, str)
    with pytest.raises(ValueError, match="more than the model"):
        decoding.translate_text(session.model, src_tok, tgt_tok, " ".join(["dog"] * 80))


def test_scores_on_the_validation_split(trained):
    run, chapter_data, session, _, _ = trained
    scores = evaluation.score_pairs(session.model, chapter_data.corpus.src_tokenizer,
                                    chapter_data.corpus.tgt_tokenizer, session.cfg, chapter_data.corpus.val[:8],
                                    beam_size=2)
    assert scores.sentences == 8 and scores.beam_size == 2 and "tok:13a" in scores.sacrebleu_signature
    assert all(0 <= x <= 100 for x in (scores.sacrebleu, scores.chrf, scores.bleu_tok, scores.exact_match))


def test_the_synthetic_test_split_is_scored_once(trained):
    run, _, _, _, out_dir = trained
    test_split = evaluation.TestSplit(run, out_dir)
    report = test_split.score(1)
    assert report.split == "test" and report.sentences == 40 and report.aer is not None
    with pytest.raises(RuntimeError):
        test_split.score(1)


def test_a_fast_run_folder_is_removed_at_exit_and_a_full_one_kept(monkeypatch):
    registered = []
    monkeypatch.setattr(training.atexit, "register", lambda fn, *args, **kwargs: registered.append((fn, args)))
    kept, removed = training.run_folder(keep=True), training.run_folder(keep=False)
    assert kept.is_dir() and removed.is_dir() and [args for _, args in registered] == [(removed,)]
    for fn, args in registered:
        fn(*args, ignore_errors=True)
    assert not removed.exists()
    kept.rmdir()
