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
# # Chapter 1 — The library lookup
#
# Attention is a way for one part of a model to *look things up* in another part. Before any
# Transformer machinery, this chapter builds that lookup from three small pieces you write yourself
# in numpy: a relevance score, a softmax, and a weighted average.
#
# **By the end of this chapter you can**
#
# 1. say what queries, keys and values are, and why all three are projections of the same items;
# 2. compute dot-product relevance scores for one query or a batch of queries, with the right shapes;
# 3. write a softmax that survives scores like 1000 and `-inf`;
# 4. explain why a *soft* lookup (a weighted average) can be trained by gradient descent and a *hard*
#    one (pick the best book) cannot;
# 5. predict, build and measure what happens when a query matches *no* key at all.
#
# **How to work.** Run the cells from the top. Where you see `# YOUR CODE HERE`, replace the
# `raise NotImplementedError()` line with your code, then run the test cell below it. Test cells
# explain what they check; more (hidden) checks run when your notebook is graded. Grade yourself at any
# time from a terminal with `xattn grade 01_library_lookup.ipynb`. Plan on about an hour.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.library_lookup import checks as grading
from xattn_edu.chapters.library_lookup import orthogonal_query as experiment
from xattn_edu.chapters.library_lookup import reference
from xattn_edu.chapters.library_lookup.widget import SHELF, draw_shelf, lookup_view, make_lookup_widget
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import attention_heatmap

warnings.filterwarnings("ignore")
np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)
torch.manual_seed(0)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds

# %% [markdown]
# ## 1. A library in a few vectors
#
# Picture yourself in a library with a question in mind. You do not read every book. You scan the
# **spines**, notice which titles match your question, and read mostly from those books.
#
# Attention does the same with vectors:
#
# | library | attention | shape here |
# |---|---|---|
# | your question | the **query** $q$ | $(d,)$ |
# | the spine of book $i$ | the **key** $k_i$ | $(n, d)$ for all $n$ books |
# | the contents of book $i$ | the **value** $v_i$ | $(n, d_v)$ |
#
# Where do these vectors come from? In a model, each item (a word, an image patch, ...) arrives as an
# embedding $x$ of width $D$. Three learned matrices look at the *same* embedding in three ways:
# $q = x W_Q$ (what this item is looking for), $k = x W_K$ (what it offers as a label) and
# $v = x W_V$ (what it hands over when chosen). Training adjusts $W_Q, W_K, W_V$ so that the
# labels and questions end up matching usefully. In *cross*-attention the queries come from one
# sequence (say, the sentence being written) and the keys and values from another (the sentence being
# translated); the lookup itself is the same.

# %%
items = rng.standard_normal((4, 6))  # (n, D): 4 items, embedding width D = 6
w_query, w_key = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))  # (D, d), d = 3
w_value = rng.standard_normal((6, 2))  # (D, d_v), d_v = 2
queries, keys, values = reference.project(items, w_query, w_key, w_value)
print("items  ", items.shape)
print("queries", queries.shape, " keys", keys.shape, " values", values.shape)

# %% [markdown]
# Queries and keys must share a width $d$, because they are compared with each other. Values may have
# any width $d_v$: they are only averaged, never compared.
#
# ## 2. Relevance is a dot product
#
# How well does spine $k_i$ match question $q$? The lookup uses the dot product
# $s_i = q \cdot k_i = \sum_j q_j k_{ij}$. It is large and positive when the two vectors point the
# same way, zero when they are at right angles (**orthogonal**), and negative when they point in
# opposite directions. Run the cell and read the three scores.

# %%
q = np.array([1.0, 0.5])
for label, k in [("aligned", np.array([2.0, 1.0])), ("orthogonal", np.array([-0.5, 1.0])),
                 ("opposed", np.array([-2.0, -1.0]))]:
    print(f"{label:>10}: q · k = {np.dot(q, k):+.2f}")

# %% [markdown]
# Length matters too: doubling a key doubles its score. Keep that in mind for the widget later.
#
# ### Exercise 1 — `relevance_scores` (2 points)
#
# Write `relevance_scores(query, keys)`, the score of a query against every key at once.
#
# * `query` is one query of shape `(d,)` **or** a batch of `Tq` queries of shape `(Tq, d)`;
# * `keys` has shape `(n, d)`, one key per row;
# * return shape `(n,)` for one query and `(Tq, n)` for a batch: `scores[t, i]` is query `t` against key `i`.
#
# Hint: one matrix product does both cases; think about which of the two arrays needs a transpose.

# %% nbgrader={"grade": false, "grade_id": "relevance_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def relevance_scores(query, keys):
    """Dot product of each query with each key.

    Args:
        query: (d,) or (Tq, d)
        keys: (n, d)

    Returns:
        (n,) or (Tq, n) with scores[..., i] = query · keys[i]
    """
    ### BEGIN SOLUTION
    return query @ keys.T
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "relevance_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# One query against a handful of keys (aligned, orthogonal, opposed, and random ones):
# the result must have shape (n,) and match the dot products.
grading.check("relevance_tests", relevance_scores)
### BEGIN HIDDEN TESTS
grading.record("relevance_tests", relevance_scores)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "relevance_batch_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# A batch of queries: shape (Tq, n), row t = query t. A transposed result is caught and explained.
grading.check("relevance_batch_tests", relevance_scores)
### BEGIN HIDDEN TESTS
grading.record("relevance_batch_tests", relevance_scores)
### END HIDDEN TESTS

# %% [markdown]
# ## 3. From scores to a lookup: hard or soft?
#
# You now have one score per book. Two ways to turn scores into an answer:
#
# * **Hard lookup.** Take the book with the highest score and return its value:
#   $\text{out} = v_{\arg\max_i s_i}$. Decisive, but all-or-nothing.
# * **Soft lookup.** Give every book a weight, more for higher scores, and return the weighted
#   average of all values: $\text{out} = \sum_i w_i v_i$ with
#   $$w_i = \operatorname{softmax}(s)_i = \frac{e^{s_i}}{\sum_j e^{s_j}}.$$
#   The weights are positive and sum to 1, so the output is a blend of the books' contents,
#   dominated by the most relevant ones.
#
# Attention uses the soft version. Section 5 shows why; first, you need a softmax that does not break.
#
# ### The overflow trap
#
# `np.exp` of anything above about 709 does not fit in a float64 and becomes `inf`, and `inf / inf`
# is `nan`. Scores that large are rare in a well-trained model but easy to hit by accident. The cure
# is an identity: subtracting the same number $c$ from every score changes nothing,
# $$\frac{e^{s_i - c}}{\sum_j e^{s_j - c}} = \frac{e^{-c}\, e^{s_i}}{e^{-c} \sum_j e^{s_j}}
# = \operatorname{softmax}(s)_i ,$$
# and with $c = \max_j s_j$ the largest exponent is exactly 0, so nothing overflows.

# %%
big = np.array([1000.0, 1001.0, 1002.0])
naive = np.exp(big) / np.exp(big).sum()
shifted = np.exp(big - big.max()) / np.exp(big - big.max()).sum()
print("np.exp(big)     :", np.exp(big))
print("naive softmax   :", naive)
print("shifted softmax :", shifted)

# %% [markdown]
# ### Exercise 2 — `stable_softmax` (3 points)
#
# Write `stable_softmax(scores, axis=-1)`:
#
# * `scores` is an array of any shape; the weights must sum to 1 along `axis` (by default the last
#   one, i.e. across the keys of each query);
# * subtract the maximum **along that axis** before `np.exp` (`keepdims=True` keeps the shapes
#   broadcastable), so that scores like 1000 or -1000 work;
# * an entry of `-inf` ("this book is not on the shelf") must get weight exactly 0;
# * do not modify `scores` in place, and do not call a library softmax: the point is to write it.

# %% nbgrader={"grade": false, "grade_id": "softmax_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def stable_softmax(scores, axis=-1):
    """Softmax along `axis`, safe for large scores.

    Args:
        scores: array of any shape
        axis: the axis along which the result sums to 1

    Returns:
        array of the same shape as scores, non-negative, summing to 1 along `axis`
    """
    ### BEGIN SOLUTION
    shifted = scores - np.max(scores, axis=axis, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=axis, keepdims=True)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "softmax_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Ordinary scores, 1-D and 2-D, with the default axis and with axis=0:
# same shape as the input, matches the softmax formula, sums to 1 along the requested axis.
grading.check("softmax_tests", stable_softmax)
### BEGIN HIDDEN TESTS
grading.record("softmax_tests", stable_softmax)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "softmax_stability_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Scores near 1000 must not overflow (no nan or inf), and a -inf score gets weight exactly 0.
grading.check("softmax_stability_tests", stable_softmax)
### BEGIN HIDDEN TESTS
grading.record("softmax_stability_tests", stable_softmax)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 3 — `soft_lookup` (2 points)
#
# Put the pieces together. `soft_lookup(query, keys, values)` returns a pair `(output, weights)`:
#
# * `weights`: the softmax of the relevance scores over the keys, shape `(n,)` or `(Tq, n)`;
# * `output`: the weighted average of the values, shape `(d_v,)` or `(Tq, d_v)`.
#
# Reuse your two functions above. One matrix product computes every weighted average at once.

# %% nbgrader={"grade": false, "grade_id": "soft_lookup_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def soft_lookup(query, keys, values):
    """Softmax-weighted average of the values.

    Args:
        query: (d,) or (Tq, d)
        keys: (n, d)
        values: (n, d_v)

    Returns:
        (output, weights): output (d_v,) or (Tq, d_v); weights (n,) or (Tq, n)
    """
    ### BEGIN SOLUTION
    weights = stable_softmax(relevance_scores(query, keys), axis=-1)
    return weights @ values, weights
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "soft_lookup_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# One query: weights of shape (n,) that sum to 1, and an output of shape (d_v,).
grading.check("soft_lookup_tests", soft_lookup)
### BEGIN HIDDEN TESTS
grading.record("soft_lookup_tests", soft_lookup)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "soft_lookup_batch_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# A batch of queries: each query's weights sum to 1 over the keys, outputs have shape (Tq, d_v).
grading.check("soft_lookup_batch_tests", soft_lookup)
### BEGIN HIDDEN TESTS
grading.record("soft_lookup_batch_tests", soft_lookup)
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Check the shapes
#
# Shapes are where attention code usually goes wrong, so read them once with your own function:
# three queries, five books with width-4 keys, values of width 2. (Until your `soft_lookup` is
# written, the cell borrows the package's reference so that the rest of the chapter still runs.)

# %%
batch_queries = rng.standard_normal((3, 4))  # (Tq, d)
shelf_keys = rng.standard_normal((5, 4))  # (n, d)
shelf_values = rng.standard_normal((5, 2))  # (n, d_v)
try:
    batch_output, batch_weights = soft_lookup(batch_queries, shelf_keys, shelf_values)
    print("with your soft_lookup:")
except NotImplementedError:
    batch_output, batch_weights = reference.soft_lookup(batch_queries, shelf_keys, shelf_values)
    print("with the reference (your soft_lookup is not written yet):")
print("weights", batch_weights.shape, "-> row sums", batch_weights.sum(axis=-1))
print("output ", batch_output.shape)

# %% [markdown]
# ## 5. Why soft? Because it has a gradient
#
# A model learns by nudging its parameters (here, the query) in the direction that improves the
# output. That needs the output to *change* when the query changes a little.
#
# The next cell nudges a query by a tiny step and measures how much each lookup's output moves
# (a finite difference), then asks torch's autograd for the gradient of the output with respect to
# the query. The soft lookup is written out in torch for this demo; the hard lookup picks a row by
# `argmax`, an integer index through which no gradient can flow.

# %%
demo_keys, demo_values = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
demo_query, nudge = rng.standard_normal(3), 1e-4 * rng.standard_normal(3)
for name, lookup in [("soft", reference.soft_lookup), ("hard", reference.hard_lookup)]:
    moved = lookup(demo_query + nudge, demo_keys, demo_values)[0] - lookup(demo_query, demo_keys, demo_values)[0]
    print(f"{name} lookup: output moved by {np.abs(moved).max():.2e} for a nudge of {np.abs(nudge).max():.1e}")

query_t = torch.tensor(demo_query, requires_grad=True)
keys_t, values_t = torch.tensor(demo_keys), torch.tensor(demo_values)
soft_out = torch.softmax(keys_t @ query_t, dim=-1) @ values_t  # (d_v,)
soft_out.sum().backward()
print("soft lookup: d(output)/d(query) =", query_t.grad.numpy())
hard_out = values_t[torch.argmax(keys_t @ query_t)]  # (d_v,), chosen by an integer index
print("hard lookup: does the output depend on the query through a gradient?", hard_out.requires_grad)

# %% [markdown]
# The soft output moves in proportion to the nudge and has a nonzero gradient. The hard output does
# not move at all until the nudge is big enough to change which book wins, and then it *jumps*; its
# gradient is zero almost everywhere and undefined at the jumps. Gradient descent gets no signal from
# it. That is the reason attention averages instead of choosing.
#
# ## 6. Lost in the library: a query that matches nothing
#
# What if your question is unrelated to every spine on the shelf, i.e. the query is orthogonal to
# every key? Then every score is exactly 0, and the softmax of equal scores is uniform: each of the $n$
# books gets weight $1/n$. The lookup does not crash or pick something arbitrary; it returns the
# plain **average of all values**, a bland "general catalogue" answer.
#
# Such a query does not always exist. In $d$ dimensions, a nonzero vector orthogonal to all keys
# exists exactly when the keys do **not** span the whole space, which for keys in general position
# means $n < d$: fewer books than dimensions. With $d$ or more generic keys, every direction has some
# overlap with some key.
#
# ### Exercise 4 — `orthogonal_query` (3 points)
#
# Write `orthogonal_query(keys, rng)`: return a **nonzero** vector of shape `(d,)` orthogonal to
# every row of `keys` (shape `(n, d)`), using `rng` for any randomness. If the keys span all `d`
# dimensions, no such vector exists: raise `ValueError`.
#
# Hints: the directions orthogonal to all keys form the *null space* of the matrix `keys`. The
# singular value decomposition `np.linalg.svd(keys, full_matrices=True)` returns `vt`, whose rows
# are orthonormal directions; the rows after the first `rank` of them (where `rank` counts the
# singular values that are not tiny) are exactly that null space. A random combination of those rows
# is your query. Alternatively: take a random vector and subtract its projection onto the keys.

# %% nbgrader={"grade": false, "grade_id": "orthogonal_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def orthogonal_query(keys, rng):
    """A nonzero query orthogonal to every key.

    Args:
        keys: (n, d)
        rng: a numpy random Generator

    Returns:
        (d,) nonzero vector q with keys @ q == 0 (up to rounding)

    Raises:
        ValueError: if the keys span all d dimensions
    """
    ### BEGIN SOLUTION
    d = keys.shape[1]
    _, singular, vt = np.linalg.svd(keys, full_matrices=True)
    rank = int(np.sum(singular > 1e-10 * singular.max()))
    if rank >= d:
        raise ValueError("the keys span the whole space: no nonzero query is orthogonal to all of them")
    query = rng.standard_normal(d - rank) @ vt[rank:]
    return query / np.linalg.norm(query)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "orthogonal_query_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Keys that leave room (n < d, or keys spanning a subspace): your query must be nonzero and orthogonal
# to every key, and the lookup must then give uniform weights 1/n and return the mean of the values.
grading.check("orthogonal_query_tests", orthogonal_query)
### BEGIN HIDDEN TESTS
grading.record("orthogonal_query_tests", orthogonal_query)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "orthogonal_impossible_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Keys that span the whole space (here the 3 axes of 3-D space): no orthogonal query exists -> ValueError.
grading.check("orthogonal_impossible_tests", orthogonal_query)
### BEGIN HIDDEN TESTS
grading.record("orthogonal_impossible_tests", orthogonal_query)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. See it
#
# Back to a real-looking shelf: five books with 2-D keys (arrows), each holding a colour as its value.
# The dashed arrows are queries q1–q4 (q5 is the zero vector). The heatmap shows the weights each
# query puts on each book. Look for three things: the long query q1 aimed at Astronomy picks it almost
# alone, while the short q3 spreads its weight even though it points straight at Cooking; q4, at right
# angles to Astronomy, scores it exactly 0, so Astronomy is neither favoured nor pushed away (Botany
# wins because q4 points its way); and the zero query q5, which matches nothing, is uniform.

# %%
shelf_settings = [("q1 → Astronomy, long", 0, 3.0), ("q2 → Botany", 72, 1.5), ("q3 → Cooking, short", 144, 0.4),
                  ("q4 ⊥ Astronomy", 90, 1.5), ("q5 zero query", 0, 0.0)]  # (label, angle in degrees, length)
views = {label: lookup_view(angle, length) for label, angle, length in shelf_settings}
shelf_weights = np.stack([view.weights for view in views.values()])  # (5 queries, 5 books)
fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.4]})
draw_shelf(SHELF, {label.split()[0]: view.query for label, view in list(views.items())[:4]}, ax=axes[0])
attention_heatmap(shelf_weights, list(views), [book.title for book in SHELF], ax=axes[1], annotate=True,
                  title="weights per query: aim and length decide the focus; zero query = uniform")
fig.tight_layout()
plt.show()

# %% [markdown]
# Now drive it yourself. The **angle** slider turns the query, the **length** slider stretches it.
# Watch the bars (the weights) and the blended colour (the retrieved value):
#
# * turn the query toward a book: that book's bar grows, and the swatch takes its colour;
# * shrink the length to 0: every bar becomes equal and the swatch is the average colour;
# * stretch it to the maximum: the soft lookup behaves almost like a hard one.

# %%
make_lookup_widget()

# %% [markdown]
# ## 8. Measure it
#
# The claim of section 6, tested the way an experiment should be: many random shelves
# (8 random keys in 16 dimensions, values of width 4), a query built orthogonal to all keys with the
# reference `orthogonal_query`, and the largest deviation from the prediction over all trials.

# %%
result = experiment.measure_orthogonal(trials=200 if FAST else 5000)
print(f"{result.trials} random shelves, n = {result.n_keys} keys in d = {result.dim} dimensions")
print(f"largest |query · key|            : {result.max_abs_score:.1e}")
print(f"largest |weight - 1/n|           : {result.max_weight_error:.1e}")
print(f"largest |output - mean(values)|  : {result.max_output_error:.1e}")

# %% [markdown]
# The deviations the cell prints are at the level of floating-point rounding (float64 resolves about
# 16 decimal digits): the weights are uniform and the output is the mean, as predicted.
#
# **Nearly orthogonal.** Real queries are rarely exactly orthogonal. Add a small overlap: the query
# becomes $q_\perp + \varepsilon u$ with $u$ a random unit vector. How fast do the weights leave uniform?

# %%
print(f"{'overlap ε':>10} {'max |score|':>12} {'max |w - 1/n|':>14} {'max w_max/w_min':>16} {'max |out - mean|':>17}")
for row in experiment.measure_near_orthogonal(trials=50 if FAST else 1000):
    print(f"{row.overlap:>10g} {row.max_score:>12.2e} {row.max_weight_error:>14.2e} "
          f"{row.max_weight_ratio:>16.3f} {row.max_output_error:>17.2e}")

# %% [markdown]
# Read the table from the top: the deviation grows smoothly with the overlap, roughly in proportion
# while ε is small, so "nearly orthogonal" gives "nearly uniform". Once the scores reach order 1, the
# weights are far from uniform and the lookup starts to have an opinion.
#
# **The limit.** The exact claim needs a query orthogonal to *every* key, which needs the keys to
# leave a direction free. The next cell draws random shelves of $n$ keys in $d = 6$ dimensions and
# reports how often an orthogonal query exists, and, for the direction least aligned with the keys,
# its largest |cosine| with a key (0 means truly orthogonal).

# %%
print(f"{'n keys':>6} {'d':>3} {'orthogonal query exists':>24} {'best max |cos|':>15}")
for row in experiment.measure_span_limit(trials=50 if FAST else 1000):
    print(f"{row.n_keys:>6} {row.dim:>3} {row.fraction_with_orthogonal_query:>24.0%} {row.best_max_cosine:>15.3f}")

# %% [markdown]
# For $n < d$ an orthogonal query always exists; from $n = d$ on it never does for random keys, and
# the best you can do keeps some overlap with at least one key, growing with $n$. So the
# "graceful average" is exact only when the query lives in directions the keys leave unused. (A
# *zero* query, or all keys identical, also gives uniform weights for any $n$; Chapter 2 measures
# those cases with entropy.)
#
# ## Summary
#
# * Queries, keys and values are three learned projections of the items; queries and keys share a
#   width $d$ so they can be compared, values can have any width $d_v$.
# * Relevance is a dot product: positive when aligned, zero when orthogonal, negative when opposed.
# * A **soft** lookup returns $\operatorname{softmax}(q K^\top)\, V$, a weighted average of the values.
#   Unlike the hard `argmax` lookup it has a useful gradient, which is why attention is trainable.
# * A stable softmax subtracts the maximum first; `-inf` scores get weight exactly 0.
# * A query orthogonal to every key gets uniform weights and returns the mean of the values (measured
#   above to rounding error); such a query exists only when the keys do not span the space.
#
# **Check yourself**
#
# 1. Your query has shape `(7, 64)` and the keys `(12, 64)`. What are the shapes of the scores, of
#    the weights, and of the output if the values have width 32?
# 2. Why can you subtract the row maximum inside a softmax without changing the result? Why the
#    *row* maximum and not the maximum of the whole array?
# 3. You double the length of a query. What happens to the weights: sharper, flatter, or unchanged?
#    Try it with the widget.
# 4. Eight keys live in a 4-dimensional space. Can a nonzero query be orthogonal to all of them?
#    What if all eight lie in one plane?
# 5. A model uses a hard `argmax` lookup. Why does gradient descent fail to improve its queries?
