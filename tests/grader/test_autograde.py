"""The course's autograde steps: what a later cell may not do to an earlier test cell's record."""

from __future__ import annotations

import nbformat

from xattn_edu.common.protocol import RECORD_MIME
from xattn_edu.grader.autograde import XattnExecute


def _executor_with(outputs: list[dict]) -> XattnExecute:
    """An executor part-way through a notebook whose first cell shows ``outputs``, all with display id "d"."""
    executor = XattnExecute()
    executor.nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("record()", outputs=outputs)])
    executor._display_id_map = {"d": {0: list(range(len(outputs)))}}
    return executor


def _update(data: dict) -> dict:
    return {"header": {"msg_type": "update_display_data"}, "msg_type": "update_display_data",
            "content": {"data": data, "metadata": {}, "transient": {"display_id": "d"}}}


def _display(data: dict) -> dict:
    return nbformat.v4.new_output("display_data", data=data)


def test_a_later_cell_cannot_turn_an_output_into_a_record():
    executor = _executor_with([_display({"text/plain": ""})])
    executor._update_display_id("d", _update({RECORD_MIME: {"grade_id": "x"}}))
    assert executor.nb.cells[0].outputs[0]["data"] == {"text/plain": ""}


def test_a_later_cell_cannot_change_or_remove_a_record():
    record = {RECORD_MIME: {"grade_id": "x"}, "text/plain": "results"}
    executor = _executor_with([_display(dict(record))])
    executor._update_display_id("d", _update({"text/plain": "nothing to see"}))
    assert executor.nb.cells[0].outputs[0]["data"] == record


def test_other_display_updates_still_apply():
    executor = _executor_with([_display({"text/plain": "0 %"})])
    executor._update_display_id("d", _update({"text/plain": "100 %"}))
    assert executor.nb.cells[0].outputs[0]["data"] == {"text/plain": "100 %"}
