"""Chapter 2 widget: the pure view function, the HTML, and the live ipywidgets box."""

import math

import numpy as np
import pytest

from xattn_edu.chapters.spotlight.reference import attention_entropy
from xattn_edu.chapters.spotlight.widget import (
    BOOKS,
    QUERIES,
    WIDTHS,
    library,
    make_spotlight_widget,
    render_spotlight_html,
    spotlight_view,
)

ZERO = QUERIES.index("zero query")
CLOSE = QUERIES.index("close to Botany")
RANDOM = QUERIES.index("a random question")


@pytest.mark.parametrize("temperature", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("dim", WIDTHS)
@pytest.mark.parametrize("scaled", [True, False])
def test_rows_are_distributions_with_entropy_between_0_and_log_n(temperature, dim, scaled):
    view = spotlight_view(temperature, dim, scaled)
    assert view.weights.shape == view.scores.shape == (len(QUERIES), len(BOOKS))
    np.testing.assert_allclose(view.weights.sum(axis=-1), 1.0)
    np.testing.assert_allclose(view.entropy, attention_entropy(view.weights))
    assert view.log_n == pytest.approx(math.log(len(BOOKS)))
    assert ((view.entropy_fraction >= 0) & (view.entropy_fraction <= 1 + 1e-12)).all()
    np.testing.assert_allclose(view.weights[ZERO], 1 / len(BOOKS))  # the zero query is uniform, always


def test_the_library_is_fixed_per_width():
    keys, queries = library(64)
    keys_again, _ = library(64)
    assert keys is keys_again and keys.shape == (len(BOOKS), 64) and queries.shape == (len(QUERIES), 64)
    assert not np.allclose(library(16)[0][:, :16], keys[:, :16])  # another width, another library
    with pytest.raises(ValueError, match="width d"):
        library(0)


def test_cooling_sharpens_and_heating_flattens_every_nonzero_query():
    cold, warm, hot = (spotlight_view(t, 64) for t in (0.05, 1.0, 50.0))
    for row in range(len(QUERIES)):
        if row != ZERO:
            assert cold.entropy[row] < warm.entropy[row] < hot.entropy[row]
    assert cold.weights[CLOSE].argmax() == BOOKS.index("Botany") and cold.weights[CLOSE].max() > 0.99
    assert hot.entropy_fraction.min() > 0.99


def test_without_the_scale_wide_scores_saturate_the_softmax():
    raw, scaled = spotlight_view(1.0, 1024, scaled=False), spotlight_view(1.0, 1024, scaled=True)
    assert raw.entropy_fraction[RANDOM] < 0.05 and scaled.entropy_fraction[RANDOM] > 0.3
    np.testing.assert_allclose(raw.scores, scaled.scores * math.sqrt(1024))


def test_html_shows_every_book_query_and_the_entropy_readout():
    view = spotlight_view(0.5, 16, scaled=False)
    page = render_spotlight_html(view)
    assert all(name in page for name in BOOKS + QUERIES)
    assert "T = 0.5, d = 16" in page and "no &radic;d" in page
    assert f"{view.entropy[CLOSE]:.3f} nats" in page and f"{100 * view.entropy_fraction[CLOSE]:.1f} %" in page
    assert page.count("<tr>") == 1 + len(QUERIES)


def test_the_widget_output_follows_every_control():
    box = make_spotlight_widget()
    temperature, width, scale, output = box.children
    assert "xattn-slider" in temperature._dom_classes and "xattn-slider" in width._dom_classes
    assert "xattn-live-output" in output._dom_classes
    assert temperature.style.description_width == width.style.description_width == "initial"  # labels not cut
    start = output.value
    temperature.value = 10.0**temperature.min  # FloatLogSlider: min and max are exponents of 10
    cold = output.value
    assert cold != start and "T = 0.01" in cold
    width.value = 1024
    assert output.value != cold and "d = 1024" in output.value
    wide = output.value
    scale.value = False
    assert output.value != wide and "no &radic;d" in output.value
    scale.value, width.value, temperature.value = True, 64, 1.0
    assert output.value == start  # the output is a function of the controls


def test_scaled_scores_come_from_the_chapter_reference(monkeypatch):
    from xattn_edu.chapters.spotlight import widget

    calls = []
    monkeypatch.setattr(widget, "scaled_scores", lambda q, k: calls.append(k.shape) or np.zeros((len(q), len(k))))
    assert (spotlight_view(1.0, 16).scores == 0).all() and calls == [(len(BOOKS), 16)]
    spotlight_view(1.0, 16, scaled=False)
    assert len(calls) == 1  # raw scores do not go through the scale
