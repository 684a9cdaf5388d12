"""Mask helpers: shapes that broadcast to (B, h, Tq, Tk) and the True = may-attend convention."""

import pytest
import torch

from xattn_edu.nn.masks import causal_mask, decoder_self_mask, padding_mask


def test_padding_mask_from_lengths():
    mask = padding_mask(torch.tensor([2, 4]), 5)
    assert mask.shape == (2, 1, 1, 5) and mask.dtype == torch.bool
    assert mask[0, 0, 0].tolist() == [True, True, False, False, False]
    assert mask[1, 0, 0].tolist() == [True, True, True, True, False]


def test_padding_mask_default_length_and_errors():
    assert padding_mask(torch.tensor([3, 1])).shape == (2, 1, 1, 3)
    with pytest.raises(ValueError, match="exceeds"):
        padding_mask(torch.tensor([6]), 5)
    with pytest.raises(ValueError, match="1-D"):
        padding_mask(torch.tensor([[3]]), 5)


def test_padding_mask_from_ids_matches_lengths_and_finds_padding_anywhere():
    ids = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 0]])
    assert torch.equal(padding_mask(ids=ids, pad_id=0), padding_mask(torch.tensor([2, 3]), 4))
    left_padded = padding_mask(ids=torch.tensor([[0, 0, 5, 6]]), pad_id=0)
    assert left_padded[0, 0, 0].tolist() == [False, False, True, True]


@pytest.mark.parametrize("kwargs", [
    {}, {"lengths": torch.tensor([2]), "ids": torch.tensor([[1, 0]]), "pad_id": 0},
    {"ids": torch.tensor([[1, 0]])}, {"ids": torch.tensor([[1, 0]]), "pad_id": 0, "max_len": 2},
])
def test_padding_mask_takes_exactly_one_description(kwargs):
    with pytest.raises(ValueError, match="either lengths"):
        padding_mask(**kwargs)
    with pytest.raises(ValueError, match=r"\(B, Tk\)"):
        padding_mask(ids=torch.tensor([1, 0]), pad_id=0)


def test_causal_mask_is_lower_triangular_and_shifts_for_cached_queries():
    assert torch.equal(causal_mask(4)[0, 0], torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    last_two = causal_mask(2, 5)[0, 0]
    assert last_two.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    with pytest.raises(ValueError):
        causal_mask(3, 2)


def test_decoder_self_mask_combines_padding_and_causality():
    mask = decoder_self_mask(torch.tensor([[4, 5, 0]]), 0)
    assert mask.shape == (1, 1, 3, 3)
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
