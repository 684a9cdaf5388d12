"""The rules of the ``xattn`` command line, walked over every subcommand (issue 12, fault 8).

* every user error is one line, ``xattn <command>: error: ...``, exit status 2, no traceback;
* every ``--option`` a message names exists on the command that printed it (an option inside a
  quoted command, `xattn train --out DIR`, belongs to that command);
* options may stand anywhere among the positional arguments;
* ``xattn translate`` writes one stdout line per input line and reports failing lines on stderr.

The error cases are generated from the parsers themselves (every numeric option, every command's
required arguments, every ``--set`` key), so a new option is walked without a new test.
"""

from __future__ import annotations

import argparse
import io
import re
import typing
from pathlib import Path

import pytest

from tests.translate.small_run import save_untrained_run
from xattn_edu.cli import build_parser, main, parse_args
from xattn_edu.translate.config import LIMITS, setting_types

PARSER = build_parser()
COMMANDS: dict[str, argparse.ArgumentParser] = next(
    a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
).choices
# The least each command needs before an option of it can be tried (its required arguments).
MINIMAL = {"info": [], "build": [], "grade": ["nb.ipynb"], "grade-class": ["01_library_lookup", "subs"],
           "evaluate": ["run"], "translate": ["run"], "data": ["synthetic"], "train": ["--out", "run"]}  # fmt: skip
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
QUOTED_COMMAND = re.compile(r"`xattn ([a-z-]+)([^`]*)`")
LONG = " ".join(["the dog sees the man"] * 49) + " ."  # 246 tokens: more than the small run's 40 positions


def options_of(command: str | None) -> set[str]:
    parser = PARSER if command is None else COMMANDS[command]
    return {option for action in parser._actions for option in action.option_strings}


def assert_options_exist(command: str | None, message: str, typed: list[str] = ()) -> None:
    """Every --option in ``message`` exists on ``command`` (or on the command a quoted `xattn X ...` names),
    except what the user ``typed`` (quoted back: "unrecognized arguments: --bogus")."""
    for quoted, rest in QUOTED_COMMAND.findall(message):
        assert set(OPTION.findall(rest)) <= options_of(quoted), message
    named = set(OPTION.findall(QUOTED_COMMAND.sub("", message))) - set(typed)
    assert named <= options_of(command), f"{message!r} names {named - options_of(command)}"


def assert_user_error(capsys, args: list[str]) -> str:
    """Run ``xattn ARGS`` and check the rules for a user error; return the message."""
    status = main(args)
    err = capsys.readouterr().err
    command = args[0] if args and args[0] in COMMANDS else None
    prefix = f"xattn {command}: error: " if command else "xattn: error: "
    assert status == 2, err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert_options_exist(command, err, args)
    return err


@pytest.fixture
def never_train(monkeypatch):
    """An error case must stop before training; one that does not fails here instead of training."""

    def refuse(*args, **kwargs):
        raise AssertionError("xattn train got past its checks")

    monkeypatch.setattr("xattn_edu.translate.train.train", refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    return str(save_untrained_run(tmp_path_factory.mktemp("run")))


@pytest.fixture
def fixed_output(run, monkeypatch):
    """Decoding that answers every sentence with "Der Hund ." (an untrained model may answer nothing)."""
    from xattn_edu.translate import translator
    from xattn_edu.translate.checkpoint import load_model
    from xattn_edu.translate.decode import Translation

    german = load_model(run).tgt_tokenizer.encode("Der Hund .")
    monkeypatch.setattr(translator, "translate_ids", lambda model, src, **_: [Translation(german, 0.0)] * len(src))
    return "Der Hund."


# --- generated from the parsers --------------------------------------------------------------------


def _numeric_cases():
    for command, parser in COMMANDS.items():
        for action in parser._actions:
            kind = getattr(action.type, "lowest", "none")
            if action.type is None or not action.option_strings or kind == "none":
                continue
            option = action.option_strings[-1]
            yield command, option, "abc"
            if action.type.lowest is not None:
                low = action.type.lowest
                yield command, option, str(low if action.type.above else low - 1)


@pytest.mark.parametrize(("command", "option", "value"), list(_numeric_cases()))
def test_a_bad_number_is_a_one_line_error_naming_the_option(capsys, command, option, value):
    """Regression: `xattn data synthetic -n -2` printed a traceback."""
    err = assert_user_error(capsys, [command, *MINIMAL[command], option, value])
    assert option in err and value in err


def test_every_typed_option_has_a_checked_type():
    """A bare int/float type accepts -2 where the command cannot use it: every number option says its range."""
    for command, parser in COMMANDS.items():
        for action in parser._actions:
            assert action.type not in (int, float), f"xattn {command} {action.option_strings}: use cli._number"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_option_is_a_one_line_error(capsys, command):
    assert "--no-such-option" in assert_user_error(capsys, [command, *MINIMAL[command], "--no-such-option"])


@pytest.mark.parametrize("command", [c for c, args in MINIMAL.items() if args])
def test_a_missing_required_argument_is_a_one_line_error(capsys, command):
    assert "required" in assert_user_error(capsys, [command])


@pytest.mark.parametrize("args", [[], ["bogus"], ["--bogus"]])
def test_top_level_errors(capsys, args):
    assert_user_error(capsys, args)


def _bad_set_values():
    for key, kind in setting_types().items():
        origin = typing.get_origin(kind)
        plain = [a for a in typing.get_args(kind) if a is not type(None)] if origin else [kind]
        if plain[0] in (int, float, bool) or origin is tuple:
            yield key, "abc"
        if key in LIMITS:
            yield key, "-1,-1" if origin is tuple else "-1"
    yield "model.no_such_setting", "1"


@pytest.mark.parametrize(("key", "value"), list(_bad_set_values()))
def test_a_bad_set_is_a_one_line_error_naming_the_key(capsys, tmp_path, never_train, key, value):
    err = assert_user_error(capsys, ["train", "--out", str(tmp_path / "run"), "--set", f"{key}={value}"])
    assert key in err
    assert not (tmp_path / "run").exists()


def test_a_set_without_a_value_is_a_one_line_error(capsys, tmp_path, never_train):
    assert "KEY=VALUE" in assert_user_error(capsys, ["train", "--out", str(tmp_path / "r"), "--set", "seed"])


# --- missing and unwritable files ----------------------------------------------------------------


def _file_cases(run: str, tmp: Path):
    a_file = tmp / "a_file"
    a_file.write_text("x\n", encoding="utf-8")
    missing = str(tmp / "missing")
    return [
        (["evaluate", missing], "no such checkpoint directory"),
        (["translate", missing, "a dog ."], "no such checkpoint directory"),
        (["evaluate", run, "--src", missing, "--ref", missing], "no such file"),
        (["grade", missing + ".ipynb"], "no such file"),
        (["grade-class", "01_library_lookup", missing], "no such file"),
        (["build", "99_nothing"], "no chapter named 99_nothing"),
        (["train", "--out", str(tmp / "out"), "--train-src", missing], "no such file"),
        (["train", "--out", str(tmp / "out"), "--resume"], "no such checkpoint directory"),
        (["train", "--out", str(a_file / "sub")], "is a file, not a folder"),  # before training, not after
        (["data", "multi30k", "--cache-dir", str(a_file / "sub")], "Not a directory"),
    ]


def test_missing_and_unwritable_files_are_one_line_errors(capsys, run, tmp_path):
    for args, message in _file_cases(run, tmp_path):
        assert message in assert_user_error(capsys, args), args


# --- every hint names an option that exists ----------------------------------------------------------


def test_every_option_the_package_names_exists_on_some_command():
    """Hints are written far from the parser; an option renamed or never made (`--lr`) must not linger."""
    every = set().union(*(options_of(c) for c in COMMANDS))
    package = Path(__file__).resolve().parents[1] / "xattn_edu"
    for path in package.rglob("*.py"):
        named = set(OPTION.findall(path.read_text(encoding="utf-8")))
        assert named <= every, f"{path.relative_to(package)} names {named - every}"


def test_multi30k_offline_hints_name_options_of_the_command_that_printed_them(capsys, tmp_path, monkeypatch):
    """Regression: `xattn data multi30k` offline told the user to pass --data-dir, which it lacks."""
    from xattn_edu.translate.data import download

    def offline(url, part, timeout, hint):
        raise download.UserError(f"could not download {url} (offline). {hint}")

    monkeypatch.setattr(download, "_transfer", offline)
    err = assert_user_error(capsys, ["data", "multi30k", "--cache-dir", str(tmp_path)])
    assert "--cache-dir" in err
    err = assert_user_error(capsys, ["train", "--preset", "multi30k", "--out", str(tmp_path / "r")])
    assert "--data-dir" in err  # `train` has it


# --- options anywhere ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "intermixed"),
    [
        (["translate", "run", "a b .", "c d .", "--beam", "4"], ["translate", "run", "--beam", "4", "a b .", "c d ."]),
        (["translate", "run", "a b .", "--device", "cpu"], ["translate", "--device", "cpu", "run", "a b ."]),
        (["evaluate", "run", "--json", "--split", "val"], ["evaluate", "--json", "run", "--split", "val"]),
        (["grade-class", "01_x", "subs", "--json"], ["grade-class", "01_x", "--json", "subs"]),
        (["build", "01_a", "02_b", "--out", "o"], ["build", "01_a", "--out", "o", "02_b"]),
        (["data", "synthetic", "-n", "2"], ["data", "-n", "2", "synthetic"]),
        (["grade", "nb.ipynb", "--json"], ["grade", "--json", "nb.ipynb"]),
    ],
)
def test_options_may_stand_anywhere(canonical, intermixed):
    """Regression: `xattn translate RUN --beam 4 "sentence"` failed with "unrecognized arguments"."""
    assert parse_args(PARSER, intermixed) == parse_args(PARSER, canonical)


def test_every_command_with_positionals_is_walked_intermixed():
    walked = {"translate", "evaluate", "grade-class", "build", "data", "grade"}
    with_positionals = {c for c, p in COMMANDS.items() if any(not a.option_strings for a in p._actions)}
    assert with_positionals <= walked


# --- translate: one output line per input line -----------------------------------------------------


def test_translate_keeps_every_line_and_reports_the_ones_it_cannot_translate(capsys, run, fixed_output):
    """Regression (fault 7): a 246-word sentence stopped the whole command; nothing was translated."""
    assert main(["translate", run, "--beam", "2", "the man sees the dog .", LONG, "the zebra sees the man."]) == 1
    out, err = capsys.readouterr()
    assert out.split("\n") == [fixed_output, "", fixed_output, ""]
    assert "xattn translate: error: sentence 2: 247 tokens (with <eos>), more than the model's maximum of 40" in err
    assert "xattn translate: warning: sentence 3: 'zebra' not in the training data" in err
    assert "Traceback" not in err and err.count("\n") == 2


def test_translate_stdin_writes_one_line_per_input_line(capsys, run, monkeypatch, fixed_output):
    """Regression (fault 5): printf 'the man sees the dog .\\n\\nthe woman sees the cat .\\n' gave 2 lines for 3."""
    monkeypatch.setattr("sys.stdin", io.StringIO("the man sees the dog .\n\nthe woman sees the cat .\n"))
    assert main(["translate", run]) == 0
    assert capsys.readouterr().out.split("\n") == [fixed_output, "", fixed_output, ""]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_translate_prompts_on_a_terminal_and_answers_each_line(capsys, run, monkeypatch, fixed_output):
    """Regression (fault 7): interactive stdin waited with no prompt."""
    monkeypatch.setattr("sys.stdin", _Terminal("the man sees the dog .\n\n"))
    assert main(["translate", run]) == 0
    out, err = capsys.readouterr()
    assert out.split("\n") == [fixed_output, "", ""]
    assert "Ctrl-D" in err and err.count("> ") == 3  # one prompt per line read, and one at the end


def test_the_bleu_tokenize_help_lists_what_the_metrics_accept():
    from xattn_edu.translate.metrics import BLEU_TOKENIZERS

    (action,) = [a for a in COMMANDS["evaluate"]._actions if "--bleu-tokenize" in a.option_strings]
    assert all(name in action.help for name in BLEU_TOKENIZERS)
