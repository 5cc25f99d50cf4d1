"""ROI and folder queries through the library's own model, end to end on a real library."""
from __future__ import annotations

from casebook.index.case_store import CaseStore
from casebook.viewer.cli import main
from casebook.viewer.core.config import load_settings
from casebook.viewer.core.services.search import SearchFilters, open_store_search


def _library(need_shared, capsys):
    src = need_shared("dicom", "dcm_qa_ct", "In")  # the DICOM of the QA set (Ref/ holds NIfTI references)
    assert main(["ingest", str(src)]) == 0
    assert main(["embed", "--model", "casebook-cxr2d"]) == 0
    capsys.readouterr()
    return src


def test_roi_query_ranks_its_own_series_first(library_dir, need_shared, capsys) -> None:
    _library(need_shared, capsys)
    settings = load_settings()
    service = open_store_search(settings, "casebook-cxr2d@1.0")
    try:
        assert service.encoder is not None, "the library model's encoder should load automatically"
        store = CaseStore.open(settings.database_path, create=False)
        series = max(store.list_series(), key=lambda s: s.slice_count)
        store.close()
        n = series.slice_count
        box = (n // 3, n // 3 + 3, 40, 200, 40, 200)
        q = service.query_from_roi(series.id, box)
        assert q.vectors.shape == (1, service.index.dim)
        resp = service.search(q, filters=SearchFilters(exclude_same_patient=False, exclude_same_study=False), k=5)
        assert resp.hits and resp.hits[0].series_id == series.id
    finally:
        service.close()


def test_cli_folder_and_roi_queries(library_dir, need_shared, capsys) -> None:
    src = _library(need_shared, capsys)
    folder = next(p for p in sorted(src.rglob("*")) if p.is_dir() and any(f.is_file() for f in p.iterdir()))
    rc = main(["search", "--folder", str(folder), "--model", "casebook-cxr2d@1.0", "-k", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "needs the encoder" not in out
    store = CaseStore.open(load_settings().database_path, create=False)
    sid = store.list_series()[0].id
    store.close()
    rc = main(["search", "--series", str(sid), "--roi", "0,1,10,60,10,60", "--model", "casebook-cxr2d@1.0",
               "--include-same-patient", "--include-same-study"])
    assert rc == 0, capsys.readouterr()
