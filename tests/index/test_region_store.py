"""Region rows in the case store and their per-family vector index (real SQLite, real hnswlib)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casebook.index.case_store import CaseStore, InstanceRecord, StackRecord
from casebook.index.case_store import migrate
from casebook.index.case_store.regions import RegionRow, RegionStore
from casebook.index.errors import QueryError
from casebook.index.vector_index import VectorIndex


def stack(key: str, modality: str) -> StackRecord:
    return StackRecord(key=key, series_uid=key, study_uid=f"9.{key}", patient_id=f"P{key}", study_date="20240102",
                       modality=modality, instances=[InstanceRecord(path=f"/d/{key}/{i}", sop_instance_uid=f"{key}.{i}",
                                                                    position=(0.0, 0.0, float(i)),
                                                                    orientation=(1, 0, 0, 0, 1, 0)) for i in range(3)])


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_regions_round_trip_and_feed_one_index_per_family(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with CaseStore.open(tmp_path / "s.sqlite") as store:
        ct = store.add_stack(stack("1", "CT")).series_id
        mr = store.add_stack(stack("2", "MR")).series_id
        regions = RegionStore(store)
        d = regions.register_descriptor("casebook-region", "1", 16)
        assert regions.register_descriptor("casebook-region", "1", 16).id == d.id
        with pytest.raises(QueryError):
            regions.register_descriptor("casebook-region", "1", 17)
        assert set(regions.series_missing_regions(d.id)) == {ct, mr}
        row = RegionRow((1, 2, 10, 20, 30, 40), (1.0, 15.0, 35.0), (1.0, 2.0, 3.0), 12.5, 1.0, 1, 800.0, 20.0)
        v_ct, v_mr = unit(rng, 3, 16), unit(rng, 2, 16)
        lab_ct = regions.put_regions(d.id, ct, [row] * 3, v_ct, family="CT", body_part="CHEST")
        lab_mr = regions.put_regions(d.id, mr, [row] * 2, v_mr, family="MR")
        regions.put_regions(d.id, ct, [row] * 3, v_ct, family="CT")  # recomputed: new labels, never reused
        again = regions.labels_by_series(d.id, "CT", [ct])[ct]
        assert not set(again) & set(lab_ct) and len(again) == 3
        assert regions.series_missing_regions(d.id) == []
        assert regions.families(d.id) == {"CT": 3, "MR": 2}
        got = regions.resolve(d.id, again)
        assert got[int(again[0])].box == row.box and got[int(again[0])].series_id == ct
        _, vecs = regions.regions_of_series(d.id, ct)
        assert np.allclose(vecs, v_ct, atol=2e-3)  # float16 storage
        idx = VectorIndex.open(tmp_path / "vectors", d.index_key("CT"), 16, regions.source(d.id, "CT"))
        try:
            assert sorted(idx.live_labels.tolist()) == sorted(again.tolist())  # no MR region in the CT index
            hit = idx.search(v_ct[1], 1).hits(0)[0]
            assert hit[0] == int(again[1]) and hit[1] > 0.99
        finally:
            idx.close()
        store.mark_deleted(series_ids=[mr])
        assert regions.families(d.id) == {"CT": 3}
        assert regions.source(d.id, "MR").digest().count == 0
        del lab_mr
    migrate.downgrade(tmp_path / "s.sqlite", "0002")
    assert "region" not in {r[0] for r in __import__("sqlite3").connect(tmp_path / "s.sqlite").execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}


def test_compact_gives_back_the_pages_of_removed_regions(tmp_path: Path) -> None:
    """An old region version removed leaves its pages in the file until it is compacted; the
    current version's rows come through the rewrite unchanged."""
    import sqlite3

    rng = np.random.default_rng(1)
    db = tmp_path / "s.sqlite"
    with CaseStore.open(db) as store:
        sid = store.add_stack(stack("1", "CT")).series_id
        regions = RegionStore(store)
        old = regions.register_descriptor("casebook-region", "1", 194)
        row = RegionRow((1, 2, 10, 20, 30, 40), (1.0, 15.0, 35.0), (1.0, 2.0, 3.0), 12.5, 1.0, 1, 800.0, 20.0)
        regions.put_regions(old.id, sid, [row] * 8000, unit(rng, 8000, 194), family="CT")
        new = regions.register_descriptor("casebook-region", "2", 194)
        v_new = unit(rng, 5, 194)
        regions.put_regions(new.id, sid, [row] * 5, v_new, family="CT")
        dropped = regions.drop_other_versions("casebook-region", "2")
        assert [n for _, _, n in dropped] == [8000]
        free, total = store.free_space()
        assert free > 0.5 * total
        size = db.stat().st_size
        assert store.compact(min_free_fraction=0.99) == 0  # not worth it at this threshold: untouched
        assert db.stat().st_size == size
        saved = store.compact(min_free_fraction=0.25)
        assert saved > 2 * 2**20
        assert db.stat().st_size < size - 2 * 2**20
        assert store.free_space()[0] < 0.05 * store.free_space()[1]
        rows, vecs = regions.regions_of_series(new.id, sid)
        assert len(rows) == 5 and np.allclose(vecs, v_new, atol=2e-3)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
