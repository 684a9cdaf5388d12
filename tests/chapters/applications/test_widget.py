"""Chapter 7 widgets, figures and map, without a browser."""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import pytest
import torch

from xattn_edu.chapters.applications import atlas, captioner, digits, overlay, promptable, prompting, widget
from xattn_edu.chapters.support.live import OUTPUT_CLASS, SLIDER_CLASS

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    config = promptable.SegmenterConfig(d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, d_ff=16,
                                        pixel_dim=4)
    return promptable.PromptableSegmenter(config).eval()


@pytest.fixture(scope="module")
def caption_model():
    torch.manual_seed(0)
    return captioner.PatchCaptioner(captioner.CaptionerConfig(d_model=16, n_heads=2, n_layers=1, d_ff=16)).eval()


def test_prompt_view_reports_the_shapes_under_the_click(segmenter):
    scene = prompting.scene_from_specs(prompting.WIDGET_SCENE)
    view = widget.prompt_view(segmenter, scene, 0, 10.5, 10.5)  # in the disc and the square
    assert view.under_point == ("disc", "square")
    assert view.probability.shape == (24, 24) and view.mask_attention.shape == view.point_attention.shape == (6, 6)
    assert view.mask_attention.sum() == pytest.approx(1.0, abs=1e-5)
    assert len(view.shape_iou) == 3 and all(0.0 <= v <= 1.0 for v in view.shape_iou)
    assert widget.prompt_view(segmenter, scene, 0, 23.0, 1.0).under_point == ()


def test_prompt_html_changes_with_the_click_and_not_otherwise(segmenter):
    scene = prompting.scene_from_specs(prompting.WIDGET_SCENE)
    html_a = widget.render_prompt_html(widget.prompt_view(segmenter, scene, 0, 6.0, 6.0), 4)
    html_b = widget.render_prompt_html(widget.prompt_view(segmenter, scene, 0, 18.0, 6.0), 4)
    again = widget.render_prompt_html(widget.prompt_view(segmenter, scene, 0, 6.0, 6.0), 4)
    assert html_a == again and html_a != html_b
    assert "(6.0, 6.0)" in html_a and "disc" in html_a and html_a.count("data:image/png;base64,") == 3


def test_prompt_widget_has_the_x_slider_first(segmenter):
    box = widget.make_prompt_widget(segmenter, prompting.scene_from_specs(prompting.WIDGET_SCENE), x=6.5, y=6.5)
    x_slider, y_slider, output = box.children
    assert SLIDER_CLASS in x_slider._dom_classes and x_slider.description.startswith("x")
    assert OUTPUT_CLASS in output._dom_classes and (x_slider.min, x_slider.max, x_slider.step) == (0.5, 23.5, 1.0)
    before = output.value
    x_slider.value = 18.5
    assert output.value != before and "(18.5, 6.5)" in output.value


def test_caption_view_points_at_a_patch_and_its_slot(caption_model):
    batch = digits.make_numbers(3, split="test", seed=0, numbers=[342, 15, 800])
    view = widget.caption_view(caption_model, batch, 0, 1)
    assert view.truth == ("three", "hundred", "forty", "two")
    assert view.attention.shape == (3, 9) and view.attention.sum() == pytest.approx(1.0, abs=1e-5)
    row, column = view.peak
    assert view.attention[row, column] == view.attention.max()
    assert view.slot == (column * 4 + 2) // 12
    assert view.gold == (0,)
    clipped = widget.caption_view(caption_model, batch, 0, 99)
    assert clipped.word == min(len(clipped.words), digits.MAX_WORDS)  # the <eos> step, or the last one written


def test_caption_html_highlights_the_word_and_the_widget_redraws(caption_model):
    batch = digits.make_numbers(4, split="test", seed=0)
    html_text = widget.render_caption_html(widget.caption_view(caption_model, batch, 1, 0), 4)
    assert "<b style=" in html_text and "data:image/png;base64," in html_text and "digit slot" in html_text
    box = widget.make_caption_widget(caption_model, batch, examples=4)
    example, word, layer, output = box.children
    before = output.value
    example.value = 2
    assert output.value != before


def test_png_uri_is_a_png_of_the_scaled_size():
    uri = overlay.png_data_uri(np.zeros((3, 5, 3)), scale=4)
    png = base64.b64decode(uri.split(",", 1)[1])
    image = matplotlib.image.imread(io.BytesIO(png))
    assert png[:4] == b"\x89PNG" and image.shape[:2] == (12, 20)


def test_overlays_keep_the_image_shape_and_colour_weights_on_a_fixed_scale():
    image = np.zeros((8, 8))
    low = overlay.attention_overlay(image, np.zeros((2, 2)), 4)
    high = overlay.attention_overlay(image, np.ones((2, 2)), 4)
    assert low.shape == (8, 8, 3) and not np.allclose(low, high)
    np.testing.assert_allclose(overlay.attention_overlay(image, np.full((2, 2), 7.0), 4), high)  # clipped at 1
    rgb = overlay.mask_overlay(image, np.ones((8, 8)), point=(2.5, 3.5))
    assert tuple(rgb[3, 2]) == (1.0, 0.9, 0.0) and rgb[0, 0, 0] > rgb[0, 0, 1]


def test_figures_draw():
    fig, axes = overlay.image_panels([np.zeros((4, 6, 3))] * 3, ["a", "b", "c"], suptitle="s")
    assert len(axes) == 3
    with pytest.raises(ValueError):
        overlay.image_panels([np.zeros((4, 6, 3))], ["a", "b"], suptitle="s")
    overlay.show_patches(np.zeros((12, 36)), 4, slot=12)
    _, lines = overlay.show_sequence(np.zeros((27, 16)), np.zeros((27, 2), dtype=int), 4, per_row=14)
    assert len(lines) == 2
    assert len(atlas.draw_architectures()) == 3
    atlas.draw_map()
    matplotlib.pyplot.close("all")


def test_the_map_names_queries_and_keys_for_every_system_the_issue_lists():
    table = atlas.markdown_table()
    for system in ("translation", "Speech recognition", "Text-to-image", "Retrieval-augmented", "Multimodal"):
        assert system in table
    assert table.count("\n") == len(atlas.USES) + 1
    assert all(use.queries and use.keys_values and use.built_here and use.sources for use in atlas.USES)
