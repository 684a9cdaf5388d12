"""Chapter 2 experiments: the measured claims hold on small runs (seconds)."""

import dataclasses
import math

import pytest
import torch

from xattn_edu.chapters.spotlight import entropy, scaling


def test_dot_product_variance_grows_like_d_and_the_scale_removes_it():
    rows = scaling.measure_dot_product_variance(dims=(1, 16, 256), samples=20_000)
    for row in rows:
        assert row.samples == 20_000
        assert row.variance / row.dim == pytest.approx(1.0, abs=0.1)
        assert row.scaled_variance == pytest.approx(1.0, abs=0.1)
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


def test_entropy_bounds_hold_on_random_distributions():
    result = entropy.measure_bounds(cases=500)
    assert result.cases == 500 and result.violations == 0 and result.nan_count == 0
    assert result.min_entropy >= 0.0 and result.max_entropy_excess <= 1e-12
