"""Fixtures shared by several test files."""

from collections.abc import Callable, Iterator

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


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory) -> Iterator[None]:
    """The package's cache and Jupyter's runtime and data folders live in a temporary folder during the suite.

    So the tests write nothing into the user's home (cached gradebooks, kernel connection files and
    sockets, nbgrader exchange data), and a developer's own Jupyter setup cannot change a result.
    """
    root = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    for name, folder in {"XATTN_CACHE": "xattn", "JUPYTER_RUNTIME_DIR": "rt", "JUPYTER_DATA_DIR": "data"}.items():
        patch.setenv(name, str(root / folder))
    yield
    patch.undo()
