"""Feedback pages from templates compiled once per process.

nbgrader's ``generate_feedback`` builds a new nbconvert HTML exporter for every notebook, and each
new exporter compiles its Jinja templates again (nine of them for the feedback page). A class-grading
worker writes dozens of pages in one process, so :class:`FeedbackHTMLExporter` keeps the compiled
templates in memory: Jinja's bytecode cache, keyed by template name and source checksum, so an edited
template is compiled again. The pages are byte for byte those of nbconvert's ``HTMLExporter``.
Set as ``GenerateFeedback.exporter_class`` in the course settings (:mod:`xattn_edu.grader.settings`).
"""

from __future__ import annotations

from jinja2 import BytecodeCache, Environment
from jinja2.bccache import Bucket
from nbconvert.exporters import HTMLExporter


class _InMemoryBytecodeCache(BytecodeCache):
    """Compiled templates kept in a dict for the life of the process."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _InMemoryBytecodeCache()


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's ``HTMLExporter`` whose Jinja environment shares this process's compiled templates."""

    def _create_environment(self) -> Environment:
        environment = super()._create_environment()
        environment.bytecode_cache = _COMPILED
        return environment
