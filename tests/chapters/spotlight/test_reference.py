"""Chapter 2 references: entropy of attention weights, scaled scores, temperature softmax."""

import math

import numpy as np
import pytest
import torch

from xattn_edu.chapters.library_lookup import reference as lookup
from xattn_edu.chapters.spotlight.reference import attention_entropy, max_entropy, scaled_scores, temperature_softmax
from xattn_edu.nn import attention


def test_entropy_of_uniform_is_log_n_and_of_one_hot_is_zero():
    assert attention_entropy(np.full(8, 1 / 8)) == pytest.approx(math.log(8))
    one_hot = attention_entropy(np.array([0.0, 1.0, 0.0]))
    assert one_hot == 0.0 and not np.signbit(one_hot)  # a plain 0, not -0.0 or nan


def test_entropy_matches_torch_categorical_on_random_rows():
    weights = lookup.softmax(np.random.default_rng(0).standard_normal((4, 5, 7)) * 3)
    expected = torch.distributions.Categorical(probs=torch.tensor(weights)).entropy().numpy()
    got = attention_entropy(weights)
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_entropy_zeros_count_as_zero_and_all_zero_rows_give_zero():
    weights = np.array([[0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(attention_entropy(weights), [math.log(2), 0.0])


def test_entropy_of_torch_weights_is_a_tensor_equal_to_the_numpy_result():
    weights = torch.softmax(torch.randn(2, 3, 6, dtype=torch.float64), dim=-1).masked_fill(
        torch.tensor([True, False, False, True, False, False]), 0.0)
    got = attention_entropy(weights)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), attention_entropy(weights.numpy()), rtol=1e-12)
    assert torch.isfinite(got).all()


def test_entropy_of_attention_tensors_over_the_last_dimension():
    weights = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    entropy = attention_entropy(weights)
    assert entropy.tolist() == pytest.approx([0.0, math.log(4), math.log(2), 0.0])
    assert not torch.isnan(entropy).any()
    assert attention_entropy(torch.ones(2, 3, 5, 7) / 7).shape == (2, 3, 5)

def test_entropy_axis_argument():
    weights = lookup.softmax(np.random.default_rng(1).standard_normal((3, 4)), axis=0)  # columns are distributions
    np.testing.assert_allclose(attention_entropy(weights, axis=0), attention_entropy(weights.T))


def test_max_entropy():
    assert max_entropy(1) == 0.0
    assert max_entropy(64) == pytest.approx(math.log(64))
    with pytest.raises(ValueError, match="at least one key"):
        max_entropy(0)


@pytest.mark.parametrize("query_shape", [(16,), (3, 16)])
def test_scaled_scores_divide_the_dot_products_by_sqrt_d(query_shape):
    rng = np.random.default_rng(2)
    query, keys = rng.standard_normal(query_shape), rng.standard_normal((5, 16))
    got = scaled_scores(query, keys)
    assert got.shape == query_shape[:-1] + (5,)
    np.testing.assert_allclose(got, (query @ keys.T) / 4.0)


def test_softmax_of_scaled_scores_is_the_torch_attention_weights():
    rng = np.random.default_rng(3)
    query, keys = rng.standard_normal((4, 32)), rng.standard_normal((6, 32))
    expected = attention.attention_weights(torch.tensor(query), torch.tensor(keys)).numpy()
    np.testing.assert_allclose(temperature_softmax(scaled_scores(query, keys), 1.0), expected, rtol=1e-12)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 7.0])
def test_temperature_softmax_is_torch_softmax_of_scores_over_t(temperature):
    scores = np.random.default_rng(4).standard_normal((2, 3, 5))
    expected = torch.softmax(torch.tensor(scores) / temperature, dim=-1).numpy()
    np.testing.assert_allclose(temperature_softmax(scores, temperature), expected, rtol=1e-12)


def test_temperature_extremes_approach_argmax_and_uniform_without_overflow():
    scores = np.array([[0.5, 2.0, 1.0, -3.0], [4.0, 4.0, 0.0, 1.0]])
    cold = temperature_softmax(scores, 1e-6)
    np.testing.assert_allclose(cold, [[0, 1, 0, 0], [0.5, 0.5, 0, 0]], atol=1e-12)  # ties share the weight
    np.testing.assert_allclose(temperature_softmax(scores, 1e6), 0.25, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        temperature_softmax(np.zeros(3), bad)


def test_entropy_decreases_as_the_temperature_drops():
    scores = np.random.default_rng(5).standard_normal(10)
    entropies = [attention_entropy(temperature_softmax(scores, t)) for t in (100.0, 3.0, 1.0, 0.3, 0.01)]
    assert entropies == sorted(entropies, reverse=True)
    assert 0.0 <= entropies[-1] < entropies[0] <= math.log(10)
