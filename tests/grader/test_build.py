"""`xattn build`: solutions/ → course/ is deterministic, leak-free, and course/ does not drift."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers.grading import FIXTURE_SOLUTIONS
from xattn_edu.cli import main
from xattn_edu.common.errors import UserError
from xattn_edu.common.paths import repo_root
from xattn_edu.grader.build import build, find_chapters

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
    build(out_dir=out)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.ipynb"))}


def _protected_lines(source: str) -> set[str]:
    """Lines inside solution / hidden-test regions that appear nowhere outside them."""
    inside, outside = set(), set()
    region = False
    for line in source.splitlines():
        text = line.strip()
        if re.search(r"### BEGIN (SOLUTION|HIDDEN TESTS)", text):
            region = True
        elif re.search(r"### END (SOLUTION|HIDDEN TESTS)", text):
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
    text = _release_text(real_release / chapter / f"{chapter}.ipynb")
    protected = _protected_lines((REPO / "solutions" / f"{chapter}.py").read_text())
    leaked = sorted(line for line in protected if line in text)
    assert not leaked, f"solution / hidden test lines in the release: {leaked[:5]}"
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


def test_committed_course_matches_a_fresh_build(real_release):
    committed = REPO / "course"
    fresh, stored = _files(real_release), _files(committed)
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
