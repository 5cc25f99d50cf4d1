"""What searches and opens hand back: search results (padded rows) and the open report."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SearchResult:
    """Labels and cosine scores, best first; rows padded with label -1 / score -inf."""

    labels: np.ndarray  # (n_queries, k) int64
    scores: np.ndarray  # (n_queries, k) float32
    method: str  # "exact" | "exact-candidates" | "hnsw" | "hnsw-filtered" | "empty"
    reason: str = ""

    def hits(self, row: int = 0) -> list[tuple[int, float]]:
        """(label, score) pairs of one query row, padding dropped."""
        keep = self.labels[row] >= 0
        return [(int(l), float(s)) for l, s in zip(self.labels[row][keep], self.scores[row][keep])]


@dataclass
class OpenReport:
    """What :meth:`VectorIndex.open` found and did, for the log, the audit and the GUI."""

    action: str  # "loaded" | "caught-up" | "rebuilt" | "created"
    reason: str = ""
    added: int = 0
    removed: int = 0
    seconds: float = 0.0
    details: dict = field(default_factory=dict)
