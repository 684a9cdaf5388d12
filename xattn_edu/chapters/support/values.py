"""What a student's code returned, as plain data that can leave the kernel and be judged elsewhere.

:func:`plain` turns a result into plain values: numpy arrays (a torch tensor becomes the numpy array
of the same dtype; bfloat16 and float16 become float32), Python numbers, strings, ``None``, tuples,
lists and string-keyed dicts of those, :class:`Raised` for an exception and :class:`Opaque` for
anything else (only its type name survives). :func:`encode` and :func:`decode`
move plain values through JSON: arrays as base64 ``.npy`` bytes, read back with
``allow_pickle=False``, so decoding a record can never run code.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MESSAGE_CHARS = 300
"""Exception messages are cut to this many characters."""


@dataclass(frozen=True)
class Raised:
    """The student's code raised an exception instead of returning."""

    name: str  # the exception's class name, e.g. "ValueError"
    message: str  # its message, at most MESSAGE_CHARS characters


@dataclass(frozen=True)
class Opaque:
    """A returned object that is not plain data; only its type is kept."""

    type_name: str  # e.g. "generator"


def raised(error: BaseException) -> Raised:
    """The :class:`Raised` of an exception object."""
    return Raised(type(error).__name__, str(error)[:MESSAGE_CHARS])


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype.is_floating_point and tensor.element_size() < 4:  # bf16/fp16 have no exact numpy twin here
        tensor = tensor.float()
    return tensor.numpy().copy()


def plain(result: Any, depth: int = 0) -> Any:
    """``result`` as plain values (see the module docstring); nesting deeper than 8 levels is Opaque."""
    if depth > 8:
        return Opaque(type(result).__name__)
    # Exact types only: a subclass could compute its value later, outside the reference guard (numpy's
    # float64, a float subclass with a fixed value, stays as it is: judges read its shape).
    if result is None or type(result) in (bool, int, float, str, np.float64) or isinstance(result, Raised | Opaque):
        return result
    for kind in (bool, int, float, str):
        if isinstance(result, kind):  # a subclass: its value now, as the built-in type
            return kind(result)
    if isinstance(result, np.generic):
        return result.item()
    if isinstance(result, np.ndarray):
        array = np.array(result, copy=True, subok=False)  # the buffer as it is now, as a plain ndarray
        return array if array.dtype != object else Opaque("object array")
    if type(result).__module__ == "torch" and type(result).__name__ in ("Tensor", "Parameter"):
        return _tensor_to_numpy(result)
    if isinstance(result, tuple | list):
        items = [plain(item, depth + 1) for item in result]
        return tuple(items) if isinstance(result, tuple) else items
    if isinstance(result, dict) and all(isinstance(key, str) for key in result):
        return {key: plain(value, depth + 1) for key, value in result.items()}
    return Opaque(type(result).__name__)


def encode(value: Any) -> Any:
    """A JSON-ready form of a plain value (inverse: :func:`decode`)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"t": "array", "npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, Raised):
        return {"t": "raised", "name": value.name, "message": value.message}
    if isinstance(value, Opaque):
        return {"t": "opaque", "type": value.type_name}
    if isinstance(value, tuple | list):
        return {"t": "tuple" if isinstance(value, tuple) else "list", "items": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "items": {key: encode(v) for key, v in value.items()}}
    raise TypeError(f"not a plain value: {type(value).__name__}")


def decode(data: Any) -> Any:
    """The plain value that :func:`encode` wrote; ``ValueError`` for anything it cannot have written."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if not isinstance(data, dict) or "t" not in data:
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    kind = data["t"]
    if kind == "float" and data.get("v") in ("nan", "inf", "-inf"):
        return float(data["v"])
    if kind == "array":
        array = np.load(io.BytesIO(base64.b64decode(data["npy"], validate=True)), allow_pickle=False)
        if not isinstance(array, np.ndarray):
            raise ValueError("an encoded array holds something else")
        return array
    if kind == "raised":
        return Raised(str(data["name"]), str(data["message"])[:MESSAGE_CHARS])
    if kind == "opaque":
        return Opaque(str(data["type"]))
    if kind in ("tuple", "list") and isinstance(data.get("items"), list):
        items = [decode(item) for item in data["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict" and isinstance(data.get("items"), dict):
        return {str(key): decode(value) for key, value in data["items"].items()}
    raise ValueError(f"unknown encoded value of kind {kind!r}")
