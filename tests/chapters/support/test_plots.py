"""The one heatmap style: fixed 0–1 scale, tokens on the axes, one shared colour bar for panels (Agg, no browser)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from xattn_edu.chapters.support.plots import (  # noqa: E402
    CMAP,
    attention_heatmap,
    css_rgb,
    heatmap_panels,
    line_chart,
    weight_css,
)

SOURCE = ["yesterday", "the", "cat"]
TARGET = ["gestern", "Katze"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def weights(*shape, seed=0):
    return torch.softmax(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def ticks(labels):
    return [label.get_text() for label in labels]


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_weights_use_a_fixed_0_1_scale_and_the_tokens_label_both_axes():
    w = weights(2, 3) * 0.5  # every weight below 0.5: the scale must not stretch to the data
    ax = attention_heatmap(w, TARGET, SOURCE, title="what to notice")
    image = ax.images[0]
    assert image.get_clim() == (0.0, 1.0)
    assert image.get_cmap().name == CMAP
    np.testing.assert_allclose(image.get_array(), w.numpy())
    assert ticks(ax.get_xticklabels()) == SOURCE and ticks(ax.get_yticklabels()) == TARGET
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "what to notice"
    assert len(colorbars(ax.figure)) == 1


def test_limits_none_spans_the_data_for_other_matrices():
    scores = np.array([[-3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    ax = attention_heatmap(scores, TARGET, SOURCE, limits=None, colorbar=False)
    assert ax.images[0].get_clim() == (-3.0, 5.0)
    assert colorbars(ax.figure) == []


def test_long_x_labels_are_rotated_short_ones_are_not():
    long_ax = attention_heatmap(weights(2, 3), TARGET, SOURCE)
    short_ax = attention_heatmap(weights(2, 3), TARGET, ["k0", "k1", "k2"])
    assert {label.get_rotation() for label in long_ax.get_xticklabels()} == {45.0}
    assert {label.get_rotation() for label in short_ax.get_xticklabels()} == {0.0}


def test_annotated_cells_show_the_values_in_a_readable_colour():
    w = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    ax = attention_heatmap(w, TARGET, SOURCE, annotate=True)
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    assert len(texts) == 6
    assert texts[((0, 0), "1.00")] == "black" and texts[((1, 0), "0.00")] == "white"  # yellow cell, dark cell


def test_panels_share_one_norm_and_one_colour_bar():
    per_head = weights(3, 2, 3)  # (h, Tq, Tk)
    fig, axes = heatmap_panels(per_head, TARGET, SOURCE, titles=["a", "b", "c"], suptitle="heads")
    assert len(axes) == 3 and [ax.get_title() for ax in axes] == ["a", "b", "c"]
    norms = {id(ax.images[0].norm) for ax in axes}
    assert len(norms) == 1 and axes[0].images[0].get_clim() == (0.0, 1.0)
    assert len(colorbars(fig)) == 1 and axes[0].images[0].colorbar is not None
    assert all(ticks(ax.get_xticklabels()) == SOURCE for ax in axes)
    assert ticks(axes[0].get_yticklabels()) == TARGET and axes[0].get_ylabel()
    assert axes[1].get_ylabel() == "" and not axes[1].yaxis.get_tick_params()["labelleft"]  # said once per row
    assert fig._suptitle.get_text() == "heads"


def test_panels_without_limits_share_the_range_of_all_panels():
    fig, axes = heatmap_panels([np.zeros((2, 3)), np.full((2, 3), 4.0)], TARGET, SOURCE, titles=["0", "4"],
                               limits=None)
    assert all(ax.images[0].get_clim() == (0.0, 4.0) for ax in axes)


def test_panels_take_one_label_list_per_panel_and_wrap_into_a_grid():
    rows = [["q0", "q1"], ["r0", "r1"], ["s0", "s1"], ["t0", "t1"]]
    fig, axes = heatmap_panels(weights(4, 2, 3), rows, SOURCE, titles=list("abcd"))
    assert [ticks(ax.get_yticklabels()) for ax in axes] == rows
    assert all(ax.get_ylabel() for ax in axes)  # different rows: every panel keeps its labels
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in axes} == {(2, 2)}  # 4 panels: 2 x 2
    assert len(fig.axes) == 5  # four panels and one colour bar


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 3)), r"\(Tq, Tk\) = \(2, 3\).*got shape \(3, 3\)"),
    (np.zeros((2, 3, 1)), r"got shape \(2, 3, 1\)"),
    (np.zeros(3), r"got shape \(3,\)"),
])
def test_a_matrix_that_does_not_match_its_labels_is_a_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        attention_heatmap(bad, TARGET, SOURCE)


def test_panel_shape_errors_are_value_errors():
    with pytest.raises(ValueError, match="at least one"):
        heatmap_panels([], TARGET, SOURCE, titles=[])
    with pytest.raises(ValueError, match="2 titles for 3 panels"):
        heatmap_panels(weights(3, 2, 3), TARGET, SOURCE, titles=["a", "b"])
    with pytest.raises(ValueError, match="2 label lists for 3 panels"):
        heatmap_panels(weights(3, 2, 3), [TARGET, TARGET], SOURCE, titles=list("abc"))
    with pytest.raises(ValueError, match=r"panel 1 must be \(Tq, Tk\) = \(2, 3\)"):
        heatmap_panels([np.zeros((2, 3)), np.zeros((2, 4))], TARGET, SOURCE, titles=["a", "b"])


def test_html_cells_use_the_heatmap_colours_on_the_same_scale():
    cmap = matplotlib.colormaps[CMAP]
    assert weight_css(0.0) == f"background:{css_rgb(cmap(0.0))};color:white"
    assert weight_css(1.0) == f"background:{css_rgb(cmap(1.0))};color:black"
    assert weight_css(1.7) == weight_css(1.0) and weight_css(-0.2) == weight_css(0.0)  # clipped to 0–1
    assert css_rgb((1.0, 0.5, -1.0)) == "rgb(255,128,0)"


def test_line_chart_draws_each_curve_with_its_own_marker_and_labels_both_axes():
    x = [1, 2, 4, 8]
    ax = line_chart(x, {"raw": [1, 2, 4, 8], "scaled": [1, 1, 1, 1]}, predictions={"d": x},
                    xlabel="width d", ylabel="variance", title="t", xscale="log2", yscale="log")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["raw", "scaled", "d"]
    assert lines["raw"].get_marker() != lines["scaled"].get_marker()
    assert lines["d"].get_linestyle() == ":" and lines["d"].get_color() == "k"
    np.testing.assert_array_equal(lines["raw"].get_xdata(), x)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("width d", "variance", "t")
    assert ax.get_xscale() == ax.get_yscale() == "log" and ax.xaxis.get_transform().base == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["raw", "scaled", "d"]


def test_line_chart_rejects_a_curve_of_the_wrong_length():
    with pytest.raises(ValueError, match="curve 'b' has 2 values for 3 x values"):
        line_chart([1, 2, 3], {"a": [1, 2, 3], "b": [1, 2]}, xlabel="x", ylabel="y", title="t")
