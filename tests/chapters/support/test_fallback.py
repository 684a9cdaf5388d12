"""prefer_mine: demo cells use the student's function once written, the reference until then."""

import pytest

from xattn_edu.chapters.support.fallback import prefer_mine


def reference(x):
    return 2 * x


def test_stub_falls_back_to_the_reference_and_says_so_once(capsys):
    def double(x):
        raise NotImplementedError()

    fn = prefer_mine(double, reference)
    assert fn(3) == 6 and fn(4) == 8
    assert capsys.readouterr().out.count("your `double` is not written yet") == 1


def test_written_function_is_used_and_its_errors_are_shown():
    assert prefer_mine(lambda x: x + 100, reference)(1) == 101
    with pytest.raises(ZeroDivisionError):
        prefer_mine(lambda x: 1 / 0, reference)(1)
