"""The graded exercises of Chapter 6, "Translation", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is. Each test cell calls
``grading.check("<grade_id>", student_function)`` and, in its hidden part, ``grading.record(...)``.
Each exercise and the mistakes it is built to catch:

* ``encoder_layer_tests`` (with gradients): pre-norm residual blocks ``x + f(norm(x))`` (post-norm, a
  missing residual, a missing norm, one norm for both blocks and an ignored mask are named);
* ``decoder_layer_tests`` (with gradients): the order self-attention → cross-attention → feed-forward,
  keys and values of the cross-attention from the memory, residuals and norms;
  ``decoder_mask_tests``: the causal mask on self-attention and the memory's padding mask on
  cross-attention (each one forgotten, and the two swapped, are named);
* ``loss_tests`` (with gradients): the mean over real target tokens only (padding counted, a sum and
  a mean of sentence means are named); ``label_smoothing_tests``: PyTorch's definition of label
  smoothing (forgotten, a sum instead of a mean, fairseq's and the Annotated Transformer's conventions named);
* ``greedy_tests``: batched greedy decoding equal to uncached decoding, sentence by sentence;
  ``greedy_cache_tests``: the same with both caches in use (one new position per step, the memory
  projected once, the batch encoded once);
* ``aer_tests`` and ``aer_corpus_tests``: the alignment error rate of argmax links (a swapped link order,
  the wrong axis, recall or precision alone, and the mean of sentence AERs are named).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from xattn_edu.chapters.support.checks import as_array, as_pair, assert_close_to_reference
from xattn_edu.chapters.support.exercise import Case, Exercise, Exercises, Wrong, expect_value
from xattn_edu.chapters.support.gradients import with_gradients
from xattn_edu.chapters.support.values import Raised
from xattn_edu.chapters.translation import reference as ref
from xattn_edu.chapters.translation.assembly import package_attention
from xattn_edu.chapters.translation.tiny import BOS, EOS, PAD, tiny_config, tiny_layer, tiny_translator
from xattn_edu.nn.masks import causal_mask, decoder_self_mask, padding_mask
from xattn_edu.nn.model import DecoderLayer, EncoderLayer, Seq2Seq

REFERENCE = "xattn_edu.chapters.translation.reference"
# The package's attention runs inside the modules the layer exercises hand over: allowed there. The
# layers' own forward passes (and the residual blocks) are the answer: forbidden.
MODEL_INSIDE = ("xattn_edu.nn.attention", "torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax",
                "torch.nn.functional.scaled_dot_product_attention")
LAYER_FORBIDDEN = (REFERENCE, "xattn_edu.nn.model")
LOSS_FORBIDDEN = (REFERENCE, "torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss",
                  "torch.nn.functional.kl_div", "xattn_edu.translate.train")
LOSS_ALLOWED = ("torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax")
DECODE_FORBIDDEN = (REFERENCE, "xattn_edu.translate.decode", "xattn_edu.nn.model.Seq2Seq.next_token_logits")
AER_FORBIDDEN = (REFERENCE, "xattn_edu.translate.metrics")
GRADIENT_HINT = ("The output is right but its gradient is not: no .detach(), no numpy round trip, no in-place "
                 "writes into x or the memory.")


def _normal(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


# ----------------------------------------------------------------------------- Exercise 1: the encoder layer

def _encoder_case(seed: int, batch: int, length: int, pad_lengths: tuple[int, ...] | None = None) -> Case:
    g = torch.Generator().manual_seed(seed)
    layer, x = tiny_layer("encoder", seed), _normal(g, batch, length, 8)
    lengths = torch.tensor(pad_lengths or [length] * batch)
    mask = padding_mask(lengths=lengths, max_len=length)  # (B, 1, 1, Ts)
    label = f"`encoder_layer(layer, x, mask, attention)` with x {tuple(x.shape)} and source lengths {lengths.tolist()}"
    return Case(label, (layer, x, mask, package_attention))


def _block(x: Tensor, sublayer, norm, style: str = "pre") -> Tensor:
    """One residual block as written right ("pre": x + f(norm(x))) or in a typical wrong way."""
    if style == "post":
        return norm(x + sublayer(x))
    if style == "no residual":
        return sublayer(norm(x))
    return x + sublayer(x if style == "no norm" else norm(x))


def _encoder_variants(layer: EncoderLayer, x: Tensor, mask: Tensor, attention) -> dict[str, Tensor]:
    """Outputs of the typical wrong encoder layers, keyed by the message that explains each."""
    norm1, norm2 = layer.attn_block.norm, layer.ff_block.norm

    def wrong(style: str = "pre", block_mask: Tensor | None = mask, ff_norm=norm2) -> Tensor:
        h = _block(x, lambda v: attention(v, layer.self_attn, None, block_mask), norm1, style)
        return _block(h, layer.ff, ff_norm, style)

    return {
        "post-norm: norm(x + f(x)). These layers are pre-norm: x + f(norm(x)), the sum itself is not normalised.":
            wrong("post"),
        "the residual connections are missing: each block returns x + f(norm(x)), not f(norm(x)).":
            wrong("no residual"),
        "the layer norms are missing: each block normalises its input before the sublayer, x + f(norm(x)).":
            wrong("no norm"),
        "the padding mask is ignored: pass `mask` to the attention, so no query attends to padding.":
            wrong(block_mask=None),
        "both blocks use the first norm: the feed-forward block has its own, layer.ff_block.norm.":
            wrong(ff_norm=norm1),
    }


def _judge_layer(variants):
    def judge(case: Case, got: Any, expected: tuple) -> None:
        result, gradients = as_pair(expect_value(got, case, "the layer's output"), case.label,
                                    ("output", "gradients"))  # fmt: skip
        output = as_array(result, case.label)
        expected_output, expected_gradients = expected
        with torch.no_grad():
            mistakes = {message: wrong.numpy() for message, wrong in variants(*case.args).items()}
        assert_close_to_reference(output, expected_output, case.label, rtol=1e-7, atol=1e-9, mistakes=mistakes,
                                  hint="Each block is x + sublayer(norm(x)), in the order given.")
        for name, wanted in expected_gradients.items():
            assert_close_to_reference(as_array(gradients[name], name), wanted,
                                      f"the gradient of {case.label} with respect to {name}", rtol=1e-7,
                                      atol=1e-9, hint=GRADIENT_HINT)  # fmt: skip

    return judge


ENCODER_LAYER = Exercise(
    grade_id="encoder_layer_tests", title="Exercise 1 (the encoder layer)", name="encoder_layer",
    reference=ref.encoder_layer, judge=_judge_layer(_encoder_variants), run=with_gradients(wrt=("x",)),
    forbid=LAYER_FORBIDDEN, allow=MODEL_INSIDE,
    passed="two pre-norm residual blocks, the mask passed on, and the gradient matches",
    visible=lambda: [_encoder_case(1, 2, 5), _encoder_case(2, 3, 6, (6, 4, 2))],
    hidden=lambda rng: [_encoder_case(int(rng.integers(1 << 30)), 1, 1),
                        _encoder_case(int(rng.integers(1 << 30)), 4, 7, (7, 1, 5, 3)),
                        _encoder_case(int(rng.integers(1 << 30)), 2, 9, (9, 6))],
)


# ----------------------------------------------------------------------------- Exercise 2: the decoder layer

def _decoder_case(seed: int, batch: int, tgt_len: int, src_len: int, *, tgt_lengths: tuple[int, ...] | None = None,
                  src_lengths: tuple[int, ...] | None = None) -> Case:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    layer = tiny_layer("decoder", seed)
    x, memory = _normal(g, batch, tgt_len, 8), _normal(g, batch, src_len, 8)
    if tgt_lengths is None:
        self_mask = causal_mask(tgt_len)  # (1, 1, Tt, Tt)
    else:
        ids = padding_mask(lengths=torch.tensor(tgt_lengths), max_len=tgt_len)[:, 0, 0].long() * 5  # 0 = padding
        self_mask = decoder_self_mask(ids, pad_id=0)  # (B, 1, Tt, Tt): causal and target padding
    memory_mask = padding_mask(lengths=torch.tensor(src_lengths or [src_len] * batch), max_len=src_len)
    padding = ""
    if tgt_lengths is not None or src_lengths is not None:
        padding = (f", target lengths {list(tgt_lengths or [tgt_len] * batch)}, "
                   f"source lengths {list(src_lengths or [src_len] * batch)}")
    label = (f"`decoder_layer(layer, x, memory, self_mask, memory_mask, attention)` with x {tuple(x.shape)}, "
             f"memory {tuple(memory.shape)}{padding}")
    return Case(label, (layer, x, memory, self_mask, memory_mask, package_attention))


def _decoder_variants(layer: DecoderLayer, x: Tensor, memory: Tensor, self_mask: Tensor, memory_mask: Tensor,
                      attention) -> dict[str, Tensor]:  # fmt: skip
    """Outputs of the typical wrong decoder layers, keyed by the message that explains each."""

    def wrong(style="pre", order=("self", "cross"), context="memory", masks=(self_mask, memory_mask)) -> Tensor:
        keys = {"memory": memory, "decoder": None, "normalised memory": layer.cross_block.norm(memory)}[context]
        cross_mask = masks[0] if context == "decoder" else masks[1]
        blocks = {"self": (lambda v: attention(v, layer.self_attn, None, masks[0]), layer.self_block.norm),
                  "cross": (lambda v: attention(v, layer.cross_attn, keys, cross_mask), layer.cross_block.norm)}
        h = x
        for name in order:
            h = _block(h, *blocks[name], style)
        return _block(h, layer.ff, layer.ff_block.norm, style)

    variants = {}
    for message, change in (
        ("post-norm: norm(x + f(x)). These layers are pre-norm: x + f(norm(x)).", {"style": "post"}),
        ("the residual connections are missing: each block returns x + f(norm(x)), not f(norm(x)).",
         {"style": "no residual"}),
        ("the layer norms are missing: each block normalises its input first, x + f(norm(x)).", {"style": "no norm"}),
        ("cross-attention comes before self-attention: the order is self-attention, cross-attention, feed-forward.",
         {"order": ("cross", "self")}),
        ("the cross-attention reads the decoder's own positions: its keys and values come from `memory` "
         "(pass it as the context).", {"context": "decoder"}),
        ("the memory was normalised too: only the decoder's input to each block is normalised; the memory "
         "is already the encoder's normalised output.", {"context": "normalised memory"}),
        ("the self-attention has no mask: each target position may see the future. Pass `self_mask` to it.",
         {"masks": (None, memory_mask)}),
        ("the cross-attention has no mask: queries attend to the memory's padding. Pass `memory_mask` to it.",
         {"masks": (self_mask, None)}),
        ("the two masks are swapped: `self_mask` goes to the self-attention, `memory_mask` to the cross-attention.",
         {"masks": (memory_mask, self_mask)}),
    ):
        try:
            variants[message] = wrong(**change)
        except (ValueError, RuntimeError):  # a wrong mask may not even fit these shapes
            pass
    return variants


DECODER_LAYER = Exercise(
    grade_id="decoder_layer_tests", title="Exercise 2 (the decoder layer)", name="decoder_layer",
    reference=ref.decoder_layer, judge=_judge_layer(_decoder_variants), run=with_gradients(wrt=("x", "memory")),
    forbid=LAYER_FORBIDDEN, allow=MODEL_INSIDE,
    passed="self-attention, cross-attention to the memory and feed-forward, each a pre-norm residual block; "
           "gradients match",
    visible=lambda: [_decoder_case(3, 2, 4, 5), _decoder_case(4, 1, 6, 3)],
    hidden=lambda rng: [_decoder_case(int(rng.integers(1 << 30)), 3, 5, 7),
                        _decoder_case(int(rng.integers(1 << 30)), 2, 1, 4),
                        _decoder_case(int(rng.integers(1 << 30)), 2, 6, 6)],
)
DECODER_MASKS = Exercise(
    grade_id="decoder_mask_tests", title="Exercise 2 (masks in the decoder layer)", name="decoder_layer",
    reference=ref.decoder_layer, judge=_judge_layer(_decoder_variants), run=with_gradients(wrt=("x", "memory")),
    forbid=LAYER_FORBIDDEN, allow=MODEL_INSIDE,
    passed="the causal mask and the memory's padding mask each reach their attention",
    visible=lambda: [_decoder_case(5, 3, 5, 6, tgt_lengths=(5, 3, 4), src_lengths=(6, 2, 4))],
    hidden=lambda rng: [_decoder_case(int(rng.integers(1 << 30)), 2, 5, 5, tgt_lengths=(5, 2), src_lengths=(3, 5)),
                        _decoder_case(int(rng.integers(1 << 30)), 4, 3, 8, tgt_lengths=(3, 1, 2, 3),
                                      src_lengths=(8, 1, 5, 7))],
)


# ----------------------------------------------------------------------------- Exercise 3: the loss

def _loss_case(seed: int, batch: int, length: int, vocab: int, lengths: tuple[int, ...],
               smoothing: float | None = None) -> Case:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * _normal(g, batch, length, vocab)
    targets = torch.randint(1, vocab, (batch, length), generator=g)
    targets[torch.arange(length)[None, :] >= torch.tensor(lengths)[:, None]] = PAD
    kwargs = {} if smoothing is None else {"label_smoothing": smoothing}
    extra = "" if smoothing is None else f", label_smoothing={smoothing}"
    label = (f"`translation_loss(logits, targets, pad_id=0{extra})` with logits {tuple(logits.shape)} and "
             f"{list(lengths)} real tokens per sentence")
    return Case(label, (logits, targets, PAD), kwargs)


def _loss_variants(logits: Tensor, targets: Tensor, pad_id: int, label_smoothing: float = 0.0) -> dict[str, Tensor]:
    """Losses of the typical wrong implementations, keyed by the message that explains each."""
    eps, vocab = label_smoothing, logits.shape[-1]
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(-1, targets[..., None])[..., 0]  # (B, Tt)
    real = targets != pad_id
    right = ref.translation_loss(logits, targets, pad_id, label_smoothing)
    per_token = (1 - eps) * nll - eps * log_probs.mean(-1)
    others = -(log_probs.sum(-1) - log_probs[..., pad_id]) - nll  # sum of -log p over the classes but target and pad
    variants = {
        "the padding positions are averaged in: divide by the number of real tokens, leaving padding out.":
            per_token.mean(),
        "this is the sum over the real tokens; the loss is their mean (divide by how many there are).":
            per_token[real].sum(),
        "this is the mean of each sentence's mean: every real token should weigh the same, so sum all real "
        "tokens' losses and divide by their number.":
            torch.stack([row[mask].mean() for row, mask in zip(per_token, real, strict=True) if mask.any()]).mean(),
    }
    if eps:
        variants.update({
            "label_smoothing is ignored: mix (1 - eps) of the usual loss with eps of the loss against the uniform "
            "distribution.": ref.translation_loss(logits, targets, pad_id),
            "the uniform part sums -log p over the classes; it is their mean (eps is spread as eps / V per class).":
                ((1 - eps) * nll - eps * log_probs.sum(-1))[real].mean(),
            "this is fairseq's convention (eps / (V - 1) on every other class); this course uses PyTorch's: "
            "(1 - eps) on the target and eps / V on every class, the target included.":
                ((1 - eps - eps / (vocab - 1)) * nll - eps / (vocab - 1) * log_probs.sum(-1))[real].mean(),
            "this is the Annotated Transformer's convention (no mass on the target's or padding's class); this "
            "course uses PyTorch's: (1 - eps) on the target and eps / V on every class.":
                ((1 - eps) * nll + eps / (vocab - 2) * others)[real].mean(),
        })
    return {message: value for message, value in variants.items() if not torch.isclose(value, right)}


def _judge_loss(case: Case, got: Any, expected: tuple) -> None:
    result, gradients = as_pair(expect_value(got, case, "the loss"), case.label, ("loss", "gradients"))
    loss = as_array(result, case.label)
    if loss.shape != ():
        raise Wrong(f"{case.label} should return one number (a 0-d tensor), got shape {loss.shape}: average over "
                    "the real tokens.")
    with torch.no_grad():
        mistakes = {message: value.numpy() for message, value in _loss_variants(*case.args, **case.kwargs).items()}
    expected_loss, expected_gradients = expected
    assert_close_to_reference(loss, expected_loss, case.label, rtol=1e-9, atol=1e-12, mistakes=mistakes,
                              hint="loss = mean over real tokens of (1 - eps)(-log p[target]) + eps mean_c(-log p[c]).")
    assert_close_to_reference(as_array(gradients["logits"], "gradient"), expected_gradients["logits"],
                              f"the gradient of {case.label} with respect to the logits", rtol=1e-7, atol=1e-12,
                              hint="The loss is right but its gradient is not: keep it a torch computation "
                                   "(no .item(), numpy or .detach() on the way).")


_LOSS = dict(name="translation_loss", reference=ref.translation_loss, judge=_judge_loss,
             run=with_gradients(wrt=("logits",)), forbid=LOSS_FORBIDDEN, allow=LOSS_ALLOWED)
LOSS = Exercise(
    grade_id="loss_tests", title="Exercise 3 (the loss, padding ignored)", **_LOSS,
    passed="the mean cross-entropy over real tokens, padding left out, with the right gradient",
    visible=lambda: [_loss_case(6, 2, 4, 5, (4, 4)), _loss_case(7, 3, 5, 7, (5, 2, 3))],
    hidden=lambda rng: [_loss_case(int(rng.integers(1 << 30)), 4, 6, 11, (6, 1, 3, 5)),
                        _loss_case(int(rng.integers(1 << 30)), 1, 3, 4, (2,)),
                        _loss_case(int(rng.integers(1 << 30)), 3, 7, 9, (7, 7, 1), smoothing=0.0)],
)
LABEL_SMOOTHING = Exercise(
    grade_id="label_smoothing_tests", title="Exercise 3 (label smoothing)", **_LOSS,
    passed="label smoothing as PyTorch defines it, over real tokens only, with the right gradient",
    visible=lambda: [_loss_case(8, 2, 4, 6, (4, 2), smoothing=0.1), _loss_case(9, 3, 3, 5, (3, 3, 1), smoothing=0.3)],
    hidden=lambda rng: [_loss_case(int(rng.integers(1 << 30)), 4, 6, 12, (6, 4, 2, 5), smoothing=0.1),
                        _loss_case(int(rng.integers(1 << 30)), 2, 5, 3, (5, 1), smoothing=0.5),
                        _loss_case(int(rng.integers(1 << 30)), 3, 4, 8, (4, 3, 4), smoothing=0.9)],
)


# ----------------------------------------------------------------------------- Exercise 4: greedy decoding

class _DecodingCounter:
    """Counts, while decoding runs, what a cached decoding loop must do once and what once per step.

    ``decoder_inputs``: the number of target positions fed at each call of the decoder; ``encoder_runs``:
    how often a source batch was embedded; ``memory_projections``: calls of the cross-attention key
    projection, summed over the decoder layers.
    """

    def __init__(self, model: Seq2Seq) -> None:
        self.model = model
        self.counts = {"decoder_inputs": [], "encoder_runs": 0, "memory_projections": 0}
        self._handles = []

    def __enter__(self) -> _DecodingCounter:
        def fed(_module, inputs):
            self.counts["decoder_inputs"].append(int(inputs[0].shape[-1]))

        def encoded(_module, _inputs):
            self.counts["encoder_runs"] += 1

        def projected(_module, _inputs):
            self.counts["memory_projections"] += 1

        self._handles = [self.model.tgt_embed.register_forward_pre_hook(fed),
                         self.model.src_embed.register_forward_pre_hook(encoded)]
        self._handles += [layer.cross_attn.k_proj.register_forward_pre_hook(projected)
                          for layer in self.model.decoder_layers]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()


def _as_token_lists(result: Any) -> Any:
    """A returned batch as lists of ints when it is a list of sequences; anything else as it is."""
    if isinstance(result, list | tuple) and all(isinstance(row, list | tuple | Tensor | np.ndarray) for row in result):
        return [[int(token) for token in row] for row in result]
    return result


def _run_decoding(implementation: Any, case: Case) -> tuple[Any, dict]:
    """Decode the case's batch with ``implementation``; return its output and the counts of what it ran."""
    model = case.args[0]
    with _DecodingCounter(model) as counter:
        result = implementation(*case.args)
    return _as_token_lists(result), counter.counts


@torch.no_grad()
def _eos_margins(model: Seq2Seq, src: Tensor, steps: int) -> np.ndarray:
    """(B, steps): how far the EOS logit stays below the best other logit at each step, EOS never chosen."""
    memory, memory_mask = model.encode(src)
    cache, token, margins = model.new_cache(), torch.full((src.shape[0], 1), BOS), []
    for _ in range(steps):
        logits = model.logits(model.decode(token, memory, memory_mask, cache=cache)[:, -1])  # (B, V)
        others = logits.clone()
        others[:, EOS] = -torch.inf
        margins.append((others.max(dim=-1).values - logits[:, EOS]).numpy())
        token = others.argmax(dim=-1, keepdim=True)
    return np.stack(margins, axis=1)


@torch.no_grad()
def varied_translator(seed: int, src: Tensor, max_new_tokens: int, layers: int = 2) -> Seq2Seq:
    """A :func:`tiny_translator` tuned so that the sentences of ``src`` end at varied steps.

    Untrained, every sentence's first step looks alike, so EOS first is pushed away from the first step's
    hidden state. Then the level: the EOS logit moves one for one with it and the other tokens do not depend
    on it, so one decoding with EOS never chosen tells, for any level, the step at which each sentence ends
    (the first step whose margin, best other logit minus the EOS logit, is below the level). The level kept
    gives the most different lengths, counting ``max_new_tokens`` twice.
    """
    model = tiny_translator(seed, layers=layers, eos_level=0.0)
    memory, memory_mask = model.encode(src)
    first = model.decode(torch.full((src.shape[0], 1), BOS), memory, memory_mask)[:, -1].mean(dim=0)  # (D,)
    first[0] = 0.0  # the constant coordinate carries the level
    model.generator.weight[EOS] -= 3.0 * first / first.norm() ** 2
    margins = _eos_margins(model, src, max_new_tokens)
    cuts = np.unique(margins)
    candidates = np.concatenate([[cuts[0] - 1.0], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1.0]])

    def spread(level: float) -> int:
        lengths = {int(np.argmax(row)) if row.any() else max_new_tokens for row in margins < level}
        return len(lengths) + (max_new_tokens in lengths)

    model.generator.weight[EOS, 0] = float(max(candidates, key=lambda level: (spread(level), -abs(level))))
    return model


def _decoding_case(seed: int, batch: int, src_len: int, max_new_tokens: int, lengths: tuple[int, ...] | None = None,
                   layers: int = 2) -> Case:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, tiny_config().src_vocab, (batch, src_len), generator=g)
    lengths = lengths or (src_len,) * batch
    src[torch.arange(src_len)[None, :] >= torch.tensor(lengths)[:, None]] = PAD
    model = varied_translator(seed, src, max_new_tokens, layers)
    label = (f"`greedy_decode(model, src, bos_id=1, eos_id=2, max_new_tokens={max_new_tokens})` on {batch} sources of "
             f"lengths {list(lengths)} ({layers} decoder layers)")
    return Case(label, (model, src, BOS, EOS, max_new_tokens))


def _uncached(case: Case) -> list[list[int]]:
    return ref.greedy_decode_uncached(*case.args)


def _check_tokens(case: Case, tokens: Any) -> None:
    """Wrong unless ``tokens`` are the uncached decoding of the case, sentence by sentence."""
    model, src, bos, eos, max_new = case.args
    wanted = _uncached(case)
    if not isinstance(tokens, list) or len(tokens) != len(wanted) or \
            not all(isinstance(row, list) for row in tokens):
        raise Wrong(f"{case.label} should return a list of {len(wanted)} lists of token ids, one per source "
                    f"sentence; got {type(tokens).__name__}.")
    for number, (row, right) in enumerate(zip(tokens, wanted, strict=True), start=1):
        if row == right:
            continue
        where = f"{case.label}: sentence {number}"
        if row and row[0] == bos:
            raise Wrong(f"{where} starts with BOS ({bos}); leave BOS out of the output.")
        if eos in row:
            raise Wrong(f"{where} contains EOS ({eos}); stop the sentence there and leave EOS out of the output.")
        if len(row) > max_new:
            raise Wrong(f"{where} has {len(row)} tokens, more than max_new_tokens = {max_new}.")
        if row[: len(right)] == right:
            raise Wrong(f"{where} goes on after the model wrote EOS (uncached decoding stops after {len(right)} "
                        "tokens): a finished sentence writes nothing more.")
        first = next((i for i, (a, b) in enumerate(zip(row, right, strict=False)) if a != b), min(len(row), len(right)))
        got_token = row[first] if first < len(row) else "nothing (it stopped)"
        raise Wrong(f"{where} differs from uncached decoding at position {first}: got {got_token}, expected "
                    f"{right[first] if first < len(right) else 'the end'}. With the growing cache feed only the "
                    "newest token at each step, and keep the memory's padding mask.")


def _decoded(case: Case, got: Any) -> tuple[Any, dict]:
    """(tokens, counts) of a decoding run, or Wrong; a cache that outgrew the model's positions is explained."""
    if isinstance(got, Raised) and "longer than the model's maximum" in got.message:
        raise Wrong(f"{case.label}: the decoder's positions ran out ({got.message}). With the growing cache, feed "
                    "only the newest token at each step: the cache already holds the earlier ones.")
    tokens, counts = as_pair(expect_value(got, case, "the decoded token ids"), case.label, ("tokens", "counts"))
    return tokens, counts


def _judge_greedy(case: Case, got: Any, expected: Any) -> None:
    _check_tokens(case, _decoded(case, got)[0])


def _judge_greedy_cache(case: Case, got: Any, expected: Any) -> None:
    tokens, counts = _decoded(case, got)
    _check_tokens(case, tokens)
    model = case.args[0]
    fed = [int(n) for n in np.atleast_1d(counts["decoder_inputs"])]
    if any(n != 1 for n in fed):
        raise Wrong(f"{case.label}: the decoder was fed {max(fed)} positions at one step. With a growing "
                    "self-attention cache (model.new_cache()) each call feeds only the newest token, shape (N, 1).")
    if counts["encoder_runs"] != 1:
        raise Wrong(f"{case.label}: the source was encoded {counts['encoder_runs']} times; encode the whole batch "
                    "once, before the first step.")
    layers = len(model.decoder_layers)
    if counts["memory_projections"] != layers:
        raise Wrong(f"{case.label}: the memory's cross-attention keys were projected {counts['memory_projections']} "
                    f"times for {layers} decoder layers; one cache for the whole loop projects them once per layer "
                    "(pass the same cache to every step).")


_DECODING = dict(name="greedy_decode", reference=ref.greedy_decode, run=_run_decoding, forbid=DECODE_FORBIDDEN,
                 allow=MODEL_INSIDE)
GREEDY = Exercise(
    grade_id="greedy_tests", title="Exercise 4 (greedy decoding)", judge=_judge_greedy, **_DECODING,
    passed="every sentence equals its uncached greedy decoding",
    visible=lambda: [_decoding_case(10, 4, 6, 8, (6, 3, 5, 2)), _decoding_case(11, 3, 5, 6)],
    hidden=lambda rng: [_decoding_case(int(rng.integers(1 << 30)), 6, 7, 10, (7, 7, 1, 4, 6, 2)),
                        _decoding_case(int(rng.integers(1 << 30)), 1, 4, 5, layers=1),
                        _decoding_case(int(rng.integers(1 << 30)), 5, 8, 12, (8, 3, 8, 5, 1), layers=3)],
)
GREEDY_CACHE = Exercise(
    grade_id="greedy_cache_tests", title="Exercise 4 (with both caches)", judge=_judge_greedy_cache, **_DECODING,
    passed="one new position per step, the memory projected once per layer, the batch encoded once",
    visible=lambda: [_decoding_case(12, 4, 6, 8, (6, 3, 5, 2))],
    hidden=lambda rng: [_decoding_case(int(rng.integers(1 << 30)), 5, 7, 10, (7, 1, 4, 6, 2)),
                        _decoding_case(int(rng.integers(1 << 30)), 3, 5, 6, layers=1)],
)


# ----------------------------------------------------------------------------- Exercise 5: alignment error rate

def _attention_rows(rng: np.random.Generator, tgt_len: int, src_len: int) -> np.ndarray:
    scores = 3.0 * rng.standard_normal((tgt_len, src_len))
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _gold_links(rng: np.random.Generator, weights: np.ndarray) -> list[tuple[int, int]]:
    """Gold links that agree with the attention's argmax on about half of the target words; some words get two."""
    tgt_len, src_len = weights.shape
    links = set()
    for t in range(tgt_len):
        s = int(weights[t].argmax()) if rng.random() < 0.5 else int(rng.integers(src_len))
        links.add((s, t))
        if rng.random() < 0.3:
            links.add((int(rng.integers(src_len)), t))
    return sorted(links)


def _aer_case(rng: np.random.Generator, shapes: list[tuple[int, int]]) -> Case:
    attentions = [_attention_rows(rng, t, s) for t, s in shapes]
    gold = [_gold_links(rng, w) for w in attentions]
    label = (f"`alignment_error_rate(attentions, gold)` on {len(shapes)} sentence(s) with attention shapes "
             f"(Tt, Ts) {shapes}")
    return Case(label, (attentions, gold))


EXAMPLE_ATTENTION = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.5, 0.25, 0.25]])
EXAMPLE_GOLD = [(0, 0), (1, 0), (0, 1), (1, 2), (0, 3)]
"""The worked example: 4 target words over 3 source words, and gold links (source, target)."""


def _aer_variants(attentions, gold) -> dict[str, float]:
    predicted = [ref.attention_links(w) for w in attentions]
    sure = [set(map(tuple, g)) for g in gold]
    swapped = [{(t, s) for s, t in links} for links in predicted]
    by_source = [{(s, int(t)) for s, t in enumerate(np.asarray(w).argmax(axis=0))} for w in attentions]

    def aer(links):
        hits = sum(len(a & s) for a, s in zip(links, sure, strict=True))
        return 1 - 2 * hits / (sum(map(len, links)) + sum(map(len, sure)))

    hits = sum(len(a & s) for a, s in zip(predicted, sure, strict=True))
    return {
        "the links are written (target, source); the gold links are (source, target) pairs.": aer(swapped),
        "the argmax runs over the target axis: each target word (a row) links to its most attended source word, "
        "argmax along the last axis.": aer(by_source),
        "this is 1 - recall (hits / gold links); AER counts the predicted links too: 1 - 2|A∩S| / (|A| + |S|).":
            1 - hits / sum(map(len, sure)),
        "this is 1 - precision (hits / predicted links); AER counts the gold links too: 1 - 2|A∩S| / (|A| + |S|).":
            1 - hits / sum(map(len, predicted)),
        "this is the mean of each sentence's AER; a corpus AER adds the counts of all sentences first, then divides.":
            float(np.mean([1 - 2 * len(a & s) / (len(a) + len(s)) for a, s in zip(predicted, sure, strict=True)])),
    }


def _judge_aer(case: Case, got: Any, expected: float) -> None:
    got = expect_value(got, case, "a number")
    if isinstance(got, np.ndarray) and got.shape == ():
        got = float(got)
    if isinstance(got, bool) or not isinstance(got, int | float):
        raise Wrong(f"{case.label} should return one number (a float), got {type(got).__name__}.")
    if abs(got - expected) <= 1e-6:  # a float32 answer is fine
        return
    for message, wrong in _aer_variants(*case.args).items():
        if abs(wrong - expected) > 1e-6 and abs(got - wrong) <= 1e-6:
            raise Wrong(f"{case.label} = {got:.4f}: {message}")
    raise Wrong(f"{case.label} = {got:.4f}, expected {expected:.4f}. Link each target word t to argmax_s w[t, s], "
                "then AER = 1 - 2|A∩S| / (|A| + |S|) with the counts summed over the sentences.")


_AER = dict(name="alignment_error_rate", reference=ref.alignment_error_rate, judge=_judge_aer, forbid=AER_FORBIDDEN)
AER = Exercise(
    grade_id="aer_tests", title="Exercise 5 (AER of one sentence)", **_AER,
    passed="links from the argmax of each target row, and the AER formula",
    visible=lambda: [Case("`alignment_error_rate([EXAMPLE_ATTENTION], [EXAMPLE_GOLD])` (the worked example)",
                          ([EXAMPLE_ATTENTION], [EXAMPLE_GOLD])),
                     _aer_case(np.random.default_rng(13), [(5, 4)])],
    hidden=lambda rng: [_aer_case(rng, [(1, 3)]), _aer_case(rng, [(6, 6)]), _aer_case(rng, [(8, 5)])],
)
AER_CORPUS = Exercise(
    grade_id="aer_corpus_tests", title="Exercise 5 (AER of a corpus)", **_AER,
    passed="the counts of all sentences added up before dividing",
    visible=lambda: [_aer_case(np.random.default_rng(14), [(2, 3), (7, 6), (4, 4)])],
    hidden=lambda rng: [_aer_case(rng, [(1, 2), (9, 8)]), _aer_case(rng, [(3, 3), (5, 7), (6, 4), (2, 2)])],
)

EXERCISES = Exercises("06_translation", [ENCODER_LAYER, DECODER_LAYER, DECODER_MASKS, LOSS, LABEL_SMOOTHING,
                                         GREEDY, GREEDY_CACHE, AER, AER_CORPUS])
check = EXERCISES.check
record = EXERCISES.record
