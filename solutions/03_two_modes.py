# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 3 — Looking inward, looking across
#
# Chapters 1 and 2 built one lookup: a query, a set of keys, a softmax, a weighted average of values.
# This chapter is about *where the three kinds of vectors are made*. A sentence can compute all of them
# from itself, so that its words inform one another: **self-attention**. Or a decoder that is writing a
# translation can make the queries while the encoder's view of the source makes the keys and values:
# **cross-attention**. The second arrangement has a practical gift. The source does not change while the
# translation is written, so its keys and values can be computed once, like a card index typed up before
# a long writing session, consulted at every step and never retyped.
#
# **By the end of this chapter you can**
#
# 1. tell self- from cross-attention by where Q, K and V are made, predict the output's shape when the two
#    sequences differ in length, and point to where cross-attention sits in an encoder-decoder;
# 2. build the two masks a translation model needs (memory padding, causal) with the right shape and
#    polarity, and say exactly when a mask of the wrong shape fails loudly and when it runs silently;
# 3. write multi-head attention, and derive what one head can return and how large its scores are;
# 4. read a real translator's cross-attention head by head, and watch it form while the model trains;
# 5. write the two decoding caches, check numerically that they give the numbers of a full recomputation,
#    and measure what they save in work and time and what they cost in memory.
#
# **How to work.** Run the cells from the top; *Run All* works at any time. Where you see
# `# YOUR CODE HERE`, replace the `raise NotImplementedError()` line with your code, then run the test
# cell below it. A test cell of an exercise you have not done yet says so in one line (and *Run All* carries
# on); a wrong answer gets one line saying what is wrong. More (hidden) checks run when your notebook is
# graded; grade yourself at any time from a terminal with `xattn grade 03_two_modes.ipynb`.
# **Keep stderr quiet in test cells:** anything a test cell writes to stderr (a warning, a progress bar)
# makes nbgrader give that cell 0 points even when every check passes, so do not print warnings from your
# solutions. This notebook's own progress bars appear only in cells that are not graded. Plan on 60–90
# minutes.
#
# **Mask convention of this course:** a boolean mask is `True` where a query **may attend** to a key.
#
# | exercise | points |
# |---|---|
# | 1. a padding mask from lengths | 1 |
# | 2. the causal mask | 1 |
# | 3. multi-head attention (self and cross) | 4 |
# | 4. two derivations about heads | 2 |
# | 5. the static cross-attention cache | 2 |
# | 6. the growing self-attention cache, and a decoder layer step by step | 4 |

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import inspect
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import heatmap_panels, line_chart
from xattn_edu.chapters.two_modes import cache_memory
from xattn_edu.chapters.two_modes import checks as grading
from xattn_edu.chapters.two_modes import kv_cache as kv_experiment
from xattn_edu.chapters.two_modes import translator as tiny
from xattn_edu.chapters.two_modes.figures import draw_encoder_decoder
from xattn_edu.chapters.two_modes.memory_padding import padding_sensitivity
from xattn_edu.chapters.two_modes.widget import example_from_maps, make_two_modes_widget
from xattn_edu.common.device import describe_device
from xattn_edu.nn import masks
from xattn_edu.nn.attention import scaled_dot_product_attention
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import Residual, Seq2Seq, Seq2SeqConfig

torch.manual_seed(0)
torch.set_num_threads(1)  # this chapter's models are tiny: one thread is enough, and steady on a busy machine
torch.set_printoptions(precision=3, sci_mode=False)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds

# %% [markdown]
# ## 1. Where do Q, K and V come from?
#
# Keep the library picture from Chapter 1: a **query** is a question, **keys** are the spines you scan,
# **values** are what you read. Attention itself never asks where these vectors were made. The two modes
# differ only in that:
#
# * **Self-attention.** One sequence `x` of shape `(B, T, D)` provides everything: `Q = x W_Q`,
#   `K = x W_K`, `V = x W_V`. Each word weighs the other words of its own sentence; that is how an encoder
#   can settle that in "the dog chased the ball until it stopped rolling", *it* is the ball.
# * **Cross-attention.** The queries are made from the decoder's states, `Q = y W_Q` with `y` of shape
#   `(B, Tq, D)`; the keys and values are made from the encoder's output, the **memory** `m` of shape
#   `(B, Tk, D)`: `K = m W_K`, `V = m W_V`. At every position of the translation, the decoder's state
#   becomes a question put to the source, and the source positions answer in proportion to their scores.
#
# The scores `Q Kᵀ` have shape `(B, Tq, Tk)`: one row per query, one column per key. After the softmax,
# each row averages the `Tk` values, so **the output has one row per query**: its length follows the
# queries, never the memory. The package's `MultiHeadAttention` does both; passing `context=memory` is
# what makes it cross-attention.

# %%
D, H = 16, 4
attn = MultiHeadAttention(D, H).eval()
decoder_states = torch.randn(2, 3, D)  # (B=2, Tq=3, D): three target positions written so far
memory = torch.randn(2, 7, D)  # (B=2, Tk=7, D): the encoder's view of a 7-token source

with torch.no_grad():
    self_out, self_w = attn(decoder_states, return_weights=True)
    cross_out, cross_w = attn(decoder_states, context=memory, return_weights=True)
print("self-attention : output", tuple(self_out.shape), " weights (B, h, Tq, Tk) =", tuple(self_w.shape))
print("cross-attention: output", tuple(cross_out.shape), " weights (B, h, Tq, Tk) =", tuple(cross_w.shape))

# %% [markdown]
# Both outputs have 3 positions, the decoder's length. Only the weights show the difference: self-attention
# weighs 3 keys per query, cross-attention 7.
#
# **Where cross-attention sits.** In an encoder-decoder Transformer (the package's `Seq2Seq`), the encoder
# is a stack of self-attention layers over the source. Its **top** layer's output is the memory. Each
# decoder layer runs masked self-attention over the target written so far, then cross-attention, then a
# feed-forward network, and *every* decoder layer's cross-attention, with its own projections, reads that
# same memory. The figure is drawn by the chapter's plotting code.

# %%
draw_encoder_decoder(n_layers=2)
plt.show()

# %% [markdown]
# A figure can be wrong, so the next cell checks it on the package's model: hooks record what enters the key
# projection of each decoder layer's cross-attention during a forward pass, and the cell compares it with
# the encoder's final output.

# %%
check_model = Seq2Seq(Seq2SeqConfig(src_vocab=20, tgt_vocab=20, d_model=16, n_heads=4, n_encoder_layers=3,
                                    n_decoder_layers=3, d_ff=32, dropout=0.0)).eval()
source_ids, target_ids = torch.randint(1, 20, (2, 6)), torch.randint(1, 20, (2, 4))
seen = []
hooks = [layer.cross_attn.k_proj.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
         for layer in check_model.decoder_layers]
with torch.no_grad():
    check_model(source_ids, target_ids)
    encoder_top, _ = check_model.encode(source_ids)
for hook in hooks:
    hook.remove()
for index, keys_input in enumerate(seen, 1):
    print(f"decoder layer {index}: cross-attention keys made from the encoder's top layer:",
          torch.equal(keys_input, encoder_top))

# %% [markdown]
# ## 2. Masks: who may look at whom
#
# A mask removes keys from a query's view: their scores become `-inf` before the softmax, so their
# weights are exactly 0. A translation model needs two masks.
#
# **The memory padding mask.** Sentences in a batch have different lengths, so the shorter ones are padded
# to the longest. The padding positions are not words, yet the encoder still produces a vector for each of
# them, and a cross-attention query must not read those. The mask depends only on which *keys* are real,
# the same for every head and every query, so it has shape `(B, 1, 1, Tk)`: the two ones broadcast over the
# heads and the queries of the scores `(B, h, Tq, Tk)`.
#
# ### Exercise 1 — a padding mask from lengths (1 point)
#
# Write `padding_mask_from_lengths(lengths, max_len)`. `lengths` is an integer tensor `(B,)`; key position
# `j` of sentence `b` is real exactly when `j < lengths[b]`. Return a **boolean** tensor
# `(B, 1, 1, max_len)`, `True` on real tokens. Hint: `torch.arange(max_len)` compared with
# `lengths[:, None]` broadcasts to `(B, max_len)`; then add the two singleton axes.

# %% nbgrader={"grade": false, "grade_id": "padding_mask_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def padding_mask_from_lengths(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Memory padding mask: True where the key is a real token.

    Args:
        lengths: (B,) integer lengths of the sentences.
        max_len: Tk, the padded length of the memory.

    Returns:
        (B, 1, 1, Tk) boolean tensor.
    """
    ### BEGIN SOLUTION
    positions = torch.arange(max_len, device=lengths.device)  # (Tk,)
    real = positions[None, :] < lengths[:, None]  # (B, Tk)
    return real[:, None, None, :]  # (B, 1, 1, Tk)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "padding_mask_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Boolean dtype, shape (B, 1, 1, Tk), True on real tokens, position `length` already padding.
grading.check("padding_mask_tests", padding_mask_from_lengths)
### BEGIN HIDDEN TESTS
grading.record("padding_mask_tests", padding_mask_from_lengths)
### END HIDDEN TESTS

# %% [markdown]
# **The causal mask.** When the decoder is trained it sees the whole target sentence at once (teacher
# forcing), but position `i` must not peek at the words it is supposed to predict. So in the decoder's
# **self-attention**, query `i` may attend to keys `j ≤ i`: itself and the past. That is a lower-triangular
# matrix `(T, T)` with the diagonal included (a word may read itself); as a mask that broadcasts over batch
# and heads it is `(1, 1, T, T)`.
#
# ### Exercise 2 — the causal mask (1 point)
#
# Write `causal_mask(size)`, a boolean `(1, 1, size, size)` tensor, `True` where key `j ≤` query `i`.
# `torch.tril` or a comparison of two `arange`s both work. Mind the diagonal.

# %% nbgrader={"grade": false, "grade_id": "causal_mask_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def causal_mask(size: int) -> torch.Tensor:
    """Decoder self-attention mask: query i may attend to keys 0..i.

    Args:
        size: T, the number of positions.

    Returns:
        (1, 1, T, T) boolean tensor, True on and below the diagonal.
    """
    ### BEGIN SOLUTION
    visible = torch.tril(torch.ones(size, size, dtype=torch.bool))  # (T, T), diagonal included
    return visible[None, None]  # (1, 1, T, T)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "causal_mask_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Boolean, shape (1, 1, T, T), True on and below the diagonal (diagonal included).
grading.check("causal_mask_tests", causal_mask)
### BEGIN HIDDEN TESTS
grading.record("causal_mask_tests", causal_mask)
### END HIDDEN TESTS

# %% [markdown]
# **Why cross-attention needs no causal mask.** The causal mask protects the *target* from its own future.
# The source is not being predicted: it was given in full before decoding began, so every decoder position
# may read every real source word. The decoder's causality is already handled by its self-attention: the
# query at position `i` was built from target words `≤ i` only, so whatever it reads in the source, it cannot
# learn a later target word from it. (Whether the bidirectional *encoder* can leak information is a subtler
# question; Chapter 5 measures it.)
#
# ### What the padding mask protects against, measured
#
# Claim: without the memory padding mask, the cross-attention output depends on how much padding the batch
# happened to add; with the mask it does not. The next cell pads one sentence's memory (5 real positions)
# with 0 to 8 padding positions and compares each output with the unpadded one.

# %%
padding_rows = padding_sensitivity(max_pads=8)
print(f"{'pads':>4} {'weight on padding':>18} {'max change, no mask':>20} {'max change, with mask':>22}")
for row in padding_rows:
    print(f"{row.pads:>4} {row.weight_on_padding:>18.3f} {row.change_without_mask:>20.3e} "
          f"{row.change_with_mask:>22.3e}")

line_chart([row.pads for row in padding_rows],
           {"without mask": [row.change_without_mask for row in padding_rows],
            "with padding mask": [row.change_with_mask for row in padding_rows]},
           xlabel="padding positions added", ylabel="max |output change|",
           title="padding changes the output unless it is masked")
plt.show()

# %% [markdown]
# Without the mask, the queries hand a growing share of their weight to padding (second column) and the
# output drifts away from the unpadded answer. With the mask the change stays at the level of float32
# rounding: the masked keys get weight exactly 0, and the rest of the softmax is unchanged.
#
# ## 3. Many heads
#
# One attention returns one weighted average per query. A sentence holds several relations at once (which
# word is being translated, which noun an article belongs to, what came just before), so Transformers run
# **several attentions side by side**. With `h` heads:
#
# 1. **project** once: `Q = x W_Q`, `K = m W_K`, `V = m W_V` (each `D → D`; in `attn` these are
#    `attn.q_proj`, `attn.k_proj`, `attn.v_proj`, ordinary `nn.Linear` layers);
# 2. **split** the last axis into `h` heads of width `Dh = D / h`: `(B, T, D) → (B, T, h, Dh) →
#    (B, h, T, Dh)` (reshape, then move the head axis in front of the time axis);
# 3. **attend** in each head separately: `softmax(Q Kᵀ / sqrt(Dh)) V`, with the mask, giving
#    `(B, h, Tq, Dh)` (the scale uses the head width `Dh`; Exercise 4 derives why);
# 4. **merge**: `(B, h, Tq, Dh) → (B, Tq, h, Dh) → (B, Tq, D)`;
# 5. **mix** the heads with the output projection `attn.out_proj`.
#
# Splitting costs nothing extra: the same `D × D` projections are read as `h` narrower ones.
#
# Step 3 is the masked attention whose pieces Chapter 2 took apart (the scale, the `-inf` scores, the row
# with no visible key). Here it is given: `attend` below. Read it once. Note how it treats a query that may
# attend to no key at all (a sentence made only of padding): zero weights, and finite gradients too, which
# patching the NaN of a `0/0` softmax afterwards (`torch.nan_to_num`) would not give.

# %% nbgrader={"grade": false, "grade_id": "attend_given", "locked": true, "schema_version": 3, "solution": false, "task": false}
def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None):
    """Scaled dot-product attention per head.

    Args:
        query: (B, h, Tq, Dh); key, value: (B, h, Tk, Dh).
        mask: boolean, broadcastable to (B, h, Tq, Tk), True = may attend; None = every key.

    Returns:
        (B, h, Tq, Dh). A query with no visible key gets zero weights (and zero gradients), never NaN.
    """
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, h, Tq, Tk)
    if mask is None:
        return torch.softmax(scores, dim=-1) @ value
    has_key = mask.any(dim=-1, keepdim=True)  # rows with at least one visible key
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_key, 0.0)  # an empty row: no -inf
    return (torch.softmax(scores, dim=-1) * has_key) @ value  # that row's weights are 0


# %% [markdown]
# ### Exercise 3 — multi-head attention (4 points)
#
# Complete `split_heads` and `merge_heads`, then `multi_head_attention(x, attn, context=None, mask=None)`:
# self-attention when `context` is None, cross-attention (keys and values from `context`) otherwise. Use
# the projections of `attn` and the `attend` above; do not call `attn(...)` itself (that is the answer).
# Keep everything in torch: the checks also compare the **gradients** of your output with the package's,
# because this is the function a model trains through.

# %% nbgrader={"grade": false, "grade_id": "heads_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, h, T, Dh) with Dh = D / h."""
    ### BEGIN SOLUTION
    batch, length, width = t.shape
    return t.reshape(batch, length, n_heads, width // n_heads).transpose(1, 2)  # (B, h, T, Dh)
    ### END SOLUTION


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(B, h, T, Dh) -> (B, T, h * Dh)."""
    ### BEGIN SOLUTION
    batch, heads, length, width = t.shape
    return t.transpose(1, 2).reshape(batch, length, heads * width)  # (B, T, D)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "mha_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def multi_head_attention(x: torch.Tensor, attn: MultiHeadAttention, context: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head self-attention (context None) or cross-attention (keys/values from context).

    Args:
        x: (B, Tq, D) where the queries come from.
        attn: holds the projections q_proj, k_proj, v_proj, out_proj (nn.Linear D -> D) and n_heads.
        context: (B, Tk, D) memory; None means x itself.
        mask: boolean, broadcastable to (B, h, Tq, Tk); True = may attend.

    Returns:
        (B, Tq, D): one row per query.
    """
    ### BEGIN SOLUTION
    source = x if context is None else context
    query = split_heads(attn.q_proj(x), attn.n_heads)  # (B, h, Tq, Dh)
    key = split_heads(attn.k_proj(source), attn.n_heads)  # (B, h, Tk, Dh)
    value = split_heads(attn.v_proj(source), attn.n_heads)  # (B, h, Tk, Dh)
    return attn.out_proj(merge_heads(attend(query, key, value, mask)))  # (B, Tq, D)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "mha_self_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Self-attention against the package's MultiHeadAttention with the same weights, without and with a causal
# mask, output and gradient. Messages name the usual mistakes: a missing or wrong scale, one big head, a head
# split or merge (or both) done as a plain reshape, a missing output projection, an inverted mask.
grading.check("mha_self_tests", multi_head_attention)
### BEGIN HIDDEN TESTS
grading.record("mha_self_tests", multi_head_attention)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "mha_cross_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Cross-attention: 3 queries over 7 memory positions, without and with masks, output and gradients with
# respect to x and context. The output must have the queries' length; keys and values come from the context.
grading.check("mha_cross_tests", multi_head_attention)
### BEGIN HIDDEN TESTS
grading.record("mha_cross_tests", multi_head_attention)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4 — two derivations about heads (2 points)
#
# **(a) One head, two items.** Suppose only two keys matter to a query: key `a` scores `s_a`, key `b`
# scores `s_b`, every other key far less. Write what the head returns as a function of the gap
# `gap = s_a − s_b`: `two_item_output(value_a, value_b, gap)` returns the output vector. Derive it from the
# softmax first (what are the two weights, and why does only the gap matter?); then check yourself: with
# `gap = 0` the answer is the average of the two values.
#
# **(b) How big are one head's scores?** Let the `D` components of a query and a key be independent, each
# with mean 0 and variance 1. One head's raw score is the dot product of their `Dh = D / h` components that
# belong to it. Write `head_score_variance(d_model, n_heads)` returning the pair
# `(variance of one head's raw score, the factor that brings that variance to 1)`. (Variance of a sum of
# independent terms: the sum of their variances; the product of two independent mean-0, variance-1 numbers
# has variance 1; multiplying by `c` multiplies a variance by `c²`.)

# %% nbgrader={"grade": false, "grade_id": "two_items_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def two_item_output(value_a: torch.Tensor, value_b: torch.Tensor, gap: float) -> torch.Tensor:
    """What one head returns when only keys a and b matter and s_a - s_b = gap.

    Args:
        value_a, value_b: the two values, same shape (d_v,).
        gap: s_a - s_b, a float.

    Returns:
        The head's output, shape (d_v,).
    """
    ### BEGIN SOLUTION
    weight_a = 1.0 / (1.0 + math.exp(-gap))  # e^{s_a} / (e^{s_a} + e^{s_b}), divided through by e^{s_a}
    return weight_a * value_a + (1.0 - weight_a) * value_b
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "two_items_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Equal scores (gap 0) and a gap of log 9; hidden: random values and gaps, negative ones included.
grading.check("two_items_tests", two_item_output)
### BEGIN HIDDEN TESTS
grading.record("two_items_tests", two_item_output)
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "head_variance_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def head_score_variance(d_model: int, n_heads: int) -> tuple[float, float]:
    """Variance of one head's raw score q·k (independent components, mean 0, variance 1), and the scale to 1.

    Returns:
        (variance, scale) such that scale * (q·k) has variance 1.
    """
    ### BEGIN SOLUTION
    head_dim = d_model // n_heads
    return float(head_dim), 1.0 / math.sqrt(head_dim)  # Dh products of variance 1 each
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "head_variance_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# D = 512 with 8 heads, D = 64 with 4 heads; hidden: other widths and head counts.
grading.check("head_variance_tests", head_score_variance)
### BEGIN HIDDEN TESTS
grading.record("head_variance_tests", head_score_variance)
### END HIDDEN TESTS

# %% [markdown]
# Two consequences, each checked below with the package's own attention rather than your functions:
#
# * **(a)** Whatever the gap, one head returns `w · value_a + (1 − w) · value_b`: somewhere on the segment
#   between the two values, never both in full. Asked for two items it returns their blend, and at `gap = 0`
#   exactly their average, the same output as a single item whose value happened to be that average. Two
#   heads, each with its own query, can each take one item and hand both on, side by side after the merge.
# * **(b)** One head's scores have variance `Dh`, not `D`, which is why multi-head attention scales by
#   `1/sqrt(Dh)`. Scaling by `1/sqrt(D)` instead would shrink every head's scores towards 0 and blur its
#   softmax more the more heads there are.

# %%
values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # value_a, value_b (one row each)
keys = torch.eye(2) * math.sqrt(2)  # one-hot keys; the sqrt(2) undoes attention's 1/sqrt(Dh) with Dh = 2
print("one head, over the two values (the coefficients always add up to 1):")
for gap in (-4.0, 0.0, 4.0):
    query = torch.tensor([[gap / 2, -gap / 2]])  # scores s_a - s_b = gap
    out = scaled_dot_product_attention(query, keys, values)[0]
    print(f"  gap {gap:+.0f}: output {out.numpy().round(3)} (sum of coefficients {float(out.sum()):.3f})")
two_heads = torch.cat([scaled_dot_product_attention(torch.tensor([[g / 2, -g / 2]]), keys, values)[0]
                       for g in (12.0, -12.0)])  # head 1 picks value_a, head 2 picks value_b
print("two heads, one item each, merged side by side:", two_heads.numpy().round(3))

scores_rng = torch.Generator().manual_seed(0)
d_model, n_heads, samples = 512, 8, 20_000
q_samples = torch.randn(samples, d_model, generator=scores_rng)
k_samples = torch.randn(samples, d_model, generator=scores_rng)
per_head = (q_samples * k_samples).reshape(samples, n_heads, d_model // n_heads).sum(-1)  # (samples, h)
head_dim = d_model // n_heads
print(f"\nD = {d_model}, h = {n_heads}, Dh = {head_dim}: variance of a full-width score "
      f"{float((q_samples * k_samples).sum(-1).var()):.0f}, of one head's score {float(per_head.var()):.1f}; "
      f"one head's score divided by sqrt(Dh): {float((per_head / math.sqrt(head_dim)).var()):.3f}, "
      f"divided by sqrt(D): {float((per_head / math.sqrt(d_model)).var()):.3f} (1/h = {1 / n_heads:.3f})")

# %% [markdown]
# ## 4. What trained heads do: a tiny translator
#
# Random heads only differ by chance. To see what heads *learn*, the next cell trains the package's own
# translator (`Seq2Seq`, 2 encoder and 2 decoder layers of 4 heads, `D = 64`) on the package's synthetic
# English→German corpus with the package's training code, then scores it on held-out sentences: how many it
# translates exactly, and the **alignment error rate** (AER, 0 is best) of its cross-attention against the
# corpus's gold word links. The full run takes about a minute on two CPU cores; with `XATTN_FAST=1` (tests,
# grading) it trains only a handful of steps, and the maps below are then mostly unformed. Like the whole
# chapter, it runs on one CPU thread (set in the first cell).
#
# This is also the chapter's **watch it learn** cell: the model is kept at a few points during training, so
# you can see the cross-attention of one sentence take shape.

# %%
budget = tiny.FAST_BUDGET if FAST else tiny.FULL_BUDGET
translator = tiny.train_tiny_translator(budget)
layer, head, head_aer = translator.best_head
print(f"{budget.steps} training steps{' (fast mode: a handful only)' if FAST else ''} in "
      f"{translator.seconds:.0f} s on {describe_device(torch.device('cpu'))}")
print(f"validation: {translator.exact_match:.1f} % translated exactly, AER {translator.aer:.3f} (heads averaged), "
      f"best single head: layer {layer + 1} head {head + 1} (AER {head_aer:.3f})")
print("its translation of", repr(tiny.EXAMPLE_SOURCE), "->", repr(translator.translate(tiny.EXAMPLE_SOURCE)))

# %% [markdown]
# The example sentence is *yesterday the cat saw the mouse .*, whose German is *Gestern hat die Katze die
# Maus gesehen .*: the English simple past becomes the German perfect, split in two. *hat* comes second (a
# fronted adverb pushes the verb before the subject), so while writing *hat* the decoder has to look
# **ahead** in the source, past *the cat*, to *saw*; *gesehen* goes last and looks **back** to *saw*, past
# *the mouse*. Below: the loss as training goes, and the best head's cross-attention for this sentence at
# each kept step, on one 0–1 colour scale. Each row is one step of writing German (the word written at that
# step), each column a source token the encoder made keys and values for (`<eos>` included).

# %%
source_tokens = [*tiny.EXAMPLE_SOURCE.split(), "<eos>"]
target_tokens = tiny.EXAMPLE_TARGET.split()
source_ids = translator.encode_source(tiny.EXAMPLE_SOURCE)
target_ids = translator.encode_target(tiny.EXAMPLE_TARGET)
snapshot_maps = [(step, tiny.cross_attention_maps(model, source_ids, target_ids, translator.bos_id))
                 for step, model in translator.snapshots]

line_chart([step for step, _ in translator.history], {"training loss": [loss for _, loss in translator.history]},
           xlabel="training step", ylabel="loss per target token (label-smoothed)",
           title="the loss falls as the translator trains")
plt.show()
heatmap_panels([maps[layer, head] for _, maps in snapshot_maps], target_tokens, source_tokens,
               titles=[f"after {step} steps" for step, _ in snapshot_maps], ncols=len(snapshot_maps),
               xlabel="English source (keys)", ylabel="German being written",
               suptitle=f"watch it learn: layer {layer + 1}, head {head + 1} on one sentence")
plt.show()

# %% [markdown]
# Now every head of the trained model, both layers, on one shared scale: each head reads the same source
# its own way.

# %%
final_maps = snapshot_maps[-1][1]  # (L, h, Tt, Ts)
n_layers, n_heads_trained = final_maps.shape[:2]
heatmap_panels(final_maps.flatten(0, 1), target_tokens, source_tokens,
               titles=[f"layer {i + 1}, head {j + 1}" for i in range(n_layers) for j in range(n_heads_trained)],
               ncols=n_heads_trained, xlabel="English source (keys)", ylabel="German being written",
               suptitle="cross-attention of every head of the trained translator")
plt.show()

# %% [markdown]
# What the maps claim, checked: for each head, which source word gets its largest weight while the decoder
# writes *hat* and while it writes *gesehen* (the gold link of both is *saw*), how many of the sentence's
# gold links the head's strongest weights hit, and how far apart the heads of one layer are (the largest
# difference between two heads' weights on the same cell).

# %%
gold = {target: source for source, target in tiny.EXAMPLE_LINKS}  # target position -> linked source position
for i in range(n_layers):
    spread = max(float((final_maps[i, a] - final_maps[i, b]).abs().max())
                 for a in range(n_heads_trained) for b in range(a))
    print(f"layer {i + 1}: largest difference between two heads' weights {spread:.2f}")
    for j in range(n_heads_trained):
        hits = sum(tiny.strongest_source(final_maps, i, j, t) == s for t, s in gold.items())
        reads = {word: source_tokens[tiny.strongest_source(final_maps, i, j, target_tokens.index(word))]
                 for word in ("hat", "gesehen")}
        print(f"  head {j + 1}: writing 'hat' it reads {reads['hat']!r:10} writing 'gesehen' it reads "
              f"{reads['gesehen']!r:10} gold links hit: {hits} of {len(gold)}")

# %% [markdown]
# After the full run you should find heads that follow the gold links almost word for word, *hat → saw* and
# *gesehen → saw* included (cross-attention can read the source in any order), beside heads that spread their
# weight or read something else, such as a neighbouring word, the full stop or `<eos>`. Which head does what
# changes with the random seed; that heads of one layer differ is what the printed differences show.
#
# ## 5. Three pitfalls
#
# **Swapped arguments.** `nn.MultiheadAttention.forward(query, key, value)` takes the *decoder* states as
# `query` and the *memory* as `key` and `value`. Swap them and nothing fails; you get cross-attention the
# wrong way round, with the memory's length.

# %%
torch_attn = nn.MultiheadAttention(D, H, batch_first=True).eval()
with torch.no_grad():
    right, _ = torch_attn(decoder_states, memory, memory)  # query = decoder, key = value = memory
    swapped, _ = torch_attn(memory, decoder_states, decoder_states)  # the memory asks the decoder
print("decoder states", tuple(decoder_states.shape), " memory", tuple(memory.shape))
print("right order  :", tuple(right.shape), " <- one row per decoder position")
print("swapped order:", tuple(swapped.shape), " <- the memory's length: this would not fit the decoder")

# %% [markdown]
# **Mask shape and broadcasting.** The scores are `(B, h, Tq, Tk)`. Broadcasting lines shapes up from the
# right, so a padding mask of shape `(B, Tk)` puts its `B` axis on the **query** axis `Tq`. What follows
# depends on `Tq`:
#
# * `Tq = B` (and `B > 1`): it runs, and is wrong: query `i` of *every* sentence gets sentence `i`'s padding;
# * `Tq = 1`, the cached decoding step of Section 6: it runs, and the result gains an axis. The `(B, h, 1, Tk)`
#   scores broadcast against `(B, Tk)` to `(B, h, B, Tk)`: every query is copied `B` times, each copy masked
#   with another sentence's padding, so a `(3, 2, 1, 4)` query gives a `(3, 2, 3, 4)` output;
# * `B = 1`: it happens to be right;
# * any other `Tq`: broadcasting fails with an error.
#
# So an error is the exception, not the rule. Give a mask one axis per score axis, `(B, 1, 1, Tk)`, and it
# is right for every `Tq`. The next cell runs all four cases through `attend` (which, like most attention
# code, trusts broadcasting) and checks each against the correctly shaped mask.

# %%
def mask_shape_case(batch: int, queries: int, keys_len: int = 4, heads: int = 2, width: int = 4) -> str:
    """Attend with a flat (B, Tk) padding mask and report what happens, against the (B, 1, 1, Tk) mask."""
    generator = torch.Generator().manual_seed(batch * 10 + queries)
    query = torch.randn(batch, heads, queries, width, generator=generator)  # (B, h, Tq, Dh)
    key, value = (torch.randn(batch, heads, keys_len, width, generator=generator) for _ in range(2))
    good = masks.padding_mask(torch.arange(batch) % (keys_len - 1) + 2, keys_len)  # (B, 1, 1, Tk)
    wanted = attend(query, key, value, good)
    try:
        got = attend(query, key, value, good[:, 0, 0, :])  # the flat (B, Tk) mask
    except RuntimeError:
        return "error"
    if got.shape != wanted.shape:
        return f"runs silently, output {tuple(got.shape)} instead of {tuple(wanted.shape)}"
    return "runs, right" if torch.allclose(got, wanted) else "runs silently, wrong values"


for batch, queries in ((2, 2), (3, 1), (1, 5), (2, 3), (3, 5)):
    print(f"B = {batch}, Tq = {queries}: (B, Tk) mask {mask_shape_case(batch, queries)}")

# %% [markdown]
# The package does not trust broadcasting here. Its attention refuses, for every size, a mask with fewer
# axes than the scores, and takes a `(B, Tk)` padding mask through a separate argument, `key_mask`
# (`True` = a real token, this course's polarity). The next cell checks both against the correctly shaped
# mask, at `Tq` = 2, 1 and 3.

# %%
good = masks.padding_mask(torch.tensor([7, 4]), 7)  # (B, 1, 1, Tk)
flat = good[:, 0, 0, :]  # (B, Tk)
with torch.no_grad():
    out_good = attn(decoder_states[:, :2], context=memory, mask=good)
    out_key_mask = attn(decoder_states[:, :2], context=memory, key_mask=flat)
print("key_mask=flat: max |difference| from the correct output =", f"{(out_good - out_key_mask).abs().max():.1e}")
refusals = []
for queries in (decoder_states[:, :2], decoder_states[:, :1], decoder_states):  # Tq = 2, 1 and 3
    try:
        attn(queries, context=memory, mask=flat)
    except ValueError as err:
        refusals.append(str(err).split("; query")[0])
print(f"mask=flat at Tq = 2, 1 and 3: {len(refusals)} refusals, each saying:\n{refusals[0]}")
assert torch.allclose(out_good, out_key_mask, atol=1e-6) and len(refusals) == 3

# %% [markdown]
# (The package's own attention refuses masks with fewer axes than the scores for this reason; your own
# code, and code you read, may not.)
#
# **Polarity.** This course (and `F.scaled_dot_product_attention` with a boolean `attn_mask`) uses `True` =
# may attend. `nn.MultiheadAttention`'s `key_padding_mask` and `attn_mask`, and
# `nn.Transformer.generate_square_subsequent_mask`, use the opposite: `True` (or `-inf`) = blocked. Passing
# our mask to `nn.MultiheadAttention` unchanged hides exactly the real tokens. Flip it with `~`.

# %%
with torch.no_grad():
    torch_attn.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    torch_attn.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
    torch_attn.out_proj.weight.copy_(attn.out_proj.weight)
    torch_attn.out_proj.bias.copy_(attn.out_proj.bias)
    partial = masks.padding_mask(torch.tensor([5, 4]), 7)  # (B, 1, 1, Tk): both sentences padded
    ours = attn(decoder_states, context=memory, mask=partial)
    flipped, _ = torch_attn(decoder_states, memory, memory, key_padding_mask=~partial[:, 0, 0])  # True = padding
    unflipped, w_unflipped = torch_attn(decoder_states, memory, memory, key_padding_mask=partial[:, 0, 0])
print("with ~mask    : max |difference| from ours =", f"{(ours - flipped).abs().max():.1e}")
print("mask unchanged: max |difference| from ours =", f"{(ours - unflipped).abs().max():.3f}",
      "| weight on sentence 2's real tokens:", f"{w_unflipped[1, :, :4].sum(-1).max():.3f}")

# %% [markdown]
# ## 6. Keys and values that stay put: caching while decoding
#
# At inference time the decoder writes one token per step, each step feeding the words so far. Look at what
# each step recomputes if nothing is kept:
#
# * **cross-attention** projects the memory into keys and values, `2 · Tk` projected positions, at every
#   step, although the memory is *the same tensor every time*: the encoder ran once, before decoding began;
# * **self-attention** projects keys and values for every earlier target position again, although those
#   positions, and everything computed from them, have not changed (the causal mask means an old position
#   never sees a new one).
#
# Hence two caches:
#
# * a **static** cache for cross-attention: project the memory into keys and values **once** (`fill`),
#   then each step only projects its new query. The card index is typed once; each step brings a new
#   question to it;
# * a **growing** cache for self-attention: each step projects only the *new* position and appends its key
#   and value; the new query attends to everything in the cache. The newest position is the last one, so no
#   causal mask is needed: the cache holds no future.
#
# ### Exercise 5 — the static cross-attention cache (2 points)
#
# Complete `CrossAttentionCache`. `fill(memory, memory_mask)` projects the memory with `attn.k_proj` and
# `attn.v_proj`, splits the heads and stores them as `self.key` and `self.value` `(B, h, Tk, Dh)` (and the
# mask). `step(x)` takes the new decoder positions `x` `(B, t, D)` (usually `t = 1`) and returns their
# cross-attention output `(B, t, D)` from the stored keys and values. Reuse `split_heads`, `merge_heads` and
# `attend`. The test counts how often the memory is projected.

# %% nbgrader={"grade": false, "grade_id": "static_cache_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class CrossAttentionCache:
    """Cross-attention whose memory keys/values are projected once and reused at every decoding step."""

    def __init__(self, attn: MultiHeadAttention):
        self.attn = attn
        self.key = None  # (B, h, Tk, Dh) after fill
        self.value = None  # (B, h, Tk, Dh) after fill
        self.mask = None  # memory mask, broadcastable to (B, h, t, Tk), or None

    def fill(self, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> None:
        """Project the memory (B, Tk, D) once; keep its keys, values and mask."""
        ### BEGIN SOLUTION
        self.key = split_heads(self.attn.k_proj(memory), self.attn.n_heads)  # (B, h, Tk, Dh)
        self.value = split_heads(self.attn.v_proj(memory), self.attn.n_heads)  # (B, h, Tk, Dh)
        self.mask = memory_mask
        ### END SOLUTION

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-attention output (B, t, D) for the new decoder positions x (B, t, D)."""
        ### BEGIN SOLUTION
        query = split_heads(self.attn.q_proj(x), self.attn.n_heads)  # (B, h, t, Dh)
        return self.attn.out_proj(merge_heads(attend(query, self.key, self.value, self.mask)))  # (B, t, D)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "static_cache_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# fill once, then 4 steps of one query: the steps together must equal full cross-attention, `key` must be
# (B, h, Tk, Dh), attn.k_proj / attn.v_proj must run exactly once (inside fill), and step() must not read the
# memory again (the check overwrites it after fill).
grading.check("static_cache_tests", CrossAttentionCache)
### BEGIN HIDDEN TESTS
grading.record("static_cache_tests", CrossAttentionCache)
### END HIDDEN TESTS

# %% [markdown]
# ### The decoder layer you will drive
#
# Exercise 6 runs one of the package's `DecoderLayer`s step by step, so here is its structure. It holds
# three sublayers, each wrapped in a residual block: causal self-attention (`self_attn` in `self_block`),
# cross-attention (`cross_attn` in `cross_block`) and a feed-forward network (`ff` in `ff_block`).

# %%
demo_layer = Seq2Seq(Seq2SeqConfig(src_vocab=2, tgt_vocab=2, d_model=16, n_heads=4, d_ff=32, n_encoder_layers=1,
                                   n_decoder_layers=1, dropout=0.0)).decoder_layers[0]
print(demo_layer)
print(inspect.getsource(Residual.forward))

# %% [markdown]
# A block is called as `block(h, sublayer)` with any function `sublayer: (B, t, D) → (B, t, D)`. With the
# default pre-norm layout it returns `h + sublayer(norm(h))`. A full forward pass of the layer is, in
# order:
#
# ```
# h = layer.self_block(x, lambda y: layer.self_attn(y, mask=causal))          # (B, T, D)
# h = layer.cross_block(h, lambda y: layer.cross_attn(y, context=memory, mask=memory_mask))
# h = layer.ff_block(h, layer.ff)
# ```
#
# Decoding step by step keeps the same three blocks and swaps the two attentions for your caches' `step`
# methods.
#
# ### Exercise 6 — the growing self-attention cache, and a decoder layer step by step (4 points)
#
# First `SelfAttentionCache`: `step(x_t)` receives **one** new position `x_t` `(B, 1, D)`, projects its
# query, key and value, appends the key and value to `self.key` / `self.value` along the time axis
# (`torch.cat(..., dim=2)`), and returns the attention of the new query over everything stored, `(B, 1, D)`.
#
# Then `incremental_decode(layer, x, memory, memory_mask)`. Build one `SelfAttentionCache(layer.self_attn)`
# and one `CrossAttentionCache(layer.cross_attn)` (filled once), then feed `x` `(B, T, D)` **one position
# at a time** through the three blocks, passing your caches' `step` methods as the sublayers. Return the
# outputs of all steps, `(B, T, D)`: they must equal the layer's full forward pass with a causal mask.

# %% nbgrader={"grade": false, "grade_id": "growing_cache_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class SelfAttentionCache:
    """Decoder self-attention fed one position per step; keys and values of earlier steps are kept."""

    def __init__(self, attn: MultiHeadAttention):
        self.attn = attn
        self.key = None  # (B, h, t, Dh) after t steps
        self.value = None  # (B, h, t, Dh) after t steps

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """Self-attention output (B, 1, D) of the new position x_t (B, 1, D) over every position so far."""
        ### BEGIN SOLUTION
        heads = self.attn.n_heads
        key, value = split_heads(self.attn.k_proj(x_t), heads), split_heads(self.attn.v_proj(x_t), heads)
        self.key = key if self.key is None else torch.cat([self.key, key], dim=2)  # (B, h, t, Dh)
        self.value = value if self.value is None else torch.cat([self.value, value], dim=2)
        query = split_heads(self.attn.q_proj(x_t), heads)  # (B, h, 1, Dh)
        return self.attn.out_proj(merge_heads(attend(query, self.key, self.value)))  # (B, 1, D)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "growing_cache_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# 5 steps of one position: after step t the cache holds t keys; the steps together must equal causal
# self-attention over all 5 positions; each step projects only the new position.
grading.check("growing_cache_tests", SelfAttentionCache)
### BEGIN HIDDEN TESTS
grading.record("growing_cache_tests", SelfAttentionCache)
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "decoder_step_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def incremental_decode(layer, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
    """Run a DecoderLayer one position at a time with both caches.

    Args:
        layer: xattn_edu.nn.model.DecoderLayer (eval mode).
        x: (B, T, D) decoder inputs of all T steps.
        memory: (B, Tk, D) encoder output; memory_mask: (B, 1, 1, Tk), True = real token.

    Returns:
        (B, T, D), equal to the layer's full forward pass with a causal mask.
    """
    ### BEGIN SOLUTION
    self_cache = SelfAttentionCache(layer.self_attn)
    cross_cache = CrossAttentionCache(layer.cross_attn)
    cross_cache.fill(memory, memory_mask)  # once, before the first step
    outputs = []
    for t in range(x.shape[1]):
        h = layer.self_block(x[:, t:t + 1], self_cache.step)  # (B, 1, D)
        h = layer.cross_block(h, cross_cache.step)
        outputs.append(layer.ff_block(h, layer.ff))
    return torch.cat(outputs, dim=1)  # (B, T, D)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "decoder_step_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# A DecoderLayer run position by position with your caches must equal its full forward pass
# layer(x, memory, causal mask, memory_mask), feed one position per step and project the memory once.
grading.check("decoder_step_tests", incremental_decode)
### BEGIN HIDDEN TESTS
grading.record("decoder_step_tests", incremental_decode)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. See it: a decoding step by step
#
# Move the **step** slider to decode the example sentence one word at a time, and pick a **head**: the
# weights are those of the translator you trained in Section 4 (its best layer; in fast mode, barely
# trained). At each step you see the cross-attention row over the source (dark = 0, yellow = 1, as in the
# heatmaps), then the two caches:
#
# * the **static** cache holds keys and values for *all* source tokens from step 1 on; it is projected at
#   step 1 (orange outline) and only read afterwards;
# * the **growing** cache holds one entry per token the decoder has been fed (`<s>` and the words written so
#   far); the orange entry is the one added at this step.
#
# The last line counts projected key/value positions so far, with both caches and without any.

# %%
make_two_modes_widget(example_from_maps(source_tokens, target_tokens, final_maps[layer]))

# %% [markdown]
# ## 8. Measure it: identical logits, less work, less time, and the memory it costs
#
# The package's `xattn_edu.chapters.two_modes.kv_cache` decodes with a small untrained `Seq2Seq` model
# (untrained is fine: speed and equivalence do not depend on the weights) in four ways: no cache, only the
# static cross-attention cache, only the growing self-attention cache, and both.
#
# **Equivalence first.** A cache is an optimisation, so it must not change a single prediction. The next cell
# decodes greedily, then feeds the tokens it chose to the full teacher-forced forward pass, and compares every
# step's logits in every mode.

# %%
cfg = kv_experiment.bench_config()
steps_for_check = 12 if FAST else 32
model, src = kv_experiment.build_model(cfg, max_len=128)  # positions for up to 128 output tokens
print(f"model: D={cfg.d_model}, h={cfg.n_heads}, {cfg.n_layers}+{cfg.n_layers} layers; batch {cfg.batch}, "
      f"source length {cfg.src_len}; {steps_for_check} greedy steps on {describe_device()}")
difference = kv_experiment.max_difference_from_full_forward(model, src, steps_for_check)
print(f"largest |logit difference| over all modes and steps: {difference:.1e}")
greedy = [kv_experiment.decode_logits(model, src, mode, steps=steps_for_check)[1] for mode in kv_experiment.MODES]
print("greedy tokens identical in all four modes:", all(torch.equal(tokens, greedy[0]) for tokens in greedy))

# %% [markdown]
# The difference the cell prints is float32 rounding (the cached path multiplies matrices of other shapes,
# so sums are taken in another order), far too small to change which token wins: the cell also decodes
# greedily in every mode and compares the chosen tokens.
#
# **Projection FLOPs, counted from the shapes.** A linear map `D → D` on `n` positions costs `2 n D²`
# floating-point operations (a multiply and an add per weight and position). At decoding step `t`, in each
# of the `L` decoder layers:
#
# | projection | positions, no cache | with the caches |
# |---|---|---|
# | self-attention Q, K, V, out (4 maps) | `t` (the whole prefix again) | `1` (the new position) |
# | cross-attention Q, out (2 maps) | `t` | `1` |
# | cross-attention K, V (2 maps) | `Tk` every step | `Tk` at step 1 only |
#
# Summed over `T` steps, recomputing costs about `2D²L (6 T²/2 + 2 Tk T)`, quadratic in the output length;
# with both caches `2D²L (6 T + 2 Tk)`, linear. The next cell evaluates the formula and checks it against a
# count made by hooks on every projection while decoding.

# %%
flop_steps = 16 if FAST else 32
print(f"attention projection GFLOPs per sentence for T = {flop_steps} tokens (D={cfg.d_model}, L={cfg.n_layers}, "
      f"Tk={cfg.src_len})")
for mode in kv_experiment.MODES:
    formula = kv_experiment.projection_flops(mode, flop_steps, cfg.src_len, cfg.d_model, cfg.n_layers)
    counted = kv_experiment.count_projection_flops(model, src, mode, flop_steps)
    print(f"  {mode.name:<18} formula {formula / 1e9:9.4f}   hooks counted {counted / 1e9:9.4f}   "
          f"equal: {formula == counted}")

# %% [markdown]
# **Time per generated token.** The next cell times greedy decoding of the whole batch for output lengths of
# 8, 32 and 128 tokens (8 and 16 in fast mode), the median of three runs (one in fast mode), encoder included,
# with a progress bar; on an idle CPU it takes seconds. It reports wall time and the process's CPU time (the
# CPU figure is steadier when other programs share the machine). Like the rest of the chapter it uses one CPU
# thread: these matrices are too small to gain from a second one, and on a busy machine extra threads spend
# their time waiting for each other. For the full sweep up to 256 tokens, pass `kv_experiment.LENGTHS` as the
# second argument, or run `benchmarks/kv_cache.py`.
#
# Beside the time, the figure plots the projection work **per generated token** from the formula, so both
# panels answer the same question: what does one more token cost at this output length?

# %%
report = kv_experiment.measure_decoding(cfg, progress=True)
lengths_measured = sorted({row.steps for row in report.rows})
by_mode = {mode.name: sorted((row for row in report.rows if row.mode == mode.name), key=lambda row: row.steps)
           for mode in kv_experiment.MODES}
print(f"timed on {report.device}")
print(f"{'T':>5} " + " ".join(f"{mode.name:>18}" for mode in kv_experiment.MODES) + "   (ms per token: wall / CPU)")
for steps in lengths_measured:
    times = {row.mode: f"{row.ms_per_token:.2f} / {row.cpu_ms_per_token:.2f}" for row in report.rows
             if row.steps == steps}
    print(f"{steps:>5} " + " ".join(f"{times[mode.name]:>18}" for mode in kv_experiment.MODES))
shortest, longest = lengths_measured[0], lengths_measured[-1]
print(f"\nfrom T = {shortest} to T = {longest}, per generated token:")
for name, rows in by_mode.items():
    print(f"  {name:<18} CPU time x{rows[-1].cpu_ms_per_token / rows[0].cpu_ms_per_token:5.2f}   "
          f"projection FLOPs x{rows[-1].projection_mflops_per_token / rows[0].projection_mflops_per_token:5.2f}")
print(f"both caches vs none at T = {longest}: {report.speedup(longest):.1f}x faster in wall time, "
      f"{report.speedup(longest, cpu=True):.1f}x in CPU time")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
line_chart(lengths_measured, {name: [r.cpu_ms_per_token for r in rows] for name, rows in by_mode.items()},
           xlabel="output length T (tokens)", ylabel="CPU ms per generated token (measured)",
           title=f"time per token, {report.device}", xscale="log2", yscale="log", ax=axes[0])
line_chart(lengths_measured, {name: [r.projection_mflops_per_token for r in rows] for name, rows in by_mode.items()},
           xlabel="output length T (tokens)", ylabel="projection MFLOPs per generated token (formula)",
           title="work per token", xscale="log2", yscale="log", ax=axes[1])
plt.show()

# %% [markdown]
# Read the growth factors the cell printed. Without the self-attention cache, the work per token grows
# linearly with the output length (the whole prefix is projected again at every step), and the time per token
# climbs with it. With both caches the work per token *falls* (the one-off memory projection is shared by more
# tokens), and the time per token stays far flatter than without them (for short outputs, fixed costs per
# step can even make it fall): what still grows is attention itself, which reads all `t` cached keys at step
# `t`, cheap next to the projections and feed-forward layers at these sizes. The static cache
# alone saves the memory projections, `2 Tk` positions per layer and step: a modest share here, where the
# source is short and the recomputed prefix dominates, and the larger share once the self-attention cache is
# in place (compare "growing self K/V" with "both caches"). `docs/benchmarks.md` records the full sweep
# from `benchmarks/kv_cache.py`, with its hardware.
#
# ### What the caches cost: memory
#
# Saving work costs memory. After `T` decoding steps with a source of `Tk` tokens, each of the `L` decoder
# layers holds keys and values (the 2) for `T` self-attention positions and `Tk` memory positions, `D`
# numbers each, for each of the `B` sentences:
#
# `cache bytes = 2 · L · (T + Tk) · D · B · bytes per number`
#
# The next cell decodes with the package's caches and adds up the bytes their tensors hold, against the
# formula; then it evaluates the formula for larger shapes.

# %%
memory_steps = 16 if FAST else 128
measured = cache_memory.measured_cache_bytes(model, src, memory_steps)
formula = cache_memory.cache_bytes(cfg.n_layers, cfg.d_model, memory_steps, cfg.src_len, cfg.batch, 4)
print(f"this model, T = {memory_steps}, Tk = {cfg.src_len}, B = {cfg.batch}, float32: measured "
      f"{cache_memory.human_bytes(measured)}, formula {cache_memory.human_bytes(formula)}, "
      f"equal: {measured == formula}")
weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(f"  (its weights: {cache_memory.human_bytes(weights_bytes)})")

print("\nthe formula at larger shapes (computed, not measured here):")
shapes = [  # (what, L, D, T, Tk, B, bytes per number, h, key/value heads)
    ("the multi30k preset's shape, 40 + 40 tokens, B = 128, bf16", 3, 512, 40, 40, 128, 2, 8, 8),
    ("a 7B-class decoder-only shape, 8192 tokens, B = 1, fp16", 32, 4096, 8192, 0, 1, 2, 32, 32),
    ("the same, B = 16", 32, 4096, 8192, 0, 16, 2, 32, 32),
    ("the same, B = 16, grouped-query attention with 8 K/V heads", 32, 4096, 8192, 0, 16, 2, 32, 8),
    ("the same, B = 16, multi-query attention (1 K/V head)", 32, 4096, 8192, 0, 16, 2, 32, 1),
]
for what, n_layer, width, tgt, srcl, batch, nbytes, heads, kv in shapes:
    size = cache_memory.cache_bytes(n_layer, width, tgt, srcl, batch, nbytes, n_heads=heads, kv_heads=kv)
    print(f"  {what:<62} {cache_memory.human_bytes(size):>10}")
print(f"  (for scale: 7 billion weights in fp16 take {cache_memory.human_bytes(7e9 * 2)})")

# %% [markdown]
# At the large shape the cache of a modest batch outgrows the model's weights, and every decoding step has to
# read all of it. That is why **multi-query attention** (one key/value head shared by all query heads) and
# **grouped-query attention** (`g` key/value heads, each shared by `h/g` query heads) exist: they keep the
# `h` query heads but store `g < h` heads of keys and values, so the cache and the bytes read per step shrink
# by `h/g`. The next cell checks that grouped-query attention with `g = h` *is* multi-head attention, then
# times one decoding step's attention (one new query per head) over a long cache with `h = 16` query heads
# and 16, 4 or 1 key/value heads.

# %%
generator = torch.Generator().manual_seed(0)
q_demo = torch.randn(2, 8, 3, 16, generator=generator)  # (B, h, Tq, Dh)
k_demo, v_demo = (torch.randn(2, 8, 5, 16, generator=generator) for _ in range(2))  # g = h = 8
same = torch.allclose(cache_memory.grouped_query_attention(q_demo, k_demo, v_demo),
                      scaled_dot_product_attention(q_demo, k_demo, v_demo), atol=1e-6)
k_shared, v_shared = k_demo[:, :2], v_demo[:, :2]  # g = 2: heads 0-3 share K/V head 0, heads 4-7 head 1
repeated = scaled_dot_product_attention(q_demo, k_shared.repeat_interleave(4, dim=1),
                                        v_shared.repeat_interleave(4, dim=1))
print("g = h equals multi-head attention:", same, "| g = 2 equals repeating each K/V head 4 times:",
      torch.allclose(cache_memory.grouped_query_attention(q_demo, k_shared, v_shared), repeated, atol=1e-6))

cache_len = 2_048 if FAST else 16_384
print(f"\none decoding step's attention over {cache_len} cached positions, h = 16 query heads, Dh = 64, float32:")
for kv_heads in (16, 4, 1):
    read = cache_memory.time_cache_read(kv_heads, cache_len=cache_len, repeats=3 if FAST else 15)
    heads_label = f"{kv_heads:>2} key/value head{'s' if kv_heads > 1 else ' '}"
    print(f"  {heads_label}: cache {read.cache_mib:7.1f} MiB, {read.ms_per_step:7.3f} ms per step")

# %% [markdown]
# The time per step follows the bytes the step has to read, not the arithmetic, which is the same for all
# three: this is the saving grouped-query attention buys, at the price of fewer distinct key/value views per
# layer (a model is trained that way from the start, or converted and fine-tuned).
#
# ## Summary
#
# * Self-attention makes Q, K and V from one sequence; cross-attention makes Q from the decoder and K, V from
#   the encoder's memory, the encoder's top layer, which every decoder layer reads. The output has the
#   **queries'** length.
# * The memory padding mask is `(B, 1, 1, Tk)`; without it the output depends on the amount of padding
#   (measured). The causal mask `(1, 1, T, T)` keeps the diagonal and belongs to the decoder's
#   self-attention only.
# * A flat `(B, Tk)` mask lines its `B` axis up with the queries: right only when `B = 1`, silently wrong when
#   `Tq = B`, silently reshaped when `Tq = 1` (a cached decoding step), an error otherwise.
# * Multi-head attention = project, split into `h` heads of width `Dh = D/h`, attend with scale
#   `1/sqrt(Dh)` (one head's scores have variance `Dh`), merge, output projection. One head returns a blend
#   of what it reads; several heads can each take something different, and a trained translator's heads do.
# * While decoding, the memory's keys and values never change: project them once (static cache). The
#   decoder's own keys and values grow by one position per step (growing cache). Both give the logits of a
#   full recomputation and turn quadratic projection work into linear work; the price is
#   `2 · L · (T + Tk) · D · B` numbers of memory, which multi-query and grouped-query attention cut by `h/g`.
#
# Next, Chapter 4 looks at what cross-attention does for training: how gradients reach the encoder through
# it, and how attending to correlated context reduces uncertainty.
