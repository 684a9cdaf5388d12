"""Let a chapter keep running while an exercise is still a stub.

Demo cells in a chapter call the student's functions. Until an exercise is written, its stub
raises ``NotImplementedError``; :func:`prefer_mine` then stands the package's reference in for
it, so a student who skips an exercise can still run, read and play with the rest of the chapter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


def prefer_mine(mine: Callable, reference: Callable) -> Callable:
    """The student's function, standing in the reference while it is still a stub.

    Demo cells call the result: it runs ``mine``; while ``mine`` raises ``NotImplementedError``
    (the exercise is not done yet) it runs ``reference`` instead and says so once, so the rest of
    the chapter still runs for a student who skipped an exercise.
    """
    noted = False

    @functools.wraps(mine)
    def call(*args, **kwargs):
        nonlocal noted
        try:
            return mine(*args, **kwargs)
        except NotImplementedError:
            if not noted:
                print(f"(your `{mine.__name__}` is not written yet: using the package's reference instead)")
                noted = True
            return reference(*args, **kwargs)

    return call
