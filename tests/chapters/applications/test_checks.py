"""Chapter 7 grading: each exercise's verdicts and messages, then whole notebooks through the grader.

The first tests call the declarations directly (milliseconds): correct code written differently from
the reference passes every case on many seeds, the reference itself fails (it is forbidden), and each
typical mistake fails the cell meant to catch it with its message. The slow tests grade notebooks.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.chapters.applications import solutions as right
from tests.helpers.grading import grade, replace_solution, solution_notebook
from xattn_edu.chapters.applications import checks
from xattn_edu.chapters.applications import reference as ref
from xattn_edu.chapters.support.exercise import Wrong

CHAPTER = "07_applications"
POINTS = {"patchify_tests": 2, "patchify_positions_tests": 1, "peak_patch_tests": 1, "peak_digit_tests": 1,
          "latent_tests": 2, "latent_mask_tests": 1, "prompt_weights_tests": 1, "prompt_logits_tests": 2}
CORRECT = {"patchify": right.patchify, "peak_to_digit": right.peak_to_digit,
           "latent_cross_attention": right.latent_cross_attention, "prompt_mask_logits": right.prompt_mask_logits}
REFERENCE = {"patchify": ref.patchify, "peak_to_digit": ref.peak_to_digit,
             "latent_cross_attention": ref.latent_cross_attention, "prompt_mask_logits": ref.prompt_mask_logits}


def verdicts(grade_id: str, fn, seeds=range(3)) -> list[str]:
    """The judge's message on every failing case (visible, then hidden for each seed)."""
    exercise = checks.EXERCISES[grade_id]
    found = []
    for seed in seeds:
        for case in exercise.cases(seed):
            message = exercise.verdict(case, exercise.result_of(fn, case))
            if message:
                found.append(message)
    return found


def test_every_graded_cell_is_declared_with_its_points():
    assert {e.grade_id for e in checks.EXERCISES} == set(POINTS)


@pytest.mark.parametrize("exercise", list(checks.EXERCISES), ids=lambda e: e.grade_id)
def test_correct_code_written_another_way_passes_every_case_on_many_seeds(exercise):
    assert verdicts(exercise.grade_id, CORRECT[exercise.name], seeds=range(25)) == []
    checks.check(exercise.grade_id, CORRECT[exercise.name])


@pytest.mark.parametrize("exercise", list(checks.EXERCISES), ids=lambda e: e.grade_id)
def test_the_reference_passes_its_own_cases_but_calling_it_is_refused(exercise):
    for seed in range(25):
        for case in exercise.cases(seed):
            assert exercise.verdict(case, exercise.result_of(REFERENCE[exercise.name], case, student=False)) == ""
    with pytest.raises(AssertionError, match="calls the reference implementation `xattn_edu.chapters.applications"):
        checks.check(exercise.grade_id, REFERENCE[exercise.name])


# ----------------------------------------------------------------------------- typical mistakes

def reshape_patchify(images, patch):
    b, h, w = images.shape
    right.patchify(images, patch)  # raises ValueError where it should
    return images.reshape(b, (h // patch) * (w // patch), patch * patch), right.patchify(images, patch)[1]


def column_first_patchify(images, patch):
    b, h, w = images.shape
    grid = images.reshape(b, h // patch, patch, w // patch, patch).permute(0, 3, 1, 2, 4)
    return grid.reshape(b, -1, patch * patch), right.patchify(images, patch)[1]


def transposed_pixels_patchify(images, patch):
    b, h, w = images.shape
    grid = images.reshape(b, h // patch, patch, w // patch, patch).permute(0, 1, 3, 4, 2)
    return grid.reshape(b, -1, patch * patch), right.patchify(images, patch)[1]


def numpy_patchify(images, patch):
    patches, positions = right.patchify(images.detach(), patch)
    return torch.from_numpy(patches.numpy().copy()), positions


def swapped_positions_patchify(images, patch):
    patches, positions = right.patchify(images, patch)
    return patches, positions.flip(-1)


def no_error_patchify(images, patch):
    b, h, w = images.shape
    return right.patchify(images[:, : h - h % patch, : w - w % patch], patch)


def argmax_rows(weights, grid_width, patch, slot_width):
    return weights.argmax(dim=0), right.peak_to_digit(weights, grid_width, patch, slot_width)[1]


def max_not_argmax(weights, grid_width, patch, slot_width):
    return weights.max(dim=-1).values, right.peak_to_digit(weights, grid_width, patch, slot_width)[1]


def row_not_column(weights, grid_width, patch, slot_width):
    index = weights.argmax(dim=-1)
    return index, torch.div((2 * (index // grid_width) + 1) * patch, 2 * slot_width, rounding_mode="floor")


def columns_not_pixels(weights, grid_width, patch, slot_width):
    index = weights.argmax(dim=-1)
    return index, (index % grid_width) // slot_width


def left_edge(weights, grid_width, patch, slot_width):
    index = weights.argmax(dim=-1)
    return index, (index % grid_width) * patch // slot_width


def latent_variant(**switches):
    def latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask=None):
        return checks._latent_variant(latents, inputs, w_q, w_k, w_v, mask, **switches)
    return latent_cross_attention


def unmasked_latents(latents, inputs, w_q, w_k, w_v, mask=None):
    return right.latent_cross_attention(latents, inputs, w_q, w_k, w_v)


def detached_latents(latents, inputs, w_q, w_k, w_v, mask=None):
    out, weights = right.latent_cross_attention(latents.detach(), inputs.detach(), w_q.detach(), w_k.detach(),
                                                w_v.detach(), mask)
    return out, weights


def fused_latents(latents, inputs, w_q, w_k, w_v, mask=None):
    queries = (latents @ w_q).expand(inputs.shape[0], -1, -1)
    keys, values = inputs @ w_k, inputs @ w_v
    out = torch.nn.functional.scaled_dot_product_attention(queries, keys, values)
    return out, torch.softmax(queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1]), dim=-1)


def module_latents(latents, inputs, w_q, w_k, w_v, mask=None):
    from xattn_edu.nn.heads import MultiHeadAttention

    MultiHeadAttention(w_q.shape[1], 1)
    return right.latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask)


def prompt_variant(**switches):
    def prompt_mask_logits(prompt, patches, to_image, to_prompt):
        return checks._prompt_variant(prompt, patches, to_image, to_prompt, **switches)
    return prompt_mask_logits


def patches_ask_prompt(prompt, patches, to_image, to_prompt):
    logits, _ = right.prompt_mask_logits(prompt, patches, to_image, to_prompt)
    return logits, right._attend(patches, prompt, *to_image)[1]


MISTAKES = [
    ("patchify_tests", reshape_patchify, "a plain reshape mixes rows"),
    ("patchify_tests", column_first_patchify, "go down the columns first"),
    ("patchify_tests", transposed_pixels_patchify, "lists its pixels column by column"),
    ("patchify_tests", numpy_patchify, "carries gradients back to images"),
    ("patchify_positions_tests", swapped_positions_patchify, "these are .column, row."),
    ("patchify_positions_tests", no_error_patchify, "should raise ValueError"),
    ("peak_patch_tests", max_not_argmax, "largest weights, not where they are"),
    ("peak_patch_tests", argmax_rows, "argmax runs over the rows"),
    ("peak_digit_tests", row_not_column, "uses the patch's row"),
    ("peak_digit_tests", columns_not_pixels, "counts patches, not pixels"),
    ("peak_digit_tests", left_edge, "uses the patch's left edge"),
    ("latent_tests", latent_variant(scale=False), "not divided by sqrt.Dk."),
    ("latent_tests", latent_variant(axis=-2), "softmax runs over the latents"),
    ("latent_tests", latent_variant(value=False), "values are the raw inputs"),
    ("latent_tests", detached_latents, "carries gradients back"),
    ("latent_tests", fused_latents, "calls the reference implementation `torch.nn.functional.scaled_dot_product"),
    ("latent_tests", module_latents, "calls the reference implementation `xattn_edu.nn.heads"),
    ("latent_mask_tests", unmasked_latents, "the mask is ignored"),
    ("latent_mask_tests", latent_variant(polarity=False), "the mask is inverted"),
    ("prompt_weights_tests", prompt_variant(axis=-2), "softmax runs over the queries"),
    ("prompt_weights_tests", patches_ask_prompt, "patches asking the prompt"),
    ("prompt_logits_tests", prompt_variant(residual_1=False), "step 1 forgot its residual"),
    ("prompt_logits_tests", prompt_variant(residual_2=False), "step 2 forgot its residual"),
    ("prompt_logits_tests", prompt_variant(updated=False), "read the original prompt"),
    ("prompt_logits_tests", prompt_variant(token=-1), "mask token is token 0"),
    ("prompt_logits_tests", prompt_variant(scale=False), "not divided by sqrt.D."),
]


@pytest.mark.parametrize("grade_id, fn, message", MISTAKES, ids=[f"{g}-{m[:30]}" for g, _, m in MISTAKES])
def test_each_typical_mistake_fails_its_cell_with_its_message(grade_id, fn, message):
    found = verdicts(grade_id, fn)
    assert found, f"{fn.__name__} passed {grade_id}"
    assert any(re.search(message, m) for m in found), found[:2]


@pytest.mark.parametrize("grade_id, other, fn", [
    ("patchify_tests", "patchify_positions_tests", reshape_patchify),
    ("patchify_positions_tests", "patchify_tests", swapped_positions_patchify),
    ("peak_digit_tests", "peak_patch_tests", left_edge),
    ("prompt_logits_tests", "prompt_weights_tests", prompt_variant(residual_2=False)),
    ("latent_mask_tests", "latent_tests", unmasked_latents),
])
def test_a_mistake_loses_only_its_own_cell(grade_id, other, fn):
    assert verdicts(grade_id, fn)
    assert verdicts(other, fn) == []


def test_the_visible_check_names_the_mistake_in_one_line():
    with pytest.raises(Wrong, match="forgot its residual") as raised:
        checks.check("prompt_logits_tests", prompt_variant(residual_1=False))
    assert "\n" not in str(raised.value)


def test_a_stub_is_reported_as_not_done():
    def patchify(images, patch):
        raise NotImplementedError()

    with pytest.raises(Wrong, match="Exercise 1 .the patches. is not done yet"):
        checks.check("patchify_tests", patchify)


@pytest.mark.slow
def test_mistakes_in_a_notebook_lose_exactly_their_cells(tmp_path):
    notebook = solution_notebook(CHAPTER)
    notebook = replace_solution(notebook, "patchify_solution", """
        b, h, w = images.shape
        if h % patch or w % patch:
            raise ValueError("no")
        positions = torch.tensor([[r, c] for r in range(h // patch) for c in range(w // patch)])
        return images.reshape(b, -1, patch * patch), positions
    """)  # a plain reshape: the patches are wrong, the positions right
    notebook = replace_solution(notebook, "peak_solution", """
        index = weights.argmax(dim=-1)
        return index, (index % grid_width) * patch // slot_width
    """)  # the left edge instead of the centre: only the hidden unaligned slots catch it
    notebook = replace_solution(notebook, "latent_solution", """
        return reference.latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask)
    """)  # the reference the setup cell imported (an import of xattn_edu would also flag every later cell)
    notebook = replace_solution(notebook, "prompt_solution", """
        def attend(x, context, w_q, w_k, w_v):
            weights = torch.softmax((x @ w_q) @ (context @ w_k).transpose(1, 2) / math.sqrt(w_k.shape[-1]), dim=-1)
            return weights @ (context @ w_v), weights

        read, weights = attend(prompt, patches, *to_image)
        tokens = prompt + read
        image = attend(patches, tokens, *to_prompt)[0]
        return (image @ tokens[:, 0, :, None]).squeeze(-1) / math.sqrt(prompt.shape[-1]), weights
    """)  # no residual in step 2
    report = grade(notebook, CHAPTER, tmp_path)
    scores = {e.grade_id: e.score for e in report.exercises}
    assert scores == {**POINTS, "patchify_tests": 0, "peak_digit_tests": 0, "latent_tests": 0,
                      "latent_mask_tests": 0, "prompt_logits_tests": 0}, report.table()
    reasons = {e.grade_id: e.reason for e in report.exercises}
    assert "a plain reshape mixes rows" in reasons["patchify_tests"]
    assert "left edge" in reasons["peak_digit_tests"]
    assert "calls the reference implementation" in reasons["latent_tests"]
    assert "step 2 forgot its residual" in reasons["prompt_logits_tests"]
