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


# ----------------------------------------------------------------------------- issue 12: the attention rules


def _issue_12_case():
    """MultiHeadAttention(8, 2) over B = 3, Tq = 3, Tk = 4, memory lengths [4, 2, 1]."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).eval()
    ref = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    copy_attention_weights(ref, attn)
    x, memory = torch.randn(3, 3, 8), torch.randn(3, 4, 8)
    key_mask = torch.arange(4)[None, :] < torch.tensor([4, 2, 1])[:, None]  # (B, Tk): True = real token
    return attn, ref, x, memory, key_mask


@pytest.mark.parametrize("fused", [False, True])
def test_a_b_tk_padding_mask_is_refused_and_key_mask_takes_it(fused):
    attn, ref, x, memory, key_mask = _issue_12_case()
    attn.fused = fused
    with pytest.raises(ValueError, match=r"\(3, 4\) has 2 axes.*padding \(B, 1, 1, Tk\).*key_mask="):
        attn(x, context=memory, mask=key_mask)  # B == Tq: broadcasting alone would read it as (Tq, Tk)
    expected, expected_w = ref(x, memory, memory, key_padding_mask=~key_mask, average_attn_weights=False)
    assert_close(attn(x, context=memory, key_mask=key_mask), expected)
    assert_close(attn(x, context=memory, mask=padding_mask(torch.tensor([4, 2, 1]), 4)), expected)
    out, weights = attn(x, context=memory, key_mask=key_mask, return_weights=True)
    assert_close(out, expected)
    assert_close(weights, expected_w)


@pytest.mark.parametrize("B, Tq", [(3, 3), (3, 1), (1, 3), (1, 1), (2, 5)])
def test_masks_with_fewer_than_four_axes_are_refused_for_every_size(B, Tq):
    attn = MultiHeadAttention(8, 2).eval()
    x, memory = torch.randn(B, Tq, 8), torch.randn(B, 4, 8)
    for shape in [(B, 4), (Tq, 4), (4,), (B, Tq, 4), (2, Tq, 4)]:
        with pytest.raises(ValueError, match="one axis per score axis"):
            attn(x, context=memory, mask=torch.ones(shape, dtype=torch.bool))
        with pytest.raises(ValueError, match="one axis per score axis"):
            attn(x, context=memory, bias=torch.zeros(shape))


def test_cached_decoding_steps_refuse_a_b_tk_mask_and_take_key_mask():
    """Tq = 1 is a cached decoding step: the (B, Tk) mask is refused there too, for both caches."""
    attn, _, x, memory, key_mask = _issue_12_case()
    full = attn(x, context=memory, key_mask=key_mask)
    cache = StaticKV()
    with pytest.raises(ValueError, match="key_mask="):
        attn(x[:, :1], context=memory, mask=key_mask, cache=cache)
    steps = [attn(x[:, t:t + 1], context=memory if t == 0 else None, key_mask=key_mask, cache=cache) for t in range(3)]
    assert_close(torch.cat(steps, dim=1), full)
    growing, target_real = GrowingKV(), torch.tensor([[True] * 3, [True, True, False], [True] * 3])
    full_self = attn(x, mask=causal_mask(3), key_mask=target_real)
    steps = []
    for t in range(3):
        with pytest.raises(ValueError, match="key_mask="):
            attn(x[:, t:t + 1], mask=target_real[:, :t + 1], cache=GrowingKV())
        steps.append(attn(x[:, t:t + 1], key_mask=target_real[:, :t + 1], cache=growing))
    assert_close(torch.cat(steps, dim=1), full_self)


def _rows_without_keys_bias(Tq=3, Tk=4):
    bias = torch.randn(1, 2, Tq, Tk)
    bias[:, :, 1] = float("-inf")  # query 1 sees nothing, in both heads
    return bias


@pytest.mark.parametrize("fused", [False, True])
def test_a_query_whose_keys_the_bias_hides_gets_zero_attention_and_finite_gradients(fused):
    attn, _, x, memory, key_mask = _issue_12_case()
    attn.fused = fused
    bias = _rows_without_keys_bias().requires_grad_()
    x = x.clone().requires_grad_()
    out, weights = attn(x, context=memory, bias=bias, key_mask=key_mask, return_weights=True)
    plain = attn(x, context=memory, bias=bias, key_mask=key_mask)
    assert torch.equal(weights[:, :, 1], torch.zeros(3, 2, 4))
    assert_close(out[:, 1], attn.out_proj.bias.expand(3, -1))  # zero attention output, then out_proj
    assert_close(plain, out)
    (plain.sum() + out.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(bias.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters())


@pytest.mark.parametrize("fused", [False, True])
def test_rows_the_bias_hides_stay_zero_through_both_caches(fused):
    attn, _, x, memory, _ = _issue_12_case()
    attn.fused = fused
    bias = _rows_without_keys_bias()
    full = attn(x, context=memory, bias=bias)
    cache = StaticKV()
    steps = [attn(x[:, t:t + 1], context=memory, bias=bias[:, :, t:t + 1], cache=cache) for t in range(3)]
    assert_close(torch.cat(steps, dim=1), full)
    self_bias = _rows_without_keys_bias(3, 3).tril().masked_fill(~causal_mask(3), float("-inf"))
    full_self = attn(x, bias=self_bias)
    growing = GrowingKV()
    steps = [attn(x[:, t:t + 1], bias=self_bias[:, :, t:t + 1, :t + 1], cache=growing) for t in range(3)]
    assert_close(torch.cat(steps, dim=1), full_self)
    assert_close(full_self[:, 1], attn.out_proj.bias.expand(3, -1))


@pytest.mark.parametrize("fused", [False, True])
def test_cpu_autocast_with_a_float32_relative_position_bias(fused):
    torch.manual_seed(2)
    attn = MultiHeadAttention(D, H, fused=fused).eval()
    rel = RelativePositionBias(H, max_distance=3)
    nn.init.normal_(rel.bias.weight)
    x = torch.randn(2, 5, D)
    bias = rel(torch.arange(5), torch.arange(5))  # float32 (1, h, Tq, Tk)
    expected = attn(x, mask=causal_mask(5), bias=bias)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, mask=causal_mask(5), bias=rel(torch.arange(5), torch.arange(5)))
        out_w, weights = attn(x, mask=causal_mask(5), bias=bias, return_weights=True)
    assert bias.dtype == torch.float32 and out.dtype == torch.bfloat16 and weights.dtype == torch.bfloat16
    assert_close(out.float(), expected, rtol=0.05, atol=0.05)
    assert_close(out, out_w, rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert torch.isfinite(rel.bias.weight.grad).all() and rel.bias.weight.grad.abs().sum() > 0


def test_caches_filled_in_another_precision():
    """Filled outside autocast, used inside: autocast casts q, k, v alike. The reverse is refused."""
    attn, _, x, memory, _ = _issue_12_case()
    cache = StaticKV()
    first = attn(x[:, :1], context=memory, cache=cache)  # float32 keys and values
    with torch.autocast("cpu", dtype=torch.bfloat16):
        second = attn(x[:, 1:2], cache=cache)
    assert_close(torch.cat([first, second.float()], 1), attn(x[:, :2], context=memory), rtol=0.05, atol=0.05)
    half_cache = StaticKV()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x[:, :1], context=memory, cache=half_cache)  # bfloat16 keys and values
    with pytest.raises(ValueError, match=r"query torch.float32, key torch.bfloat16, value torch.bfloat16"):
        attn(x[:, 1:2], cache=half_cache)


@pytest.mark.parametrize("name, shape", [("query_pos", (3, 8)), ("query_pos", (3, 2, 8)), ("key_pos", (4, 8)),
                                         ("key_pos", (4, 3, 8)), ("key_pos", (2, 4, 8))])
def test_position_vectors_must_be_batch_first_with_every_axis(name, shape):
    attn, _, x, memory, _ = _issue_12_case()  # B = 3, Tq = 3, Tk = 4
    with pytest.raises(ValueError, match=rf"{name} must be \(B=3 or 1, T=\d, D=8\), batch first"):
        attn(x, context=memory, **{name: torch.zeros(shape)})
    assert attn(x, context=memory, query_pos=torch.zeros(1, 3, 8), key_pos=torch.zeros(3, 4, 8)).shape == (3, 3, 8)
