"""Feedback pages from templates compiled once: the same bytes as nbconvert's HTMLExporter, no recompiling."""

from __future__ import annotations

from unittest import mock

import jinja2
import nbformat
from nbconvert.exporters import HTMLExporter

from xattn_edu.grader.html_export import FeedbackHTMLExporter
from xattn_edu.grader.settings import course_config


def _notebook() -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("print('<b>42</b>')", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="<b>42</b>\n")])
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A page"), cell])


def test_pages_are_nbconvert_s_and_templates_are_compiled_once_per_process():
    notebook = _notebook()
    expected, _ = HTMLExporter(template_name="classic").from_notebook_node(notebook)
    first, _ = FeedbackHTMLExporter(template_name="classic").from_notebook_node(notebook)
    with mock.patch.object(jinja2.Environment, "_parse", side_effect=AssertionError("compiled again")):
        second, _ = FeedbackHTMLExporter(template_name="classic").from_notebook_node(notebook)
    assert first == second == expected


def test_the_course_settings_make_it_the_feedback_exporter():
    assert course_config().GenerateFeedback.exporter_class == "xattn_edu.grader.html_export.FeedbackHTMLExporter"
