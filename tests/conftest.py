"""Fixtures shared by several test files."""

from collections.abc import Callable

import pytest

from xattn_edu.cli import main


@pytest.fixture
def cli_user_error(capsys) -> Callable[..., str]:
    """Run ``xattn ARGS...`` expecting a user error; return what it printed on stderr.

    Checks the CLI's promise for errors a user can fix: exit status 2 and one line
    ``xattn <command>: error: ...`` on stderr, never a traceback.
    """

    def run(*args: str) -> str:
        status = main(list(args))
        err = capsys.readouterr().err
        assert status == 2, err
        assert err.startswith(f"xattn {args[0]}: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        return err

    return run
