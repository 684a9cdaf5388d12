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
# # Chapter 3 — Two modes of thought
#
# Chapters 1 and 2 built one lookup: a query, a set of keys, a softmax, a weighted average of values.
# This chapter asks *where* the queries, keys and values come from. When all three are read off the
# same sequence, the sequence talks to itself (**self-attention**). When the queries come from the
# decoder and the keys and values from the encoder, one sequence consults another (**cross-attention**).
# The second mode has a practical gift: while a translation is being written, the source never changes,
# so its keys and values can be computed once and kept, a *static library* on the shelf.
#
# **By the end of this chapter you can**
#
# 1. tell self- from cross-attention by where Q, K and V come from, and predict the output shape when
#    the two sequences have different lengths;
# 2. build the two masks a translation model needs (memory padding, causal) with the right shape and
#    the right polarity, and measure what goes wrong without the padding mask;
# 3. write multi-head attention: project, split into heads, attend per head, merge, project;
# 4. write the two decoding caches, a static one for cross-attention and a growing one for
#    self-attention, prove they give the same numbers as recomputing everything, and measure what they save;
# 5. recognise three pitfalls other tutorials run into: swapped query/memory arguments, masks that
#    broadcast the wrong way, and masks of the opposite polarity.
#
# **How to work.** Run the cells from the top. Where you see `# YOUR CODE HERE`, replace the
# `raise NotImplementedError()` line with your code, then run the test cell below it. Everything here is
# PyTorch; a tensor of shape `(B, T, D)` holds B sentences of T positions with D numbers each. More
# (hidden) checks run when you grade yourself: `xattn grade 03_two_modes.ipynb`. Plan on 60–90 minutes.
#
# **Mask convention of this course:** a boolean mask is `True` where a query **may attend** to a key.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import warnings

import matplotlib.pyplot as plt
import torch
from torch import nn

from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import heatmap_panels, line_chart
from xattn_edu.chapters.two_modes import checks as grading
from xattn_edu.chapters.two_modes import kv_cache as kv_experiment
from xattn_edu.chapters.two_modes import widget as example
from xattn_edu.chapters.two_modes.memory_padding import padding_sensitivity
from xattn_edu.chapters.two_modes.widget import make_two_modes_widget
from xattn_edu.common.device import describe_device
from xattn_edu.nn import masks
from xattn_edu.nn.heads import MultiHeadAttention

warnings.filterwarnings("ignore")
torch.manual_seed(0)
torch.set_printoptions(precision=3, sci_mode=False)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds

# %% [markdown]
# ## 1. Where do Q, K and V come from?
#
# Keep the library picture from Chapter 1. A **query** is a question, **keys** are the spines you
# scan, **values** are what you read. Attention never cares where these vectors were made. The two
# modes differ only in that:
#
# * **Self-attention.** One sequence `x` of shape `(B, T, D)` provides everything: `Q = x W_Q`,
#   `K = x W_K`, `V = x W_V`. Every word reads the other words of its own sentence, which is how the
#   encoder works out that "bank" next to "river" is a riverbank.
# * **Cross-attention.** The queries come from the decoder, `Q = y W_Q` with `y` of shape `(B, Tq, D)`,
#   while keys and values come from the encoder's output, the **memory** `m` of shape `(B, Tk, D)`:
#   `K = m W_K`, `V = m W_V`. The decoder, about to write its next word, asks the source sentence which
#   of its words matter now.
#
# The scores `Q Kᵀ` have shape `(B, Tq, Tk)`: one row per query, one column per key. After the
# softmax, each row averages the `Tk` values, so **the output has one row per query**: its length
# follows the queries, never the memory. The package's `MultiHeadAttention` does both modes; passing
# `context=memory` is what makes it cross-attention.

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
# Both outputs have 3 positions, the decoder's length. Only the weights reveal the difference: self-attention
# weighs 3 keys per query, cross-attention 7.
#
# ## 2. Masks: who may look at whom
#
# A mask removes keys from a query's view: their scores become `-inf` before the softmax, so their
# weights are exactly 0. A translation model needs two masks.
#
# **The memory padding mask.** Sentences in a batch have different lengths, so the shorter ones are
# padded to the longest. The padding positions are not real words, yet the encoder still produces a
# vector for each of them. A cross-attention query must not read them. The mask depends only on which
# *keys* are real, the same for every head and every query, so it has shape `(B, 1, 1, Tk)`: the two
# ones broadcast over the heads and the queries of the scores `(B, h, Tq, Tk)`.
#
# ### Exercise 1 — a padding mask from lengths
#
# Write `padding_mask_from_lengths(lengths, max_len)`. `lengths` is an integer tensor `(B,)`; key
# position `j` of sentence `b` is real exactly when `j < lengths[b]`. Return a **boolean** tensor
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
# Checks: boolean dtype, shape (B, 1, 1, Tk), True on real tokens, position `length` already padding.
print(padding_mask_from_lengths(torch.tensor([3, 1]), 4).int())
grading.check_padding_mask(padding_mask_from_lengths)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_padding_mask(padding_mask_from_lengths)
pristine.check_padding_mask_hidden(padding_mask_from_lengths)
### END HIDDEN TESTS

# %% [markdown]
# **The causal mask.** When the decoder is trained, it sees the whole target sentence at once
# (teacher forcing), but position `i` must not peek at the words it is supposed to predict. So in
# the decoder's **self-attention**, query `i` may attend to keys `j ≤ i`: itself and the past. That is a
# lower-triangular matrix, `(T, T)`, with the diagonal included: a word may read itself. As a mask
# that broadcasts over batch and heads it is `(1, 1, T, T)`.
#
# ### Exercise 2 — the causal mask
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
# Checks: boolean, shape (1, 1, T, T), True on and below the diagonal (diagonal included).
print(causal_mask(4)[0, 0].int())
grading.check_causal_mask(causal_mask)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_causal_mask(causal_mask)
pristine.check_causal_mask_hidden(causal_mask)
### END HIDDEN TESTS

# %% [markdown]
# **Why cross-attention needs no causal mask.** The causal mask protects the *target* from its own
# future. The source sentence is not being predicted: it was given in full before decoding started,
# so every decoder position may read every real source word. The decoder's causality is already
# taken care of by its self-attention: the query at position `i` was built from target words `≤ i`
# only, so whatever it looks up in the source, it cannot learn a future target word from it. (Whether
# the bidirectional *encoder* can leak information is a subtler question; Chapter 5 measures it.)
#
# ### What the padding mask protects against, measured
#
# Claim: without the memory padding mask, the cross-attention output depends on how much padding the
# batch happened to add; with the mask it does not. The next cell pads one sentence's memory
# (5 real positions) with 0 to 8 padding positions and compares each output with the unpadded one.

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
# One attention can only produce one weighted average per query. A sentence has many relations at once
# (which word is being translated, which noun an article belongs to, what came just before), so
# Transformers run **several attentions side by side**. With `h` heads:
#
# 1. **project** once: `Q = x W_Q`, `K = m W_K`, `V = m W_V` (each `D → D`; in `attn` these are
#    `attn.q_proj`, `attn.k_proj`, `attn.v_proj`, ordinary `nn.Linear` layers);
# 2. **split** the last axis into `h` heads of width `Dh = D / h`: `(B, T, D) → (B, T, h, Dh) →
#    (B, h, T, Dh)` (reshape, then move the head axis in front of the time axis);
# 3. **attend** in each head separately: `softmax(Q Kᵀ / sqrt(Dh)) V`, with the mask, giving
#    `(B, h, Tq, Dh)` (the scale uses the head width `Dh`: each head's dot products add `Dh` terms);
# 4. **merge**: `(B, h, Tq, Dh) → (B, Tq, h, Dh) → (B, Tq, D)`;
# 5. **mix** the heads with the output projection `attn.out_proj`.
#
# Splitting costs nothing extra: the same `D × D` projections are simply read as `h` narrower ones.
#
# ### Exercise 3 — multi-head attention
#
# Complete the three helpers, then `multi_head_attention(x, attn, context=None, mask=None)`:
# self-attention when `context` is None, cross-attention (keys and values from `context`) otherwise.
# Use the projections of `attn` (do not call `attn(...)` itself: that is the answer). `torch.softmax`
# is fine. If a query may attend to **no** key at all (a sentence made only of padding), give it
# all-zero weights instead of NaN.

# %% nbgrader={"grade": false, "grade_id": "helpers_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
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


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None):
    """Scaled dot-product attention per head.

    Args:
        query: (B, h, Tq, Dh); key, value: (B, h, Tk, Dh).
        mask: boolean, broadcastable to (B, h, Tq, Tk), True = may attend; None = every key.

    Returns:
        (B, h, Tq, Dh). A query with no visible key gets zero weights (not NaN).
    """
    ### BEGIN SOLUTION
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, h, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # rows whose every key is masked: 0/0 -> 0
    return weights @ value  # (B, h, Tq, Dh)
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
# Self-attention against the package's MultiHeadAttention with the same weights, without and with a
# causal mask. Messages name the usual mistakes: missing 1/sqrt(Dh), one big head, heads split the wrong
# way, missing output projection, inverted mask.
grading.check_mha_self(multi_head_attention)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_mha_self(multi_head_attention)
pristine.check_mha_self_hidden(multi_head_attention)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "mha_cross_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Cross-attention: 3 queries over 7 memory positions, with and without a padding mask. The output must have
# the queries' length; keys and values come from the context.
grading.check_mha_cross(multi_head_attention)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_mha_cross(multi_head_attention)
pristine.check_mha_cross_hidden(multi_head_attention)
### END HIDDEN TESTS

# %% [markdown]
# ### What separate heads look at
#
# A trained model's heads specialise. To see what that looks like without waiting for training, here is
# a small hand-set example (the same one the widget below uses): English "yesterday the cat saw the
# mouse ." becomes German "gestern sah die Katze die Maus .". German puts the verb second after a
# fronted adverb, so *sah* must look back at *saw*, past *the cat*. Three heads have hand-set queries:
# one follows the word being translated, one spreads over the content words, one looks at a
# neighbourhood. Each heatmap row is one decoding step (a query); each column a source word (a key).

# %%
heatmap_panels(example.WEIGHTS, example.TARGET, example.SOURCE, titles=[f"head '{head}'" for head in example.HEADS],
               xlabel="English source (keys)", ylabel="German being written (queries)",
               suptitle="cross-attention per head: each head reads the source its own way")
plt.show()

# %% [markdown]
# The alignment head's bright cells leave the diagonal at *sah → saw*: cross-attention can read the
# source in any order. The content head is blurrier on purpose: a head does not have to pick one word.
#
# The same split into heads happens in your `multi_head_attention`. With `USE_MY_CODE = True` the next
# cell runs **your** function on random weights and shows each head of a cross-attention over 7 memory
# positions; with `False` it uses the package's module. Untrained heads differ only by chance, but they
# already give 4 different weightings of the same memory.

# %%
USE_MY_CODE = False  # True: heads computed by your multi_head_attention


def per_head_weights(x: torch.Tensor, attn: MultiHeadAttention, context: torch.Tensor) -> torch.Tensor:
    """(h, Tq, Tk) cross-attention weights of batch row 0, from the package or from your helpers."""
    if not USE_MY_CODE:
        return attn(x, context=context, return_weights=True)[1][0]
    query, key = split_heads(attn.q_proj(x), attn.n_heads), split_heads(attn.k_proj(context), attn.n_heads)
    return attend(query, key, torch.eye(key.shape[-2]).expand(*key.shape[:2], -1, -1))[0]  # values = one-hot


with torch.no_grad():
    head_weights = per_head_weights(decoder_states, attn, memory)
heatmap_panels(head_weights, [f"y{i}" for i in range(3)], [f"m{j}" for j in range(7)],
               titles=[f"head {index}" for index in range(H)], xlabel="memory (keys)", ylabel="decoder (queries)",
               suptitle="untrained heads already weigh the same memory differently")
plt.show()

# %% [markdown]
# (Attending to one-hot values returns the weights themselves: a handy trick to read weights out of a
# function that only returns outputs.)
#
# ## 4. Three pitfalls
#
# **Swapped arguments.** `nn.MultiheadAttention.forward(query, key, value)` takes the *decoder* states as
# `query` and the *memory* as `key` and `value`. Swap them and nothing crashes; you just get cross-attention
# the wrong way round, with the memory's length.

# %%
torch_attn = nn.MultiheadAttention(D, H, batch_first=True).eval()
with torch.no_grad():
    right, _ = torch_attn(decoder_states, memory, memory)  # query = decoder, key = value = memory
    swapped, _ = torch_attn(memory, decoder_states, decoder_states)  # the memory asks the decoder
print("decoder states", tuple(decoder_states.shape), " memory", tuple(memory.shape))
print("right order  :", tuple(right.shape), " <- one row per decoder position")
print("swapped order:", tuple(swapped.shape), " <- the memory's length: this would not fit the decoder")
assert right.shape[1] == decoder_states.shape[1] and swapped.shape[1] == memory.shape[1]

# %% [markdown]
# **Mask shape and broadcasting.** The scores are `(B, h, Tq, Tk)`. A padding mask of shape `(B, Tk)`, the
# layout of `nn.MultiheadAttention`'s `key_padding_mask`, is aligned from the right by broadcasting: its `B`
# axis lands on the **query** axis `Tq`. What happens next depends on the sizes, and that is the danger:
#
# * `B == Tq`: it runs, silently, and hides sentence 1's padding from query 1 of every sentence instead;
# * `B == 1`: it runs and is right, by luck;
# * `Tq == 1`, a cached decoding step, with `B > 1`: it broadcasts to `(B, h, B, Tk)`, *larger* than the
#   scores; `F.scaled_dot_product_attention` raises, but a hand-written `scores.masked_fill(~mask, -inf)`
#   quietly returns `B` rows for each query;
# * any other sizes: a shape error.
#
# So code tested at one batch size can be silently wrong at another. This package therefore refuses, for
# every size, a mask with fewer axes than the scores, and takes a `(B, Tk)` padding mask through its own
# argument, `key_mask` (with our polarity: `True` = a real token). The next cell prints what plain
# broadcasting does with each size and runs a decoding step by hand; the one after it runs the silent case
# through torch and through our module.

# %%
lengths = torch.tensor([7, 4])
good = masks.padding_mask(lengths, 7)  # (B, 1, 1, Tk)
flat = good[:, 0, 0, :]  # (B, Tk): looks harmless
for case, scores_shape in {"B == Tq": (2, H, 2, 7), "Tq == 1": (2, H, 1, 7), "Tq == 3": (2, H, 3, 7)}.items():
    try:
        outcome = f"broadcasts to {tuple(torch.broadcast_shapes(flat.shape, scores_shape))}"
    except RuntimeError:
        outcome = "shape error"
    print(f"{case}: scores {scores_shape}, (B, Tk) mask -> {outcome}")

with torch.no_grad():  # one cached decoding step (Tq = 1) by hand, then through torch's kernel
    q = attn.split_heads(attn.q_proj(decoder_states[:, :1]))  # (B, h, 1, Dh)
    k, v = attn.project_keys_values(memory)  # (B, h, Tk, Dh) each
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // H)  # (B, h, 1, Tk)
    by_hand = torch.softmax(scores.masked_fill(~flat, float("-inf")), dim=-1) @ v
    print("Tq == 1 by hand: output", tuple(by_hand.shape), "<- B = 2 rows for the one query, no error")
    try:
        nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=flat)
    except RuntimeError as err:
        print("Tq == 1 in F.scaled_dot_product_attention: RuntimeError:", str(err)[:60], "...")
assert by_hand.shape[2] == 2

# %%
queries2 = decoder_states[:, :2]  # (B=2, Tq=2, D): B == Tq, the silent case
with torch.no_grad():
    out_good = attn(queries2, context=memory, mask=good)
    q = attn.split_heads(attn.q_proj(queries2))  # (B, h, Tq, Dh)
    by_torch = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=flat)  # accepted, read as (Tq, Tk)
    out_torch = attn.out_proj(attn.merge_heads(by_torch))
    out_key_mask = attn(queries2, context=memory, key_mask=flat)
print("torch with the (B, Tk) mask: max |difference| from the correct output =",
      f"{(out_good - out_torch).abs().max():.3f}")
print("ours with key_mask=flat    : max |difference| from the correct output =",
      f"{(out_good - out_key_mask).abs().max():.1e}")
assert (out_good - out_torch).abs().max() > 1e-3 and torch.allclose(out_good, out_key_mask, atol=1e-6)
refusals = []
for queries in (queries2, decoder_states[:, :1], decoder_states):  # Tq = 2, 1 and 3: refused every time
    try:
        attn(queries, context=memory, mask=flat)
    except ValueError as err:
        refusals.append(str(err).split("; query")[0])
print(f"ours with mask=flat, Tq = 2, 1 and 3: {len(refusals)} refusals, each saying:\n{refusals[0]}")
assert len(refusals) == 3

# %% [markdown]
# **Polarity.** This course (and `F.scaled_dot_product_attention` with a boolean `attn_mask`) uses
# `True` = may attend. `nn.MultiheadAttention`'s `key_padding_mask` and `attn_mask`, and
# `nn.Transformer.generate_square_subsequent_mask`, use the opposite: `True` (or `-inf`) = blocked.
# Passing our mask to `nn.MultiheadAttention` unchanged hides exactly the real tokens. Flip it with `~`.

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
assert torch.allclose(ours, flipped, atol=1e-5) and not torch.allclose(ours, unflipped, atol=1e-3)

# %% [markdown]
# ## 5. The static library: caching keys and values while decoding
#
# At inference time the decoder writes one token per step, each step feeding the words so far. Look at
# what each step recomputes if nothing is kept:
#
# * **cross-attention** projects the memory into keys and values, `2 · Tk` projected positions, at every
#   step, although the memory is *the same tensor every time*: the encoder ran once, before decoding;
# * **self-attention** projects keys and values for every earlier target position again, although those
#   positions, and everything computed from them, have not changed (the causal mask means an old position
#   never sees a new one).
#
# Hence two caches:
#
# * a **static** cache for cross-attention: project the memory into keys and values **once**
#   (`fill`), then each step only projects its new query. The library is on the shelf; each step only
#   brings a new question;
# * a **growing** cache for self-attention: each step projects only the *new* position and appends its
#   key and value; the new query attends to everything in the cache. The cache grows by one entry per
#   step. The newest position is the last one, so no causal mask is needed: the cache holds no future.
#
# ### Exercise 4 — the static cross-attention cache
#
# Complete `CrossAttentionCache`. `fill(memory, memory_mask)` projects the memory with `attn.k_proj` and
# `attn.v_proj`, splits the heads and stores them as `self.key` and `self.value` `(B, h, Tk, Dh)` (and the
# mask). `step(x)` takes the new decoder positions `x` `(B, t, D)` (usually `t = 1`) and returns their
# cross-attention output `(B, t, D)` using the stored keys and values. Reuse `split_heads`, `merge_heads`
# and `attend`. The test counts how often the memory is projected.

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
# (B, h, Tk, Dh), and attn.k_proj / attn.v_proj must run exactly once (inside fill).
grading.check_static_cache(CrossAttentionCache)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_static_cache(CrossAttentionCache)
pristine.check_static_cache_hidden(CrossAttentionCache)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 5 — the growing self-attention cache, and one decoder layer step by step
#
# First `SelfAttentionCache`: `step(x_t)` receives **one** new position `x_t` `(B, 1, D)`, projects its
# query, key and value, appends the key and value to `self.key` / `self.value` along the time axis
# (`torch.cat(..., dim=2)`), and returns the attention of the new query over everything stored, `(B, 1, D)`.
#
# Then `incremental_decode(layer, x, memory, memory_mask)`. `layer` is the package's `DecoderLayer`:
# causal self-attention, then cross-attention, then a feed-forward network, each wrapped in a residual
# block. A block is called as `layer.self_block(h, sublayer)`, where `sublayer` is any function
# `(B, t, D) → (B, t, D)`: the block normalises `h`, applies `sublayer`, and adds the result to `h`. The
# blocks and sublayers are `self_block` with `layer.self_attn`, `cross_block` with `layer.cross_attn`, and
# `ff_block` with `layer.ff`.
# Build one `SelfAttentionCache(layer.self_attn)` and one `CrossAttentionCache(layer.cross_attn)` (filled
# once), then feed `x` `(B, T, D)` **one position at a time** through the three blocks, passing your
# caches' `step` methods as the sublayers. Return the outputs of all steps, `(B, T, D)`: they must equal
# the layer's full forward pass with a causal mask.

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
grading.check_growing_cache(SelfAttentionCache)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_growing_cache(SelfAttentionCache)
pristine.check_growing_cache_hidden(SelfAttentionCache)
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
# layer(x, memory, causal mask, memory_mask), and must feed one position per step.
grading.check_decoder_step(incremental_decode)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.two_modes.checks")
pristine.check_decoder_step(incremental_decode)
pristine.check_decoder_step_hidden(incremental_decode)
### END HIDDEN TESTS

# %% [markdown]
# ## 6. See it: a decoding step by step
#
# Move the **step** slider to decode the example sentence one word at a time, and pick a **head**. At each
# step you see the cross-attention row over the source (dark = 0, yellow = 1, as in the heatmaps), then the two caches:
#
# * the **static** cache holds keys and values for *all* source tokens from step 1 on; it is projected
#   at step 1 (orange outline) and merely read afterwards;
# * the **growing** cache holds one entry per token the decoder has been fed (`<s>` and the words
#   written so far); the orange entry is the one added at this step.
#
# The last line counts projected key/value positions so far, with both caches and without any.

# %%
make_two_modes_widget()

# %% [markdown]
# ## 7. Measure it: identical logits, fewer FLOPs, less time
#
# The package's `xattn_edu.chapters.two_modes.kv_cache` decodes with a small untrained `Seq2Seq` model
# (untrained is fine: speed and equivalence do not depend on the weights) in four ways: no cache,
# only the static cross-attention cache, only the growing self-attention cache, and both.
#
# **Equivalence first.** A cache is an optimisation, so it must not change a single prediction. The next
# cell decodes greedily, then feeds the tokens it chose to the full teacher-forced forward pass, and
# compares every step's logits in every mode.

# %%
cfg = kv_experiment.bench_config()
steps_for_check = 12 if FAST else 32
model, src = kv_experiment.build_model(cfg, max_len=32)
print(f"model: D={cfg.d_model}, h={cfg.n_heads}, {cfg.n_layers}+{cfg.n_layers} layers; batch {cfg.batch}, "
      f"source length {cfg.src_len}; {steps_for_check} greedy steps on {describe_device()}")
difference = kv_experiment.max_difference_from_full_forward(model, src, steps_for_check)
print(f"largest |logit difference| over all modes and steps: {difference:.1e}")
greedy = [kv_experiment.decode_logits(model, src, mode, steps=steps_for_check)[1] for mode in kv_experiment.MODES]
print("greedy tokens identical in all four modes:", all(torch.equal(tokens, greedy[0]) for tokens in greedy))
assert difference < 1e-4

# %% [markdown]
# The difference the cell prints is float32 rounding (the cached path multiplies matrices of different
# shapes, so sums are taken in a different order), far too small to change which token wins: the cell
# also decodes greedily in every mode and compares the chosen tokens.
#
# **Projection FLOPs, counted from the shapes.** A linear map `D → D` on `n` positions costs `2 n D²`
# floating-point operations (a multiply and an add per weight and position). At decoding step `t`, in
# each of the `L` decoder layers:
#
# | projection | positions, no cache | with the caches |
# |---|---|---|
# | self-attention Q, K, V, out (4 maps) | `t` (the whole prefix again) | `1` (the new position) |
# | cross-attention Q, out (2 maps) | `t` | `1` |
# | cross-attention K, V (2 maps) | `Tk` every step | `Tk` at step 1 only |
#
# Summed over `T` steps, recomputing costs about `2D²L (6 T²/2 + 2 Tk T)`, quadratic in the output
# length; with both caches `2D²L (6 T + 2 Tk)`, linear. The next cell evaluates the formula and checks
# it against a count made by hooks on every projection while decoding.

# %%
flop_steps = 16 if FAST else 32
print(f"attention projection GFLOPs per sentence for T = {flop_steps} tokens (D={cfg.d_model}, L={cfg.n_layers}, "
      f"Tk={cfg.src_len})")
for mode in kv_experiment.MODES:
    formula = kv_experiment.projection_flops(mode, flop_steps, cfg.src_len, cfg.d_model, cfg.n_layers)
    counted = kv_experiment.count_projection_flops(model, src, mode, flop_steps)
    print(f"  {mode.name:<18} formula {formula / 1e9:9.4f}   hooks counted {counted / 1e9:9.4f}")
    assert formula == counted

# %% [markdown]
# **Time per generated token.** The next cell times greedy decoding of the whole batch for output
# lengths from 8 to 256 tokens (8 and 16 in fast mode), median of several runs, encoder included. It
# reports wall time and the process's CPU time (the CPU figure is steadier when other programs share
# the machine). On a CPU it uses one thread: these matrices are too small to gain from splitting.

# %%
report = kv_experiment.measure_decoding(cfg)
lengths_measured = sorted({row.steps for row in report.rows})
print(f"device: {report.device}")
print(f"{'T':>5} " + " ".join(f"{mode.name:>18}" for mode in kv_experiment.MODES) + "   (ms per token: wall / CPU)")
for steps in lengths_measured:
    times = {row.mode: f"{row.ms_per_token:.2f} / {row.cpu_ms_per_token:.2f}" for row in report.rows
             if row.steps == steps}
    print(f"{steps:>5} " + " ".join(f"{times[mode.name]:>18}" for mode in kv_experiment.MODES))
longest = lengths_measured[-1]
print(f"speedup of both caches over no cache at T = {longest}: {report.speedup(longest):.1f}x in wall time, "
      f"{report.speedup(longest, cpu=True):.1f}x in CPU time, on {report.device}")
print(f"largest |logit difference| from the full forward pass: {report.max_logit_difference:.1e}")

by_mode = {mode.name: sorted((row for row in report.rows if row.mode == mode.name), key=lambda row: row.steps)
           for mode in kv_experiment.MODES}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
line_chart(lengths_measured, {name: [r.cpu_ms_per_token for r in rows] for name, rows in by_mode.items()},
           xlabel="output length T (tokens)", ylabel="CPU ms per generated token (measured)",
           title=f"decoding time per token on {report.device}", xscale="log2", yscale="log", ax=axes[0])
line_chart(lengths_measured, {name: [r.projection_gflops for r in rows] for name, rows in by_mode.items()},
           xlabel="output length T (tokens)", ylabel="projection GFLOPs per sentence (formula)",
           title="attention projection work", xscale="log2", yscale="log", ax=axes[1])
plt.show()

# %% [markdown]
# Read the printed table against the formula. Without the self-attention cache the work per token grows
# with the output length, so the time per token climbs; with it the time per token stays nearly flat
# (attention itself still reads all `t` cached keys, but that is cheap next to the projections and the
# feed-forward layers at these sizes). The static cache alone saves the memory projections, `2 Tk`
# positions per layer and step: a modest share here, where the source is short and the recomputed
# prefix dominates; it matters most when the source is long and the output is produced with the
# self-attention cache already in place (compare "growing self K/V" with "both caches" in the FLOPs
# table). Short outputs are dominated by fixed per-step costs on a CPU, so the speedup the cell prints
# grows with `T`. `benchmarks/kv_cache.py` runs the same measurement from the command line and writes
# JSON; `docs/benchmarks.md` records its numbers and the hardware.
#
# ## Summary
#
# * Self-attention takes Q, K and V from one sequence; cross-attention takes Q from the decoder and K, V
#   from the encoder's memory. The output has the **queries'** length.
# * The memory padding mask is `(B, 1, 1, Tk)`; without it the output depends on the amount of padding
#   (measured above). The causal mask `(1, 1, T, T)` keeps the diagonal and belongs to the decoder's
#   self-attention only; the source needs none.
# * Multi-head attention = project, split into `h` heads of width `Dh = D/h`, attend with scale
#   `1/sqrt(Dh)`, merge, output projection.
# * While decoding, the memory's keys and values never change: project them once (static cache). The
#   decoder's own keys and values grow by one per step (growing cache). Both give the same logits as
#   recomputing everything and turn quadratic projection work into linear work.
# * Pitfalls: pass decoder states as the query; shape masks for `(B, h, Tq, Tk)`; know the polarity of
#   the API you call (`nn.MultiheadAttention`: True = blocked).
#
# Next, Chapter 4 looks at what cross-attention does for training: how gradients reach the encoder
# through it, and how attending to correlated context reduces uncertainty.
