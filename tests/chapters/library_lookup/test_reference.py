"""The numpy library lookup (Chapter 1 reference) against torch and against its invariants."""

import numpy as np
import pytest
import torch

from xattn_edu.chapters.library_lookup import orthogonal_query as experiment
from xattn_edu.chapters.library_lookup import reference as lookup


def test_relevance_scores_are_dot_products_for_one_query_and_a_batch():
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((5, 3))
    batch = rng.standard_normal((4, 3))
    scores = lookup.relevance_scores(batch, keys)
    assert scores.shape == (4, 5)
    assert scores[2, 3] == pytest.approx(np.dot(batch[2], keys[3]))
    np.testing.assert_allclose(lookup.relevance_scores(batch[1], keys), scores[1])


def test_relevance_scores_rejects_mismatched_widths():
    with pytest.raises(ValueError, match=r"\(4,\)"):
        lookup.relevance_scores(np.zeros(4), np.zeros((2, 3)))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_torch(axis):
    scores = np.random.default_rng(1).standard_normal((3, 4, 5)) * 4
    expected = torch.softmax(torch.from_numpy(scores), dim=axis).numpy()
    np.testing.assert_allclose(lookup.softmax(scores, axis=axis), expected, rtol=1e-12, atol=1e-15)


def test_softmax_survives_large_scores_and_gives_minus_inf_weight_zero():
    weights = lookup.softmax(np.array([[1000.0, 1001.0, -np.inf], [-1000.0, -1001.0, -1002.0]]))
    expected = torch.softmax(torch.tensor([[1000.0, 1001.0, -np.inf], [-1000.0, -1001.0, -1002.0]],
                                          dtype=torch.float64), dim=-1).numpy()
    assert np.isfinite(weights).all()
    assert weights[0, 2] == 0.0
    np.testing.assert_allclose(weights, expected, rtol=1e-12)


def test_softmax_of_an_all_minus_inf_row_is_zeros_not_nan():
    weights = lookup.softmax(np.array([[-np.inf, -np.inf], [0.0, 0.0]]))
    np.testing.assert_array_equal(weights, [[0.0, 0.0], [0.5, 0.5]])


def test_softmax_is_shift_invariant_and_does_not_modify_its_input():
    scores = np.random.default_rng(2).standard_normal((2, 6))
    before = scores.copy()
    np.testing.assert_allclose(lookup.softmax(scores), lookup.softmax(scores + 123.0), rtol=1e-12)
    np.testing.assert_array_equal(scores, before)


def test_soft_lookup_matches_torch_attention_without_scaling():
    rng = np.random.default_rng(3)
    query, keys, values = rng.standard_normal((4, 8)), rng.standard_normal((6, 8)), rng.standard_normal((6, 3))
    output, weights = lookup.soft_lookup(query, keys, values)
    q, k, v = (torch.from_numpy(a) for a in (query, keys, values))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)  # no 1/sqrt(d) in Chapter 1
    np.testing.assert_allclose(output, expected.numpy(), rtol=1e-10)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    single_output, single_weights = lookup.soft_lookup(query[0], keys, values)
    assert single_output.shape == (3,) and single_weights.shape == (6,)
    np.testing.assert_allclose(single_output, output[0])


def test_soft_lookup_rejects_values_with_the_wrong_number_of_rows():
    with pytest.raises(ValueError, match="one row per key"):
        lookup.soft_lookup(np.zeros(2), np.zeros((3, 2)), np.zeros((4, 5)))


def test_a_long_query_makes_the_soft_lookup_approach_the_hard_one():
    rng = np.random.default_rng(4)
    query, keys, values = rng.standard_normal(5), rng.standard_normal((7, 5)), rng.standard_normal((7, 2))
    hard, index = lookup.hard_lookup(query, keys, values)
    soft, _ = lookup.soft_lookup(200.0 * query, keys, values)
    np.testing.assert_allclose(soft, hard, atol=1e-8)
    np.testing.assert_array_equal(hard, values[index])


def test_project_gives_queries_keys_values_of_the_projection_widths():
    rng = np.random.default_rng(5)
    items = rng.standard_normal((4, 6))
    queries, keys, values = lookup.project(items, rng.standard_normal((6, 3)), rng.standard_normal((6, 3)),
                                           rng.standard_normal((6, 2)))
    assert (queries.shape, keys.shape, values.shape) == ((4, 3), (4, 3), (4, 2))


@pytest.mark.parametrize("n_keys, dim", [(1, 3), (4, 5), (2, 10)])
def test_orthogonal_query_is_unit_orthogonal_and_gives_the_mean(n_keys, dim):
    rng = np.random.default_rng(6)
    keys, values = rng.standard_normal((n_keys, dim)), rng.standard_normal((n_keys, 3))
    query = lookup.orthogonal_query(keys, rng)
    assert np.linalg.norm(query) == pytest.approx(1.0)
    np.testing.assert_allclose(keys @ query, 0.0, atol=1e-12)
    output, weights = lookup.soft_lookup(query, keys, values)
    np.testing.assert_allclose(weights, 1.0 / n_keys, atol=1e-14)
    np.testing.assert_allclose(output, values.mean(axis=0), atol=1e-14)


def test_orthogonal_query_works_when_many_keys_share_a_subspace_and_fails_when_they_span():
    rng = np.random.default_rng(7)
    flat_keys = rng.standard_normal((9, 2)) @ rng.standard_normal((2, 4))  # 9 keys in a plane of 4-D space
    np.testing.assert_allclose(flat_keys @ lookup.orthogonal_query(flat_keys, rng), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="span all 4 dimensions"):
        lookup.orthogonal_query(rng.standard_normal((4, 4)), rng)


def test_orthogonal_experiment_reproduces_uniform_weights_and_the_mean():
    result = experiment.measure_orthogonal(trials=20)
    assert result.max_abs_score < 1e-12
    assert result.max_weight_error < 1e-14
    assert result.max_output_error < 1e-13


def test_near_orthogonal_deviation_grows_with_the_overlap():
    rows = experiment.measure_near_orthogonal(overlaps=(0.0, 0.01, 0.1, 1.0), trials=10)
    errors = [row.max_weight_error for row in rows]
    assert errors[0] < 1e-14
    assert errors == sorted(errors) and errors[-1] > 0.1


def test_span_limit_orthogonal_queries_exist_exactly_while_n_is_below_d():
    rows = experiment.measure_span_limit(dim=4, n_keys_list=(3, 4, 6), trials=10)
    assert [row.fraction_with_orthogonal_query for row in rows] == [1.0, 0.0, 0.0]
    assert rows[0].best_max_cosine < 1e-12 and rows[1].best_max_cosine > 1e-6
