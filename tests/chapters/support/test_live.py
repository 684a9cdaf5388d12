"""The shared widget wiring: sliders tagged for the browser tests, the output a live function of the controls."""

import ipywidgets as widgets

from xattn_edu.chapters.support.live import OUTPUT_CLASS, SLIDER_CLASS, live_html


def test_sliders_are_tagged_and_the_output_follows_every_control():
    number = widgets.IntSlider(value=1, min=0, max=9)
    word = widgets.SelectionSlider(options=["a", "b"], value="a")
    flag = widgets.Checkbox(value=False)
    box = live_html([number, word, flag], lambda n, w, f: f"{n}{w}{int(f)}")
    assert box.children[:3] == (number, word, flag)
    output = box.children[3]
    assert OUTPUT_CLASS in output._dom_classes
    assert SLIDER_CLASS in number._dom_classes and SLIDER_CLASS in word._dom_classes
    assert SLIDER_CLASS not in flag._dom_classes  # the browser test drags sliders only
    assert output.value == "1a0"
    number.value, word.value, flag.value = 7, "b", True
    assert output.value == "7b1"
