"""One declaration per graded cell: the visible check, the hidden record and the verdict agree."""

import json
import subprocess
import sys

import numpy as np
import pytest

from xattn_edu.chapters.library_lookup import checks as chapter1
from xattn_edu.chapters.library_lookup import reference
from xattn_edu.chapters.support.exercise import NotDone, Wrong
from xattn_edu.chapters.support.values import encode
from xattn_edu.chapters.support.verify import answer, declared_chapters, judge_cell
from xattn_edu.common.protocol import RECORD_MIME, SEED_ENV


def good_softmax(scores, axis=-1):
    shifted = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def global_max_softmax(scores, axis=-1):
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum(axis=axis, keepdims=True)


def in_place_softmax(scores, axis=-1):
    scores -= scores.max(axis=axis, keepdims=True)
    return good_softmax(scores, axis)


def recorded(grade_id, student, seed, monkeypatch):
    """What ``record`` publishes for ``student`` while grading with ``seed``."""
    published = []
    monkeypatch.setenv(SEED_ENV, str(seed))
    monkeypatch.setattr("IPython.display.publish_display_data", lambda data: published.append(data))
    chapter1.record(grade_id, student)
    assert len(published) == 1 and set(published[0]) == {RECORD_MIME}
    return published[0][RECORD_MIME]


def test_the_visible_check_passes_a_right_answer_and_says_so(capsys):
    chapter1.check("softmax_stability_tests", good_softmax)
    assert "Exercise 2 (large scores and -inf): scores near 1000" in capsys.readouterr().out


@pytest.mark.parametrize(("student", "message"), [
    (global_max_softmax, "Subtract the max of each row"),
    (in_place_softmax, "changed one of its input arrays in place"),
    (lambda s, axis=-1: reference.softmax(s, axis), "calls the reference implementation"),
    (lambda s, axis=-1: None, "returned None"),
])
def test_the_visible_check_names_the_mistake(student, message):
    with pytest.raises(Wrong, match=message):
        chapter1.check("softmax_stability_tests", student)


def test_an_exercise_not_done_yet_is_one_line_not_a_traceback():
    def stub(scores, axis=-1):
        raise NotImplementedError()

    with pytest.raises(NotDone) as caught:
        chapter1.check("softmax_tests", stub)
    assert caught.value._render_traceback_() == [f"\x1b[0;31mNotDone\x1b[0m: {caught.value}"]
    assert "is not done yet" in str(caught.value)


def test_the_student_s_own_exception_comes_second_and_is_labelled_as_theirs():
    def theirs(scores, axis=-1):
        raise RuntimeError("temperature must be positive")

    with pytest.raises(Wrong) as caught:
        chapter1.check("softmax_tests", theirs)
    message = str(caught.value)
    assert message.index("should return the weights") < message.index("your code raised RuntimeError")
    assert "(its message: 'temperature must be positive')" in message


def test_record_does_nothing_outside_grading(monkeypatch):
    monkeypatch.delenv(SEED_ENV, raising=False)
    monkeypatch.setattr("IPython.display.publish_display_data", lambda data: pytest.fail("published"))
    chapter1.record("softmax_tests", good_softmax)


def test_the_verdict_judges_what_was_recorded(monkeypatch):
    exercise = chapter1.EXERCISES["softmax_stability_tests"]
    good = recorded("softmax_stability_tests", good_softmax, 7, monkeypatch)
    assert judge_cell(exercise, [good], "01_library_lookup", 7) == (True, "")
    bad = recorded("softmax_stability_tests", global_max_softmax, 7, monkeypatch)
    ok, reason = judge_cell(exercise, [bad], "01_library_lookup", 7)
    assert not ok and "Subtract the max of each row" in reason


def test_hidden_cases_depend_on_the_seed_and_the_reference_passes_them():
    exercise = chapter1.EXERCISES["relevance_tests"]
    first, second = exercise.cases(1), exercise.cases(2)
    assert [c.label for c in first] == [c.label for c in second]
    assert not np.array_equal(first[-1].args[0], second[-1].args[0])
    for seed in range(25):
        for case in exercise.cases(seed):
            assert exercise.verdict(case, exercise.result_of(reference.relevance_scores, case, student=False)) == ""


@pytest.mark.parametrize(("change", "reason"), [
    (lambda records: [], "did not run to the end"),
    (lambda records: records * 2, "more than one record"),
    (lambda records: [{**records[0], "seed": 8}], "does not belong to this cell"),
    (lambda records: [{**records[0], "grade_id": "softmax_tests"}], "does not belong to this cell"),
    (lambda records: [{**records[0], "results": records[0]["results"][:-1]}], "incomplete"),
    (lambda records: [{**records[0], "results": [{"t": "pickle"}] * len(records[0]["results"])}], "damaged"),
    (lambda records: ["not a record"], "does not belong"),
])
def test_a_tampered_or_missing_record_fails(change, reason, monkeypatch):
    records = [recorded("softmax_stability_tests", good_softmax, 7, monkeypatch)]
    exercise = chapter1.EXERCISES["softmax_stability_tests"]
    ok, why = judge_cell(exercise, change(records), "01_library_lookup", 7)
    assert not ok and reason in why


def test_forged_reference_results_still_need_the_grader_s_inputs(monkeypatch):
    """A record filled with right answers for other inputs (the visible ones, say) fails on the hidden ones."""
    exercise = chapter1.EXERCISES["relevance_tests"]
    record = recorded("relevance_tests", lambda q, k: q @ k.T, 7, monkeypatch)
    stale = recorded("relevance_tests", lambda q, k: q @ k.T, 8, monkeypatch)
    record["results"][-1] = stale["results"][-1]
    ok, why = judge_cell(exercise, [record], "01_library_lookup", 7)
    assert not ok and "is wrong at index" in why or "has shape" in why


def test_the_verifier_answers_every_declared_exercise_and_ignores_undeclared_chapters(monkeypatch):
    chapters = declared_chapters()
    assert "01_library_lookup" in chapters
    reply = answer({"chapter": "01_library_lookup", "seed": 3, "cells": {}}, chapters)
    assert set(reply["verdicts"]) == set(chapter1.EXERCISES.by_id)
    assert not any(verdict["ok"] for verdict in reply["verdicts"].values())
    assert answer({"chapter": "00_fixture", "seed": 3, "cells": {}}, chapters) == {"declared": False}
    assert "error" in answer({"chapter": 1, "seed": "x", "cells": []}, chapters)


def test_the_verifier_process_speaks_json_lines(monkeypatch):
    record = recorded("softmax_tests", good_softmax, 11, monkeypatch)
    request = {"chapter": "01_library_lookup", "seed": 11, "cells": {"softmax_tests": [record]}}
    lines = json.dumps(request) + "\nnot json\n"
    result = subprocess.run([sys.executable, "-m", "xattn_edu.chapters.support.verify"], input=lines,
                            capture_output=True, text=True, timeout=120, check=True)
    ready, first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert "01_library_lookup" in ready["ready"]
    assert first["verdicts"]["softmax_tests"] == {"ok": True, "reason": ""}
    assert second == {"error": "a request is not JSON"}


def test_encoded_results_are_json(monkeypatch):
    record = recorded("relevance_tests", lambda query, keys: np.zeros(len(keys)), 5, monkeypatch)
    json.dumps(record)
    assert record["results"][0] == encode(np.zeros(4))
