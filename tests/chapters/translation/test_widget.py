"""Chapter 6 widgets: the pure views, their HTML, and the live ipywidgets boxes (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xattn_edu.chapters.support.live import OUTPUT_CLASS, SLIDER_CLASS
from xattn_edu.chapters.translation import tiny
from xattn_edu.chapters.translation.attention_maps import AlignmentSet, AttentionHistory
from xattn_edu.chapters.translation.widget import (
    MEAN,
    checkpoint_view,
    make_checkpoint_widget,
    make_translation_widget,
    render_map_html,
    translation_view,
)
from xattn_edu.translate.tokenizers import WordTokenizer


def history() -> AttentionHistory:
    """Two checkpoints of one sentence (3 target words over 2 source words), 2 layers x 2 heads: blurred, then sharp."""
    aset = AlignmentSet([[5, 6, 2]], [[4, 5, 6]], [["the", "dog"]], [["der", "Hund", "."]],
                        [[(0, 0), (1, 1), (1, 2)]], 1, 2)
    blurred = np.full((2, 2, 4, 2), 0.5)
    sharp = np.zeros((2, 2, 4, 2))
    sharp[..., [0, 1, 2, 3], [0, 1, 1, 1]] = 1.0
    return AttentionHistory([0, 100], [[blurred], [sharp]], aset)


def test_the_checkpoint_view_shows_the_chosen_map_with_its_entropy_and_aer():
    late = checkpoint_view(history(), 1, 1, 0)
    assert late.title == "step 100 · layer 2, head 1"
    np.testing.assert_array_equal(late.weights, [[1, 0], [0, 1], [0, 1]])  # the EOS row is left out
    assert late.gold == {(0, 0), (1, 1), (1, 2)}
    assert "0.000 nats" in late.notes[0] and "0.000" in late.notes[1]  # sharp and right
    early = checkpoint_view(history(), 0, 0, MEAN)
    assert "mean of the heads" in early.title and f"{np.log(2):.3f} nats" in early.notes[0]


def test_the_map_html_labels_colours_and_outlines_gold_links():
    text = render_map_html(checkpoint_view(history(), 1, 0, 1))
    for word in ("the", "dog", "der", "Hund"):
        assert f">{word}<" in text
    assert text.count("outline:2px") == 3 and text.count("background:rgb(") == 6


def test_the_checkpoint_widget_redraws_when_the_slider_moves():
    box = make_checkpoint_widget(history())
    slider, layer, head, output = box.children
    assert SLIDER_CLASS in slider._dom_classes and OUTPUT_CLASS in output._dom_classes
    assert slider.value == 1 and layer.value == 1 and head.value == MEAN
    last = output.value
    slider.value = 0
    assert output.value != last and "step 0" in output.value
    slider.value = 1
    assert output.value == last


def fake_translate(text):
    if "long" in text:
        raise ValueError("the sentence has 300 tokens, more than the model's 64")
    source = text.split()
    attention = np.tile(np.eye(2, len(source)), (2, 3, 1, 1))
    return source, ["x", "y"], attention, ["zorblax"] if "zorblax" in text else [], "X y."


@pytest.mark.parametrize("text, title, note", [("", "type a sentence", "nothing to translate"),
                                               ("a long one", "cannot translate", "more than the model"),
                                               ("the zorblax", "cross-attention · layer 2, head 3",
                                                "translation: X y.")])
def test_the_translation_view_handles_empty_and_impossible_input(text, title, note):
    view = translation_view(fake_translate, text, 1, 2)
    assert view.title == title and note in view.notes[0]
    if "zorblax" in text:
        assert "never saw" in view.notes[1] and view.weights.shape == (2, 2)
    render_map_html(view)


def test_the_translation_widget_translates_what_is_typed():
    src_tok = WordTokenizer.train(["the dog sees the cat ."])
    tgt_tok = WordTokenizer.train(["der Hund sieht die Katze ."])
    model = tiny.tiny_translator(0, layers=2).float()
    box = make_translation_widget(model, src_tok, tgt_tok, ["the dog sees the cat ."])
    text, layer, head, output = box.children
    assert "translation:" in output.value and ">dog<" in output.value
    text.value = "the cat sees the bird ."
    assert "bird" in output.value and "never saw" in output.value
    head.value = 0
    assert "head 1" in output.value
    assert torch.is_grad_enabled()
