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
# # Chapter 5 — Small choices, measured consequences
#
# You have built cross-attention, masked it, split it into heads and watched it learn. This chapter is
# about three decisions that sit around it. Each one is easy to get wrong without noticing, because the
# model still trains and the loss still falls:
#
# 1. **Where does position go?** A dot product ignores order. In cross-attention, position can ride on
#    the decoder's queries, on the encoder's keys, on both, or on the query–key pair as a relative bias.
#    Which of these let a model tell two copies of the same source word apart?
# 2. **Leakage.** The encoder usually reads its whole input in both directions. When is that an unfair
#    look into the future, and when is it simply what translation needs?
# 3. **Tied K and V projections.** Several attention modules can share one key matrix and one value
#    matrix. What does that save, and what does it cost?
#
# Every part ends in an experiment trained over several seeds, with a table of means and spreads. Where
# a rule of thumb turns out to be only partly true, the chapter says which part and shows the numbers.
#
# **By the end of this chapter you can**
#
# 1. add position vectors to the queries, the keys or both, and predict from the scores when two copies
#    of a token become indistinguishable;
# 2. build the bias matrix of a relative-position table, clipping included;
# 3. probe a model for leakage: measure how much one decoding step depends on source tokens it should not
#    have seen yet;
# 4. tie key and value projections across a model and count what that saves;
# 5. read a table measured over seeds and say where a design rule holds and where it does not.
#
# **How to work.** Run the cells from the top. Where you see `# YOUR CODE HERE`, replace the
# `raise NotImplementedError()` line with your code, then run the test cell below it. More (hidden)
# checks run when you grade yourself: `xattn grade 05_details.ipynb`. Plan on 75–90 minutes, a few of
# which are the experiments training on your CPU. With `XATTN_FAST=1` in the environment they shrink to
# seconds; their tables then show barely trained models and say nothing about the questions.
#
# **Conventions:** a tensor `(B, T, D)` holds B sequences of T positions of D numbers; Tt is the target
# length, Ts the source length, h the number of heads. A boolean mask is `True` where a query **may attend**.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.details import checks as grading
from xattn_edu.chapters.details import leakage, positions, reference, tying
from xattn_edu.chapters.details.figures import architecture_figure
from xattn_edu.chapters.details.model import wait_k_mask
from xattn_edu.chapters.details.training import Schedule, param_count, seeded, train
from xattn_edu.chapters.details.widget import make_leakage_widget, make_placement_widget
from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import attention_heatmap, heatmap_panels, line_chart
from xattn_edu.common.device import hardware_info
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.masks import causal_mask
from xattn_edu.nn.positional import RelativePositionBias, sinusoidal_table

warnings.filterwarnings("ignore")
torch.manual_seed(0)
torch.set_printoptions(precision=3, sci_mode=False)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): experiments shrink to seconds
elapsed = {}  # seconds each experiment took, for the closing note

# %% [markdown]
# ## 1. The picture
#
# Everything in this chapter happens around one cross-attention. The encoder turns the source into a
# memory; each memory vector is projected into a key (with $W_K$) and a value (with $W_V$). The decoder's
# state at step $t$ is projected into a query (with $W_Q$). The numbered marks show where each detail acts.

# %%
architecture_figure()
plt.show()

# %% [markdown]
# ## 2. Where does position go?
#
# ### Copies look the same to a dot product
#
# Chapter 2 measured what happens when keys are identical: every query gives them identical scores, so
# they get identical weights. In a sentence this happens whenever a word repeats. In "the cat saw the
# dog" both "the"s have the same embedding; unless something tells the two positions apart, they produce
# the same key, and no query can point at one rather than the other. The next cell checks the first
# link of that chain: a repeated source vector gives a repeated key.

# %%
generator = torch.Generator().manual_seed(1)
memory = torch.randn(1, 4, 6, generator=generator, dtype=torch.float64)  # (B, Ts, D): four source vectors
memory[:, 3] = memory[:, 0]  # position 3 repeats the token at position 0
w_query, w_key = (torch.randn(6, 4, generator=generator, dtype=torch.float64) for _ in range(2))  # (D, Dk)
keys = memory @ w_key  # (B, Ts, Dk)
print("key of position 0:", keys[0, 0])
print("key of position 3:", keys[0, 3])
print("identical:", torch.equal(keys[0, 0], keys[0, 3]))

# %% [markdown]
# To study *only* the cross-attention, the models of this part carry no position anywhere else: the
# encoder's self-attention and the decoder's self-attention see none. (A standard Transformer adds
# position vectors to the token embeddings on both sides, which opens every door at once; we come back
# to that.) Absolute position can then enter in three ways. With $h_t$ the decoder state at step $t$,
# $m_j$ the memory vector at source position $j$ and $p_i$ row $i$ of a table of position vectors:
#
# $$ q_t = (h_t + [p_t])\, W_Q, \qquad k_j = (m_j + [p_j])\, W_K, \qquad
#    s_{tj} = \frac{q_t \cdot k_j}{\sqrt{d_k}}, $$
#
# where a bracket is present or not depending on the placement: `"queries"` adds $p_t$ only, `"keys"`
# adds $p_j$ only, `"both"` adds both, `"none"` neither. Note that the position vectors go into the
# *input* of each projection, as the package's `MultiHeadAttention(query_pos=..., key_pos=...)` does.
#
# ### Exercise 1 — `positioned_scores` (3 points)
#
# Write `positioned_scores(target, source, w_query, w_key, table, placement)`:
#
# * `target` is `(B, Tt, D)`, `source` is `(B, Ts, D)`, `w_query` and `w_key` are `(D, Dk)`;
# * `table` is `(max_len, D)`: row `i` is the position vector of position `i`. Both sides count their
#   positions from 0, so the target uses rows `0 .. Tt-1` and the source rows `0 .. Ts-1`;
# * return the scaled scores `(B, Tt, Ts)` of the formula above;
# * raise `ValueError` for a placement other than `"none"`, `"queries"`, `"keys"` and `"both"`;
# * use torch operations only and do not change the inputs in place: the scores feed training, so the
#   tests also check their gradients.

# %% nbgrader={"grade": false, "grade_id": "positioned_scores_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def positioned_scores(target, source, w_query, w_key, table, placement):
    """Cross-attention scores with absolute position vectors added before the projections.

    Args:
        target: (B, Tt, D) decoder states
        source: (B, Ts, D) encoder memory
        w_query, w_key: (D, Dk)
        table: (max_len, D) position vectors, row i = position i
        placement: "none", "queries", "keys" or "both"

    Returns:
        (B, Tt, Ts) scores q_t · k_j / sqrt(Dk)

    Raises:
        ValueError: for any other placement
    """
    ### BEGIN SOLUTION
    if placement not in ("none", "queries", "keys", "both"):
        raise ValueError(f"unknown placement {placement!r}")
    on_queries, on_keys = placement in ("queries", "both"), placement in ("keys", "both")
    query_input = target + table[: target.shape[1]] if on_queries else target
    key_input = source + table[: source.shape[1]] if on_keys else source
    scores = torch.einsum("btk,bsk->bts", query_input @ w_query, key_input @ w_key)
    return scores / math.sqrt(w_key.shape[1])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "positioned_scores_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Positions on the queries only, then on the keys only (Tt != Ts, and a source that repeats a vector):
# the scores must match the formula, and so must their gradients with respect to all four inputs.
grading.check("positioned_scores_tests", positioned_scores)
### BEGIN HIDDEN TESTS
grading.record("positioned_scores_tests", positioned_scores)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "positioned_both_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Positions on both sides, on neither, and a placement that does not exist (ValueError).
grading.check("positioned_both_tests", positioned_scores)
### BEGIN HIDDEN TESTS
grading.record("positioned_both_tests", positioned_scores)
### END HIDDEN TESTS

# %% [markdown]
# Now test the claim with your function. The memory from above repeats position 0 at position 3; three
# decoder steps score it under each placement, and the cell prints how differently the two copies are
# scored. (Until your function is written, the cell uses the package's reference.)

# %%
scores_of = prefer_mine(positioned_scores, reference.positioned_scores)
decoder_states = torch.randn(1, 3, 6, generator=generator, dtype=torch.float64)  # (B, Tt, D): three steps
table = sinusoidal_table(16, 6).double()  # (max_len, D)
for placement in ("none", "queries", "keys", "both"):
    scores = scores_of(decoder_states, memory, w_query, w_key, table, placement)  # (B, Tt, Ts)
    gap = (scores[0, :, 0] - scores[0, :, 3]).abs().max()
    print(f"{placement:>8}: largest |score of copy 0 - score of copy 3| over the three steps = {gap:.3g}")

# %% [markdown]
# With `"none"` and `"queries"` the two columns are equal to the last bit. Positions on the queries make
# every step ask a *different* question, but each question still meets the two copies through the same
# key, so they can only be scored alike. Positions on the keys make the keys differ, and then a query
# can prefer one copy.
#
# ### Relative positions
#
# Absolute positions tell each side where it is. A relative scheme tells the *pair* how far apart it
# is: head $h$ adds a learned number $b_h(j - t)$ to the score of query $t$ and key $j$. Distances
# beyond $\pm M$ share the edge entry, so a table of $2M + 1$ rows per head covers sequences of any
# length (Shaw et al., 2018; T5 uses the same idea with distances grouped into log-spaced buckets). Two
# copies of a token sit at different distances from any step, so they get different biases.
#
# Rotary embeddings (RoFormer, Su et al., 2021) reach a similar result another way: each query is
# turned by an angle proportional to its position and each key by its own, so that their dot product
# depends on the positions only through $j - t$. The package has both (`RelativePositionBias`,
# `RotaryEmbedding` in `xattn_edu.nn.positional`), and the experiment below trains both.
#
# ### Exercise 2 — `relative_position_bias` (3 points)
#
# Write `relative_position_bias(table, query_positions, key_positions)`:
#
# * `table` is `(2M + 1, h)`: row `d + M` holds the bias of distance `d` for each head, so row 0 is
#   distance `-M` and the middle row distance 0;
# * `query_positions` `(Tq,)` and `key_positions` `(Tk,)` are integer tensors (they need not start at 0:
#   while decoding with a cache, the new query sits at the current step);
# * the distance of query `i` and key `j` is `key_positions[j] - query_positions[i]`, clipped to
#   `[-M, M]` (`torch.clamp`);
# * return the bias `(h, Tq, Tk)`, heads first, ready to add to each head's scores. Use tensor indexing,
#   so the table receives gradients (the tests check them).

# %% nbgrader={"grade": false, "grade_id": "relative_bias_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def relative_position_bias(table, query_positions, key_positions):
    """Bias of every query-key pair, read from a table by their clipped distance.

    Args:
        table: (2M + 1, h) learned biases, row d + M = distance d
        query_positions: (Tq,) integer positions
        key_positions: (Tk,) integer positions

    Returns:
        (h, Tq, Tk) bias[h, i, j] = table[clip(key_positions[j] - query_positions[i], -M, M) + M, h]
    """
    ### BEGIN SOLUTION
    reach = table.shape[0] // 2
    distance = key_positions.view(1, -1) - query_positions.view(-1, 1)  # (Tq, Tk)
    rows = torch.clamp(distance, -reach, reach) + reach
    return table[rows].permute(2, 0, 1)  # (Tq, Tk, h) -> (h, Tq, Tk)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "relative_bias_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Distances that fit in the table. The first table is table[d + M, h] = d + 10 h, so each bias you return
# can be read as "distance + 10 x head". Sign, offset, shape (h, Tq, Tk) and the table's gradient are checked.
grading.check("relative_bias_tests", relative_position_bias)
### BEGIN HIDDEN TESTS
grading.record("relative_bias_tests", relative_position_bias)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "relative_clip_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Distances beyond ±M (they use the edge rows), and query positions that do not start at 0.
grading.check("relative_clip_tests", relative_position_bias)
### BEGIN HIDDEN TESTS
grading.record("relative_clip_tests", relative_position_bias)
### END HIDDEN TESTS

# %% [markdown]
# Your function and the package's module should agree when they read the same table. The cell also draws
# the bias of a table that holds +2 at distance 0 and 0 elsewhere: a head with this table prefers, at
# each step, the source position with the same index, whatever the tokens are.

# %%
bias_of = prefer_mine(relative_position_bias, reference.relative_position_bias)
module = RelativePositionBias(n_heads=2, max_distance=3)
with torch.no_grad():
    module.bias.weight.copy_(torch.randn(7, 2, generator=generator))
steps, sources = torch.arange(5), torch.arange(7)
print("equal to the package's RelativePositionBias:",
      torch.allclose(bias_of(module.bias.weight.detach(), steps, sources), module(steps, sources)[0]))
peaked = torch.zeros(7, 1)
peaked[3] = 2.0  # row M = 3 is distance 0
attention_heatmap(bias_of(peaked, steps, sources)[0], [f"t={t}" for t in steps.tolist()],
                  [f"j={j}" for j in sources.tolist()], limits=None, annotate=True, label="bias",
                  xlabel="key: source position j", ylabel="query: target step t",
                  title="+2 at distance 0: the bias lights the diagonal")
plt.show()

# %% [markdown]
# ### Check the shapes
#
# The experiment's model (`xattn_edu.chapters.details.model.DetailsModel`) is built from the package's
# encoder and decoder layers with a switch for the placement. Here is one with a relative bias, on the
# example source `ABCADBA` (three A's, two B's) that the figures below use.

# %%
setup1 = positions.PositionsSetup.for_mode(FAST)
example = positions.symbol_batch(positions.PROBE)
model = setup1.build("relative")
print("source ids        ", tuple(example.src.shape), "(B, Ts)")
print("decoder input ids ", tuple(example.tgt_in.shape), "(B, Tt): BOS, then the target shifted right")
print("logits            ", tuple(model(example.src, example.tgt_in).shape), "(B, Tt, V)")
print("cross-attention   ", [tuple(w.shape) for w in positions.cross_weights(model, example)], "(B, h, Tt, Ts) per layer")
relative = model.decoder_layers[0].cross_attn.relative  # a RelativePositionBias inside the cross-attention
print("relative table    ", tuple(relative.bias.weight.shape), "(2M + 1, h), M = the longest distance")

# %% [markdown]
# ### Watch it learn
#
# The task of this part is **copying**: the source is 5–10 tokens drawn from just 6 symbols, so nearly
# every source repeats some of them, and the target is the source itself. Here a model with a relative
# bias learns it. The panels show the cross-attention of one head on `ABCADBA` at a few moments of
# training: rows are decoding steps, columns source positions.

# %%
snapshot_steps = (0, 5, 10, 15) if FAST else (0, 20, 60, 250)
learner = seeded(lambda: setup1.build("relative"), 0)
snapshots = {0: positions.cross_weights(learner, example)[-1][0]}  # (h, Tt, Ts) per step


def take_snapshot(step):
    if step in snapshot_steps:
        snapshots[step] = positions.cross_weights(learner, example)[-1][0]


curve = train(learner, setup1.batches, Schedule(steps=snapshot_steps[-1]), seed=0, after_step=take_snapshot)
head = int(positions.aligned_per_head(learner, example).argmax())
source_labels = [f"{token}{j}" for j, token in enumerate(positions.PROBE)]
heatmap_panels([snapshots[s][head] for s in snapshot_steps], [f"step {t}" for t in range(len(positions.PROBE))],
               source_labels, titles=[f"after {s} updates" for s in snapshot_steps],
               suptitle=f"relative bias, head {head}: the diagonal appears as the loss falls "
                        f"({curve[0]:.2f} → {curve[-1]:.2f})", ncols=4)
plt.show()

# %% [markdown]
# ### Measure it: six placements, several seeds
#
# Now the real comparison. The same model is trained with each placement, once per seed, and measured on
# held-out sources with teacher forcing:
#
# * **accuracy** on every target token, then separately on tokens that occur **more than once** in their
#   source and on tokens that occur **once**;
# * **weight on the right position**: in the last cross-attention, the mean weight the most aligned head
#   puts on source position $t$ at step $t$;
# * **copy gap**: $|w_{ta} - w_{tb}|$ for every step $t$, head, and pair of positions $a, b$ holding the
#   same token; its mean, and the largest value seen in any run.
#
# The full run trains 18 small models; it takes a couple of minutes on a laptop CPU.

# %%
started = time.perf_counter()
placement_results = positions.measure_placements(setup1)
elapsed["part 1"] = time.perf_counter() - started
print(f"{len(setup1.seeds)} seeds, {setup1.schedule.steps} updates of {setup1.schedule.batch} sources per run, "
      f"{setup1.validation} held-out sources; mean ± standard deviation over the seeds\n")
print(positions.placement_table(placement_results))
print()
print("\n".join(positions.placement_findings(placement_results)))

# %% [markdown]
# Read the table row by row (the full run; the fast preview is too short to show it).
#
# * **none and queries**: the copy gap is exactly zero in every run, the measurement behind the claim
#   that queries-only cannot tell copies apart. But look at the accuracy split: these models do *worse*
#   on tokens that occur once than on repeated ones. Without position on the source side, the source is a
#   bag of tokens; the model can only guess which token comes next, and a guess is more often right when
#   the token is frequent. So the failure is not limited to copies: queries-only loses the order of the
#   whole source. Copies are just where it becomes visible in the attention map.
# * **keys**: close to the best, although the queries know nothing about their step. The decoder's causal
#   self-attention lets it count how far it has come (a query that spreads its attention over the tokens
#   written so far sees the BOS token's share shrink step by step); Haviv et al. (2022) found the same in
#   language models trained without any position encoding.
# * **both, relative, rotary**: the task is solved; relative and rotary without any absolute positions.
#
# So the rule "position must reach the keys, or the pair through a relative bias" holds, with two
# qualifications: without it, *every* source token is lost, not only the repeated ones; and in a standard
# Transformer, which adds positions to the encoder's input, the keys already carry position, so the
# choice mostly matters for models that deliberately keep position out of the encoder (or for relative
# schemes that replace absolute positions altogether).
#
# ### See it
#
# The maps of each placement's first-seed model on `ABCADBA`, in its most aligned head. Look at the
# columns of the three A's in the `none` and `queries` panels: in every row they are the same colour.

# %%
best_heads = [int(positions.aligned_per_head(result.model, example).argmax()) for result in placement_results]
maps = [positions.cross_weights(result.model, example)[-1][0, head]
        for result, head in zip(placement_results, best_heads, strict=True)]
titles = [f"{result.placement} (head {head})" for result, head in zip(placement_results, best_heads, strict=True)]
heatmap_panels(maps, [f"step {t}" for t in range(len(positions.PROBE))], source_labels, titles=titles,
               suptitle="cross-attention on a source with three A's and two B's")
plt.show()

# %% [markdown]
# Switch between the placements yourself. The table shows both heads of the last cross-attention, what
# the model writes at each step, and the largest weight difference between two copies of a token.

# %%
make_placement_widget({result.placement: result.model for result in placement_results})

# %% [markdown]
# ## 3. Leakage from a bidirectional encoder
#
# ### When is looking ahead cheating?
#
# An encoder usually attends in both directions, so its output at position 2 carries traces of position
# 3. The worry: a decoder writing its first words attends to that output and gets a preview of what comes
# later in the source.
#
# Whether that preview is unfair depends on what exists at inference. In ordinary translation the whole
# source sentence is given before the first target word is written; reading its end to write its
# beginning is the job (German verbs at the end of a clause, for one). The preview is unfair when, at
# inference, **part of the source has not arrived yet**: simultaneous translation of a speaker, live
# captioning, any model that must write step $t$ after reading only a prefix of its input. A common
# policy is **wait-k**: write step $t$ once $t + k$ source tokens have been read.
#
# The experiment makes such a task. The source is a chain of tokens in which each token has one likely
# successor (probability 0.6) and seven unlikely ones. Decoder step $t$ must write $x_{t+1}$, the *next*
# source token, after reading $x_0 \dots x_t$ (wait-k with $k = 1$). Honestly, the best anyone can do is
# guess the likely successor of $x_t$: right 60 % of the time. During training, though, the whole source
# is in memory, and $x_{t+1}$ is right there.
#
# Four wirings are trained, crossing the encoder (bidirectional or causal) with the cross-attention (the
# whole source, or the wait-k mask). The masks, `True` (yellow) = may attend:

# %%
length = 6
mask_rows = [[f"x{j}" for j in range(length)], [f"step {t}" for t in range(length - 1)],
             [f"step {t}" for t in range(length - 1)]]
heatmap_panels([causal_mask(length)[0, 0].float(), wait_k_mask(length - 1, length, 1)[0, 0].float(),
                wait_k_mask(length - 1, length, 2)[0, 0].float()],
               mask_rows, [f"x{j}" for j in range(length)],
               titles=["causal encoder", "wait-1 cross-attention", "wait-2 cross-attention"],
               label="may attend (1) or not (0)", suptitle="a causal encoder and two wait-k masks")
plt.show()

# %% [markdown]
# The wait-1 mask alone does not close every path. Step 1 may read memory position 1, and a bidirectional
# encoder has already mixed $x_2$, the answer, into that position. That is exactly the brief's scenario.
# To see which paths are open, measure them.
#
# ### Exercise 3 — the leakage probe `future_influence` (3 points)
#
# The probe asks: if a source vector changed a little, how much would step $t$'s output change? That is
# the gradient of step $t$'s score with respect to each source vector.
#
# Write `future_influence(step_score, source, step, visible)`:
#
# * `step_score` is a function from source vectors `(B, Ts, D)` to scores `(B, Tt)`, one per example and
#   decoding step (in the experiment, the log-probability of the right token). Example `b`'s scores
#   depend on example `b`'s source only;
# * make a fresh copy of `source` that requires gradients, compute `step_score` on it, and take the
#   gradient of the scores of step `step` with respect to it (`torch.autograd.grad`; because the examples
#   are independent, the gradient of the *sum* over the batch gives every example's own gradient);
# * `influence[b, j]` is the Euclidean norm of that gradient over the `D` features of position `j`:
#   shape `(B, Ts)`;
# * `future_share[b]` is the part of row `b`'s total influence that comes from positions
#   `visible, visible + 1, ...`, those step `step` has not honestly read; it is 0 when the total is 0;
# * return the pair `(influence, future_share)`.

# %% nbgrader={"grade": false, "grade_id": "influence_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def future_influence(step_score, source, step, visible):
    """How much decoding step `step` depends on each source position, and the share from the future.

    Args:
        step_score: function, source vectors (B, Ts, D) -> scores (B, Tt)
        source: (B, Ts, D) source vectors
        step: the decoding step t to probe
        visible: positions 0 .. visible-1 have been read at step t

    Returns:
        (influence, future_share): influence (B, Ts), future_share (B,)
    """
    ### BEGIN SOLUTION
    probe = source.detach().clone().requires_grad_(True)
    scores = step_score(probe)  # (B, Tt)
    gradient = torch.autograd.grad(scores[:, step].sum(), probe)[0]  # (B, Ts, D)
    influence = torch.linalg.vector_norm(gradient, dim=-1)  # (B, Ts)
    total = influence.sum(dim=-1)
    future = influence[:, visible:].sum(dim=-1)
    share = torch.zeros_like(total)
    some = total > 0
    share[some] = future[some] / total[some]
    return influence, share
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "influence_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# The influence (B, Ts) of each source position on one step. The first cases use a step_score whose
# gradient you can work out by hand: scores[b, t] = sum_j W[t, j] * sum_d tanh(source[b, j, d]);
# the last one a small random encoder-decoder.
grading.check("influence_tests", future_influence)
### BEGIN HIDDEN TESTS
grading.record("influence_tests", future_influence)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "future_share_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The future's share: positions visible .. Ts-1, divided by the total; 0 (not nan) when no position
# influences the step at all.
grading.check("future_share_tests", future_influence)
### BEGIN HIDDEN TESTS
grading.record("future_share_tests", future_influence)
### END HIDDEN TESTS

# %% [markdown]
# Try the probe on two *untrained* models with the wait-1 mask, one with each encoder. Leakage is a
# property of the wiring before it is a property of what the model learns: the paths exist at
# initialisation, and training decides how much to use them.

# %%
probe = prefer_mine(future_influence, reference.future_influence)
setup2 = leakage.LeakageSetup.for_mode(FAST)
sample = setup2.chain.shifted(np.random.default_rng(0), 4, setup2.length)
for variant in leakage.VARIANTS[2:]:
    untrained = seeded(lambda: setup2.build(variant), 0)  # noqa: B023 - built at once
    influence, share = probe(leakage.gold_log_probs(untrained, sample), untrained.embed_source(sample.src).detach(),
                             2, 3)
    print(f"{variant.label}\n  influence of x0..x{setup2.length - 1} on step 2 (first example): "
          f"{np.round(influence[0].detach().numpy(), 3)}\n  future share (x3 onwards), mean of 4 examples: "
          f"{share.mean():.3f}")

# %% [markdown]
# ### Measure it: the leak and what it costs
#
# Each wiring is trained on the streaming task, once per seed, and measured on held-out sequences:
#
# * **train-time accuracy**: teacher forcing with the whole source, what a training log would show;
# * **streaming accuracy**: step $t$ computed from the source prefix $x_0 \dots x_t$ alone, as it would
#   run live (the encoder re-reads the prefix at every step);
# * **gap**: the first minus the second;
# * **future share of gradient**: your probe, averaged over the steps, with `visible = t + 1`;
# * **output change**: the total-variation distance between step $t$'s predicted distribution before and
#   after the future tokens $x_{t+1} \dots$ are replaced by random ones (0 = unaffected, 1 = completely changed).

# %%
started = time.perf_counter()
leak_results = leakage.measure_leakage(setup2, probe)
elapsed["part 2"] = time.perf_counter() - started
print(f"{len(setup2.seeds)} seeds, {setup2.schedule.steps} updates per run, sources of {setup2.length} tokens, "
      f"wait-{setup2.k}; accuracy on {setup2.validation} held-out sequences, leak on {setup2.probed} of them\n")
print(leakage.leakage_table(leak_results))
print()
print("\n".join(leakage.leakage_findings(leak_results, setup2)))

# %% [markdown]
# In the full run, the three wirings with a path from the future learn to read the answer from it:
# nearly perfect at training time, then far *below* chance when the future is taken away (they copy the
# token in front of them, which the chain almost never repeats). The causal encoder with the wait-k mask
# has no such path (both leak measures are exactly zero) and scores at the honest ceiling, with no gap.
#
# Two rows deserve a second look. A **causal encoder alone** does not help: with full cross-attention,
# step $t$ simply attends to position $t + 1$ and reads the answer there, no encoder needed. A **wait-k
# mask alone** does not help either: the bidirectional encoder smuggles the answer into the positions the
# mask allows. Only the two together seal the future.
#
# ### See it: step by step
#
# Move the slider to pick a decoding step. Each row shows, for one wiring's first-seed model, the share
# of that step's gradient coming from each source position; the positions a streaming system has not read
# yet are underlined in red, and the last column is their total share.

# %%
make_leakage_widget({result.variant.label: result.profile for result in leak_results}, setup2.k)

# %% [markdown]
# ### Contrast: ordinary translation
#
# Now a task where the whole source legitimately exists at inference: **reverse the source**. The first
# output token *is* the last source token, so "the future" (positions after $t$) is where the answer
# lives. Two wirings: the usual bidirectional encoder with full cross-attention, and the sealed one
# (causal encoder, wait-1). Both are evaluated the way translation runs, with the whole source, once with
# teacher forcing and once decoding greedily from their own outputs.

# %%
started = time.perf_counter()
contrast_results = leakage.measure_contrast(setup2, probe)
elapsed["part 2, contrast"] = time.perf_counter() - started
print(leakage.contrast_table(contrast_results))

# %% [markdown]
# Here the bidirectional model's large "future share" is not a leak; it is the model doing its job, and it
# scores the same at inference as in training. Sealing the future, the fix for streaming, breaks
# translation: the sealed model cannot see the tokens it must write first.
#
# So the warning applies **exactly when inference will withhold part of the source from step $t$ that
# training gave it**: streaming and simultaneous translation, prefix-to-prefix tasks, and denoising or
# language-model setups whose target is a shifted copy of the source. Then the fix must cut every path:
# a causal encoder *and* a cross-attention mask that matches the inference policy (measure it with the
# probe). In ordinary translation, a bidirectional encoder and full cross-attention are correct.
#
# ## 4. Tying K and V projections
#
# ### Which matrices?
#
# Every attention module has four projections: $W_Q$, $W_K$, $W_V$ and the output $W_O$, each a `D x D`
# matrix with a bias. The translation model of this part (the package's `Seq2Seq`, 2 encoder and 2
# decoder layers) has six attention modules:

# %%
setup3 = tying.TyingSetup.for_mode(FAST)
model = setup3.build()
roles = {"encoder_layers": "encoder self-attention", "self_attn": "decoder self-attention (causal)",
         "cross_attn": "cross-attention: keys and values from the memory"}
for name, module in model.named_modules():
    if isinstance(module, MultiHeadAttention):
        role = roles["encoder_layers" if name.startswith("encoder") else name.rsplit(".", 1)[-1]]
        print(f"{name:<26} {role:<50} W_K + bias: {param_count(module.k_proj)} numbers, W_V + bias: "
              f"{param_count(module.v_proj)}")

# %% [markdown]
# Two ways to tie, and what each shares exactly:
#
# * **across all attention** (`scope="all"`): all six modules use one $W_K$ (with its bias) and one $W_V$
#   (with its bias). The encoder's self-attention, the decoder's self-attention and both cross-attentions
#   project keys with the same matrix, and values with the same other matrix.
# * **within cross-attention** (`scope="cross"`): only the two cross-attention modules share one $W_K$
#   and one $W_V$; each self-attention keeps its own.
#
# In both, $W_Q$ and $W_O$ stay separate, and $W_K$ stays a different matrix from $W_V$. A shared matrix
# is one parameter; during training it receives the sum of the gradients of every module that uses it.
#
# ### Exercise 4 — `tie_kv` (3 points)
#
# Write `tie_kv(model, scope)`:
#
# * find the `MultiHeadAttention` modules of `model`, in `model.named_modules()` order; with
#   `scope="cross"` keep only those whose name ends in `cross_attn`; any other scope than `"all"` and
#   `"cross"` raises `ValueError`;
# * make every kept module use the `k_proj` and `v_proj` of the **first** kept module: assign the
#   `nn.Linear` modules themselves (or call `module.share_kv_from(first)`), so weights and biases are shared;
# * return how many trainable numbers the model lost. Count `sum(p.numel() for p in model.parameters())`
#   before and after: `parameters()` lists a shared parameter once.

# %% nbgrader={"grade": false, "grade_id": "tie_kv_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def tie_kv(model, scope):
    """Share one key and one value projection among a model's attention modules.

    Args:
        model: a torch module holding MultiHeadAttention modules (changed in place)
        scope: "all" (every attention module) or "cross" (modules named ...cross_attn)

    Returns:
        the number of trainable numbers the model lost

    Raises:
        ValueError: for any other scope
    """
    ### BEGIN SOLUTION
    if scope not in ("all", "cross"):
        raise ValueError(f"scope must be 'all' or 'cross', got {scope!r}")
    tied = [module for name, module in model.named_modules()
            if isinstance(module, MultiHeadAttention) and (scope == "all" or name.endswith("cross_attn"))]
    before = sum(p.numel() for p in model.parameters())
    for module in tied[1:]:
        module.share_kv_from(tied[0])
    return before - sum(p.numel() for p in model.parameters())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "tie_all_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# scope="all" on Seq2Seq models of 1 and 2 layers: which modules share what, the saving you return, and
# the tied model's logits and key-weight gradients against the reference tying.
grading.check("tie_all_tests", tie_kv)
### BEGIN HIDDEN TESTS
grading.record("tie_all_tests", tie_kv)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "tie_cross_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# scope="cross": only the cross-attention modules share; an unknown scope raises ValueError.
grading.check("tie_cross_tests", tie_kv)
### BEGIN HIDDEN TESTS
grading.record("tie_cross_tests", tie_kv)
### END HIDDEN TESTS

# %% [markdown]
# What each scope saves on this part's model:

# %%
tie = prefer_mine(tie_kv, reference.tie_kv)
for scope in ("cross", "all"):
    model = setup3.build()
    before = param_count(model)
    saved = tie(model, scope)
    print(f"{scope:>5}: {before} -> {param_count(model)} parameters, {saved} saved ({saved / before:.1%})")

# %% [markdown]
# ### Measure it: rare tokens that must be copied
#
# The claim to test: tying gives encoder and decoder one key/value space, which should make it easier to
# copy names, numbers and rare words, at some cost in expressiveness. The task translates common words
# one for one (a fixed dictionary) and copies rare tokens unchanged; each sentence holds one or two rare
# tokens out of 200, drawn with Zipf-like frequencies. The training set is fixed, so most rare tokens are
# seen only a handful of times. Source and target share one embedding table (a joint vocabulary, as many
# translation systems use; here a name is the same token, and the same vector, on both sides), which
# gives the copying argument its best chance. Measured per seed: validation accuracy, accuracy on rare
# tokens seen 1–5 times in training, accuracy on rare-token ids seen more often, and the training loss.

# %%
started = time.perf_counter()
tying_results = tying.measure_tying(setup3, tie)
elapsed["part 3"] = time.perf_counter() - started
print(f"{len(setup3.seeds)} seeds, {setup3.schedule.steps} updates per run, {setup3.train_size} training and "
      f"{setup3.validation} validation sentences\n")
print(tying.tying_table(tying_results, setup3.rare_at_most))
print()
print("\n".join(tying.tying_findings(tying_results)))

# %%
every = setup3.schedule.record_every
line_chart([every * (i + 1) for i in range(tying_results[0].curves.shape[1])],
           {tying.SCOPE_NAMES[r.scope]: r.curves.mean(0) for r in tying_results},
           xlabel="updates", ylabel="training loss (mean over seeds)", yscale="log",
           title="training curves: tied and untied K/V projections")
plt.show()

# %% [markdown]
# Each finding compares a tied model with the untied one and says whether the difference of the means is
# larger than the seeds' spread. In the full run, tying only the two cross-attentions makes no measurable
# difference in any column. Tying all six modules removes the most parameters and leaves validation
# accuracy within the spread, but it *lowers* accuracy on rare tokens by more than the spread. The promised
# upside, easier copying, did not appear; a cost appeared exactly where the upside was promised.
#
# A likely reason: with one embedding table, a name enters the encoder and leaves the decoder as the same
# vector, and copying it takes one cross-attention that finds the name's position and carries its value up
# to the output. Tying across all modules makes that value projection serve the encoder's and the
# decoder's self-attention as well, which want values that mix in context, while copying wants a value
# that keeps the token's identity. Common words, seen thousands of times, can train their way around the
# compromise; tokens seen a handful of times cannot. This is the loss of expressiveness the brief warns
# about, and on this task it outweighs the shared geometry.
#
# ## Summary
#
# * **Position.** Two copies of a token get bit-for-bit identical keys, scores and weights unless position
#   reaches the key side. Queries-only and no positions leave the copy gap at exactly zero, and in fact
#   lose the order of the whole source; keys-only, both, a relative bias and rotary solve the copy task.
#   Keys-only comes close without positions in the queries, because a causal decoder can count its steps.
# * **Leakage** is real only when inference withholds part of the source that training exposed. Then a
#   bidirectional encoder leaks through every position the cross-attention may read, and full
#   cross-attention leaks directly: either path alone lets a model score almost perfectly in training
#   and below chance when streamed. A causal encoder *and* a matching wait-k mask close it, which the probe shows as
#   exactly zero. In ordinary translation, reading the whole source is correct.
# * **Tying K/V** removes a known number of parameters (one pair of `D x D` matrices and biases per tied
#   module). On a task that must copy rare tokens it brought no copying advantage: tying within
#   cross-attention changed nothing measurable, and tying across all attention cost rare-token accuracy.
#
# **Check yourself**
#
# 1. A model adds positions to its decoder inputs only. Two source words are identical. At step 5, can the
#    model give them different weights? What if its encoder had positions?
# 2. Why does `relative_position_bias` need `+ M`, and what would `table[-1]` silently return without it?
# 3. A speech model is trained with a bidirectional encoder and full cross-attention, then run live on
#    audio as it arrives. Which rows of the leakage table describe it? What would you change?
# 4. Your colleague made the encoder causal to stop a leak. Which measurement tells you whether that was
#    enough?
# 5. With 3 encoder and 3 decoder layers and `D = 512`, how many numbers does tying K and V across all
#    attention modules save? (Each projection is a `D x D` matrix and a bias.)
#
# ## Closing note: the measured tables
#
# The three tables of this run, the seeds behind them and the machine they ran on.

# %%
print(f"hardware: {hardware_info()}")
print(f"fast mode: {FAST}; seconds per experiment: { {name: round(s, 1) for name, s in elapsed.items()} }\n")
print(f"Part 1, position placement (seeds {setup1.seeds}):\n{positions.placement_table(placement_results)}\n")
print(f"Part 2, leakage (seeds {setup2.seeds}):\n{leakage.leakage_table(leak_results)}\n")
print(f"Part 2, contrast (seeds {setup2.seeds}):\n{leakage.contrast_table(contrast_results)}\n")
print(f"Part 3, tied K/V (seeds {setup3.seeds}):\n{tying.tying_table(tying_results, setup3.rare_at_most)}")
