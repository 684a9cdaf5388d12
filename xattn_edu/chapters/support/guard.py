"""Make graded code fail when it calls the reference implementation it is meant to replace.

``with forbid_reference(): student_fn(...)`` installs a profiler hook (``sys.setprofile`` and
``threading.setprofile``) that watches every function entered while the block runs:

* a Python function is forbidden when its code is one of the forbidden functions' code, or
  when it is defined in a forbidden module's source file (every function of
  ``xattn_edu.chapters.library_lookup.reference`` and ``xattn_edu.nn.attention``, nested helpers included);
* a built-in (C) function is forbidden when it is the very object listed (``torch.softmax``,
  ``F.scaled_dot_product_attention``) or a bound method listed by its descriptor
  (``torch.Tensor.softmax`` catches ``x.softmax(-1)``).

Because the hook looks at what actually runs, it does not matter how the function was
reached: a direct call, an alias (``from xattn_edu.chapters.library_lookup.reference import softmax as f``),
``importlib.import_module``, ``getattr``, a call nested in a helper, or a reloaded module
(code is matched by file, line and name, not by object identity).

The first forbidden call raises :class:`ReferenceCallError` (an ``AssertionError``) inside
the student's code; the hit is also recorded, so the block fails on exit even if the
student's code swallowed that exception. The previous profilers are restored on exit.
numpy (``np.exp``, ``np.max``, ...) and everything else stays allowed.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import types
from collections.abc import Iterable
from typing import Any

# What writing the exercises of this course is about: the package's own references, and the
# library calls that would do the exercise in one line. Names that cannot be imported are skipped.
DEFAULT_FORBIDDEN = (
    "xattn_edu.chapters.library_lookup.reference",
    "xattn_edu.nn.attention",
    "torch.softmax",
    "torch.special.softmax",
    "torch.Tensor.softmax",
    "torch.nn.functional.softmax",
    "torch.nn.functional.scaled_dot_product_attention",
    "scipy.special.softmax",
)

LIBRARY_LOG_SOFTMAX = (
    "torch.log_softmax",
    "torch.special.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.nn.functional.log_softmax",
    "scipy.special.log_softmax",
)
"""A softmax in one call too (the exponential of it): forbidden by the exercises where writing a softmax is
the point, not by default (a loss is rightly written with it). Pass it through :func:`importable`."""

_METHOD_DESCRIPTOR = type(str.upper)
# Taken when the guard is imported (the setup cell, before any student code), so replacing
# ``sys.setprofile`` later cannot stop the guard from installing or removing its hook.
_GET_PROFILE, _SET_PROFILE = sys.getprofile, sys.setprofile
_THREADS_GET_PROFILE, _THREADS_SET_PROFILE = threading.getprofile, threading.setprofile


class ReferenceCallError(AssertionError):
    """Graded code called a reference implementation it is supposed to write itself."""


def import_target(dotted: str) -> Any | None:
    """Resolve ``'pkg.mod'`` or ``'pkg.mod.attr.attr'`` to the object, or None if not importable."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = sys.modules.get(".".join(parts[:cut])) or importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def importable(*names: str) -> tuple[str, ...]:
    """The dotted names among ``names`` that can be imported here (:class:`forbid_reference` refuses the others)."""
    return tuple(name for name in names if import_target(name) is not None)


def _code_key(code: types.CodeType) -> tuple[str, int, str]:
    return os.path.normcase(os.path.abspath(code.co_filename)), code.co_firstlineno, code.co_name


def _describe(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or getattr(getattr(obj, "__objclass__", None), "__module__", "")
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{name}" if module else name


class _Forbidden:
    """A resolved set of forbidden things and the matching used by the profiler hook."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # source file -> module name
        self.codes: dict[tuple[str, int, str], str] = {}  # (file, line, name) -> display name
        self.builtins: dict[int, tuple[Any, str]] = {}  # id -> (object kept alive, display name)
        self.methods: dict[tuple[type, str], str] = {}  # (class, method name) -> display name
        self.allowed_codes: set[tuple[str, int, str]] = set()

    def copy(self) -> _Forbidden:
        other = _Forbidden()
        for field, value in vars(self).items():
            setattr(other, field, value.copy())
        return other

    def allow(self, target: Any) -> None:
        """Take ``target`` (a module, function, method descriptor or dotted name) out of the set."""
        obj = import_target(target) if isinstance(target, str) else target
        if obj is None:
            return
        if isinstance(obj, types.ModuleType):
            self.files.pop(os.path.normcase(os.path.abspath(getattr(obj, "__file__", None) or "")), None)
            return
        for fn in self._python_functions(obj):
            self.allowed_codes.add(_code_key(fn.__code__))
        self.builtins.pop(id(obj), None)
        if isinstance(obj, _METHOD_DESCRIPTOR):
            self.methods.pop((obj.__objclass__, obj.__name__), None)

    @staticmethod
    def _python_functions(obj: Any) -> list[types.FunctionType]:
        """The Python function behind ``obj`` and anything it wraps (functools.wraps)."""
        found = []
        while isinstance(obj, types.FunctionType | types.MethodType):
            fn = obj.__func__ if isinstance(obj, types.MethodType) else obj
            found.append(fn)
            obj = getattr(fn, "__wrapped__", None)
        return found

    def add(self, target: Any, strict: bool) -> None:
        """Forbid ``target``; a name that cannot be imported is skipped unless ``strict``."""
        obj = import_target(target) if isinstance(target, str) else target
        if obj is None:
            if strict:
                raise ValueError(f"forbid_reference: cannot import {target!r}")
            return
        label = target if isinstance(target, str) else _describe(obj)  # the name people write, e.g. torch.softmax
        if isinstance(obj, types.ModuleType):
            path = getattr(obj, "__file__", None)
            if path is None:
                raise ValueError(f"forbid_reference: module {obj.__name__} has no source file")
            self.files[os.path.normcase(os.path.abspath(path))] = obj.__name__
        elif functions := self._python_functions(obj):
            for fn in functions:
                self.codes[_code_key(fn.__code__)] = label
        elif isinstance(obj, _METHOD_DESCRIPTOR):
            self.methods[(obj.__objclass__, obj.__name__)] = label
            self.builtins[id(obj)] = (obj, label)
        elif callable(obj):
            self.builtins[id(obj)] = (obj, label)
        else:
            raise ValueError(f"forbid_reference: {target!r} is neither a module nor a function")

    def match_code(self, code: types.CodeType) -> str | None:
        """Qualified name of a forbidden Python function whose code this is, else None."""
        if code.co_name == "<module>":  # importing a module is not calling its functions
            return None
        key = _code_key(code)
        if key in self.allowed_codes:
            return None
        if key in self.codes:
            return self.codes[key]
        module = self.files.get(key[0])
        if module is None:
            return None
        return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"

    def match_builtin(self, fn: Any) -> str | None:
        """Qualified name of a forbidden built-in function or bound method, else None."""
        hit = self.builtins.get(id(fn))
        if hit is not None and hit[0] is fn:
            return hit[1]
        owner = getattr(fn, "__self__", None)
        if owner is not None and self.methods:
            for (cls, name), qualified in self.methods.items():
                if fn.__name__ == name and isinstance(owner, cls):
                    return qualified
        return None


@functools.lru_cache(maxsize=1)
def _default_forbidden() -> _Forbidden:
    """:data:`DEFAULT_FORBIDDEN` resolved (the imports happen once per process)."""
    forbidden = _Forbidden()
    for target in DEFAULT_FORBIDDEN:
        forbidden.add(target, strict=False)
    return forbidden


class forbid_reference:  # noqa: N801 - used like a function: ``with forbid_reference():``
    """Context manager: any call to a forbidden implementation inside the block fails.

    Args:
        *extra: more things to forbid besides :data:`DEFAULT_FORBIDDEN`: modules (every
            function defined in them), functions (Python or built-in), method descriptors
            such as ``torch.Tensor.softmax``, or dotted names of any of these.
        allow: things to take out of the forbidden set (same kinds as ``extra``), for
            chapters where a library softmax, or the package's attention inside a model the
            exercise hands over, is fine because writing it is not the point.
        student: how the failure message names the graded code, e.g. ``"`stable_softmax`"``.

    Raises (on exit):
        ReferenceCallError: an ``AssertionError`` whose message names the forbidden function.
    """

    def __init__(self, *extra: Any, allow: Iterable[Any] = (), student: str = "your code") -> None:
        self.student = student
        self.hits: list[str] = []
        self._forbidden = _default_forbidden().copy()
        for target in extra:
            self._forbidden.add(target, strict=True)
        for target in allow:
            self._forbidden.allow(target)
        self._previous: tuple[Any, Any] | None = None
        self._installed: Any = None

    def message(self, name: str) -> str:
        return (
            f"{self.student} calls the reference implementation `{name}`; write it yourself "
            "from basic operations (@, exp, max, sum, reshapes and the like are fine)."
        )

    def _hook(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = self._forbidden.match_code(frame.f_code)
        elif event == "c_call":
            name = self._forbidden.match_builtin(arg)
        else:
            return
        if name is not None:
            self.hits.append(name)
            raise ReferenceCallError(self.message(name))

    def __enter__(self) -> forbid_reference:
        self.hits.clear()
        self._previous = (_GET_PROFILE(), _THREADS_GET_PROFILE())
        self._installed = self._hook  # one bound method, so that it can be recognised on exit
        _THREADS_SET_PROFILE(self._installed)
        _SET_PROFILE(self._installed)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        switched_off = _GET_PROFILE() is not self._installed or _THREADS_GET_PROFILE() is not self._installed
        _SET_PROFILE(self._previous[0])
        _THREADS_SET_PROFILE(self._previous[1])
        if self.hits:
            raise ReferenceCallError(self.message(self.hits[0])) from None
        if switched_off:
            raise ReferenceCallError(f"{self.student} switched off the course's check for reference calls; "
                                     "write the function from basic operations instead.") from None
        return False

