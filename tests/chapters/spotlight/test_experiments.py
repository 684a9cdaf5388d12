"""Chapter 2 experiments: the measured claims hold on small runs (seconds)."""

import dataclasses
import math

import pytest
import torch

from xattn_edu.chapters.spotlight import entropy, learning, masking, scaling


def test_dot_product_variance_grows_like_d_and_the_scale_removes_it():
    rows = scaling.measure_dot_product_variance(dims=(1, 16, 256), samples=20_000)
    for row in rows:
        assert row.samples == 20_000
        assert row.variance / row.dim == pytest.approx(1.0, abs=0.1)
        assert row.scaled_variance == pytest.approx(1.0, abs=0.1)
        assert row.over_d_variance * row.dim == pytest.approx(1.0, abs=0.1)
        assert abs(row.mean) < 5 * math.sqrt(row.dim / row.samples) + 1e-9


def test_softmax_jacobian_norm_matches_autograd():
    scores = torch.randn(3, 5, dtype=torch.float64)
    weights = torch.softmax(scores, dim=-1)
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, dim=-1), scores[i])
        assert scaling.softmax_jacobian_norm(weights[i]) == pytest.approx(float(torch.linalg.matrix_norm(jacobian)))
    assert float(scaling.softmax_jacobian_norm(torch.tensor([0.0, 1.0, 0.0]))) == 0.0


def test_without_the_scale_wide_softmaxes_saturate_and_lose_their_gradient():
    rows = {(r.dim, r.scaled): r for r in scaling.measure_saturation(dims=(1, 16, 1024), trials=200)}
    assert dataclasses.replace(rows[1, True], scaled=False) == rows[1, False]  # at d = 1 the scale is 1
    raw, scaled = rows[1024, False], rows[1024, True]
    assert raw.mean_max_weight > 0.9 and raw.mean_entropy_fraction < 0.1
    assert raw.median_jacobian_norm < 1e-3 * scaled.median_jacobian_norm
    assert raw.median_query_grad_norm < 1e-2 * scaled.median_query_grad_norm
    # scaled: the same spread at every width
    assert abs(rows[16, True].mean_entropy_fraction - scaled.mean_entropy_fraction) < 0.05
    assert scaled.saturated_share == 0.0


def test_the_three_cases_of_the_article():
    cases = {c.name: c for c in entropy.measure_cases(trials=40)}
    log_n = math.log(8)
    assert cases["close query"].mean_entropy < 0.1 * log_n
    assert cases["close query"].mean_max_weight > 0.95
    for name in ("zero query", "identical keys"):
        assert cases[name].mean_entropy == pytest.approx(log_n, abs=1e-12)
        assert cases[name].max_entropy_seen == pytest.approx(log_n, abs=1e-12)
    assert cases["zero query"].example_weights.shape == (8,)


def test_temperature_slides_from_argmax_to_uniform():
    rows = entropy.measure_temperature(temperatures=(0.001, 0.1, 1.0, 10.0, 1000.0), trials=50)
    fractions = [r.mean_entropy_fraction for r in rows]
    assert fractions == sorted(fractions)
    assert rows[0].distance_to_argmax < 0.01 and rows[0].mean_max_weight > 0.99
    assert rows[-1].distance_to_uniform < 0.001 and fractions[-1] > 0.999


def test_entropy_falls_as_the_query_turns_towards_a_key():
    rows = entropy.measure_similarity(cosines=(0.0, 0.5, 0.9, 1.0), trials=50)
    assert [r.mean_entropy_fraction for r in rows] == sorted((r.mean_entropy_fraction for r in rows), reverse=True)
    assert [r.mean_target_weight for r in rows] == sorted(r.mean_target_weight for r in rows)
    assert rows[-1].mean_target_weight > 0.9


def test_entropy_bounds_hold_with_at_least_two_visible_keys_and_come_close_to_both():
    result = entropy.measure_bounds(cases=500)
    assert result.cases == 500 and result.violations == 0 and result.nan_count == 0
    assert result.min_visible == 2
    assert 0.0 < result.smallest_entropy and result.smallest_fraction < 1e-3  # near 0, never exactly 0
    assert 0.999 < result.largest_fraction <= 1.0 + 1e-12


def test_raw_scores_of_wide_vectors_stall_learning_and_scaled_ones_learn():
    raw = learning.train_fetch(dim=256, scaled=False, steps=60)
    scaled = learning.train_fetch(dim=256, scaled=True, steps=60)
    assert scaled.target_weight[0] < 0.5 < 0.9 < scaled.target_weight[-1]
    assert raw.target_weight[-1] < 1e-6 and raw.gradient_norms.max() < 1e-6 < scaled.gradient_norms[0]
    assert raw.losses.shape == scaled.losses.shape == (61,)
    narrow = learning.train_fetch(dim=4, scaled=False, steps=60)  # at small d the raw scores are fine
    assert narrow.target_weight[-1] > 0.5


def test_only_the_course_convention_gives_zero_weights_and_a_finite_gradient_to_an_empty_row():
    scores = torch.randn(2, 4, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True], [False, False, False, False]])
    rows = {row.name: row for row in masking.compare_conventions(scores, mask)}
    assert list(rows) == list(masking.CONVENTIONS)
    plain = rows["-inf, plain softmax"]
    assert torch.isnan(torch.from_numpy(plain.empty_weights)).all()
    assert not plain.loss_finite and not plain.gradient_finite
    uniform = rows["-1e9 fill"]
    assert uniform.empty_weights.tolist() == [0.25] * 4 and uniform.loss_finite and uniform.gradient_finite
    additive = rows["+(-inf), nan_to_num"]
    assert additive.empty_weights.tolist() == [0.0] * 4 and additive.loss_finite and not additive.gradient_finite
    assert torch.isnan(torch.from_numpy(additive.empty_gradient)).all()
    course = rows["masked_softmax (course)"]
    assert course.empty_weights.tolist() == [0.0] * 4 and course.loss_finite and course.gradient_finite
    assert course.empty_gradient.tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="no fully masked row"):
        masking.compare_conventions(scores, torch.ones(2, 4, dtype=torch.bool))
