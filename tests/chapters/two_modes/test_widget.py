"""Chapter 3 widget: the decoding-step view is a pure function of (step, head); the widget wires it live."""

import numpy as np
import pytest

from xattn_edu.chapters.two_modes import widget as w


def test_weights_are_distributions_over_the_source_for_every_head_and_step():
    assert w.WEIGHTS.shape == (len(w.HEADS), len(w.TARGET), len(w.SOURCE))
    np.testing.assert_allclose(w.WEIGHTS.sum(-1), 1.0, atol=1e-12)
    assert (w.WEIGHTS >= 0).all()


def test_alignment_head_looks_at_the_aligned_source_word_including_the_reordered_verb():
    argmax = w.WEIGHTS[w.HEADS.index("alignment")].argmax(-1)
    assert tuple(argmax) == w.ALIGNMENT
    assert w.SOURCE[argmax[w.TARGET.index("sah")]] == "saw"  # German V2: the verb comes second


def test_heads_attend_differently():
    alignment, content, neighbourhood = w.WEIGHTS
    assert not np.allclose(alignment, content) and not np.allclose(alignment, neighbourhood)
    assert (content.max(-1) < alignment.max(-1)).all()  # the content head spreads its weight


@pytest.mark.parametrize("step", range(1, len(w.TARGET) + 1))
def test_static_cache_is_full_from_step_one_and_the_growing_cache_adds_one_entry_per_step(step):
    view = w.decoding_step_view(step)
    assert view.static_entries == w.SOURCE
    assert view.static_projected_now == (step == 1)
    assert len(view.growing_entries) == step
    assert view.growing_entries[0] == w.BOS and view.writing == w.TARGET[step - 1]
    n = len(w.SOURCE)
    assert view.projections_cached == n + step
    assert view.projections_recomputed == sum(n + t for t in range(1, step + 1))


def test_html_changes_with_step_and_head_and_is_deterministic():
    pages = {(s, h): w.render_step_html(w.decoding_step_view(s, h)) for s in (1, 4) for h in w.HEADS}
    assert len(set(pages.values())) == len(pages)
    assert pages[(1, "alignment")] == w.render_step_html(w.decoding_step_view(1, "alignment"))
    assert "projected now, once" in pages[(1, "alignment")] and "reused" in pages[(4, "alignment")]


@pytest.mark.parametrize("step, head", [(0, "alignment"), (len(w.TARGET) + 1, "alignment"), (1, "nope")])
def test_bad_step_or_head_is_a_value_error(step, head):
    with pytest.raises(ValueError):
        w.decoding_step_view(step, head)


def test_widget_classes_and_live_update():
    box = w.make_two_modes_widget()
    slider, heads, output = box.children
    assert "xattn-slider" in slider._dom_classes and "xattn-live-output" in output._dom_classes
    before = output.value
    slider.value = slider.max
    assert output.value != before and "writes <b>.</b>" in output.value
    after_step = output.value
    heads.value = "content"
    assert output.value != after_step
