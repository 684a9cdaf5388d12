"""Scaled dot-product attention: readable and fused paths against torch's reference and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from xattn_edu.nn.attention import attention_weights, masked_softmax, scaled_dot_product_attention
from xattn_edu.nn.masks import causal_mask, padding_mask


def _qkv(B=2, h=3, Tq=5, Tk=7, Dk=8, Dv=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, h, Tq, Dk, generator=g, dtype=dtype),
            torch.randn(B, h, Tk, Dk, generator=g, dtype=dtype),
            torch.randn(B, h, Tk, Dv, generator=g, dtype=dtype))


@pytest.mark.parametrize("fused", [False, True])
def test_matches_torch_sdpa_with_tq_ne_tk(fused):
    q, k, v = _qkv(Tq=5, Tk=9)
    assert_close(scaled_dot_product_attention(q, k, v, fused=fused), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("fused", [False, True])
def test_matches_torch_sdpa_with_mask_and_bias(fused):
    q, k, v = _qkv()
    mask = padding_mask(torch.tensor([7, 4]), 7)
    bias = torch.randn(1, 3, 5, 7)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, float("-inf")))
    assert_close(scaled_dot_product_attention(q, k, v, mask, bias=bias, fused=fused), expected)


def test_readable_and_fused_paths_agree_with_causal_mask_and_custom_scale():
    q, k, v = _qkv(Tq=6, Tk=6)
    mask = causal_mask(6)
    readable = scaled_dot_product_attention(q, k, v, mask, scale=0.3)
    fused = scaled_dot_product_attention(q, k, v, mask, scale=0.3, fused=True)
    assert_close(readable, fused)
    assert_close(readable, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3))


def test_weights_rows_sum_to_one_and_default_scale_is_inverse_sqrt_d():
    q, k, v = _qkv(Dk=16)
    out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert weights.shape == (2, 3, 5, 7)
    assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    manual = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(16), dim=-1)
    assert_close(weights, manual)
    assert_close(out, manual @ v)


@pytest.mark.parametrize("fused", [False, True])
def test_padded_keys_have_no_effect(fused):
    q, k, v = _qkv(B=1, Tk=4)
    mask = padding_mask(torch.tensor([4]), 7)  # three extra padded keys
    k_padded = torch.cat([k, 100 * torch.randn(1, 3, 3, 8)], dim=2)
    v_padded = torch.cat([v, 100 * torch.randn(1, 3, 3, 6)], dim=2)
    out = scaled_dot_product_attention(q, k_padded, v_padded, mask, fused=fused)
    assert_close(out, scaled_dot_product_attention(q, k, v))


def test_masked_key_gets_exactly_zero_weight():
    q, k, _ = _qkv()
    mask = padding_mask(torch.tensor([3, 7]), 7)
    weights = attention_weights(q, k, mask)
    assert torch.all(weights[0, :, :, 3:] == 0)


@pytest.mark.parametrize("fused", [False, True])
def test_fully_masked_rows_give_zeros_not_nan_and_finite_gradients(fused):
    q, k, v = (t.requires_grad_() for t in _qkv())
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool)
    mask[0, :, 2] = False  # query 2 of batch 0 sees nothing
    out = scaled_dot_product_attention(q, k, v, mask, fused=fused)
    assert torch.isfinite(out).all()
    assert torch.all(out[0, :, 2] == 0)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_masked_softmax_matches_torch_on_visible_rows_and_zeroes_empty_ones_with_zero_gradient():
    scores = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 3, 5) < 0.6
    mask[0, 1] = False  # a row that may see no key
    mask[1, :, 0] = True  # every other row keeps a key
    weights = masked_softmax(scores, mask)
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    assert_close(weights[mask.any(-1)], expected[mask.any(-1)])
    assert (weights[0, 1] == 0).all()
    (grad,) = torch.autograd.grad((weights * torch.randn_like(weights)).sum(), scores)
    assert torch.isfinite(grad).all() and (grad[0, 1] == 0).all() and (grad[~mask] == 0).all()
    assert_close(masked_softmax(scores, None), torch.softmax(scores, dim=-1))


def test_causal_mask_hides_the_future():
    q, k, v = _qkv(B=1, Tq=6, Tk=6)
    base = scaled_dot_product_attention(q, k, v, causal_mask(6))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 4:] += 5.0
    v2[:, :, 4:] -= 3.0
    changed = scaled_dot_product_attention(q, k2, v2, causal_mask(6))
    assert_close(changed[:, :, :4], base[:, :, :4])
    assert not torch.allclose(changed[:, :, 4:], base[:, :, 4:])


def test_float32_and_float64_agree():
    q, k, v = _qkv(dtype=torch.float64)
    mask = causal_mask(5, 7)
    out64 = scaled_dot_product_attention(q, k, v, mask)
    out32 = scaled_dot_product_attention(q.float(), k.float(), v.float(), mask)
    assert_close(out32.double(), out64, rtol=1e-5, atol=1e-6)


def test_gradcheck_on_a_tiny_case():
    q, k, v = (t.requires_grad_() for t in _qkv(B=1, h=1, Tq=2, Tk=3, Dk=2, Dv=2, dtype=torch.float64))
    mask = torch.tensor([[[[True, True, False], [True, False, True]]]])  # (1, 1, Tq, Tk)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask), (q, k, v))


def test_dropout_only_drops_weights():
    q, k, v = _qkv()
    torch.manual_seed(0)
    out = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert out.shape == (2, 3, 5, 6) and not torch.allclose(out, scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize(
    "shapes, mask_shape, needle",
    [
        (((2, 5, 8), (2, 7, 4), (2, 7, 6)), None, "widths differ"),
        (((2, 5, 8), (2, 7, 8), (2, 6, 6)), None, "lengths differ"),
        (((2, 5, 8), (7, 8), (7, 6)), None, "same rank"),
        (((2, 5, 8), (3, 7, 8), (3, 7, 6)), None, "leading"),
        (((2, 5, 8), (2, 7, 8), (2, 7, 6)), (2, 5, 6), "does not broadcast"),
    ],
)
def test_bad_shapes_raise_value_error_naming_shapes(shapes, mask_shape, needle):
    q, k, v = (torch.randn(*s) for s in shapes)
    mask = None if mask_shape is None else torch.ones(mask_shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=needle) as err:
        scaled_dot_product_attention(q, k, v, mask)
    assert str(tuple(shapes[0])) in str(err.value) or str(mask_shape) in str(err.value)


def test_non_boolean_mask_is_rejected():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(1, 1, 5, 7))
