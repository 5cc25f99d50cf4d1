"""What a similarity score means: its percentile against the archive, and an honest "no close match".

Why: a raw cosine on a result card tells the reader nothing (issue 11: every slice hit scored
0.999-1.000). The region descriptor's cosine is a weighted mean of per-block Bhattacharyya
coefficients, so it has an absolute reading (:data:`CLOSE`, :data:`SIMILAR`); and where the
library has no labels to fit on, the score's percentile among the query's similarities to a fixed
sample of the archive's regions says how unusual the match is *in this archive*.
:func:`isotonic_fit` (pool-adjacent-violators) turns judged (score, same-finding) pairs into a
monotone probability, and :func:`expected_calibration_error` reports how well it holds; the
benchmark fits it on the tuning library and reports it on unseen ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_CLOSE_MATCH = "no close match"
CLOSE = 0.93  # descriptor cosine at and above which a match is called close
SIMILAR = 0.85  # below this, nothing in the archive is like the query


@dataclass
class ArchiveCalibration:
    """A fixed sample of an index's vectors, to place a query's scores among the archive's."""

    sample: np.ndarray  # (n, dim) unit rows
    size: int  # vectors in the index

    @classmethod
    def from_index(cls, index, n: int = 2000, seed: int = 0) -> "ArchiveCalibration":
        live = index.live_labels
        if len(live) == 0:
            return cls(np.empty((0, index.dim), np.float32), 0)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(live, size=min(n, len(live)), replace=False))
        return cls(index.get_vectors(pick), len(live))

    def percentile(self, query: np.ndarray, score: float) -> float:
        """Share (0-100) of the archive sample the query is less similar to than ``score``."""
        if len(self.sample) == 0:
            return 0.0
        sims = self.sample @ np.asarray(query, np.float32)
        return float(100.0 * np.mean(sims < score))

    def read(self, query: np.ndarray, score: float) -> tuple[float, str]:
        """(percentile, verbal confidence) of one hit."""
        pct = self.percentile(query, score)
        if score >= CLOSE:
            return pct, "close match"
        if score >= SIMILAR:
            return pct, "similar"
        return pct, NO_CLOSE_MATCH

    def describe(self) -> str:
        return (f"descriptor similarity (close >= {CLOSE}, similar >= {SIMILAR}, else '{NO_CLOSE_MATCH}'); "
                f"percentile against {len(self.sample)} of the archive's {self.size} regions; no labels used")


def isotonic_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: (thresholds, probabilities), a non-decreasing step function."""
    order = np.argsort(scores, kind="stable")
    x = np.asarray(scores, float)[order]
    y = np.asarray(labels, float)[order]
    vals: list[float] = []
    wts: list[float] = []
    xs: list[float] = []
    for xi, yi in zip(x, y):
        vals.append(yi)
        wts.append(1.0)
        xs.append(xi)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            vals[-2:] = [v]
            wts[-2:] = [w]
            xs[-2:] = [xs[-2]]
    return np.asarray(xs), np.asarray(vals)


def isotonic_predict(fit: tuple[np.ndarray, np.ndarray], scores: np.ndarray) -> np.ndarray:
    xs, vals = fit
    if len(xs) == 0:
        return np.zeros(len(np.atleast_1d(scores)))
    idx = np.searchsorted(xs, np.atleast_1d(scores), side="right") - 1
    return vals[np.clip(idx, 0, len(vals) - 1)]


def expected_calibration_error(prob: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over equal-width probability bins, weighted by their counts."""
    prob, labels = np.asarray(prob, float), np.asarray(labels, float)
    if len(prob) == 0:
        return float("nan")
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(prob, edges) - 1, 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            err += m.sum() * abs(prob[m].mean() - labels[m].mean())
    return float(err / len(prob))


__all__ = ["ArchiveCalibration", "CLOSE", "NO_CLOSE_MATCH", "SIMILAR", "expected_calibration_error", "isotonic_fit",
           "isotonic_predict"]
