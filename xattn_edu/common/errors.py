"""Errors meant for people, not tracebacks."""


class UserError(Exception):
    """A problem the user can fix (bad path, corrupt file, wrong chapter...).

    The CLI prints its message on one line and exits with status 2.
    """
