"""Length-bucketed token batches, their sharding across processes, and padding."""

import random

import pytest
import torch

from xattn_edu.translate.batching import pad_batch, shard, token_batches


def _lengths(n=2000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 40) for _ in range(n)]


def test_every_example_once_and_within_budget():
    lengths = _lengths()
    batches = token_batches(lengths, 600, seed=1)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 600 for b in batches)


def test_deterministic_by_seed_and_epoch():
    lengths = _lengths()
    assert token_batches(lengths, 600, seed=3, epoch=2) == token_batches(lengths, 600, seed=3, epoch=2)
    assert token_batches(lengths, 600, seed=3, epoch=2) != token_batches(lengths, 600, seed=3, epoch=3)
    assert token_batches(lengths, 600, seed=3) != token_batches(lengths, 600, seed=4)


def test_bucketing_wastes_less_padding_than_random_batches():
    lengths = _lengths()

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    bucketed = token_batches(lengths, 600, seed=0)
    rows = sum(len(b) for b in bucketed) // len(bucketed)
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    unsorted = [order[i : i + rows] for i in range(0, len(order), rows)]
    assert padded(bucketed) < 0.85 * padded(unsorted)
    assert padded(bucketed) < 1.1 * sum(lengths)  # little padding left at all


def test_batch_order_is_shuffled_not_sorted_by_length():
    lengths = _lengths()
    longest = [max(lengths[i] for i in b) for b in token_batches(lengths, 600, seed=0)]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_example_longer_than_budget_is_an_error():
    with pytest.raises(ValueError, match="max_tokens"):
        token_batches([5, 50], 40, seed=0)


def test_empty_corpus_gives_no_batches():
    assert token_batches([], 100, seed=0) == []


def test_shards_are_disjoint_and_cover_the_batch():
    batch = list(range(11))
    parts = [shard(batch, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == batch
    assert all(set(a).isdisjoint(b) for a in parts for b in parts if a is not b)
    with pytest.raises(ValueError):
        shard(batch, 3, 3)


def test_pad_batch():
    out = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert torch.equal(out, torch.tensor([[5, 6, 7], [8, 0, 0]]))
    assert out.dtype == torch.long
