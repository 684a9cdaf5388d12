"""Interactive controls for the chapters, one module per chapter.

Each module has a pure function computing what the widget shows (unit-tested without a
browser) and a ``make_<name>_widget()`` that wires ipywidgets sliders to it. The live output
carries the CSS class ``xattn-live-output`` and the sliders ``xattn-slider``, which the
browser tests use to find them.
"""
