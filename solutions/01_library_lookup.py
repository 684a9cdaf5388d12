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
# A translator halfway through a sentence keeps glancing back at the original to decide the next
# word. Cross-attention gives a network that glance: the positions of one sequence pose questions,
# the positions of another sequence answer them, and every question leaves with a blend of the
# answers, mixed in proportion to how well each one fits. This chapter builds that blend from three
# small pieces you write yourself in numpy: a relevance score, a softmax and a weighted average.
#
# **By the end of this chapter you can**
#
# 1. say what queries, keys and values are, and where each comes from in cross-attention;
# 2. compute dot-product relevance scores for one query or a batch of queries, with the right shapes;
# 3. write a softmax that survives scores like 1000 and `-inf`;
# 4. show, by training one, why a *soft* lookup (a weighted average) learns by gradient descent and a
#    *hard* one (pick the best book) does not;
# 5. predict, build and measure when the lookup returns the plain average of everything it reads.
#
# **How to work.** Run the cells from the top. *Run All* works too: it goes to the end even while
# exercises are unfinished, and the test cell of an unfinished exercise prints one line saying so.
# Where you see `# YOUR CODE HERE`, replace the `raise NotImplementedError()` line with your code,
# then run the test cell below it. Test cells say what they check; more (hidden) cases are tried when
# your notebook is graded. One grading rule to know: a test cell that writes anything to the error
# stream (stderr) scores 0, even when its checks pass. The checks silence warnings while your
# function runs, so this only bites if your own code prints to `sys.stderr` or shows a progress bar.
# Grade yourself at any time from a terminal with `xattn grade 01_library_lookup.ipynb`. Plan on
# about an hour.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.library_lookup import checks as grading
from xattn_edu.chapters.library_lookup import equal_scores as experiment
from xattn_edu.chapters.library_lookup import learning, reference
from xattn_edu.chapters.library_lookup.widget import SHELF, draw_shelf, lookup_view, make_lookup_widget
from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import attention_heatmap, line_chart

np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)
torch.manual_seed(0)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds

# %% [markdown]
# ## 1. A library in a few vectors
#
# Picture a reading room. You arrive with a question, glance along the **spines** on the shelf, and
# read mostly from the books whose spines fit your question.
#
# Attention turns each part of that scene into a vector:
#
# | reading room | attention | shape here |
# |---|---|---|
# | your question | the **query** $q$ | $(d,)$ |
# | the spine of book $i$ | the **key** $k_i$ | $(n, d)$ for all $n$ books |
# | the contents of book $i$ | the **value** $v_i$ | $(n, d_v)$ |
#
# In a model, every item (a word, an image patch, ...) arrives as an embedding of width $D$, and three
# learned matrices turn embeddings into these vectors. In **cross**-attention the two sides are
# different sequences. The *asking* side, say the $T_q$ words of the translation written so far,
# gives the queries, $Q = Y W_Q$: what each position wants to know. The *read* side, say the $n$ words
# of the sentence being translated, gives both the keys, $K = X W_K$ (how each item advertises itself),
# and the values, $V = X W_V$ (what it hands over when chosen). Training adjusts $W_Q, W_K, W_V$ until
# the questions and the advertisements meet usefully. (When the asking side and the read side are the
# same sequence, the same machinery is called self-attention; Chapter 3 puts the two side by side.)

# %%
asking = rng.standard_normal((3, 6))  # (Tq, D): Tq = 3 items pose questions, embedding width D = 6
read = rng.standard_normal((5, 6))  # (n, D): n = 5 items are read (a different sequence, another length)
w_query, w_key = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))  # (D, d), d = 4
w_value = rng.standard_normal((6, 2))  # (D, d_v), d_v = 2
queries, keys, values = reference.project(asking, read, w_query, w_key, w_value)
print("asking items", asking.shape, "-> queries", queries.shape)
print("read items  ", read.shape, "-> keys   ", keys.shape, " values", values.shape)

# %% [markdown]
# Queries and keys must share a width $d$, because they are compared with each other. Values may have
# any width $d_v$: they are only averaged, never compared. The two sides may differ in length
# ($T_q = 3$ questions, $n = 5$ books); each question will get its own answer.
#
# ## 2. Relevance is a dot product
#
# How well does spine $k_i$ fit question $q$? The lookup uses the dot product
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
# Attention uses the soft version. Section 5 shows why; first, you need a softmax that stays finite for every input, however large.
#
# ### The overflow trap
#
# `np.exp` of anything above about 709 does not fit in a float64 and becomes `inf`, and `inf / inf`
# is `nan`. Scores that large are rare in a well-trained model but easy to hit by accident. The cure
# is an identity: subtracting the same number $c$ from every score changes nothing,
# $$\frac{e^{s_i - c}}{\sum_j e^{s_j - c}} = \frac{e^{-c}\, e^{s_i}}{e^{-c} \sum_j e^{s_j}}
# = \operatorname{softmax}(s)_i ,$$
# and with $c = \max_j s_j$ the largest exponent is exactly 0, so nothing overflows. Run the cell:
# numpy prints its own warnings under it (an overflow in `exp`, then an invalid division). Those
# warnings are the trap announcing itself; read them.

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
#   broadcastable), so that scores like 1000 or -1000 work, row by row: one maximum for the whole
#   array is not enough when rows live on different scales (the visible checks include such a pair);
# * an entry of `-inf` ("this book is not on the shelf") must get weight exactly 0;
# * a row whose scores are **all** `-inf` is left out of this exercise: the formula gives
#   $(-\infty) - (-\infty)$ = `nan` there, and your function may return `nan` for it (the cell after
#   the tests shows what happens);
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
# Scores near 1000 must not overflow (no nan or inf), a -inf score gets weight exactly 0, and two rows
# on very different scales (near 1000 and near -1000) need one maximum per row, not one for the array.
grading.check("softmax_stability_tests", stable_softmax)
### BEGIN HIDDEN TESTS
grading.record("softmax_stability_tests", stable_softmax)
### END HIDDEN TESTS

# %% [markdown]
# **A shelf with no book on it.** What should a row of all `-inf` return? There is no right answer
# inside the formula: every exponential is 0 and the sum is 0. The cell asks three softmaxes.

# %%
no_book = np.full(3, -np.inf)
print("the formula (yours, or this line):", np.exp(no_book - no_book.max()) / np.exp(no_book - no_book.max()).sum())
print("torch.softmax                    :", torch.softmax(torch.tensor(no_book), dim=-1).numpy())
print("the package's reference          :", reference.softmax(no_book))

# %% [markdown]
# The formula and torch agree on `nan` (with numpy's warning about the invalid subtraction); the
# package's reference returns zeros instead: no book, no weight. Which one is right is a choice, not
# a fact. It matters in Chapter 2, where masks hide keys from a query: a query that is allowed to see
# *no* key is exactly this row, and a `nan` there spreads into every gradient of a model. Chapter 2
# picks zeros and says why.
#
# ### Only differences between scores matter
#
# The shift identity has a second consequence: a score means nothing on its own. Add 5 to every score
# and the weights stay put; a score of 0 is not "neutral", it is simply 2 below a score of 2.
#
# ### Exercise 3 — a score of 0 (1 point)
#
# Three books score $(2, 0, 0)$ for your query. Work out, on paper or with `math.exp`, the weight one
# of the books scored 0 gets, and set `zero_score_weight` to it (a number; four correct decimals are
# enough). Before you compute: is it more or less than the uniform share $1/3$?

# %% nbgrader={"grade": false, "grade_id": "zero_score_answer", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["raises-exception"]
zero_score_weight = None  # your answer: a number
### BEGIN SOLUTION
zero_score_weight = math.exp(0) / (math.exp(2) + 2 * math.exp(0))
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "zero_score_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Your number against the softmax of (2, 0, 0), to four decimals; the uniform share and 0 are named.
grading.check("zero_score_tests", zero_score_weight)
### BEGIN HIDDEN TESTS
grading.record("zero_score_tests", zero_score_weight)
### END HIDDEN TESTS

# %% [markdown]
# And the same weights after shifting every score, checked:

# %%
for shift in (0.0, 5.0, -300.0):
    print(f"scores (2, 0, 0) + {shift:>6}: weights {reference.softmax(np.array([2.0, 0.0, 0.0]) + shift)}")

# %% [markdown]
# ### Exercise 4 — `soft_lookup` (2 points)
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
# Shapes are where attention code usually goes wrong, so read them once with your own function, on what
# section 1 built: three questions against five books. (Until your `soft_lookup` is
# written, the cell borrows the package's reference so that the rest of the chapter still runs.)

# %%
lookup = prefer_mine(soft_lookup, reference.soft_lookup)
batch_output, batch_weights = lookup(queries, keys, values)
print("queries", queries.shape, " keys", keys.shape, " values", values.shape)
print("weights", batch_weights.shape, "-> row sums", batch_weights.sum(axis=-1))
print("output ", batch_output.shape, ": one answer per question, as wide as a value")

# %% [markdown]
# ## 5. Why soft? Because it has a gradient
#
# A model learns by nudging its parameters (here, the query) in the direction that improves the
# output. That needs the output to *change* when the query changes a little.
#
# The next cell nudges a query by a tiny step and measures how much each lookup's output moves (a
# finite difference). Then it asks torch for the **Jacobian** of each lookup, the matrix of
# derivatives $\partial\,\text{out}_a / \partial q_b$, shape $(d_v, d)$. The hard lookup picks a row
# by `argmax`, an integer index through which no derivative can flow.

# %%
demo_keys, demo_values = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
demo_query, nudge = rng.standard_normal(3), 1e-4 * rng.standard_normal(3)
for name, pick in [("soft", reference.soft_lookup), ("hard", reference.hard_lookup)]:
    moved = pick(demo_query + nudge, demo_keys, demo_values)[0] - pick(demo_query, demo_keys, demo_values)[0]
    print(f"{name} lookup: output moved by {np.abs(moved).max():.2e} for a nudge of {np.abs(nudge).max():.1e}")

query_t, keys_t, values_t = (torch.tensor(a) for a in (demo_query, demo_keys, demo_values))
soft_jacobian = torch.autograd.functional.jacobian(lambda q: torch.softmax(keys_t @ q, dim=-1) @ values_t, query_t)
hard_jacobian = torch.autograd.functional.jacobian(lambda q: values_t[torch.argmax(keys_t @ q)], query_t)
print("soft lookup: d output / d query, shape (d_v, d) =", tuple(soft_jacobian.shape), "\n", soft_jacobian.numpy())
print("hard lookup: d output / d query\n", hard_jacobian.numpy())

# %% [markdown]
# The soft output moves in proportion to the nudge and its Jacobian is full of nonzero entries. The hard
# output does not move at all until the nudge is big enough to change which book wins, and then it
# *jumps*; its Jacobian is zero wherever it is defined.
#
# ### Watch it learn
#
# Does that matter for learning? Train it and see. On the shelf of the widget below (five books with
# 2-D keys; each book's value is a colour), one query starts near Astronomy and is trained by plain
# gradient descent to fetch **Poetry**'s colour: the loss is the squared distance between the
# retrieved colour and Poetry's. The same start, the same steps, once through each lookup.

# %%
shelf_keys = np.array([book.key for book in SHELF])  # (n, 2)
shelf_values = np.array([book.colour for book in SHELF])  # (n, 3): RGB colours
titles = [book.title for book in SHELF]
target = titles.index("Poetry")
runs = {kind: learning.train_query(shelf_keys, shelf_values, target, np.array([1.0, 0.3]), hard=kind == "hard")
        for kind in ("soft", "hard")}
print(f"{'step':>4} {'soft: loss':>11} {'weight on Poetry':>17} {'|gradient|':>11} {'hard: loss':>11} "
      f"{'weight on Poetry':>17} {'|gradient|':>11}")
for step in range(0, len(runs["soft"].losses), 10):
    print(f"{step:>4}" + "".join(f" {run.losses[step]:>11.4f} {run.weights[step, target]:>17.3f} "
                                 f"{run.gradient_norms[step]:>11.2e}" for run in runs.values()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained", gridspec_kw={"width_ratios": [1, 1.2]})
steps = range(len(runs["soft"].losses))
line_chart(steps, {f"{kind} lookup": run.losses for kind, run in runs.items()}, xlabel="gradient step",
           ylabel="loss (squared colour distance)", title="only the soft lookup learns", ax=axes[0])
shown = [0, 2, 5, 10, 20, 40, len(steps) - 1]
attention_heatmap(runs["soft"].weights[shown], [f"step {s}" for s in shown], titles, ax=axes[1], annotate=True,
                  title="soft lookup: the weights move to Poetry", ylabel="training step")
plt.show()

# %% [markdown]
# The soft query's loss falls step after step while its weight slides from Astronomy to Poetry; the
# hard query's loss is a flat line, because its gradient is exactly 0 at every step: backpropagation
# finds no path from the loss to the query. That is why attention averages instead of choosing.
#
# One honest limit: hard attention *can* be trained, just not by plain backpropagation. Score-function
# estimators such as REINFORCE treat the pick as a random draw and raise the probability of draws that
# paid off; that is a different training method, with its own costs. Everything in this course trains
# by plain backpropagation, and for that the lookup must be soft.
#
# ## 6. When is the answer the plain average?
#
# Suppose the lookup cannot tell the books apart: every book gets weight $1/n$ and the answer is the
# plain **average of all values**. When exactly does that happen? The shift identity of section 3
# answers it. Softmax only sees differences between scores, so the weights are uniform exactly when all
# $n$ scores are **equal**:
#
# $$K q = c\,\mathbf{1} \quad\text{for some number } c .$$
#
# A query orthogonal to every key is one way to get there ($c = 0$: every score is 0), but not the
# only one. With $n = d$ keys in general position, $K$ is an invertible square matrix and
# $q = c\, K^{-1}\mathbf{1}$ ties every score at $c$, for any $c$. The cell checks it on four random keys
# in four dimensions, where no nonzero query can be orthogonal to all of them.

# %%
square_keys, square_values = rng.standard_normal((4, 4)), rng.standard_normal((4, 3))  # n = d = 4
tie_query = 2.0 * np.linalg.solve(square_keys, np.ones(4))  # q = c K^-1 1 with c = 2
tie_output, tie_weights = reference.soft_lookup(tie_query, square_keys, square_values)
print("scores  :", square_keys @ tie_query)
print("weights :", tie_weights)
print("output - mean of the values:", tie_output - square_values.mean(axis=0))
print("rank of the keys:", np.linalg.matrix_rank(square_keys), "of d = 4: no direction is orthogonal to all keys")

# %% [markdown]
# When does such a query exist? Two cases, each with its own limit:
#
# * **$c = 0$ (orthogonal).** A nonzero $q$ with $Kq = 0$ needs a direction the keys leave unused:
#   the keys must not span all $d$ dimensions. For keys in general position that means $n < d$.
# * **$c \neq 0$.** The $n$ equations $k_i \cdot q = c$ have $d$ unknowns. For keys in general position
#   they can all be met while $n \le d$; with more books than dimensions they generally cannot, and
#   only the zero query (which ties everything at 0) gives uniform weights.
#
# ### Exercise 5 — `equal_score_query` (4 points)
#
# Write `equal_score_query(keys, level)`: return a **nonzero** query of shape `(d,)` whose score
# against every row of `keys` (shape `(n, d)`) equals `level`. If no nonzero query does, raise
# `ValueError`.
#
# Hints:
#
# * `level != 0`: solve $K q = c\,\mathbf{1}$. `np.linalg.lstsq(keys, target, rcond=None)[0]` returns
#   the shortest $q$ whose scores come closest to `target`, for any $n$ and $d$. "Closest" may not be
#   "equal": check the scores with `np.allclose` before you return, and raise when they miss.
# * `level == 0`: the shortest solution is the zero vector, which asks nothing. You need a direction of
#   the *null space* of `keys`. `np.linalg.svd(keys, full_matrices=True)` returns `vt`, whose rows are
#   orthonormal directions; the rows after the first `rank` of them (where `rank` counts the singular
#   values that are not tiny) are exactly that null space. No row left over: raise.

# %% nbgrader={"grade": false, "grade_id": "equal_scores_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def equal_score_query(keys, level):
    """A nonzero query whose score against every key is `level`.

    Args:
        keys: (n, d)
        level: the common score, a number

    Returns:
        (d,) nonzero vector q with keys @ q == level for every key (up to rounding)

    Raises:
        ValueError: if no nonzero query gives every key the score `level`
    """
    ### BEGIN SOLUTION
    n, d = keys.shape
    if level == 0:
        _, singular, vt = np.linalg.svd(keys, full_matrices=True)
        rank = int(np.sum(singular > 1e-10 * singular.max()))
        if rank >= d:
            raise ValueError("the keys span the whole space: no nonzero query is orthogonal to all of them")
        return vt[rank]
    query = np.linalg.lstsq(keys, np.full(n, float(level)), rcond=None)[0]
    if not np.allclose(keys @ query, level):
        raise ValueError("no query gives every key the same score")
    return query
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "equal_scores_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Levels other than 0, with n = d and n < d keys: every score must equal the level, and the lookup must
# then give uniform weights 1/n and return the mean of the values.
grading.check("equal_scores_tests", equal_score_query)
### BEGIN HIDDEN TESTS
grading.record("equal_scores_tests", equal_score_query)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "orthogonal_query_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Level 0 with keys that leave room (n < d, or keys in a plane): a nonzero query orthogonal to every key.
grading.check("orthogonal_query_tests", equal_score_query)
### BEGIN HIDDEN TESTS
grading.record("orthogonal_query_tests", equal_score_query)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "no_equal_scores_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# No such query: level 0 with the 3 axes of 3-D space as keys, and level 1 with 4 random keys in 3-D -> ValueError.
grading.check("no_equal_scores_tests", equal_score_query)
### BEGIN HIDDEN TESTS
grading.record("no_equal_scores_tests", equal_score_query)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. See it
#
# Back to the shelf: five books with 2-D keys (the coloured arrows), each holding its colour as its
# value. The dashed arrows are queries q1–q4 (q5 is the zero vector, which has no arrow). The heatmap
# shows the weights each query puts on each book. Look for three things:
#
# * the long q1 aimed at Astronomy picks it almost alone, while the short q3 spreads its weight even
#   though it points straight at Cooking: length sharpens;
# * q4 is at right angles to Astronomy, so Astronomy scores exactly 0, yet it gets *less* than the
#   uniform share 1/5: Poetry and Sailing score above 0, and only differences count;
# * the zero query q5 ties every score at 0: uniform weights.

# %%
shelf_settings = [("q1 → Astronomy, long", 0, 3.0), ("q2 → Botany", 72, 1.5), ("q3 → Cooking, short", 144, 0.4),
                  ("q4 ⊥ Astronomy", 270, 1.5), ("q5 zero query", 0, 0.0)]  # (label, angle in degrees, length)
views = {label: lookup_view(angle, length) for label, angle, length in shelf_settings}
shelf_weights = np.stack([view.weights for view in views.values()])  # (5 queries, 5 books)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained", gridspec_kw={"width_ratios": [1.25, 1]})
draw_shelf(SHELF, {label.split()[0]: view.query for label, view in views.items()}, ax=axes[0])
attention_heatmap(shelf_weights, list(views), titles, ax=axes[1], annotate=True,
                  title="weights per query: aim and length decide the focus")
plt.show()
q4 = views["q4 ⊥ Astronomy"]
print(f"q4: Astronomy scores {q4.scores[0]:.0e} (0 up to rounding) and gets weight {q4.weights[0]:.3f}, "
      f"{'below' if q4.weights[0] < 1 / 5 else 'not below'} the uniform share 1/5 = 0.200")

# %% [markdown]
# Now drive it yourself. The **angle** slider turns the query, the **length** slider stretches it.
# Watch the bars (the weights) and the blended colour (the retrieved value):
#
# * turn the query toward a book: that book's bar grows, and the swatch takes its colour;
# * shrink the length to 0: every score ties, every bar becomes equal and the swatch is the average colour;
# * stretch it to the maximum: the soft lookup behaves almost like a hard one.

# %%
make_lookup_widget()

# %% [markdown]
# ## 8. Measure it
#
# The claim of section 6, tested the way an experiment should be: many random shelves, a query built
# with the reference `equal_score_query`, and the largest deviation from the prediction over all
# trials. Four settings: $c = 0$ and $c = 1$ with 8 keys in 16 dimensions, and $c = 1$ and $c = -2.5$
# with 8 keys in 8 dimensions (where no orthogonal query exists). Values have width 4.

# %%
print(f"{'n':>3} {'d':>3} {'level c':>8} {'shelves':>8} {'max |score - c|':>16} {'max |w - 1/n|':>14} "
      f"{'max |out - mean|':>17}")
for row in experiment.measure_equal_scores(trials=100 if FAST else 2000):
    print(f"{row.n_keys:>3} {row.dim:>3} {row.level:>8g} {row.trials:>8} {row.max_score_error:>16.1e} "
          f"{row.max_weight_error:>14.1e} {row.max_output_error:>17.1e}")

# %% [markdown]
# Every deviation the cell prints is at the level of floating-point rounding (float64 resolves about
# 16 decimal digits): tied scores give uniform weights and the mean value, whatever the level.
#
# **Nearly tied.** Real queries rarely tie exactly. Add a small overlap to an orthogonal query:
# $q_\perp + \varepsilon u$ with $u$ a random unit vector. How fast do the weights leave uniform?

# %%
print(f"{'overlap ε':>10} {'max |score|':>12} {'max |w - 1/n|':>14} {'max w_max/w_min':>16} {'max |out - mean|':>17}")
for row in experiment.measure_near_uniform(trials=50 if FAST else 1000):
    print(f"{row.overlap:>10g} {row.max_score:>12.2e} {row.max_weight_error:>14.2e} "
          f"{row.max_weight_ratio:>16.3f} {row.max_output_error:>17.2e}")

# %% [markdown]
# Read the table from the top: the deviation grows smoothly with the overlap, roughly in proportion
# while ε is small, so "nearly tied" gives "nearly uniform". Once the scores differ by order 1, the
# weights are far from uniform and the lookup has an opinion.
#
# **The limits.** The next cell draws random shelves of $n$ keys in $d = 6$ dimensions and reports how
# often a nonzero query ties every score at $c = 0$ (orthogonal) and at $c = 1$. The last column
# measures how close to orthogonal one can get when no orthogonal query exists: the largest |cosine|
# with a key of the *least-squares* direction (the one with the smallest sum of squared cosines). That
# direction is a convenient choice, not the best one, so the column is an upper bound: some other
# direction may keep every |cosine| a little lower.

# %%
print(f"{'n keys':>6} {'d':>3} {'c = 0 exists':>13} {'c = 1 exists':>13} {'least-squares max |cos| (upper bound)':>38}")
for row in experiment.measure_span_limit(trials=50 if FAST else 1000):
    print(f"{row.n_keys:>6} {row.dim:>3} {row.share_orthogonal:>13.0%} {row.share_equal:>13.0%} "
          f"{row.least_squares_max_cosine:>38.3f}")

# %% [markdown]
# The shares switch exactly where section 6 predicted: an orthogonal query exists for $n < d$ only, a
# query tying the scores at $c = 1$ for $n \le d$, and from $n = d + 1$ on neither does for random keys.
# Past $n = d$, the least-squares direction keeps a growing overlap with at least one key. So "the
# lookup returns the plain average" is exact only for queries that tie every score; a zero query does
# that for any shelf, and Chapter 2 measures it, with identical keys, using entropy.
#
# ## Summary
#
# * In cross-attention the asking side and the read side are two different sequences: questions are
#   projected from the first, keys and values from the second. Queries and keys share a width $d$ so
#   they can be compared; values can have any width $d_v$.
# * Relevance is a dot product: positive when aligned, zero when orthogonal, negative when opposed.
# * A **soft** lookup returns $\operatorname{softmax}(q K^\top)\, V$, a weighted average of the values.
#   Its output has a gradient with respect to the query, and gradient descent trains it (watched above);
#   the hard `argmax` lookup gets a gradient of 0 and never moves under plain backpropagation.
# * A stable softmax subtracts the maximum of each row first; `-inf` scores get weight exactly 0; a row of
#   all `-inf` is `nan` for the formula and zeros for the package's reference (Chapter 2 explains why).
# * Only differences between scores matter. The weights are uniform, and the output is the mean of the
#   values, exactly when all scores are equal ($Kq = c\mathbf{1}$); an orthogonal query is the case $c = 0$.
#   A nonzero such query exists for $n \le d$ ($c \ne 0$) or $n < d$ ($c = 0$) random keys.
#
# **Check yourself**
#
# 1. Your query has shape `(7, 64)` and the keys `(12, 64)`. What are the shapes of the scores, of
#    the weights, and of the output if the values have width 32?
# 2. Why can you subtract the row maximum inside a softmax without changing the result? What goes
#    wrong with one maximum for the whole array?
# 3. You double the length of a query. What happens to the weights: sharper, flatter, or unchanged?
#    Try it with the widget.
# 4. Eight keys live in a 4-dimensional space. Can a nonzero query tie all eight scores? What if all
#    eight lie in one plane?
# 5. A model uses a hard `argmax` lookup. Why does plain gradient descent fail to improve its queries?
