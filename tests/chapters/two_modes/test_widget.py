"""Chapter 3 widget: the decoding-step view is a pure function of (example, step, head); the widget wires it live."""

import numpy as np
import pytest
import torch

from xattn_edu.chapters.two_modes import widget as w

SOURCE = ("yesterday", "the", "cat", "saw", ".")
TARGET = ("gestern", "hat", "die", "katze", "gesehen", ".")


@pytest.fixture
def example():
    weights = torch.softmax(torch.randn(3, len(TARGET), len(SOURCE), generator=torch.Generator().manual_seed(0)), -1)
    return w.example_from_maps(SOURCE, TARGET, weights)


def test_an_example_from_maps_names_its_heads_and_keeps_the_weights(example):
    assert example.heads == ("head 1", "head 2", "head 3")
    assert example.weights.shape == (3, len(TARGET), len(SOURCE))
    np.testing.assert_allclose(example.weights.sum(-1), 1.0, atol=1e-6)


def test_weights_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(h, Tt, Ts\)"):
        w.DecodingExample(SOURCE, TARGET, np.zeros((2, len(SOURCE), len(TARGET))), ("a", "b"))


@pytest.mark.parametrize("step", range(1, len(TARGET) + 1))
def test_static_cache_is_full_from_step_one_and_the_growing_cache_adds_one_entry_per_step(example, step):
    view = w.decoding_step_view(example, step, "head 2")
    assert view.static_entries == SOURCE
    assert view.static_projected_now == (step == 1)
    assert len(view.growing_entries) == step
    assert view.growing_entries[0] == w.BOS and view.writing == TARGET[step - 1]
    np.testing.assert_array_equal(view.weights, example.weights[1, step - 1])
    n = len(SOURCE)
    assert view.projections_cached == n + step
    assert view.projections_recomputed == sum(n + t for t in range(1, step + 1))


def test_html_changes_with_step_and_head_and_counts_entries_in_words(example):
    pages = {(s, h): w.render_step_html(w.decoding_step_view(example, s, h)) for s in (1, 4) for h in example.heads}
    assert len(set(pages.values())) == len(pages)
    assert pages[(1, "head 1")] == w.render_step_html(w.decoding_step_view(example, 1, "head 1"))
    assert "projected now, once" in pages[(1, "head 1")] and "reused" in pages[(4, "head 1")]
    assert "(1 entry," in pages[(1, "head 1")] and "(4 entries," in pages[(4, "head 1")]
    assert "1 entries" not in "".join(pages.values())


@pytest.mark.parametrize("step, head", [(0, "head 1"), (len(TARGET) + 1, "head 1"), (1, "nope")])
def test_bad_step_or_head_is_a_value_error(example, step, head):
    with pytest.raises(ValueError):
        w.decoding_step_view(example, step, head)


def test_widget_classes_and_live_update(example):
    box = w.make_two_modes_widget(example)
    slider, heads, output = box.children
    assert "xattn-slider" in slider._dom_classes and "xattn-live-output" in output._dom_classes
    before = output.value
    slider.value = slider.max
    assert output.value != before and "writes <b>.</b>" in output.value
    after_step = output.value
    heads.value = "head 3"
    assert output.value != after_step
