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
# # Chapter 4 — Superpowers, measured
#
# Two stories are often told to explain why cross-attention works so well. The first is about
# *information*: looking at context that is correlated with what you must predict shrinks your
# uncertainty, and the shrinkage goes with the squared correlation. The second is about *training*:
# because every decoder layer talks to the encoder, the learning signal is said to take an express
# lane into the encoder and skip its depth.
#
# Both stories contain something true and something too simple. In this chapter you test them the
# way a scientist would: write the pieces, run the experiments, and read the numbers.
#
# **By the end of this chapter you can**
#
# 1. derive the variance of a Gaussian target that is left after you observe a correlated context;
# 2. measure, from samples, how much variance a predictor removes, with one or several context variables;
# 3. write attention as kernel regression (keys = context inputs, values = context targets) and watch it
#    approach the best possible predictor as the context grows;
# 4. find where "proportional to the squared correlation" stops being true;
# 5. measure the gradient that reaches each encoder layer, and say what really carries it there:
#    cross-attention, residual connections, or the position of the layer norm;
# 6. build the one wiring that *does* connect the loss to every encoder layer (transparent attention) and
#    test whether it rescues a deep post-norm encoder.
#
# **How to work.** Run the cells from the top. Where you see `# YOUR CODE HERE`, replace the
# `raise NotImplementedError()` line with your code, then run the test cell below it. Test cells explain
# what they check; more (hidden) checks run when your notebook is graded (`xattn grade 04_superpowers.ipynb`).
# Plan on about 90 minutes. The experiments shrink to seconds when `XATTN_FAST=1` is set.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import os
import platform
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.superpowers import checks as grading
from xattn_edu.chapters.superpowers import gradient_flow as flow
from xattn_edu.chapters.superpowers import masked_token, reference, uncertainty
from xattn_edu.chapters.superpowers.diagram import draw_wirings
from xattn_edu.chapters.superpowers.stacks import CROSS
from xattn_edu.chapters.superpowers.widget import make_gradient_widget, make_uncertainty_widget
from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import line_chart

warnings.filterwarnings("ignore")
np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)
torch.manual_seed(0)
torch.set_num_threads(1)  # the models here are tiny: a second thread only waits (and, on a busy machine, stalls)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds
STARTED, CPU_STARTED = time.perf_counter(), time.process_time()

# %% [markdown]
# # Part I — Attention removes uncertainty
#
# ## 1. The question
#
# You must guess a number $Y$: tomorrow's temperature, the value hidden behind a masked token, the
# next word of a translation. With no other information, the best single guess (for squared error) is
# the mean of $Y$, and the error you should expect is its variance $\operatorname{Var}(Y)$. That
# variance is your *uncertainty*.
#
# Now someone lets you look at a context value $X$ before you guess. If $X$ and $Y$ move together,
# your guess can follow $X$, and the error shrinks. How much? For the classic case, $X$ and $Y$
# jointly Gaussian with correlation $\rho$, the answer is exact:
#
# $$\operatorname{Var}(Y \mid X) = (1 - \rho^2)\,\operatorname{Var}(Y),$$
#
# so looking at $X$ removes the share $\rho^2$ of the variance. A correlation of 0.5 removes only a
# quarter; 0.9 removes about four fifths. You will derive this, check it on samples, and then see an
# attention layer discover it on its own.
#
# ## 2. Derive it
#
# Write $\mu_X, \sigma_X, \mu_Y, \sigma_Y$ for the means and standard deviations and
# $\rho = \operatorname{Cov}(X, Y) / (\sigma_X \sigma_Y)$. Split $Y$ into a part that follows $X$ and a rest:
#
# $$Y = \mu_Y + b\,(X - \mu_X) + E .$$
#
# 1. Choose $b$ so that the rest $E$ is uncorrelated with $X$:
#    $\operatorname{Cov}(X, E) = \operatorname{Cov}(X, Y) - b\,\sigma_X^2 = 0$ gives
#    $b = \operatorname{Cov}(X, Y)/\sigma_X^2 = \rho\,\sigma_Y / \sigma_X$.
# 2. Variances of uncorrelated parts add: $\sigma_Y^2 = b^2 \sigma_X^2 + \operatorname{Var}(E)$, so
#    $\operatorname{Var}(E) = \sigma_Y^2 - \rho^2 \sigma_Y^2 = (1 - \rho^2)\,\sigma_Y^2$.
# 3. For jointly Gaussian variables, *uncorrelated* means *independent*. So once you know $X = x$, the
#    first two terms are fixed numbers and all that is left uncertain is $E$:
#    $$\mathbb{E}[Y \mid X = x] = \mu_Y + \rho\,\frac{\sigma_Y}{\sigma_X}\,(x - \mu_X), \qquad
#    \operatorname{Var}(Y \mid X = x) = (1 - \rho^2)\,\sigma_Y^2 .$$
#
# Two things to notice. The conditional variance does not depend on the value $x$ you observed (a
# Gaussian peculiarity). And step 3 is the only place where Gaussianity was used: steps 1–2 hold for any
# distribution, but then they describe the best *straight line*, not the best predictor.
#
# ### Exercise 1 — `conditional_variance` and `conditional_mean` (2 points)
#
# Turn the derivation into code (numpy):
#
# * `conditional_variance(rho, var_y)`: $(1 - \rho^2)\,\operatorname{Var}(Y)$; `rho` and `var_y` may be
#   numbers or arrays (they broadcast). Raise `ValueError` if any $|\rho| > 1$ or any variance is negative.
# * `conditional_mean(x, rho, mean_x, std_x, mean_y, std_y)`: $\mathbb{E}[Y \mid X = x]$ for a number or
#   an array `x`.

# %% nbgrader={"grade": false, "grade_id": "conditional_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conditional_variance(rho, var_y):
    """Var(Y | X) for jointly Gaussian X, Y with correlation rho.

    Args:
        rho: correlation, a number or array with values in [-1, 1]
        var_y: Var(Y) >= 0, broadcasting against rho

    Returns:
        (1 - rho**2) * var_y

    Raises:
        ValueError: if |rho| > 1 or var_y < 0 anywhere
    """
    ### BEGIN SOLUTION
    rho, var_y = np.asarray(rho, dtype=float), np.asarray(var_y, dtype=float)
    if np.any(np.abs(rho) > 1):
        raise ValueError("a correlation lies in [-1, 1]")
    if np.any(var_y < 0):
        raise ValueError("a variance is never negative")
    return (1 - rho**2) * var_y
    ### END SOLUTION


def conditional_mean(x, rho, mean_x, std_x, mean_y, std_y):
    """E[Y | X = x] for jointly Gaussian X, Y.

    Args:
        x: observed value(s) of X, a number or an array
        rho: correlation of X and Y
        mean_x, std_x: mean and standard deviation of X
        mean_y, std_y: mean and standard deviation of Y

    Returns:
        the conditional mean, same shape as x
    """
    ### BEGIN SOLUTION
    return mean_y + rho * std_y / std_x * (np.asarray(x, dtype=float) - mean_x)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "conditional_variance_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# rho = 0.6 and -0.5 with numbers, an array of rho, and ValueError for rho = 1.5.
grading.check("conditional_variance_tests", conditional_variance)
### BEGIN HIDDEN TESTS
grading.record("conditional_variance_tests", conditional_variance)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "conditional_mean_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Standard variables first, then means and spreads that differ: the slope must be rho * std_y / std_x.
grading.check("conditional_mean_tests", conditional_mean)
### BEGIN HIDDEN TESTS
grading.record("conditional_mean_tests", conditional_mean)
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Check it on samples
#
# A formula is a prediction; samples are the test. The next cell draws many standard Gaussian pairs
# with $\rho = 0.8$ and measures the variance of $Y$ among the samples whose $X$ falls in a thin slice
# around a few values $c$: that is $\operatorname{Var}(Y \mid X \approx c)$ by its very definition.

# %%
variance_given = prefer_mine(conditional_variance, reference.conditional_variance)
print(f"formula: Var(Y | X) = {variance_given(0.8, 1.0):.4f}")
print(f"{'X near':>7} {'samples':>8} {'Var(Y) in the slice':>20}")
for row in uncertainty.measure_binned(0.8, n=50_000 if FAST else 400_000):
    print(f"{row.x_center:>7.1f} {row.count:>8d} {row.variance:>20.4f}")

# %% [markdown]
# Every slice shows about the same variance, close to the formula, wherever $X$ is: the spread left
# over does not depend on the value you saw. (The slices with fewer samples wobble more.)
#
# With real data you never know $\rho$ or the true line; you have samples. The practical measure is:
# fit the best line $\hat y = a + b x$ by least squares and ask which share of $\operatorname{Var}(y)$
# its residuals no longer have,
#
# $$\text{removed} = 1 - \frac{\tfrac1N \sum_i (y_i - \hat y_i)^2}{\operatorname{Var}(y)} .$$
#
# For one context variable this is the sample $r^2$. With several context variables $x_i \in \mathbb{R}^k$
# the same recipe (fit $a + x^\top b$) gives the **squared multiple correlation** $R^2$.
#
# ### Exercise 2 — `variance_reduction` (2 points)
#
# Write `variance_reduction(x, y)`: `x` has shape `(N,)` (one context variable) or `(N, k)`, `y` has shape
# `(N,)`. Fit $y \approx a + x b$ by least squares **with an intercept** and return the share of
# `np.var(y)` removed, one float. Hint: stack a column of ones next to `x` and call
# `np.linalg.lstsq(design, y, rcond=None)`.

# %% nbgrader={"grade": false, "grade_id": "variance_reduction_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def variance_reduction(x, y):
    """Share of Var(y) removed by the least-squares linear predictor a + x @ b.

    Args:
        x: (N,) or (N, k) context variables
        y: (N,) targets

    Returns:
        a float: 1 - mean(residual**2) / var(y)
    """
    ### BEGIN SOLUTION
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    design = np.column_stack([np.ones(len(y)), x.reshape(len(y), -1)])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(1 - np.mean((y - design @ coefficients) ** 2) / np.var(y))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "variance_reduction_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# One context variable: points exactly on a line (everything removed), then 200 samples with rho = 0.6.
grading.check("variance_reduction_tests", variance_reduction)
### BEGIN HIDDEN TESTS
grading.record("variance_reduction_tests", variance_reduction)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "variance_reduction_multi_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Two correlated context variables: the share is the squared multiple correlation of a fitted plane.
grading.check("variance_reduction_multi_tests", variance_reduction)
### BEGIN HIDDEN TESTS
grading.record("variance_reduction_multi_tests", variance_reduction)
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Attention as a predictor
#
# So far the predictor was a straight line fitted to the samples. Attention does something that looks
# different and turns out to be closely related. Give it a **context set** of $n$ observed pairs
# $(x_i, y_i)$ and a new $x$ to predict at:
#
# * the **query** is the new $x$;
# * the **keys** are the context inputs $x_i$;
# * the **values** are the context targets $y_i$.
#
# Each key gets a score for how *close* it is to the query, a softmax turns the scores into weights, and
# the prediction is the weighted average of the values:
#
# $$s_i = -\frac{\lVert q - k_i \rVert^2}{2h^2}, \qquad w = \operatorname{softmax}(s), \qquad
# \hat y(q) = \sum_i w_i\, v_i .$$
#
# In the library picture: you ask about $x$, and you read mostly the books shelved next to it. The
# **bandwidth** $h$ says how far "next to" reaches. This is the Nadaraya–Watson kernel regression of
# 1964 with a Gaussian kernel. It is also ordinary dot-product attention in disguise: expanding the
# square, $s_i = \frac{q \cdot k_i}{h^2} - \frac{\lVert k_i \rVert^2}{2h^2} - \frac{\lVert q \rVert^2}{2h^2}$;
# the last term is the same for every key and cancels in the softmax, so the scores are scaled dot
# products plus a per-key offset.
#
# ### Exercise 3 — `attention_readout` (2 points)
#
# Write `attention_readout(queries, keys, values, bandwidth)` **in torch**:
#
# * `queries` `(Tq, d)`, `keys` `(n, d)`, `values` `(n, dv)`, all float tensors; `bandwidth` a positive number;
# * return `(predictions, weights)` of shapes `(Tq, dv)` and `(Tq, n)`, each row of weights summing to 1.
#
# Broadcasting `queries[:, None, :] - keys[None, :, :]` gives every difference at once, shape `(Tq, n, d)`.
# You may use `torch.softmax` (writing one was Chapter 1's job). Use torch operations only: the second
# test checks the gradients with respect to queries, keys and values, and queries far away from every key.

# %% nbgrader={"grade": false, "grade_id": "readout_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attention_readout(queries, keys, values, bandwidth):
    """Nadaraya-Watson attention with a Gaussian kernel.

    Args:
        queries: (Tq, d) tensor
        keys: (n, d) tensor
        values: (n, dv) tensor
        bandwidth: h > 0

    Returns:
        (predictions (Tq, dv), weights (Tq, n))
    """
    ### BEGIN SOLUTION
    squared = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(dim=-1)  # (Tq, n)
    weights = torch.softmax(-squared / (2 * bandwidth**2), dim=-1)
    return weights @ values, weights
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "readout_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# One query and three 1-D context items, then 20 items on a noisy line: weights and predictions.
grading.check("readout_tests", attention_readout)
### BEGIN HIDDEN TESTS
grading.record("readout_tests", attention_readout)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "readout_gradient_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# 2-D keys and values; the gradients with respect to queries, keys and values must match the reference.
grading.check("readout_gradient_tests", attention_readout)
### BEGIN HIDDEN TESTS
grading.record("readout_gradient_tests", attention_readout)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Check the shapes
#
# Five context items in two dimensions, three queries, values of width 1 (your function, or the
# reference while yours is a stub):

# %%
readout = prefer_mine(attention_readout, reference.attention_readout)
demo_keys, demo_values = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
demo_predictions, demo_weights = readout(torch.randn(3, 2, dtype=torch.float64), demo_keys, demo_values, 0.7)
print("predictions", tuple(demo_predictions.shape), " weights", tuple(demo_weights.shape),
      " row sums", demo_weights.sum(-1).numpy())

# %% [markdown]
# ## 6. See it
#
# The first slider sets the correlation $\rho$, the second the number $n$ of context items the query can
# attend to. Left: the context samples (blue), the read-out's prediction for every $x$ (orange) and the
# true $\mathbb{E}[Y \mid X]$ (dashed). Right: the dashed parabola is the bound $1 - \rho^2$; the orange dot
# is the variance the attention read-out leaves on fresh samples, the green dot what the best fitted line
# leaves. The bandwidth shrinks as $n$ grows (Silverman's rule of thumb, $h \propto n^{-1/5}$).
#
# Try: a small $n$ (the orange curve is lumpy and its dot sits above the bound), then a large one (it
# hugs the dashed line). Then tick **nonlinear**: now $Y$ depends on $X^2$ with strength $s$ (the
# slider), the correlation is zero whatever $s$, and the green dot stays near 1 while the orange one
# still drops to the bound.

# %%
make_uncertainty_widget()

# %% [markdown]
# ## 7. Measure it
#
# **Does the read-out reach the bound?** For $\rho = 0.8$ the best possible predictor leaves
# $1 - \rho^2$ of the variance. The next cell measures what the read-out leaves on fresh samples as the
# context grows (averaged over several context sets).

# %%
size_rows = uncertainty.measure_context_sizes(
    rho=0.8, sizes=(4, 16, 64, 256) if FAST else (4, 16, 64, 256, 1024, 4096), n_test=1000 if FAST else 4000,
    repeats=2 if FAST else 5)
print(f"bound 1 - rho**2 = {1 - 0.8**2:.3f}")
print(f"{'context n':>10} {'bandwidth h':>12} {'variance left':>14} {'above the bound':>16}")
for row in size_rows:
    print(f"{row.n_context:>10d} {row.bandwidth:>12.3f} {row.residual:>14.3f} {row.residual - (1 - 0.8**2):>+16.3f}")

# %% [markdown]
# With a handful of context items the read-out is a poor predictor: it averages values from far-away
# keys (the bias of a wide kernel) and leans on few samples (noise). Both shrink as $n$ grows, and the
# residual variance closes in on the bound from above. It never goes below it, because no predictor
# can: the bound is the noise $E$ that $X$ knows nothing about.
#
# **Reduction against $\rho^2$.** Now sweep the correlation. For each $\rho$: the share of the variance
# removed by the true conditional mean on fresh samples ("simulated"), by the fitted line
# (your `variance_reduction`) and by the attention read-out (the package's, the same as yours). Then fit
# a straight line of each against $\rho^2$: if "removed $= \rho^2$" holds, the slope is 1, the intercept 0
# and $R^2$ close to 1.

# %%
reduction_of = prefer_mine(variance_reduction, reference.variance_reduction)
rho_rows = uncertainty.measure_rho_sweep(n_context=300 if FAST else 2000, n_test=1000 if FAST else 20_000,
                                         reduction=reduction_of)
print(f"{'rho':>5} {'rho**2':>7} {'simulated':>10} {'fitted line':>12} {'attention':>10}")
for row in rho_rows:
    print(f"{row.rho:>5.2f} {row.analytic:>7.3f} {row.simulated:>10.3f} {row.linear:>12.3f} {row.attention:>10.3f}")
rho_squared = [row.analytic for row in rho_rows]
removed = {"simulated": [row.simulated for row in rho_rows], "linear": [row.linear for row in rho_rows],
           "attention": [row.attention for row in rho_rows]}
rho_fits = {name: uncertainty.fit_line(rho_squared, shares) for name, shares in removed.items()}
for name, fit in rho_fits.items():
    print(f"{name:>10}: removed = {fit.slope:.3f} * rho**2 {fit.intercept:+.3f}   (R**2 of the fit {fit.r_squared:.4f})")

# %%
line_chart(rho_squared, {"attention read-out": removed["attention"], "fitted line": removed["linear"]},
           predictions={"removed = rho**2": rho_squared}, xlabel="rho**2", ylabel="share of Var(Y) removed",
           title="Gaussian data: attention removes rho**2 of the variance")
plt.show()

# %% [markdown]
# For Gaussian data the claim holds, and it holds for the attention read-out too: the points sit on the
# line of slope 1. Notice that nobody told the read-out that the relation is linear. It only averages
# the values of nearby keys, which is why it can also go where the straight line cannot.
#
# **Where "$\propto \rho^2$" stops.** Correlation measures *linear* dependence only. Take
# $Y = X^2 + \text{noise}$ with $X$ standard normal: $\operatorname{Cov}(X, X^2) = \mathbb{E}[X^3] = 0$, so
# $\rho = 0$, yet $X$ decides most of $Y$ (here $\operatorname{Var}(X^2) = 2$ of the total $2.5$).

# %%
nonlinear = uncertainty.measure_nonlinear(n_context=500 if FAST else 2000, n_test=1000 if FAST else 4000)
print(f"sample correlation of X and Y: {nonlinear.sample_rho:+.3f}   Var(Y) measured: {nonlinear.var_y:.3f}")
print(f"{'predictor':>22} {'share of Var(Y) left':>22} {'share removed':>14}")
for row in nonlinear.rows:
    print(f"{row.predictor:>22} {row.residual:>22.3f} {1 - row.residual:>14.3f}")

# %% [markdown]
# The correlation is near zero, so the "$\rho^2$" rule predicts that the context is useless, and the best
# straight line indeed removes nothing. The attention read-out removes most of the variance, close to
# the true conditional mean $X^2$. What shrinks uncertainty is *information* about $Y$ in the context,
# and $\rho^2$ measures only the part of it a straight line can use.
#
# **Several context variables.** With two context variables $X_1, X_2$ that are themselves correlated,
# is the removed share $\rho_1^2 + \rho_2^2$? No: the two carry overlapping information. The right
# quantity is the squared multiple correlation $R^2$, what the best plane removes.

# %%
several = uncertainty.measure_multiple(n_context=500 if FAST else 2000, n_test=1000 if FAST else 4000,
                                       reduction=reduction_of)
rho_1, rho_2 = several.rho_each
print(f"rho(Y, X1) = {rho_1:.3f}, rho(Y, X2) = {rho_2:.3f}; rho1**2 + rho2**2 = {rho_1**2 + rho_2**2:.3f}")
print(f"R**2 (theory)                         : {several.r_squared:.3f}")
print(f"removed by the fitted plane (samples) : {several.linear:.3f}")
print(f"removed by attention over (X1, X2)    : {several.attention:.3f}")
print(f"removed by attention over X1 alone    : {several.single_attention[0]:.3f}   (rho1**2 = {rho_1**2:.3f})")
print(f"removed by attention over X2 alone    : {several.single_attention[1]:.3f}   (rho2**2 = {rho_2**2:.3f})")

# %% [markdown]
# The sum of the single $\rho^2$ overshoots (it can even exceed 1); the fitted plane and the attention
# read-out with two-dimensional keys both land on $R^2$. Each variable alone removes about its own
# $\rho^2$.
#
# ## 8. A masked token and a context token
#
# Now the setting the story is usually told in: a model must fill in a **masked token**. The target's
# value $Y$ is Gaussian; the context is a short sequence of tokens in which one token comes from an $X$
# with correlation $\rho$ to $Y$ and the others are unrelated distractors. Values become tokens through
# 16 equally likely bins. The model is one learned [MASK] query that **cross-attends** to the context
# tokens (keys and values from the context sequence), followed by a small network that outputs a
# distribution over the 16 tokens; one model is trained per $\rho$ with cross-entropy.
#
# We measure, on fresh examples: the loss saved compared with $\log 16$ (a model that ignores the
# context), the information limit $I(Y_\text{token}; X_\text{token})$ (no model can save more), the
# share of the variance of $Y$'s value removed by the model's predicted mean, and the attention weight
# the [MASK] query puts on the correlated token.

# %%
masked_rows = masked_token.measure_masked_token(rhos=(0.0, 0.5, 0.9) if FAST else (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95),
                                                steps=60 if FAST else 400, test=5000 if FAST else 20_000)
print(f"{'rho':>5} {'rho**2':>7} {'loss saved':>11} {'info limit':>11} {'-log(1-rho^2)/2':>16} "
      f"{'variance removed':>17} {'weight on the evidence':>23}")
for row in masked_rows:
    print(f"{row.rho:>5.2f} {row.rho**2:>7.3f} {row.loss_reduction:>11.3f} {row.information_limit:>11.3f} "
          f"{row.gaussian_information:>16.3f} {row.variance_removed:>17.3f} {row.weight_on_evidence:>23.3f}")
masked_fit = uncertainty.fit_line([r.rho**2 for r in masked_rows], [r.variance_removed for r in masked_rows])
loss_fit = uncertainty.fit_line([r.rho**2 for r in masked_rows], [r.loss_reduction for r in masked_rows])
print(f"variance removed = {masked_fit.slope:.3f} * rho**2 {masked_fit.intercept:+.3f}  (R**2 {masked_fit.r_squared:.4f})")
print(f"loss saved       = {loss_fit.slope:.3f} * rho**2 {loss_fit.intercept:+.3f}  (R**2 {loss_fit.r_squared:.4f})")

# %% [markdown]
# Read the columns side by side:
#
# * the **variance** of the prediction shrinks roughly in proportion to $\rho^2$ (a little less: 16 bins
#   blur the values);
# * the **loss** a language model is trained on does not: the cross-entropy saved follows the information
#   $-\tfrac12 \log(1 - \rho^2)$, which is close to $\rho^2/2$ for weak correlations and grows without
#   bound as $\rho \to 1$. Trained long enough (the full run, not the shortened one with `XATTN_FAST=1`),
#   the models come close to the information limit;
# * the model learns *where* to look: with $\rho = 0$ the query has no reason to prefer any token, with
#   a strong correlation nearly all of its weight goes to the correlated one.
#
# **Self- or cross-attention?** The usual telling of this story (a masked word guessed from the words
# around it, as in BERT) is *self*-attention: the masked position and its context are the same sentence,
# and the context words' own representations are computed while the [MASK] is among them. Here the query
# lives on one side (the target) and reads from a separate sequence whose representation does not depend
# on the query: that is cross-attention, as when a decoder predicts the next target word from the
# encoded source sentence. The statistics are the same in both cases (conditioning on the tokens attended
# to); what differs is where the evidence comes from and whether it can look back at the query.
#
# # Part II — The gradient "superhighway"
#
# ## 9. The claim, and why to doubt it
#
# A popular explanation of deep encoder-decoders goes like this: the loss is computed at the decoder's
# output; every decoder layer cross-attends to the encoder; so the gradient can jump straight from the
# decoder into the encoder and skip the long way down through its $L$ layers, which is why deep
# encoders train.
#
# Look at the wiring (left panel below). Every cross-attention reads the **top** encoder layer only.
# The gradient does reach the highest encoder layer through $L_\text{dec}$ parallel paths. But a
# gradient that is to reach encoder layer 1 must still go down through layers $L, L-1, \dots, 2$: there
# is no arrow that skips them. If something keeps that path from fading, it is the **residual stream**
# (the grey band): each layer adds its output to its input, so the gradient of the layer above passes
# through unchanged, plus corrections.
#
# So we compare four wirings (panels below), each with and without residual connections, with the
# layer norm before each sublayer (pre-norm, today's default) or after the residual sum (post-norm,
# the 2017 original). The last wiring, **transparent attention** (Bapna et al., 2018), is a real
# bypass: each decoder layer reads a learned softmax mixture of *all* encoder layers, so the loss has a
# direct line to every one of them.

# %%
draw_wirings()
plt.show()

# %% [markdown]
# ### Exercise 4 — `layer_grad_norms` (2 points)
#
# The measurement you need: after one backward pass, the size of the gradient of each layer.
#
# Write `layer_grad_norms(layers, loss)`:
#
# * `layers` is an `nn.ModuleList` of the $L$ encoder layers, bottom first; `loss` a scalar tensor that
#   has not been backpropagated yet;
# * the layers may still hold gradients from an earlier step: clear them first (the `zero_grad` method of
#   `layers`), then backpropagate `loss` once;
# * return a 1-D tensor of $L$ numbers: `norms[l]` is the Euclidean norm of **all** the gradient entries of
#   layer `l`'s parameters together, $\sqrt{\sum_{p \in \text{layer } l} \sum p.\text{grad}^2}$.

# %% nbgrader={"grade": false, "grade_id": "grad_norms_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def layer_grad_norms(layers, loss):
    """One backward pass, then the gradient norm of each layer's parameters.

    Args:
        layers: nn.ModuleList of L layers, bottom first
        loss: scalar tensor, not yet backpropagated

    Returns:
        (L,) tensor of norms, bottom layer first
    """
    ### BEGIN SOLUTION
    layers.zero_grad()
    loss.backward()
    norms = []
    for layer in layers:
        squares = sum((p.grad**2).sum() for p in layer.parameters() if p.grad is not None)
        norms.append(torch.sqrt(torch.as_tensor(squares)))
    return torch.stack(norms)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "grad_norms_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# A small encoder-decoder (3 encoder layers, width 16) on the reversal task: one norm per encoder layer.
grading.check("grad_norms_tests", layer_grad_norms)
### BEGIN HIDDEN TESTS
grading.record("grad_norms_tests", layer_grad_norms)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "grad_norms_stale_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The same model after an earlier backward pass: stale gradients must not leak into the norms.
grading.check("grad_norms_stale_tests", layer_grad_norms)
### BEGIN HIDDEN TESTS
grading.record("grad_norms_stale_tests", layer_grad_norms)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 5 — `mix_layers`, the memory of transparent attention (1 point)
#
# In transparent attention, decoder layer $j$ owns one learned score per encoder state, including the
# embeddings: $z_{j,0}, \dots, z_{j,L}$. Its cross-attention reads the memory
#
# $$M_j = \sum_{l=0}^{L} \operatorname{softmax}(z_j)_l \; H_l ,$$
#
# where $H_0$ is the embedded source and $H_l$ the output of encoder layer $l$. Write
# `mix_layers(states, logits)`: `states` `(L+1, B, Ts, D)`, `logits` `(L+1,)`, returning `(B, Ts, D)`. Use torch
# operations (the test checks the gradients with respect to both inputs; `torch.softmax` is allowed).
# The models of the experiments below use the package's version of this function.

# %% nbgrader={"grade": false, "grade_id": "mix_layers_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mix_layers(states, logits):
    """Softmax-weighted sum of the encoder states.

    Args:
        states: (L+1, B, Ts, D) tensor
        logits: (L+1,) tensor

    Returns:
        (B, Ts, D) tensor
    """
    ### BEGIN SOLUTION
    weights = torch.softmax(logits, dim=0)
    return (weights[:, None, None, None] * states).sum(dim=0)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "mix_layers_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Four states of shape (2, 3, 5) and random logits: the memory and its gradients.
grading.check("mix_layers_tests", mix_layers)
### BEGIN HIDDEN TESTS
grading.record("mix_layers_tests", mix_layers)
### END HIDDEN TESTS

# %% [markdown]
# ## 10. Check the shapes
#
# A standard model with 6 encoder layers, one batch of the reversal task (the target is the source read
# backwards), your `layer_grad_norms` (or the reference):

# %%
grad_norms = prefer_mine(layer_grad_norms, reference.layer_grad_norms)
demo_model = flow.build(flow.Variant("every"), depth=6, seed=0)
demo_batch = flow.reversal_batch(8, torch.Generator().manual_seed(0))
print("source", tuple(demo_batch[0].shape), " target in", tuple(demo_batch[1].shape),
      " logits", tuple(demo_model(*demo_batch[:2]).shape))
print("gradient norm per encoder layer (bottom first):",
      grad_norms(demo_model.encoder_layers, flow.task_loss(demo_model, demo_batch)).numpy())

# %% [markdown]
# ## 11. See it
#
# Choose a wiring and a depth; the bars are the gradient norms of the encoder layers at initialisation,
# bottom layer on the left, on one log scale for every choice. Compare `every` with `none` (no
# cross-attention at all), then switch the residuals off, then try `mixture`.

# %%
make_gradient_widget()

# %% [markdown]
# ## 12. Measure it
#
# **At initialisation.** For every wiring and depth: the ratio of the bottom layer's gradient norm to
# the top layer's (1 = the bottom gets as much as the top; 0.01 = a hundred times less), averaged
# (geometrically) over three initialisations. Encoder width 32, 4 heads, 4 decoder layers.

# %%
depths = (4, 8) if FAST else (6, 12, 24)
profile_rows = flow.measure_profiles(depths=depths, seeds=(0,) if FAST else (0, 1, 2))
ratios = {(row.variant, row.depth): row.ratio for row in profile_rows}
columns = [(residual, pre_norm) for residual in (True, False) for pre_norm in (True, False)]
for depth in depths:
    print(f"L = {depth}: bottom/top gradient-norm ratio at initialisation")
    print(f"{'wiring':>9} " + " ".join(f"{('pre' if p else 'post') + '-norm' + ('' if r else ', no res.'):>19}"
                                       for r, p in columns))
    for cross in CROSS:
        cells = [ratios.get((flow.Variant(cross, r, p), depth)) for r, p in columns]
        print(f"{cross:>9} " + " ".join(f"{'-' if c is None else f'{c:.3g}':>19}" for c in cells))

# %%
# %%
deepest = depths[-1]


def ratio_at(cross, residual=True, pre_norm=True):
    return ratios[flow.Variant(cross, residual, pre_norm), deepest]


standard = ("every", "one", "none")
print(f"L = {deepest}, residuals, pre-norm : every {ratio_at('every'):.3g}, none (no cross-attention) "
      f"{ratio_at('none'):.3g}")
print(f"L = {deepest}, residuals, post-norm: every {ratio_at('every', pre_norm=False):.3g}, none "
      f"{ratio_at('none', pre_norm=False):.3g}")
print(f"L = {deepest}, without residuals, the LARGEST ratio of any wiring: "
      f"{max(ratio_at(c, False, p) for c in standard for p in (True, False)):.3g}")
print(f"L = {deepest}, pre-norm with residuals, the SMALLEST ratio of any standard wiring: "
      f"{min(ratio_at(c) for c in standard):.3g}")
shown = [flow.Variant("every"), flow.Variant("none"), flow.Variant("every", residual=False),
         flow.Variant("none", residual=False), flow.Variant("mixture")]
profiles = {row.variant.name: row.norms for row in profile_rows if row.depth == deepest and row.variant in shown}
line_chart(range(1, deepest + 1), profiles, xlabel="encoder layer (1 = bottom)",
           ylabel="gradient norm of the layer", yscale="log",
           title=f"L = {deepest}: residuals, not cross-attention, shape the profile")
plt.show()

# %% [markdown]
# What to read off the grids, the four lines and the figure (at the largest depth):
#
# * **`every` against `none`.** With residual connections, the decoder-only stack, which has no
#   cross-attention at all, brings its bottom layer a share of the gradient comparable to the
#   encoder-decoder's. Cross-attention in every decoder layer does not change the profile in kind.
# * **Residuals on or off.** Without residual connections, every wiring leaves its bottom layer a fraction
#   of the top layer's gradient, cross-attention in every decoder layer included: on the way down the
#   gradient crosses each layer, and the crossings shrink it. With pre-norm residuals, the bottom gets at
#   least as much as the top.
# * **Pre- or post-norm.** With residuals, post-norm tilts the encoder-decoder's profile toward the top
#   (ratios below 1), pre-norm toward the bottom: where the normalisation sits matters as much as the
#   wiring (Xiong et al., 2020, analyse this for Transformers).
# * **`mixture`.** The one real bypass sends far *more* gradient to the bottom layers than to the top:
#   each decoder layer reads the low layers directly, and through the residual stream above them too.
#
# ### Watch it learn
#
# Gradients at initialisation are half the story; the other half is whether training works. Each
# wiring now trains on the reversal task with Adam (learning rate $10^{-3}$, **no warm-up**). The
# loss starts near $\log 11 \approx 2.4$ nats (11 equally likely symbols) and drops once the model finds
# how to read the source backwards.

# %%
train_depth, train_steps = (3, 20) if FAST else (12, 300)
started = time.perf_counter()
runs = {variant: flow.train_variant(variant, train_depth, train_steps) for variant in flow.VARIANTS}
print(f"{len(runs)} runs of {train_steps} steps at L = {train_depth} in {time.perf_counter() - started:.0f} s")
print(f"{'variant':>34} {'final loss':>11} {'bottom/top before':>18} {'bottom/top after':>17}")
for variant, run in runs.items():
    print(f"{variant.name:>34} {run.final_loss:>11.3f} {flow.bottom_top_ratio(run.norms_before):>18.3g} "
          f"{flow.bottom_top_ratio(run.norms_after):>17.3g}")
print(f"\nchance level (11 equally likely symbols): log 11 = {math.log(11):.3f}")
without = min(run.final_loss for variant, run in runs.items() if not variant.residual)
print(f"lowest final loss of any wiring without residuals: {without:.3f}")
for pre_norm in (True, False):
    losses = ", ".join(f"{c} {runs[flow.Variant(c, True, pre_norm)].final_loss:.3f}" for c in CROSS)
    print(f"{'pre' if pre_norm else 'post'}-norm with residuals, final loss: {losses}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), layout="constrained", sharey=True)
groups = [("pre-norm, residual", lambda v: v.residual and v.pre_norm),
          ("post-norm, residual", lambda v: v.residual and not v.pre_norm),
          ("no residual", lambda v: not v.residual)]
window = max(1, train_steps // 30)
for ax, (title, keep) in zip(axes, groups, strict=True):
    curves = {v.name: np.convolve(r.losses, np.ones(window) / window, mode="valid") for v, r in runs.items() if keep(v)}
    steps_axis = range(window, train_steps + 1)
    line_chart(steps_axis, curves, xlabel="training step", ylabel="loss (nats per token)", title=title, ax=ax)
plt.show()

# %% [markdown]
# Compare the final losses with the chance level (the printed lines above the curves):
#
# * **Without residual connections nothing learns** in this budget, whatever the wiring: the losses stay at
#   chance, and after training the bottom layers receive almost no gradient (last column of the table).
# * **With pre-norm residuals the stacks learn**, and the encoder-decoder with cross-attention in every
#   decoder layer is not the fastest: the decoder-only stack, with no cross-attention at all, does at least
#   as well. Whatever makes these deep stacks trainable, it is not a shortcut through cross-attention.
# * **With post-norm residuals and no warm-up**, compare the standard wirings with the mixture; the next
#   experiment looks at this case more carefully.
#
# **Does the bypass rescue a deep post-norm encoder?** Post-norm Transformers are known to need a
# learning-rate warm-up, and the deeper they are the more they need it. The next cell trains post-norm
# models of growing depth without warm-up, standard cross-attention against the layer mixture, on two
# seeds each; then the standard one at the largest depth *with* a warm-up of 100 steps.

# %%
warm_runs = flow.measure_warmup(depths=(2, 3) if FAST else (2, 6, 12), seeds=(0,) if FAST else (0, 1),
                                steps=train_steps)
print(f"{'wiring':>28} {'L':>3} {'warm-up':>8} {'seed':>5} {'final loss':>11}")
for run in warm_runs:
    print(f"{run.variant.name:>28} {run.depth:>3d} {run.warmup:>8d} {run.seed:>5d} {run.final_loss:>11.3f}")
for depth in sorted({run.depth for run in warm_runs}):
    mean = {cross: np.mean([r.final_loss for r in warm_runs if r.depth == depth and r.variant.cross == cross
                            and r.warmup == 0]) for cross in ("every", "mixture")}
    print(f"L = {depth:>2}, no warm-up: mean final loss, standard {mean['every']:.3f} vs mixture {mean['mixture']:.3f}")
warmed = [run.final_loss for run in warm_runs if run.warmup > 0]
print(f"L = {warm_runs[-1].depth:>2}, standard WITH {warm_runs[-1].warmup} warm-up steps: mean final loss "
      f"{np.mean(warmed):.3f}")

# %% [markdown]
# Read the final losses against $\log 11 \approx 2.40$ (a model that learned nothing about the source). At
# the shallowest depth both wirings learn the task. As the post-norm encoder gets deeper, the standard
# wiring without warm-up falls behind and, at the largest depth, barely leaves chance, while the mixture
# keeps learning on every seed. The last line says whether a warm-up brings the standard wiring back within
# the same number of steps. This is, at toy scale, the problem transparent attention was introduced for:
# a direct line from the loss to every encoder layer lets a deep post-norm encoder start learning without
# the careful schedule.
#
# ## 13. What the "superhighway" story gets right and wrong
#
# * **Right:** the loss reaches the encoder through every decoder layer's cross-attention, so the
#   highest encoder layer gets gradient from several paths at once, and encoder-decoders with deep
#   encoders do train.
# * **Wrong:** nothing "bypasses" the encoder's layers. Cross-attention reads the top layer only; below
#   it, the gradient walks down layer by layer like in any deep stack. Switching the residual connections
#   off makes the bottom layers' gradient fade *with* cross-attention in every decoder layer, and a
#   decoder-only stack with no cross-attention at all gets a similar profile to the encoder-decoder.
# * **What the measurements say instead:** the residual stream is the highway (it carries the gradient
#   through every layer nearly unchanged), and where the layer norm sits decides how well deep stacks
#   train (post-norm at depth needs warm-up or help). A connection that really skips layers exists, but
#   it is a different design: letting the decoder read a mixture of *all* encoder layers.
#
# ## Summary
#
# * For jointly Gaussian variables, observing $X$ leaves $(1-\rho^2)\operatorname{Var}(Y)$: the removed share
#   is $\rho^2$. You derived it, saw it in slices of samples, and measured it with a fitted line.
# * Attention over a context set, with closeness as the score, is kernel regression. It approaches the best
#   predictor as the context grows, and on Gaussian data it removes $\rho^2$ of the variance.
# * $\rho^2$ is about *linear* information. With $Y = X^2 + $ noise the correlation is 0, the best line removes
#   nothing, and attention removes most of the variance. With several context variables the share is
#   $R^2$, not a sum of single $\rho^2$.
# * For a token model trained with cross-entropy, the loss saved follows the information
#   $-\tfrac12\log(1-\rho^2)$, not $\rho^2$.
# * Cross-attention does not let gradients skip encoder layers; residual connections carry them, and the
#   layer norm's position matters at depth. Transparent attention is a real bypass and can make a deep
#   post-norm encoder trainable without warm-up.
#
# **Check yourself**
#
# 1. $\rho = 0.3$. Which share of the variance does observing $X$ remove? And with $\rho = -0.3$?
# 2. Why does $\operatorname{Var}(Y \mid X = x)$ not depend on $x$ for Gaussians? Give a distribution where it does.
# 3. The read-out's residual variance is above $1 - \rho^2$ for small $n$. Name the two reasons.
# 4. A context variable has $\rho = 0$ with the target. Can attending to it still help? Give an example.
# 5. Draw the path of the gradient from the loss to encoder layer 1 in a standard encoder-decoder. Which
#    component keeps it from fading?
#
# ## Closing note: the measured tables
#
# The numbers of this run, gathered in one place, with the machine they were measured on.

# %%
print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or 'processor n/a'}; "
      f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
      f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; fast mode: {FAST}")
print(f"notebook time so far: {time.perf_counter() - STARTED:.0f} s wall, {time.process_time() - CPU_STARTED:.0f} s of "
      "CPU time in this kernel, all threads (on a busy machine the wall time grows, the CPU time hardly)\n")
print(f"bottom/top gradient-norm ratio at initialisation (L = {deepest}), then after {train_steps} training steps "
      f"(L = {train_depth}) and the final training loss:")
for variant in flow.VARIANTS:
    run = runs[variant]
    print(f"  {variant.name:>34}: {ratios[variant, deepest]:>7.3g} {flow.bottom_top_ratio(run.norms_after):>9.3g} "
          f"{run.final_loss:>7.3f}")
print("\nshare of Var(Y) removed against rho**2 (slope, intercept, R**2 of the fit):")
for name, fit in {**rho_fits, "masked-token model": masked_fit}.items():
    print(f"  {name:>20}: slope {fit.slope:.3f}, intercept {fit.intercept:+.3f}, R**2 {fit.r_squared:.4f}")
print(f"\nnonlinear case Y = X**2 + noise (sample rho {nonlinear.sample_rho:+.3f}), share removed:")
for row in nonlinear.rows:
    print(f"  {row.predictor:>22}: {1 - row.residual:.3f}")
