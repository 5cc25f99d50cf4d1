"""Label sets: the order-independent digest that ties an index to its store, and sorted-set helpers.

The index keeps its live labels as one sorted int64 array; membership, union and de-duplication
over millions of labels must cost milliseconds (``searchsorted``), and the digest must be cheap
to compute both here (numpy) and in SQLite (plain SQL aggregates) so a staleness check never
ships every label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

_DIGEST_P = 2147483647  # 2**31 - 1
_DIGEST_K = 1103515245


@dataclass(frozen=True)
class LabelDigest:
    """Order-independent fingerprint of a set of labels.

    The SQL equivalent over the store's ``embedding`` table is
    ``SELECT count(*), coalesce(sum(label), 0),
    coalesce(sum(((label % 2147483647) * 1103515245) % 2147483647), 0) FROM embedding
    WHERE model_id = ?`` so the store never has to ship every label to check staleness.
    """

    count: int
    total: int
    mix: int

    @classmethod
    def of(cls, labels: np.ndarray | Iterable[int]) -> "LabelDigest":
        arr = np.asarray(labels if isinstance(labels, np.ndarray) else list(labels), dtype=np.int64)
        if arr.size == 0:
            return cls(0, 0, 0)
        mix = ((arr % _DIGEST_P) * _DIGEST_K) % _DIGEST_P  # < 2**62: no int64 overflow
        return cls(int(arr.size), int(arr.sum(dtype=np.int64)), int(mix.sum(dtype=np.int64)))

    def as_list(self) -> list[int]:
        return [self.count, self.total, self.mix]


def sorted_unique(values: np.ndarray | Iterable[int]) -> np.ndarray:
    """Sorted distinct int64 labels. numpy 2.4's ``np.unique`` hashes integers first and takes
    ~0.8 s per million labels; sorting and dropping repeats takes ~10 ms."""
    a = np.sort(np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64), kind="stable")
    if len(a) > 1:
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two sorted distinct label arrays, cheap when ``b`` is small."""
    if len(b) == 0:
        return a
    extra = b[~member(a, b)]
    if len(extra) == 0:
        return a
    return np.insert(a, np.searchsorted(a, extra), extra)


def member(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``x`` are in the sorted array (faster than np.isin for big sets)."""
    if len(sorted_values) == 0:
        return np.zeros(len(x), bool)
    pos = np.minimum(np.searchsorted(sorted_values, x), len(sorted_values) - 1)
    return sorted_values[pos] == x
