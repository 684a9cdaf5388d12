"""Chapter 5 widgets: the pure view functions, their HTML, and the live ipywidgets boxes (no browser)."""

import numpy as np
import pytest
import torch

from xattn_edu.chapters.details import leakage, positions
from xattn_edu.chapters.details.widget import (
    leak_view,
    make_leakage_widget,
    make_placement_widget,
    placement_view,
    render_leak_html,
    render_placement_html,
)
from xattn_edu.chapters.support.live import OUTPUT_CLASS, SLIDER_CLASS


@pytest.fixture(scope="module")
def models():
    setup = positions.PositionsSetup(d_model=8)
    torch.manual_seed(0)
    return {placement: setup.build(placement) for placement in ("queries", "keys", "rotary")}


@pytest.fixture(scope="module")
def profiles():
    setup = leakage.LeakageSetup(d_model=8, length=6)
    batch = setup.chain.shifted(np.random.default_rng(0), 4, setup.length)
    torch.manual_seed(0)
    return {variant.label: leakage.leak_profile(setup.build(variant), batch, 1) for variant in leakage.VARIANTS}


def test_placement_view_shows_every_head_and_whether_copies_are_told_apart(models):
    blind, seeing = placement_view(models, "queries"), placement_view(models, "keys")
    assert blind.weights.shape == (2, 7, 7) and blind.source == tuple(positions.PROBE)
    np.testing.assert_allclose(blind.weights.sum(-1), 1.0, rtol=1e-5)
    assert blind.largest_gap == 0.0 and seeing.largest_gap > 0.0
    np.testing.assert_array_equal(blind.weights[:, :, 0], blind.weights[:, :, 3])  # two A's, same column
    assert "cannot tell the copies apart" in render_placement_html(blind)
    assert "told apart" in render_placement_html(seeing) and "head 1" in render_placement_html(seeing)


def test_the_placement_widget_is_a_dropdown_whose_choice_redraws_the_maps(models):
    box = make_placement_widget(models)
    dropdown, output = box.children
    assert OUTPUT_CLASS in output._dom_classes and SLIDER_CLASS not in dropdown._dom_classes
    first = output.value
    dropdown.value = "rotary"
    assert output.value != first and "rotary" in output.value


def test_leak_view_reads_one_step_and_its_future_share(profiles):
    view = leak_view(profiles, step=2)
    assert view.visible == 3
    sealed = "causal encoder, wait-k cross-attention"
    assert view.future_share[sealed] == 0.0 and view.influence[sealed][3:].sum() == 0.0
    assert view.future_share["bidirectional encoder, wait-k cross-attention"] > 0.0
    for row in view.influence.values():
        assert row.sum() == pytest.approx(1.0, rel=1e-5)
    html = render_leak_html(view)
    assert "step 2 must write x3" in html and html.count("border-bottom:3px") == 3  # x3, x4, x5 are the future


def test_the_leakage_widget_slider_changes_the_output_and_returns_to_it(profiles):
    box = make_leakage_widget(profiles)
    slider, output = box.children
    assert SLIDER_CLASS in slider._dom_classes and (slider.min, slider.max) == (0, 4)
    at_zero = output.value
    slider.value = 3
    assert output.value != at_zero and "step 3 must write x4" in output.value
    slider.value = 0
    assert output.value == at_zero


def test_the_architecture_figure_numbers_all_seven_details():
    import matplotlib

    matplotlib.use("Agg")
    from xattn_edu.chapters.details.figures import architecture_figure

    figure = architecture_figure()
    text = " ".join(t.get_text() for t in figure.axes[0].texts)
    assert all(mark in text for mark in "①②③④⑤⑥⑦")
    assert figure.axes[0].get_title()
