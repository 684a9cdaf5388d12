"""Fast mode: on in grading and validating kernels and in tests, off in a student's own kernel."""

import pytest

from xattn_edu.chapters.support.fast import fast_mode


@pytest.mark.parametrize(("environment", "fast"), [
    ({}, False),
    ({"XATTN_FAST": "1"}, True),
    ({"XATTN_FAST": "0"}, False),
    ({"NBGRADER_EXECUTION": "validate"}, True),
    ({"NBGRADER_EXECUTION": "autograde"}, False),  # the grader's own steps set XATTN_FAST for that
])
def test_fast_mode_follows_the_environment(monkeypatch, environment, fast):
    monkeypatch.delenv("XATTN_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert fast_mode() is fast
