"""Import = ingest -> embed -> index: a series imported (as the window's Import does) can be
searched at once, skipped files come back with their reasons, and a model that cannot be loaded
leaves the images stored and says why search cannot use them yet."""
from __future__ import annotations

import pytest

from casebook.common.errors import Cancelled
from casebook.common.progress import CancelToken
from casebook.viewer.core.config import Settings
from casebook.viewer.core.services.import_pipeline import PHASE_EMBED, PHASE_INDEX, import_paths


def _folder_with_junk(tmp_path, source):
    """The real files of ``source`` (linked, not copied) plus a file that is not DICOM."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for f in sorted(source.iterdir()):
        if f.is_file():
            (folder / f.name).symlink_to(f)
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def test_imported_series_are_searchable_and_skips_are_reported(tmp_path, need_shared):
    from casebook.viewer.core.services.search import open_store_search

    folder = _folder_with_junk(tmp_path, need_shared("dicom", "dcm_qa_ct", "In", "GE"))
    settings = Settings(library_dir=tmp_path / "lib")
    phases = []
    rep = import_paths(settings, [folder, need_shared("dicom", "dcm_qa_ct", "In", "Philips")],
                       progress=lambda d, t, m="": phases.append(m))
    assert rep.ingest.series_stored >= 2
    assert rep.index.searchable and rep.index.embedded == rep.ingest.series_stored and not rep.index.failed
    assert PHASE_EMBED in phases and PHASE_INDEX in phases
    junk = [s for s in rep.skipped if s.path.endswith("notes.txt")]
    assert len(junk) == 1 and junk[0].reason
    assert f"{len(rep.skipped)} files skipped" in rep.headline("incoming") and "series embedded" in rep.headline("incoming")
    svc = open_store_search(settings, auto_encoder=False)
    try:
        sid = next(s.id for s in svc.catalog.store.list_series() if "incoming" in svc.catalog.store.series_files(s.id)[0].path)
        resp = svc.search(svc.query_from_series(sid), filters=svc.default_filters(), k=5)  # raised "run embed" before
        assert resp.hits and all(h.series_id != sid for h in resp.hits)
        assert rep.index.vectors == len(svc.index)  # the index on disk already held the new vectors
    finally:
        svc.close()
    again = import_paths(settings, [folder])  # nothing new: nothing stored or embedded twice
    assert again.ingest.series_stored == 0 and again.index.embedded == 0 and again.index.searchable


def test_a_model_that_cannot_load_keeps_the_images_and_says_why(tmp_path, need_shared):
    settings = Settings(library_dir=tmp_path / "lib", model="no-such-model")
    rep = import_paths(settings, [need_shared("dicom", "dcm_qa_ct", "In", "GE")])
    assert rep.ingest.series_stored == 1
    assert not rep.index.searchable and "no-such-model" in rep.index.problem
    assert "not indexed for search" in rep.headline("GE")


def test_a_cancelled_import_ends_as_cancelled(tmp_path, need_shared):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        import_paths(Settings(library_dir=tmp_path / "lib"), [need_shared("dicom", "dcm_qa_ct", "In", "GE")],
                     cancel=token)
