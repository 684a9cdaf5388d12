"""Chapter 6 grading: the exercise declarations' verdicts and messages, then whole-notebook grading outcomes.

The first part judges code directly with the declarations of :mod:`xattn_edu.chapters.translation.checks`
(fast): the chapter's solution passes every cell on many seeds, the references pass their own hidden cases,
calls to a reference (or to the package code that would do the exercise) fail, and each classic mistake
loses exactly the cells it should, with its message; gradients are judged where the output feeds training.
The slow tests autograde whole notebooks.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers.exercises import assert_loses_exactly, lost, outcomes, solution_functions, verdicts
from tests.helpers.grading import grade, points_of, replace_solution, solution_notebook
from xattn_edu.chapters.support.exercise import NotDone, Wrong
from xattn_edu.chapters.translation import checks as grading
from xattn_edu.chapters.translation import reference

CHAPTER = "06_translation"
EXERCISES = grading.EXERCISES
POINTS = {
    "encoder_layer_tests": 1,
    "decoder_layer_tests": 2,
    "decoder_mask_tests": 1,
    "loss_tests": 1,
    "label_smoothing_tests": 2,
    "greedy_tests": 2,
    "greedy_cache_tests": 1,
    "aer_tests": 1,
    "aer_corpus_tests": 1,
}
SEEDS = range(5)
NAMES = ("encoder_layer", "decoder_layer", "translation_loss", "greedy_decode", "alignment_error_rate")


def solution(name):
    return solution_functions(CHAPTER)[name]


def test_every_graded_cell_is_declared_with_its_points():
    assert points_of(CHAPTER) == POINTS
    assert {exercise.grade_id for exercise in EXERCISES} == set(POINTS)
    assert {exercise.name for exercise in EXERCISES} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_solution_passes_every_cell_on_many_seeds(name, capsys):
    assert lost(EXERCISES, name, solution(name), SEEDS) == {}
    assert capsys.readouterr().err == ""  # stderr in a test cell scores 0


@pytest.mark.parametrize("exercise", list(EXERCISES), ids=lambda e: e.grade_id)
def test_the_reference_passes_its_own_hidden_cases_on_many_seeds(exercise):
    assert verdicts(EXERCISES, exercise.grade_id, exercise.reference, range(8), student=False) == ""


@pytest.mark.parametrize("name", NAMES)
def test_calling_the_reference_fails_every_cell_of_the_exercise(name):
    messages = outcomes(EXERCISES, name, getattr(reference, name))
    assert messages and all("calls the reference implementation `xattn_edu.chapters.translation.reference"
                            in message for message in messages.values()), messages


def test_a_stub_is_not_done_yet():
    for exercise in EXERCISES:
        @functools.wraps(getattr(reference, exercise.name))  # the stub's signature, as in the notebook
        def stub(*args, **kwargs):
            raise NotImplementedError()

        with pytest.raises(NotDone, match="not done yet"):
            grading.check(exercise.grade_id, stub)


# ----------------------------------------------------------------------------- Exercise 1 and 2: layers

def post_norm_encoder(layer, x, mask, attention):
    x = layer.attn_block.norm(x + attention(x, layer.self_attn, None, mask))
    return layer.ff_block.norm(x + layer.ff(x))


def no_residual_encoder(layer, x, mask, attention):
    x = attention(layer.attn_block.norm(x), layer.self_attn, None, mask)
    return layer.ff(layer.ff_block.norm(x))


def maskless_encoder(layer, x, mask, attention):
    x = x + attention(layer.attn_block.norm(x), layer.self_attn, None, None)
    return x + layer.ff(layer.ff_block.norm(x))


def one_norm_encoder(layer, x, mask, attention):
    x = x + attention(layer.attn_block.norm(x), layer.self_attn, None, mask)
    return x + layer.ff(layer.attn_block.norm(x))


def detached_encoder(layer, x, mask, attention):
    x = x + attention(layer.attn_block.norm(x), layer.self_attn, None, mask)
    return (x + layer.ff(layer.ff_block.norm(x))).detach().requires_grad_(True) * 1.0


def blocks_encoder(layer, x, mask, attention):
    x = layer.attn_block(x, lambda h: attention(h, layer.self_attn, None, mask))
    return layer.ff_block(x, layer.ff)


@pytest.mark.parametrize("mistake, fragment", [
    (post_norm_encoder, "post-norm"), (no_residual_encoder, "residual connections are missing"),
    (maskless_encoder, "padding mask is ignored"), (one_norm_encoder, "both blocks use the first norm"),
    (detached_encoder, "no .detach()"), (blocks_encoder, "xattn_edu.nn.model.Residual.forward"),
    (lambda layer, x, mask, attention: layer(x, mask), "xattn_edu.nn.model.EncoderLayer.forward"),
])
def test_encoder_mistakes_lose_the_encoder_cell(mistake, fragment):
    assert_loses_exactly(EXERCISES, "encoder_layer", mistake, {"encoder_layer_tests": fragment})


def decoder_from(self_mask=lambda s, m: s, memory_mask=lambda s, m: m, context=lambda x, memory: memory,
                 order=("self", "cross"), memory_norm=False):
    """A decoder layer written with one deliberate change."""

    def layer_fn(layer, x, memory, self_mask_in, memory_mask_in, attention):
        masks = {"self": self_mask(self_mask_in, memory_mask_in), "cross": memory_mask(self_mask_in, memory_mask_in)}
        for block in order:
            if block == "self":
                x = x + attention(layer.self_block.norm(x), layer.self_attn, None, masks["self"])
            else:
                h = layer.cross_block.norm(x)
                source = layer.cross_block.norm(memory) if memory_norm else context(h, memory)
                x = x + attention(h, layer.cross_attn, source, masks["cross"] if source is memory or memory_norm
                                  else masks["self"])
        return x + layer.ff(layer.ff_block.norm(x))

    return layer_fn


@pytest.mark.parametrize("mistake, expected", [
    (decoder_from(order=("cross", "self")), {"decoder_layer_tests": "cross-attention comes before",
                                             "decoder_mask_tests": "cross-attention comes before"}),
    (decoder_from(context=lambda x, memory: None), {"decoder_layer_tests": "reads the decoder's own positions",
                                                    "decoder_mask_tests": "reads the decoder's own positions"}),
    (decoder_from(memory_norm=True), {"decoder_layer_tests": "the memory was normalised too",
                                      "decoder_mask_tests": "the memory was normalised too"}),
    (decoder_from(self_mask=lambda s, m: None), {"decoder_layer_tests": "self-attention has no mask",
                                                 "decoder_mask_tests": "self-attention has no mask"}),
    (decoder_from(memory_mask=lambda s, m: None), {"decoder_mask_tests": "cross-attention has no mask"}),
])
def test_decoder_mistakes_lose_exactly_their_cells(mistake, expected):
    assert_loses_exactly(EXERCISES, "decoder_layer", mistake, expected)


def test_swapped_masks_are_named_or_refused_by_the_shapes():
    swapped = decoder_from(self_mask=lambda s, m: m, memory_mask=lambda s, m: s)
    messages = lost(EXERCISES, "decoder_layer", swapped, range(3))
    assert set(messages) == {"decoder_layer_tests", "decoder_mask_tests"}
    assert all("swapped" in m or "raised ValueError" in m for m in messages.values()), messages
    case = grading.DECODER_MASKS.hidden(np.random.default_rng(0))[0]  # Tt == Ts: the shapes fit, the numbers do not
    got = grading.DECODER_MASKS.result_of(swapped, case)
    assert "the two masks are swapped" in grading.DECODER_MASKS.verdict(case, got)


def post_norm_decoder(layer, x, memory, self_mask, memory_mask, attention):
    x = layer.self_block.norm(x + attention(x, layer.self_attn, None, self_mask))
    x = layer.cross_block.norm(x + attention(x, layer.cross_attn, memory, memory_mask))
    return layer.ff_block.norm(x + layer.ff(x))


def test_post_norm_and_calling_the_layer_lose_both_decoder_cells():
    assert_loses_exactly(EXERCISES, "decoder_layer", post_norm_decoder,
                         {"decoder_layer_tests": "post-norm", "decoder_mask_tests": "post-norm"})
    forward = "xattn_edu.nn.model.DecoderLayer.forward"
    assert_loses_exactly(EXERCISES, "decoder_layer",
                         lambda layer, x, memory, s, m, attention: layer(x, memory, s, m)[0],
                         {"decoder_layer_tests": forward, "decoder_mask_tests": forward})


# ----------------------------------------------------------------------------- Exercise 3: the loss

def loss_with(per_token_reduce=None, smoothing=None):
    def loss(logits, targets, pad_id, label_smoothing=0.0):
        eps = label_smoothing if smoothing is None else smoothing(label_smoothing)
        log_probs = torch.log_softmax(logits, dim=-1)
        nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        per_token = (1 - eps) * nll - eps * log_probs.mean(-1)
        real = targets != pad_id
        return per_token[real].mean() if per_token_reduce is None else per_token_reduce(per_token, real)

    return loss


def fairseq_loss(logits, targets, pad_id, label_smoothing=0.0):
    log_probs, eps = torch.log_softmax(logits, dim=-1), label_smoothing
    eps_i = eps / (logits.shape[-1] - 1)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    per_token = (1 - eps - eps_i) * nll - eps_i * log_probs.sum(-1)
    return per_token[targets != pad_id].mean()


def summed_classes_loss(logits, targets, pad_id, label_smoothing=0.0):
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    per_token = (1 - label_smoothing) * nll - label_smoothing * log_probs.sum(-1)
    return per_token[targets != pad_id].mean()


@pytest.mark.parametrize("mistake, expected", [
    (loss_with(lambda p, real: p.mean()), {"loss_tests": "padding positions are averaged in",
                                          "label_smoothing_tests": "padding positions are averaged in"}),
    (loss_with(lambda p, real: p[real].sum()), {"loss_tests": "this is the sum",
                                                "label_smoothing_tests": "this is the sum"}),
    (loss_with(lambda p, real: torch.stack([row[m].mean() for row, m in zip(p, real, strict=True)]).mean()),
     {"loss_tests": "mean of each sentence's mean", "label_smoothing_tests": "mean of each sentence's mean"}),
    (loss_with(smoothing=lambda eps: 0.0), {"label_smoothing_tests": "label_smoothing is ignored"}),
    (fairseq_loss, {"label_smoothing_tests": "fairseq's convention"}),
    (summed_classes_loss, {"label_smoothing_tests": "sums -log p over the classes"}),
    (lambda logits, targets, pad_id, label_smoothing=0.0: F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id, label_smoothing=label_smoothing),
     {"loss_tests": "torch.nn.functional.cross_entropy", "label_smoothing_tests": "torch.nn.functional.cross_entropy"}),
    (lambda logits, targets, pad_id, label_smoothing=0.0: torch.tensor(float(loss_with()(
        logits, targets, pad_id, label_smoothing))),
     {"loss_tests": "carries gradients back", "label_smoothing_tests": "carries gradients back"}),
])
def test_loss_mistakes_lose_exactly_their_cells(mistake, expected):
    assert_loses_exactly(EXERCISES, "translation_loss", mistake, expected)


def test_the_annotated_transformer_convention_is_named():
    def annotated(logits, targets, pad_id, label_smoothing=0.0):
        log_probs, eps, vocab = torch.log_softmax(logits, dim=-1), label_smoothing, logits.shape[-1]
        true = torch.full_like(log_probs, eps / (vocab - 2)).scatter(-1, targets[..., None], 1 - eps)
        true[..., pad_id] = 0.0
        return -(true * log_probs).sum(-1)[targets != pad_id].mean()

    assert_loses_exactly(EXERCISES, "translation_loss", annotated,
                         {"label_smoothing_tests": "Annotated Transformer's convention"})


# ----------------------------------------------------------------------------- Exercise 4: greedy decoding

def greedy_with(feed_prefix=False, keep_eos=False, stop_at_first=False, no_memory_mask=False, cache=True):
    """A batched greedy decoder with one deliberate change."""

    @torch.no_grad()
    def decode(model, src, bos_id, eos_id, max_new_tokens):
        memory, memory_mask = model.encode(src)
        memory_mask = None if no_memory_mask else memory_mask
        layer_cache = model.new_cache() if cache else None
        prefix = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
        outputs = [[] for _ in range(src.shape[0])]
        for _ in range(max_new_tokens):
            fed = prefix if (feed_prefix or not cache) else prefix[:, -1:]
            token = model.logits(model.decode(fed, memory, memory_mask, cache=layer_cache)[:, -1]).argmax(-1)
            for row, value in enumerate(token.tolist()):
                if not done[row] and (value != eos_id or keep_eos):
                    outputs[row].append(value)
            done |= token == eos_id
            if done.all() or (stop_at_first and done.any()):
                break
            prefix = torch.cat([prefix, token[:, None]], dim=1)
        return outputs

    return decode


@torch.no_grad()
def one_by_one(model, src, bos_id, eos_id, max_new_tokens):
    """Right, but slow: each sentence alone, its whole prefix through model(...) at every step."""
    outputs = []
    for row in src:
        prefix = [bos_id]
        while len(prefix) <= max_new_tokens:
            token = int(model(row[row != 0][None], torch.tensor([prefix]))[0, -1].argmax())
            if token == eos_id:
                break
            prefix.append(token)
        outputs.append(prefix[1:])
    return outputs


def test_keeping_finished_rows_in_the_batch_passes_both_cells():
    assert lost(EXERCISES, "greedy_decode", greedy_with(), SEEDS) == {}


@pytest.mark.parametrize("mistake, expected", [
    (greedy_with(cache=False), {"greedy_cache_tests": "positions at one step"}),
    (one_by_one, {"greedy_cache_tests": "positions at one step"}),
    (greedy_with(feed_prefix=True), {"greedy_tests": "feed only the newest token",
                                     "greedy_cache_tests": "feed only the newest token"}),
    (greedy_with(keep_eos=True), {"greedy_tests": "contains EOS", "greedy_cache_tests": "contains EOS"}),
    (greedy_with(stop_at_first=True), {"greedy_tests": "differs from uncached decoding at position",
                                       "greedy_cache_tests": "differs from uncached decoding at position"}),
    (greedy_with(no_memory_mask=True), {"greedy_tests": "differs from uncached decoding",
                                        "greedy_cache_tests": "differs from uncached decoding"}),
    (lambda model, src, *args: [row.tolist() for row in src], {"greedy_tests": "", "greedy_cache_tests": ""}),
    (lambda model, src, bos, eos, n: [[bos, *row] for row in one_by_one(model, src, bos, eos, n)],
     {"greedy_tests": "starts with BOS", "greedy_cache_tests": "starts with BOS"}),
])
def test_greedy_mistakes_lose_exactly_their_cells(mistake, expected):
    assert_loses_exactly(EXERCISES, "greedy_decode", mistake, expected)


def test_decoding_per_sentence_with_caches_is_named_in_the_cache_cell():
    @torch.no_grad()
    def per_sentence(model, src, bos_id, eos_id, max_new_tokens):
        return [greedy_with()(model, row[None], bos_id, eos_id, max_new_tokens)[0] for row in src]

    assert_loses_exactly(EXERCISES, "greedy_decode", per_sentence, {"greedy_cache_tests": "encoded"})


def test_the_package_decoder_is_forbidden():
    from xattn_edu.translate.decode import greedy_search

    def package(model, src, bos_id, eos_id, max_new_tokens):
        return [t.tokens for t in greedy_search(model, src, bos_id=bos_id, eos_id=eos_id)]

    messages = lost(EXERCISES, "greedy_decode", package)
    assert set(messages) == {"greedy_tests", "greedy_cache_tests"}
    assert all("xattn_edu.translate.decode.greedy_search" in m for m in messages.values()), messages


def test_visible_decoding_cases_mix_early_and_late_endings():
    for case in grading.GREEDY.visible():
        lengths = [len(row) for row in reference.greedy_decode(*case.args)]
        assert len(set(lengths)) >= 2 and max(lengths) == case.args[4], lengths


# ----------------------------------------------------------------------------- Exercise 5: AER

def aer_from_links(link_fn, corpus_level=True):
    def aer(attentions, gold):
        found = [link_fn(np.asarray(w)) for w in attentions]
        sure = [{tuple(link) for link in links} for links in gold]
        if not corpus_level:
            return float(np.mean([1 - 2 * len(a & s) / (len(a) + len(s)) for a, s in zip(found, sure, strict=True)]))
        hits = sum(len(a & s) for a, s in zip(found, sure, strict=True))
        return 1 - 2 * hits / (sum(map(len, found)) + sum(map(len, sure)))

    return aer


def right_links(w):
    return {(int(s), t) for t, s in enumerate(w.argmax(axis=1))}


def recall_aer(attentions, gold):
    found = [right_links(np.asarray(w)) for w in attentions]
    hits = sum(len(a & {tuple(g) for g in links}) for a, links in zip(found, gold, strict=True))
    return 1 - hits / sum(len(links) for links in gold)


@pytest.mark.parametrize("mistake, expected", [
    (aer_from_links(lambda w: {(t, int(s)) for t, s in enumerate(w.argmax(axis=1))}),
     {"aer_tests": "written (target, source)", "aer_corpus_tests": "written (target, source)"}),
    (aer_from_links(lambda w: {(s, int(t)) for s, t in enumerate(w.argmax(axis=0))}),
     {"aer_tests": "argmax runs over the target axis", "aer_corpus_tests": "argmax runs over the target axis"}),
    (recall_aer, {"aer_tests": "1 - recall", "aer_corpus_tests": "1 - recall"}),
    (aer_from_links(right_links, corpus_level=False), {"aer_corpus_tests": "mean of each sentence's AER"}),
])
def test_aer_mistakes_lose_exactly_their_cells(mistake, expected):
    assert_loses_exactly(EXERCISES, "alignment_error_rate", mistake, expected)


def test_the_package_metric_is_forbidden_and_a_tensor_answer_is_fine():
    from xattn_edu.translate import metrics

    def package(attentions, gold):
        return metrics.alignment_error_rate([metrics.attention_links(torch.tensor(w)) for w in attentions], gold)

    messages = lost(EXERCISES, "alignment_error_rate", package)
    assert all("xattn_edu.translate.metrics" in m for m in messages.values()) and len(messages) == 2
    as_tensor = lambda a, g: torch.tensor(solution("alignment_error_rate")(a, g))  # noqa: E731
    assert lost(EXERCISES, "alignment_error_rate", as_tensor, SEEDS) == {}


def test_the_worked_example_has_aer_one_third():
    assert reference.alignment_error_rate([grading.EXAMPLE_ATTENTION], [grading.EXAMPLE_GOLD]) == pytest.approx(1 / 3)
    with pytest.raises(Wrong, match="1 - precision"):
        grading.check("aer_tests", lambda a, g: 1 - 3 / 4)  # 3 hits of 4 predicted links


# ----------------------------------------------------------------------------- through the grader (slow)

@pytest.mark.slow
def test_one_mistake_per_exercise_loses_exactly_its_points(tmp_path):
    notebook = solution_notebook(CHAPTER)
    notebook = replace_solution(notebook, "encoder_layer_solution", """
        x = layer.attn_block.norm(x + attention(x, layer.self_attn, None, mask))
        return layer.ff_block.norm(x + layer.ff(x))""")
    notebook = replace_solution(notebook, "loss_solution", """
        log_probs = torch.log_softmax(logits, dim=-1)
        nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return nll[targets != pad_id].mean()""")
    notebook = replace_solution(notebook, "aer_solution", """
        scores = []
        for weights, links in zip(attentions, gold, strict=True):
            found = {(int(s), t) for t, s in enumerate(np.argmax(weights, axis=1))}
            wanted = {tuple(link) for link in links}
            scores.append(1 - 2 * len(found & wanted) / (len(found) + len(wanted)))
        return float(np.mean(scores))""")
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    lost_cells = {grade_id for grade_id, points in POINTS.items() if scores[grade_id] != points}
    assert lost_cells == {"encoder_layer_tests", "label_smoothing_tests", "aer_corpus_tests"}, report.table()
    assert all(scores[g] == 0 for g in lost_cells)
