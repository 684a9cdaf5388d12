"""Grading: the checks that notebook test cells call, and the tools that run them.

Checks (imported by test cells inside the student's kernel; keep them light):

* :mod:`xattn_edu.grading.guard` — ``forbid_reference()``: graded code may not call the
  reference implementation it is meant to write.
* :mod:`xattn_edu.grading.checks` — generic comparisons with messages written for students
  (shape, closeness to the reference, rows summing to 1, finite values, wrong axis).
* one module per chapter (``library_lookup``, ...) — ``check_<exercise>(fn)`` called by the
  visible tests and ``check_<exercise>_hidden(fn)`` by the hidden ones, so that feedback
  never shows hidden test logic and every failure is a one-line ``AssertionError`` that teaches.

Tools (run nbgrader around the notebooks):

* :mod:`xattn_edu.grading.nbgrader_course` — a throwaway nbgrader course driven from Python.
* :mod:`xattn_edu.grading.selfgrade` — ``xattn grade NOTEBOOK``: autograde one notebook offline.
* :mod:`xattn_edu.grading.hide_hidden_tests` — keeps hidden test code out of feedback HTML.
* :mod:`xattn_edu.grading.classgrade` — ``xattn grade-class``: a whole class in parallel worker processes
  (:mod:`~xattn_edu.grading.grade_worker`), confined by :mod:`~xattn_edu.grading.sandbox`.
* :mod:`xattn_edu.grading.pristine` — fresh copies of the checks for hidden tests, untouched by notebook code.
"""
