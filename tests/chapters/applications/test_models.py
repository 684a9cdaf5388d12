"""Chapter 7 models and experiments, on tiny sizes: shapes, learning, the measurements' bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from xattn_edu.chapters.applications import (
    captioner,
    digits,
    latent_cost,
    latents,
    promptable,
    prompting,
    shapes,
)
from xattn_edu.chapters.applications.training import FitConfig, _learning_rate, fit


def test_fit_follows_warmup_then_cosine_and_leaves_eval_mode():
    config = FitConfig(steps=100, lr=1.0, warmup=10)
    assert _learning_rate(0, config) == pytest.approx(0.1)
    assert _learning_rate(10, config) == pytest.approx(1.0)
    assert _learning_rate(99, config) == pytest.approx(0.05, abs=1e-3)
    model = torch.nn.Linear(2, 1)
    target = torch.tensor([[3.0]])
    result = fit(model, lambda step: ((model(torch.ones(1, 2)) - target) ** 2).mean(), FitConfig(steps=60, lr=0.1))
    assert not model.training and len(result.losses) == 60 and result.losses[-1] < result.losses[0] / 10
    threads = torch.get_num_threads()
    seen = []
    fit(model, lambda step: seen.append(torch.get_num_threads()) or model(torch.ones(1, 2)).sum(),
        FitConfig(steps=2, threads=1))
    assert seen == [1, 1] and torch.get_num_threads() == threads
    assert len(result.smoothed(20)) == 3


def test_captioner_shapes_causality_and_attention_rows():
    torch.manual_seed(0)
    model = captioner.PatchCaptioner(captioner.CaptionerConfig(d_model=16, n_heads=2, n_layers=2, d_ff=16)).eval()
    batch = digits.make_numbers(3, seed=0)
    words_in = captioner.shift_right(batch.targets)
    logits, weights = model(batch.images, words_in, return_weights=True)
    assert logits.shape == (3, digits.MAX_WORDS + 1, len(digits.VOCAB))
    assert [w.shape for w in weights] == [(3, 2, digits.MAX_WORDS + 1, 27)] * 2
    changed = words_in.clone()
    changed[:, -1] = digits.EOS  # the last input word cannot change earlier predictions
    torch.testing.assert_close(model(batch.images, changed)[:, :-1], logits[:, :-1])
    generated = captioner.greedy_caption(model, batch.images)
    assert generated.shape == (3, digits.MAX_WORDS + 1)
    rows = captioner.word_attention(model, batch.images, generated, layer=0)
    torch.testing.assert_close(rows.sum(-1), torch.ones(3, digits.MAX_WORDS + 1))


def test_a_captioner_trained_briefly_learns_and_is_scored():
    config = captioner.CaptionerConfig(d_model=32, n_heads=2, n_layers=1, d_ff=32)
    model, result = captioner.train_captioner(config, FitConfig(steps=40, lr=3e-3, warmup=5), batch_size=32)
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    scores = captioner.evaluate(model, digits.make_numbers(20, split="test", seed=1))
    assert scores.images == 20 and 0.0 <= scores.exact_match <= scores.word_accuracy <= 1.0
    assert len(scores.peak_on_digit) == 1 and all(0.0 <= r <= 1.0 for r in scores.peak_on_digit)
    assert set(scores.peak_by_kind) <= {'"hundred"', "hundreds digit", "tens", "teen", "units"}
    assert all(len(rates) == 1 for rates in scores.peak_by_kind.values())


def test_majority_sequences_have_a_unique_most_frequent_marker():
    task = latents.MajorityTask(length=300)
    tokens, labels = latents.make_majority(task, 50, seed=3)
    assert tokens.shape == (50, 300) and tokens.max() < task.vocab
    counts = torch.stack([(tokens == k).sum(dim=1) for k in range(task.kinds)], dim=1)  # (B, K)
    assert torch.equal(counts.argmax(dim=1), labels)
    top2 = counts.topk(2, dim=1).values
    assert (top2[:, 0] > top2[:, 1]).all()
    assert ((counts.sum(1) >= task.min_markers) & (counts.sum(1) <= task.max_markers + 1)).all()
    assert torch.equal(latents.make_majority(task, 5, seed=3, length=99)[0],
                       latents.make_majority(task, 5, seed=3, length=99)[0])


def test_latent_classifier_reads_long_inputs_through_m_latents():
    task = latents.MajorityTask(length=64)
    model = latents.LatentClassifier(latents.LatentConfig(vocab=task.vocab, classes=task.kinds, latents=3)).eval()
    tokens, _ = latents.make_majority(task, 2, seed=0, length=500)
    logits, weights = model(tokens, return_weights=True)
    assert logits.shape == (2, task.kinds) and weights.shape == (2, 2, 3, 500)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 3))
    result = latents.evaluate(model, task, 64, count=16, batch_size=8)
    assert result.length == 64 and 0.0 <= result.accuracy <= 1.0 and 0.0 < result.marker_attention < 1.0
    assert latents.evaluate(latents.MeanPoolClassifier(model.config), task, 64, count=8).marker_attention is None


def test_training_teaches_the_latents_to_look_at_markers():
    task = latents.MajorityTask(length=128)
    model = latents.LatentClassifier(latents.LatentConfig(vocab=task.vocab, classes=task.kinds))
    before = latents.evaluate(model, task, 128, count=64).marker_attention
    latents.train_classifier(model, task, FitConfig(steps=80, lr=3e-3, warmup=10))
    after = latents.evaluate(model, task, 128, count=64)
    assert after.marker_attention > 2 * before
    assert after.accuracy > 0.5  # chance is 0.25


def test_score_bytes_grow_like_n_squared_for_self_attention_and_like_n_for_latents():
    config = latent_cost.CostConfig(sizes=(1,), n_heads=2, latents=16)
    assert latent_cost.score_bytes(latent_cost.KINDS[0], 1000, config) == 4 * 2 * 1000 * 1000
    assert latent_cost.score_bytes(latent_cost.KINDS[2], 1000, config) == 4 * 2 * 16 * 1000


def test_peak_allocated_sees_torch_tensors():
    assert latent_cost.peak_allocated(lambda: torch.empty(1_000_000)) >= 4_000_000
    assert latent_cost.peak_allocated(lambda: None) < 10_000


def test_the_sweep_measures_every_kind_and_skips_what_is_too_big():
    config = latent_cost.CostConfig(sizes=(64, 512), max_scores_bytes=4 * 300 * 300, repeats=1)
    points = latent_cost.sweep(config)
    assert [(p.kind, p.n) for p in points] == [(k, n) for n in (64, 512) for k in latent_cost.KINDS]
    readable_64, readable_512 = points[0], points[3]
    assert readable_64.seconds > 0 and readable_64.peak_bytes >= readable_64.score_bytes  # it stores its weights
    assert readable_512.seconds is None and "GB" in readable_512.skipped
    latent_512 = points[5]
    assert latent_512.peak_bytes < readable_64.peak_bytes * (512 / 64) ** 2 / 4
    assert "skipped" in latent_cost.cost_table(points)
    sizes, times = latent_cost.series(points, "seconds")
    assert sizes == [64, 512] and math.isnan(times[latent_cost.KINDS[0]][1])


def test_a_point_predicted_to_take_too_long_is_skipped():
    points = latent_cost.sweep(latent_cost.CostConfig(sizes=(32, 4096), repeats=1, max_point_seconds=1e-9))
    assert "would take about" in points[4].skipped  # fused self-attention at N = 4096


@pytest.mark.slow
def test_measure_cost_runs_the_sweep_in_a_fresh_process():
    points = latent_cost.measure_cost(latent_cost.CostConfig(sizes=(128,), repeats=1))
    assert [p.kind for p in points] == list(latent_cost.KINDS) and all(p.peak_bytes > 0 for p in points)


def tiny_segmenter(n_masks: int = 1) -> promptable.PromptableSegmenter:
    torch.manual_seed(0)
    config = promptable.SegmenterConfig(d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, d_ff=16,
                                        pixel_dim=4, n_masks=n_masks)
    return promptable.PromptableSegmenter(config).eval()


def test_segmenter_writes_full_resolution_masks_and_token_attention():
    model = tiny_segmenter(n_masks=2)
    batch = shapes.make_scenes(3, seed=0)
    result = model(batch.images, batch.prompt_xy, batch.prompt_kind)
    assert result.logits.shape == (3, 2, 24, 24)
    assert result.attention.shape == (3, 2, 2 + 2, 36)  # (B, h, mask tokens + prompt tokens, N)
    moved = batch.prompt_xy.clone()
    moved[:, 0] += 5.0
    assert not torch.allclose(model(batch.images, moved, batch.prompt_kind).logits, result.logits)
    ignored = batch.prompt_xy.clone()
    ignored[:, 1] = torch.where(batch.prompt_kind[:, 1:] == shapes.NOT_A_POINT, 7.0, ignored[:, 1])
    torch.testing.assert_close(model(batch.images, ignored, batch.prompt_kind).logits, result.logits)


def test_mask_loss_scores_only_the_best_mask_and_iou_counts_pixels():
    target = torch.zeros(1, 4, 4, dtype=torch.bool)
    target[0, :2] = True
    good = torch.where(target, 10.0, -10.0)[:, None]
    bad = -good
    assert promptable.mask_loss(torch.cat([good, bad], dim=1), target) == pytest.approx(
        float(promptable.mask_loss(good, target)))
    predicted = torch.zeros(4, 4, dtype=torch.bool)
    predicted[:1] = True
    assert float(promptable.iou(predicted, target[0])) == pytest.approx(0.5)
    assert float(promptable.iou(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool))) == 1.0


def test_a_segmenter_trained_briefly_lowers_its_loss():
    config = promptable.SegmenterConfig(d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, d_ff=16,
                                        pixel_dim=4)
    _, result = promptable.train_segmenter(config, FitConfig(steps=30, lr=3e-3, warmup=5), batch_size=16)
    assert sum(result.losses[-5:]) < sum(result.losses[:5])


def test_prompt_experiments_report_in_range_numbers():
    model = tiny_segmenter(n_masks=2)
    scores = prompting.measure_iou(model, count=40)
    assert sum(scores.counts.values()) == 40 and all(0.0 <= v <= 1.0 for v in scores.mean_iou.values() if v == v)
    path = prompting.follow_click(model, steps=7)
    assert [s.under for s in path][0] == "background" and "disc" in {s.under for s in path}
    assert all(len(s.iou) == 2 for s in path)
    ambiguity = prompting.measure_ambiguity(model, count=10)
    assert 0 < ambiguity.prompts <= 10 and ambiguity.favoured_only >= ambiguity.other_only
    rgbs, titles = prompting.example_panels(model, count=4)
    assert len(rgbs) == 4 and rgbs[0].shape == (24, 24, 3) and "IoU" in titles[0]
    assert len(prompting.click_panels(model, prompting.WIDGET_SCENE, (10.5, 10.5))) == 2


def test_overlap_clicks_lie_in_both_shapes():
    batch, pair = prompting._overlap_clicks(12, seed=5, config=shapes.SceneConfig())
    under = shapes.shapes_at(batch, batch.prompt_xy[:, 0])
    assert len(batch.target) > 0 and under[:, 0].all() and under[:, 1].all()
    assert torch.equal(pair[:, 0], batch.shapes[:, 0])
