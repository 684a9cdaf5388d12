"""Class grading: finding submissions, the gradebook, limits, idempotent and resumable runs, the CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers.grading import (
    FIXTURE_SOLUTIONS,
    points_of,
    release_notebook,
    replace_solution,
    solution_notebook,
    write_notebook,
)
from xattn_edu.common.errors import UserError
from xattn_edu.grader.build import find_chapters, notebook_bytes
from xattn_edu.grader.classgrade import grade_class
from xattn_edu.grader.feedback import feedback_name, summary_html
from xattn_edu.grader.gradebook import Gradebook, StudentGrade
from xattn_edu.grader.master import grade_ids_by_chapter, load_masters
from xattn_edu.grader.pool import Limits
from xattn_edu.grader.report import ExerciseResult
from xattn_edu.grader.sandbox import Cage, process_limit_available
from xattn_edu.grader.submissions import find_submissions
from xattn_edu.grader.worker import GradingSetup, grade_bytes

CHAPTER = "01_library_lookup"
FULL = sum(points_of(CHAPTER).values())
LIMITS = Limits(workers=2, cell_timeout=30, notebook_timeout=300, memory_mb=3072)


# ----------------------------------------------------------------------------- finding submissions (fast)

def test_a_folder_per_student_picks_the_chapter_notebook_or_the_only_one(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / f"{CHAPTER}.ipynb").write_text("A")
    (tmp_path / "ann" / "scratch.ipynb").write_text("scratch")
    (tmp_path / "ann" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "ann" / ".ipynb_checkpoints" / f"{CHAPTER}-checkpoint.ipynb").write_text("old")
    (tmp_path / "ben" / "work").mkdir(parents=True)
    (tmp_path / "ben" / "work" / "my attempt.ipynb").write_text("B")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.ipynb").write_text("1")
    (tmp_path / "cat" / "b.ipynb").write_text("2")
    (tmp_path / "dan").mkdir()
    result = find_submissions(CHAPTER, tmp_path)
    found = {s.student: s for s in result.submissions}
    assert found["ann"].content == b"A"
    assert found["ben"].content == b"B"
    assert found["cat"].content is None and "2 notebooks, none named" in found["cat"].reason
    assert "dan" not in found  # a folder without notebooks is nobody's submission
    skipped = {Path(s.source).name: s.reason for s in result.skipped}
    assert "graded" in skipped["scratch.ipynb"] and "hidden" in skipped[f"{CHAPTER}-checkpoint.ipynb"]
    assert {"a.ipynb", "b.ipynb"} <= set(skipped)  # nothing is dropped without a word


def test_an_lms_zip_gives_students_by_login_and_takes_the_latest_resubmission(tmp_path):
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"smithj_12345_67890_{CHAPTER}.ipynb", "first")
        zf.writestr(f"smithj_12345_67891_{CHAPTER}-1.ipynb", "second")
        zf.writestr(f"doea_LATE_222_333_{CHAPTER}.ipynb", "late")
        zf.writestr(f"__MACOSX/._smithj_12345_67890_{CHAPTER}.ipynb", "junk")
        zf.writestr("readme.txt", "not a notebook")
    found = {s.student: s.content for s in find_submissions(CHAPTER, archive).submissions}
    assert found == {"smithj": b"second", "doea": b"late"}


def test_loose_lms_files_in_a_folder_are_read_like_a_zip(tmp_path):
    (tmp_path / f"smithj_12345_67890_{CHAPTER}.ipynb").write_text("S")
    assert [(s.student, s.content) for s in find_submissions(CHAPTER, tmp_path).submissions] == [("smithj", b"S")]


def test_every_common_naming_scheme_finds_its_student_and_nothing_vanishes(tmp_path):
    files = {
        f"bob_{CHAPTER}.ipynb": "bob",  # loose: <student>_<chapter>
        "carol.ipynb": "carol",  # loose: named after the student
        f"jones_erin_12345_67890_{CHAPTER}.ipynb": "jones_erin",  # Canvas, a login with an underscore
        f"{CHAPTER}_dvader_attempt_2024-09-15-10-30-45_{CHAPTER}.ipynb": "dvader",  # Blackboard
        f"{CHAPTER}_dvader_attempt_2024-09-16-08-00-00_{CHAPTER}.ipynb": "dvader",  # ... a later attempt
        f"Eve Smith_777_assignsubmission_file_/{CHAPTER}.ipynb": "Eve Smith_777",  # Moodle
        f"submission_31415926/{CHAPTER}.ipynb": "submission_31415926",  # Gradescope
        f"ann/{CHAPTER}.ipynb": "ann",  # a folder per student
        f"{CHAPTER}.ipynb": None,  # the release itself, loose: nobody's
    }
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    result = find_submissions(CHAPTER, tmp_path)
    found = {s.student: s.content.decode() for s in result.submissions}
    assert set(found) == {s for s in files.values() if s}
    assert found["dvader"].startswith(f"{CHAPTER}_dvader_attempt_2024-09-16")  # the latest attempt
    reasons = {Path(s.source).name: s.reason for s in result.skipped}
    assert set(reasons) == {f"{CHAPTER}_dvader_attempt_2024-09-15-10-30-45_{CHAPTER}.ipynb", f"{CHAPTER}.ipynb"}
    assert "belongs to no student" in reasons[f"{CHAPTER}.ipynb"]


def test_a_name_pattern_reads_students_from_file_names_and_explains_itself(tmp_path):
    (tmp_path / "hw1-s1234.ipynb").write_text("1")
    (tmp_path / "hw1-s5678.ipynb").write_text("2")
    (tmp_path / "notes.ipynb").write_text("3")
    result = find_submissions(CHAPTER, tmp_path, r"^hw1-(?P<student>s\d+)\.ipynb$")
    assert [s.student for s in result.submissions] == ["s1234", "s5678"]
    assert [Path(s.source).name for s in result.skipped] == ["notes.ipynb"]
    with pytest.raises(UserError, match=r"needs a group \(\?P<student>"):
        find_submissions(CHAPTER, tmp_path, r"hw1-(s\d+)")
    with pytest.raises(UserError, match="not a regular expression"):
        find_submissions(CHAPTER, tmp_path, "(")


def test_finding_no_student_at_all_is_an_error_that_says_why(tmp_path):
    (tmp_path / f"{CHAPTER}.ipynb").write_text("the release")
    with pytest.raises(UserError, match="no student's notebook found .*belongs to no student"):
        find_submissions(CHAPTER, tmp_path)
    with pytest.raises(UserError, match="no student's notebook found"):
        find_submissions(CHAPTER, tmp_path / "..", r"^(?P<student>zzz)")


def test_a_missing_or_unreadable_submissions_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        find_submissions(CHAPTER, tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a folder and not a zip"):
        find_submissions(CHAPTER, tmp_path / "file.txt")


# ----------------------------------------------------------------------------- results (fast)

def _grade(student: str, score: float) -> StudentGrade:
    exercises = (ExerciseResult("a_tests", score, 1.0, "" if score else "wrong <b>axis</b>"),)
    return StudentGrade(student, "graded", score, 1.0, exercises, "", "x", "sha", "master", 1.0)


def test_the_gradebook_survives_a_line_cut_short_and_keeps_the_latest_record(tmp_path):
    path = tmp_path / "gradebook.jsonl"
    book = Gradebook(path, CHAPTER)
    book.add(_grade("ann", 0.0))
    book.add(_grade("ann", 1.0))
    book.add(_grade("ben", 1.0))
    with open(path, "a") as handle:
        handle.write('{"chapter": "01_library_lookup", "student": "cut')  # a kill in the middle of a write
    again = Gradebook(path, CHAPTER)
    assert {s: g.score for s, g in again.records.items()} == {"ann": 1.0, "ben": 1.0}
    assert Gradebook(path, "02_spotlight").records == {}
    again.rewrite()
    assert len(path.read_text().splitlines()) == 2


def test_feedback_names_are_safe_and_distinct_and_the_summary_is_escaped():
    assert feedback_name("ann") == "ann.html"
    assert feedback_name("../etc/passwd").startswith("_etc_passwd-")
    assert feedback_name("a b") != feedback_name("a_b")
    page = summary_html(_grade("<script>", 0.0))
    assert "<script>" not in page and "wrong &lt;b&gt;axis&lt;/b&gt;" in page


@pytest.mark.skipif(not process_limit_available(), reason="root without a writable pids cgroup: no process limit")
def test_the_cage_stops_a_fork_loop_at_its_process_limit():
    code = (
        "import os, resource, sys, time\n"
        "from xattn_edu.grader.sandbox import limit_this_process\n"
        "limit_this_process(None, 20)\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(10_000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(2)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    cage = Cage(f"xattn-grade-{os.getpid()}-test", 20)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)\n" + code],
                               stdout=subprocess.PIPE, text=True)
    cage.add(process.pid)
    try:
        forked = int(process.communicate(timeout=60)[0])
    finally:
        cage.close()
    assert 0 < forked < 20


# ----------------------------------------------------------------------------- grading runs (seconds each)

def _class(folder: Path) -> dict[str, int]:
    """Three students: full marks, the untouched release, a softmax that overflows. Returns their scores."""
    write_notebook(solution_notebook(CHAPTER), folder / "ann" / f"{CHAPTER}.ipynb")
    write_notebook(release_notebook(CHAPTER), folder / "ben" / "whatever-name.ipynb")
    naive = replace_solution(solution_notebook(CHAPTER), "softmax_solution",
                             "exps = np.exp(scores)\nreturn exps / np.sum(exps, axis=axis, keepdims=True)")
    write_notebook(naive, folder / "cat" / f"{CHAPTER}.ipynb")
    return {"ann": FULL, "ben": 0, "cat": FULL - 2}  # cat's naive softmax loses the 2-point stability cell


def _scores(report) -> dict[str, float]:
    return {g.student: g.score for g in report.grades}


def _count_source_reads(monkeypatch) -> list[str]:
    """Every chapter source this process parses from now on (jupytext reads them all)."""
    import jupytext

    reads, read = [], jupytext.read
    monkeypatch.setattr(jupytext, "read", lambda path, *a, **k: reads.append(Path(path).name) or read(path, *a, **k))
    return reads


@pytest.mark.slow
def test_a_rerun_grades_nothing_again_unless_a_file_changed_or_regrade_is_asked(tmp_path, monkeypatch):
    expected = _class(tmp_path / "in")
    reads = _count_source_reads(monkeypatch)
    first = grade_class(CHAPTER, tmp_path / "in", tmp_path / "out", limits=LIMITS, progress=False)
    assert _scores(first) == expected and first.graded_now == 3
    assert sorted(reads) == sorted(f"{c.name}.py" for c in find_chapters())  # once per chapter, not per student
    with open(tmp_path / "out" / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == ["ann", "ben", "cat"]
    assert rows[2]["softmax_stability_tests"] == "0" and rows[2]["softmax_tests"] == "1"
    assert "np.exp overflows" in rows[2]["reason"] and rows[2]["status"] == "graded"
    page = (tmp_path / "out" / "feedback" / "cat.html").read_text()
    assert "np.exp overflows" in page and "check_softmax_stability_hidden" not in page

    reads.clear()
    again = grade_class(CHAPTER, tmp_path / "in", tmp_path / "out", limits=LIMITS, progress=False)
    assert again.graded_now == 0 and again.grades == first.grades
    assert reads == [f"{CHAPTER}.py"]  # only the master's digest is needed to know nobody changed

    write_notebook(solution_notebook(CHAPTER), tmp_path / "in" / "cat" / f"{CHAPTER}.ipynb")
    changed = grade_class(CHAPTER, tmp_path / "in", tmp_path / "out", limits=LIMITS, progress=False)
    assert changed.graded_now == 1 and _scores(changed) == {**expected, "cat": FULL}


@pytest.mark.slow
def test_a_run_killed_midway_resumes_and_grades_each_student_once(tmp_path):
    expected = _class(tmp_path / "in")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "xattn_edu.cli", "grade-class", CHAPTER, str(tmp_path / "in"), "--out", str(out),
               "--workers", "1", "--no-progress", "--json"]
    gradebook = out / "gradebook.jsonl"
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (gradebook.is_file() and gradebook.read_text().count("\n") >= 1):
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done_before = {json.loads(line)["student"] for line in gradebook.read_text().splitlines()}
    assert 1 <= len(done_before) < 3

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["graded_now"] == 3 - len(done_before)
    assert {s["student"]: s["score"] for s in report["students"]} == expected
    assert len(gradebook.read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_notebook_past_the_notebook_limit_is_stopped_and_the_next_one_is_graded(tmp_path):
    looping = replace_solution(solution_notebook(CHAPTER), "soft_lookup_solution", "while True:\n    pass")
    write_notebook(looping, tmp_path / "in" / "a_loops" / f"{CHAPTER}.ipynb")
    write_notebook(solution_notebook(CHAPTER), tmp_path / "in" / "b_honest" / f"{CHAPTER}.ipynb")
    limits = Limits(workers=1, cell_timeout=60, notebook_timeout=20, memory_mb=3072)
    report = grade_class(CHAPTER, tmp_path / "in", tmp_path / "out", limits=limits, progress=False)
    loops, honest = report.grades
    assert (loops.status, loops.score) == ("timeout", 0) and "longer than 20 s" in loops.reason
    assert (honest.status, honest.score) == ("graded", FULL)


def test_a_worker_grades_against_the_master_it_was_given_and_parses_no_chapter_source(tmp_path, monkeypatch):
    masters = load_masters(find_chapters(solutions=FIXTURE_SOLUTIONS))
    setup = GradingSetup(masters["00_fixture"], grade_ids_by_chapter(masters), cell_timeout=30)
    reads = _count_source_reads(monkeypatch)
    graded = grade_bytes(notebook_bytes(masters["00_fixture"].notebook), setup)
    assert graded["status"] == "graded", graded
    assert graded["report"]["score"] == graded["report"]["max_score"] == 5.0
    assert "hidden tests ran here" in graded["html"]
    other = grade_bytes(notebook_bytes(masters["01_fixture_two"].notebook), setup)
    reason = "the notebook: its exercises are those of 01_fixture_two, not of 00_fixture"
    assert other == {"status": "error", "reason": reason}
    assert reads == []


def test_the_cli_refuses_an_unknown_chapter_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "xattn_edu.cli", "grade-class", "99_nothing", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "99_nothing" in result.stderr


def test_a_chapter_is_named_by_its_number_too_and_an_empty_class_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "xattn_edu.cli", "grade-class", "1", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no student's notebook found" in result.stderr


@pytest.mark.slow
def test_the_cli_table_says_which_course_root_and_masters_it_graded_with(tmp_path):
    write_notebook(solution_notebook(CHAPTER), tmp_path / "in" / "alice" / f"{CHAPTER}.ipynb")
    result = subprocess.run([sys.executable, "-m", "xattn_edu.cli", "grade-class", CHAPTER, str(tmp_path / "in"),
                             "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("graded with the settings of no course root") and "against the masters in" in first
    assert "alice" in result.stdout


def test_a_notebook_is_refused_when_the_file_is_too_big_to_be_a_notebook(tmp_path, monkeypatch):
    import xattn_edu.grader.submissions as submissions

    monkeypatch.setattr(submissions, "MAX_NOTEBOOK_BYTES", 10)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / f"{CHAPTER}.ipynb").write_bytes(notebook_bytes(solution_notebook(CHAPTER)))
    [submission] = find_submissions(CHAPTER, tmp_path).submissions
    assert submission.content is None and "larger than" in submission.reason
