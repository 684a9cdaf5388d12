"""Chapter 3 grading: the checks' verdicts and messages, then whole-notebook grading outcomes.

The first tests call the check functions directly (fast): code written another way than the
reference passes every check, the reference itself fails, and each classic mistake fails its check
with its teaching message. The slow tests autograde whole notebooks with nbgrader.
"""

import math
import textwrap

import pytest
import torch

from tests.helpers.grading import grade, grade_scores, replace_cell, replace_solution, solution_notebook
from xattn_edu.chapters.two_modes import checks as grading
from xattn_edu.nn import masks
from xattn_edu.nn.cache import GrowingKV, StaticKV

CHAPTER = "03_two_modes"
POINTS = {
    "padding_mask_tests": 1,
    "causal_mask_tests": 1,
    "mha_self_tests": 2,
    "mha_cross_tests": 2,
    "static_cache_tests": 2,
    "growing_cache_tests": 2,
    "decoder_step_tests": 2,
}


# ----------------------------------------------------------------------------- correct code, written another way

def padding_mask_from_lengths(lengths, max_len):
    keep = torch.zeros(len(lengths), max_len, dtype=torch.bool)
    for row, length in enumerate(lengths.tolist()):
        keep[row, :length] = True
    return keep.view(len(lengths), 1, 1, max_len)


def causal_mask(size):
    rows = torch.arange(size).unsqueeze(1)
    return (torch.arange(size).unsqueeze(0) <= rows).expand(1, 1, size, size)


def attend(query, key, value, mask=None):
    """Per-head attention with einsum; rows with no visible key get zero weights."""
    scores = torch.einsum("bhqd,bhkd->bhqk", query, key) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return torch.einsum("bhqk,bhkd->bhqd", weights, value)


def split(t, heads):
    batch, length, width = t.shape
    return t.view(batch, length, heads, width // heads).permute(0, 2, 1, 3)


def merge(t):
    batch, heads, length, width = t.shape
    return t.permute(0, 2, 1, 3).reshape(batch, length, heads * width)


def multi_head_attention(x, attn, context=None, mask=None):
    source = x if context is None else context
    heads = attn.n_heads
    out = attend(split(attn.q_proj(x), heads), split(attn.k_proj(source), heads),
                 split(attn.v_proj(source), heads), mask)
    return attn.out_proj(merge(out))


class CrossAttentionCache:
    def __init__(self, attn):
        self.attn = attn
        self.key = self.value = self.mask = None

    def fill(self, memory, memory_mask=None):
        self.key = split(self.attn.k_proj(memory), self.attn.n_heads)
        self.value = split(self.attn.v_proj(memory), self.attn.n_heads)
        self.mask = memory_mask

    def step(self, x):
        query = split(self.attn.q_proj(x), self.attn.n_heads)
        return self.attn.out_proj(merge(attend(query, self.key, self.value, self.mask)))


class SelfAttentionCache:
    def __init__(self, attn):
        self.attn = attn
        self.key = self.value = None

    def step(self, x_t):
        heads = self.attn.n_heads
        key, value = split(self.attn.k_proj(x_t), heads), split(self.attn.v_proj(x_t), heads)
        self.key = key if self.key is None else torch.cat([self.key, key], dim=2)
        self.value = value if self.value is None else torch.cat([self.value, value], dim=2)
        query = split(self.attn.q_proj(x_t), heads)
        return self.attn.out_proj(merge(attend(query, self.key, self.value)))


def incremental_decode(layer, x, memory, memory_mask):
    self_cache, cross_cache = SelfAttentionCache(layer.self_attn), CrossAttentionCache(layer.cross_attn)
    cross_cache.fill(memory, memory_mask)
    outputs = []
    for t in range(x.shape[1]):
        h = layer.self_block(x[:, t:t + 1], self_cache.step)
        h = layer.cross_block(h, cross_cache.step)
        outputs.append(layer.ff_block(h, layer.ff))
    return torch.cat(outputs, dim=1)


CORRECT = {
    "padding_mask": padding_mask_from_lengths,
    "causal_mask": causal_mask,
    "mha_self": multi_head_attention,
    "mha_cross": multi_head_attention,
    "static_cache": CrossAttentionCache,
    "growing_cache": SelfAttentionCache,
    "decoder_step": incremental_decode,
}


@pytest.mark.parametrize("check", list(CORRECT))
def test_correct_code_written_another_way_passes_visible_and_hidden_checks(check, capsys):
    getattr(grading, f"check_{check}")(CORRECT[check])
    getattr(grading, f"check_{check}_hidden")(CORRECT[check])
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- the reference is refused

def reference_padding(lengths, max_len):
    return masks.padding_mask(lengths, max_len)


def reference_causal(size):
    from xattn_edu.nn.masks import causal_mask as f

    return f(size)


def reference_mha(x, attn, context=None, mask=None):
    return attn(x, context=context, mask=mask)


def fused_mha(x, attn, context=None, mask=None):
    source = x if context is None else context
    heads = attn.n_heads
    out = torch.nn.functional.scaled_dot_product_attention(
        split(attn.q_proj(x), heads), split(attn.k_proj(source), heads), split(attn.v_proj(source), heads),
        attn_mask=mask)
    return attn.out_proj(merge(out))


def torch_mha(x, attn, context=None, mask=None):
    source = x if context is None else context
    module = torch.nn.MultiheadAttention(attn.d_model, attn.n_heads, batch_first=True)
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        module.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        module.out_proj.weight.copy_(attn.out_proj.weight)
        module.out_proj.bias.copy_(attn.out_proj.bias)
    return module(x, source, source, attn_mask=None if mask is None else ~mask[0, 0])[0]


class ReferenceCrossCache:
    def __init__(self, attn):
        self.attn, self.cache = attn, StaticKV()

    def fill(self, memory, memory_mask=None):
        self.mask = memory_mask
        self.attn(memory[:, :1], context=memory, cache=self.cache)
        self.key = self.cache.key

    def step(self, x):
        return self.attn(x, mask=self.mask, cache=self.cache)


class ReferenceSelfCache:
    def __init__(self, attn):
        self.attn, self.cache = attn, GrowingKV()

    def step(self, x_t):
        out = self.attn(x_t, cache=self.cache)
        self.key = self.cache.key
        return out


def reference_decode(layer, x, memory, memory_mask):
    return layer(x, memory, causal_mask(x.shape[1]), memory_mask)[0]


@pytest.mark.parametrize("check, fn, name", [
    ("padding_mask", reference_padding, "xattn_edu.nn.masks"),
    ("causal_mask", reference_causal, "xattn_edu.nn.masks"),
    ("mha_self", reference_mha, "xattn_edu.nn.heads"),
    ("mha_cross", fused_mha, "torch.nn.functional.scaled_dot_product_attention"),
    ("mha_self_hidden", torch_mha, "torch.nn.MultiheadAttention.forward"),
    ("static_cache", ReferenceCrossCache, "xattn_edu.nn.cache"),
    ("growing_cache", ReferenceSelfCache, "xattn_edu.nn.cache"),
    ("decoder_step", reference_decode, "xattn_edu.nn.model.DecoderLayer.forward"),
])
def test_calling_the_reference_fails_with_its_name(check, fn, name):
    with pytest.raises(AssertionError, match=f"calls the reference implementation `{name}"):
        getattr(grading, f"check_{check}")(fn)


# ----------------------------------------------------------------------------- classic mistakes and their messages

def flipped_padding(lengths, max_len):
    return ~padding_mask_from_lengths(lengths, max_len)


def flat_padding(lengths, max_len):
    return torch.arange(max_len)[None, :] < lengths[:, None]


def off_by_one_padding(lengths, max_len):
    return (torch.arange(max_len)[None, :] <= lengths[:, None])[:, None, None, :]


def float_padding(lengths, max_len):
    return padding_mask_from_lengths(lengths, max_len).float()


def no_diagonal(size):
    return torch.tril(torch.ones(size, size, dtype=torch.bool), diagonal=-1)[None, None]


def torch_style_causal(size):  # nn.Transformer's polarity: True = blocked
    return torch.triu(torch.ones(size, size, dtype=torch.bool), diagonal=1)[None, None]


def upper_causal(size):
    return torch.triu(torch.ones(size, size, dtype=torch.bool))[None, None]


def square_causal(size):
    return causal_mask(size)[0, 0]


def _mha_with(x, attn, context=None, mask=None, *, scale=None, flip=False, heads=None, out=True, swap=False):
    source = x if context is None else context
    if swap:
        x, source = source, x
    heads = heads or attn.n_heads
    query, key, value = split(attn.q_proj(x), heads), split(attn.k_proj(source), heads), split(attn.v_proj(source),
                                                                                                heads)
    scores = query @ key.transpose(-1, -2) * (scale if scale is not None else 1 / math.sqrt(query.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(mask if flip else ~mask, float("-inf"))
    merged = merge(torch.softmax(scores, dim=-1) @ value)
    return attn.out_proj(merged) if out else merged


@pytest.mark.parametrize("check, fn, message", [
    ("padding_mask", flipped_padding, "True marks the padding"),
    ("padding_mask", flat_padding, "add the two singleton axes"),
    ("padding_mask", off_by_one_padding, "compare with `<`"),
    ("padding_mask", float_padding, "masks are boolean"),
    ("causal_mask", no_diagonal, "the diagonal is False"),
    ("causal_mask", torch_style_causal, "True marks the future"),
    ("causal_mask", upper_causal, "sees the future and not the past"),
    ("causal_mask", square_causal, "add two leading singleton axes"),
    ("mha_self", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask, scale=1.0),
     "not scaled"),
    ("mha_self", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask,
                                                                    scale=1 / math.sqrt(attn.d_model)),
     "divided by sqrt.D."),
    ("mha_self", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask, heads=1),
     "one head over all D"),
    ("mha_self", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask, out=False),
     "output projection is missing"),
    ("mha_self", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask, flip=True),
     "wrong way round"),
    ("mha_cross", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask, swap=True),
     "has the memory's length"),
    ("mha_cross", lambda x, attn, context=None, mask=None: _mha_with(x, attn, None, None), "`context` is ignored"),
    ("mha_cross", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, None), "mask is ignored"),
    ("mha_cross_hidden", lambda x, attn, context=None, mask=None: _mha_with(x, attn, context, mask), "gives NaN"),
])
def test_each_classic_mistake_fails_its_check_with_a_teaching_message(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        getattr(grading, f"check_{check}")(fn)


class ReprojectingCache(CrossAttentionCache):
    """Keeps the memory and projects it again at every step: right numbers, wasted work."""

    def fill(self, memory, memory_mask=None):
        super().fill(memory, memory_mask)
        self.memory = memory

    def step(self, x):
        self.fill(self.memory, self.mask)
        return super().step(x)


class FunctionalReprojectingCache(CrossAttentionCache):
    """Re-projects with F.linear, which the projection hooks cannot see; the poisoned weights still catch it."""

    def fill(self, memory, memory_mask=None):
        super().fill(memory, memory_mask)
        self.memory = memory

    def step(self, x):
        heads = self.attn.n_heads
        self.key = split(torch.nn.functional.linear(self.memory, self.attn.k_proj.weight, self.attn.k_proj.bias), heads)
        return super().step(x)


class ForgetfulSelfCache(SelfAttentionCache):
    """Keeps only the newest key and value."""

    def step(self, x_t):
        self.key = self.value = None
        out = super().step(x_t)
        return out


class ForgetfulButGrowing(SelfAttentionCache):
    """Grows the cache but attends only to the new position."""

    def step(self, x_t):
        super().step(x_t)
        heads = self.attn.n_heads
        query, key, value = (split(p(x_t), heads) for p in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj))
        return self.attn.out_proj(merge(attend(query, key, value)))


def recompute_decode(layer, x, memory, memory_mask):
    """No self-attention cache: the whole prefix at every step."""
    outputs = []
    cross_cache = CrossAttentionCache(layer.cross_attn)
    cross_cache.fill(memory, memory_mask)
    for t in range(1, x.shape[1] + 1):
        h = layer.self_block(x[:, :t], lambda y, t=t: multi_head_attention(y, layer.self_attn, mask=causal_mask(t)))
        h = layer.cross_block(h, cross_cache.step)
        outputs.append(layer.ff_block(h, layer.ff)[:, -1:])
    return torch.cat(outputs, dim=1)


def unmasked_decode(layer, x, memory, memory_mask):
    return incremental_decode(layer, x, memory, None)


@pytest.mark.parametrize("check, fn, message", [
    ("static_cache", ReprojectingCache, "the memory was projected again"),
    ("static_cache_hidden", FunctionalReprojectingCache, "step.. still reads the memory"),
    ("growing_cache", ForgetfulSelfCache, "should hold 2 positions"),
    ("growing_cache", ForgetfulButGrowing, "attends only to itself"),
    ("decoder_step", recompute_decode, "one position per step"),
    ("decoder_step", unmasked_decode, "pass memory_mask"),
])
def test_cache_mistakes_fail_with_a_teaching_message(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        getattr(grading, f"check_{check}")(fn)


def test_a_functional_reprojection_passes_the_visible_check_but_not_the_hidden_one():
    grading.check_static_cache(FunctionalReprojectingCache)


# ----------------------------------------------------------------------------- whole notebooks (nbgrader)

@pytest.mark.slow
def test_polarity_diagonal_and_reprojection_mistakes_lose_exactly_their_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # nn.MultiheadAttention's key_padding_mask convention: True = padding
    notebook = replace_solution(notebook, "padding_mask_solution", """
        positions = torch.arange(max_len)
        return (positions[None, :] >= lengths[:, None])[:, None, None, :]
    """)
    # the diagonal left out: a position may not see itself
    notebook = replace_solution(notebook, "causal_mask_solution", """
        return torch.tril(torch.ones(size, size, dtype=torch.bool), diagonal=-1)[None, None]
    """)
    # fill keeps the memory; every step projects it again (the whole cell: the class has a region per method)
    notebook = replace_cell(notebook, "static_cache_solution", textwrap.dedent("""
        class CrossAttentionCache:
            def __init__(self, attn):
                self.attn = attn

            def fill(self, memory, memory_mask=None):
                self.memory, self.mask = memory, memory_mask
                self.key = split_heads(self.attn.k_proj(memory), self.attn.n_heads)
                self.value = split_heads(self.attn.v_proj(memory), self.attn.n_heads)

            def step(self, x):
                self.fill(self.memory, self.mask)
                query = split_heads(self.attn.q_proj(x), self.attn.n_heads)
                return self.attn.out_proj(merge_heads(attend(query, self.key, self.value, self.mask)))
    """))
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "padding_mask_tests": 0, "causal_mask_tests": 0, "static_cache_tests": 0}, \
        report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "True marks the padding" in reasons["padding_mask_tests"]
    assert "the diagonal is False" in reasons["causal_mask_tests"]
    assert "the memory was projected again" in reasons["static_cache_tests"]


@pytest.mark.slow
def test_calling_the_references_scores_zero_on_those_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    notebook = replace_solution(notebook, "padding_mask_solution", """
        from xattn_edu.nn.masks import padding_mask
        return padding_mask(lengths, max_len)
    """)
    notebook = replace_solution(notebook, "mha_solution", """
        return attn(x, context=context, mask=mask)
    """)
    notebook = replace_solution(notebook, "decoder_step_solution", """
        from xattn_edu.nn.masks import causal_mask as full_causal
        return layer(x, memory, full_causal(x.shape[1]), memory_mask)[0]
    """)
    scores = grade_scores(notebook, CHAPTER, tmp_path)
    # the caches reuse attend/split_heads/merge_heads, which still work: only the replaced exercises fail
    assert scores == {**POINTS, "padding_mask_tests": 0, "mha_self_tests": 0, "mha_cross_tests": 0,
                      "decoder_step_tests": 0}
