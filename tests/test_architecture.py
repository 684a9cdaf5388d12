"""The package's layers and their import rules (pyproject's import-linter contracts, docs/architecture.md).

The contracts run on the real package; a copy of the package with one forbidden import planted in it
shows that a change breaking a layer fails this test with a readable message.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "xattn_edu"


def lint_imports(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the project's contracts on the package found in ``package_parent``."""
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_import_contracts_hold():
    result = lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("grader/selfgrade.py", "import torch", "The grader runs on the host"),
        ("grader/build.py", "from xattn_edu.chapters.support import checks", "The grader runs on the host"),
        ("nn/attention.py", "from xattn_edu.common import errors", "nn imports torch and nothing else of ours"),
        ("translate/corpus.py", "from xattn_edu.chapters.support import fast", "Layers: cli on top"),
        ("chapters/library_lookup/reference.py", "from xattn_edu.chapters.two_modes import widget",
         "Chapters build on earlier chapters"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, planted, contract):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / PACKAGE, copy / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / PACKAGE / module
    target.write_text(target.read_text() + f"\n{planted}\n")
    result = lint_imports(tmp_path, copy)
    assert result.returncode != 0, result.stdout
    broken = result.stdout[result.stdout.index("Broken contracts"):]
    assert contract in broken, broken
    assert planted.split()[1] in broken  # the message names the offending import


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph(PACKAGE)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported != module and not module.startswith(imported + ".") and graph.chain_exists(imported, module):
                cycles.append(f"{module} -> {imported} -> ... -> {module}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("layer", ["nn", "translate", "grader"])
def test_no_function_is_longer_than_60_lines(layer):
    long = []
    for path in sorted((ROOT / PACKAGE / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
