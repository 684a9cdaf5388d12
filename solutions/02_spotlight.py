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
# average. This chapter looks closely at those weights. Think of them as a **spotlight** sweeping the
# shelves: sometimes a narrow beam on one book, sometimes a wide, dim glow over all of them. You will
# learn what sets the width of the beam, how to measure it with a single number, and why every
# Transformer divides its scores by $\sqrt{d}$ before the softmax.
#
# **By the end of this chapter you can**
#
# 1. measure how focused a set of attention weights is with its Shannon entropy, in nats, and say
#    why it always lies between $0$ and $\log n$;
# 2. explain, with a measurement, why dot products of wide vectors must be divided by $\sqrt{d}$, and
#    what goes wrong with the gradients if they are not;
# 3. use a temperature to slide a softmax from a hard argmax to a uniform average;
# 4. predict the entropy in three telling situations (a query that matches one key, a zero query,
#    identical keys) and check your prediction;
# 5. write batched, masked attention in torch that gives masked keys exactly zero weight and never
#    produces `nan`.
#
# **How to work.** Run the cells from the top. Replace each `raise NotImplementedError()` below a
# `# YOUR CODE HERE` with your code, then run the test cell under it. Test cells explain what they
# check; more (hidden) checks run when your notebook is graded. Grade yourself at any time from a
# terminal with `xattn grade 02_spotlight.ipynb`. Plan on about an hour.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.library_lookup import reference as lookup
from xattn_edu.chapters.spotlight import checks as grading
from xattn_edu.chapters.spotlight import entropy as entropy_experiment
from xattn_edu.chapters.spotlight import reference
from xattn_edu.chapters.spotlight import scaling as scaling_experiment
from xattn_edu.chapters.spotlight.widget import make_spotlight_widget
from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import heatmap_panels, line_chart
from xattn_edu.nn import attention
from xattn_edu.nn.masks import padding_mask

warnings.filterwarnings("ignore")
np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)
torch.manual_seed(0)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds

# %% [markdown]
# ## 1. The spotlight
#
# A softmax takes any list of scores and returns positive weights that add up to 1: a probability
# distribution over the keys. How that distribution *looks* depends only on the differences between
# the scores. One score far above the rest gives a narrow beam; scores close together give a broad one;
# equal scores give perfectly even light.
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
# Two things to notice. Adding the same number to every score changes nothing (the last row would be
# uniform for any constant), and a gap of a few units is already enough to make one weight dominate,
# because the exponential turns differences into ratios: a gap of $\Delta$ means a ratio of $e^\Delta$.
#
# ## 2. How wide is the beam? Entropy
#
# You want one number that says how spread out a distribution $w_1, \dots, w_n$ is. Shannon's entropy
# does exactly that:
#
# $$H(w) = -\sum_{i=1}^{n} w_i \log w_i .$$
#
# With the natural logarithm, $H$ is measured in **nats** (with $\log_2$ it would be bits). Read
# $-\log w_i$ as "how surprising it is that key $i$ was picked"; $H$ is the average surprise.
#
# * A **one-hot** spotlight (all weight on one key) is never surprising: $H = 0$.
# * A **uniform** spotlight, $w_i = 1/n$, is as surprising as possible: $H = \log n$.
# * Everything else lies in between: $0 \le H \le \log n$. The lower bound holds because every term
#   $-w_i \log w_i$ is $\ge 0$ for $0 \le w_i \le 1$; the upper bound is a consequence of the concavity of
#   the logarithm (Jensen's inequality). You will *measure* both bounds in section 5.
#
# Dividing by $\log n$ gives a fraction between 0 and 1 that you can compare across different numbers
# of keys. One detail matters in practice: a weight can be **exactly 0** (a masked key, or a softmax so
# saturated that a weight underflows). Then $w \log w$ is $0 \cdot (-\infty)$, which numpy evaluates to
# `nan`. Mathematically the limit is clear, $\lim_{w\to 0^+} w \log w = 0$, so the convention is
# $0 \log 0 = 0$: a key with no weight adds no uncertainty.

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
grading.check_entropy(attention_entropy)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_entropy(attention_entropy)
pristine.check_entropy_hidden(attention_entropy)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "entropy_zeros_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Weights of exactly 0: a one-hot row has entropy 0, [0.5, 0.5, 0, 0] has log 2, and nothing is nan.
grading.check_entropy_zeros(attention_entropy)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_entropy_zeros(attention_entropy)
pristine.check_entropy_zeros_hidden(attention_entropy)
### END HIDDEN TESTS

# %% [markdown]
# Your function applied to the three spotlights of section 1, next to the largest possible value $\log 5$.
# (Demo cells call your functions through `prefer_mine`: while an exercise is still a stub, they
# fall back to the package's reference and say so, so the chapter runs either way.)

# %%
entropy = prefer_mine(attention_entropy, reference.attention_entropy)
for label, scores in score_sets.items():
    h = entropy(lookup.softmax(scores))
    print(f"{label}: H = {h:.3f} nats = {h / math.log(5):6.1%} of log 5 = {math.log(5):.3f}")

# %% [markdown]
# ## 3. Why divide by $\sqrt{d}$?
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
# makes a softmax one-hot. Dividing every score by $\sqrt{d}$ brings the variance back to 1 for every
# width. That is the "scaled" in *scaled dot-product attention*.
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
grading.check_scaled_scores(scaled_scores)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_scaled_scores(scaled_scores)
pristine.check_scaled_scores_hidden(scaled_scores)
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
# ### Measure it: the variance of a dot product grows like $d$
#
# The claim above rests on an assumption about random vectors, so test it. The cell draws many pairs
# $q, k$ with standard Gaussian entries for each width and prints the sample mean and variance of
# $q \cdot k$, and the variance after dividing by $\sqrt{d}$.

# %%
variance_rows = scaling_experiment.measure_dot_product_variance(samples=2_000 if FAST else 100_000)
print(f"{'d':>6} {'pairs':>7} {'mean q·k':>9} {'Var(q·k)':>10} {'Var / d':>8} {'Var(q·k/√d)':>12}")
for row in variance_rows:
    print(f"{row.dim:>6} {row.samples:>7} {row.mean:>9.3f} {row.variance:>10.2f} {row.variance / row.dim:>8.3f} "
          f"{row.scaled_variance:>12.3f}")

# %%
dims = [row.dim for row in variance_rows]
line_chart(dims, {"Var(q·k), measured": [row.variance for row in variance_rows],
                  "Var(q·k / √d), measured": [row.scaled_variance for row in variance_rows]},
           predictions={"d (prediction)": dims}, xlabel="width d", ylabel="variance",
           title="raw scores spread like d; scaled ones stay at 1", xscale="log", yscale="log")
plt.show()

# %% [markdown]
# The `Var / d` column the cell printed stays close to 1 at every width, and so does the scaled variance:
# the measurement agrees with the prediction, up to the sampling noise of a finite number of pairs.
#
# ### Measure it: what the scale does to the softmax and its gradient
#
# Large scores are not just ugly numbers. A softmax over scores that differ by tens is one-hot, and a
# one-hot softmax is *flat*: nudging its scores does not change its output. Formally, its Jacobian
# $\partial w / \partial s = \operatorname{diag}(w) - w w^\top$ is the zero matrix when $w$ is one-hot.
# No gradient flows back through it to the queries and keys, so they stop learning.
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
           xlabel="width d", ylabel="entropy / log n", title="raw scores collapse the spotlight", xscale="log",
           ax=axes[0])
line_chart([row.dim for row in by_scale["raw q·k"]],
           {label: [r.median_jacobian_norm for r in rows] for label, rows in by_scale.items()},
           xlabel="width d", ylabel="median ‖∂w/∂s‖", title="...and the gradient through the softmax vanishes",
           xscale="log", yscale="log", ax=axes[1])
plt.show()

# %% [markdown]
# Read the table row by row. With raw scores, the spotlight narrows as $d$ grows: the largest weight
# heads towards 1, the entropy towards 0, and the Jacobian norm and the gradient reaching the query fall
# by orders of magnitude at the largest widths. With scaled scores all four columns stay put whatever the
# width: the softmax sees scores of the same spread at $d = 16$ and at $d = 1024$, so it keeps passing
# gradient. (At small widths the raw gradient can even be *larger* than the scaled one, since it is not
# divided by $\sqrt{d}$; the trouble starts once the softmax saturates.)
#
# ## 4. Temperature: a dial between argmax and average
#
# The scale is fixed by the width. Sometimes you want to turn the sharpness by hand: when sampling
# from a language model, or to sharpen or soften a distribution on purpose. The **temperature** $T > 0$
# divides the scores before the softmax:
#
# $$w_i = \frac{e^{s_i / T}}{\sum_j e^{s_j / T}} .$$
#
# $T = 1$ is the ordinary softmax. As $T \to 0$ the gaps between scores are blown up and the weights
# approach a one-hot vector on the largest score: the hard lookup of Chapter 1. As $T \to \infty$ every
# score shrinks towards 0 and the weights approach uniform. Dividing by $\sqrt{d}$ is a temperature of
# $\sqrt{d}$ chosen for you.
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
grading.check_temperature(temperature_softmax)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_temperature(temperature_softmax)
pristine.check_temperature_hidden(temperature_softmax)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "temperature_extremes_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# T = 0.001 must give (almost) the argmax without overflowing to nan; T = 1000 (almost) uniform weights.
grading.check_temperature_extremes(temperature_softmax)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_temperature_extremes(temperature_softmax)
pristine.check_temperature_extremes_hidden(temperature_softmax)
### END HIDDEN TESTS

# %% [markdown]
# Turn the dial on one set of scores with your function and watch the weights and their entropy:

# %%
dial = prefer_mine(temperature_softmax, reference.temperature_softmax)
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
           xlabel="temperature T", ylabel="distance (TV) or entropy share", title="cold = argmax, hot = uniform",
           xscale="log")
plt.show()

# %% [markdown]
# The printed distances tell the story: at the coldest temperature the weights are within a hair of the
# argmax, at the hottest within a hair of uniform, and the entropy climbs monotonically from near 0 to
# near $\log n$ in between. A temperature is a single dial between the hard and the soft lookup.
#
# ## 5. When is the spotlight sharp? Three cases, measured
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
fig, axes = plt.subplots(1, 3, figsize=(10, 2.6), sharey=True)
for ax, case in zip(axes, case_results, strict=True):
    ax.bar(range(case.n_keys), case.example_weights, color="tab:blue")
    ax.set_title(f"{case.name}: H = {entropy(case.example_weights):.2f} nats", fontsize=9)
    ax.set_xlabel("key")
axes[0].set_ylabel("weight")
fig.tight_layout()
plt.show()

# %% [markdown]
# The zero query and the identical keys give exactly $\log n$ in every trial (the largest entropy seen
# equals $\log n$ to the printed digits), while the close query puts almost all of its weight on its key.
#
# How fast does the beam narrow as a query turns towards a key? The next experiment fixes the query's
# length to $\sqrt{d}$ (the typical length of a key) and sets its cosine similarity with key 0 from 0
# (unrelated) to 1 (pointing exactly along it).

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
           title="the closer the match, the narrower the beam")
plt.show()

# %% [markdown]
# Notice the first row: a query unrelated to key 0 does *not* give uniform weights. Its random overlaps
# with the eight keys still differ, so its entropy sits below $\log n$. Only the special cases above (all
# scores exactly equal) reach the maximum.
#
# **The bounds.** Finally, the promise $0 \le H \le \log n$, checked on many random distributions: from
# nearly uniform to extremely peaked (scores spread from $10^{-3}$ to $10^{3}$), between 1 and 64 keys,
# with random keys masked out (weight exactly 0).

# %%
bounds = entropy_experiment.measure_bounds(cases=1_000 if FAST else 50_000)
print(f"{bounds.cases} random distributions")
print(f"smallest entropy seen          : {bounds.min_entropy:.3e}")
print(f"largest (entropy - log n) seen : {bounds.max_entropy_excess:.3e}")
print(f"cases outside [0, log n]       : {bounds.violations}")
print(f"cases with a nan entropy       : {bounds.nan_count}")

# %% [markdown]
# ## 6. Batches and masks in torch
#
# Real models attend for a whole batch at once, in torch, with three extra needs:
#
# * **Batches.** `query` is `(B, Tq, D)`, `keys` `(B, Tk, D)`, `values` `(B, Tk, Dv)`. The scores
#   `query @ keys.transpose(-2, -1)` have shape `(B, Tq, Tk)`: for each sentence in the batch, one row
#   per query and one column per key. `@` multiplies the last two axes and treats the first as a batch.
# * **Masks.** Sentences in a batch have different lengths, so the shorter ones are padded with keys that
#   mean nothing. A boolean `mask`, `True` where a query **may attend** to a key, hides them. Its shape
#   only has to *broadcast* to `(B, Tq, Tk)`: `(B, 1, Tk)` hides the same keys from every query.
# * **No `nan`.** A query whose every key is masked has nothing to attend to. Its weights should be all
#   zeros, and its output the zero vector.
#
# The right place for the mask is **before** the softmax: set the hidden scores to $-\infty$, so that
# $e^{-\infty} = 0$ and the remaining weights still sum to 1. Zeroing weights *after* the softmax leaves
# rows that no longer sum to 1 (the hidden keys' share of the light is simply lost).

# %%
demo_scores = torch.tensor([[2.0, 1.0, 0.5, 3.0]])  # (1, Tk): one query, four keys
demo_mask = torch.tensor([[True, True, True, False]])  # the last key is padding
before = torch.softmax(demo_scores.masked_fill(~demo_mask, float("-inf")), dim=-1)
after = torch.softmax(demo_scores, dim=-1) * demo_mask
print("mask before the softmax:", before, f" row sum {float(before.sum()):.4f}")
print("mask after the softmax :", after, f" row sum {float(after.sum()):.4f}")
print("every key masked       :", torch.softmax(torch.full((1, 3), float("-inf")), dim=-1))

# %% [markdown]
# The last line shows the trap: a softmax over nothing but $-\infty$ computes $0/0$ and returns `nan`.
# Left alone, that `nan` spreads into the output and from there into the loss and every gradient.
#
# ### Exercise 4 — `masked_attention` (5 points)
#
# Write `masked_attention(query, keys, values, mask)` in torch and return `(output, weights)`:
#
# * `query` `(B, Tq, D)`, `keys` `(B, Tk, D)`, `values` `(B, Tk, Dv)`;
# * `mask`: `None` (attend everywhere) or a boolean tensor broadcastable to `(B, Tq, Tk)`, `True` = may attend;
# * `weights = softmax(query @ keys^T / sqrt(D))` over the keys, masked keys getting exactly 0, shape `(B, Tq, Tk)`;
# * `output = weights @ values`, shape `(B, Tq, Dv)`;
# * a query with every key masked gets zero weights and a zero output, never `nan`.
#
# Useful: `tensor.transpose(-2, -1)`, `tensor.masked_fill(condition, value)`, `torch.softmax(x, dim=-1)`
# (allowed here: you wrote a softmax already), `torch.nan_to_num`. Not allowed: the package's
# `xattn_edu.nn.attention` or `torch.nn.functional.scaled_dot_product_attention`.

# %% nbgrader={"grade": false, "grade_id": "masked_attention_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def masked_attention(query, keys, values, mask=None):
    """Batched scaled dot-product attention with a boolean mask (True = may attend).

    Args:
        query: (B, Tq, D)
        keys: (B, Tk, D)
        values: (B, Tk, Dv)
        mask: None, or bool broadcastable to (B, Tq, Tk)

    Returns:
        (output, weights): output (B, Tq, Dv), weights (B, Tq, Tk); fully masked rows are all 0
    """
    ### BEGIN SOLUTION
    scores = query @ keys.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # all -inf rows: 0/0 -> 0
    return weights @ values, weights
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "masked_attention_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# No mask (None) and an all-True mask on a batch of 2: output (B, Tq, Dv), weights (B, Tq, Tk) that match
# softmax(q k^T / sqrt(D)). A missing or wrong scale is named in the message.
grading.check_masked_attention(masked_attention)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_masked_attention(masked_attention)
pristine.check_masked_attention_hidden(masked_attention)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "masked_attention_mask_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# A padding mask of shape (B, 1, Tk) (memory lengths 5 and 3) and a per-query mask (B, Tq, Tk):
# masked keys get weight exactly 0 and each row still sums to 1. Masking after the softmax is caught.
grading.check_masked_attention_mask(masked_attention)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_masked_attention_mask(masked_attention)
pristine.check_masked_attention_mask_hidden(masked_attention)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "masked_attention_empty_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# One query may attend to no key at all: its weights and output must be zeros, and nothing may be nan.
grading.check_masked_attention_empty(masked_attention)
### BEGIN HIDDEN TESTS
from xattn_edu.chapters.support.pristine import fresh  # noqa: E402, I001 (checks no solution cell can have patched)
pristine = fresh("xattn_edu.chapters.spotlight.checks")
pristine.check_masked_attention_empty(masked_attention)
pristine.check_masked_attention_empty_hidden(masked_attention)
### END HIDDEN TESTS

# %% [markdown]
# ### Check the shapes
#
# A batch of two "source sentences" (memories) of lengths 5 and 3, padded to $T_k = 5$, and three queries
# each. `padding_mask` from the package builds the mask; its shape `(B, 1, 1, Tk)` is made for
# multi-head attention `(B, h, Tq, Tk)`, so the cell drops the head axis to get `(B, 1, Tk)`.
# The cell runs your `masked_attention` (the package's `attention.scaled_dot_product_attention` while
# yours is a stub).

# %%
def reference_attention(query, keys, values, mask=None):
    return attention.scaled_dot_product_attention(query, keys, values, mask, return_weights=True)


attend = prefer_mine(masked_attention, reference_attention)
lengths = torch.tensor([5, 3])
memory_mask = padding_mask(lengths, max_len=5)[:, 0]  # (B, 1, 1, Tk) -> (B, 1, Tk)
batch_query = torch.randn(2, 3, 8)  # (B, Tq, D)
batch_keys, batch_values = torch.randn(2, 5, 8), torch.randn(2, 5, 4)  # (B, Tk, D), (B, Tk, Dv)
batch_output, batch_weights = attend(batch_query, batch_keys, batch_values, memory_mask)
print("mask   ", tuple(memory_mask.shape), "\n", memory_mask.int())
print("weights", tuple(batch_weights.shape), " output", tuple(batch_output.shape))
print("row sums:", batch_weights.sum(dim=-1))
print("weight on the padding keys of sentence 2:", batch_weights[1, :, 3:])

# %% [markdown]
# Entropy per query works on these weights too: the package's `attention_entropy` accepts torch tensors
# and returns one number per query, shape `(B, Tq)`. With padding, the largest possible entropy of a
# query is $\log(\text{its number of visible keys})$, not $\log T_k$: padding keys hold no light.

# %%
batch_entropy = reference.attention_entropy(batch_weights)  # (B, Tq)
print("entropy per query (nats):\n", batch_entropy)
print("log(visible keys) per sentence:", [round(math.log(int(n)), 3) for n in lengths])
heatmap_panels(batch_weights, [[f"q{t}: H={batch_entropy[b, t]:.2f}" for t in range(3)] for b in range(2)],
               [[f"k{j}" + (" (pad)" if j >= lengths[b] else "") for j in range(5)] for b in range(2)], annotate=True,
               titles=[f"sentence {b + 1}: length {int(lengths[b])}" for b in range(2)],
               suptitle="padding keys get weight 0")
plt.show()

# %% [markdown]
# ## 7. See it: drive the spotlight
#
# Below is a small library of six books with random keys of width $d$, and four queries: one close to
# Botany, one halfway between Astronomy and Sailing, a random question, and the zero query. The table
# shows each query's weights (dark = 0, yellow = 1) and their entropy, in nats and as a share of $\log 6$.
#
# * **temperature**: slide it left and every row but the last collapses onto its best key; slide it right
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
# * The softmax weights are a **spotlight** over the keys; only score *differences* matter, and
#   a gap of $\Delta$ becomes a weight ratio of $e^\Delta$.
# * **Entropy** $H = -\sum_i w_i \log w_i$ (nats, with $0 \log 0 = 0$) measures its width:
#   0 for one-hot, $\log n$ for uniform, and always in between (measured on many random cases).
# * For unit-variance entries, $\operatorname{Var}(q \cdot k) = d$ (measured). Unscaled scores saturate
#   the softmax as $d$ grows, and the gradient through it vanishes (measured); dividing by $\sqrt{d}$ keeps
#   the scores at variance 1 and the gradient alive at every width.
# * A **temperature** divides the scores: $T \to 0$ gives the argmax, $T \to \infty$ the uniform average.
# * The zero query and identical keys give exactly uniform weights, $H = \log n$; a query close to one
#   distinct key gives low entropy.
# * In torch, batched attention has weights `(B, Tq, Tk)`; masks (`True` = may attend) go on the scores
#   as $-\infty$ **before** the softmax, and fully masked queries must be turned from `nan` into zeros.
#
# **Check yourself**
#
# 1. Two attention rows over 8 keys have entropies 0.1 and 2.0 nats. Which is sharper? Which is close to
#    uniform (what is $\log 8$)?
# 2. Your head width goes from 64 to 256. By what factor does the standard deviation of the raw scores
#    grow? Which scale keeps the softmax behaving the same?
# 3. What temperature makes `temperature_softmax(s / math.sqrt(d), 1.0)` equal to
#    `temperature_softmax(s, T)`?
# 4. A query attends over a memory of length 10 of which 4 positions are padding. What is the largest
#    entropy its weights can have?
# 5. Why does masking *after* the softmax give wrong weights, and what does it do to a row whose every
#    key is masked?
