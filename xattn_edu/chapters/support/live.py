"""The wiring every chapter widget shares: controls over an HTML output that follows them live.

A chapter's widget module computes what it shows with a pure function (unit-tested without a
browser) and renders it as HTML; :func:`live_html` puts its controls above an ``HTML`` output
and redraws the output whenever a control changes. The CSS classes are what the browser tests
look for: every slider carries ``xattn-slider``, the output ``xattn-live-output``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

SLIDER_CLASS = "xattn-slider"
OUTPUT_CLASS = "xattn-live-output"


def live_html(controls: Sequence, render: Callable[..., str]):
    """A ``VBox`` of ``controls`` and an ``HTML`` output showing ``render(*values of the controls)``.

    Args:
        controls: ipywidgets value widgets (sliders, checkboxes, buttons), in the order
            ``render`` takes their values.
        render: a pure function of the controls' values, returning HTML.

    Returns:
        An ``ipywidgets.VBox`` whose ``.children`` are the controls, then the output. Every
        slider (an ipywidgets ``...SliderView``) gets the CSS class ``xattn-slider``, the output
        ``xattn-live-output``; the output is redrawn on every change of a control's value.
    """
    import ipywidgets as widgets

    output = widgets.HTML()
    output.add_class(OUTPUT_CLASS)
    for control in controls:
        if control._view_name.endswith("SliderView"):
            control.add_class(SLIDER_CLASS)

    def update(_change=None) -> None:
        output.value = render(*(control.value for control in controls))

    for control in controls:
        control.observe(update, names="value")
    update()
    return widgets.VBox([*controls, output])
