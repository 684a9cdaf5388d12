"""Chapter 1 widget: the pure view function, the HTML, and the live ipywidgets box."""

import numpy as np
import pytest

from xattn_edu.chapters.library_lookup.widget import SHELF, lookup_view, make_lookup_widget, render_lookup_html


def angle_of(book):
    return float(np.degrees(np.arctan2(book.key[1], book.key[0])))


@pytest.mark.parametrize("angle, scale", [(0.0, 1.0), (123.0, 0.3), (250.0, 5.0), (359.0, 2.0)])
def test_weights_are_a_distribution_and_the_retrieved_colour_is_their_blend(angle, scale):
    view = lookup_view(angle, scale)
    assert view.weights.shape == (len(SHELF),)
    assert (view.weights > 0).all() and view.weights.sum() == pytest.approx(1.0)
    colours = np.array([book.colour for book in SHELF])
    np.testing.assert_allclose(view.retrieved, view.weights @ colours)
    assert np.linalg.norm(view.query) == pytest.approx(scale)


@pytest.mark.parametrize("book", SHELF, ids=lambda book: book.title)
def test_pointing_a_long_query_at_a_book_makes_it_win(book):
    view = lookup_view(angle_of(book), 4.0)
    assert view.best == (book.title,)
    assert view.weights[view.titles.index(book.title)] > 0.5


def test_rotating_toward_a_book_increases_its_weight():
    target = SHELF[1]
    weights = [lookup_view(angle_of(target) - offset, 1.5).weights[1] for offset in (120, 60, 20, 0)]
    assert weights == sorted(weights)


def test_scale_zero_gives_uniform_weights_and_the_mean_colour():
    view = lookup_view(77.0, 0.0)
    np.testing.assert_allclose(view.weights, 1.0 / len(SHELF))
    np.testing.assert_allclose(view.retrieved, np.mean([book.colour for book in SHELF], axis=0))


def test_a_zero_query_ties_every_score_and_names_no_winner():
    view = lookup_view(77.0, 0.0)
    assert view.best == view.titles
    page = render_lookup_html(view)
    assert "all scores tie" in page and "<b>" not in page


def test_a_tie_between_two_books_is_named_as_a_tie():
    # Astronomy (1.6, 0) and Botany (0.45, 1.4): equal scores for a query along their difference's normal
    astronomy, botany = (np.array(book.key) for book in SHELF[:2])
    normal = np.array([-(botany - astronomy)[1], (botany - astronomy)[0]])
    direction = normal if normal @ astronomy > 0 else -normal
    view = lookup_view(float(np.degrees(np.arctan2(direction[1], direction[0]))), 2.0)
    assert view.best == ("Astronomy", "Botany")
    assert "shared by Astronomy, Botany" in render_lookup_html(view)


def test_draw_shelf_has_a_legend_for_every_value_colour_and_skips_the_zero_query():
    import matplotlib

    matplotlib.use("Agg")
    from xattn_edu.chapters.library_lookup.widget import draw_shelf

    ax = draw_shelf(queries={"q1": np.array([1.0, 0.0]), "q0": np.zeros(2)})
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [book.title for book in SHELF] + ["query"]
    assert [text.get_text() for text in ax.texts if text.get_text()] == ["q1"]


def test_html_lists_every_book_and_the_winner():
    view = lookup_view(angle_of(SHELF[2]), 3.0)
    page = render_lookup_html(view)
    assert all(book.title in page for book in SHELF)
    assert f"<b>{SHELF[2].title}</b>" in page


def test_the_widget_output_changes_when_a_slider_moves():
    box = make_lookup_widget()
    angle, length, output = box.children
    assert "xattn-slider" in angle._dom_classes and "xattn-slider" in length._dom_classes
    assert "xattn-live-output" in output._dom_classes
    before = output.value
    angle.value = 200.0
    after_angle = output.value
    assert after_angle != before
    length.value = 0.0
    assert output.value != after_angle
    assert "0.200" in output.value  # five books, uniform weights
