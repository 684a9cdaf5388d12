"""Chapter 3 grading: the exercise declarations' verdicts and messages, then whole-notebook grading outcomes.

The fast tests call the declarations directly, as the visible test and the verifier do: code written
another way than the reference passes every case on many seeds, the reference's own results pass its
hidden cases on many seeds, a call to a reference fails and names it, and each classic mistake fails
its exercise with its teaching message. The slow tests autograde whole notebooks with nbgrader.
"""

import math
import textwrap

import pytest
import torch

from tests.helpers.grading import grade, replace_cell, replace_solution, solution_notebook
from xattn_edu.chapters.support.exercise import NotDone, Wrong
from xattn_edu.chapters.two_modes import checks as grading
from xattn_edu.chapters.two_modes import reference as ref
from xattn_edu.nn import masks
from xattn_edu.nn.cache import GrowingKV, StaticKV

CHAPTER = "03_two_modes"
POINTS = {
    "padding_mask_tests": 1,
    "causal_mask_tests": 1,
    "mha_self_tests": 2,
    "mha_cross_tests": 2,
    "two_items_tests": 1,
    "head_variance_tests": 1,
    "static_cache_tests": 2,
    "growing_cache_tests": 2,
    "decoder_step_tests": 2,
}
SEEDS = range(12)


def first_failure(grade_id: str, implementation, seed: int = 0, visible_only: bool = False) -> str:
    """The judge's first message over the exercise's cases (visible only, or visible and hidden), "" if all pass."""
    exercise = grading.EXERCISES[grade_id]
    cases = exercise.visible() if visible_only else exercise.cases(seed)
    for case in cases:
        message = exercise.verdict(case, exercise.result_of(implementation, case))
        if message:
            return message
    return ""


# ----------------------------------------------------------------------------- correct code, written another way

def attend(query, key, value, mask=None, scale=None):
    """The notebook's given helper: rows with no visible key get zero weights and finite gradients."""
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.einsum("bhqd,bhkd->bhqk", query, key) * scale
    if mask is None:
        return torch.softmax(scores, dim=-1) @ value
    has_key = mask.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_key, 0.0)
    return (torch.softmax(scores, dim=-1) * has_key) @ value


def padding_mask_from_lengths(lengths, max_len):
    keep = torch.zeros(len(lengths), max_len, dtype=torch.bool)
    for row, length in enumerate(lengths.tolist()):
        keep[row, :length] = True
    return keep.view(len(lengths), 1, 1, max_len)


def causal_mask(size):
    rows = torch.arange(size).unsqueeze(1)
    return (torch.arange(size).unsqueeze(0) <= rows).expand(1, 1, size, size)


def split(t, heads):
    batch, length, width = t.shape
    return t.view(batch, length, heads, width // heads).permute(0, 2, 1, 3)


def merge(t):
    batch, heads, length, width = t.shape
    return t.permute(0, 2, 1, 3).reshape(batch, length, heads * width)


def attending_with(attend_fn):
    """Multi-head attention written with einsum heads around ``attend_fn``."""

    def multi_head_attention(x, attn, context=None, mask=None):
        source = x if context is None else context
        heads = attn.n_heads
        out = attend_fn(split(attn.q_proj(x), heads), split(attn.k_proj(source), heads),
                        split(attn.v_proj(source), heads), mask)
        return attn.out_proj(merge(out))

    return multi_head_attention


multi_head_attention = attending_with(attend)


def two_item_output(value_a, value_b, gap):
    weights = torch.softmax(torch.tensor([gap, 0.0], dtype=torch.float64), dim=0)
    return weights[0] * value_a + weights[1] * value_b


def head_score_variance(d_model, n_heads):
    head_dim = d_model / n_heads
    return head_dim, head_dim ** -0.5


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
    "padding_mask_tests": padding_mask_from_lengths,
    "causal_mask_tests": causal_mask,
    "mha_self_tests": multi_head_attention,
    "mha_cross_tests": multi_head_attention,
    "two_items_tests": two_item_output,
    "head_variance_tests": head_score_variance,
    "static_cache_tests": CrossAttentionCache,
    "growing_cache_tests": SelfAttentionCache,
    "decoder_step_tests": incremental_decode,
}


def test_every_graded_cell_is_declared():
    assert {exercise.grade_id for exercise in grading.EXERCISES} == set(POINTS)


@pytest.mark.parametrize("grade_id", list(CORRECT))
def test_correct_code_written_another_way_passes_every_case_on_many_seeds(grade_id, capsys):
    for seed in SEEDS:
        assert first_failure(grade_id, CORRECT[grade_id], seed) == "", f"seed {seed}"
    grading.check(grade_id, CORRECT[grade_id])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("grade_id", list(POINTS))
def test_the_reference_passes_its_own_hidden_cases_on_many_seeds(grade_id):
    exercise = grading.EXERCISES[grade_id]
    for seed in range(40):
        for case in exercise.cases(seed):
            assert exercise.verdict(case, exercise.expected(case)) == "", (seed, case.label)


def test_hidden_cases_change_with_the_seed():
    first, second = (grading.EXERCISES["mha_cross_tests"].cases(seed) for seed in (1, 2))
    assert not torch.equal(first[-1].args[0], second[-1].args[0])


# ----------------------------------------------------------------------------- the reference is refused

def reference_causal(size):
    from xattn_edu.nn.masks import causal_mask as f

    return f(size)


def fused_mha(x, attn, context=None, mask=None):
    source = x if context is None else context
    heads = attn.n_heads
    out = torch.nn.functional.scaled_dot_product_attention(
        split(attn.q_proj(x), heads), split(attn.k_proj(source), heads), split(attn.v_proj(source), heads),
        attn_mask=mask)
    return attn.out_proj(merge(out))


def torch_mha(x, attn, context=None, mask=None):
    source = x if context is None else context
    module = torch.nn.MultiheadAttention(attn.d_model, attn.n_heads, batch_first=True).double()
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        module.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        module.out_proj.weight.copy_(attn.out_proj.weight)
        module.out_proj.bias.copy_(attn.out_proj.bias)
    return module(x, source, source, attn_mask=None if mask is None else ~mask[0, 0])[0]


class PackageCrossCache:
    def __init__(self, attn):
        self.attn, self.cache = attn, StaticKV()

    def fill(self, memory, memory_mask=None):
        self.mask = memory_mask
        self.attn(memory[:, :1], context=memory, cache=self.cache)
        self.key = self.cache.key

    def step(self, x):
        return self.attn(x, mask=self.mask, cache=self.cache)


class PackageSelfCache:
    def __init__(self, attn):
        self.attn, self.cache = attn, GrowingKV()

    def step(self, x_t):
        out = self.attn(x_t, cache=self.cache)
        self.key = self.cache.key
        return out


@pytest.mark.parametrize("grade_id, implementation, name", [
    ("padding_mask_tests", lambda lengths, max_len: masks.padding_mask(lengths, max_len), "xattn_edu.nn.masks"),
    ("causal_mask_tests", reference_causal, "xattn_edu.nn.masks"),
    ("mha_self_tests", ref.multi_head_attention, "xattn_edu.chapters.two_modes.reference"),
    ("mha_self_tests", lambda x, attn, context=None, mask=None: attn(x, context=context, mask=mask),
     "xattn_edu.nn.heads"),
    ("mha_cross_tests", fused_mha, "torch.nn.functional.scaled_dot_product_attention"),
    ("mha_cross_tests", torch_mha, "torch.nn.MultiheadAttention.forward"),
    ("two_items_tests", ref.two_item_output, "xattn_edu.chapters.two_modes.reference"),
    ("head_variance_tests", ref.head_score_variance, "xattn_edu.chapters.two_modes.reference"),
    ("static_cache_tests", PackageCrossCache, "xattn_edu.nn"),
    ("static_cache_tests", ref.CrossAttentionCache, "xattn_edu.chapters.two_modes.reference"),
    ("growing_cache_tests", PackageSelfCache, "xattn_edu.nn"),
    ("decoder_step_tests", lambda layer, x, memory, memory_mask: layer(x, memory, causal_mask(x.shape[1]),
                                                                       memory_mask)[0],
     "xattn_edu.nn.model.DecoderLayer.forward"),
])
def test_calling_a_reference_fails_and_names_it(grade_id, implementation, name):
    assert f"calls the reference implementation `{name}" in first_failure(grade_id, implementation)


# ----------------------------------------------------------------------------- masks: classic mistakes

@pytest.mark.parametrize("grade_id, implementation, message", [
    ("padding_mask_tests", lambda lengths, max_len: ~padding_mask_from_lengths(lengths, max_len),
     "True marks the padding"),
    ("padding_mask_tests", lambda lengths, max_len: torch.arange(max_len)[None, :] < lengths[:, None],
     "add the two singleton axes"),
    ("padding_mask_tests", lambda lengths, max_len: (torch.arange(max_len)[None, :] <= lengths[:, None])[:, None,
                                                                                                          None, :],
     "compare with `<`"),
    ("padding_mask_tests", lambda lengths, max_len: padding_mask_from_lengths(lengths, max_len).float(),
     "masks are boolean"),
    ("causal_mask_tests", lambda size: torch.tril(torch.ones(size, size, dtype=torch.bool), diagonal=-1)[None, None],
     "the diagonal is False"),
    ("causal_mask_tests", lambda size: torch.triu(torch.ones(size, size, dtype=torch.bool), diagonal=1)[None, None],
     "True marks the future"),
    ("causal_mask_tests", lambda size: torch.triu(torch.ones(size, size, dtype=torch.bool))[None, None],
     "sees the future and not the past"),
    ("causal_mask_tests", lambda size: causal_mask(size)[0, 0], "add two leading singleton axes"),
])
def test_each_mask_mistake_fails_its_visible_check_with_its_message(grade_id, implementation, message):
    assert message in first_failure(grade_id, implementation, visible_only=True)


# ----------------------------------------------------------------------------- multi-head attention: classic mistakes

def mha_with(*, scale=None, heads=None, out=True, flip=False, ignore_mask=False, ignore_context=False, swap=False,
             plain_split=False, plain_merge=False):
    """multi_head_attention with the chosen mistakes."""

    def split_heads(t, n_heads):
        return t.reshape(t.shape[0], n_heads, t.shape[1], -1) if plain_split else split(t, n_heads)

    def merge_heads(t):
        return t.reshape(t.shape[0], t.shape[2], -1) if plain_merge else merge(t)

    def mha(x, attn, context=None, mask=None):
        source = x if context is None or ignore_context else context
        queries_from = x
        if swap:
            queries_from, source = source, queries_from
        n = heads or attn.n_heads
        query, key, value = (split_heads(p(s), n) for p, s in
                             ((attn.q_proj, queries_from), (attn.k_proj, source), (attn.v_proj, source)))
        mask = None if mask is None or ignore_mask else (~mask if flip else mask)
        merged = merge_heads(attend(query, key, value, mask, scale))
        return attn.out_proj(merged) if out else merged

    return mha


def own_flipped_mha(x, attn, context=None, mask=None):
    """Its own masking, -inf where the mask is True: a causal mask's last row has no key left, so NaN."""
    source, heads = x if context is None else context, attn.n_heads
    query, key, value = split(attn.q_proj(x), heads), split(attn.k_proj(source), heads), split(attn.v_proj(source),
                                                                                                heads)
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return attn.out_proj(merge(torch.softmax(scores, dim=-1) @ value))


@pytest.mark.parametrize("grade_id, implementation, message", [
    ("mha_self_tests", mha_with(scale=1.0), "not scaled"),
    ("mha_self_tests", mha_with(scale=1 / math.sqrt(16)), "divided by sqrt(D)"),
    ("mha_self_tests", mha_with(heads=1), "one head over all D"),
    ("mha_self_tests", mha_with(out=False), "output projection is missing"),
    ("mha_self_tests", mha_with(flip=True), "the wrong way round"),
    ("mha_self_tests", own_flipped_mha, "the wrong way round (the NaN rows"),
    ("mha_self_tests", mha_with(plain_split=True), "split with a plain reshape"),
    ("mha_self_tests", mha_with(plain_merge=True), "merged with a plain reshape"),
    ("mha_self_tests", mha_with(plain_split=True, plain_merge=True),
     "the head split and the head merge are both plain reshapes"),
    ("mha_cross_tests", mha_with(plain_split=True, plain_merge=True),
     "the head split and the head merge are both plain reshapes"),
    ("mha_cross_tests", mha_with(swap=True), "has the memory's length"),
    ("mha_cross_tests", mha_with(ignore_context=True), "`context` is ignored"),
    ("mha_cross_tests", mha_with(ignore_mask=True), "mask is ignored"),
])
def test_each_attention_mistake_fails_its_visible_check_with_its_message(grade_id, implementation, message):
    assert message in first_failure(grade_id, implementation, visible_only=True)


def test_swapped_queries_and_memory_of_equal_length_are_named_by_a_hidden_case():
    message = first_failure("mha_cross_tests", lambda x, attn, context=None, mask=None: (
        mha_with(swap=True)(x, attn, context, mask) if context.shape == x.shape else
        multi_head_attention(x, attn, context, mask)))
    assert "queries and memory are swapped" in message


def nan_patched_attend(query, key, value, mask=None):
    """The Chapter 2 trap: an additive -inf mask, softmax, then nan_to_num: right outputs, NaN gradients on rows
    with no visible key (masked_fill would have zeroed those gradients; adding -inf passes the NaN on)."""
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
    if mask is not None:
        scores = scores + torch.zeros(mask.shape, dtype=scores.dtype).masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0) @ value


nan_patched_mha = attending_with(nan_patched_attend)


def test_a_right_output_with_nan_gradients_fails_only_the_hidden_fully_masked_case():
    assert first_failure("mha_cross_tests", nan_patched_mha, visible_only=True) == ""
    message = first_failure("mha_cross_tests", nan_patched_mha)
    assert "gradient of the output" in message and "with respect to `x`" in message and "nan" in message.lower()


@pytest.mark.parametrize("implementation, message", [
    (lambda x, attn, context=None, mask=None: multi_head_attention(x, attn, context, mask).detach(),
     "carries gradients back"),
    (lambda x, attn, context=None, mask=None: torch.from_numpy(
        multi_head_attention(x, attn, context, mask).detach().numpy()), "carries gradients back"),
    (lambda x, attn, context=None, mask=None: (multi_head_attention(x, attn, context, mask), None),
     "carries gradients back"),
])
def test_an_output_that_does_not_carry_gradients_fails(implementation, message):
    assert message in first_failure("mha_self_tests", implementation, visible_only=True)


# ----------------------------------------------------------------------------- the derivations

@pytest.mark.parametrize("grade_id, implementation, message", [
    ("two_items_tests", lambda a, b, gap: (a + b) / 2, "plain average"),
    ("two_items_tests", lambda a, b, gap: two_item_output(b, a, gap), "the two weights are swapped"),
    ("two_items_tests", lambda a, b, gap: gap * a + (1 - gap) * b, "the gap itself used as a weight"),
    ("head_variance_tests", lambda d, h: (float(d), 1 / math.sqrt(d)), "D is the variance of a dot product over all"),
    ("head_variance_tests", lambda d, h: (math.sqrt(d / h), 1 / math.sqrt(d / h)), "that is the standard deviation"),
    ("head_variance_tests", lambda d, h: (d / h, 1 / math.sqrt(d)), "1/sqrt(D) scales for the full width"),
    ("head_variance_tests", lambda d, h: (d / h, h / d), "brings the variance to 1/Dh"),
    ("head_variance_tests", lambda d, h: d / h, "should return a pair"),
])
def test_each_derivation_mistake_fails_with_its_message(grade_id, implementation, message):
    assert message in first_failure(grade_id, implementation)


def test_the_plain_average_passes_the_visible_equal_score_case_but_not_the_rest():
    exercise = grading.EXERCISES["two_items_tests"]
    first = exercise.visible()[0]
    assert exercise.verdict(first, exercise.result_of(lambda a, b, gap: (a + b) / 2, first)) == ""


# ----------------------------------------------------------------------------- caches: classic mistakes

class ReprojectingCache(CrossAttentionCache):
    """Keeps the memory and projects it again at every step: right numbers, wasted work."""

    def fill(self, memory, memory_mask=None):
        super().fill(memory, memory_mask)
        self.memory = memory

    def step(self, x):
        self.fill(self.memory, self.mask)
        return super().step(x)


class FunctionalReprojectingCache(CrossAttentionCache):
    """Re-projects with F.linear, which the projection hooks cannot see; overwriting the memory still catches it."""

    def fill(self, memory, memory_mask=None):
        super().fill(memory, memory_mask)
        self.memory = memory

    def step(self, x):
        heads = self.attn.n_heads
        self.key = split(torch.nn.functional.linear(self.memory, self.attn.k_proj.weight, self.attn.k_proj.bias), heads)
        return super().step(x)


class FlatKeyCache(CrossAttentionCache):
    def fill(self, memory, memory_mask=None):
        super().fill(memory, memory_mask)
        self.key = merge(self.key)

    def step(self, x):
        saved, self.key = self.key, split(self.key, self.attn.n_heads)
        try:
            return super().step(x)
        finally:
            self.key = saved


class LazyCache(CrossAttentionCache):
    """fill only keeps the memory; every step projects it."""

    def fill(self, memory, memory_mask=None):
        self.memory, self.mask = memory, memory_mask

    def step(self, x):
        super().fill(self.memory, self.mask)
        return super().step(x)


class ForgetfulSelfCache(SelfAttentionCache):
    """Keeps only the newest key and value."""

    def step(self, x_t):
        self.key = self.value = None
        return super().step(x_t)


class SelfOnlyCache(SelfAttentionCache):
    """Grows the cache but attends only to the new position."""

    def step(self, x_t):
        super().step(x_t)
        heads = self.attn.n_heads
        query, key, value = (split(p(x_t), heads) for p in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj))
        return self.attn.out_proj(merge(attend(query, key, value)))


class RecomputingSelfCache(SelfAttentionCache):
    """Keeps the inputs and re-projects the whole prefix at every step."""

    def step(self, x_t):
        self.inputs = x_t if self.key is None else torch.cat([self.inputs, x_t], dim=1)
        heads = self.attn.n_heads
        self.key, self.value = split(self.attn.k_proj(self.inputs), heads), split(self.attn.v_proj(self.inputs), heads)
        query = split(self.attn.q_proj(x_t), heads)
        return self.attn.out_proj(merge(attend(query, self.key, self.value)))


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


def refilling_decode(layer, x, memory, memory_mask):
    """A new cross-attention cache at every step."""
    self_cache, outputs = SelfAttentionCache(layer.self_attn), []
    for t in range(x.shape[1]):
        cross_cache = CrossAttentionCache(layer.cross_attn)
        cross_cache.fill(memory, memory_mask)
        h = layer.self_block(x[:, t:t + 1], self_cache.step)
        outputs.append(layer.ff_block(layer.cross_block(h, cross_cache.step), layer.ff))
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("grade_id, implementation, message", [
    ("static_cache_tests", ReprojectingCache, "the memory was projected again"),
    ("static_cache_tests", FunctionalReprojectingCache, "step() still reads the memory"),
    ("static_cache_tests", FlatKeyCache, "(B, h, Tk, Dh)"),
    ("static_cache_tests", LazyCache, "`fill` did not project the memory"),
    ("growing_cache_tests", ForgetfulSelfCache, "should hold 2 positions"),
    ("growing_cache_tests", SelfOnlyCache, "attends only to itself"),
    ("growing_cache_tests", RecomputingSelfCache, "the key projection ran on 5 positions"),
    ("decoder_step_tests", recompute_decode, "one position per step"),
    ("decoder_step_tests", refilling_decode, "the memory was projected 5 times"),
    ("decoder_step_tests", lambda layer, x, memory, memory_mask: incremental_decode(layer, x, memory, None),
     "pass memory_mask"),
])
def test_each_cache_mistake_fails_its_visible_check_with_its_message(grade_id, implementation, message):
    assert message in first_failure(grade_id, implementation, visible_only=True)


# ----------------------------------------------------------------------------- the visible test in the kernel

def test_an_unfinished_exercise_says_so_in_one_line():
    def stub(lengths, max_len):
        raise NotImplementedError()

    with pytest.raises(NotDone, match=r"^Exercise 1 \(padding mask\) is not done yet"):
        grading.check("padding_mask_tests", stub)


def test_an_unfinished_cache_method_counts_as_not_done():
    class Stub(CrossAttentionCache):
        def fill(self, memory, memory_mask=None):
            raise NotImplementedError()

    with pytest.raises(NotDone, match="Exercise 5"):
        grading.check("static_cache_tests", Stub)


def test_a_wrong_answer_raises_one_line_with_the_message():
    with pytest.raises(Wrong, match="both plain reshapes") as raised:
        grading.check("mha_self_tests", mha_with(plain_split=True, plain_merge=True))
    assert "\n" not in str(raised.value)


# ----------------------------------------------------------------------------- whole notebooks (nbgrader)

@pytest.mark.slow
def test_polarity_plain_reshapes_and_reprojection_lose_exactly_their_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # nn.MultiheadAttention's key_padding_mask convention: True = padding
    notebook = replace_solution(notebook, "padding_mask_solution", """
        positions = torch.arange(max_len)
        return (positions[None, :] >= lengths[:, None])[:, None, None, :]
    """)
    # the head split and merge as plain reshapes: every exercise that splits more than one position loses its
    # points; the growing cache splits one position per step, where a plain reshape happens to be right
    notebook = replace_cell(notebook, "heads_solution", textwrap.dedent("""
        def split_heads(t, n_heads):
            return t.reshape(t.shape[0], n_heads, t.shape[1], -1)


        def merge_heads(t):
            return t.reshape(t.shape[0], t.shape[2], -1)
    """))
    # the variance of the full width instead of one head's
    notebook = replace_solution(notebook, "head_variance_solution", "return float(d_model), d_model ** -0.5")
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    lost = ("padding_mask_tests", "mha_self_tests", "mha_cross_tests", "head_variance_tests", "static_cache_tests",
            "decoder_step_tests")
    assert scores == {**POINTS, **dict.fromkeys(lost, 0)}, report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "True marks the padding" in reasons["padding_mask_tests"]
    assert "both plain reshapes" in reasons["mha_self_tests"]
    assert "over all D features" in reasons["head_variance_tests"]


@pytest.mark.slow
def test_reference_calls_and_a_re_reading_cache_lose_exactly_their_exercises(tmp_path):
    notebook = solution_notebook(CHAPTER)
    # the module itself, and the decoder layer's own forward pass (no import: the grader's scan would hold
    # every later cell for review, which is another test's business)
    notebook = replace_solution(notebook, "mha_solution", "return attn(x, context=context, mask=mask)")
    notebook = replace_solution(notebook, "decoder_step_solution",
                                "return layer(x, memory, causal_mask(x.shape[1]), memory_mask)[0]")
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
    assert scores == {**POINTS, "mha_self_tests": 0, "mha_cross_tests": 0, "static_cache_tests": 0,
                      "decoder_step_tests": 0}, report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "calls the reference implementation `xattn_edu.nn.heads" in reasons["mha_cross_tests"]
    assert "the memory was projected again" in reasons["static_cache_tests"]
    assert "`xattn_edu.nn.model.DecoderLayer.forward`" in reasons["decoder_step_tests"]
