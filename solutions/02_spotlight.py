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
# # Chapter 2 — The spotlight: softmax, scaling, temperature and entropy
#
# In Chapter 1 the softmax turned relevance scores into weights, and the lookup returned a weighted
# average. This chapter looks at those weights as one object: a budget of exactly 1 that each query
# shares out among the keys. One query spends nearly all of it on a single book; another splits it into
# crumbs for the whole shelf. You will learn what decides how the budget is split, how to measure the
# split with a single number, why most Transformers divide their scores by $\sqrt{d}$ before the
# softmax (and what some others do instead), and what a query gets when every key is hidden from it.
#
# **By the end of this chapter you can**
#
# 1. measure how concentrated a set of attention weights is with its Shannon entropy, in nats, and
#    derive why it always lies between $0$ and $\log n_+$, with $n_+$ the keys that get any weight;
# 2. explain, with measurements and a small training run, why dot products of wide vectors are
#    scaled before the softmax, and what goes wrong with the gradients if they are not;
# 3. use a temperature to slide a softmax from a hard argmax to a uniform average, and say where
#    temperatures are used in practice;
# 4. predict the entropy in three telling situations (a query that matches one key, a zero query,
#    identical keys) and check your prediction;
# 5. write a masked softmax in torch that gives masked keys exactly zero weight and keeps every gradient
#    finite, including for a query that may see no key at all.
#
# **How to work.** Run the cells from the top. *Run All* works too: it goes to the end even while
# exercises are unfinished, and the test cell of an unfinished exercise prints one line saying so.
# Where you see `# YOUR CODE HERE`, replace the `raise NotImplementedError()` line with your code,
# then run the test cell below it. Test cells say what they check; more (hidden) cases are tried when
# your notebook is graded. One grading rule to know: a test cell that writes anything to the error
# stream (stderr) scores 0, even when its checks pass. The checks silence warnings while your
# function runs, so this only bites if your own code prints to `sys.stderr` or shows a progress bar.
# Grade yourself at any time from a terminal with `xattn grade 02_spotlight.ipynb`. Plan on about an
# hour.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.library_lookup import reference as lookup
from xattn_edu.chapters.spotlight import checks as grading
from xattn_edu.chapters.spotlight import entropy as entropy_experiment
from xattn_edu.chapters.spotlight import learning, masking, reference
from xattn_edu.chapters.spotlight import scaling as scaling_experiment
from xattn_edu.chapters.spotlight.widget import make_spotlight_widget
from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import heatmap_panels, line_chart
from xattn_edu.nn.attention import masked_softmax as reference_masked_softmax
from xattn_edu.nn.masks import padding_mask

np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)
torch.manual_seed(0)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds

# %% [markdown]
# ## 1. How a query shares its budget
#
# A softmax takes any list of scores and returns positive weights that add up to 1: a probability
# distribution over the keys. How that distribution *looks* depends only on the differences between
# the scores. One score far above the rest concentrates the budget on one key; scores close together
# spread it; equal scores split it evenly.
#
# The cell below feeds three score vectors for the same five books to Chapter 1's softmax.

# %%
shelf = ["Astronomy", "Botany", "Cooking", "Poetry", "Sailing"]
score_sets = {
    "one clear favourite": np.array([6.0, 1.0, 0.5, 0.0, 1.5]),
    "a few good matches ": np.array([2.0, 1.8, 0.2, 1.9, 0.0]),
    "no preference      ": np.array([1.0, 1.0, 1.0, 1.0, 1.0]),
}
for label, scores in score_sets.items():
    print(f"{label}: weights {lookup.softmax(scores)}")

# %% [markdown]
# A gap of a few units is already enough to make one weight dominate, because the exponential turns
# differences into ratios: a gap of $\Delta$ means a ratio of $e^\Delta$.
#
# ## 2. How concentrated? Entropy
#
# You want one number that says how spread out a distribution $w_1, \dots, w_n$ is. Shannon's entropy
# does exactly that:
#
# $$H(w) = -\sum_{i=1}^{n} w_i \log w_i .$$
#
# With the natural logarithm, $H$ is measured in **nats** (with $\log_2$ it would be bits). Read
# $-\log w_i$ as "how surprising it is that key $i$ was picked"; $H$ is the average surprise.
#
# * All weight on one key (**one-hot**) is never surprising: $H = 0$.
# * **Uniform** weights over $n$ keys, $w_i = 1/n$, are as surprising as possible: $H = \log n$.
# * Everything else lies in between. Keys with weight exactly 0 do not count: with $n_+$ keys of
#   nonzero weight, $0 \le H \le \log n_+$. The lower bound holds because every term $-w_i \log w_i$ is
#   $\ge 0$ for $0 \le w_i \le 1$; you will derive the upper bound yourself in Exercise 4, and measure
#   both in section 5.
#
# Dividing by $\log n$ gives a fraction between 0 and 1 that you can compare across different numbers
# of keys. One detail matters in practice: a weight can be **exactly 0** (a masked key, or a softmax so
# saturated that a weight underflows). Then $w \log w$ is $0 \cdot (-\infty)$, which numpy evaluates to
# `nan`. The limit is clear, $\lim_{w\to 0^+} w \log w = 0$, so the convention is $0 \log 0 = 0$: a key
# with no weight adds no uncertainty. (The second line of the cell makes numpy warn about the invalid
# product.)

# %%
print("np.log(0.0)       =", np.log(np.float64(0.0)))
print("0.0 * np.log(0.0) =", np.float64(0.0) * np.log(np.float64(0.0)))
for w in (1e-2, 1e-5, 1e-10, 1e-100):
    print(f"w = {w:.0e}: w log w = {w * math.log(w):.3e}")

# %% [markdown]
# ### Exercise 1 — `attention_entropy` (3 points)
#
# Write `attention_entropy(weights)`:
#
# * `weights` is a numpy array of shape `(..., n)`: one distribution per row, along the **last** axis
#   (for example `(n,)` for one query or `(Tq, n)` for a batch);
# * return the entropies in nats, shape `weights.shape[:-1]` (a plain number for a single distribution);
# * weights equal to 0 contribute 0 (no `nan`), so a row of all zeros has entropy 0.
#
# Hint: `np.where(weights > 0, ..., ...)` lets you choose per entry; make sure `np.log` never sees a 0
# that ends up in the result. Do not call a library entropy function: the point is to write it.

# %% nbgrader={"grade": false, "grade_id": "entropy_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attention_entropy(weights):
    """Shannon entropy (natural log) of each distribution along the last axis.

    Args:
        weights: (..., n) non-negative, each row summing to 1 (or all zero)

    Returns:
        (...) entropies in nats, with 0 log 0 = 0
    """
    ### BEGIN SOLUTION
    positive = weights > 0
    logs = np.log(np.where(positive, weights, 1.0))
    return -np.sum(np.where(positive, weights * logs, 0.0), axis=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "entropy_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Uniform weights over 4 keys give log 4, a peaked distribution less; a (3, 5) batch gives 3 entropies.
# Natural log (nats), a minus sign, a sum over the last axis: each slip has its own message.
grading.check("entropy_tests", attention_entropy)
### BEGIN HIDDEN TESTS
grading.record("entropy_tests", attention_entropy)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "entropy_zeros_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Weights of exactly 0: a one-hot row has entropy 0, [0.5, 0.5, 0, 0] has log 2, and nothing is nan.
grading.check("entropy_zeros_tests", attention_entropy)
### BEGIN HIDDEN TESTS
grading.record("entropy_zeros_tests", attention_entropy)
### END HIDDEN TESTS

# %% [markdown]
# Your function applied to the three score vectors of section 1, next to the largest possible value
# $\log 5$. (Demo cells call your functions through `prefer_mine`: while an exercise is still a stub,
# they fall back to the package's reference and say so, so the chapter runs either way.)

# %%
entropy = prefer_mine(attention_entropy, reference.attention_entropy)
for label, scores in score_sets.items():
    h = entropy(lookup.softmax(scores))
    print(f"{label}: H = {h:.3f} nats = {h / math.log(5):6.1%} of log 5 = {math.log(5):.3f}")

# %% [markdown]
# ## 3. Why scale the scores?
#
# Queries and keys in a model are vectors of width $d$, often 64 per head. Suppose their entries behave
# like independent random numbers with mean 0 and variance 1 (a reasonable picture at initialisation).
# The score $q \cdot k = \sum_{j=1}^{d} q_j k_j$ is a sum of $d$ independent terms, each with mean 0 and
# variance $\operatorname{E}[q_j^2]\operatorname{E}[k_j^2] = 1$. Variances of independent terms add up,
# so
#
# $$\operatorname{Var}(q \cdot k) = d, \qquad \text{a typical score is about } \pm\sqrt{d}.$$
#
# At $d = 1024$ that is scores of size 30 or so, and section 1 showed that a gap of a few units already
# makes a softmax one-hot. The original Transformer (Vaswani et al., 2017) therefore divides every score
# by $\sqrt{d}$, which brings the variance back to 1 at every width: the "scaled" in *scaled dot-product
# attention*. Most implementations follow it, but it is one way among several to keep the scores small
# when training starts. T5 (Raffel et al., 2020) divides nothing and instead initialises its query
# projection with smaller weights, which has the same effect at the start (checked two cells below);
# μP-style parametrisations (Yang et al., 2021) divide by $d$ instead of $\sqrt{d}$; models with QK-norm
# normalise queries and keys and learn the scale.
#
# ### Exercise 2 — `scaled_scores` (2 points)
#
# Write `scaled_scores(query, keys)`: the dot products of Chapter 1, divided by $\sqrt{d}$.
#
# * `query` has shape `(d,)` or `(Tq, d)`, `keys` has shape `(n, d)`;
# * return shape `(n,)` or `(Tq, n)`, with `scores[..., i] = query · keys[i] / sqrt(d)`;
# * $d$ is the width of the vectors (the last axis), not the number of keys.

# %% nbgrader={"grade": false, "grade_id": "scaled_scores_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def scaled_scores(query, keys):
    """Dot-product scores divided by sqrt(d).

    Args:
        query: (d,) or (Tq, d)
        keys: (n, d)

    Returns:
        (n,) or (Tq, n) with scores[..., i] = query · keys[i] / sqrt(d)
    """
    ### BEGIN SOLUTION
    return query @ keys.T / np.sqrt(keys.shape[-1])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "scaled_scores_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# One query against 3 keys of width 4 (so the scale is 1/2), then a batch of queries of width 16.
# Forgetting the scale, dividing by d, or dividing by the number of keys are each named in the message.
grading.check("scaled_scores_tests", scaled_scores)
### BEGIN HIDDEN TESTS
grading.record("scaled_scores_tests", scaled_scores)
### END HIDDEN TESTS

# %% [markdown]
# One wide query against five wide keys ($d = 1024$), raw and through your function:

# %%
scale = prefer_mine(scaled_scores, reference.scaled_scores)
wide_query, wide_keys = rng.standard_normal(1024), rng.standard_normal((5, 1024))  # (d,), (n, d)
print("raw q·k       :", wide_query @ wide_keys.T)
print("scaled q·k/√d :", scale(wide_query, wide_keys))
print("softmax of raw   :", lookup.softmax(wide_query @ wide_keys.T))
print("softmax of scaled:", lookup.softmax(scale(wide_query, wide_keys)))

# %% [markdown]
# The T5 route, checked: dividing the query projection $W_Q$ by $\sqrt{d}$ once, at initialisation, gives
# exactly the scores that dividing every score by $\sqrt{d}$ gives (training then moves $W_Q$ freely).

# %%
tokens, memory_keys = rng.standard_normal((3, 32)), rng.standard_normal((6, 64))  # (Tq, D), (n, d)
w_q = rng.standard_normal((32, 64))  # (D, d)
folded = (tokens @ (w_q / math.sqrt(64))) @ memory_keys.T
divided = (tokens @ w_q) @ memory_keys.T / math.sqrt(64)
print("largest |folded - divided| :", np.abs(folded - divided).max())

# %% [markdown]
# ### Measure it: the variance of a dot product grows like $d$
#
# The claim above rests on an assumption about random vectors, so test it. The cell draws many pairs
# $q, k$ with standard Gaussian entries for each width and prints the sample mean and variance of
# $q \cdot k$, and the variance after dividing by $\sqrt{d}$ and by $d$.

# %%
variance_rows = scaling_experiment.measure_dot_product_variance(samples=2_000 if FAST else 100_000)
print(f"{'d':>6} {'pairs':>7} {'mean q·k':>9} {'Var(q·k)':>10} {'Var / d':>8} {'Var(q·k/√d)':>12} {'d·Var(q·k/d)':>13}")
for row in variance_rows:
    print(f"{row.dim:>6} {row.samples:>7} {row.mean:>9.3f} {row.variance:>10.2f} {row.variance / row.dim:>8.3f} "
          f"{row.scaled_variance:>12.3f} {row.over_d_variance * row.dim:>13.3f}")

# %%
dims = [row.dim for row in variance_rows]
line_chart(dims, {"Var(q·k), measured": [row.variance for row in variance_rows],
                  "Var(q·k / √d), measured": [row.scaled_variance for row in variance_rows],
                  "Var(q·k / d), measured": [row.over_d_variance for row in variance_rows]},
           predictions={"d and 1/d (predictions)": dims, "": [1 / d for d in dims]}, xlabel="width d",
           ylabel="variance of the score", title="raw scores spread like d, scaled ones stay at 1", xscale="log",
           yscale="log")
plt.show()

# %% [markdown]
# The `Var / d` column the cell printed stays close to 1 at every width, and so does the variance after
# dividing by $\sqrt{d}$; after dividing by $d$ it is about $1/d$ (the last column, multiplied back by
# $d$, stays near 1). The measurement agrees with the prediction, up to the sampling noise of a finite
# number of pairs. (The $1/d$ scale of μP rests on a different assumption: that trained queries and keys
# are correlated, so their dot products grow like $d$. At initialisation, as here, it shrinks the scores.)
#
# ### Measure it: what the scale does to the softmax and its gradient
#
# Large scores are not just ugly numbers. A softmax over scores that differ by tens is one-hot, and a
# one-hot softmax is *flat*: nudging its scores does not change its output. Formally, its Jacobian
# $\partial w / \partial s = \operatorname{diag}(w) - w w^\top$ is the zero matrix when $w$ is one-hot.
# No gradient flows back through it to the queries and keys.
#
# The next cell attends with one random query over 16 random keys (and random values), many times, at
# each width, once with raw scores and once with scaled ones, and reports: the average largest weight
# (1/16 = 0.0625 would be uniform, 1 is one-hot), the share of trials with a weight above 0.99, the
# entropy as a fraction of $\log 16$, the Frobenius norm of the softmax Jacobian, and the norm of the
# gradient that reaches the query through the whole attention step (computed by torch's autograd).

# %%
saturation_rows = scaling_experiment.measure_saturation(trials=100 if FAST else 1000)
print(f"{'d':>6} {'scores':>7} {'max w':>7} {'w > .99':>8} {'H / log n':>10} {'|dw/ds|':>10} {'|grad q|':>10}")
for row in saturation_rows:
    print(f"{row.dim:>6} {'scaled' if row.scaled else 'raw':>7} {row.mean_max_weight:>7.3f} "
          f"{row.saturated_share:>8.0%} {row.mean_entropy_fraction:>10.3f} {row.median_jacobian_norm:>10.2e} "
          f"{row.median_query_grad_norm:>10.2e}")

# %%
by_scale = {label: [row for row in saturation_rows if row.scaled == scaled]
            for label, scaled in (("raw q·k", False), ("scaled by 1/√d", True))}
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
line_chart([row.dim for row in by_scale["raw q·k"]],
           {label: [r.mean_entropy_fraction for r in rows] for label, rows in by_scale.items()},
           xlabel="width d", ylabel="entropy / log n", title="raw scores concentrate the weights", xscale="log",
           ax=axes[0])
line_chart([row.dim for row in by_scale["raw q·k"]],
           {label: [r.median_jacobian_norm for r in rows] for label, rows in by_scale.items()},
           xlabel="width d", ylabel="median ‖∂w/∂s‖", title="...and the gradient through the softmax vanishes",
           xscale="log", yscale="log", ax=axes[1])
plt.show()

# %% [markdown]
# Read the table row by row. With raw scores, the weights concentrate as $d$ grows: the largest weight
# heads towards 1, the entropy towards 0, and the Jacobian norm and the gradient reaching the query fall
# by orders of magnitude at the largest widths. With scaled scores all four columns stay put whatever the
# width: the softmax sees scores of the same spread at $d = 16$ and at $d = 1024$, so it keeps passing
# gradient. (At small widths the raw gradient can even be *larger* than the scaled one, since it is not
# divided by $\sqrt{d}$; the trouble starts once the softmax saturates.)
#
# ### Watch it learn (or not)
#
# A vanishing gradient is a number; here is what it does to training. One query of width $d = 256$ is
# trained by plain gradient descent to put its weight on one of 8 random keys (the one ranked in the
# middle at the start). The values are one-hot labels, so the retrieved value *is* the weight vector,
# and the loss is its squared distance to the target's label. Same keys, same start, same learning rates,
# once with raw scores and once with scaled ones.

# %%
fetch_steps = 60 if FAST else 150
fetch_runs = {(scaled, lr): learning.train_fetch(scaled=scaled, learning_rate=lr, steps=fetch_steps)
              for scaled in (False, True) for lr in (0.1, 1.0, 10.0)}
print(f"{'scores':>7} {'learning rate':>14} {'weight on target: start':>24} {'end':>7} {'|gradient| at start':>20}")
for (scaled, lr), run in fetch_runs.items():
    print(f"{'scaled' if scaled else 'raw':>7} {lr:>14g} {run.target_weight[0]:>24.2e} {run.target_weight[-1]:>7.3f} "
          f"{run.gradient_norms[0]:>20.2e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
shown = {f"{'scaled' if scaled else 'raw'}, lr = 1": fetch_runs[scaled, 1.0] for scaled in (False, True)}
steps = range(fetch_steps + 1)
line_chart(steps, {label: run.target_weight for label, run in shown.items()}, xlabel="gradient step",
           ylabel="weight on the target key", title="d = 256: only the scaled query learns", ax=axes[0])
line_chart(steps, {label: run.gradient_norms for label, run in shown.items()}, xlabel="gradient step",
           ylabel="|d loss / d query|", title="the raw query gets almost no gradient", yscale="log", ax=axes[1])
plt.show()

# %% [markdown]
# With raw scores the query starts in a saturated softmax: some other key takes essentially all the
# weight, the gradient is many orders of magnitude too small to matter, and at none of the three learning
# rates does the weight on the target move. With scaled scores the same query moves its weight onto the
# target within a few steps. (A learning rate many orders of magnitude larger could push the raw query out
# eventually; nobody can tune a model that way, which is the point of the scale.)
#
# ## 4. Temperature: a dial between argmax and average
#
# The scale is fixed by the width. To turn the sharpness by hand, divide the scores by a **temperature**
# $T > 0$ before the softmax:
#
# $$w_i = \frac{e^{s_i / T}}{\sum_j e^{s_j / T}} .$$
#
# $T = 1$ is the ordinary softmax. As $T \to 0$ the gaps between scores are blown up and the weights
# approach a one-hot vector on the largest score: the hard lookup of Chapter 1. As $T \to \infty$ every
# score shrinks towards 0 and the weights approach uniform.
#
# Where does a temperature appear in practice? Mostly on a *different* softmax: the one over the
# vocabulary from which a language model samples its next word ($T < 1$ for safer text, $T > 1$ for more
# varied text). The softmax inside attention has no such knob in a standard Transformer: its sharpness
# comes from the learned queries and keys and from the fixed scale. The mathematics is the same family,
# though (dividing by $\sqrt{d}$ *is* a temperature of $\sqrt{d}$, checked after the exercise), so here
# the temperature serves as a dial for seeing every softmax between the hard and the soft lookup.
#
# ### Exercise 3 — `temperature_softmax` (3 points)
#
# Write `temperature_softmax(scores, temperature)`:
#
# * `scores` has shape `(..., n)`; the weights sum to 1 along the last axis and keep the shape of `scores`;
# * raise `ValueError` if `temperature` is not positive;
# * stay stable at tiny temperatures: `scores / 0.001` easily exceeds 709, where `np.exp` overflows.
#   Chapter 1's trick (subtract the row maximum) still works, applied to `scores / temperature`;
# * write the softmax yourself (numpy only; no library softmax).

# %% nbgrader={"grade": false, "grade_id": "temperature_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def temperature_softmax(scores, temperature):
    """Softmax of scores / temperature along the last axis.

    Args:
        scores: (..., n)
        temperature: a positive number

    Returns:
        (..., n) weights, each row summing to 1

    Raises:
        ValueError: if temperature <= 0
    """
    ### BEGIN SOLUTION
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scaled = scores / temperature
    exps = np.exp(scaled - np.max(scaled, axis=-1, keepdims=True))
    return exps / np.sum(exps, axis=-1, keepdims=True)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "temperature_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# T = 1 is the plain softmax, T = 0.5 sharpens, T = 4 flattens; rows of a (3, 5) array each sum to 1;
# a temperature of 0 raises ValueError.
grading.check("temperature_tests", temperature_softmax)
### BEGIN HIDDEN TESTS
grading.record("temperature_tests", temperature_softmax)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "temperature_extremes_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# T = 0.001 must give (almost) the argmax without overflowing to nan; T = 1000 (almost) uniform weights.
grading.check("temperature_extremes_tests", temperature_softmax)
### BEGIN HIDDEN TESTS
grading.record("temperature_extremes_tests", temperature_softmax)
### END HIDDEN TESTS

# %% [markdown]
# The scale as a temperature, checked on the raw scores of the wide query above, and then the dial
# turned on one set of scores with your function:

# %%
dial = prefer_mine(temperature_softmax, reference.temperature_softmax)
raw_wide = wide_query @ wide_keys.T
print("largest |softmax(s / √d) - temperature_softmax(s, T = √d)| :",
      np.abs(lookup.softmax(raw_wide / math.sqrt(1024)) - dial(raw_wide, math.sqrt(1024))).max())
dial_scores = np.array([2.0, 1.0, 0.5, -1.0])
for temperature in (0.05, 0.5, 1.0, 2.0, 20.0):
    w = dial(dial_scores, temperature)
    print(f"T = {temperature:>5}: weights {w}  H = {entropy(w):.3f} nats (log 4 = {math.log(4):.3f})")

# %% [markdown]
# ### Measure it: from argmax to uniform
#
# Now over many random queries and keys ($n = 8$ keys of width 64, scaled scores). For each temperature
# the cell prints the average entropy as a fraction of $\log 8$, the average largest weight, and the
# average *total-variation distance* (half the summed absolute difference; 0 means identical, 1 means no
# overlap) from the weights to the one-hot argmax and to the uniform distribution.

# %%
temperature_rows = entropy_experiment.measure_temperature(trials=50 if FAST else 2000)
print(f"{'T':>7} {'H / log n':>10} {'max w':>7} {'TV to argmax':>13} {'TV to uniform':>14}")
for row in temperature_rows:
    print(f"{row.temperature:>7g} {row.mean_entropy_fraction:>10.3f} {row.mean_max_weight:>7.3f} "
          f"{row.distance_to_argmax:>13.4f} {row.distance_to_uniform:>14.4f}")

# %%
line_chart([r.temperature for r in temperature_rows],
           {"distance to argmax": [r.distance_to_argmax for r in temperature_rows],
            "distance to uniform": [r.distance_to_uniform for r in temperature_rows],
            "entropy / log n": [r.mean_entropy_fraction for r in temperature_rows]},
           xlabel="temperature T", ylabel="TV distance or entropy share", title="cold = argmax, hot = uniform",
           xscale="log")
plt.show()

# %% [markdown]
# The printed distances tell the story: at the coldest temperature the weights are within a hair of the
# argmax, at the hottest within a hair of uniform, and the entropy climbs monotonically from near 0 to
# near $\log n$ in between. A temperature is a single dial between the hard and the soft lookup.
#
# ## 5. When are the weights concentrated? Three cases, measured
#
# Entropy depends on the question and on the shelf, not only on the dial. Predict before you run:
#
# 1. **A query very close to one key**, among keys that differ from each other. One score is much
#    larger than the rest: low entropy.
# 2. **The zero query.** Every score is $0 \cdot k_i = 0$, so all scores are equal: uniform weights,
#    $H = \log n$ exactly, whatever the keys.
# 3. **Identical keys.** Every score is $q \cdot k$ for the same $k$: again all equal, $H = \log n$
#    whatever the query. The model cannot prefer one book when all spines say the same thing.
#
# The cell measures each case over many random shelves (8 keys of width 64, scaled scores; in case 1 the
# query is key 0 plus a little Gaussian noise).

# %%
case_results = entropy_experiment.measure_cases(trials=50 if FAST else 2000)
for case in case_results:
    print(f"{case.name:>15}: mean H = {case.mean_entropy:.4f} nats, largest H seen = {case.max_entropy_seen:.4f}, "
          f"log n = {case.log_n:.4f}, mean largest weight = {case.mean_max_weight:.3f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), sharey=True, layout="constrained")
for ax, case in zip(axes, case_results, strict=True):
    ax.bar(range(case.n_keys), case.example_weights, color="tab:blue")
    ax.set_title(f"{case.name}: H = {entropy(case.example_weights):.2f} nats", fontsize=9)
    ax.set_xlabel("key")
    ax.set_ylabel("attention weight")
    ax.set_ylim(0, 1)
plt.show()

# %% [markdown]
# The zero query and the identical keys give exactly $\log n$ in every trial (the largest entropy seen
# equals $\log n$ to the printed digits), while the close query puts almost all of its weight on its key.
#
# How fast do the weights concentrate as a query turns towards a key? The next experiment fixes the
# query's length to $\sqrt{d}$ (the typical length of a key) and sets its cosine similarity with key 0
# from 0 (unrelated) to 1 (pointing exactly along it).

# %%
similarity_rows = entropy_experiment.measure_similarity(trials=50 if FAST else 2000)
print(f"{'cosine':>7} {'H / log n':>10} {'weight on key 0':>16}")
for row in similarity_rows:
    print(f"{row.cosine:>7.2f} {row.mean_entropy_fraction:>10.3f} {row.mean_target_weight:>16.3f}")

# %%
line_chart([r.cosine for r in similarity_rows],
           {"entropy / log n": [r.mean_entropy_fraction for r in similarity_rows],
            "weight on the matching key": [r.mean_target_weight for r in similarity_rows]},
           xlabel="cosine similarity of query and key 0", ylabel="share (0 to 1)",
           title="the closer the match, the more concentrated the weights")
plt.show()

# %% [markdown]
# Notice the first row: a query unrelated to key 0 does *not* give uniform weights. Its random overlaps
# with the eight keys still differ, so its entropy sits below $\log n$. Only the special cases above (all
# scores exactly equal) reach the maximum.
#
# ### Exercise 4 — the bound $H \le \log n_+$ in two lines (2 points)
#
# Let $S$ be the keys with a nonzero weight, $n_+$ of them. Draw one key $I$ at random, key $i$ with
# probability $w_i$, and look at the number $X = 1/w_I$. Then
#
# $$H = \sum_{i \in S} w_i \log \frac{1}{w_i} = \operatorname{E}[\log X]
#   \;\le\; \log \operatorname{E}[X] ,$$
#
# where the inequality is Jensen's: the logarithm is concave, so the log of an average is at least the
# average of the logs. One step is left: what is $\operatorname{E}[X]$?
#
# 1. For the weights $w = (0.5, 0.3, 0.2, 0, 0)$, compute $\operatorname{E}[X] = \sum_{i \in S} w_i \cdot
#    (1/w_i)$ and set `mean_of_x` to it. Then read your number: what does $\operatorname{E}[X]$ count in
#    general, and what bound does that give for $H$?
# 2. A query attends over a memory of $T_k = 10$ positions, 4 of them padding (masked, weight 0). Set
#    `padding_bound` to the largest entropy its weights can have, in nats.
#
# (Equality in Jensen's inequality needs $X$ to be constant: $w_i = 1/n_+$ on every key of $S$.)

# %% nbgrader={"grade": false, "grade_id": "bound_answers", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["raises-exception"]
mean_of_x = None  # your answer to 1: a number
padding_bound = None  # your answer to 2: a number (nats)
### BEGIN SOLUTION
visible_weights = np.array([0.5, 0.3, 0.2])
mean_of_x = float(np.sum(visible_weights * (1 / visible_weights)))  # each visible key adds 1: E[X] = n+ = 3
padding_bound = math.log(10 - 4)  # n+ = 6 visible keys
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "jensen_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# E[X] for w = (0.5, 0.3, 0.2, 0, 0); counting the zero weights, or summing the weights, is named.
grading.check("jensen_tests", mean_of_x)
### BEGIN HIDDEN TESTS
grading.record("jensen_tests", mean_of_x)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "padding_bound_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The largest entropy over 10 positions of which 4 are padding, in nats; log 10 and bits are named.
grading.check("padding_bound_tests", padding_bound)
### BEGIN HIDDEN TESTS
grading.record("padding_bound_tests", padding_bound)
### END HIDDEN TESTS

# %% [markdown]
# **The bounds, measured.** $0 \le H \le \log n_+$ on many random distributions: between 2 and 64 keys,
# random keys masked out (weight exactly 0) but always at least two visible, from nearly uniform to very
# peaked (score spreads from $10^{-3}$ to 30, small enough that no visible weight underflows to 0, so no
# case sits *exactly* on a bound). The cell reports how close the cases come to each bound.

# %%
bounds = entropy_experiment.measure_bounds(cases=1_000 if FAST else 50_000)
print(f"{bounds.cases} random distributions, each with at least {bounds.min_visible} visible keys")
print(f"smallest H / log n+ seen (lower bound 0) : {bounds.smallest_fraction:.3e}   (smallest H: "
      f"{bounds.smallest_entropy:.3e} nats)")
print(f"largest H / log n+ seen (upper bound 1)  : 1 - {1 - bounds.largest_fraction:.3e}")
print(f"cases outside [0, log n+]                : {bounds.violations}")
print(f"cases with a nan entropy                 : {bounds.nan_count}")

# %% [markdown]
# Both bounds hold in every case, and the random distributions come within the printed distances of each:
# the very peaked ones near 0, the nearly even ones near $\log n_+$.
#
# ## 6. Masks in torch, and a query that may see nothing
#
# Real models attend for a whole batch at once, in torch:
#
# * **Batches.** `query` is `(B, Tq, D)`, `keys` `(B, Tk, D)`, `values` `(B, Tk, Dv)`. The scores
#   `query @ keys.transpose(-2, -1)` have shape `(B, Tq, Tk)`: for each sentence in the batch, one row
#   per query and one column per key. `@` multiplies the last two axes and treats the first as a batch.
# * **Masks.** Sentences in a batch have different lengths, so the shorter ones are padded with keys that
#   mean nothing. A boolean `mask`, `True` where a query **may attend** to a key, hides them. Its shape
#   only has to *broadcast* to the scores: `(B, 1, Tk)` hides the same keys from every query.
#
# The right place for the mask is **before** the softmax: set the hidden scores to $-\infty$, so that
# $e^{-\infty} = 0$ and the remaining weights still sum to 1. Zeroing weights *after* the softmax leaves
# rows that no longer sum to 1 (the hidden keys' share of the budget is simply lost).

# %%
demo_scores = torch.tensor([[2.0, 1.0, 0.5, 3.0]])  # (1, Tk): one query, four keys
demo_mask = torch.tensor([[True, True, True, False]])  # the last key is padding
before = torch.softmax(demo_scores.masked_fill(~demo_mask, float("-inf")), dim=-1)
after = torch.softmax(demo_scores, dim=-1) * demo_mask
print("mask before the softmax:", before, f" row sum {float(before.sum()):.4f}")
print("mask after the softmax :", after, f" row sum {float(after.sum()):.4f}")

# %% [markdown]
# **A query that may see no key.** Sometimes every key of a row is masked: a decoder position over an
# empty source, a batch row that is all padding, a causal mask combined with other masks. Then the
# softmax has nothing to normalise, and what the row returns is a *convention*, not a consequence of the
# formula. Three are in common use, and one popular shortcut hides a trap. The cell runs each as one
# attention step (weights, their average of some values, a random loss on the output) on the same
# scores, with one row whose every key is masked, and reports that row's weights, whether the loss is a
# number, and whether the gradients reaching the scores and the values are finite.

# %%
convention_scores = torch.randn(2, 4, dtype=torch.float64)
convention_mask = torch.tensor([[True, False, True, True], [False, False, False, False]])  # row 2 sees nothing
print(f"{'convention':>26} {'weights of the empty row':>26} {'loss finite':>12} {'gradients finite':>17}")
for row in masking.compare_conventions(convention_scores, convention_mask):
    print(f"{row.name:>26} {np.array2string(row.empty_weights, precision=2):>26} {str(row.loss_finite):>12} "
          f"{str(row.gradient_finite):>17}")

# %% [markdown]
# * `-inf` with a plain softmax (what `torch.softmax` gives) returns `nan`: $0/0$. The `nan` spreads into
#   the output, the loss and the gradients (here those of the values).
# * A large negative fill such as $-10^9$ keeps the masked scores *equal*, so the row gets uniform weights
#   over keys it was not allowed to see: it reads the padding after all.
# * Adding $-\infty$ to the scores and then calling `nan_to_num` fixes the forward pass only. Its
#   gradient for that row is `nan`, because the addition passes it straight back to the scores (and from
#   them to the queries and keys). Replacing the masked scores with `masked_fill` or `torch.where` does
#   not: the replaced entries no longer depend on the input.
# * This course's convention: **all-zero weights** and a zero gradient. A query with nothing to read
#   returns the zero vector: it adds nothing to its position instead of an average of padding, and it
#   never turns training into `nan`. Chapter 1's reference softmax and the package's attention do the same.
#
# ### Exercise 5 — `masked_softmax` (4 points)
#
# Write `masked_softmax(scores, mask=None)` in torch:
#
# * `scores` is a float tensor of shape `(..., Tk)`, for example `(B, Tq, Tk)`; the weights sum to 1 over
#   the last axis and keep the shape of `scores`;
# * `mask` is `None` (every key visible) or a boolean tensor that broadcasts to `scores`, `True` = may attend;
# * masked keys get weight exactly 0, and a row with no visible key gets all zeros;
# * the weights feed training: they must carry gradients back to `scores` (no numpy round trip, no
#   `.detach()`), and that gradient must be finite everywhere, empty rows included. The checks compare it
#   with the reference's gradient.
#
# Useful: `scores.masked_fill(~mask, float("-inf"))`, `torch.softmax(x, dim=-1)` (allowed here: you wrote
# a softmax already), `weights.masked_fill(~mask, 0.0)`. Not allowed: `xattn_edu.nn.attention`, which
# holds the answer.

# %% nbgrader={"grade": false, "grade_id": "masked_softmax_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def masked_softmax(scores, mask=None):
    """Softmax over the last axis among the keys the mask allows (True = may attend).

    Args:
        scores: (..., Tk) float tensor
        mask: None, or bool broadcastable to scores

    Returns:
        (..., Tk) weights: each row sums to 1, masked keys are 0, a row with no visible key is all 0
    """
    ### BEGIN SOLUTION
    if mask is None:
        return torch.softmax(scores, dim=-1)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # empty rows: nan
    return weights.masked_fill(~mask, 0.0)  # masked keys, and so whole empty rows, become exactly 0
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "masked_softmax_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# No mask, a padding mask (B, 1, Tk) and a per-query mask (B, Tq, Tk): masked keys get weight exactly 0,
# rows sum to 1, and the gradient reaching the scores matches the reference. Masks ignored, inverted or
# applied after the softmax are named.
grading.check("masked_softmax_tests", masked_softmax)
### BEGIN HIDDEN TESTS
grading.record("masked_softmax_tests", masked_softmax)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "masked_softmax_empty_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# One query may see no key: its weights must be zeros (not nan, not uniform) and its gradient finite.
grading.check("masked_softmax_empty_tests", masked_softmax)
### BEGIN HIDDEN TESTS
grading.record("masked_softmax_empty_tests", masked_softmax)
### END HIDDEN TESTS

# %% [markdown]
# ### Check the shapes
#
# A batch of two "source sentences" (memories) of lengths 5 and 3, padded to $T_k = 5$, and three queries
# each. `padding_mask` from the package builds the mask; its shape `(B, 1, 1, Tk)` is made for
# multi-head attention `(B, h, Tq, Tk)`, so the cell drops the head axis to get `(B, 1, Tk)`. The weights
# come from your `masked_softmax` (the package's while yours is a stub), the output is their average of
# the values.

# %%
masked = prefer_mine(masked_softmax, reference_masked_softmax)
lengths = torch.tensor([5, 3])
memory_mask = padding_mask(lengths, max_len=5)[:, 0]  # (B, 1, 1, Tk) -> (B, 1, Tk)
batch_query = torch.randn(2, 3, 8)  # (B, Tq, D)
batch_keys, batch_values = torch.randn(2, 5, 8), torch.randn(2, 5, 4)  # (B, Tk, D), (B, Tk, Dv)
batch_weights = masked(batch_query @ batch_keys.transpose(-2, -1) / math.sqrt(8), memory_mask)  # (B, Tq, Tk)
batch_output = batch_weights @ batch_values  # (B, Tq, Dv)
print("mask   ", tuple(memory_mask.shape), "\n", memory_mask.int())
print("weights", tuple(batch_weights.shape), " output", tuple(batch_output.shape))
print("row sums:", batch_weights.sum(dim=-1))
print("weight on the padding keys of sentence 2:", batch_weights[1, :, 3:])

# %% [markdown]
# Entropy per query works on these weights too: the package's `attention_entropy` accepts torch tensors
# and returns one number per query, shape `(B, Tq)`. With padding, the largest possible entropy of a
# query is $\log(\text{its number of visible keys})$, not $\log T_k$: exactly the bound of Exercise 4.

# %%
batch_entropy = reference.attention_entropy(batch_weights)  # (B, Tq)
print("entropy per query (nats):\n", batch_entropy)
print("log(visible keys) per sentence:", [round(math.log(int(n)), 3) for n in lengths])
heatmap_panels(batch_weights, [[f"q{t}: H={batch_entropy[b, t]:.2f}" for t in range(3)] for b in range(2)],
               [[f"k{j}" + (" (pad)" if j >= lengths[b] else "") for j in range(5)] for b in range(2)], annotate=True,
               titles=["sentence 1: 5 real keys, no padding", "sentence 2: 3 real keys + 2 padding"],
               suptitle="each query's weights on one 0-1 scale; sentence 2's padding keys get 0")
plt.show()

# %% [markdown]
# ## 7. See it: turn the dials
#
# Below is a small library of six books with random keys of width $d$, and four queries: one close to
# Botany, one halfway between Astronomy and Sailing, a random question, and the zero query. The table
# shows each query's weights (coloured on the same 0–1 scale as the heatmaps: dark = 0, yellow = 1) and
# their entropy, in nats and as a share of $\log 6$.
#
# * **temperature T**: slide it left and every row but the last collapses onto its best key; slide it right
#   and every row evens out to 1/6. The zero query stays uniform throughout: dividing zeros changes nothing.
# * **width d**: each width draws its own random library. With the scale on, the random question stays
#   spread out at every width, while the close query gets sharper as $d$ grows: its match with Botany
#   grows like $d$, the noise only like $\sqrt{d}$.
# * **divide scores by √d**: switch it off and raise $d$: the spread printed above the table grows like
#   $\sqrt{d}$ and every non-zero query snaps to one-hot, the saturation you measured in section 3.

# %%
make_spotlight_widget()

# %% [markdown]
# ## Summary
#
# * The softmax weights are a budget of 1 that each query shares among the keys; only score *differences*
#   matter, and a gap of $\Delta$ becomes a weight ratio of $e^\Delta$.
# * **Entropy** $H = -\sum_i w_i \log w_i$ (nats, with $0 \log 0 = 0$) measures how concentrated it is:
#   0 for one-hot, and at most $\log n_+$ (Jensen's inequality), reached by uniform weights over the
#   $n_+$ visible keys; random distributions come close to both bounds without crossing them (measured).
# * For unit-variance entries, $\operatorname{Var}(q \cdot k) = d$ (measured). Unscaled scores saturate
#   the softmax as $d$ grows, the gradient through it vanishes (measured), and a query trained with them
#   does not learn (watched). Dividing by $\sqrt{d}$ is the original Transformer's cure; folding the factor
#   into the initialisation, $1/d$ scales and QK-norm are others.
# * A **temperature** divides the scores: $T \to 0$ gives the argmax, $T \to \infty$ the uniform average.
#   In practice it is a sampling knob on a language model's output softmax; the $\sqrt{d}$ scale is a
#   fixed temperature inside attention.
# * The zero query and identical keys give exactly uniform weights, $H = \log n$; a query close to one
#   distinct key gives low entropy.
# * Masks (`True` = may attend) replace scores with $-\infty$ **before** the softmax. A query that may see
#   no key gets all-zero weights in this course, with a finite gradient: `nan`, uniform weights over the
#   hidden keys, and an additive mask with `nan_to_num` (`nan` gradients) are the alternatives measured.
#
# **Check yourself**
#
# 1. Two attention rows over 8 keys have entropies 0.1 and 2.0 nats. Which is more concentrated? Which is
#    close to uniform (what is $\log 8$)?
# 2. Your head width goes from 64 to 256. By what factor does the standard deviation of the raw scores
#    grow? Which scale keeps the softmax behaving the same?
# 3. What temperature makes `temperature_softmax(s / math.sqrt(d), 1.0)` equal to
#    `temperature_softmax(s, T)`?
# 4. Why does an additive mask followed by `nan_to_num` give the right weights but a `nan` gradient,
#    while `masked_fill` gives a finite one?
# 5. Why does masking *after* the softmax give wrong weights, and what does it do to a row whose every
#    key is masked?
