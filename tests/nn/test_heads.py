"""Multi-head attention against nn.MultiheadAttention with copied weights, plus caches and positional hooks."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from tests.helpers.torch_reference import copy_attention_weights
from xattn_edu.nn.cache import GrowingKV, StaticKV
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import causal_mask, padding_mask
from xattn_edu.nn.positional import RelativePositionBias, RotaryEmbedding

D, H = 16, 4


def copy_into_torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention computing the same function as ``ours``."""
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    copy_attention_weights(ref, ours)
    return ref.eval()


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadAttention(D, H).eval()


@pytest.mark.parametrize("fused", [False, True])
def test_self_attention_matches_torch_mha_with_causal_mask(mha, fused):
    mha.fused = fused
    x = torch.randn(2, 5, D)
    ref = copy_into_torch_mha(mha)
    expected, _ = ref(x, x, x, attn_mask=~causal_mask(5)[0, 0])
    assert_close(mha(x, mask=causal_mask(5)), expected)


def test_cross_attention_matches_torch_mha_with_key_padding_and_weights(mha):
    x, memory = torch.randn(2, 3, D), torch.randn(2, 6, D)
    lengths = torch.tensor([6, 4])
    ref = copy_into_torch_mha(mha)
    expected, expected_w = ref(x, memory, memory, key_padding_mask=~padding_mask(lengths, 6)[:, 0, 0],
                               average_attn_weights=False)
    out, weights = mha(x, context=memory, mask=padding_mask(lengths, 6), return_weights=True)
    assert out.shape == (2, 3, D) and weights.shape == (2, H, 3, 6)
    assert_close(out, expected)
    assert_close(weights, expected_w)


def test_output_length_follows_queries(mha):
    assert mha(torch.randn(1, 2, D), context=torch.randn(1, 9, D)).shape == (1, 2, D)


def test_growing_cache_equals_full_causal_self_attention(mha):
    x = torch.randn(2, 6, D)
    full = mha(x, mask=causal_mask(6))
    cache = GrowingKV()
    steps = [mha(x[:, t:t + 1], cache=cache) for t in range(6)]
    assert cache.length == 6
    assert_close(torch.cat(steps, dim=1), full)


def test_static_cache_projects_memory_once(mha):
    x, memory = torch.randn(2, 4, D), torch.randn(2, 5, D)
    full = mha(x, context=memory)
    cache = StaticKV()
    calls = []
    handle = mha.k_proj.register_forward_hook(lambda *_: calls.append(1))
    steps = [mha(x[:, :1], context=memory, cache=cache)]
    steps += [mha(x[:, t:t + 1], cache=cache) for t in range(1, 4)]  # memory no longer needed
    handle.remove()
    assert len(calls) == 1
    assert_close(torch.cat(steps, dim=1), full)


def test_rotary_with_cache_matches_full_pass():
    torch.manual_seed(1)
    mha = MultiHeadAttention(D, H, rotary=RotaryEmbedding(D // H)).eval()
    x = torch.randn(1, 5, D)
    full = mha(x, mask=causal_mask(5))
    cache = GrowingKV()
    assert_close(torch.cat([mha(x[:, t:t + 1], cache=cache) for t in range(5)], dim=1), full)


def test_query_and_key_position_hooks_change_only_their_side(mha):
    x, memory = torch.randn(1, 3, D), torch.randn(1, 4, D)
    pos = torch.randn(1, 4, D)
    base = mha(x, context=memory)
    with_keys = mha(x, context=memory, key_pos=pos)
    assert not torch.allclose(base, with_keys)
    # Position vectors go into the key projection only: values (what is returned) are untouched.
    _, w = mha(x, context=memory, key_pos=pos, return_weights=True)
    v = mha.split_heads(mha.v_proj(memory))
    assert_close(with_keys, mha.out_proj(mha.merge_heads(w @ v)))


def test_relative_bias_enters_the_scores(mha):
    rel = RelativePositionBias(H, max_distance=3)
    nn.init.normal_(rel.bias.weight)
    x = torch.randn(1, 4, D)
    bias = rel(torch.arange(4), torch.arange(4))
    assert bias.shape == (1, H, 4, 4)
    assert not torch.allclose(mha(x, bias=bias), mha(x))


def test_shared_kv_projections_are_the_same_parameters(mha):
    other = MultiHeadAttention(D, H)
    other.share_kv_from(mha)
    assert other.k_proj.weight is mha.k_proj.weight and other.v_proj.weight is mha.v_proj.weight
    assert other.q_proj.weight is not mha.q_proj.weight
    with pytest.raises(ValueError, match="width"):
        MultiHeadAttention(8, 2).share_kv_from(mha)


@pytest.mark.parametrize(
    "x_shape, ctx_shape, needle",
    [((2, 5), None, r"\(B, Tq, D=16\)"), ((2, 5, 8), None, "D=16"), ((2, 5, D), (3, 4, D), "context must be")],
)
def test_bad_inputs_raise_value_error(mha, x_shape, ctx_shape, needle):
    context = None if ctx_shape is None else torch.randn(*ctx_shape)
    with pytest.raises(ValueError, match=needle):
        mha(torch.randn(*x_shape), context=context)


def test_cache_misuse_is_explained(mha):
    with pytest.raises(ValueError, match="StaticKV"):
        mha(torch.randn(1, 1, D), context=torch.randn(1, 3, D), cache=GrowingKV())
    with pytest.raises(ValueError, match="needs the context"):
        mha(torch.randn(1, 1, D), cache=StaticKV())
    with pytest.raises(ValueError, match="divide"):
        MultiHeadAttention(10, 3)
