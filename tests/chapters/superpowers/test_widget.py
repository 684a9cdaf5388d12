"""Chapter 4 widgets: the pure view functions, the HTML, and the live ipywidgets boxes (no browser)."""

import numpy as np
import pytest

from xattn_edu.chapters.superpowers import widget
from xattn_edu.chapters.superpowers.gradient_flow import VARIANTS, gradient_profile


def test_uncertainty_view_is_deterministic_and_has_the_shapes_it_draws():
    first, second = widget.uncertainty_view(0.6, 64), widget.uncertainty_view(0.6, 64)
    assert first.attention_residual == second.attention_residual
    assert first.x.shape == first.y.shape == (64,)
    assert first.grid_prediction.shape == first.truth.shape == widget.GRID.shape
    assert first.bound == pytest.approx(0.64)


def test_with_a_large_context_attention_and_the_line_reach_the_gaussian_bound():
    view = widget.uncertainty_view(0.8, 2048)
    assert view.attention_residual == pytest.approx(view.bound, abs=0.06)
    assert view.linear_residual == pytest.approx(view.bound, abs=0.06)
    np.testing.assert_allclose(view.truth, 0.8 * widget.GRID)


def test_nonlinear_view_has_no_correlation_but_attention_still_removes_the_strength_squared():
    view = widget.uncertainty_view(0.9, 2048, nonlinear=True)
    assert abs(view.sample_rho) < 0.08
    assert view.linear_residual > 0.9
    assert view.attention_residual == pytest.approx(1 - 0.81, abs=0.06)


def test_uncertainty_view_rejects_impossible_settings():
    with pytest.raises(ValueError):
        widget.uncertainty_view(1.2, 64)


def test_uncertainty_html_shows_the_numbers_and_two_plots():
    view = widget.uncertainty_view(-0.35, 128)
    page = widget.render_uncertainty_html(view)
    assert page.count("<svg") == 2
    assert f"{view.attention_residual:.3f}" in page and f"{view.bound:.3f}" in page and "-0.35" in page


def test_the_uncertainty_widget_redraws_on_every_control():
    box = widget.make_uncertainty_widget()
    rho, size, toggle, output = box.children
    assert "xattn-slider" in rho._dom_classes and "xattn-slider" in size._dom_classes
    assert "xattn-live-output" in output._dom_classes
    seen = [output.value]
    rho.value = 0.9
    seen.append(output.value)
    size.value = 16
    seen.append(output.value)
    toggle.value = True
    seen.append(output.value)
    assert len(set(seen)) == 4


def test_gradient_view_reads_the_measured_profile():
    view = widget.gradient_view(VARIANTS[0].name, 5)
    np.testing.assert_array_equal(view.norms, gradient_profile(VARIANTS[0], 5))
    assert view.ratio == pytest.approx(view.norms[0] / view.norms[-1])
    with pytest.raises(KeyError):
        widget.gradient_view("sometimes", 5)


def test_gradient_html_draws_one_bar_per_layer_on_the_fixed_scale():
    page = widget.render_gradient_html(widget.gradient_view(VARIANTS[2].name, 7))
    assert page.count("<rect") == 7
    assert "1e-4" in page and "1e2" in page


def test_the_gradient_widget_redraws_when_the_variant_or_depth_changes():
    chooser, slider, output = widget.make_gradient_widget(depth=3).children
    assert "xattn-slider" in slider._dom_classes
    before = output.value
    slider.value = 4
    after_depth = output.value
    chooser.value = VARIANTS[-1].name
    assert len({before, after_depth, output.value}) == 3
