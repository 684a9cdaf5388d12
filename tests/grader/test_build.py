"""`xattn build`: solutions/ → course/ is deterministic, leak-free, and course/ does not drift; it works in the
course root it runs in; the masters it writes for nbgrader say they are generated and are not overwritten
once edited; the grading masters it ships hold no solution code and give nbgrader the same release."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.helpers.grading import FIXTURE_SOLUTIONS
from xattn_edu.cli import main
from xattn_edu.common.errors import UserError
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import GRADING_MASTERS, build, find_chapters, master_notebook
from xattn_edu.grader.course import temp_course
from xattn_edu.grader.generated import NOTE_TAG
from xattn_edu.grader.settings import COURSE_ROOT_ENV

REPO = repo_root()
REAL_CHAPTERS = find_chapters()


@pytest.fixture(scope="module")
def fixture_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    build(out_dir=out, solutions=FIXTURE_SOLUTIONS)
    return out


@pytest.fixture(scope="module")
def real_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("course")
    build(out_dir=out / "course", grading_masters_dir=out / "grading_masters")
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.ipynb"))}


def _protected_lines(source: str, regions: str = "SOLUTION|HIDDEN TESTS") -> set[str]:
    """Lines inside ``regions`` (solution / hidden-test) that appear nowhere outside them."""
    inside, outside = set(), set()
    region = False
    for line in source.splitlines():
        text = line.strip()
        if re.search(rf"### BEGIN ({regions})", text):
            region = True
        elif re.search(rf"### END ({regions})", text):
            region = False
        elif text:
            (inside if region else outside).add(text)
    return inside - outside


def _release_text(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(cell["source"]) for cell in nb["cells"])


def test_build_twice_gives_identical_bytes(fixture_release, tmp_path):
    assert main(["build", "--out", str(tmp_path), "--solutions", str(FIXTURE_SOLUTIONS)]) == 0
    first, second = _files(fixture_release), _files(tmp_path)
    assert sorted(first) == ["00_fixture/00_fixture.ipynb", "01_fixture_two/01_fixture_two.ipynb"]
    assert first == second
    assert all(content.endswith(b"}\n") for content in first.values())


def test_fixture_release_has_stubs_and_no_solution_or_hidden_code(fixture_release):
    path = fixture_release / "00_fixture" / "00_fixture.ipynb"
    text = _release_text(path)
    protected = _protected_lines((FIXTURE_SOLUTIONS / "00_fixture.py").read_text())
    assert "total = a + b  # fixture-solution-add" in protected  # the check below has teeth
    assert not [line for line in protected if line in text]
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    assert text.count("raise NotImplementedError()") == 2
    nb = json.loads(path.read_text())
    assert nb["metadata"]["xattn"] == {"chapter": "00_fixture"}
    assert all(cell.get("outputs", []) == [] for cell in nb["cells"])


@pytest.mark.parametrize("chapter", [c.name for c in REAL_CHAPTERS])
def test_real_release_has_no_solution_or_hidden_code(chapter, real_release):
    text = _release_text(real_release / "course" / chapter / f"{chapter}.ipynb")
    protected = _protected_lines((REPO / "solutions" / f"{chapter}.py").read_text())
    leaked = sorted(line for line in protected if line in text)
    assert not leaked, f"solution / hidden test lines in the release: {leaked[:5]}"
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


def test_committed_course_matches_a_fresh_build(real_release):
    committed = REPO / "course"
    fresh, stored = _files(real_release / "course"), _files(committed)
    assert sorted(fresh) == sorted(stored), "course/ and solutions/ list different chapters: run `xattn build`"
    stale = [name for name in fresh if fresh[name] != stored[name]]
    assert not stale, f"course/ is out of date for {stale}: run `xattn build` and commit course/"


def test_invalid_nbgrader_metadata_is_a_user_error(tmp_path):
    source = (FIXTURE_SOLUTIONS / "00_fixture.py").read_text()
    broken = re.sub(r'# %% nbgrader=\{"grade": true, "grade_id": "norm_tests".*', "# %% nbgrader={}", source)
    assert broken != source
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "00_fixture.py").write_text(broken)
    with pytest.raises(UserError, match=r'cell 5 .*"schema_version": 3'):
        build(out_dir=tmp_path / "out", solutions=tmp_path / "src")
    assert not (tmp_path / "out").exists()


def test_unterminated_hidden_region_is_a_user_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURE_SOLUTIONS / "00_fixture.py", src)
    text = (src / "00_fixture.py").read_text().replace("### END HIDDEN TESTS", "", 1)
    (src / "00_fixture.py").write_text(text)
    with pytest.raises(UserError, match="No end hidden tests statement found"):
        build(out_dir=tmp_path / "out", solutions=src)


def test_unknown_chapter_exits_2_with_one_line(tmp_path, cli_user_error):
    err = cli_user_error("build", "99_nothing", "--out", str(tmp_path), "--solutions", str(FIXTURE_SOLUTIONS))
    assert "no chapter named 99_nothing" in err


# --- the grading masters shipped in the package ----------------------------------------------------------------


def test_committed_grading_masters_match_a_fresh_build(real_release):
    fresh = {p.name: p.read_bytes() for p in sorted((real_release / "grading_masters").glob("*.ipynb"))}
    stored = {p.name: p.read_bytes() for p in sorted(GRADING_MASTERS.glob("*.ipynb"))}
    assert sorted(fresh) == sorted(stored), "xattn_edu/grader/masters/ lists other chapters: run `xattn build`"
    stale = [name for name in fresh if fresh[name] != stored[name]]
    assert not stale, f"xattn_edu/grader/masters/ is out of date for {stale}: run `xattn build` and commit it"


@pytest.mark.parametrize("chapter", [c.name for c in REAL_CHAPTERS])
def test_grading_master_holds_no_solution_code_but_every_hidden_test(chapter):
    source = (REPO / "solutions" / f"{chapter}.py").read_text()
    text = _release_text(GRADING_MASTERS / f"{chapter}.ipynb")
    solution = _protected_lines(source, "SOLUTION")
    assert solution, "the chapter has solution code, so this check has teeth"
    leaked = sorted(line for line in solution if line in text)
    assert not leaked, f"solution lines in the grading master: {leaked[:5]}"
    hidden = _protected_lines(source, "HIDDEN TESTS")
    assert hidden and all(line in text for line in hidden)
    assert text.count("### BEGIN SOLUTION") == source.count("### BEGIN SOLUTION")  # markers kept for nbgrader


def _generate(chapter: str, master: nbformat.NotebookNode) -> tuple[bytes, list]:
    """The release nbgrader writes for ``master`` (raw bytes) and the cells it records in the gradebook."""
    from nbgrader.api import Gradebook

    with temp_course() as course:
        course.add_source(chapter, master)
        course.generate_assignment(chapter)
        release = (course.root / "release" / chapter / f"{chapter}.ipynb").read_bytes()
        with Gradebook(course.config.CourseDirectory.db_url, course.config.CourseDirectory.course_id) as gb:
            notebook = gb.find_notebook(chapter, chapter)
            cells = [sorted((c.name, c.cell_type, c.locked, c.checksum, c.source) for c in notebook.source_cells),
                     sorted((c.name, c.cell_type, c.max_score) for c in notebook.grade_cells),
                     sorted(c.name for c in notebook.solution_cells)]  # fmt: skip
    return release, cells


@pytest.mark.slow
@pytest.mark.parametrize("chapter", [c.name for c in REAL_CHAPTERS])
def test_generate_assignment_gives_the_same_release_and_gradebook_from_the_grading_master(chapter):
    full = master_notebook(find_chapters([chapter], REPO / "solutions")[0])
    stubbed = master_notebook(find_chapters([chapter], GRADING_MASTERS)[0])
    assert stubbed.cells != full.cells
    assert _generate(chapter, stubbed) == _generate(chapter, full)


# --- the course root and the masters for nbgrader -----------------------------------------------------------------


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    """A course root elsewhere (a clone of the course): nbgrader_config.py, the package folder, and an edited
    fixture chapter in solutions/. The working directory is its solutions/ folder."""
    monkeypatch.setenv(COURSE_ROOT_ENV, "")  # --course-root pins it for this process: restored afterwards
    root = tmp_path / "clone"
    (root / "solutions").mkdir(parents=True)
    (root / "xattn_edu" / "grader").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    text = (FIXTURE_SOLUTIONS / "00_fixture.py").read_text().replace('"""Return a + b."""', '"""Clone edit."""')
    (root / "solutions" / "00_fixture.py").write_text(text)
    monkeypatch.chdir(root / "solutions")
    return root


def test_build_writes_into_the_course_root_it_runs_in_and_says_which(clone, capsys):
    assert main(["build", "--nbgrader-source", "source"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"course root: {clone} (chapters from {clone / 'solutions'})"
    release = clone / "course" / "00_fixture" / "00_fixture.ipynb"
    assert "Clone edit." in _release_text(release)  # the clone's source, not the checkout's
    master = nbformat.read(clone / "source" / "00_fixture" / "00_fixture.ipynb", as_version=4)
    assert "Clone edit." in master.cells[3].source
    assert (clone / "xattn_edu" / "grader" / "masters" / "00_fixture.ipynb").is_file()
    assert not (REPO / "course" / "00_fixture").exists() and not (GRADING_MASTERS / "00_fixture.ipynb").exists()
    assert str(release) in out


def test_an_explicit_course_root_wins_and_no_course_root_is_one_line(clone, tmp_path, monkeypatch, cli_user_error):
    monkeypatch.chdir(tmp_path)
    cli_user_error("build")  # no nbgrader_config.py here or above
    assert main(["build", "--course-root", str(clone)]) == 0
    assert (clone / "course" / "00_fixture" / "00_fixture.ipynb").is_file()
    assert "is not a course root" in cli_user_error("build", "--course-root", str(tmp_path))


def test_masters_for_nbgrader_carry_a_note_that_stays_out_of_the_release(clone):
    assert main(["build", "--nbgrader-source", "source"]) == 0
    noted = nbformat.read(clone / "source" / "00_fixture" / "00_fixture.ipynb", as_version=4)
    note = noted.cells[0]
    assert note.cell_type == "markdown" and NOTE_TAG in note.metadata["tags"] and not note.metadata["editable"]
    assert "Generated from `solutions/00_fixture.py`" in note.source and "edit there" in note.source
    release, cells = _generate("00_fixture", noted)
    plain_release, plain_cells = _generate("00_fixture", master_notebook(find_chapters(["00_fixture"])[0]))
    assert cells == plain_cells  # the gradebook has no trace of the note
    released = nbformat.reads(release.decode(), as_version=4)
    assert [c.source for c in released.cells] == [c.source for c in nbformat.reads(plain_release.decode(), 4).cells]
    assert "generated" not in released.metadata["xattn"] and "Generated from" not in release.decode()


def test_the_build_refuses_to_overwrite_an_edited_master_unless_forced(clone, cli_user_error):
    assert main(["build", "--nbgrader-source", "source"]) == 0
    path = clone / "source" / "00_fixture" / "00_fixture.ipynb"
    ran = nbformat.read(path, as_version=4)  # running it in JupyterLab is not an edit
    ran.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    ran.cells[2].metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    nbformat.write(ran, path)
    assert main(["build", "--nbgrader-source", "source"]) == 0
    edited = nbformat.read(path, as_version=4)
    edited.cells[3].source += "\n# an instructor's edit in the Formgrader"
    nbformat.write(edited, path)
    before = path.read_bytes()
    err = cli_user_error("build", "--nbgrader-source", "source")
    assert f"{path}: edited since xattn build wrote it" in err and "--force" in err
    assert path.read_bytes() == before
    assert main(["build", "--nbgrader-source", "source", "--force"]) == 0
    assert "an instructor's edit" not in path.read_text()
