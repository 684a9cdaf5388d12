"""Positional encodings: the formulas and the properties each flavour is chosen for."""

import math

import pytest
import torch
from torch.testing import assert_close

from xattn_edu.nn.positional import (
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_table(10, 8)
    p, i = 7, 2
    assert table[p, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / 8)), abs=1e-6)
    assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / 8)), abs=1e-6)


def test_absolute_encodings_accept_batched_positions_and_reject_too_long():
    for module in (SinusoidalPositionalEncoding(8, max_len=6), LearnedPositionalEmbedding(8, max_len=6)):
        assert module(torch.arange(4)).shape == (4, 8)
        assert module(torch.arange(4).expand(3, 4)).shape == (3, 4, 8)
        with pytest.raises(ValueError, match="maximum length"):
            module(torch.arange(7))


def test_relative_bias_depends_only_on_distance_and_clips():
    rel = RelativePositionBias(n_heads=2, max_distance=2)
    torch.nn.init.normal_(rel.bias.weight)
    bias = rel(torch.arange(5), torch.arange(5))[0]  # (h, Tq, Tk)
    assert_close(bias[:, 1, 3], bias[:, 2, 4])  # distance +2
    assert_close(bias[:, 0, 4], bias[:, 0, 3])  # +4 and +3 both clip to +2
    assert not torch.allclose(bias[:, 1, 3], bias[:, 3, 1])


def test_rotary_dot_products_depend_only_on_relative_position():
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        return (rope(q, torch.tensor([m])) * rope(k, torch.tensor([n]))).sum()

    assert_close(score(3, 1), score(10, 8))
    assert not torch.allclose(score(3, 1), score(1, 3))
    assert_close(rope(q, torch.tensor([0])), q)  # position 0 is no rotation
    assert_close(rope(q, torch.tensor([5])).norm(), q.norm())  # rotations keep length


def test_rotary_rejects_odd_width_and_wrong_positions():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="one position per token"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 8), torch.arange(4))
    rope, x = RotaryEmbedding(8), torch.randn(2, 1, 3, 8)
    for positions in (torch.arange(3).expand(3, 3), torch.arange(3)[None, None]):  # batch 3 for x's 2; 3 axes
        with pytest.raises(ValueError, match=r"one position per token, \(T,\) or \(B or 1, T\)"):
            rope(x, positions)
    assert_close(rope(x, torch.arange(3)[None]), rope(x, torch.arange(3)))
