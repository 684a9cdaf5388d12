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
# # Chapter 6 — Translation
#
# Every piece is on the table: queries, keys and values (Chapter 1), the softmax spotlight and its
# entropy (Chapter 2), masks, heads and the two decoding caches (Chapter 3). This chapter puts them
# together into a translator, trains it on your CPU, decodes with it, and then opens it up to watch
# what cross-attention learned: does the decoder look at the source word it is translating?
#
# **By the end of this chapter you can**
#
# 1. assemble an encoder layer, a decoder layer and the whole encoder-decoder from attention,
#    feed-forward networks, residual connections and layer norms, and check it against the package;
# 2. explain why the tokenizer is fitted on the training split only, with a measurement;
# 3. write the training loss (padding left out, label smoothing in) and train a model with warm-up;
# 4. name the low-precision traps of attention masks and check them on your own hardware;
# 5. decode a batch greedily with both caches, and measure what the caches buy;
# 6. read cross-attention as a word alignment, score it (AER) and watch it form during training;
# 7. report a translation score that can be trusted: sacreBLEU with its signature, chrF, and a test
#    split read once.
#
# **How to work.** Run the cells from the top; *Run All* works too, even with exercises unfinished
# (where your code is still missing, the package's reference stands in and says so). Replace each
# `raise NotImplementedError()` under `# YOUR CODE HERE`, then run the test cell below it. Hidden cases
# are tried when your notebook is graded, and a test cell that writes to stderr scores 0. Grade yourself
# with `xattn grade 06_translation.ipynb`. The training run takes a few minutes on a laptop CPU; plan on
# about ninety minutes in all.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from xattn_edu.chapters.support.fallback import prefer_mine
from xattn_edu.chapters.support.fast import fast_mode
from xattn_edu.chapters.support.plots import heatmap_panels, line_chart
from xattn_edu.chapters.translation import (
    assembly,
    attention_maps,
    data,
    decoding,
    evaluation,
    leakage,
    precision,
    reference,
    tiny,
    training,
)
from xattn_edu.chapters.translation import checks as grading
from xattn_edu.chapters.translation.figures import draw_architecture
from xattn_edu.chapters.translation.widget import make_checkpoint_widget, make_translation_widget
from xattn_edu.common.device import default_device, describe_device, hardware_info

STARTED = time.perf_counter()
FAST = fast_mode()  # True when XATTN_FAST=1 (tests, graders): the run shrinks to seconds
DEVICE = default_device()  # CUDA when a GPU is visible, else the CPU
torch.manual_seed(0)
np.set_printoptions(precision=3, suppress=True)
print(f"device: {describe_device(DEVICE)}; fast mode: {FAST}")

# %% [markdown]
# **Settings.** The chapter trains on the synthetic English→German corpus by default: it needs no
# download and trains in minutes on a CPU. You can switch to Multi30k (German→English image captions, with
# the package's `multi30k` recipe on a GPU and its `multi30k-cpu` recipe elsewhere): set `DATA = "multi30k"`
# and point `MULTI30K_DIR` at a folder holding its raw files (`train.de.gz`, `train.en.gz`, `val.*`, and
# the test set you name), or leave it `None` to download them. Multi30k has no gold word alignments, so the
# alignment sections skip themselves.

# %%
DATA = os.environ.get("XATTN_CH6_DATA", "synthetic")  # "synthetic" or "multi30k"
MULTI30K_DIR = os.environ.get("XATTN_MULTI30K_DIR")  # folder with the raw Multi30k files, or None to download
TEST_SET = os.environ.get("XATTN_MULTI30K_TEST", "test_2016_flickr")  # the published test set scored at the end
run = data.chapter_run(DATA, fast=FAST, data_dir=MULTI30K_DIR, test_set=TEST_SET, device=DEVICE)
model_cfg = run.config.model
print(f"data: {run.source}; model: D={model_cfg.d_model}, h={model_cfg.n_heads}, {model_cfg.n_encoder_layers} "
      f"encoder + {model_cfg.n_decoder_layers} decoder layers, feed-forward width {model_cfg.d_ff}; "
      f"{run.config.optim.steps} training steps")

# %% [markdown]
# ## 1. The whole translator
#
# First the **encoder** turns the source sentence into vectors, one per word, a single time per sentence.
# Each of its layers lets every source word look at every other one (bidirectional self-attention), then
# passes each word through a small feed-forward network. Its output is the **memory**.
#
# The **decoder** writes the translation one word at a time. Each of its layers does three things to the
# words written so far: causal self-attention (a word sees the words before it, never after), then
# **cross-attention** (its queries come from the decoder, its keys and values from the memory: the glance
# back at the source), then a feed-forward network. A final projection turns the top vector of the
# newest word into a probability for every word of the target vocabulary.
#
# Each of these sublayers sits in a **residual block**. The package's layers are *pre-norm*: the block
# normalises its input, applies the sublayer and adds the result back, `x + f(norm(x))`. (The original
# Transformer normalised after the sum, `norm(x + f(x))`; pre-norm trains more calmly, and Chapter 4
# follows the gradient through both.)

# %%
draw_architecture(n_encoder=model_cfg.n_encoder_layers, n_decoder=model_cfg.n_decoder_layers,
                  source="source words", target="target words written so far")
plt.show()

# %% [markdown]
# ## 2. Assemble it
#
# You build the layers from the package's parts, so the result can be checked number for number against
# the package's own `Seq2Seq`. The attention inside is a function you pass in, called the way Chapter 3's
# `multi_head_attention` was: `attention(x, attn, context, mask)` gives the multi-head attention of the
# positions `x` (queries) over `context` (keys and values; `None` means `x` itself), with the weights of
# the module `attn`. Two attentions fit that slot:
#
# * `assembly.package_attention`, which calls the package's `MultiHeadAttention`;
# * your own, from Chapter 3. Paste your `multi_head_attention` below, renamed `my_multi_head_attention`
#   (with its helpers, inside the function or above it). It is not graded here: it lets you run the
#   translator on attention you wrote. If you leave the stub, the package's attention stands in.

# %% nbgrader={"grade": false, "grade_id": "my_attention_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def my_multi_head_attention(x, attn, context=None, mask=None):
    """Multi-head attention of the queries from x (B, Tq, D) over context (B, Tk, D), or x itself.

    Uses attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj and attn.n_heads; mask is boolean,
    broadcastable to (B, h, Tq, Tk), True = may attend. Returns (B, Tq, D).
    """
    ### BEGIN SOLUTION
    source = x if context is None else context

    def split(t):  # (B, T, D) -> (B, h, T, Dh)
        return t.unflatten(-1, (attn.n_heads, -1)).transpose(1, 2)

    query, key, value = split(attn.q_proj(x)), split(attn.k_proj(source)), split(attn.v_proj(source))
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, h, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a query with no visible key gets zeros
    return attn.out_proj((weights @ value).transpose(1, 2).flatten(-2))  # (B, Tq, D)
    ### END SOLUTION


# %% [markdown]
# ### Exercise 1 — the encoder layer (1 point)
#
# Write `encoder_layer(layer, x, mask, attention)`: one pre-norm encoder layer of the package, given
#
# * `layer`, an `EncoderLayer`: `layer.self_attn` (the attention module), `layer.ff` (the feed-forward
#   network, a function `(B, T, D) → (B, T, D)`), and its two norms `layer.attn_block.norm` and
#   `layer.ff_block.norm`;
# * `x` `(B, Ts, D)`, the source vectors, and `mask` `(B, 1, 1, Ts)`, True for real tokens;
# * `attention`, the attention function described above.
#
# Return `(B, Ts, D)`: first `x + attention(norm1(x))` (self-attention: no context, the padding mask),
# then `x + ff(norm2(x))`. Leave dropout out (the layer runs in evaluation mode), and do not call
# `layer(...)` or its blocks (`layer.attn_block(...)`): writing the blocks is the exercise.

# %% nbgrader={"grade": false, "grade_id": "encoder_layer_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def encoder_layer(layer, x, mask, attention):
    """One pre-norm encoder layer: x (B, Ts, D), mask (B, 1, 1, Ts) -> (B, Ts, D)."""
    ### BEGIN SOLUTION
    x = x + attention(layer.attn_block.norm(x), layer.self_attn, None, mask)
    return x + layer.ff(layer.ff_block.norm(x))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "encoder_layer_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Small float64 layers with random norms, with and without padding: the output against the package's
# layer, and the gradient with respect to x. Post-norm, a missing residual or norm, one norm for both
# blocks and an ignored mask are named.
grading.check("encoder_layer_tests", encoder_layer)
### BEGIN HIDDEN TESTS
grading.record("encoder_layer_tests", encoder_layer)
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — the decoder layer (3 points)
#
# Write `decoder_layer(layer, x, memory, self_mask, memory_mask, attention)`: one pre-norm decoder layer,
# three residual blocks in this order:
#
# 1. causal self-attention over `x` with `self_mask` `(B or 1, 1, Tt, Tt)` (causal, and the target's
#    padding), norm `layer.self_block.norm`, module `layer.self_attn`;
# 2. cross-attention from `x` (queries) to `memory` `(B, Ts, D)` (keys and values) with `memory_mask`
#    `(B, 1, 1, Ts)`, norm `layer.cross_block.norm`, module `layer.cross_attn`. Only the decoder's side
#    is normalised here: the memory is already the encoder's normalised output;
# 3. the feed-forward network `layer.ff` with norm `layer.ff_block.norm`.
#
# Return `(B, Tt, D)`. The first test cell checks the blocks and their order, the second the masks;
# both check the gradients with respect to `x` and `memory` too.

# %% nbgrader={"grade": false, "grade_id": "decoder_layer_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def decoder_layer(layer, x, memory, self_mask, memory_mask, attention):
    """One pre-norm decoder layer: x (B, Tt, D), memory (B, Ts, D) -> (B, Tt, D)."""
    ### BEGIN SOLUTION
    x = x + attention(layer.self_block.norm(x), layer.self_attn, None, self_mask)
    x = x + attention(layer.cross_block.norm(x), layer.cross_attn, memory, memory_mask)
    return x + layer.ff(layer.ff_block.norm(x))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "decoder_layer_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# No padding here: causal self-attention, cross-attention to the memory, feed-forward, each x + f(norm(x)).
# Wrong orders, keys from the decoder instead of the memory, a normalised memory and post-norm are named.
grading.check("decoder_layer_tests", decoder_layer)
### BEGIN HIDDEN TESTS
grading.record("decoder_layer_tests", decoder_layer)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "decoder_mask_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Padded targets and sources: the causal mask must reach the self-attention and the memory's padding
# mask the cross-attention (each one forgotten, and the two swapped, are named).
grading.check("decoder_mask_tests", decoder_layer)
### BEGIN HIDDEN TESTS
grading.record("decoder_mask_tests", decoder_layer)
### END HIDDEN TESTS

# %% [markdown]
# ### The whole model, with one switch
#
# `assembly.assembled_logits` runs a `Seq2Seq`'s embeddings, then your `encoder_layer` for each encoder
# layer, the encoder's final norm (the memory), then your `decoder_layer` for each decoder layer, the
# decoder's final norm and the output projection. If your layers are right, it computes exactly what the
# package's `model(src, tgt_in)` computes. `USE_MY_ATTENTION` is the switch: `True` runs your
# `my_multi_head_attention` inside every layer, `False` the package's attention. The cell tries both on a
# small, freshly initialised model and a padded batch.

# %%
USE_MY_ATTENTION = True
my_layers = {"encoder_layer": prefer_mine(encoder_layer, reference.encoder_layer),
             "decoder_layer": prefer_mine(decoder_layer, reference.decoder_layer)}
my_attention = prefer_mine(my_multi_head_attention, assembly.package_attention)
fresh_model = tiny.tiny_translator(0, layers=2).float()  # a small untrained Seq2Seq (2 + 2 layers)
src = torch.tensor([[5, 6, 7, 8, 2], [9, 4, 2, 0, 0]])  # two sources, the second padded
tgt_in = torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]])  # BOS first, the second target padded
with torch.no_grad():
    package_logits = fresh_model(src, tgt_in)
    for switch in (USE_MY_ATTENTION, not USE_MY_ATTENTION):
        attention = my_attention if switch else assembly.package_attention
        logits = assembly.assembled_logits(fresh_model, src, tgt_in, **my_layers, attention=attention)
        print(f"attention: {'yours' if switch else 'the package'}'s; logits {tuple(logits.shape)}; "
              f"max |assembled - model(src, tgt_in)| = {float((logits - package_logits).abs().max()):.2e}")

# %% [markdown]
# When your layers and your attention are right, both differences are at the level of float32 rounding
# (a few times 1e-6 or less): the same computation, summed in a different order. From here on the chapter
# trains the package's `Seq2Seq` (its fused attention is faster), knowing it is the model you just
# assembled; after training, the same check runs again on real sentences.
#
# ## 3. The data
#
# The synthetic corpus comes from a small grammar that writes each sentence in English and German at
# once, so it knows which English word each German word translates: the **gold alignment**. The German
# side has what makes translation more than word-for-word substitution: agreement (*der*, *den*, *dem*),
# the verb in second place after a fronted adverb, verbs at the end of a subordinate clause, and verbs
# split in two (*ruft ... an*). Here are two validation pairs and their gold links.

# %%
chapter_data = data.load_data(run)
corpus = chapter_data.corpus
print(f"{len(corpus.train)} training pairs, {len(corpus.val)} validation pairs (the test pairs stay unread)")
print(f"vocabularies fitted on the training pairs: source {corpus.src_tokenizer.vocab_size}, "
      f"target {corpus.tgt_tokenizer.vocab_size} tokens")
for index in (0, 3):
    source, target = corpus.val[index]
    print(f"\n{source}\n{target}")
    if chapter_data.val_alignments is not None:
        print("\n".join(data.alignment_lines(source.split(), target.split(), chapter_data.val_alignments[index])))

# %% [markdown]
# ### Why the tokenizer sees the training split only
#
# The tokenizer decides which words the model has an entry for. Fit it on every split, and the model gets
# entries for words that occur only in the held-out sentences: its vocabulary carries information from
# the data it will be judged on, and every such word, which a real user's sentence might contain just as
# well, is treated as known. The next cell counts those words: for training splits of several sizes
# (fresh draws of the synthetic grammar), the held-out words that never occur in training. A
# training-only vocabulary reads them as `<unk>`, honestly; an all-splits vocabulary would have taken them
# from the held-out text.

# %%
sizes = (100, 1000, 10000) if FAST else (100, 300, 1000, 3000, 20000)
if run.source == "synthetic":
    rows = leakage.synthetic_leak_table(sizes, n_test=200 if FAST else 1000, seed=1)
else:
    rows = [leakage.word_leak([t for _, t in corpus.train], [t for _, t in corpus.val])]
print(f"{'training sentences':>18} {'held-out words':>14} {'distinct':>8} {'unseen in training':>18} "
      f"{'share of running words':>22}  examples")
for row in rows:
    print(f"{row.train_sentences:>18} {row.test_tokens:>14} {row.test_types:>8} {row.unseen_types:>18} "
          f"{row.unseen_share:>22.2%}  {', '.join(row.examples)}")

# %% [markdown]
# On the synthetic corpus the leak shrinks as the training split grows, and can vanish: its grammar has a
# small, closed vocabulary. Real text has no such end: new names, rare words and typos keep coming (run
# the chapter on Multi30k to measure it there). Subword tokenizers leak too, more quietly: fitted on every
# split, they learn held-out words as pieces of their own. The next cell fits two sentencepiece models, on
# the training sentences alone and on training plus held-out sentences, and cuts the held-out words with
# each.

# %%
if run.source == "synthetic":
    subwords = leakage.synthetic_subword_leak(300, 300 if FAST else 1000, vocab_size=1000, seed=1)
else:
    subwords = leakage.subword_leak([t for _, t in corpus.train], [], [t for _, t in corpus.val], vocab_size=8000)
print(f"pieces per held-out word: {subwords.pieces_per_word_train_only:.3f} fitted on training, "
      f"{subwords.pieces_per_word_all_splits:.3f} fitted on every split")
print(f"held-out words kept whole: {subwords.whole_words_train_only:.1%} fitted on training, "
      f"{subwords.whole_words_all_splits:.1%} fitted on every split")

# %% [markdown]
# Compare the two columns: fitted on every split, the subword model has seen the held-out words, and a
# word it has seen gets fewer, larger pieces. However small the difference, it is an advantage taken from
# the evaluation data, the kind a published score must not contain. The package fits its tokenizers on
# the training split only, and this chapter never reads the test split until the very end.
#
# ## 4. Training
#
# ### Exercise 3 — the loss (3 points)
#
# The decoder reads `BOS y1 ... ym` and must predict `y1 ... ym EOS`; the loss is the cross-entropy of
# those predictions. Two details matter:
#
# * **padding**: sentences in a batch are padded to the longest one; padding positions predict nothing
#   and must count neither in the sum nor in the number of tokens you divide by. Every real token of the
#   batch weighs the same;
# * **label smoothing** with `eps` (0.1 in the run): instead of putting all of the target probability on
#   the right word, put `1 - eps` there and spread `eps` evenly over all `V` words of the vocabulary (the
#   right one included). The loss of one token becomes
#   $$(1 - \varepsilon)\,(-\log p_{y}) + \varepsilon \cdot \frac{1}{V}\sum_{c=1}^{V} (-\log p_c),$$
#   which keeps the model from becoming certain: it is rewarded for leaving a little probability to
#   every word.
#
# Write `translation_loss(logits, targets, pad_id, label_smoothing=0.0)`: `logits` `(B, Tt, V)`, `targets`
# `(B, Tt)` with `pad_id` where there is no token; return the mean loss per real token, a 0-d tensor that
# gradients flow through. `torch.log_softmax` is the tool; `F.cross_entropy` and `F.nll_loss` would do
# the exercise for you and are off limits.

# %% nbgrader={"grade": false, "grade_id": "loss_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def translation_loss(logits, targets, pad_id, label_smoothing=0.0):
    """Mean label-smoothed cross-entropy over the real tokens: logits (B, Tt, V), targets (B, Tt) -> scalar."""
    ### BEGIN SOLUTION
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, Tt, V)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, Tt)
    uniform = -log_probs.mean(dim=-1)  # (B, Tt)
    per_token = (1 - label_smoothing) * nll + label_smoothing * uniform
    real = targets != pad_id
    return per_token[real].sum() / real.sum()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "loss_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Without smoothing: the mean cross-entropy over the real tokens, and its gradient with respect to the
# logits. Averaging in the padding, a sum, and a mean of per-sentence means are named.
grading.check("loss_tests", translation_loss)
### BEGIN HIDDEN TESTS
grading.record("loss_tests", translation_loss)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "label_smoothing_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# With label smoothing 0.1 and 0.3: (1 - eps) on the target, eps / V on every class. An ignored eps, a sum
# over the classes, and the conventions of fairseq and of the Annotated Transformer are named.
grading.check("label_smoothing_tests", translation_loss)
### BEGIN HIDDEN TESTS
grading.record("label_smoothing_tests", translation_loss)
### END HIDDEN TESTS

# %% [markdown]
# ### Warm-up, and where the run trains
#
# The optimizer is AdamW. Its learning rate climbs linearly from almost 0 during the first steps (the
# **warm-up**: at the start, Adam's estimates of the gradients' size are poor and the attention weights
# are random, so large steps can throw the model somewhere it does not recover from), then decays to 0
# along a cosine. On a GPU the matrix products run in **bfloat16** under autocast, and the attention's
# softmax stays in float32 (section 5 shows why that matters). The session below is the package's
# training loop; your loss is compared with the one it minimises on a real batch.

# %%
run_dir = training.run_folder(keep=not FAST)
session = training.start(run, chapter_data, run_dir, device=DEVICE)
optim = run.config.optim
print(f"training on {describe_device(session.device)}; matrix products in {training.autocast_dtype(session)}; "
      f"checkpoints in {run_dir} ({'removed when the kernel stops' if FAST else 'kept for xattn translate'})")
line_chart(range(1, optim.steps + 1), {"learning rate": training.lr_schedule(optim)}, xlabel="optimizer step",
           ylabel="learning rate", title=f"warm-up for {optim.warmup} steps, then a cosine decay")
plt.show()

src_batch, tgt_in_batch, tgt_out_batch = training.training_batch(session)
with torch.no_grad():
    batch_logits = session.model.eval()(src_batch, tgt_in_batch).float()
session.model.train()
your_loss = prefer_mine(translation_loss, reference.translation_loss)
mine = your_loss(batch_logits, tgt_out_batch, corpus.tgt_tokenizer.pad_id, optim.label_smoothing)
theirs = training.package_loss(batch_logits, tgt_out_batch, corpus.tgt_tokenizer.pad_id, optim.label_smoothing)
print(f"on a training batch of {tgt_out_batch.shape[0]} sentences before training: your loss {float(mine):.6f}, "
      f"the training loop's {float(theirs):.6f} (log V = {math.log(corpus.tgt_tokenizer.vocab_size):.3f})")

# %% [markdown]
# Before training the loss is in the region of $\log V$ (printed beside it), the loss of a model that
# spreads its bets evenly over the vocabulary; random logits do a little worse than even bets. Now watch it
# learn: the progress bar counts steps, the plot redraws as the loss falls, and every few steps a
# checkpoint is kept (its validation loss joins the plot) so that section 7 can replay how cross-attention
# changed.

# %%
live = training.LiveLoss(optim.steps)
log = training.train_with_snapshots(session, run.snapshot_every, on_report=live.update)
live.update(log)
print(f"{session.step} steps in {log.seconds:.1f} s of training, {log.target_tokens / log.seconds:,.0f} target "
      "tokens per second")
print(f"{'step':>6} {'validation loss':>16} {'exact match (val sample)':>25}")
for snap in log.snapshots:
    print(f"{snap.step:>6} {snap.val_loss:>16.3f} {snap.exact_match:>24.1f}%")

# %% [markdown]
# The training loss (label-smoothed) cannot reach 0: smoothing keeps a floor under it. The validation loss
# is plain cross-entropy, and the exact-match column counts validation sentences translated perfectly by
# greedy decoding at each checkpoint.
#
# The same check as in section 2, now on the trained model and real validation sentences: the model you
# assembled, with your attention inside, is this translator.

# %%
trained = session.model.eval()
dev = session.device
val_src, val_tgt_in, _ = training.validation_batch(session, rows=8)
with torch.no_grad():
    difference = (assembly.assembled_logits(trained, val_src, val_tgt_in, **my_layers, attention=my_attention)
                  - trained(val_src, val_tgt_in)).abs().max()
print(f"trained model, {val_src.shape[0]} validation sentences: max |assembled - package| = {float(difference):.2e}")

# %% [markdown]
# ## 5. Low precision: three traps for attention
#
# On a GPU, bfloat16 and float16 make training faster and lighter. Attention is where the narrow formats
# bite, and the three traps below are measured on this machine; rerun them on a GPU and the fused
# kernels' rows fill in.
#
# **Trap 1: the fill value.** A mask hides keys by replacing their scores with a large negative number
# before the softmax. Which number? The table tries the usual choices in each dtype: what the scores
# hold afterwards, the largest weight a hidden key still gets in a partly hidden row, and what happens to
# a query whose *every* key is hidden (a padded position, or a source made only of padding).

# %%
print(f"{'dtype':<9} {'fill':<19} {'stored':<50} {'hidden weight':>13}  every key hidden")
for row in precision.fill_table():
    print(f"{row.dtype:<9} {row.fill:<19} {row.stored:<50} {row.hidden_weight:>13.3g}  {row.empty_row}")

# %% [markdown]
# Read it row by row: `-inf` hides perfectly but turns a fully hidden row into NaN, which then spreads
# through everything computed from it; a finite fill keeps the numbers finite but spreads the row's
# attention evenly over keys it must not see; and a fill the dtype cannot hold (`-1e9` or
# `finfo(float32).min` in float16, `finfo(float32).min` in bfloat16) does not even run. Code that works in
# float32 breaks when autocast switches the scores to float16.
#
# **Trap 2: fused kernels.** `F.scaled_dot_product_attention` has several backends (kernels), picked by
# the device, the dtype and the shapes. The table sends one fully hidden query through each backend that
# exists here, with a boolean mask and with additive masks, and reports its output and the gradient it
# sends back to that query. The last rows are the package's own attention, readable and fused.

# %%
fused_rows = precision.fused_table(DEVICE)
for backend in dict.fromkeys(row.backend for row in fused_rows):
    mine_rows = [row for row in fused_rows if row.backend == backend]
    if all(row.output.startswith("no kernel") for row in mine_rows):
        print(f"{backend:<20} no kernel on {DEVICE.type} for any of these dtypes")
        continue
    for row in mine_rows:
        print(f"{backend:<20} {row.dtype:<9} {row.mask:<19} -> {row.output:<40} gradient: {row.gradient}")

# %% [markdown]
# The summary lines (printed below) group the kernels by what they did. Two mechanisms are at work. A
# boolean mask or an additive `-inf` leaves the row with no finite score, and each kernel decides what to
# return for it (the table says what this PyTorch's kernels decide). An additive `finfo.min` is a number:
# added to every hidden score, it either swamps them all into one value (the query reads the plain mean of
# values it must not see) or, when the kernel adds in float32 a float16 `finfo.min` of only -65504, merely
# shifts them, so the query attends as if there were no mask at all. The package passes boolean masks and
# zeroes fully hidden rows itself, so its rows (the last ones above) read the same on every backend.

# %%
for line in precision.summarize_fused(fused_rows):
    print(line)

# %% [markdown]
# **Trap 3: rounding the scores.** bfloat16 keeps 8 significant bits: near 1000 it can only count in steps
# of 4, so scores of 1000 and 1001 become the same number, and the softmax works on rounded differences.
# The table rounds scores of growing size to bfloat16 and float16 and compares the weights with float32
# ones.

# %%
print(f"{'score std':>10} {'max weight error, bfloat16':>27} {'float16':>9}")
for row in precision.score_resolution():
    print(f"{row.scale:>10g} {row.bfloat16_error:>27.4f} {row.float16_error:>9.4f}")

# %% [markdown]
# Small scores survive rounding; large ones do not, and float16 overflows to `inf` (a NaN weight) where
# bfloat16 still holds a number. The $1/\sqrt{d}$ scale of Chapter 2 keeps scores small, which is one more
# reason it is there; computing the softmax itself in float32, as autocast and the package do, protects the
# exponentials but cannot restore bits the scores already lost.
#
# ## 6. Decoding
#
# ### Exercise 4 — batched greedy decoding with both caches (3 points)
#
# Greedy decoding writes, at every step, the most likely next word, until EOS. Write
# `greedy_decode(model, src, bos_id, eos_id, max_new_tokens)` for a padded batch `src` `(B, Ts)`, using the
# two caches of Chapter 3 through the package's model:
#
# * `memory, memory_mask = model.encode(src)`, once for the whole batch;
# * `cache = model.new_cache()`: per decoder layer, a static cache for the cross-attention keys and
#   values (filled at the first step) and a growing cache for the self-attention ones;
# * each step: `hidden = model.decode(new_tokens, memory, memory_mask, cache=cache)` with `new_tokens`
#   of shape `(N, 1)`, **only the newest token** of each row (the cache holds the earlier ones; feeding
#   the whole prefix again would add it twice); `model.logits(hidden[:, -1])` gives `(N, V)` scores;
# * a sentence ends when it writes `eos_id`, or after `max_new_tokens` tokens. Finished sentences may stay
#   in the batch (ignore what they write) or leave it: `cache.reorder(keep)` keeps the rows `keep` of every
#   cache, and `memory`, `memory_mask` and your tokens must be cut the same way.
#
# Return a list of `B` lists of token ids, without BOS and EOS. The grader compares each sentence with
# slow, uncached decoding (every sentence alone, its whole prefix run through `model(...)` at every step),
# and counts what your loop feeds the decoder. `model.next_token_logits` and the package's `decode`
# module would do it for you and are off limits.

# %% nbgrader={"grade": false, "grade_id": "greedy_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
@torch.no_grad()
def greedy_decode(model, src, bos_id, eos_id, max_new_tokens):
    """Greedy decoding of src (B, Ts) with both caches -> B lists of ids (no BOS, no EOS)."""
    ### BEGIN SOLUTION
    encoded, encoded_mask = model.encode(src)  # once for the whole batch
    kv_cache = model.new_cache()  # per layer: the static cross K/V and the growing self K/V
    outputs = [[] for _ in range(src.shape[0])]
    rows = list(range(src.shape[0]))  # the sentence each row of the batch belongs to
    token = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    step = 0
    while rows and step < max_new_tokens:
        hidden = model.decode(token, encoded, encoded_mask, cache=kv_cache)  # (N, 1, D): the newest token only
        token = model.logits(hidden[:, -1]).argmax(dim=-1, keepdim=True)  # (N, 1)
        keep = [i for i, value in enumerate(token[:, 0].tolist()) if value != eos_id]
        for i in keep:
            outputs[rows[i]].append(int(token[i, 0]))
        if len(keep) < len(rows):  # drop the finished sentences, from the caches too
            index = torch.tensor(keep, dtype=torch.long, device=src.device)
            kv_cache.reorder(index)
            token, encoded, encoded_mask = token[index], encoded[index], encoded_mask[index]
            rows = [rows[i] for i in keep]
        step += 1
    return outputs
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "greedy_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Small untrained models (their sentences end at different steps) on padded batches: every sentence must
# equal its uncached greedy decoding. BOS or EOS in the output and writing past EOS are named.
grading.check("greedy_tests", greedy_decode)
### BEGIN HIDDEN TESTS
grading.record("greedy_tests", greedy_decode)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "greedy_cache_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The same, and the caches in use: one new position per decoder call, the source encoded once, the memory's
# cross-attention keys projected once per layer.
grading.check("greedy_cache_tests", greedy_decode)
### BEGIN HIDDEN TESTS
grading.record("greedy_cache_tests", greedy_decode)
### END HIDDEN TESTS

# %% [markdown]
# Your decoder on the trained model, against the package's greedy search, on validation sentences:

# %%
tgt_tok, src_tok = corpus.tgt_tokenizer, corpus.src_tokenizer
sample = [src_tok.encode(s) + [src_tok.eos_id] for s, _ in corpus.val[: 50 if FAST else 200]]
your_decoder = prefer_mine(greedy_decode, reference.greedy_decode)
yours = [your_decoder(trained, torch.tensor([ids], device=dev), tgt_tok.bos_id, tgt_tok.eos_id, len(ids) + 10)[0]
         for ids in sample[:10]]
batch_src = decoding.pad_sources(sample, tgt_tok.pad_id).to(dev)
yours_batched = your_decoder(trained, batch_src, tgt_tok.bos_id, tgt_tok.eos_id, batch_src.shape[1] + 10)
package = decoding.package_greedy(trained, sample, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id)
print(f"{sum(a == b for a, b in zip(yours_batched, package, strict=True))} of {len(sample)} sentences identical "
      f"(one padded batch); the first 10 decoded alone: {sum(a == b for a, b in zip(yours, package[:10], strict=True))} "
      "identical")
for ids, out in list(zip(sample, package, strict=True))[:3]:
    print(f"  {src_tok.decode(ids)}  ->  {tgt_tok.form.detokenize(tgt_tok.decode(out))}")

# %% [markdown]
# ### What the caches buy, measured
#
# The package's decoder runs greedy search and beam search (4 hypotheses per sentence, ranked by
# length-normalised log-probability) with both caches, or recomputing every prefix at every step. The
# outputs must be identical; the times are medians of repeated runs on this machine.

# %%
speed = decoding.cached_vs_uncached(trained, sample[:100], bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id,
                                    repeats=1 if FAST else 3)
print(f"{'search':<8} {'sentences':>9} {'cached s':>9} {'uncached s':>11} {'speedup':>8}  identical outputs")
for row in speed:
    print(f"{row.search:<8} {row.sentences:>9} {row.cached_seconds:>9.3f} {row.uncached_seconds:>11.3f} "
          f"{row.speedup:>7.2f}x  {row.identical}")

# %% [markdown]
# The caches change the work, not the result: every output token is the same. How much they save grows
# with the length of the sentences and the size of the model (Chapter 3 counted the projections); on these
# short sentences and a small model, part of each step is overhead that no cache removes.
#
# ## 7. Looking inside
#
# Every decoder layer has its own cross-attention, and every head in it its own map. The maps below are
# read in one pass over a validation sentence's reference translation: row $j$ is the step that writes
# target word $j$ (it has read the words before it). All panels share one 0–1 colour scale.

# %%
aset = attention_maps.alignment_set(chapter_data, run.analysis_pairs, model_cfg.max_len)
models = [(snap.step, training.model_at(session, snap)) for snap in log.snapshots]
maps = attention_maps.history(models, aset)
final = attention_maps.writes(maps.maps[-1])
example = 0
layers, heads = final[example].shape[:2]
heatmap_panels(final[example].reshape(layers * heads, *final[example].shape[2:]), aset.target_tokens[example],
               aset.source_tokens[example], titles=[f"layer {i + 1}, head {j + 1}" for i in range(layers)
                                                    for j in range(heads)], ncols=heads,
               suptitle=f"cross-attention after {maps.steps[-1]} steps, one map per decoder layer and head",
               xlabel="source word", ylabel="target word written")
plt.show()

# %% [markdown]
# ### Exercise 5 — alignment error rate (2 points)
#
# A word alignment says which source word each target word translates. Reading one off a map: link each
# target word $t$ (a row) to the source word its row attends to most, $A = \{(\arg\max_s w_{ts},\ t)\}$.
# Against the gold links $S$, the **alignment error rate** (Och & Ney, 2003, with every gold link counted
# as sure) is
# $$\mathrm{AER} = 1 - \frac{2\,|A \cap S|}{|A| + |S|},$$
# 0 when the links are exactly the gold ones, 1 when none agrees. For a corpus, add up $|A \cap S|$, $|A|$
# and $|S|$ over all sentences first, then divide.
#
# Write `alignment_error_rate(attentions, gold)`: `attentions` a list of `(Tt, Ts)` numpy arrays (one map
# per sentence), `gold` a list of lists of `(source index, target index)` pairs. Return a float. The
# worked example of the first test is `grading.EXAMPLE_ATTENTION` with gold links `grading.EXAMPLE_GOLD`:
# work out its AER by hand first.

# %% nbgrader={"grade": false, "grade_id": "aer_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def alignment_error_rate(attentions, gold):
    """Corpus AER of argmax links: attentions, a list of (Tt, Ts) arrays; gold, lists of (s, t) pairs."""
    ### BEGIN SOLUTION
    hits = predicted = sure = 0
    for weights, links in zip(attentions, gold, strict=True):
        found = {(int(s), t) for t, s in enumerate(np.argmax(weights, axis=1))}
        wanted = {tuple(link) for link in links}
        hits, predicted, sure = hits + len(found & wanted), predicted + len(found), sure + len(wanted)
    return 1.0 - 2.0 * hits / (predicted + sure)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "aer_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The worked example and single random sentences. Swapped (target, source) links, an argmax over the wrong
# axis, and 1 - recall or 1 - precision instead of AER are named.
grading.check("aer_tests", alignment_error_rate)
### BEGIN HIDDEN TESTS
grading.record("aer_tests", alignment_error_rate)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "aer_corpus_tests", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Corpora of sentences of different lengths: the counts are added up before dividing (a mean of sentence
# AERs is named).
grading.check("aer_corpus_tests", alignment_error_rate)
### BEGIN HIDDEN TESTS
grading.record("aer_corpus_tests", alignment_error_rate)
### END HIDDEN TESTS

# %% [markdown]
# ### Which head aligns?
#
# Your AER function scores every head of the final model on the analysis sentences, in the two readings
# of a map: row $j$ as the step that **writes** word $j$ (the usual reading), and row $j + 1$ as the step
# that has just **read** it. For scale, a baseline that reads no model: target word $j$ linked to the
# source word at the same relative position (the diagonal).

# %%
aer = prefer_mine(alignment_error_rate, reference.alignment_error_rate)
if aset.gold is None:
    print("no gold alignments for this data: the alignment measurements are skipped")
else:
    grids = {name: attention_maps.aer_grid(rows, aset.gold, aer)
             for name, rows in (("writes", final), ("reads", attention_maps.reads(maps.maps[-1])))}
    for name, grid in grids.items():
        layer, head, best = grid.best_head()
        print(f"reading '{name}': AER per head (rows = layers, columns = heads)\n{grid.per_head}")
        print(f"  heads averaged per layer: {grid.per_layer}; everything averaged: {grid.average:.3f}; "
              f"best head: layer {layer + 1}, head {head + 1} with {best:.3f}")
    diagonal = aer(attention_maps.diagonal_maps(aset), aset.gold)
    better = min(grids, key=lambda name: grids[name].best_head()[2])
    best = grids[better].best_head()[2]
    print(f"diagonal baseline: {diagonal:.3f}; the best head of all, in the reading '{better}': {best:.3f}, "
          f"{'below' if best < diagonal else 'not below'} the baseline")

# %% [markdown]
# ### Watching the alignment form
#
# The same measurements at every checkpoint kept during training: the AER of the best head, of each
# layer's head average and of the average of everything, and the mean entropy of the attention rows
# (Chapter 2's measure, in nats) per layer, against the entropy of attention spread evenly over the source.

# %%
rows_per_step = [attention_maps.writes(step_maps) for step_maps in maps.maps]
entropy = np.stack([attention_maps.mean_entropy(rows) for rows in rows_per_step])  # (checkpoints, L, h)
figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
if aset.gold is not None:
    over_time = [attention_maps.aer_grid(rows, aset.gold, aer) for rows in rows_per_step]
    curves = {"best head": [g.best_head()[2] for g in over_time], "all averaged": [g.average for g in over_time]}
    curves.update({f"layer {i + 1} (heads averaged)": [g.per_layer[i] for g in over_time] for i in range(layers)})
    line_chart(maps.steps, curves, xlabel="optimizer step", ylabel="AER (0 = the gold alignment)",
               title="cross-attention becomes an alignment", ax=axes[0])
else:
    axes[0].axis("off")
line_chart(maps.steps, {f"layer {i + 1}": entropy[:, i].mean(axis=1) for i in range(layers)},
           predictions={"uniform over the source": [attention_maps.uniform_entropy(rows_per_step[0])] * len(maps.steps)},
           xlabel="optimizer step", ylabel="mean row entropy (nats)", title="and the spotlight narrows", ax=axes[1])
plt.show()
print(f"{'step':>6} {'exact match':>12} " + " ".join(f"{'H layer ' + str(i + 1):>10}" for i in range(layers))
      + ("" if aset.gold is None else f" {'AER best':>9} {'AER all':>8}"))
for k, snap in enumerate(log.snapshots):
    aer_part = "" if aset.gold is None else f" {over_time[k].best_head()[2]:>9.3f} {over_time[k].average:>8.3f}"
    print(f"{snap.step:>6} {snap.exact_match:>11.1f}% " + " ".join(f"{h:>10.3f}" for h in entropy[k].mean(axis=1))
          + aer_part)

# %% [markdown]
# **Is attention alignment the same thing as word alignment?** Answer from your tables. The model was
# never shown an alignment: whatever structure its maps have, it found because attending to some source
# words helps predict the next target word. Three things to check. Does the best head beat the diagonal
# baseline, which knows nothing but sentence lengths? Do the heads agree, or does each layer have one
# aligning head while the others look elsewhere (the sentence's end, the verb of the clause)? And which
# reading fits: the word being written, or the word just read? The answers are properties of this trained
# model, not of attention in general. Even a well-aligned head is evidence of where information flowed,
# not a word alignment by definition: the memory vector of a source word has already mixed in its
# neighbours through the encoder's self-attention, so a row can do its job while pointing next to the gold
# word, and averaging heads can blur an alignment that one head holds sharply.
#
# ### See it: the checkpoint slider
#
# Slide through the checkpoints kept during training and watch one validation sentence's map sharpen.
# Pick a layer and a head (or their mean); gold links are outlined, and the lines under the map give its
# entropy and its AER.

# %%
make_checkpoint_widget(maps, sentence=example)

# %% [markdown]
# ### See it: your own sentence
#
# Type a sentence (in the training text's language; words the model never saw are read as `<unk>` and
# listed), or pick one from the list. The translation appears with its cross-attention map for the chosen
# layer and head.

# %%
examples = [source for source, _ in corpus.val[:8]]
if run.source == "synthetic":
    examples = ["today the man sees the dog .", "the woman thinks that the child reads the book ."] + examples
make_translation_widget(trained, src_tok, tgt_tok, examples)

# %% [markdown]
# ## 8. Honest evaluation
#
# A score means something only if nothing was tuned on the data it is computed on. So: every choice is made
# on the **validation** split (here, greedy against beam search), and the **test** split is decoded once,
# at the end, with the chosen setting. Three numbers, each with its definition:
#
# * **sacreBLEU**: BLEU on the text as written (detokenized, cased), computed by sacreBLEU, with the
#   signature that says exactly how (tokenizer, casing, smoothing, version): two papers' BLEU are
#   comparable only when their signatures match;
# * **chrF**: an F-score over character n-grams; it needs no word tokenizer and gives partial credit to a
#   word with the wrong ending;
# * **tokenized BLEU**: lowercased BLEU, the figure most tutorials and older tables report, printed for
#   comparison with them.

# %%
val_pairs = corpus.val[: 100 if FAST else len(corpus.val)]
choices = {beam: evaluation.score_pairs(trained, src_tok, tgt_tok, session.cfg, val_pairs, beam_size=beam)
           for beam in (1, 4)}
print(f"{'validation':<10} {'sacreBLEU':>9} {'chrF':>6} {'BLEU (tok)':>10} {'exact':>7} {'seconds':>8}")
for beam, scores in choices.items():
    print(f"{'greedy' if beam == 1 else f'beam {beam}':<10} {scores.sacrebleu:>9.2f} {scores.chrf:>6.2f} "
          f"{scores.bleu_tok:>10.2f} {scores.exact_match:>6.1f}% {scores.seconds:>8.2f}")
chosen = max(choices, key=lambda beam: (choices[beam].sacrebleu, -beam))
print(f"chosen on validation: {'greedy' if chosen == 1 else f'beam {chosen}'}")

# %% [markdown]
# And now, once, the test split: the package's `evaluate` decodes it with the saved checkpoint and the
# chosen setting. (For Multi30k it is the published test set named in the settings.)

# %%
test_split = evaluation.TestSplit(run, run_dir)
report = test_split.score(chosen)
print(report.table())
for warning in report.warnings:
    print("note:", warning)
print(f"\nhardware: {hardware_info(DEVICE)}")
print(f"this notebook ran for {time.perf_counter() - STARTED:.0f} s (fast mode: {FAST})")

# %% [markdown]
# Compare the test scores with the validation scores of the same setting: with nothing tuned on the test
# split, they differ only by the luck of which sentences each split holds. The synthetic task is small and
# regular; on Multi30k the same notebook, with the GPU preset, gives figures you can compare with published
# ones, signature for signature.
#
# ## Summary
#
# * An encoder layer is two pre-norm residual blocks (self-attention, feed-forward); a decoder layer is
#   three (causal self-attention, cross-attention to the memory, feed-forward). Assembled from these, the
#   model computed the package's logits to rounding, with your attention or the package's.
# * The tokenizer is fitted on the training split only: an all-splits vocabulary or subword model carries
#   information from the held-out text, and the leak was measured.
# * The loss averages over real target tokens only; label smoothing moves `eps` of the target probability
#   to a uniform spread. Warm-up keeps the first steps small; on a GPU, bfloat16 autocast with the
#   softmax in float32.
# * Masks in low precision: `-inf` makes fully hidden rows NaN, finite fills make them read what they must
#   not, and some fills do not fit the dtype at all; fused kernels differ on additive masks. A boolean mask
#   and an explicit rule for empty rows behave the same everywhere.
# * Greedy decoding with both caches gives exactly the tokens of uncached decoding, for less work.
# * Cross-attention learns to point at source words without ever seeing an alignment; AER measures how
#   close it gets, head by head, and entropy shows the spotlight narrowing as it learns.
# * A trustworthy score: chosen on validation, tested once, reported as sacreBLEU with its signature,
#   chrF and tokenized BLEU, with the hardware it ran on.
#
# **Check yourself**
#
# 1. In a pre-norm decoder layer, what is normalised before the cross-attention: the decoder's input, the
#    memory, or both? Why?
# 2. A batch has 3 sentences with 5, 2 and 4 real target tokens. By how many tokens do you divide the
#    summed loss?
# 3. With `eps = 0.1` and `V = 1000`, what probability does the smoothed target give the right word? And
#    each other word?
# 4. Why does a fully masked row come out NaN with `-inf` and uniform with `finfo.min`? Which is worse
#    for training, and why does the package return zeros?
# 5. With a growing self-attention cache, what goes wrong if you feed the whole prefix at every step?
# 6. A head has an AER of 0.2. Does that mean the model translates word by word?
