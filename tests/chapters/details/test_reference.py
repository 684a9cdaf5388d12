"""Chapter 5 references against the package's modules and against first principles."""

import math

import pytest
import torch

from xattn_edu.chapters.details import reference as ref
from xattn_edu.chapters.details.leakage import gold_log_probs
from xattn_edu.chapters.details.model import DetailsConfig, DetailsModel
from xattn_edu.chapters.details.tasks import make_batch
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig
from xattn_edu.nn.positional import RelativePositionBias, sinusoidal_table


@pytest.mark.parametrize("placement", ref.PLACEMENTS)
def test_positioned_scores_match_the_package_attention_with_query_pos_and_key_pos(placement):
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 1, bias=False).double()
    target, source = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64)
    table = sinusoidal_table(16, 8).double()
    hooks = {"query_pos": table[None, :3] if placement in ("queries", "both") else None,
             "key_pos": table[None, :5] if placement in ("keys", "both") else None}
    _, weights = attention(target, context=source, return_weights=True, **hooks)  # (B, 1, Tt, Ts)
    scores = ref.positioned_scores(target, source, attention.q_proj.weight.T, attention.k_proj.weight.T, table,
                                   placement)
    torch.testing.assert_close(scores.softmax(-1), weights[:, 0])


def test_without_positions_on_the_keys_two_copies_get_identical_scores_and_with_them_they_do_not():
    torch.manual_seed(1)
    target, source = torch.randn(1, 4, 6, dtype=torch.float64), torch.randn(1, 5, 6, dtype=torch.float64)
    source[:, 4] = source[:, 1]
    w_query, w_key, table = torch.randn(6, 3).double(), torch.randn(6, 3).double(), sinusoidal_table(8, 6).double()
    for placement in ("none", "queries"):
        scores = ref.positioned_scores(target, source, w_query, w_key, table, placement)
        assert torch.equal(scores[..., 1], scores[..., 4])
    for placement in ("keys", "both"):
        scores = ref.positioned_scores(target, source, w_query, w_key, table, placement)
        assert (scores[..., 1] - scores[..., 4]).abs().min() > 1e-6


def test_positioned_scores_refuse_an_unknown_placement():
    with pytest.raises(ValueError, match="placement must be one of"):
        ref.positioned_scores(*(torch.zeros(1, 2, 4),) * 2, torch.eye(4), torch.eye(4), torch.zeros(4, 4), "values")


@pytest.mark.parametrize("offset", [0, 6])
def test_relative_position_bias_matches_the_package_module(offset):
    torch.manual_seed(2)
    module = RelativePositionBias(n_heads=3, max_distance=4)
    torch.nn.init.normal_(module.bias.weight)
    queries, keys = torch.arange(offset, offset + 5), torch.arange(9)
    torch.testing.assert_close(ref.relative_position_bias(module.bias.weight, queries, keys), module(queries, keys)[0])


def test_relative_position_bias_clips_and_accumulates_gradient_per_distance():
    table = torch.zeros(5, 1, requires_grad=True)  # M = 2
    bias = ref.relative_position_bias(table, torch.arange(4), torch.arange(4))  # distances -3..3
    bias.sum().backward()
    # distances -3..3 occur 1, 2, 3, 4, 3, 2, 1 times; with M = 2, -3 and -2 share row 0, 2 and 3 share row 4
    assert table.grad[:, 0].tolist() == [3.0, 3.0, 4.0, 3.0, 3.0]


def _mixing_score(weights):
    return lambda source: torch.tanh(source).sum(-1) @ weights.T


def test_future_influence_is_the_gradient_norm_worked_out_by_hand():
    weights = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0]], dtype=torch.float64)  # (Tt, Ts)
    source = torch.randn(2, 3, 4, dtype=torch.float64)
    influence, share = ref.future_influence(_mixing_score(weights), source, 1, 2)
    by_hand = weights[1].abs() * (1 - torch.tanh(source) ** 2).norm(dim=-1)  # d/dx tanh = 1 - tanh^2
    torch.testing.assert_close(influence, by_hand)
    torch.testing.assert_close(share, by_hand[:, 2] / by_hand.sum(-1))


def test_future_influence_agrees_with_finite_differences_on_a_model():
    torch.manual_seed(3)
    model = DetailsModel(DetailsConfig(8, 8, d_model=8, n_heads=2)).double().eval()
    ids = torch.randint(2, 8, (1, 5)).numpy()
    batch = make_batch(ids, ids[:, 1:])
    score = gold_log_probs(model, batch)
    vectors = model.embed_source(batch.src).detach()
    influence, _ = ref.future_influence(score, vectors, 1, 2)
    leaf = vectors.clone().requires_grad_(True)
    gradient = torch.autograd.grad(score(leaf)[0, 1], leaf)[0][0, 3]  # (D,) at source position 3
    step = torch.zeros_like(vectors)
    step[0, 3] = 1e-5 * gradient / gradient.norm()
    with torch.no_grad():
        slope = float(score(vectors + step)[0, 1] - score(vectors - step)[0, 1]) / 2e-5
    assert slope == pytest.approx(float(influence[0, 3]), rel=1e-6)  # the slope along the gradient is its norm


def test_a_step_nothing_influences_has_a_future_share_of_zero_not_nan():
    influence, share = ref.future_influence(_mixing_score(torch.zeros(2, 3)), torch.randn(2, 3, 4), 0, 1)
    assert influence.abs().sum() == 0 and share.tolist() == [0.0, 0.0]


def _seq2seq(layers):
    return Seq2Seq(Seq2SeqConfig(10, 10, d_model=8, n_heads=2, n_encoder_layers=layers, n_decoder_layers=layers,
                                 d_ff=16, dropout=0.0))


@pytest.mark.parametrize("layers", [1, 3])
def test_tie_all_saves_what_the_package_tie_kv_option_saves(layers):
    torch.manual_seed(4)
    model = _seq2seq(layers)
    saved = ref.tie_kv(model, "all")
    tied_by_config = Seq2Seq(Seq2SeqConfig(10, 10, d_model=8, n_heads=2, n_encoder_layers=layers,
                                           n_decoder_layers=layers, d_ff=16, dropout=0.0, tie_kv=True))
    untied = sum(p.numel() for p in _seq2seq(layers).parameters())
    assert saved == untied - sum(p.numel() for p in tied_by_config.parameters())
    assert saved == (3 * layers - 1) * 2 * (8 * 8 + 8)  # every module but the first drops two D x D + D projections


def test_tie_cross_touches_only_cross_attention_and_the_model_still_trains():
    torch.manual_seed(5)
    model = _seq2seq(2)
    assert ref.tie_kv(model, "cross") == 2 * (8 * 8 + 8)
    first, second = (layer.cross_attn for layer in model.decoder_layers)
    assert first.k_proj is second.k_proj and first.v_proj is second.v_proj and first.k_proj is not first.v_proj
    assert model.decoder_layers[0].self_attn.k_proj is not model.decoder_layers[1].self_attn.k_proj
    model(torch.randint(1, 10, (2, 4)), torch.randint(1, 10, (2, 3))).sum().backward()
    assert first.k_proj.weight.grad is not None and math.isfinite(float(first.k_proj.weight.grad.norm()))


def test_tie_refuses_an_unknown_scope():
    with pytest.raises(ValueError, match="scope must be one of"):
        ref.tie_kv(_seq2seq(1), "self")
