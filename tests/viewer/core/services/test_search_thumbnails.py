"""Result thumbnails: the matched slice of each analogue, read from one file of a real library."""
from __future__ import annotations

import numpy as np

from casebook.index.case_store.store import CaseStore
from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.lru import LRUCache
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.library import load_stored_volume
from casebook.viewer.core.services.search import SearchHit, SeriesInfo
from casebook.viewer.core.services.thumbnails import matched_slice, matched_slices, window_to_uint8


def test_matched_slices_are_the_loaders_slices(need_shared, tmp_path) -> None:
    store = CaseStore.open(tmp_path / "cases.sqlite")
    try:
        ingest([need_shared("dicom", "dcm_qa_ct", "In")], store)
        series = sorted(store.list_series(), key=lambda s: -s.slice_count)[:2]
        vols = {s.id: load_stored_volume(store, s.id) for s in series}
        a, b = series
        ka, kb = vols[a.id].shape[0] // 3, vols[b.id].shape[0] - 1
        np.testing.assert_array_equal(matched_slice(store, a.id, ka), vols[a.id].voxels[ka])
        hits = [SearchHit(1, a.id, 0.9, 0, ka, "image", SeriesInfo(a.id)),
                SearchHit(2, b.id, 0.8, 0, kb, "image", SeriesInfo(b.id)),
                SearchHit(3, 999_999, 0.7, 0, 0, "image", SeriesInfo(999_999))]  # gone: no thumbnail
        cache: LRUCache[int, Volume] = LRUCache(2)
        fake = Volume(voxels=np.full((kb + 1, 4, 4), 7, np.int16), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                      direction=np.eye(3))
        cache.put(b.id, fake)  # a decoded volume is used instead of the disk
        steps = []
        out = matched_slices(store, hits, volumes=cache, progress=lambda d, t, m="": steps.append((d, t)))
        assert set(out) == {a.id, b.id}
        np.testing.assert_array_equal(out[a.id], vols[a.id].voxels[ka])
        assert (out[b.id] == 7).all() and out[b.id].shape == (4, 4)
        assert steps[-1] == (3, 3)
    finally:
        store.close()


def test_window_to_uint8_maps_the_window_onto_grey() -> None:
    img = np.array([[-1000.0, 40.0], [80.0, 3000.0]])
    g = window_to_uint8(img, (40.0, 80.0))
    assert g.dtype == np.uint8 and g.flags.c_contiguous
    assert g.tolist() == [[0, 127], [255, 255]]


def test_stack_cache_reads_no_header_while_the_files_are_unchanged(need_shared, tmp_path) -> None:
    """The cards of a second search reuse the stacks of the first; a file rewritten on disk (or one
    gone) is read again, so the thumbnail is what the loader would show now."""
    import os
    import shutil

    from casebook.viewer.core.dicom.stack import slice_count
    from casebook.viewer.core.services.library import stack_for_series

    src = tmp_path / "in"
    shutil.copytree(need_shared("dicom", "dcm_qa_ct", "In"), src)
    store = CaseStore.open(tmp_path / "cases.sqlite")
    try:
        ingest([src], store)
        s = max(store.list_series(), key=lambda x: x.slice_count)
        stacks = LRUCache(4)
        first = stack_for_series(store, s.id, cache=stacks)
        assert stack_for_series(store, s.id, cache=stacks) is first  # no header read again
        k = slice_count(first) // 2
        np.testing.assert_array_equal(matched_slice(store, s.id, k, stacks=stacks),
                                      load_stored_volume(store, s.id).voxels[k])
        path = sorted(f.path for f in store.series_files(s.id))[0]
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: maybe rewritten
        again = stack_for_series(store, s.id, cache=stacks)
        assert again is not first and again.key == first.key
        os.remove(path)  # gone: the stack is read again and says so
        gone = stack_for_series(store, s.id, cache=stacks)
        assert gone is not again and "missing_files" in gone.extra
        assert stack_for_series(store, s.id, cache=stacks) is gone
    finally:
        store.close()
