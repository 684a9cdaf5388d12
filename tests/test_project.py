"""Project-level promises: one dependency list, a fast import, a CLI that explains itself."""

import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

from xattn_edu.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_installs_exactly_what_pyproject_declares():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-e .[dev]"]], "environment.yml must install the project itself, nothing else"
    conda_packages = [d for d in env["dependencies"] if isinstance(d, str)]
    assert sorted(p.split("=")[0] for p in conda_packages) == ["pip", "python"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "dev" in project["optional-dependencies"]
    required = {"numpy", "torch", "jupyterlab", "nbgrader", "ipywidgets", "matplotlib"}
    declared = {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert required <= declared


def test_import_is_fast_and_light():
    code = ("import time, sys; t = time.perf_counter(); import xattn_edu; "
            "print(time.perf_counter() - t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) < 2.0
    assert out[1] == "False", "importing xattn_edu must not import torch (no heavy work at import)"


def test_cli_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "info" in capsys.readouterr().out


def test_info_reports_versions_device_and_paths(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XATTN_CACHE", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for needle in ("torch", "nbgrader", "device", "cpu", str(tmp_path)):
        assert needle in out


def test_console_script_is_installed():
    result = subprocess.run(["xattn", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "info" in result.stdout
