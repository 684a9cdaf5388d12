"""The three rules of scaled_dot_product_attention (issue 12): rows with no finite score, dtypes, mask layouts.

Every case runs the readable path, the fused path and ``return_weights=True``; they must agree with each
other (values and gradients) and with a row-by-row reference built on ``F.scaled_dot_product_attention``
that never sees a row without a visible key (so it does not depend on what torch does with such rows).
"""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from xattn_edu.nn.attention import attention_weights, scaled_dot_product_attention

NEG_INF = float("-inf")
PATHS = ["readable", "fused", "weights"]
TOLERANCE = {torch.float64: {}, torch.float32: {"rtol": 1e-4, "atol": 1e-5},
             torch.bfloat16: {"rtol": 0.05, "atol": 0.05}, torch.float16: {"rtol": 0.01, "atol": 0.01}}


def _qkv(B=2, h=2, Tq=3, Tk=4, D=4, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, h, T, D, generator=g, dtype=torch.float64).to(dtype) for T in (Tq, Tk, Tk)]


def _attend(path, q, k, v, mask=None, **kwargs):
    if path == "weights":
        return scaled_dot_product_attention(q, k, v, mask, return_weights=True, **kwargs)[0]
    return scaled_dot_product_attention(q, k, v, mask, fused=path == "fused", **kwargs)


def _reference(q, k, v, mask, bias):
    """Row by row in float64: F.sdpa over the row's visible keys, zeros for a row with none."""
    q, k, v = (t.double() for t in (q, k, v))
    scores_shape = (*q.shape[:-1], k.shape[-2])
    bias = torch.zeros(scores_shape, dtype=torch.float64) if bias is None else bias.double().expand(scores_shape)
    mask = torch.ones(scores_shape, dtype=torch.bool) if mask is None else mask.expand(scores_shape)
    rows = []
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for i in range(q.shape[2]):
                keep = mask[b, h, i] & ~bias[b, h, i].isneginf()
                if not keep.any():
                    rows.append(torch.zeros(v.shape[-1], dtype=torch.float64) * q[b, h, i].sum())
                    continue
                row = F.scaled_dot_product_attention(q[b, h, i][None], k[b, h][keep], v[b, h][keep],
                                                     attn_mask=bias[b, h, i][keep][None])
                rows.append(row[0])
    return torch.stack(rows).reshape(*q.shape[:-1], v.shape[-1])


def _named(what):
    return lambda message: f"{what}: {message}"


def _grads(fn, tensors):
    """Output and gradients of sum(output * fixed random weights) with respect to ``tensors``."""
    tensors = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*tensors)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    (out.double() * upstream).sum().backward()
    return out.detach(), [t.grad for t in tensors]


def _hidden_row_cases():
    """(mask, bias) pairs that leave query 1 of batch 0 (and query 2 everywhere) without a visible key."""
    Tq, Tk = 3, 4
    bias = torch.randn(1, 2, Tq, Tk, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    by_bias = bias.clone()
    by_bias[0, :, 2] = NEG_INF
    by_bias[0, 1, 1] = NEG_INF  # only head 1 of query 1
    mask = torch.ones(2, 1, Tq, Tk, dtype=torch.bool)
    mask[:, :, 2] = False
    mask[0, :, 1] = False
    half_mask = torch.ones(1, 1, Tq, Tk, dtype=torch.bool)
    half_mask[..., 2, :2] = False
    half_bias = bias.clone()
    half_bias[..., 2, 2:] = NEG_INF  # query 2: keys 0-1 masked, keys 2-3 biased away
    return {"mask only": (mask, None), "bias only": (None, by_bias), "mask and bias together": (half_mask, half_bias),
            "bias hides a row the mask leaves": (mask, by_bias)}


def test_issue_12_example_bias_hides_a_row():
    """q (1,1,2,4), k and v (1,1,3,4), bias[..., 1, :] = -inf: zeros on every path, not NaN."""
    q, k, v = _qkv(B=1, h=1, Tq=2, Tk=3)
    bias = torch.zeros(1, 1, 2, 3)
    bias[..., 1, :] = NEG_INF
    for path in PATHS:
        out, (gq, gk, gv, gb) = _grads(lambda a, b, c, d, path=path: _attend(path, a, b, c, bias=d), [q, k, v, bias])
        assert torch.equal(out[..., 1, :], torch.zeros(1, 1, 4)), path
        assert_close(out[..., :1, :], F.scaled_dot_product_attention(q[..., :1, :], k, v), msg=_named(path))
        assert all(torch.isfinite(g).all() for g in (gq, gk, gv, gb)), path
        assert torch.equal(gq[..., 1, :], torch.zeros(1, 1, 4)) and torch.equal(gb[..., 1, :], torch.zeros(1, 1, 3))
    _, weights = scaled_dot_product_attention(q, k, v, bias=bias, return_weights=True)
    assert torch.equal(weights[..., 1, :], torch.zeros(1, 1, 3))
    assert_close(weights[..., 0, :].sum(-1), torch.ones(1, 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(_hidden_row_cases()))
def test_rows_with_no_finite_score_are_zero_with_finite_gradients_on_every_path(case, dtype):
    mask, bias = _hidden_row_cases()[case]
    q, k, v = _qkv(dtype=dtype)
    bias = None if bias is None else bias.to(dtype)
    inputs = [q, k, v] if bias is None else [q, k, v, bias]
    expected, expected_grads = _grads(lambda *t: _reference(t[0], t[1], t[2], mask, t[3] if len(t) > 3 else None),
                                      inputs)
    visible = torch.ones(1, 1, 1, 1, dtype=torch.bool) if mask is None else mask
    visible = visible if bias is None else visible & ~bias.isneginf()
    empty = (~visible.any(-1)).expand(q.shape[:-1])  # (B, h, Tq): the rows with no finite score
    assert empty.any() and not empty.all()
    results = {}
    for path in PATHS:
        out, grads = _grads(lambda *t, path=path: _attend(path, t[0], t[1], t[2], mask,
                                                          bias=t[3] if len(t) > 3 else None), inputs)
        assert out.dtype == dtype and all(torch.isfinite(g).all() for g in grads), path
        assert torch.all(out[empty] == 0), path
        assert_close(out.double(), expected, **TOLERANCE[dtype], msg=_named(path))
        for got, want in zip(grads, expected_grads, strict=True):
            assert_close(got.double(), want.double(), **TOLERANCE[dtype], msg=_named(f"{path} gradient"))
        results[path] = (out, grads)
    for path in ("fused", "weights"):  # the paths agree with the readable one, values and gradients
        assert_close(results[path][0], results["readable"][0], **TOLERANCE[dtype])
        for got, want in zip(results[path][1], results["readable"][1], strict=True):
            assert_close(got, want, **TOLERANCE[dtype])
    weights = attention_weights(q, k, mask, bias=bias)
    assert torch.all(weights[empty] == 0)
    assert_close(weights.sum(-1)[~empty].double(), torch.ones(int((~empty).sum()), dtype=torch.float64),
                 **TOLERANCE[dtype])


def test_key_mask_hiding_a_whole_sentence_gives_zeros_on_every_path():
    q, k, v = _qkv()
    key_mask = torch.tensor([[False] * 4, [True, True, False, True]])
    mask = key_mask[:, None, None, :]
    for path in PATHS:
        out, grads = _grads(lambda a, b, c, path=path: _attend(path, a, b, c, key_mask=key_mask), [q, k, v])
        assert torch.equal(out[0], torch.zeros_like(out[0])) and all(torch.isfinite(g).all() for g in grads)
        assert_close(out, _attend(path, q, k, v, mask))


# ----------------------------------------------------------------------------- dtypes


def _bias(Tq=3, Tk=4, dtype=torch.float32):
    return torch.randn(1, 2, Tq, Tk, generator=torch.Generator().manual_seed(5)).to(dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("qkv_dtype, bias_dtype", [
    (torch.bfloat16, torch.float32),  # autocast activations with a float32 RelativePositionBias
    (torch.float16, torch.float32),
    (torch.float32, torch.float64),
    (torch.float64, torch.float32),
    (torch.float32, torch.bfloat16),
])
def test_a_bias_of_another_float_dtype_is_cast_to_the_scores_dtype(path, qkv_dtype, bias_dtype):
    q, k, v = _qkv(dtype=qkv_dtype)
    mask = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    mask[1, ..., 3] = False
    bias = _bias(dtype=bias_dtype)
    out = _attend(path, q, k, v, mask, bias=bias)
    assert out.dtype == qkv_dtype
    tolerance = TOLERANCE[qkv_dtype] if qkv_dtype != torch.float32 or bias_dtype != torch.bfloat16 else {}
    same_bias = bias.to(qkv_dtype)  # the rule: cast first, then attend
    assert_close(out, _attend("readable", q, k, v, mask, bias=same_bias), **tolerance)
    assert_close(out.double(), _reference(q, k, v, mask, same_bias), **TOLERANCE[qkv_dtype])


@pytest.mark.parametrize("path", PATHS)
def test_a_float32_bias_of_minus_1e9_is_minus_inf_in_float16_on_every_path(path):
    q, k, v = _qkv(dtype=torch.float16)
    bias = torch.zeros(1, 1, 3, 4)
    bias[..., 0, :] = -1e9  # finite in float32, -inf once cast to the float16 scores
    out = _attend(path, q, k, v, bias=bias)
    assert torch.equal(out[..., 0, :], torch.zeros_like(out[..., 0, :]))
    assert torch.isfinite(out).all()


def test_half_precision_scores_are_softmaxed_in_float32_and_cast_back():
    q, k, v = _qkv(Tk=40, dtype=torch.bfloat16)
    _, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    scores = (q @ k.transpose(-2, -1)) * 0.5  # (B, h, Tq, Tk) bf16, scale 1/sqrt(4)
    assert weights.dtype == torch.bfloat16
    assert torch.equal(weights, torch.softmax(scores.float(), dim=-1).bfloat16())


@pytest.mark.parametrize("path", PATHS)
def test_cpu_autocast_runs_every_path_and_they_agree(path):
    q, k, v = _qkv(B=2, h=2, Tq=5, Tk=6, D=8)
    bias = _bias(5, 6)
    bias[..., 4, :] = NEG_INF  # a row with no finite score under autocast too
    mask = torch.ones(2, 1, 5, 6, dtype=torch.bool)
    mask[1, ..., :2] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, grads = _grads(lambda a, b, c, d: _attend(path, a, b, c, mask, bias=d), [q, k, v, bias])
        readable = _attend("readable", q, k, v, mask, bias=bias)
        mixed = _attend(path, q.bfloat16(), k, v.bfloat16(), mask, bias=bias)  # autocast casts k alike
    assert out.dtype == torch.bfloat16 and all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(out[..., 4, :], torch.zeros_like(out[..., 4, :]))
    expected = _reference(*(t.bfloat16() for t in (q, k, v)), mask, bias.bfloat16())
    assert_close(out.double(), expected, **TOLERANCE[torch.bfloat16])
    assert_close(out, readable, **TOLERANCE[torch.bfloat16])
    assert_close(mixed, readable, **TOLERANCE[torch.bfloat16])


def test_query_key_value_of_different_dtypes_are_refused_outside_autocast():
    q, k, v = _qkv()
    for path in PATHS:
        with pytest.raises(ValueError, match=r"share one dtype.*query torch.bfloat16, key torch.float32"):
            _attend(path, q.bfloat16(), k, v)
    with pytest.raises(ValueError, match="floating"):
        scaled_dot_product_attention(q.long(), k.long(), v.long())
    with pytest.raises(ValueError, match="bias must be a floating tensor"):
        scaled_dot_product_attention(q, k, v, bias=torch.zeros(1, 1, 3, 4, dtype=torch.long))


# ----------------------------------------------------------------------------- mask layouts


@pytest.mark.parametrize("B, Tq", [(3, 3), (3, 1), (1, 3), (1, 1), (2, 5)])
@pytest.mark.parametrize("layout", ["(B, Tk)", "(Tq, Tk)", "(Tk,)", "(B, Tq, Tk)"])
def test_masks_with_fewer_axes_than_the_scores_are_refused_for_every_size(B, Tq, layout):
    Tk, h = 4, 3
    q, k, v = _qkv(B=B, h=h, Tq=Tq, Tk=Tk)
    shape = {"(B, Tk)": (B, Tk), "(Tq, Tk)": (Tq, Tk), "(Tk,)": (Tk,), "(B, Tq, Tk)": (B, Tq, Tk)}[layout]
    for path in PATHS:
        with pytest.raises(ValueError, match=r"padding \(B, 1, 1, Tk\), causal \(1, 1, Tq, Tk\).*key_mask="):
            _attend(path, q, k, v, torch.ones(shape, dtype=torch.bool))
        with pytest.raises(ValueError, match="bias of shape"):
            _attend(path, q, k, v, bias=torch.zeros(shape))


def test_the_rule_follows_the_rank_of_the_scores():
    q, k, v = (t[:, 0] for t in _qkv(B=3, Tq=3))  # (B, Tq, D): 3-D scores (B, Tq, Tk)
    with pytest.raises(ValueError, match=r"padding \(B, 1, Tk\), causal \(1, Tq, Tk\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 4, dtype=torch.bool))
    assert scaled_dot_product_attention(q, k, v, torch.ones(3, 1, 4, dtype=torch.bool)).shape == (3, 3, 4)


@pytest.mark.parametrize("path", PATHS)
def test_key_mask_equals_the_four_axis_padding_mask_and_combines_with_mask(path):
    q, k, v = _qkv(B=3, Tq=3)
    key_mask = torch.arange(4)[None, :] < torch.tensor([4, 2, 1])[:, None]  # (B, Tk)
    causal = torch.ones(3, 4, dtype=torch.bool).tril(1)[None, None]  # (1, 1, Tq, Tk)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :] & causal)
    assert_close(_attend(path, q, k, v, causal, key_mask=key_mask), expected)
    assert_close(_attend(path, q, k, v, key_mask=key_mask), _attend(path, q, k, v, key_mask[:, None, None, :]))


@pytest.mark.parametrize("key_mask, needle", [
    (torch.ones(4, 3, dtype=torch.bool), r"\(B, Tk\) = \(3, 4\)"),  # (Tk, B): transposed
    (torch.ones(3, 1, 1, 4, dtype=torch.bool), r"\(B, Tk\) = \(3, 4\)"),
    (torch.ones(3, 4), "boolean"),
])
def test_a_key_mask_of_the_wrong_layout_is_refused(key_mask, needle):
    q, k, v = _qkv(B=3)
    with pytest.raises(ValueError, match=needle):
        scaled_dot_product_attention(q, k, v, key_mask=key_mask)
