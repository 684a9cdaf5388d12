"""Chapter 4 models and experiments on tiny sizes: the wirings are what they claim, the measurements work."""

import math

import numpy as np
import pytest
import torch

from xattn_edu.chapters.superpowers import gradient_flow as flow
from xattn_edu.chapters.superpowers import masked_token, uncertainty
from xattn_edu.chapters.superpowers.stacks import CROSS, Stack, StackConfig, prefix_mask


def tiny(cross: str, **kwargs) -> Stack:
    torch.manual_seed(0)
    return Stack(StackConfig(vocab=12, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=3, n_decoder_layers=2,
                             cross=cross, **kwargs))


def batch(b: int = 3):
    return flow.reversal_batch(b, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cross", CROSS)
@pytest.mark.parametrize("residual, pre_norm", [(True, True), (True, False), (False, True), (False, False)])
def test_every_wiring_gives_one_prediction_per_target_token_and_is_causal(cross, residual, pre_norm):
    model = tiny(cross, residual=residual, pre_norm=pre_norm)
    src, tgt_in, _ = batch()
    logits = model(src, tgt_in)
    assert logits.shape == (3, 8, 12)
    changed = tgt_in.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 12
    torch.testing.assert_close(model(src, changed)[:, :5], logits[:, :5])  # the past never sees the future
    if residual:  # without residuals, a near-uniform cross-attention at init all but erases the token itself
        assert (model(src, changed)[:, 5:] - logits[:, 5:]).abs().max() > 1e-4  # later positions do see it
    assert len(model.encoder_layers) == 3 and len(model.decoder_layers) == 2


@pytest.mark.parametrize("cross", CROSS)
def test_every_wiring_reads_the_source(cross):
    model = tiny(cross)
    src, tgt_in, _ = batch()
    other = src.clone()
    other[:, 0] = (other[:, 0] % 11) + 1
    assert not torch.allclose(model(other, tgt_in), model(src, tgt_in))


def test_the_wirings_have_the_cross_attentions_they_claim():
    def crossing(model):
        return [layer.cross_attn is not None for layer in model.layers]

    assert crossing(tiny("every")) == [False] * 3 + [True, True]
    assert crossing(tiny("one")) == [False] * 3 + [True, False]
    assert crossing(tiny("none")) == [False] * 5
    assert tiny("mixture").mix_logits.shape == (2, 4)
    assert tiny("every").mix_logits is None


def test_only_the_mixture_sends_the_loss_straight_to_the_bottom_layer():
    """Cut the path through the upper encoder layers (no residuals, their output projections zeroed): the
    bottom layer then gets gradient only from a wiring that reads it directly, the mixture."""
    src, tgt_in, tgt_out = batch()
    for cross, direct in (("every", False), ("mixture", True)):
        model = tiny(cross, residual=False)
        with torch.no_grad():  # zero the top two encoder layers' output projections: they pass nothing up
            for layer in model.encoder_layers[1:]:
                layer.ff[2].weight.zero_()
                layer.ff[2].bias.zero_()
        loss = flow.task_loss(model, (src, tgt_in, tgt_out))
        bottom = torch.autograd.grad(loss, list(model.encoder_layers[0].parameters()), allow_unused=True)
        reached = any(g is not None and g.abs().sum() > 0 for g in bottom)
        assert reached == direct, cross


def test_prefix_mask_shows_the_whole_prefix_and_the_past():
    mask = prefix_mask(3, 2)[0, 0]
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
                            dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_config_rejects_unknown_wirings():
    with pytest.raises(ValueError, match="cross must be one of"):
        StackConfig(vocab=5, cross="sometimes")


def test_reversal_batch_targets_are_the_source_backwards():
    src, tgt_in, tgt_out = batch(4)
    assert torch.equal(tgt_out, src.flip(1))
    assert (tgt_in[:, 0] == 0).all() and torch.equal(tgt_in[:, 1:], tgt_out[:, :-1])
    assert src.min() >= 1 and src.max() < flow.VOCAB


def test_gradient_profile_is_per_layer_positive_and_memoised():
    variant = flow.Variant("every")
    profile = flow.gradient_profile(variant, 4)
    assert profile.shape == (4,) and (profile > 0).all()
    assert flow.gradient_profile(variant, 4) is profile and not profile.flags.writeable
    assert flow.bottom_top_ratio(profile) == pytest.approx(profile[0] / profile[-1])


def test_measure_profiles_covers_every_variant_and_depth():
    variants = (flow.Variant("every"), flow.Variant("none", residual=False))
    rows = flow.measure_profiles(variants=variants, depths=(2, 3), seeds=(0, 1))
    assert [(r.variant, r.depth) for r in rows] == [(v, d) for d in (2, 3) for v in variants]
    for row in rows:
        single = [flow.gradient_profile(row.variant, row.depth, seed) for seed in (0, 1)]
        np.testing.assert_allclose(row.norms, np.sqrt(single[0] * single[1]))


def test_without_residuals_the_bottom_of_a_deep_encoder_gets_less_gradient():
    deep = 16
    with_residuals = flow.gradient_profile(flow.Variant("every"), deep)
    without = flow.gradient_profile(flow.Variant("every", residual=False), deep)
    assert flow.bottom_top_ratio(without) < 0.5 * flow.bottom_top_ratio(with_residuals)


def test_variant_names_are_unique_and_the_list_has_every_combination():
    assert len({v.name for v in flow.VARIANTS}) == len(flow.VARIANTS) == 14
    assert flow.Variant("none", residual=False, pre_norm=False).name == "none, post-norm, no residual"


def test_train_variant_records_losses_and_profiles():
    run = flow.train_variant(flow.Variant("every"), 2, 5)
    assert run.losses.shape == (5,) and np.isfinite(run.losses).all()
    assert run.norms_before.shape == run.norms_after.shape == (2,)
    assert run.final_loss == pytest.approx(run.losses[-1])
    assert flow.train_variant(flow.Variant("every"), 2, 5) is run


def test_training_the_reversal_task_lowers_the_loss():
    run = flow.train_variant(flow.Variant("every"), 1, 60, lr=3e-3)
    assert run.losses[-10:].mean() < run.losses[:10].mean() - 0.2


def test_measure_warmup_pairs_standard_and_mixture_then_adds_the_warmed_up_standard():
    runs = flow.measure_warmup(depths=(1, 2), seeds=(0,), steps=3, warmup=2)
    assert [(r.depth, r.variant.cross, r.warmup) for r in runs] == [
        (1, "every", 0), (1, "mixture", 0), (2, "every", 0), (2, "mixture", 0), (2, "every", 2)]
    assert all(not r.variant.pre_norm and r.variant.residual for r in runs)


# ----------------------------------------------------------------------------- uncertainty

def test_gaussian_pairs_have_the_requested_correlation():
    x, y = uncertainty.gaussian_pairs(100_000, 0.7, np.random.default_rng(0))
    assert np.corrcoef(x, y)[0, 1] == pytest.approx(0.7, abs=0.01)
    assert np.var(y) == pytest.approx(1.0, abs=0.02)


def test_square_pairs_are_uncorrelated_but_dependent():
    x, y = uncertainty.square_pairs(200_000, np.random.default_rng(0), noise_var=0.5)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.02
    assert np.var(y) == pytest.approx(2.5, rel=0.03)


def test_bandwidth_shrinks_with_n_like_n_to_the_minus_one_fifth():
    assert uncertainty.bandwidth_for(32) / uncertainty.bandwidth_for(1) == pytest.approx(0.5)
    assert uncertainty.bandwidth_for(100, dims=2) < uncertainty.bandwidth_for(10, dims=2)


def test_readout_predictions_follow_a_smooth_curve():
    x = np.linspace(-2, 2, 2000)
    predictions = uncertainty.readout_predictions(x, np.sin(x), np.array([-1.0, 0.0, 1.0]), bandwidth=0.05)
    np.testing.assert_allclose(predictions, np.sin([-1.0, 0.0, 1.0]), atol=0.01)


def test_rho_sweep_and_line_fit_on_a_small_run():
    rows = uncertainty.measure_rho_sweep(rhos=(0.0, 0.5, 0.9), n_context=400, n_test=2000)
    assert [r.rho for r in rows] == [0.0, 0.5, 0.9]
    for row in rows:
        assert row.analytic == pytest.approx(row.rho**2)
        assert row.simulated == pytest.approx(row.rho**2, abs=0.08)
        assert row.attention == pytest.approx(row.rho**2, abs=0.12)
    fit = uncertainty.fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    assert (fit.slope, fit.intercept, fit.r_squared) == pytest.approx((2.0, 1.0, 1.0))


def test_binned_variance_is_close_to_one_minus_rho_squared_everywhere():
    for row in uncertainty.measure_binned(0.6, n=100_000):
        assert row.count > 50
        assert row.variance == pytest.approx(1 - 0.36, abs=0.1)


def test_the_readout_gets_closer_to_the_bound_with_more_context():
    rows = uncertainty.measure_context_sizes(rho=0.8, sizes=(4, 512), n_test=2000, repeats=3)
    assert rows[0].residual > rows[1].residual > 0.36 - 0.03
    assert rows[1].residual < 0.36 + 0.05


def test_nonlinear_case_line_removes_nothing_attention_removes_most():
    result = uncertainty.measure_nonlinear(n_context=800, n_test=2000)
    left = {row.predictor: row.residual for row in result.rows}
    assert left["best line"] > 0.95
    assert left["attention read-out"] < 0.35
    assert left["true E[Y|X] = X**2"] == pytest.approx(0.2, abs=0.05)


def test_several_variables_remove_r_squared_not_the_sum():
    result = uncertainty.measure_multiple(n_context=800, n_test=2000)
    assert sum(r**2 for r in result.rho_each) > 1.0 > result.r_squared
    assert result.linear == pytest.approx(result.r_squared, abs=0.05)
    assert result.attention == pytest.approx(result.r_squared, abs=0.08)


# ----------------------------------------------------------------------------- masked token

def test_tokens_are_equally_likely_and_stand_for_their_bin_means():
    values = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tokens = masked_token.tokenize(values, 8)
    counts = torch.bincount(tokens, minlength=8).double() / len(tokens)
    torch.testing.assert_close(counts, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.003, rtol=0)
    means = torch.stack([values[tokens == v].mean() for v in range(8)])
    torch.testing.assert_close(means, masked_token.token_values(8), atol=0.01, rtol=0)


def test_information_limit_is_zero_without_correlation_and_below_the_gaussian_value():
    assert masked_token.information_limit(0.0, samples=200_000) < 0.002
    limit = masked_token.information_limit(0.9, samples=200_000)
    assert 0.6 < limit < -0.5 * math.log(1 - 0.81)


def test_masked_batch_puts_the_correlated_token_first():
    tokens, target, value = masked_token.masked_batch(50_000, 0.9, torch.Generator().manual_seed(0), context=3)
    assert tokens.shape == (50_000, 3) and target.shape == value.shape == (50_000,)
    correlations = [np.corrcoef(tokens[:, k].numpy(), target.numpy())[0, 1] for k in range(3)]
    assert correlations[0] > 0.8 and max(abs(c) for c in correlations[1:]) < 0.03


def test_a_short_training_run_finds_the_evidence_and_saves_loss():
    rows = masked_token.measure_masked_token(rhos=(0.0, 0.9), steps=80, test=4000)
    assert abs(rows[0].loss_reduction) < 0.05
    assert rows[1].loss_reduction > 0.3 and rows[1].variance_removed > 0.5
    assert rows[1].weight_on_evidence > rows[0].weight_on_evidence
    assert rows[1].loss_reduction <= rows[1].information_limit + 0.03
