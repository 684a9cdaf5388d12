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
# # Chapter 7 — Applications: one lookup, many kinds of data
#
# Everything so far read sentences: a decoder asked questions of an encoded source sentence. The
# lookup itself never cared that its keys and values came from words. In this chapter you point it at
# other things and watch it work: image patches that a decoder reads while it writes a caption, a
# handful of learned vectors that summarise an input far too long for self-attention, and a prompt
# (a click or a box) that finds the object it points at. You finish with a map of where this one
# mechanism appears in systems you have probably used.
#
# **By the end of this chapter you can**
#
# 1. turn an image into a sequence of patch vectors with positions, the way Vision Transformers do;
# 2. train a small captioner that cross-attends to patches, and check *where* each word looked;
# 3. explain why M latent queries make attention over N inputs cost M·N instead of N², and measure it;
# 4. build the two-way prompt ↔ image attention at the heart of promptable segmentation, and see
#    what it does with a click that could mean two objects;
# 5. say who asks and what is read by cross-attention in translation, speech recognition,
#    text-to-image models, retrieval-augmented readers and multimodal language models.
#
# **How to work.** Run the cells from the top. Where you see `# YOUR CODE HERE`, replace the
# `raise NotImplementedError()` line with your code, then run the test cell below it. Hidden checks run
# when the notebook is graded (`xattn grade 07_applications.ipynb`). The chapter trains three small
# models on your CPU; a full run takes several minutes (each training cell prints its time). Plan on
# about 90 minutes.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import warnings

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from xattn_edu.chapters.applications import (
    atlas,
    captioner,
    digits,
    latent_cost,
    latents,
    promptable,
    prompting,
    reference,
)
from xattn_edu.chapters.applications import checks as grading
from xattn_edu.chapters.applications.budget import budget
from xattn_edu.chapters.applications.overlay import attention_overlay, image_panels, show_patches, show_sequence
from xattn_edu.chapters.applications.training import FitConfig
from xattn_edu.chapters.applications.widget import make_caption_widget, make_prompt_widget
from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import line_chart
from xattn_edu.common.device import hardware_info
from xattn_edu.nn.heads import MultiHeadAttention

warnings.filterwarnings("ignore")
torch.manual_seed(0)
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): every training shrinks to seconds
PLAN = budget(FAST)  # training steps and test sizes of this run
print("fast mode (short trainings, low scores)" if FAST else "full run", "|", hardware_info())

# %% [markdown]
# ## 1. The same lookup, other libraries
#
# Recall the library: a **query** is your question, the **keys** are the spines you scan, the
# **values** are the contents you carry away. Cross-attention lets the questions come from one
# place and the library from another. Nothing in the arithmetic says the library must hold words:
#
# * **a picture as a library.** Cut an image into small squares (patches) and shelve one vector per
#   patch. A decoder writing a caption asks, word by word, "which part of the picture do I need now?"
# * **a few readers for a huge library.** When the library holds tens of thousands of items, letting
#   every item ask every other item (self-attention) costs N² lookups. Instead, keep M learned
#   readers (latents) who each read the whole library once: M·N lookups.
# * **a visitor who points.** A click on an image becomes a query; it reads the patches around the
#   click, and the patches read the click back, to decide which of them belong to the object.
#
# The figure shows the three models of this chapter. In each, blue boxes ask and orange boxes are read.

# %%
atlas.draw_architectures()
plt.show()

# %% [markdown]
# ## 2. Pictures as sequences of patches
#
# Our pictures are numbers from 0 to 999, written with handwritten digits from scikit-learn's small
# digits collection (8 × 8 pixels each, 1,797 of them, shipped inside the library: nothing is
# downloaded). Each number is right-aligned in three slots of 12 × 12 pixels (hundreds, tens, units),
# and each digit sits at a random offset inside its slot. The first 1,300 digit images are used for
# training; test numbers are drawn with the other 497, images the model never saw.
#
# A Transformer reads sequences, so the picture becomes one: cut it into 4 × 4 **patches**, read them
# in reading order (left to right, then the next row), and flatten each patch into its 16 pixel
# values. The thin lines below are patch borders (numbered in reading order), the thick ones slot borders.

# %%
layout = digits.Layout()
examples = digits.make_numbers(4, split="train", seed=3)
show_patches(examples.images[0].numpy(), layout.patch, slot=layout.slot,
             title=f"{int(examples.numbers[0])}: \"{digits.caption_text(digits.number_words(int(examples.numbers[0])))}\"")
plt.show()
print("image", tuple(examples.images.shape), "-> patch grid", layout.grid, "=", layout.grid[0] * layout.grid[1],
      "patches of", layout.patch ** 2, "pixels")
print(f"digit images: {digits.TRAIN_IMAGES} for training, {len(digits.digit_pool()[1]) - digits.TRAIN_IMAGES} for testing")

# %% [markdown]
# A patch vector alone does not say *where* it came from: attention compares contents, and the same
# stroke in the hundreds slot and in the units slot would look identical. So each patch also gets its
# grid **position**, (row, column), from which the model makes a position vector (here a learned
# vector per patch index, as in ViT).
#
# ### Exercise 1 — `patchify` (3 points)
#
# Write `patchify(images, patch)`:
#
# * `images` is a float tensor of shape `(B, H, W)`; `patch` is the side `p` of a square patch;
# * return `(patches, positions)`: `patches` of shape `(B, N, P)` with `N = (H/p)·(W/p)` and `P = p·p`,
#   patch `n` being the square at grid row `n // (W/p)` and column `n % (W/p)`, its pixels listed row
#   by row; `positions` of shape `(N, 2)` holding `(row, column)` of each patch (integers);
# * raise `ValueError` when `H` or `W` is not a multiple of `patch`.
#
# Hints: a plain `images.reshape(B, N, P)` is wrong (try it on the numbered image in the test cell and
# look). Reshape to `(B, H/p, p, W/p, p)`, move the two grid axes in front of the two pixel axes with
# `permute`, then reshape. Use torch operations only, so gradients can flow back to the pixels.

# %% nbgrader={"grade": false, "grade_id": "patchify_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def patchify(images, patch):
    """Cut images into non-overlapping patches, in reading order.

    Args:
        images: (B, H, W) float tensor
        patch: p, the side of a square patch in pixels

    Returns:
        (patches, positions): patches (B, N, p*p); positions (N, 2) as (row, column)

    Raises:
        ValueError: if H or W is not a multiple of patch
    """
    ### BEGIN SOLUTION
    batch, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError(f"{height} x {width} pixels do not split into {patch} x {patch} patches")
    rows, cols = height // patch, width // patch
    grid = images.reshape(batch, rows, patch, cols, patch)  # (B, rows, p, cols, p)
    patches = grid.permute(0, 1, 3, 2, 4).reshape(batch, rows * cols, patch * patch)
    positions = torch.tensor([[r, c] for r in range(rows) for c in range(cols)])
    return patches, positions
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "patchify_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# A numbered 4 x 6 image cut into 2 x 2 patches, and random 8 x 8 images cut into 4 x 4 ones: the
# patches must be in reading order with their pixels row by row, and gradients must reach the images.
grading.check("patchify_tests", patchify)
### BEGIN HIDDEN TESTS
grading.record("patchify_tests", patchify)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "patchify_positions_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The positions are (row, column) pairs, and a 5 x 4 image cannot be cut into 2 x 2 patches: ValueError.
grading.check("patchify_positions_tests", patchify)
### BEGIN HIDDEN TESTS
grading.record("patchify_positions_tests", patchify)
### END HIDDEN TESTS

# %% [markdown]
# Check the shapes on a batch of number images, and look at the sequence the model will read: the
# 27 patches of the first image, in order. (Until your `patchify` works, the package's reference stands in.)

# %%
my_patchify = prefer_mine(patchify, reference.patchify)
patches, positions = my_patchify(examples.images, layout.patch)
print("patches", tuple(patches.shape), " positions", tuple(positions.shape), " first positions", positions[:4].tolist())
show_sequence(patches[0].numpy(), positions.numpy(), layout.patch,
              title="the same image as the decoder reads it: a sequence of 27 patches of 16 pixels")
plt.show()

# %% [markdown]
# ## 3. Captioning: a decoder that reads patches
#
# The captioner is the decoder of Chapters 3 and 6, unchanged: causal self-attention over the words
# written so far, **cross-attention to the memory**, a feed-forward layer. Only the memory is new:
# instead of encoded source words it holds one vector per patch. To make that vector, a single 3 × 3
# convolution first turns the picture into 8 feature maps (so a patch also sees the pixels just
# across its border); `patchify` cuts each map into patches; a linear map embeds each patch's numbers
# and a learned vector marks its position. No encoder layer mixes the patches, so every cross-attention
# weight points at one patch of the picture.
#
# The decoder writes the number in words, one word per step: `three hundred forty-two` is the four
# tokens `three`, `hundred`, `forty`, `two`, then an end token.
#
# **Watch it learn.** The next cell trains the captioner on freshly drawn numbers at every step
# (training digit images only) and plots the loss.

# %%
caption_model, caption_fit = captioner.train_captioner(captioner.CaptionerConfig(),
                                                       FitConfig(steps=PLAN.caption_steps, lr=3e-3))
window = max(1, PLAN.caption_steps // 40)
line_chart([window * (i + 1) for i in range(len(caption_fit.smoothed(window)))],
           {"training loss": caption_fit.smoothed(window)}, xlabel="training step", ylabel="cross-entropy per word",
           title="the captioner learns to read numbers")
plt.show()
print(f"{PLAN.caption_steps} steps in {caption_fit.seconds:.0f} s")

# %% [markdown]
# Now caption a test image drawn with unseen digit images, and paint each word's cross-attention
# (averaged over the heads of a layer) onto the picture, for both decoder layers. Bright patches are
# where the decoder looked while writing that word; colours use the course's fixed 0–1 scale.

# %%
test_numbers = digits.make_numbers(PLAN.caption_test, split="test", seed=1)
written = captioner.greedy_caption(caption_model, test_numbers.images[:1])
words = digits.decode_caption(written[0]) + ["<eos>"]
looks = [captioner.word_attention(caption_model, test_numbers.images[:1], written, layer=n)[0, :len(words)]
         for n in range(caption_model.config.n_layers)]  # per layer: (T, N)
panels = [attention_overlay(test_numbers.images[0].numpy(), rows[t].reshape(layout.grid).numpy(), layout.patch)
          for rows in looks for t in range(len(words))]
image_panels(panels, [f"layer {n + 1}: '{w}'" for n in range(len(looks)) for w in words], ncols=len(words),
             suptitle=f"true: {digits.caption_text(digits.number_words(int(test_numbers.numbers[0])))}; "
                      "where the decoder looked while writing each word")
plt.show()

# %% [markdown]
# Pick a test image, a word of the caption the model wrote and a decoder layer; the drop-downs redraw
# the overlay. Try a number with a teen ("eleven" to "nineteen"): which digits does that word look at?

# %%
make_caption_widget(caption_model, test_numbers)

# %% [markdown]
# ### Exercise 2 — from an attention peak to a digit (2 points)
#
# To score "did it look at the right digit?" on a thousand images you need the overlay as a number.
# Write `peak_to_digit(weights, grid_width, patch, slot_width)`:
#
# * `weights` has shape `(..., N)`: attention over the N patches of a grid `grid_width` patches wide,
#   numbered in reading order (as `patchify` numbers them);
# * return `(patch_index, digit)`, two integer tensors of shape `(...)`: `patch_index` is the patch
#   with the largest weight; `digit` is the slot (0 = leftmost) that contains the **centre** of that
#   patch, for slots `slot_width` pixels wide: `floor((column + 1/2) · patch / slot_width)`.

# %% nbgrader={"grade": false, "grade_id": "peak_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def peak_to_digit(weights, grid_width, patch, slot_width):
    """The peak patch of each attention row, and the digit slot holding that patch's centre.

    Args:
        weights: (..., N) attention over N patches
        grid_width: patches per grid row
        patch: patch side in pixels
        slot_width: width of a digit slot in pixels

    Returns:
        (patch_index, digit): integer tensors of shape (...)
    """
    ### BEGIN SOLUTION
    index = weights.argmax(dim=-1)
    centre = (index % grid_width) * patch + patch / 2  # pixels from the left edge
    return index, torch.floor(centre / slot_width).long()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "peak_patch_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# A hand-made pair of rows, then random rows over the 27 patches of a number image: the argmax per row.
grading.check("peak_patch_tests", peak_to_digit)
### BEGIN HIDDEN TESTS
grading.record("peak_patch_tests", peak_to_digit)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "peak_digit_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Peaks on chosen patches of the number image (9 patches across, 4-pixel patches, 12-pixel slots): their slots.
grading.check("peak_digit_tests", peak_to_digit)
### BEGIN HIDDEN TESTS
grading.record("peak_digit_tests", peak_to_digit)
### END HIDDEN TESTS

# %% [markdown]
# Use it on the figure above: for each word, the patch it looked at most and the digit slot of that patch.

# %%
my_peak = prefer_mine(peak_to_digit, reference.peak_to_digit)
peak, slot = my_peak(looks[0], layout.grid[1], layout.patch, layout.slot)  # layer 1
gold = digits.gold_slots(int(test_numbers.numbers[0])) + [()] * len(words)  # for the true caption's words
for word, p, s, g in zip(words, peak.tolist(), slot.tolist(), gold, strict=False):
    print(f"{word:>10}: peak on patch {p:>2} -> slot {s}   (the true word here is about slots {list(g) or '-'})")

# %% [markdown]
# ### Measure it
#
# Two questions, on every test image. **Does it read?** The share of test images whose greedy caption
# is exactly right, and the share of words right when the decoder is fed the true previous words.
# **Does it look where it reads?** For each word of the true caption, whether its attention peak (per
# decoder layer, averaged over heads) falls on a digit the word is about: the hundreds digit and
# "hundred" on the hundreds slot, a tens word on the tens slot, a teen on the tens *or* units slot, a
# units word on the units slot.

# %%
caption_scores = captioner.evaluate(caption_model, test_numbers)
print(f"test images: {caption_scores.images}")
print(f"exact caption (greedy)        : {caption_scores.exact_match:.1%}")
print(f"words right (teacher forcing) : {caption_scores.word_accuracy:.1%}")
print("attention peak on a digit the word names:")
print(f"{'kind of word':>16} " + " ".join(f"{f'layer {n + 1}':>8}" for n in range(len(caption_scores.peak_on_digit))))
for kind, rates in [*caption_scores.peak_by_kind.items(), ("all words", caption_scores.peak_on_digit)]:
    print(f"{kind:>16} " + " ".join(f"{rate:>8.1%}" for rate in rates))
for truth, guess in caption_scores.examples:
    print(f"  true: {truth:<30} written: {guess}")

# %% [markdown]
# Read the table row by row. In a full run, the words that name exactly one digit (the hundreds digit,
# a tens word, a teen) put their peak on that digit essentially every time, in both layers: the decoder
# learned *where* to look without ever being told, only by being asked to write the right word. The
# word "hundred" names no digit of its own; the rule counts it right on the hundreds slot, and its
# first-layer peak often lies elsewhere: the decoder can write "hundred" from what it already wrote
# (a hundreds digit is always followed by it) without reading the picture. Compare the two layers too:
# nothing forces them to look at the same place, and here the second layer's peaks match the digits
# more often than the first's. (Fast mode trains for seconds: its numbers are far lower.)
#
# Attention maps are evidence about where information was read, not proof of why a word was chosen:
# a word can be written correctly with its peak elsewhere, and the rates above do not depend on whether
# the word was right.
#
# ## 4. Long inputs: a few latents read everything
#
# Self-attention over N items forms an N × N matrix of weights: double the input, four times the
# work and the memory. The **Perceiver** (Jaegle et al., 2021) keeps a small set of M learned vectors,
# the *latents*, and lets them cross-attend to the input: queries from the M latents, keys and values
# from the N inputs, an M × N matrix. The latents then talk among themselves (M × M) as often as you
# like, and the input is never compared with itself.
#
# ### Exercise 3 — `latent_cross_attention` (3 points)
#
# Write `latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask=None)`, single-head:
#
# * `latents` `(M, D)` are shared by every example in the batch; `inputs` `(B, N, Din)`;
#   `w_q` `(D, Dk)`, `w_k` `(Din, Dk)`, `w_v` `(Din, Dv)`;
# * `q = latents @ w_q`, `k = inputs @ w_k`, `v = inputs @ w_v`;
#   `weights = softmax(q kᵀ / √Dk)` over the N inputs, shape `(B, M, N)`; `output = weights @ v`, `(B, M, Dv)`;
# * `mask`, if given, is `(B, N)` boolean, **True = a real input** (False = padding): padded inputs
#   must get weight exactly 0 (set their scores to `-inf` before the softmax);
# * return `(output, weights)`. `torch.softmax` is fine here; use torch operations throughout.

# %% nbgrader={"grade": false, "grade_id": "latent_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask=None):
    """M shared latent queries attend to N inputs.

    Args:
        latents: (M, D) learned queries, the same for every example
        inputs: (B, N, Din)
        w_q: (D, Dk); w_k: (Din, Dk); w_v: (Din, Dv)
        mask: optional (B, N) boolean, True = real input

    Returns:
        (output, weights): output (B, M, Dv), weights (B, M, N)
    """
    ### BEGIN SOLUTION
    queries = latents @ w_q  # (M, Dk), broadcast over the batch below
    keys, values = inputs @ w_k, inputs @ w_v  # (B, N, Dk), (B, N, Dv)
    scores = queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])  # (B, M, N)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ values, weights
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "latent_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Two small problems (one with Din != D and Dk != Dv): weights (B, M, N) that sum to 1 over the inputs,
# the 1/sqrt(Dk) scale, output (B, M, Dv), and gradients for the latents, the inputs and the three matrices.
grading.check("latent_tests", latent_cross_attention)
### BEGIN HIDDEN TESTS
grading.record("latent_tests", latent_cross_attention)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "latent_mask_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Two sequences, the first padded after 3 inputs: padded inputs get weight 0, and gradients still match.
grading.check("latent_mask_tests", latent_cross_attention)
### BEGIN HIDDEN TESTS
grading.record("latent_mask_tests", latent_cross_attention)
### END HIDDEN TESTS

# %% [markdown]
# Your function is the single-head core of the package's `MultiHeadAttention` called as
# cross-attention, `attn(latents, context=inputs)`. The next cell copies your matrices into a
# one-head module (no biases, output projection = identity) and compares.

# %%
my_latent = prefer_mine(latent_cross_attention, reference.latent_cross_attention)
rng = torch.Generator().manual_seed(0)
lat, inp = torch.randn(5, 8, generator=rng), torch.randn(2, 100, 8, generator=rng)
w_q, w_k, w_v = (torch.randn(8, 8, generator=rng) / 3 for _ in range(3))
module = MultiHeadAttention(8, 1, bias=False, fused=False)
with torch.no_grad():
    for projection, weight in [(module.q_proj, w_q), (module.k_proj, w_k), (module.v_proj, w_v),
                               (module.out_proj, torch.eye(8))]:
        projection.weight.copy_(weight.T)  # nn.Linear computes x @ weight.T
    expected, expected_weights = module(lat.expand(2, -1, -1), context=inp, return_weights=True)
output, weights = my_latent(lat, inp, w_q, w_k, w_v)
print("output", tuple(output.shape), "weights", tuple(weights.shape), "-> 5 latents read 100 inputs each")
print("largest difference from MultiHeadAttention:", float((output - expected).abs().max()))

# %% [markdown]
# ### Measure the cost
#
# One attention layer (width 64, one head, batch 1, forward pass only, one CPU thread) reads N random
# vectors, three ways: self-attention written out (it stores the N × N weights), self-attention through
# `F.scaled_dot_product_attention` (the *fused* path: on a CPU a flash-style kernel that works through
# the keys in blocks and never stores N × N), and 64 latents cross-attending to the N inputs.
#
# **How memory is measured.** The sweep runs in a fresh Python process. Torch's profiler
# (`profile_memory=True`) records every allocation and release of torch's CPU allocator during one
# forward pass, and the peak is the largest running total: the memory held by tensors (weights,
# projections, work buffers). Python objects and memory a library takes outside torch's allocator are
# not counted. Times are CPU times (median of repeated passes): on an idle machine they equal the wall
# time, and on a shared machine they leave out the time spent waiting for a core. Points that would
# take too long or whose N × N weights alone would pass 1.1 GB are skipped and marked so.

# %%
cost_points = latent_cost.measure_cost(latent_cost.CostConfig(sizes=PLAN.cost_sizes))
print("one thread in a fresh process |", hardware_info())
print(latent_cost.cost_table(cost_points))
fig, (ax_time, ax_memory) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
sizes, times = latent_cost.series(cost_points, "seconds", 1000)
line_chart(sizes, times, xlabel="input length N", ylabel="CPU time per forward (ms)", xscale="log2", yscale="log",
           title="time: N² for self-attention, N for the latents", ax=ax_time)
sizes, memory = latent_cost.series(cost_points, "peak_bytes", 1e-6)
line_chart(sizes, memory, xlabel="input length N", ylabel="peak torch memory (MB)", xscale="log2", yscale="log",
           title="memory: only the readable path stores N × N", ax=ax_memory)
plt.show()

# %% [markdown]
# On a log-log plot a cost that grows like N² climbs twice as steeply as one that grows like N. Read
# the table with that in mind, and notice what the measurement says about a common shortcut in
# explanations: the fused kernel already removes the N × N *memory* of self-attention, but not its N²
# *time*; the latents remove both, because their weight matrix is M × N to begin with. The price is a
# bottleneck: everything the model learns about the input has to pass through M vectors.
#
# ### Does a bottleneck of 8 latents still solve a long-input task?
#
# The task: a sequence of N tokens is mostly filler; a few rare **markers** of 4 kinds are hidden in
# it, and the label is the kind that occurs most often. Two models, with token vectors of the same width:
#
# * **latents**: 8 latents cross-attend to the tokens (two heads), attend among themselves, and their
#   mean is classified;
# * **mean pooling**: the average of all N token vectors is classified (no attention at all).
#
# Both train on fresh sequences of the training length at every step; then both are tested on unseen
# sequences of that length, and the latent model also on sequences 4 and 16 times longer.

# %%
task = latents.MajorityTask(length=PLAN.latent_length)
long_config = latents.LatentConfig(vocab=task.vocab, classes=task.kinds)
latent_model, pooled_model = latents.LatentClassifier(long_config), latents.MeanPoolClassifier(long_config)
long_fits = {name: latents.train_classifier(model, task, FitConfig(steps=PLAN.latent_steps, warmup=20))
             for name, model in [("latents", latent_model), ("mean pooling", pooled_model)]}
long_scores = [("latents", latents.evaluate(latent_model, task, n, count=PLAN.latent_test))
               for n in (task.length, 4 * task.length, 16 * task.length)]
long_scores.append(("mean pooling", latents.evaluate(pooled_model, task, task.length, count=PLAN.latent_test)))
print(f"{'model':>13} {'N':>7} {'accuracy':>9} {'attention on markers':>21} {'markers among tokens':>21}")
for name, s in long_scores:
    mass = "-" if s.marker_attention is None else f"{s.marker_attention:.1%}"
    print(f"{name:>13} {s.length:>7} {s.accuracy:>9.1%} {mass:>21} {s.marker_share:>21.2%}")
print("training time:", ", ".join(f"{name} {fit.seconds:.0f} s" for name, fit in long_fits.items()), "| chance: 25%")

# %% [markdown]
# The column "attention on markers" is the share of the latents' attention that lands on marker tokens;
# compare it with the share of markers among the tokens, which is what evenly spread attention would
# give. The plot shows one test sequence: the latents' attention against position, with the markers
# drawn as coloured lines.

# %%
latents.draw_attention(latent_model, task, task.length)
plt.show()

# %% [markdown]
# Two things to take from the table. Mean pooling has to find a handful of markers in an average over
# all N tokens, where filler dominates; attention can put most of its weight on the markers and
# average *those*, which amounts to counting the kinds. And the longer test sequences show a limit of
# softmax attention: the weight a marker gets depends on how much filler competes with it, so the
# share of attention on the markers shrinks as N grows past the training length, and in a full run
# the accuracy drops with it.
#
# ## 5. Prompts: point at something, get its mask
#
# The Segment Anything Model (SAM; Kirillov et al., 2023) splits segmentation in two: a heavy image
# encoder that runs once per image, and a light decoder that runs once per **prompt** (a click, a
# box). In its decoder, prompt tokens and a learned *mask token* cross-attend to the image patches, the
# patches cross-attend back to the tokens (a **two-way** exchange), and the mask token finally scores
# every position of the image.
#
# Our scenes are 24 × 24 pixels with two or three see-through shapes (discs, squares, triangles); where
# shapes overlap their grey levels add up. A prompt is a click on a shape or a box around it, and the
# target is that shape's whole mask.
#
# ### Exercise 4 — `prompt_mask_logits` (3 points)
#
# Write one two-way step, single-head, without the norms and MLPs of the real thing:
#
# 1. **prompt → patches.** `tokens = prompt + attend(prompt, patches, *to_image)`;
# 2. **patches → prompt.** `image = patches + attend(patches, tokens, *to_prompt)` — the patches
#    read the tokens *updated* by step 1;
# 3. **mask logits.** `logits[b, n] = image[b, n] · tokens[b, 0] / √D`: token 0 is the mask token.
#
# Here `attend(x, context, W_q, W_k, W_v) = softmax((x W_q)(context W_k)ᵀ / √D) (context W_v)`, with
# the softmax over the context. Shapes: `prompt` `(B, Tp, D)`, `patches` `(B, N, D)`, each `W` `(D, D)`.
# Return `(logits, weights)` with `logits` `(B, N)` and `weights` `(B, Tp, N)`, the weights of step 1.

# %% nbgrader={"grade": false, "grade_id": "prompt_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def prompt_mask_logits(prompt, patches, to_image, to_prompt):
    """One two-way step: prompt reads patches, patches read the prompt back, the mask token scores patches.

    Args:
        prompt: (B, Tp, D) tokens, the mask token first
        patches: (B, N, D) patch embeddings
        to_image: (W_q, W_k, W_v) of step 1, each (D, D)
        to_prompt: (W_q, W_k, W_v) of step 2, each (D, D)

    Returns:
        (logits, weights): logits (B, N); weights (B, Tp, N) of step 1
    """
    ### BEGIN SOLUTION
    def attend(x, context, w_q, w_k, w_v):
        scores = (x @ w_q) @ (context @ w_k).transpose(1, 2) / math.sqrt(w_k.shape[-1])
        weights = torch.softmax(scores, dim=-1)
        return weights @ (context @ w_v), weights

    read, weights = attend(prompt, patches, *to_image)
    tokens = prompt + read  # (B, Tp, D)
    image = patches + attend(patches, tokens, *to_prompt)[0]  # (B, N, D)
    logits = (image @ tokens[:, 0, :, None]).squeeze(-1) / math.sqrt(prompt.shape[-1])  # (B, N)
    return logits, weights
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "prompt_weights_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Step 1 alone: the prompt tokens' weights over the patches, (B, Tp, N), each row summing to 1.
grading.check("prompt_weights_tests", prompt_mask_logits)
### BEGIN HIDDEN TESTS
grading.record("prompt_weights_tests", prompt_mask_logits)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "prompt_logits_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# The mask logits after both steps (residuals, updated tokens, token 0, 1/sqrt(D)), and their gradients.
grading.check("prompt_logits_tests", prompt_mask_logits)
### BEGIN HIDDEN TESTS
grading.record("prompt_logits_tests", prompt_mask_logits)
### END HIDDEN TESTS

# %% [markdown]
# The segmenter in the package is this step grown up: an image encoder (patch embedding, Fourier
# position features, two self-attention layers), prompt tokens that carry the same Fourier features of
# their (x, y) so that a click can find "the patches near me" by position, two two-way layers with
# several heads, norms and MLPs, and a mask head that unfolds every patch vector into 4 × 4 pixel
# vectors so the mask has full resolution. Run your function on the shapes it will see:

# %%
my_prompt = prefer_mine(prompt_mask_logits, reference.prompt_mask_logits)
rng = torch.Generator().manual_seed(1)
matrices = [tuple(torch.randn(16, 16, generator=rng) / 4 for _ in range(3)) for _ in range(2)]
logits, weights = my_prompt(torch.randn(2, 3, 16, generator=rng), torch.randn(2, 36, 16, generator=rng), *matrices)
print("mask logits", tuple(logits.shape), "= one per patch of the 6 x 6 grid;  step-1 weights", tuple(weights.shape))

# %% [markdown]
# **Train it.** Each step draws fresh scenes; 70 % of the prompts are clicks, 30 % boxes. A click
# that lands where two shapes overlap is ambiguous, and the scene generator decided which of the two
# shapes it meant: the model cannot know. We train two versions: one that writes a single mask, and
# one that writes **two** masks per prompt and is scored only on the better of them (SAM writes three).

# %%
seg_model, seg_fit = promptable.train_segmenter(promptable.SegmenterConfig(),
                                                FitConfig(steps=PLAN.segment_steps, lr=2e-3))
two_mask_model, two_mask_fit = promptable.train_segmenter(promptable.SegmenterConfig(n_masks=2),
                                                          FitConfig(steps=PLAN.two_mask_steps, lr=2e-3))
print(f"one-mask model: {PLAN.segment_steps} steps in {seg_fit.seconds:.0f} s; "
      f"two-mask model: {PLAN.two_mask_steps} steps in {two_mask_fit.seconds:.0f} s")
seg_iou = prompting.measure_iou(seg_model, count=PLAN.segment_test)
print(f"{'prompt':>28} {'prompts':>8} {'mean IoU':>9}")
for kind, value in seg_iou.mean_iou.items():
    print(f"{kind:>28} {seg_iou.counts[kind]:>8} {value:>9.2f}")
rgbs, titles = prompting.example_panels(seg_model)
image_panels(rgbs, titles, suptitle="unseen scenes: prompt (yellow) and predicted mask (red)", colorbar=None,
             ncols=3)
plt.show()

# %% [markdown]
# IoU (intersection over union) is 1 for a perfect mask and 0 for a mask that misses entirely. For
# clicks on two shapes the table scores the mask against the shape the generator had picked, a coin
# flip the model cannot win; the ambiguity experiment below looks at those clicks properly.
#
# ### Does the mask follow the click?
#
# A click slides from left to right through a disc and a square with background between them. At every
# position the cell prints the shape under the click and the IoU of the predicted mask with each shape.

# %%
path = prompting.follow_click(seg_model, steps=25)
for step in path[::2]:
    print(f"x = {step.x:5.1f} on {step.under:>10}: IoU disc {step.iou[0]:.2f}, square {step.iou[1]:.2f}, "
          f"mask {step.area} px")
line_chart([s.x for s in path], {"IoU with the disc": [s.iou[0] for s in path],
                                 "IoU with the square": [s.iou[1] for s in path]},
           xlabel="click position x (pixels)", ylabel="IoU", title="the mask follows the click from shape to shape")
plt.show()
names = [spec[0] for spec in prompting.FOLLOW_SCENE]
on_shape = [s for s in path if s.under != "background"]
follows = sum(max(s.iou) > 0.5 and s.iou[names.index(s.under)] == max(s.iou) for s in on_shape)
print(f"clicks on a shape whose mask matches that shape (IoU > 0.5, best of the two): {follows} of {len(on_shape)}")

# %% [markdown]
# In a full run the mask follows the click: on a shape, it is that shape. Look also at the clicks on
# background, where no training click ever landed: the model still answers with a whole shape, the
# nearer one, and only near the midpoint does it hesitate. It learned "the shape closest to the
# click", never "there is nothing here"; a real system needs training clicks on background (or a
# score for its own confidence) to learn that.
#
# Now move the click yourself. The **x** and **y** sliders place it on the scene; the three pictures
# show the predicted mask, where the mask token looked in the last token → patch attention, and where
# the click's own token looked. Try the middle of the disc, the middle of the square, their overlap,
# the triangle, and empty background.

# %%
make_prompt_widget(seg_model, prompting.scene_from_specs(prompting.WIDGET_SCENE), x=6.5, y=6.5)

# %% [markdown]
# ### An ambiguous click
#
# Clicks inside the overlap of two shapes, on unseen scenes. For each click the shape whose own part
# gets the higher mask probability is called *favoured*; the cell reports the mean probability in the
# part only the favoured shape covers, in the part only the other covers, in the overlap and outside
# both, and, for each model, how well its best mask matches each of the two shapes.

# %%
ambiguity = {"one mask": prompting.measure_ambiguity(seg_model, count=PLAN.segment_test // 3),
             "two masks": prompting.measure_ambiguity(two_mask_model, count=PLAN.segment_test // 3)}
print(f"{'model':>10} {'clicks':>7} {'favoured only':>14} {'other only':>11} {'overlap':>8} {'outside':>8} "
      f"{'best IoU favoured':>18} {'best IoU other':>15}")
for name, a in ambiguity.items():
    print(f"{name:>10} {a.prompts:>7} {a.favoured_only:>14.2f} {a.other_only:>11.2f} {a.overlap:>8.2f} "
          f"{a.outside:>8.2f} {a.best_iou_each[0]:>18.2f} {a.best_iou_each[1]:>15.2f}")
click = (10.5, 10.5)  # inside both the disc and the square of the widget's scene
panels = [*prompting.click_panels(seg_model, prompting.WIDGET_SCENE, click),
          *prompting.click_panels(two_mask_model, prompting.WIDGET_SCENE, click)]
image_panels(panels, ["one-mask model", "two-mask model, mask 1", "two-mask model, mask 2"], colorbar=None,
             suptitle="one click where the disc and the square overlap: mask probability in red")
plt.show()

# %% [markdown]
# A model that must write one mask for a click that meant "disc" in some training scenes and "square"
# in others is trained to hedge: under a per-pixel loss, the best single answer is, for each pixel, the
# probability that it belongs to the intended shape. The one-mask row shows that in a full run:
# probabilities near 1 in the overlap, well below 1 in the parts that only one shape covers, and its
# best mask matches the less favoured shape poorly. The two-mask model may make one guess per meaning,
# and is only scored on the better one; in a full run its best mask matches the other shape much
# better, and the figure shows its two masks splitting the two shapes between them. That is the reason
# SAM writes several masks per prompt (the real model also predicts a quality score to rank them).
#
# ## 6. A map of cross-attention
#
# The same lookup runs inside many systems you may know. In each row below, name the queries and the
# keys and values before you read them, then find the piece of this course that does the same thing.

# %%
display(Markdown(atlas.markdown_table()))
atlas.draw_map()
plt.show()

# %% [markdown]
# Two contrasts are worth remembering. Text-to-image models such as Stable Diffusion turn the
# captioner around: the *image* asks and the *text* is read. And not every multimodal model uses
# cross-attention: LLaVA-style models project image features into ordinary tokens and let the language
# model's self-attention read them along with the text; Flamingo and Llama 3.2 Vision add
# cross-attention layers instead.
#
# ## Summary
#
# The next cell collects the numbers this run measured.

# %%
print(f"run: {'fast mode' if FAST else 'full'} | {hardware_info()}")
print(f"captioner: exact captions {caption_scores.exact_match:.1%} on {caption_scores.images} test images; "
      "attention peak on a digit the word names: "
      + ", ".join(f"layer {n + 1} {rate:.1%}" for n, rate in enumerate(caption_scores.peak_on_digit)))
print(f"latents: accuracy {long_scores[0][1].accuracy:.1%} at N = {task.length} "
      f"(mean pooling {long_scores[-1][1].accuracy:.1%}); at N = {16 * task.length}: {long_scores[2][1].accuracy:.1%}")
print("segmenter: mean IoU " + ", ".join(f"{k} {v:.2f}" for k, v in seg_iou.mean_iou.items()))
print("time and peak torch memory against N:")
print(latent_cost.cost_table(cost_points))

# %% [markdown]
# * An image becomes a sequence by cutting it into patches, flattening each, and giving each a
#   position; after that, any attention layer can read it.
# * A captioner is a translator whose source sentence is a grid of patches. Its cross-attention
#   weights show where each word was read, and they can be scored against what the word means.
# * M learned latents that cross-attend to N inputs cost M·N instead of N²; a fused kernel removes
#   the N × N memory of self-attention but not its N² time. The bottleneck works when the task can be
#   summarised by what the latents select, and softmax dilution limits it on much longer inputs.
# * Promptable segmentation is cross-attention in both directions between a few prompt tokens and the
#   image patches. One prompt can mean several objects; writing several masks lets the model say so.
# * Translation, speech recognition, text-to-image conditioning, retrieval-augmented readers and
#   multimodal language models all use the same lookup; what changes is who asks and what is read.
#
# **Check yourself**
#
# 1. A 224 × 224 image is cut into 16 × 16 patches. How many patches, and how many numbers per patch
#    for a grey image? For an RGB image?
# 2. Why does the captioner need position vectors for its patches? What would go wrong without them?
# 3. With N = 50,000 inputs and M = 256 latents, how many attention weights does one latent
#    cross-attention layer form, and how many would one self-attention layer form?
# 4. In the two-way step, why do the patches read the *updated* tokens rather than the original prompt?
# 5. In Stable Diffusion's cross-attention, where do the queries come from, and where the keys and values?
