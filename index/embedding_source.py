"""The case store's ``embedding`` table as the authoritative source of a vector index.

The vector index is a cache; the store keeps every vector. This adapter gives
:class:`~casebook.index.vector_index.VectorIndex` the four operations it needs (digest, labels,
vectors, batches) with plain SQL over the store's schema, so the staleness check on every open
is one aggregate query and a rebuild streams the table in label order.

Which embeddings are searchable: those of the model, not of an ROI (``roi = ''``), whose series
and study are not deleted. Deleting a case in the store therefore removes it from the index at
the next open (or at once, when the caller also marks its labels deleted).
"""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
from sqlalchemy import Engine, text

from .errors import StoreError
from .vector_index import LabelDigest, model_file_stem  # noqa: F401  (re-exported for callers)

log = logging.getLogger(__name__)

_LIVE = (
    "FROM embedding e JOIN series s ON s.id = e.series_id JOIN study st ON st.id = s.study_id "
    "WHERE e.model_id = :model AND e.roi = '' AND s.deleted = 0 AND st.deleted = 0"
)


class StoreEmbeddingSource:
    """Live embeddings of one model in the case store (an :class:`EmbeddingSource`)."""

    def __init__(self, engine: Engine, model_id: int, dim: int) -> None:
        self.engine = engine
        self.model_id = int(model_id)
        self.dim = int(dim)

    def _rows(self, sql: str, **params: object) -> list:
        try:
            with self.engine.connect() as con:
                return list(con.execute(text(sql), {"model": self.model_id, **params}))
        except Exception as exc:  # sqlalchemy.exc.* : report as a store problem, with the model
            raise StoreError(f"case store: cannot read embeddings of model {self.model_id}: {exc}") from exc

    def digest(self) -> LabelDigest:
        (count, total, mix), = self._rows(
            "SELECT count(*), coalesce(sum(e.label), 0), "
            "coalesce(sum(((e.label % 2147483647) * 1103515245) % 2147483647), 0) " + _LIVE)
        return LabelDigest(int(count), int(total), int(mix))

    def labels(self) -> np.ndarray:
        rows = self._rows("SELECT e.label " + _LIVE + " ORDER BY e.label")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _decode(self, blob: bytes, label: int) -> np.ndarray:
        v = np.frombuffer(blob, dtype="<f4")
        if v.size != self.dim:
            raise StoreError(f"case store: embedding label {label} of model {self.model_id} has "
                             f"{v.size} values, the model makes {self.dim}")
        return v

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        out = np.empty((len(labels), self.dim), np.float32)
        pos = {int(l): i for i, l in enumerate(labels)}
        found = 0
        for s in range(0, len(labels), 900):  # SQLite's host-parameter limit
            chunk = [int(x) for x in labels[s : s + 900]]
            names = ",".join(f":l{i}" for i in range(len(chunk)))
            rows = self._rows(f"SELECT e.label, e.vector {_LIVE} AND e.label IN ({names})",
                              **{f"l{i}": v for i, v in enumerate(chunk)})
            for label, blob in rows:
                out[pos[int(label)]] = self._decode(blob, int(label))
                found += 1
        if found != len(labels):
            raise StoreError(f"case store: {len(labels) - found} requested embeddings of model "
                             f"{self.model_id} are gone (deleted meanwhile?)")
        return out

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = -1
        while True:  # keyset pagination: constant cost per batch, no OFFSET scans
            rows = self._rows(f"SELECT e.label, e.vector {_LIVE} AND e.label > :last ORDER BY e.label LIMIT :n",
                              last=last, n=int(batch_size))
            if not rows:
                return
            labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.stack([self._decode(r[1], int(r[0])) for r in rows]).astype(np.float32)
            last = int(labels[-1])
            yield labels, vecs
