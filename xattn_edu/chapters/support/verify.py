"""The verifier: judges what a graded notebook's test cells recorded, in a process no submitted code runs in.

The grader starts it as ``python -m xattn_edu.chapters.support.verify`` and talks to it over its
standard input and output, or (class grading) has the kernel server fork it with the chapters already
imported and talks to it over that socket; one JSON object per line each way. At start it imports every
chapter's exercise declarations (so a submission that later rewrites the package's files on disk cannot
change what it judges with), says ``{"ready": [chapters], "pid": its process id}``, then answers each request:

request  ``{"chapter": "01_library_lookup", "seed": 123, "cells": {"<grade_id>": [<record>, ...]}}``:
         the records (:data:`~xattn_edu.common.protocol.RECORD_MIME` outputs) found in each graded cell;
answer   ``{"declared": true, "verdicts": {"<grade_id>": {"ok": bool, "reason": str}}}`` with one verdict
         per exercise the chapter declares, or ``{"declared": false}`` for a chapter without declarations,
         or ``{"error": "..."}`` for a request it cannot read.

A cell passes only with exactly one record, for this chapter, cell and seed, holding one result per
case, every one of which the exercise's judge accepts.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from typing import Any, TextIO

from xattn_edu.chapters.support.exercise import Exercise, Exercises
from xattn_edu.chapters.support.values import decode

PACKAGE = "xattn_edu.chapters"


def declared_chapters() -> dict[str, Exercises]:
    """``{"NN_slug": Exercises}`` of every chapter package that declares its exercises (``checks.EXERCISES``)."""
    found = {}
    package = importlib.import_module(PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg or module.name == "support":
            continue
        try:
            checks = importlib.import_module(f"{PACKAGE}.{module.name}.checks")
        except ModuleNotFoundError:
            continue
        exercises = getattr(checks, "EXERCISES", None)
        if isinstance(exercises, Exercises):
            found[exercises.chapter] = exercises
    return found


def judge_cell(exercise: Exercise, records: list[Any], chapter: str, seed: int) -> tuple[bool, str]:
    """The verdict on one test cell from the records found in its outputs."""
    if not records:
        return False, "the grader's checks did not run to the end in this cell (no record of your results)"
    if len(records) > 1:
        return False, "this cell published more than one record of results; the test cell was tampered with"
    record = records[0]
    if not isinstance(record, dict) or (record.get("chapter"), record.get("grade_id"), record.get("seed")) != (
        chapter, exercise.grade_id, seed,
    ):
        return False, "the record in this cell does not belong to this cell and grading run"
    cases = exercise.cases(seed)
    results = record.get("results")
    if not isinstance(results, list) or len(results) != len(cases):
        return False, "the record of this cell is incomplete"
    for case, result in zip(cases, results, strict=True):
        try:
            got = decode(result)
        except (ValueError, TypeError, KeyError):
            return False, "the record of this cell is damaged"
        reason = exercise.verdict(case, got)
        if reason:
            return False, reason
    return True, ""


def answer(request: dict, chapters: dict[str, Exercises]) -> dict:
    """The answer to one request (see the module docstring)."""
    chapter, seed, cells = request.get("chapter"), request.get("seed"), request.get("cells")
    if not isinstance(chapter, str) or not isinstance(seed, int) or not isinstance(cells, dict):
        return {"error": "a request needs chapter (str), seed (int) and cells (object)"}
    if chapter not in chapters:
        return {"declared": False}
    verdicts = {}
    for exercise in chapters[chapter]:
        records = cells.get(exercise.grade_id) or []
        ok, reason = judge_cell(exercise, records if isinstance(records, list) else [], chapter, seed)
        verdicts[exercise.grade_id] = {"ok": ok, "reason": reason}
    return {"declared": True, "verdicts": verdicts}


def serve(requests: TextIO, answers: TextIO) -> None:
    """Answer request lines until the input closes."""
    chapters = declared_chapters()
    answers.write(json.dumps({"ready": sorted(chapters), "pid": os.getpid()}) + "\n")
    answers.flush()
    for line in requests:
        try:
            reply = answer(json.loads(line), chapters)
        except json.JSONDecodeError:
            reply = {"error": "a request is not JSON"}
        except Exception as error:  # noqa: BLE001 - a bug in one judge must not stop the others' grading
            reply = {"error": f"the verifier failed: {type(error).__name__}: {error}"}
        answers.write(json.dumps(reply) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
