"""How typical each stored finding is across the archive's patients: what tells a lesion from anatomy.

Why: every patient has a spinal canal, pulmonary vessels and a renal pelvis, and the detector finds
them as blobs like any lesion. A series query ("cases like this one") that compares *all* regions
ranks by the anatomy every case shares; the issue-11 measurement of series search was exactly that.
A finding is, by definition, something most patients do not have. So each stored region gets a
*typicality*: the mean of its best similarity in each of the ``k`` most similar **other** patients
(same modality family). Normal anatomy scores near 1.0 (every other patient has a near copy); a
lesion scores lower (only the few patients with the same kind of lesion come close). A series or
slice query then describes itself by its least typical regions, i.e. its findings.

This is archive-relative, like hubness reduction in retrieval (cross-domain similarity local
scaling): it needs no labels and no atlas, and it follows the archive as it grows. The values are
cached beside the region index (``*.rarity.npz``) with the index's size and label digest, and
recomputed when either changes. Cost: one k-NN search per region (batched), at index time.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

import numpy as np

from casebook.common.errors import Cancelled

log = logging.getLogger(__name__)

#: other patients averaged (the few that share a lesion kind stay below normal anatomy)
K_PATIENTS = 3
#: neighbours searched per region to find the best match in ``K_PATIENTS`` other patients
NEIGHBOURS = 256
FORMAT = 1


def cache_path(index_dir: Path, index_key: str) -> Path:
    from casebook.index.vector_index.files import model_file_stem

    return Path(index_dir) / f"{model_file_stem(index_key)}.rarity.npz"


def compute_typicality(index: Any, source: Any, patient_of_label: Callable[[np.ndarray], np.ndarray], *,
                       k_patients: int = K_PATIENTS, neighbours: int = NEIGHBOURS, batch: int = 512,
                       progress: Any = None, cancel: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, typicality) for every region of one family index.

    ``patient_of_label`` maps an array of region labels to an array of patient codes (ints)."""
    labels = np.asarray(source.labels(), np.int64)
    typ = np.zeros(len(labels), np.float32)
    if len(labels) == 0:
        return labels, typ
    n_search = int(min(neighbours, len(index)))
    for start in range(0, len(labels), batch):
        if cancel is not None and cancel.is_set():
            raise Cancelled("finding typicality cancelled")
        labs = labels[start:start + batch]
        vecs = np.asarray(source.vectors(labs), np.float32)
        res = index.search(vecs, n_search)
        mine = patient_of_label(labs)
        for row in range(len(labs)):
            hits = res.hits(row)
            if not hits:
                continue
            hl = np.fromiter((h[0] for h in hits), np.int64, len(hits))
            hs = np.fromiter((h[1] for h in hits), np.float64, len(hits))
            hp = patient_of_label(hl)
            best: dict[int, float] = {}
            for p, s in zip(hp.tolist(), hs.tolist()):  # hits come best first
                if p != mine[row] and p not in best:
                    best[p] = s
                    if len(best) >= k_patients:
                        break
            vals = sorted(best.values(), reverse=True)[:k_patients]
            # fewer other patients than k: what is missing counts as no match (a rare finding)
            typ[start + row] = float(sum(vals) / k_patients) if vals else 0.0
        if progress is not None:
            progress(min(start + batch, len(labels)), len(labels), "measuring how common each finding is")
    return labels, typ


class Typicality:
    """label -> typicality of one family's regions, loaded from the cache or computed."""

    def __init__(self, labels: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(labels)
        self._labels = np.asarray(labels, np.int64)[order]
        self._values = np.asarray(values, np.float32)[order]

    def __len__(self) -> int:
        return len(self._labels)

    def of(self, labels: np.ndarray | list[int]) -> np.ndarray:
        """Typicality of these labels (1.0, i.e. 'common', for a label the cache does not hold)."""
        labs = np.asarray(labels, np.int64)
        if len(self._labels) == 0:
            return np.ones(len(labs), np.float32)
        pos = np.clip(np.searchsorted(self._labels, labs), 0, len(self._labels) - 1)
        found = self._labels[pos] == labs
        return np.where(found, self._values[pos], 1.0).astype(np.float32)

    @classmethod
    def load_or_compute(cls, path: Path, signature: str, compute: Callable[[], tuple[np.ndarray, np.ndarray]]
                        ) -> "Typicality":
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) == FORMAT and str(z["signature"]) == signature:
                    return cls(z["labels"], z["typicality"])
        except (OSError, KeyError, ValueError):
            pass  # absent, stale or damaged: recompute
        labels, values = compute()
        try:
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                np.savez(f, format=np.int64(FORMAT), signature=np.str_(signature), labels=labels, typicality=values)
            tmp.replace(path)
        except OSError as exc:  # a read-only or full library still searches, without the cache
            log.warning("finding typicality not cached (%s): %s", path.parent, exc.strerror or exc)
        return cls(labels, values)


def patient_codes(patient_of_series: Mapping[int, Hashable]) -> dict[int, int]:
    """series -> small int per patient (what :func:`compute_typicality` compares)."""
    codes: dict[Hashable, int] = {}
    return {int(sid): codes.setdefault(p, len(codes)) for sid, p in patient_of_series.items()}


__all__ = ["K_PATIENTS", "Typicality", "cache_path", "compute_typicality", "patient_codes"]
