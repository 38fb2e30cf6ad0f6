"""Length bucketing for LM batches: similar lengths together so padding is a small share.

:func:`bucket_batches` sorts the items by length (ties broken by a seeded shuffle), cuts the
sorted list greedily into batches whose padded size ``B * S_max`` stays within ``batch_bins``
positions (and ``B <= max_batch_size``), then shuffles the batch order with the same seed.
:func:`padding_share` is the fraction of padded positions in a list of batches.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np


def bucket_batches(
    lengths: Sequence[int],
    batch_bins: int,
    max_batch_size: Optional[int] = None,
    seed: int = 0,
    shuffle: bool = True,
) -> List[List[int]]:
    """Indices into ``lengths`` grouped into batches (see module doc). Deterministic given ``seed``.

    An item longer than ``batch_bins`` gets a batch of its own.
    """
    if batch_bins < 1:
        raise ValueError(f"batch_bins must be >= 1, got {batch_bins}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    lens = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    tie = rng.permutation(len(lens)) if shuffle else np.arange(len(lens))
    order = np.lexsort((tie, lens))  # by length, then the seeded tie-break
    batches: List[List[int]] = []
    cur: List[int] = []
    cur_max = 0
    for i in order.tolist():
        n = int(lens[i])
        new_max = max(cur_max, n)
        full = max_batch_size is not None and len(cur) >= max_batch_size
        if cur and (new_max * (len(cur) + 1) > batch_bins or full):
            batches.append(cur)
            cur, new_max = [], n
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[j] for j in perm]
    return batches


def padding_share(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> Tuple[float, int, int]:
    """``(share, real, padded_total)``: padded positions / all positions of ``B * S_max`` batches."""
    real = total = 0
    for b in batches:
        ls = [int(lengths[i]) for i in b]
        real += sum(ls)
        total += max(ls) * len(ls)
    return (1.0 - real / total if total else 0.0), real, total
