"""Chapter 4 references: the formulas against samples, torch, autograd and their invariants."""

import numpy as np
import pytest
import torch

from xattn_edu.chapters.superpowers import reference as ref
from xattn_edu.chapters.superpowers.stacks import Stack, StackConfig


def test_conditional_variance_and_mean_match_a_regression_on_many_gaussian_samples():
    rng = np.random.default_rng(0)
    rho, mean_x, std_x, mean_y, std_y = -0.6, 2.0, 3.0, -1.0, 0.5
    cov = [[std_x**2, rho * std_x * std_y], [rho * std_x * std_y, std_y**2]]
    x, y = rng.multivariate_normal([mean_x, mean_y], cov, size=400_000).T
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    assert np.var(residual) == pytest.approx(ref.conditional_variance(rho, std_y**2), rel=0.01)
    probe = np.array([-4.0, 2.0, 7.0])
    np.testing.assert_allclose(ref.conditional_mean(probe, rho, mean_x, std_x, mean_y, std_y),
                               slope * probe + intercept, atol=0.01)


def test_conditional_variance_broadcasts_and_refuses_impossible_inputs():
    np.testing.assert_allclose(ref.conditional_variance(np.array([0.0, 0.5, -1.0]), np.array([2.0, 4.0, 1.0])),
                               [2.0, 3.0, 0.0])
    assert isinstance(ref.conditional_variance(0.5, 1.0), float)
    for rho, var in [(1.01, 1.0), (np.array([0.2, -3.0]), 1.0), (0.5, -0.1)]:
        with pytest.raises(ValueError):
            ref.conditional_variance(rho, var)


def test_variance_reduction_is_r_squared_for_one_variable_and_ignores_shifts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(500)
    y = 0.4 * x + rng.standard_normal(500)
    r = np.corrcoef(x, y)[0, 1]
    assert ref.variance_reduction(x, y) == pytest.approx(r**2, rel=1e-10)
    assert ref.variance_reduction(x + 100, y - 7) == pytest.approx(r**2, rel=1e-8)
    assert ref.variance_reduction(x[:, None], y) == pytest.approx(r**2, rel=1e-10)


def test_variance_reduction_with_several_variables_is_the_squared_multiple_correlation():
    rng = np.random.default_rng(2)
    cov = np.array([[1.0, 0.5], [0.5, 1.0]])
    beta = np.array([0.6, 0.4])
    x = rng.multivariate_normal([0, 0], cov, size=200_000)
    y = x @ beta + np.sqrt(0.3) * rng.standard_normal(200_000)
    explained = beta @ cov @ beta
    assert ref.variance_reduction(x, y) == pytest.approx(explained / (explained + 0.3), abs=0.005)


def test_attention_readout_is_a_gaussian_kernel_average():
    gen = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(4, 2, generator=gen, dtype=torch.float64), torch.randn(6, 2, generator=gen,
                                                                                          dtype=torch.float64)
    values, h = torch.randn(6, 3, generator=gen, dtype=torch.float64), 0.7
    predictions, weights = ref.attention_readout(queries, keys, values, h)
    q, k = queries.numpy(), keys.numpy()
    kernel = np.exp(-((q[:, None] - k[None]) ** 2).sum(-1) / (2 * h**2))
    expected_weights = kernel / kernel.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-12)
    np.testing.assert_allclose(predictions.numpy(), expected_weights @ values.numpy(), rtol=1e-12)


def test_attention_readout_equals_scaled_dot_product_attention_with_a_key_offset():
    gen = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(3, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen,
                                                                                          dtype=torch.float64)
    values, h = torch.randn(5, 2, generator=gen, dtype=torch.float64), 1.3
    dot = torch.softmax(queries @ keys.T / h**2 - (keys**2).sum(-1) / (2 * h**2), dim=-1)
    torch.testing.assert_close(ref.attention_readout(queries, keys, values, h)[1], dot)


def test_attention_readout_survives_far_queries_and_passes_gradcheck():
    keys, values = torch.randn(5, 1, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    predictions, weights = ref.attention_readout(torch.tensor([[50.0]], dtype=torch.float64), keys, values, 0.05)
    assert torch.isfinite(predictions).all() and weights.sum() == pytest.approx(1.0)
    inputs = [torch.randn(3, 2, dtype=torch.float64, requires_grad=True),
              torch.randn(4, 2, dtype=torch.float64, requires_grad=True),
              torch.randn(4, 1, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda q, k, v: ref.attention_readout(q, k, v, 0.9)[0], inputs)


def test_layer_grad_norms_match_a_manual_computation_and_clear_stale_gradients():
    torch.manual_seed(0)
    model = Stack(StackConfig(vocab=12, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=3, n_decoder_layers=2))
    src = torch.randint(1, 12, (4, 5))
    tgt = torch.randint(0, 12, (4, 5))

    def loss():
        return torch.nn.functional.cross_entropy(model(src, tgt).flatten(0, 1), src.flatten())

    loss().backward()  # stale gradients
    norms = ref.layer_grad_norms(model.encoder_layers, loss())
    model.zero_grad()
    loss().backward()
    manual = [torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters())) for layer in model.encoder_layers]
    torch.testing.assert_close(norms, torch.stack(manual))
    assert norms.shape == (3,) and not norms.requires_grad


def test_mix_layers_limits_and_gradients():
    states = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(ref.mix_layers(states, torch.zeros(4, dtype=torch.float64)), states.mean(0))
    one_hot = torch.tensor([0.0, 0.0, 80.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(ref.mix_layers(states, one_hot), states[2])
    inputs = [states.clone().requires_grad_(True), torch.randn(4, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(ref.mix_layers, inputs)
