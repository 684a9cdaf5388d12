"""forbid_reference: graded code cannot reach a reference implementation, however it tries."""

import importlib
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xattn_edu.chapters.library_lookup import reference as lookup
from xattn_edu.chapters.support.guard import ReferenceCallError, forbid_reference

SCORES = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])


def own_softmax(scores, axis=-1):
    exps = np.exp(scores - np.max(scores, axis=axis, keepdims=True))
    return exps / np.sum(exps, axis=axis, keepdims=True)


def run_guarded(fn, *args):
    with forbid_reference(student="`student_fn`"):
        return fn(*args)


def test_ordinary_numpy_code_runs_unchanged():
    assert np.allclose(run_guarded(own_softmax, SCORES), lookup.softmax(SCORES))


def test_a_direct_call_fails_with_a_message_naming_the_reference():
    with pytest.raises(ReferenceCallError, match=r"`student_fn` calls the reference implementation "
                       r"`xattn_edu\.chapters\.library_lookup\.reference\.softmax`; write it yourself"):
        run_guarded(lambda s: lookup.softmax(s), SCORES)


def test_the_failure_is_an_assertion_error_so_graders_count_it_as_a_failed_test():
    assert issubclass(ReferenceCallError, AssertionError)


def test_an_alias_is_caught():
    from xattn_edu.chapters.library_lookup.reference import softmax as f

    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference.softmax"):
        run_guarded(lambda s: f(s), SCORES)


def test_importlib_and_getattr_are_caught():
    def sneaky(scores):
        module = importlib.import_module("xattn_" + "edu.chapters.library_lookup.reference")
        return getattr(module, "soft" + "max")(scores)

    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference.softmax"):
        run_guarded(sneaky, SCORES)


def test_a_nested_call_through_a_helper_and_another_reference_is_caught():
    def helper(query, keys, values):
        return lookup.soft_lookup(query, keys, values)

    def student(query, keys, values):
        return helper(query, keys, values)

    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference.soft_lookup"):
        run_guarded(student, np.ones(2), np.eye(2), np.eye(2))


def test_a_reloaded_module_is_still_caught():
    fresh = importlib.reload(lookup)
    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference.softmax"):
        run_guarded(fresh.softmax, SCORES)


def test_swallowing_the_error_does_not_help():
    def swallow(scores):
        try:
            return lookup.softmax(scores)
        except AssertionError:
            return own_softmax(scores)

    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference.softmax"):
        run_guarded(swallow, SCORES)


def test_switching_the_guard_off_inside_the_graded_call_fails_the_call():
    off = sys.setprofile

    def sneaky(scores):
        off(None)
        return lookup.softmax(scores)

    with pytest.raises(ReferenceCallError, match="switched off the course's check"):
        run_guarded(sneaky, SCORES)
    assert sys.getprofile() is None  # the guard still removes itself


@pytest.mark.parametrize(
    "library_call, name",
    [
        (lambda t: torch.softmax(t, -1), "torch.softmax"),
        (lambda t: t.softmax(-1), "torch.Tensor.softmax"),
        (lambda t: torch.Tensor.softmax(t, -1), "torch.Tensor.softmax"),
        (lambda t: F.softmax(t, dim=-1), "torch.nn.functional.softmax"),
        (lambda t: torch.special.softmax(t, -1), "torch.special.softmax"),
        (lambda t: F.scaled_dot_product_attention(t[None], t[None], t[None]),
         "torch.nn.functional.scaled_dot_product_attention"),
    ],
)
def test_library_softmax_and_attention_are_caught(library_call, name):
    with pytest.raises(ReferenceCallError, match=name.replace(".", r"\.")):
        run_guarded(library_call, torch.from_numpy(SCORES))


def test_scipy_softmax_is_caught():
    special = pytest.importorskip("scipy.special")
    with pytest.raises(ReferenceCallError, match=r"scipy\.special\.softmax"):
        run_guarded(lambda s: special.softmax(s, axis=-1), SCORES)


def test_a_call_from_a_thread_started_inside_the_guard_is_caught():
    def in_thread(scores):
        def work():
            try:
                lookup.softmax(scores)
            except AssertionError:
                pass

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        return own_softmax(scores)

    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference.softmax"):
        run_guarded(in_thread, SCORES)


def test_extra_targets_and_allowed_ones():
    def teacher_helper(x):
        return 2 * x

    with pytest.raises(ReferenceCallError, match="teacher_helper"):
        with forbid_reference(teacher_helper):
            teacher_helper(1)
    with forbid_reference(allow=["torch.softmax"]):
        torch.softmax(torch.zeros(3), -1)
    with pytest.raises(ValueError, match="cannot import"):
        forbid_reference("xattn_edu.no_such_module")


def test_a_whole_module_can_be_allowed():
    # e.g. an exercise that runs a model built on xattn_edu.nn.attention, where attention is not the point
    with pytest.raises(ReferenceCallError, match="xattn_edu.chapters.library_lookup.reference"):
        with forbid_reference():
            lookup.softmax(SCORES)
    with forbid_reference(allow=["xattn_edu.chapters.library_lookup.reference"]):
        lookup.softmax(SCORES)


def test_other_exceptions_pass_through_unchanged():
    def broken(scores):
        raise ValueError("student bug")

    with pytest.raises(ValueError, match="student bug"):
        run_guarded(broken, SCORES)


def test_previous_profilers_are_restored_after_success_and_after_a_violation():
    def outer_profiler(frame, event, arg):
        return None

    sys.setprofile(outer_profiler)
    threading.setprofile(outer_profiler)
    try:
        run_guarded(own_softmax, SCORES)
        assert sys.getprofile() is outer_profiler and threading.getprofile() is outer_profiler
        with pytest.raises(ReferenceCallError):
            run_guarded(lookup.softmax, SCORES)
        assert sys.getprofile() is outer_profiler and threading.getprofile() is outer_profiler
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert sys.getprofile() is None


def test_importing_the_reference_module_inside_the_guard_is_not_a_call():
    def imports_only(scores):
        importlib.reload(lookup)  # runs the module's top-level code, which calls none of its functions
        return own_softmax(scores)

    run_guarded(imports_only, SCORES)
