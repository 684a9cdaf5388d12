"""Plain values: what leaves the kernel is data only, and decodes to what was encoded."""

import json

import numpy as np
import pytest
import torch

from xattn_edu.chapters.support.values import Opaque, Raised, decode, encode, plain, raised


def roundtrip(value):
    return decode(json.loads(json.dumps(encode(plain(value)))))


def test_arrays_tensors_and_nesting_survive_the_trip():
    value = (np.arange(6.0).reshape(2, 3), {"w": torch.ones(2, dtype=torch.float64), "n": 3}, [None, "x", True, 2.5])
    back = roundtrip(value)
    assert isinstance(back, tuple) and isinstance(back[2], list)
    np.testing.assert_array_equal(back[0], value[0])
    assert back[1]["w"].dtype == np.float64 and back[1]["n"] == 3
    assert back[2] == [None, "x", True, 2.5]


def test_non_finite_numbers_and_low_precision_tensors():
    assert np.isnan(roundtrip(float("nan"))) and roundtrip(float("-inf")) == float("-inf")
    back = roundtrip(torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    assert back.dtype == np.float32 and back.tolist() == [1.5, -2.0]
    assert roundtrip(np.float32(0.25)) == 0.25


def test_exceptions_and_foreign_objects_keep_only_their_names():
    assert roundtrip(raised(ValueError("x" * 1000))) == Raised("ValueError", "x" * 300)
    assert roundtrip(iter([1])) == Opaque("list_iterator")
    assert roundtrip(np.array([object()], dtype=object)) == Opaque("object array")


def test_a_deep_nesting_is_cut_instead_of_recursing_forever():
    value = []
    for _ in range(50):
        value = [value]
    assert "Opaque" in repr(plain(value))


@pytest.mark.parametrize("bad", [
    {"t": "array", "npy": "not base64!"},
    {"t": "array", "npy": "k05VTVBZAQB2AHsnZGVzY3InOiAnfE8nLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMSwpLCB9"},
    {"t": "pickle", "data": "..."},
    {"no": "kind"},
    {"t": "tuple", "items": "not a list"},
])
def test_decoding_refuses_what_encode_cannot_have_written(bad):
    with pytest.raises((ValueError, TypeError)):
        decode(bad)


class _FillsInLater(np.ndarray):
    """An array that writes its values only when its dtype is read again (what a deferred attack does)."""

    @property
    def dtype(self):
        view = self.view(np.ndarray)
        view[...] = 7.0
        return view.dtype


def test_plain_values_are_built_in_types_fixed_at_conversion():
    lazy = np.zeros(3).view(_FillsInLater)
    converted = plain([lazy, True, 3, 2.5, "x"])
    assert type(converted[0]) is np.ndarray and np.array_equal(converted[0], np.zeros(3))
    assert [type(v) for v in converted[1:]] == [bool, int, float, str]

    class Loud(float):
        pass

    assert type(plain(Loud(1.5))) is float
