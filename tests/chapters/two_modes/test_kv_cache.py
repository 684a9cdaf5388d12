"""Chapter 3 measurements: cached decoding equals the full forward pass, FLOP formula equals a hook count,
and the memory padding mask makes cross-attention independent of padding. No timing assertions."""

import pytest
import torch

from xattn_edu.chapters.two_modes import kv_cache
from xattn_edu.chapters.two_modes.memory_padding import padding_sensitivity

SMALL = kv_cache.BenchConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, vocab=50, batch=2, src_len=5, repeats=1)


@pytest.fixture(scope="module")
def model_and_src():
    return kv_cache.build_model(SMALL, max_len=16, device=torch.device("cpu"))


@pytest.mark.parametrize("mode", kv_cache.MODES, ids=lambda m: m.name)
def test_every_mode_gives_the_logits_of_the_full_forward_pass(model_and_src, mode):
    model, src = model_and_src
    _, tokens = kv_cache.decode_logits(model, src, kv_cache.MODES[0], steps=9)
    with torch.no_grad():
        full = model(src, tokens)
    logits, fed = kv_cache.decode_logits(model, src, mode, tgt=tokens)
    assert torch.equal(fed, tokens)
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-5)


def test_greedy_tokens_are_identical_in_every_mode(model_and_src):
    model, src = model_and_src
    outputs = {mode.name: kv_cache.decode_logits(model, src, mode, steps=10)[1] for mode in kv_cache.MODES}
    assert all(torch.equal(tokens, outputs["no cache"]) for tokens in outputs.values())


@pytest.mark.parametrize("mode", kv_cache.MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("steps", [1, 7])
def test_projection_flop_formula_equals_the_hook_count(model_and_src, mode, steps):
    model, src = model_and_src
    counted = kv_cache.count_projection_flops(model, src, mode, steps)
    assert counted == kv_cache.projection_flops(mode, steps, SMALL.src_len, SMALL.d_model, SMALL.n_layers)


def test_flops_with_both_caches_grow_linearly_and_without_quadratically():
    none, both = kv_cache.MODES[0], kv_cache.MODES[-1]

    def flops(mode, steps):
        return kv_cache.projection_flops(mode, steps, src_len=10, d_model=8, n_layers=1)

    unit = 2 * 8 * 8
    assert flops(both, 1) == flops(none, 1) == unit * (6 + 20)  # step 1: identical work
    assert flops(both, 64) - flops(both, 63) == unit * 6  # one new position per step
    assert flops(none, 64) - flops(none, 63) == unit * (6 * 64 + 20)  # the prefix and the memory again
    assert [flops(mode, 32) for mode in kv_cache.MODES] == sorted((flops(m, 32) for m in kv_cache.MODES),
                                                                  reverse=True)


def test_measure_decoding_reports_every_mode_and_length(capsys):
    report = kv_cache.measure_decoding(SMALL, (4, 8), torch.device("cpu"), threads=1, progress=True)
    assert {(row.mode, row.steps) for row in report.rows} == {(m.name, t) for m in kv_cache.MODES for t in (4, 8)}
    assert all(row.ms_per_token > 0 and row.projection_gflops > 0 for row in report.rows)
    assert report.max_logit_difference < 1e-4
    assert report.speedup(8) > 0 and report.device == "cpu (1 thread)"
    assert "timing decoding" in capsys.readouterr().err  # the progress bar


def test_measure_decoding_times_with_one_thread_and_gives_the_session_its_threads_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = kv_cache.measure_decoding(SMALL, (2,), torch.device("cpu"))
        assert torch.get_num_threads() == 2 and report.device == "cpu (1 thread)"
        assert kv_cache.measure_decoding(SMALL, (2,), torch.device("cpu"), threads=None).device == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)


def test_projection_work_per_token_is_the_sentence_total_divided_by_the_length():
    row = kv_cache.TimingRow("both caches", steps=8, ms_per_token=1.0, cpu_ms_per_token=1.0, projection_gflops=0.016)
    assert row.projection_mflops_per_token == pytest.approx(2.0)


def test_work_per_token_grows_without_the_self_cache_and_falls_with_both():
    def per_token(mode, steps):
        return kv_cache.projection_flops(mode, steps, src_len=32, d_model=128, n_layers=2) / steps

    none, both = kv_cache.MODES[0], kv_cache.MODES[-1]
    assert per_token(none, 128) > 4 * per_token(none, 8)  # linear in T, plus the memory's fixed share
    assert per_token(both, 128) < per_token(both, 8)


def test_decode_logits_needs_exactly_one_of_steps_and_tgt(model_and_src):
    model, src = model_and_src
    with pytest.raises(ValueError, match="exactly one"):
        kv_cache.decode_logits(model, src, kv_cache.MODES[0])


def test_fast_mode_shrinks_the_workload_and_the_notebook_default_is_short(monkeypatch):
    monkeypatch.setenv("XATTN_FAST", "1")
    assert kv_cache.lengths() == kv_cache.FAST_LENGTHS and kv_cache.bench_config() == kv_cache.FAST_CONFIG
    monkeypatch.setenv("XATTN_FAST", "0")
    assert kv_cache.lengths() == (8, 32, 128) and kv_cache.bench_config().repeats == 3
    assert max(kv_cache.LENGTHS) == 256 and kv_cache.BenchConfig().repeats == 5  # the benchmark's full sweep


def test_padding_changes_cross_attention_only_without_the_mask():
    rows = padding_sensitivity(max_pads=5)
    assert [row.pads for row in rows] == list(range(6))
    assert rows[0].change_without_mask == rows[0].change_with_mask == 0.0
    for row in rows[1:]:
        assert row.weight_on_padding > 0.01 and row.change_without_mask > 1e-3
        assert row.change_with_mask < 1e-6
