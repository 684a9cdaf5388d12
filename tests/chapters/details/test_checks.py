"""Chapter 5 grading: the declarations' verdicts and messages, then whole notebooks through the grader.

The first tests call the declarations directly (fast): correct code written differently from the
reference passes every case on many seeds, the reference itself is refused, and each typical mistake
fails the exercise meant to catch it with its message. The slow tests grade whole notebooks.
"""

import math

import pytest
import torch
from torch import nn

from tests.helpers.grading import grade, replace_solution, solution_notebook
from xattn_edu.chapters.details import checks as grading
from xattn_edu.chapters.details import reference as ref
from xattn_edu.nn.heads import MultiHeadAttention

CHAPTER = "05_details"
POINTS = {
    "positioned_scores_tests": 2,
    "positioned_both_tests": 1,
    "relative_bias_tests": 2,
    "relative_clip_tests": 1,
    "influence_tests": 2,
    "future_share_tests": 1,
    "tie_all_tests": 2,
    "tie_cross_tests": 1,
}


# ----------------------------------------------------------------------------- correct code, written another way

def positioned_scores(target, source, w_query, w_key, table, placement):
    if placement not in {"none", "queries", "keys", "both"}:
        raise ValueError(placement)
    query_in = target + table[: target.shape[1]] * float(placement in ("queries", "both"))
    key_in = source + table[: source.shape[1]] * float(placement in ("keys", "both"))
    return torch.einsum("btk,bsk->bts", query_in @ w_query, key_in @ w_key) / w_key.shape[1] ** 0.5


def relative_position_bias(table, query_positions, key_positions):
    reach = table.shape[0] // 2
    rows = (key_positions.view(1, -1) - query_positions.view(-1, 1)).clamp(-reach, reach) + reach
    return torch.stack([table[:, head][rows] for head in range(table.shape[1])])


def future_influence(step_score, source, step, visible):
    leaf = source.clone().detach().requires_grad_()
    step_score(leaf)[:, step].sum().backward()
    influence = leaf.grad.pow(2).sum(-1).sqrt()
    total = influence.sum(1)
    share = torch.zeros_like(total)
    share[total > 0] = influence[:, visible:].sum(1)[total > 0] / total[total > 0]
    return influence, share


def tie_kv(model, scope):
    if scope not in ("all", "cross"):
        raise ValueError(scope)
    before = sum(p.numel() for p in model.parameters())
    tied = [m for n, m in model.named_modules()
            if isinstance(m, MultiHeadAttention) and (scope == "all" or "cross" in n)]
    for module in tied[1:]:
        module.k_proj, module.v_proj = tied[0].k_proj, tied[0].v_proj
    return before - sum(p.numel() for p in model.parameters())


CORRECT = {"positioned_scores": positioned_scores, "relative_position_bias": relative_position_bias,
           "future_influence": future_influence, "tie_kv": tie_kv}


def failures(grade_id, fn, seed=0):
    """The judge's messages for ``fn`` on every case (visible and hidden) of one exercise."""
    exercise = grading.EXERCISES[grade_id]
    return [message for case in exercise.cases(seed)
            if (message := exercise.verdict(case, exercise.result_of(fn, case)))]


@pytest.mark.parametrize("grade_id", list(POINTS))
def test_correct_code_written_another_way_passes_every_case_on_many_seeds(grade_id):
    exercise = grading.EXERCISES[grade_id]
    for seed in range(4):
        assert failures(grade_id, CORRECT[exercise.name], seed) == []


@pytest.mark.parametrize("grade_id", list(POINTS))
def test_the_reference_passes_its_own_hidden_cases_on_many_seeds(grade_id):
    exercise = grading.EXERCISES[grade_id]
    for seed in range(10):
        for case in exercise.cases(seed):
            assert exercise.verdict(case, exercise.result_of(exercise.reference, case, student=False)) == ""


@pytest.mark.parametrize("grade_id", list(POINTS))
def test_calling_the_reference_is_refused(grade_id):
    name = grading.EXERCISES[grade_id].name
    with pytest.raises(AssertionError, match=f"calls the reference implementation `{ref.__name__}.{name}"):
        grading.check(grade_id, getattr(ref, name))


def test_a_relative_bias_built_by_the_package_module_is_refused():
    from xattn_edu.nn.positional import RelativePositionBias

    def borrowed(table, query_positions, key_positions):
        module = RelativePositionBias(table.shape[1], table.shape[0] // 2)
        module.bias.weight = nn.Parameter(table)
        return module(query_positions, key_positions)[0]

    with pytest.raises(AssertionError, match="calls the reference implementation `xattn_edu.nn.positional"):
        grading.check("relative_bias_tests", borrowed)


def test_the_check_prints_what_passed(capsys):
    grading.check("tie_all_tests", tie_kv)
    assert "Exercise 4 (tie across every attention module)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- typical mistakes

def swapped_sides(target, source, w_query, w_key, table, placement):
    flipped = {"queries": "keys", "keys": "queries"}.get(placement, placement)
    return positioned_scores(target, source, w_query, w_key, table, flipped)


def always_both(target, source, w_query, w_key, table, placement):
    return positioned_scores(target, source, w_query, w_key, table, "none" if placement == "none" else "both")


def unscaled(target, source, w_query, w_key, table, placement):
    return positioned_scores(target, source, w_query, w_key, table, placement) * math.sqrt(w_key.shape[1])


def scaled_by_model_width(target, source, w_query, w_key, table, placement):
    return unscaled(target, source, w_query, w_key, table, placement) / math.sqrt(w_key.shape[0])


def after_projection(target, source, w_query, w_key, table, placement):
    queries = target @ w_query + (table[: target.shape[1]] if placement in ("queries", "both") else 0)
    keys = source @ w_key + (table[: source.shape[1]] if placement in ("keys", "both") else 0)
    return queries @ keys.transpose(1, 2) / math.sqrt(w_key.shape[1])


def one_slice(target, source, w_query, w_key, table, placement):
    rows = table[: source.shape[1]]
    query_in = target + rows if placement in ("queries", "both") else target
    key_in = source + rows if placement in ("keys", "both") else source
    return query_in @ w_query @ (key_in @ w_key).transpose(1, 2) / math.sqrt(w_key.shape[1])


def accepts_anything(target, source, w_query, w_key, table, placement):
    return positioned_scores(target, source, w_query, w_key, table, placement if placement in ref.PLACEMENTS
                             else "none")


def through_numpy(target, source, w_query, w_key, table, placement):
    return torch.tensor(positioned_scores(target, source, w_query, w_key, table, placement).detach().numpy())


def flipped_distance(table, query_positions, key_positions):
    return relative_position_bias(table, key_positions, query_positions).transpose(1, 2)


def heads_last(table, query_positions, key_positions):
    return relative_position_bias(table, query_positions, key_positions).permute(1, 2, 0)


def no_offset(table, query_positions, key_positions):
    reach = table.shape[0] // 2
    return table[(key_positions[None] - query_positions[:, None]).clamp(-reach, reach)].permute(2, 0, 1)


def no_clipping(table, query_positions, key_positions):
    return table[key_positions[None] - query_positions[:, None] + table.shape[0] // 2].permute(2, 0, 1)


def positions_from_zero(table, query_positions, key_positions):
    return relative_position_bias(table, torch.arange(len(query_positions)), torch.arange(len(key_positions)))


def all_steps(step_score, source, step, visible):
    leaf = source.clone().requires_grad_()
    influence = torch.autograd.grad(step_score(leaf).sum(), leaf)[0].norm(dim=-1)
    return influence, influence[:, visible:].sum(1) / influence.sum(1)


def l1_norm(step_score, source, step, visible):
    leaf = source.clone().requires_grad_()
    influence = torch.autograd.grad(step_score(leaf)[:, step].sum(), leaf)[0].abs().sum(-1)
    return influence, influence[:, visible:].sum(1) / influence.sum(1)


def future_one_late(step_score, source, step, visible):
    influence, _ = future_influence(step_score, source, step, visible)
    return influence, influence[:, visible + 1:].sum(1) / influence.sum(1)


def zero_over_zero(step_score, source, step, visible):
    influence, _ = future_influence(step_score, source, step, visible)
    return influence, influence[:, visible:].sum(1) / influence.sum(1)


def influence_only(step_score, source, step, visible):
    return future_influence(step_score, source, step, visible)[0]


def _tied(model, scope):
    return [m for n, m in model.named_modules()
            if isinstance(m, MultiHeadAttention) and (scope == "all" or "cross" in n)]


def queries_too(model, scope):
    saved = tie_kv(model, scope)
    modules = _tied(model, scope)
    for module in modules[1:]:
        module.q_proj = modules[0].q_proj
    return saved


def key_is_value(model, scope):
    saved = tie_kv(model, scope)
    for module in _tied(model, scope):
        module.v_proj = module.k_proj
    return saved


def weights_only(model, scope):
    before = sum(p.numel() for p in model.parameters())
    modules = _tied(model, scope)
    for module in modules[1:]:
        module.k_proj.weight, module.v_proj.weight = modules[0].k_proj.weight, modules[0].v_proj.weight
    return before - sum(p.numel() for p in model.parameters())


def fresh_projections(model, scope):
    before = sum(p.numel() for p in model.parameters())
    width = model.cfg.d_model
    k_proj, v_proj = nn.Linear(width, width), nn.Linear(width, width)
    for module in _tied(model, scope):
        module.k_proj, module.v_proj = k_proj, v_proj
    return before - sum(p.numel() for p in model.parameters())


def counted_per_module(model, scope):
    def count():  # every module keeps its own k_proj attribute, so this never changes
        return sum(p.numel() for module in _tied(model, scope) for p in module.parameters())

    before = count()
    tie_kv(model, scope)
    return before - count()


def weights_counted_without_biases(model, scope):
    tie_kv(model, scope)
    return (len(_tied(model, scope)) - 1) * 2 * model.cfg.d_model ** 2


def everything_for_cross(model, scope):
    return tie_kv(model, "all") if scope in ("all", "cross") else tie_kv(model, scope)


def no_return(model, scope):
    tie_kv(model, scope)


@pytest.mark.parametrize(
    "grade_id, fn, message",
    [
        ("positioned_scores_tests", swapped_sides, "positions went on the keys instead of the queries"),
        ("positioned_scores_tests", always_both, "positions went on both sides"),
        ("positioned_scores_tests", unscaled, "divide the dot products by sqrt(Dk)"),
        ("positioned_scores_tests", scaled_by_model_width, "divided by sqrt(D), the input width"),
        ("positioned_scores_tests", one_slice, "the target (Tt positions) takes table[:Tt]"),
        ("positioned_scores_tests", through_numpy, "carries gradients back"),
        ("positioned_both_tests", accepts_anything, "should raise ValueError"),
        ("relative_bias_tests", flipped_distance, "yours is query - key"),
        ("relative_bias_tests", heads_last, "yours has the heads last"),
        ("relative_bias_tests", no_offset, "add M to the distance"),
        ("relative_clip_tests", no_clipping, "must be clipped to ±M"),
        ("relative_clip_tests", positions_from_zero, "use the positions you are given"),
        ("influence_tests", all_steps, "sums the gradients of every decoder step"),
        ("influence_tests", l1_norm, "Euclidean norm"),
        ("influence_tests", influence_only, "should return a pair"),
        ("future_share_tests", future_one_late, "yours starts one later"),
        ("future_share_tests", zero_over_zero, "return 0 there"),
        ("tie_all_tests", queries_too, "the query projections were shared too"),
        ("tie_all_tests", key_is_value, "key projection became its value projection"),
        ("tie_all_tests", weights_only, "the biases are not"),
        ("tie_all_tests", fresh_projections, "those of the first tied module"),
        ("tie_all_tests", counted_per_module, "shared parameters count once"),
        ("tie_all_tests", weights_counted_without_biases, "shared parameters count once"),
        ("tie_all_tests", no_return, "forget the `return`"),
        ("tie_cross_tests", everything_for_cross, "the cross-attention modules only"),
    ],
)
def test_each_typical_mistake_fails_its_exercise_with_its_message(grade_id, fn, message):
    found = failures(grade_id, fn)
    assert found, f"{fn.__name__} passed {grade_id}"
    assert message in found[0], found[0]


def test_positions_added_after_the_projection_are_explained_in_view_and_named_by_a_hidden_case():
    exercise = grading.EXERCISES["positioned_scores_tests"]
    visible = [exercise.verdict(case, exercise.result_of(after_projection, case)) for case in exercise.visible()]
    assert visible[0] and all("before the projections" in message for message in visible if message)  # Dk != D
    assert any("added after the projection" in message for message in failures("positioned_scores_tests",
                                                                                 after_projection))  # Dk == D


def test_the_wrong_answers_lose_only_their_own_exercise():
    assert failures("positioned_both_tests", swapped_sides) == []  # 'both' and 'none' do not care about sides
    assert failures("future_share_tests", all_steps)  # the share of a wrong influence is wrong too
    assert failures("influence_tests", future_one_late) == []


# ----------------------------------------------------------------------------- whole notebooks

@pytest.mark.slow
def test_wrong_sides_a_flipped_distance_an_off_by_one_future_and_a_reference_call_lose_exactly_theirs(tmp_path):
    notebook = solution_notebook(CHAPTER)
    notebook = replace_solution(notebook, "positioned_scores_solution", """
        flipped = {"queries": "keys", "keys": "queries"}.get(placement, placement)
        if flipped not in ("none", "queries", "keys", "both"):
            raise ValueError(placement)
        query_input = target + table[: target.shape[1]] if flipped in ("queries", "both") else target
        key_input = source + table[: source.shape[1]] if flipped in ("keys", "both") else source
        return (query_input @ w_query) @ (key_input @ w_key).transpose(1, 2) / math.sqrt(w_key.shape[1])
    """)
    notebook = replace_solution(notebook, "relative_bias_solution", """
        reach = table.shape[0] // 2
        distance = query_positions.view(-1, 1) - key_positions.view(1, -1)
        return table[torch.clamp(distance, -reach, reach) + reach].permute(2, 0, 1)
    """)
    notebook = replace_solution(notebook, "influence_solution", """
        probe = source.detach().clone().requires_grad_(True)
        gradient = torch.autograd.grad(step_score(probe)[:, step].sum(), probe)[0]
        influence = gradient.norm(dim=-1)
        total = influence.sum(-1)
        return influence, torch.where(total > 0, influence[:, visible + 1:].sum(-1) / total, 0.0)
    """)
    notebook = replace_solution(notebook, "tie_kv_solution", """
        from xattn_edu.chapters.details.reference import tie_kv as borrowed
        return borrowed(model, scope)
    """)
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "positioned_scores_tests": 0, "relative_bias_tests": 0, "relative_clip_tests": 0,
                      "future_share_tests": 0, "tie_all_tests": 0, "tie_cross_tests": 0}, report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "positions went on the keys instead of the queries" in reasons["positioned_scores_tests"]
    assert "yours is query - key" in reasons["relative_bias_tests"]
    assert "yours starts one later" in reasons["future_share_tests"]
    assert "calls the reference implementation" in reasons["tie_all_tests"]
