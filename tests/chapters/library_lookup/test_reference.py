"""The numpy library lookup (Chapter 1 reference) against torch and against its invariants."""

import numpy as np
import pytest
import torch

from xattn_edu.chapters.library_lookup import equal_scores as experiment
from xattn_edu.chapters.library_lookup import learning
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


def test_project_takes_queries_from_one_set_and_keys_values_from_another():
    rng = np.random.default_rng(5)
    asking, read = rng.standard_normal((3, 6)), rng.standard_normal((5, 6))  # Tq = 3 items ask, n = 5 are read
    w_query, w_key, w_value = rng.standard_normal((6, 4)), rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    queries, keys, values = lookup.project(asking, read, w_query, w_key, w_value)
    assert (queries.shape, keys.shape, values.shape) == ((3, 4), (5, 4), (5, 2))
    np.testing.assert_allclose(queries, asking @ w_query)
    np.testing.assert_allclose(values, read @ w_value)


@pytest.mark.parametrize("n_keys, dim", [(1, 3), (4, 5), (2, 10)])
def test_an_orthogonal_query_is_a_unit_vector_with_scores_zero_and_gives_the_mean(n_keys, dim):
    rng = np.random.default_rng(6)
    keys, values = rng.standard_normal((n_keys, dim)), rng.standard_normal((n_keys, 3))
    query = lookup.equal_score_query(keys, 0.0)
    assert np.linalg.norm(query) == pytest.approx(1.0)
    np.testing.assert_allclose(keys @ query, 0.0, atol=1e-12)
    output, weights = lookup.soft_lookup(query, keys, values)
    np.testing.assert_allclose(weights, 1.0 / n_keys, atol=1e-14)
    np.testing.assert_allclose(output, values.mean(axis=0), atol=1e-14)


@pytest.mark.parametrize("n_keys, dim, level", [(4, 4, 1.0), (3, 7, -2.0), (6, 6, 0.3)])
def test_an_equal_score_query_ties_every_score_at_its_level_and_gives_the_mean(n_keys, dim, level):
    rng = np.random.default_rng(8)
    keys, values = rng.standard_normal((n_keys, dim)), rng.standard_normal((n_keys, 2))
    query = lookup.equal_score_query(keys, level)
    np.testing.assert_allclose(keys @ query, level, rtol=1e-10)
    output, weights = lookup.soft_lookup(query, keys, values)
    np.testing.assert_allclose(weights, 1.0 / n_keys, atol=1e-12)
    np.testing.assert_allclose(output, values.mean(axis=0), atol=1e-12)
    if n_keys == dim:  # square keys: the unique solution c K^-1 1
        np.testing.assert_allclose(query, level * np.linalg.solve(keys, np.ones(n_keys)), rtol=1e-8)


def test_equal_score_queries_exist_in_a_shared_subspace_and_not_when_the_keys_span():
    rng = np.random.default_rng(7)
    flat_keys = rng.standard_normal((9, 2)) @ rng.standard_normal((2, 4))  # 9 keys in a plane of 4-D space
    np.testing.assert_allclose(flat_keys @ lookup.equal_score_query(flat_keys, 0.0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="span all 4 dimensions"):
        lookup.equal_score_query(rng.standard_normal((4, 4)), 0.0)
    with pytest.raises(ValueError, match="no query gives all 5 keys the same score 1"):
        lookup.equal_score_query(rng.standard_normal((5, 4)), 1.0)


def test_equal_scores_experiment_reproduces_uniform_weights_and_the_mean():
    rows = experiment.measure_equal_scores(trials=20)
    assert [(row.n_keys, row.dim, row.level) for row in rows] == [(8, 16, 0.0), (8, 16, 1.0), (8, 8, 1.0),
                                                                  (8, 8, -2.5)]
    for row in rows:
        assert row.max_score_error < 1e-9 and row.max_weight_error < 1e-12 and row.max_output_error < 1e-12


def test_near_uniform_deviation_grows_with_the_overlap():
    rows = experiment.measure_near_uniform(overlaps=(0.0, 0.01, 0.1, 1.0), trials=10)
    errors = [row.max_weight_error for row in rows]
    assert errors[0] < 1e-14
    assert errors == sorted(errors) and errors[-1] > 0.1


def test_span_limit_equal_scores_exist_while_n_is_at_most_d_and_orthogonal_ones_while_below():
    rows = experiment.measure_span_limit(dim=4, n_keys_list=(3, 4, 6), trials=10)
    assert [row.share_orthogonal for row in rows] == [1.0, 0.0, 0.0]
    assert [row.share_equal for row in rows] == [1.0, 1.0, 0.0]
    assert rows[0].least_squares_max_cosine < 1e-12 and rows[1].least_squares_max_cosine > 1e-6


def test_gradient_descent_trains_the_soft_lookup_and_never_moves_the_hard_one():
    from xattn_edu.chapters.library_lookup.widget import SHELF

    keys = np.array([book.key for book in SHELF])
    values = np.array([book.colour for book in SHELF])
    start = np.array([1.0, 0.3])  # aimed near Astronomy (book 0); the target is Poetry (book 3)
    soft = learning.train_query(keys, values, 3, start, hard=False, steps=40)
    hard = learning.train_query(keys, values, 3, start, hard=True, steps=40)
    assert soft.losses[-1] < 0.05 * soft.losses[0] and soft.weights[-1].argmax() == 3
    assert (soft.gradient_norms[:5] > 0).all()
    np.testing.assert_array_equal(hard.queries, np.broadcast_to(start, hard.queries.shape))
    np.testing.assert_array_equal(hard.gradient_norms, 0.0)
    assert np.ptp(hard.losses) == 0.0 and hard.weights[-1].argmax() == 0
    assert soft.weights.shape == (41, 5) and hard.losses.shape == (41,)
