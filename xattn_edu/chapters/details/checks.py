"""The graded exercises of Chapter 5, "Small choices, measured consequences", each declared once.

See :mod:`~xattn_edu.chapters.support.exercise` for what a declaration is. Each exercise and the
mistakes it is built to catch:

* ``positioned_scores_tests`` / ``positioned_both_tests``: positions on the queries, the keys, both or
  neither (swapped sides, positions added after the projection, a missing 1/sqrt(Dk), one table slice for
  both lengths, an unknown placement accepted), with a gradient check;
* ``relative_bias_tests`` / ``relative_clip_tests``: the bias matrix of a learned relative-position table
  (sign of the distance, the table offset, heads first, clipping, positions that do not start at 0),
  with a gradient check of the table;
* ``influence_tests`` / ``future_share_tests``: the leakage probe (one step, not all; the L2 norm per
  position; the future starting at ``visible``; no 0/0);
* ``tie_all_tests`` / ``tie_cross_tests``: tying K and V projections (which modules, K with K and V with V,
  weights and biases, the saving counted once, the model still trains: logits and gradients match).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xattn_edu.chapters.details import reference as ref
from xattn_edu.chapters.support.checks import as_array, assert_close_to_reference, assert_same_structure_close
from xattn_edu.chapters.support.exercise import Case, Exercise, Exercises, Wrong, expect_raise, expect_value
from xattn_edu.chapters.support.gradients import with_gradients
from xattn_edu.chapters.support.values import Raised
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig
from xattn_edu.nn.positional import sinusoidal_table

REFERENCE = "xattn_edu.chapters.details.reference"
MODEL_ATTENTION = ("xattn_edu.nn.attention", "torch.nn.functional.scaled_dot_product_attention", "torch.softmax",
                   "torch.Tensor.softmax", "torch.nn.functional.softmax")
"""What a model the exercise hands over runs inside the student's code; writing attention is not the point here."""
LENGTHS_HINT = ("position vectors have the model width D and go into the inputs, before the projections; the "
                "target (Tt positions) takes table[:Tt], the source (Ts positions) table[:Ts].")


def _seeded(seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` under torch seed ``seed``, leaving the caller's random state as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


# ----------------------------------------------------------------------------- positioned_scores

def _scores_case(rng: np.random.Generator, placement: str, batch: int, tgt_len: int, src_len: int, width: int,
                 key_width: int, repeat: bool = False) -> Case:
    target = torch.as_tensor(rng.standard_normal((batch, tgt_len, width)))
    source = torch.as_tensor(rng.standard_normal((batch, src_len, width)))
    if repeat:  # source positions 0 and 2 hold the same token vector
        source[:, 2] = source[:, 0]
    w_query, w_key = (torch.as_tensor(rng.standard_normal((width, key_width)) / math.sqrt(width)) for _ in range(2))
    table = sinusoidal_table(16, width).double()
    label = (f"`positioned_scores(target, source, w_query, w_key, table, {placement!r})` with target "
             f"{tuple(target.shape)}, source {tuple(source.shape)} and Dk = {key_width}")
    return Case(label, (target, source, w_query, w_key, table, placement),
                note={"raises": placement not in ref.PLACEMENTS})


def _scores_mistakes(case: Case) -> dict[str, np.ndarray]:
    target, source, w_query, w_key, table, placement = case.args
    swapped = {"queries": "keys", "keys": "queries"}.get(placement)

    def scores(where: str, scale: float = math.sqrt(w_key.shape[1])) -> np.ndarray:
        return (ref.positioned_scores(target, source, w_query, w_key, table, where) * math.sqrt(w_key.shape[1])
                / scale).numpy()

    mistakes = {
        "no positions were added; this placement adds table rows before the projection.": scores("none"),
        "divide the dot products by sqrt(Dk), the width of a query or key (w_key.shape[1]).": scores(placement, 1.0),
        "divided by sqrt(D), the input width; the scale is sqrt(Dk), the width of the projected queries and keys.":
            scores(placement, math.sqrt(w_key.shape[0])),
    }
    if swapped:
        mistakes[f"positions went on the {swapped} instead of the {placement}."] = scores(swapped)
    if placement != "both":
        mistakes[f"positions went on both sides; '{placement}' adds them on one side only."] = scores("both")
    if w_key.shape[0] == w_key.shape[1] and placement != "none":
        q = target @ w_query + (table[: target.shape[1]] if placement in ("queries", "both") else 0)
        k = source @ w_key + (table[: source.shape[1]] if placement in ("keys", "both") else 0)
        mistakes["positions were added after the projection; add them to the input, before W_Q / W_K."] = (
            q @ k.transpose(-2, -1) / math.sqrt(w_key.shape[1])).numpy()
    return mistakes


def _judge_scores(case: Case, got: Any, expected: Any) -> None:
    if case.note["raises"]:
        expect_raise(got, case, "ValueError", f"{case.args[-1]!r} is not one of {ref.PLACEMENTS}")
        return
    if isinstance(got, Raised) and "size of tensor" in got.message:
        raise Wrong(f"{case.label} raised {got.name} ({got.message!r}): {LENGTHS_HINT}")
    scores, gradients = expect_value(got, case, "the scores (B, Tt, Ts)")
    expected_scores, expected_gradients = expected
    assert_close_to_reference(as_array(scores, case.label), expected_scores, case.label,
                              mistakes=_scores_mistakes(case), hint="scores[b, t, j] = q_t · k_j / sqrt(Dk).")
    assert_same_structure_close(gradients, expected_gradients, f"the gradients of {case.label}",
                                hint="build the scores from the inputs with torch operations only.")


_SCORES_RUN = with_gradients(wrt=("target", "source", "w_query", "w_key"))

POSITIONED_SCORES = Exercise(
    grade_id="positioned_scores_tests", title="Exercise 1 (queries or keys)", name="positioned_scores",
    reference=ref.positioned_scores, judge=_judge_scores, run=_SCORES_RUN, forbid=(REFERENCE,),
    passed="positions on the queries only and on the keys only give the right scores and gradients",
    visible=lambda: [_scores_case(np.random.default_rng(0), "queries", 1, 3, 4, 6, 4, repeat=True),
                     _scores_case(np.random.default_rng(1), "keys", 1, 3, 4, 6, 4, repeat=True),
                     _scores_case(np.random.default_rng(2), "keys", 2, 5, 3, 8, 2)],
    hidden=lambda rng: [_scores_case(rng, "queries", 3, 4, 6, 8, 8),  # Dk = D: positions after W_Q is wrong
                        _scores_case(rng, "keys", 2, 6, 2, 4, 4),
                        _scores_case(rng, "queries", 1, 1, 5, 6, 2),
                        _scores_case(rng, "keys", 2, 3, 3, 8, 2)],  # Tt = Ts
)
POSITIONED_BOTH = Exercise(
    grade_id="positioned_both_tests", title="Exercise 1 (both, none, and a wrong placement)",
    name="positioned_scores", reference=ref.positioned_scores, judge=_judge_scores, run=_SCORES_RUN,
    forbid=(REFERENCE,), passed="'both' and 'none' are right and an unknown placement raises ValueError",
    visible=lambda: [_scores_case(np.random.default_rng(3), "both", 1, 3, 4, 6, 4, repeat=True),
                     _scores_case(np.random.default_rng(4), "none", 1, 3, 4, 6, 4, repeat=True),
                     _scores_case(np.random.default_rng(5), "values", 1, 3, 4, 6, 4)],
    hidden=lambda rng: [_scores_case(rng, "both", 2, 5, 7, 8, 8),
                        _scores_case(rng, "both", 1, 6, 2, 4, 2),
                        _scores_case(rng, "none", 3, 2, 5, 4, 4),
                        _scores_case(rng, "Queries", 1, 2, 2, 4, 4)],  # names are exact
)


# ----------------------------------------------------------------------------- relative_position_bias

def _bias_case(table: Tensor, query_positions: list[int], key_positions: list[int]) -> Case:
    label = (f"`relative_position_bias(table, query_positions, key_positions)` with a table of shape "
             f"{tuple(table.shape)} (M = {(table.shape[0] - 1) // 2}), query positions {query_positions} and "
             f"key positions {key_positions}")
    return Case(label, (table, torch.tensor(query_positions), torch.tensor(key_positions)))


def _readable_table(reach: int, heads: int) -> Tensor:
    """table[d + M, h] = d + 10 h: the bias of a pair is its distance plus ten times the head."""
    return torch.arange(-reach, reach + 1, dtype=torch.float64)[:, None] + 10.0 * torch.arange(heads)


def _random_table(rng: np.random.Generator, reach: int, heads: int) -> Tensor:
    return torch.as_tensor(rng.standard_normal((2 * reach + 1, heads)))


def _bias_mistakes(case: Case, expected: np.ndarray) -> dict[str, np.ndarray]:
    table, queries, keys = case.args
    reach = (table.shape[0] - 1) // 2
    flipped = ref.relative_position_bias(table, keys, queries).transpose(1, 2).numpy()  # distance q - k
    mistakes = {
        "the distance is key_position - query_position; yours is query - key.": flipped,
        "the result is (h, Tq, Tk), heads first; yours has the heads last.": np.moveaxis(expected, 0, -1),
        "the result is (h, Tq, Tk); yours is transposed (h, Tk, Tq).": np.swapaxes(expected, 1, 2),
    }
    if not (torch.equal(queries, torch.arange(len(queries))) and torch.equal(keys, torch.arange(len(keys)))):
        mistakes["use the positions you are given; these queries and keys do not sit at 0, 1, 2, ..."] = (
            ref.relative_position_bias(table, torch.arange(len(queries)), torch.arange(len(keys))).numpy())
    distance = keys[None, :] - queries[:, None]
    if (distance.abs() <= reach).all():  # no clipping needed: a forgotten offset wraps around instead
        mistakes["row d + M holds distance d: add M to the distance before indexing the table."] = (
            table[distance.clamp(-reach, reach)].permute(2, 0, 1).numpy())
    return mistakes


def _judge_bias(case: Case, got: Any, expected: Any) -> None:
    if isinstance(got, Raised) and got.name == "IndexError":
        raise Wrong(f"{case.label} raised IndexError ({got.message!r}): distances beyond ±M must be clipped to "
                    "±M (torch.clamp) before they index the table.")
    bias, gradients = expect_value(got, case, "the bias (h, Tq, Tk)")
    expected_bias, expected_gradients = expected
    assert_close_to_reference(as_array(bias, case.label), expected_bias, case.label,
                              mistakes=_bias_mistakes(case, expected_bias),
                              hint="bias[h, i, j] = table[clip(key_positions[j] - query_positions[i], -M, M) + M, h].")
    assert_same_structure_close(gradients, expected_gradients, f"the gradient of the table in {case.label}",
                                hint="index the table with a tensor of indices (table[index]); a pair of positions "
                                     "at the same distance reads the same entry, so its gradient adds up.")


_BIAS_RUN = with_gradients(wrt=("table",))

RELATIVE_BIAS = Exercise(
    grade_id="relative_bias_tests", title="Exercise 2 (distances within reach)", name="relative_position_bias",
    reference=ref.relative_position_bias, judge=_judge_bias, run=_BIAS_RUN,
    forbid=(REFERENCE, "xattn_edu.nn.positional"),
    passed="the bias has the right distance, sign, offset and shape, and the table gets the right gradient",
    visible=lambda: [_bias_case(_readable_table(3, 2), [0, 1, 2], [0, 1, 2, 3]),
                     _bias_case(_readable_table(4, 1), [0, 1, 2, 3], [0, 1])],
    hidden=lambda rng: [_bias_case(_random_table(rng, 5, 3), [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]),
                        _bias_case(_random_table(rng, 2, 4), [0, 1, 2], [0, 1, 2]),  # square: transposed is silent
                        _bias_case(_random_table(rng, 6, 1), [0], [0, 1, 2, 3, 4])],
)
RELATIVE_CLIP = Exercise(
    grade_id="relative_clip_tests", title="Exercise 2 (clipping and positions that do not start at 0)",
    name="relative_position_bias", reference=ref.relative_position_bias, judge=_judge_bias, run=_BIAS_RUN,
    forbid=(REFERENCE, "xattn_edu.nn.positional"),
    passed="distances beyond ±M share the edge entries, and any positions work",
    visible=lambda: [_bias_case(_readable_table(2, 1), [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]),
                     _bias_case(_readable_table(3, 2), [7, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8])],
    hidden=lambda rng: [_bias_case(_random_table(rng, 1, 2), [0, 1, 2, 3], [0, 1, 2, 3]),
                        _bias_case(_random_table(rng, 3, 3), [12, 13, 14], list(range(10))),
                        _bias_case(_random_table(rng, 4, 2), [5], [9, 3, 0, 20])],  # keys in any order
)


# ----------------------------------------------------------------------------- future_influence

def _mixing(weights: Tensor) -> Callable[[Tensor], Tensor]:
    """step_score(source)[b, t] = sum_j weights[t, j] * sum_d tanh(source[b, j, d])."""

    def step_score(source: Tensor) -> Tensor:
        return torch.tanh(source).sum(-1) @ weights.T.to(source.dtype)  # (B, Ts) @ (Ts, Tt) -> (B, Tt)

    return step_score


def _model_score(seed: int, causal: bool) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """A random tiny encoder-decoder (a bidirectional or causal encoder, wait-1 cross-attention), the
    log-probability of random tokens as its step scores, and its source vectors."""
    from xattn_edu.chapters.details.leakage import gold_log_probs
    from xattn_edu.chapters.details.model import DetailsConfig, DetailsModel
    from xattn_edu.chapters.details.tasks import make_batch

    def build() -> tuple[Callable[[Tensor], Tensor], Tensor]:
        model = DetailsModel(DetailsConfig(8, 8, d_model=8, n_heads=2, causal_encoder=causal, wait_k=1)).eval()
        ids = torch.randint(2, 8, (2, 6)).numpy()
        batch = make_batch(ids, ids[:, 1:])
        return gold_log_probs(model, batch), model.embed_source(batch.src).detach()

    return _seeded(seed, build)


def _influence_case(step_score: Callable[[Tensor], Tensor], source: Tensor, step: int, visible: int,
                    what: str) -> Case:
    label = (f"`future_influence(step_score, source, step={step}, visible={visible})` with {what} and source "
             f"{tuple(source.shape)}")
    return Case(label, (step_score, source, step, visible), note=what)


def _mixing_case(rng: np.random.Generator, weights: np.ndarray, batch: int, width: int, step: int,
                 visible: int) -> Case:
    source = torch.as_tensor(rng.standard_normal((batch, weights.shape[1], width)))
    return _influence_case(_mixing(torch.as_tensor(weights)), source, step, visible,
                           f"a mixing step_score (weights {weights.shape})")


def _model_case(rng: np.random.Generator, causal: bool, step: int) -> Case:
    step_score, source = _model_score(int(rng.integers(1 << 30)), causal)
    kind = "causal" if causal else "bidirectional"
    return _influence_case(step_score, source, step, step + 1, f"a random model with a {kind} encoder")


def _banded(steps: int, positions: int) -> np.ndarray:
    """weights[t, j] = j + 1 for j <= t + 1, else 0: step t reads one position ahead."""
    j = np.arange(positions)[None, :]
    return np.where(j <= np.arange(steps)[:, None] + 1, j + 1.0, 0.0)


def _judge_influence(case: Case, got: Any, expected: Any) -> None:
    step_score, source, step, _ = case.args
    pair = expect_value(got, case, "a pair (influence, future_share)")
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise Wrong(f"{case.label} should return a pair (influence, future_share).")
    leaf = source.detach().clone().requires_grad_(True)
    (every_step,) = torch.autograd.grad(step_score(leaf).sum(), leaf)
    signed = torch.autograd.grad(step_score(leaf)[:, step].sum(), leaf)[0]
    mistakes = {
        "this sums the gradients of every decoder step; probe only step `step` (scores[:, step]).":
            every_step.norm(dim=-1).numpy(),
        "use the Euclidean norm over the D features of each position (.norm(dim=-1)), not the sum of absolute "
        "values.": signed.abs().sum(-1).numpy(),
        "this is the squared norm; take the square root (.norm(dim=-1)).": (signed ** 2).sum(-1).numpy(),
        "these are signed sums of the gradient; influence is a size, take the norm over the D features.":
            signed.sum(-1).numpy(),
    }
    assert_close_to_reference(as_array(pair[0], f"the influence from {case.label}"), expected[0],
                              f"the influence from {case.label}", rtol=1e-4, atol=1e-7, mistakes=mistakes,
                              hint="influence[b, j] = norm over D of d scores[b, step] / d source[b, j].")


def _judge_share(case: Case, got: Any, expected: Any) -> None:
    _judge_influence(case, got, expected)
    _, _, _, visible = case.args
    what = f"the future share from {case.label}"
    share = as_array(got[1], what)
    influence = np.asarray(expected[0], dtype=float)
    total = influence.sum(-1)
    if (total == 0).any():
        if share.shape == total.shape and np.isnan(share[total == 0]).any():
            raise Wrong(f"{what} is nan where no source position influences the step (0 / 0); return 0 there.")
        mistakes = {}
    else:
        mistakes = {
            f"the future starts at position `visible` = {visible} (positions visible .. Ts-1); yours starts one "
            "later.": influence[:, visible + 1:].sum(-1) / total,
            "this is the share of the visible positions; the probe asks for the future's share.":
                influence[:, :visible].sum(-1) / total,
            "divide by each example's total influence, so the share lies between 0 and 1.":
                influence[:, visible:].sum(-1),
        }
    assert_close_to_reference(share, expected[1], what, rtol=1e-4, atol=1e-7, mistakes=mistakes,
                              hint="future_share[b] = influence[b, visible:].sum() / influence[b].sum(), and 0 when "
                                   "that total is 0.")


INFLUENCE = Exercise(
    grade_id="influence_tests", title="Exercise 3 (the influence of each source position)", name="future_influence",
    reference=ref.future_influence, judge=_judge_influence, forbid=(REFERENCE,), allow=MODEL_ATTENTION,
    passed="the probe measures the right step, per position, with the Euclidean norm",
    visible=lambda: [_mixing_case(np.random.default_rng(6), _banded(3, 4), 1, 2, 0, 1),
                     _mixing_case(np.random.default_rng(7), _banded(4, 5), 2, 3, 2, 3),
                     _model_case(np.random.default_rng(8), False, 1)],
    hidden=lambda rng: [_mixing_case(rng, rng.standard_normal((5, 6)), 3, 4, 4, 5),
                        _mixing_case(rng, np.tril(rng.standard_normal((4, 4))), 2, 1, 0, 1),
                        _model_case(rng, False, 3),
                        _model_case(rng, True, 2)],
)
FUTURE_SHARE = Exercise(
    grade_id="future_share_tests", title="Exercise 3 (the future's share)", name="future_influence",
    reference=ref.future_influence, judge=_judge_share, forbid=(REFERENCE,), allow=MODEL_ATTENTION,
    passed="the future's share starts at `visible` and is 0 when nothing influences the step",
    visible=lambda: [_mixing_case(np.random.default_rng(9), _banded(3, 5), 1, 2, 1, 2),
                     _model_case(np.random.default_rng(10), True, 2),
                     _mixing_case(np.random.default_rng(11), np.zeros((2, 3)), 1, 2, 0, 1)],  # no influence at all
    hidden=lambda rng: [_mixing_case(rng, rng.standard_normal((3, 6)), 4, 3, 2, 3),
                        _mixing_case(rng, _banded(5, 6), 2, 2, 4, 6),  # no future left: share 0
                        _model_case(rng, False, 0),
                        _model_case(rng, True, 4)],
)


# ----------------------------------------------------------------------------- tie_kv

def _tie_case(scope: str, layers: int, d_model: int, seed: int) -> Case:
    label = (f"`tie_kv(model, {scope!r})` on a Seq2Seq with {layers} encoder and {layers} decoder layers "
             f"(D = {d_model})")
    return Case(label, (scope,), note={"layers": layers, "d_model": d_model, "seed": seed,
                                       "raises": scope not in ref.SCOPES})


def _groups(modules: list[nn.Module], part: Callable[[MultiHeadAttention], Any]) -> list[int]:
    """For each module, the index of the first module whose ``part`` is the very same object."""
    parts = [part(module) for module in modules]
    return [next(i for i, other in enumerate(parts) if other is mine) for mine in parts]


def _tie_scenario(implementation: Callable[[nn.Module, str], Any], case: Case) -> dict[str, Any]:
    """Build the model, tie it with ``implementation``, and report its sharing, its saving, logits and gradients."""
    note = case.note
    config = Seq2SeqConfig(12, 12, d_model=note["d_model"], n_heads=2, n_encoder_layers=note["layers"],
                           n_decoder_layers=note["layers"], d_ff=2 * note["d_model"], dropout=0.0, max_len=8)
    model = _seeded(note["seed"], lambda: Seq2Seq(config))
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    originals = [m.k_proj.weight.detach().clone() for m in modules]
    before = sum(p.numel() for p in model.parameters())
    saved = implementation(model, case.args[0])
    after = sum(p.numel() for p in model.parameters())
    src, tgt = _seeded(note["seed"], lambda: (torch.randint(1, 12, (2, 5)), torch.randint(1, 12, (2, 4))))
    logits = model(src, tgt)
    logits.square().mean().backward()
    shared_from = [next((i for i, w in enumerate(originals) if torch.equal(w, m.k_proj.weight)), -1) for m in modules]
    return {
        "saved": saved, "dropped": before - after,
        "k": _groups(modules, lambda m: m.k_proj.weight), "v": _groups(modules, lambda m: m.v_proj.weight),
        "k_bias": _groups(modules, lambda m: m.k_proj.bias), "v_bias": _groups(modules, lambda m: m.v_proj.bias),
        "q": _groups(modules, lambda m: m.q_proj.weight), "out": _groups(modules, lambda m: m.out_proj.weight),
        "k_is_v": any(m.k_proj.weight is m.v_proj.weight for m in modules), "k_from": shared_from,
        "logits": logits.detach(), "k_grads": [m.k_proj.weight.grad for m in modules],
    }


def _judge_tie(case: Case, got: Any, expected: Any) -> None:
    why = f"{case.args[0]!r} is not one of {ref.SCOPES}"
    if case.note["raises"] and not isinstance(got, Raised):
        raise Wrong(f"{case.label} should raise ValueError: {why}; your code returned instead.")
    if case.note["raises"]:
        expect_raise(got, case, "ValueError", why)
        return
    got = expect_value(got, case, "the number of parameters saved")
    what = case.label
    try:
        saved = float(np.asarray(got["saved"], dtype=float)) if got["saved"] is not None else None
    except (TypeError, ValueError):
        saved = None
    if saved is None or not math.isfinite(saved):
        raise Wrong(f"{what} should return the number of parameters saved (an int), got {got['saved']!r}; did "
                    "you forget the `return`?")
    if got["k_is_v"]:
        raise Wrong(f"{what}: a module's key projection became its value projection. Tie K with K and V with V "
                    "across modules; W_K and W_V stay different matrices.")
    for part, name in (("q", "query"), ("out", "output")):
        if got[part] != expected[part]:
            raise Wrong(f"{what}: the {name} projections were shared too; only k_proj and v_proj are tied.")
    for part in ("k", "v"):
        if got[part] != expected[part]:
            which = "every attention module" if case.args[0] == "all" else "the cross-attention modules only"
            raise Wrong(f"{what}: the {part}_proj sharing is wrong (module groups {got[part]}, expected "
                        f"{expected[part]}): with scope {case.args[0]!r}, {which} use the same {part}_proj.")
    if got["k_bias"] != expected["k_bias"] or got["v_bias"] != expected["v_bias"]:
        raise Wrong(f"{what}: the weights are shared but the biases are not; share the whole nn.Linear module "
                    "(module.k_proj = first.k_proj), or use module.share_kv_from(first).")
    if got["k_from"] != expected["k_from"]:
        raise Wrong(f"{what}: the shared projections should be those of the first tied module (in model.modules() "
                    "order), with their weights unchanged.")
    if saved != got["dropped"]:
        raise Wrong(f"{what} returned {saved:g}, but the model lost {got['dropped']} trainable numbers. Count "
                    "sum(p.numel() for p in model.parameters()) before and after: shared parameters count once.")
    assert_same_structure_close([got["logits"], got["k_grads"]], [expected["logits"], expected["k_grads"]],
                                f"the tied model's logits and key-weight gradients ({what})", rtol=1e-5, atol=1e-6)


TIE_ALL = Exercise(
    grade_id="tie_all_tests", title="Exercise 4 (tie across every attention module)", name="tie_kv",
    reference=ref.tie_kv, judge=_judge_tie, run=_tie_scenario, forbid=(REFERENCE,), allow=MODEL_ATTENTION,
    passed="every attention module shares one K and one V projection, and the saving is right",
    visible=lambda: [_tie_case("all", 1, 16, 0), _tie_case("all", 2, 8, 1)],
    hidden=lambda rng: [_tie_case("all", 3, 8, int(rng.integers(1000))),
                        _tie_case("all", 1, 4, int(rng.integers(1000)))],
)
TIE_CROSS = Exercise(
    grade_id="tie_cross_tests", title="Exercise 4 (tie within cross-attention)", name="tie_kv",
    reference=ref.tie_kv, judge=_judge_tie, run=_tie_scenario, forbid=(REFERENCE,), allow=MODEL_ATTENTION,
    passed="only the cross-attention modules share, and an unknown scope raises ValueError",
    visible=lambda: [_tie_case("cross", 2, 8, 2), _tie_case("values", 1, 8, 3)],
    hidden=lambda rng: [_tie_case("cross", 3, 8, int(rng.integers(1000))),
                        _tie_case("cross", 1, 8, int(rng.integers(1000))),  # one decoder layer: nothing to share
                        _tie_case("self", 2, 4, 0)],
)

EXERCISES = Exercises("05_details", [POSITIONED_SCORES, POSITIONED_BOTH, RELATIVE_BIAS, RELATIVE_CLIP, INFLUENCE,
                                     FUTURE_SHARE, TIE_ALL, TIE_CROSS])
check = EXERCISES.check
record = EXERCISES.record
