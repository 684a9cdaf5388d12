"""Length-bucketed batches measured in tokens, and how several processes share them.

Sentences of similar length are batched together so little of each batch is padding:
the corpus is shuffled, cut into large *pools*, each pool is sorted by length and cut
into batches of at most ``max_tokens`` padded tokens (rows × longest row), and finally
the batches themselves are shuffled so the model does not see short sentences first.
Everything is drawn from ``random.Random(seed, epoch)``: the same seed and epoch give the
same plan on every process and after a restart.

Under ``torchrun`` every process computes the same plan and takes a disjoint share of
each batch's rows (:func:`shard`), so N processes together see exactly the batch one
process would, and the loss normalised by the batch's total target tokens (summed over
processes) gives the same gradient as a single-process run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor


def token_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    seed: int,
    epoch: int = 0,
    pool_batches: int = 100,
) -> list[list[int]]:
    """A shuffled plan of batches (lists of example indices) of at most ``max_tokens`` padded tokens.

    Args:
        lengths: per example, the padded length it needs (e.g. the longer of its source and target).
        max_tokens: budget per batch: ``len(batch) * max(lengths in batch) <= max_tokens``.
        seed, epoch: the plan depends only on these (and the lengths).
        pool_batches: a pool holds about this many batches' worth of examples before sorting.

    Returns:
        Every index exactly once, grouped into batches, batches in random order.
    """
    if not lengths:
        return []
    longest = max(lengths)
    if longest > max_tokens:
        raise ValueError(f"an example of {longest} tokens does not fit a batch of max_tokens={max_tokens}")
    rng = random.Random(f"{seed}/{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mean_length = sum(lengths) / len(lengths)
    pool_size = max(1, int(pool_batches * max_tokens / mean_length))
    batches: list[list[int]] = []
    for start in range(0, len(order), pool_size):
        pool = sorted(order[start : start + pool_size], key=lambda i: lengths[i])
        batch: list[int] = []
        for index in pool:
            # The pool is sorted, so the newest example is the batch's longest.
            if batch and (len(batch) + 1) * lengths[index] > max_tokens:
                batches.append(batch)
                batch = []
            batch.append(index)
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def shard(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This process's disjoint share of a batch: rows ``rank, rank + world_size, …``.

    Rows are sorted by length inside a pool, so striding gives every process rows of
    similar length (balanced work).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return list(batch[rank::world_size])


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> Tensor:
    """Right-pad id lists into one tensor (B, T) with T the longest sequence."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out
