"""Case store on real SQLite files: idempotence, transactions, FTS5, filters, embeddings, safety."""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from casebook.index.case_store import (
    CaseFilter,
    CaseStore,
    InstanceRecord,
    StackRecord,
    TeachingInfo,
)
from casebook.index.case_store import migrate
from casebook.index.errors import QueryError, StoreError, UnknownItemError
from casebook.index.vector_index import LabelDigest, VectorIndex


def make_stack(key: str, study: str = "1.2.3", patient: str = "P1", n: int = 5, *, date_: str = "20200101",
               modality: str = "CT", desc: str = "Head", folder: str = "/data", series_uid: str | None = None,
               uid_prefix: str | None = None) -> StackRecord:
    prefix = uid_prefix or key
    inst = [InstanceRecord(path=f"{folder}/{key}/{i}.dcm", sop_instance_uid=f"{prefix}.{i}", instance_number=n - i,
                           position=(0.0, 0.0, -2.5 * i), orientation=(1, 0, 0, 0, 1, 0), file_size=100 + i,
                           file_mtime_ns=1000 + i) for i in range(n)]
    return StackRecord(key=key, series_uid=series_uid or key, study_uid=study, patient_id=patient,
                       patient_name="Doe^Jane", patient_sex="F", patient_age="061Y", study_date=date_,
                       study_description="CT HEAD", modality=modality, series_description=desc, rows=512,
                       columns=512, instances=inst)


@pytest.fixture
def store(tmp_path: Path):
    s = CaseStore.open(tmp_path / "lib" / "casebook.sqlite")
    yield s
    s.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_store_is_wal_with_foreign_keys_at_head(store: CaseStore) -> None:
    assert store.revision == migrate.head_revision()
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.head_revision()
    con.close()
    with store._write_engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_add_stack_is_idempotent_and_orders_slices(store: CaseStore) -> None:
    r1 = store.add_stack(make_stack("1.9"))
    r2 = store.add_stack(make_stack("1.9"))
    assert (r1.status, r1.instances_added) == ("stored", 5)
    assert (r2.status, r2.instances_added, r2.duplicates) == ("unchanged", 0, [])
    [series] = store.list_series()
    assert series.slice_count == 5 and series.file_count == 5
    assert series.slice_spacing == pytest.approx(2.5) and series.extent_mm == pytest.approx(10.0)
    files = store.series_files(series.id)
    z = [f.position[2] for f in files]
    assert z == sorted(z)  # slices in order along the normal
    assert [f.slice_index for f in files] == list(range(5))
    [study] = store.list_studies()
    assert study.age_years == 61 and study.study_date == date(2020, 1, 1) and study.modalities == ["CT"]


def test_same_images_from_another_path_are_duplicates(store: CaseStore, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(5):  # the stored copies exist on disk
        (data / "1.9").mkdir(parents=True, exist_ok=True)
        (data / "1.9" / f"{i}.dcm").write_bytes(b"x")
    store.add_stack(make_stack("1.9", folder=str(data)))
    res = store.add_stack(make_stack("1.9", folder="/copy"))
    assert res.status == "unchanged" and res.instances_added == 0 and not res.relocated
    assert len(res.duplicates) == 5 and f"already stored from {data}/1.9/0.dcm" in res.duplicates[0][1]
    assert store.stats().instances == 5
    states = store.file_states()
    assert states["/copy/1.9/0.dcm"].status == "duplicate"


def test_images_whose_stored_file_is_gone_follow_the_new_path(store: CaseStore) -> None:
    store.add_stack(make_stack("1.9", folder="/gone-nas"))  # these paths do not exist
    sid = store.list_series()[0].id
    res = store.add_stack(make_stack("1.9", folder="/new-nas"))
    assert res.status == "unchanged" and res.instances_added == 0 and not res.duplicates
    assert len(res.relocated) == 5 and ("/new-nas/1.9/0.dcm", "/gone-nas/1.9/0.dcm") in res.relocated
    assert sorted(f.path for f in store.series_files(sid)) == [f"/new-nas/1.9/{i}.dcm" for i in range(5)]
    states = store.file_states()
    assert "/gone-nas/1.9/0.dcm" not in states and states["/new-nas/1.9/0.dcm"].status == "stored"
    assert store.stats().instances == 5


def test_new_images_update_a_series(store: CaseStore) -> None:
    store.add_stack(make_stack("1.9", n=3))
    res = store.add_stack(make_stack("1.9", n=6))
    assert (res.status, res.instances_added) == ("updated", 3)
    assert store.get_series(res.series_id).slice_count == 6


def test_a_failed_transaction_leaves_nothing(store: CaseStore) -> None:
    bad = make_stack("2.9")
    bad.study_uid = ""  # refused
    with pytest.raises(StoreError):
        store.add_stacks([make_stack("1.9"), bad])
    assert store.list_series() == [] and store.stats().instances == 0
    with sqlite3.connect(store.path) as con:
        assert con.execute("SELECT count(*) FROM series").fetchone()[0] == 0


def test_full_text_search_over_reports(store: CaseStore) -> None:
    store.add_stack(make_stack("1.9", study="S1"))
    store.add_stack(make_stack("2.9", study="S2", patient="P2"))
    store.add_stack(make_stack("3.9", study="S3", patient="P3"))
    s1, s2, s3 = sorted(st.id for st in store.list_studies())
    store.set_report(s1, findings="Acute subdural haematoma over the left convexity, 8 mm.",
                     impression="Subdural haematoma.", diagnosis="subdural haematoma")
    store.set_report(s2, findings="Chronic subdural collection, no mass effect.", diagnosis="chronic subdural")
    store.set_report(s3, findings="Normal brain. No haemorrhage.", diagnosis="normal")
    hits = store.search_text("subdural haematoma")
    assert [h.study_id for h in hits] == [s1]
    assert "[subdural]" in hits[0].snippet.lower() and hits[0].diagnosis == "subdural haematoma"
    assert {h.study_id for h in store.search_text("subdural")} == {s1, s2}
    assert {h.study_id for h in store.search_text("haem*")} == {s1, s3}
    assert store.search_text("pneumothorax") == []
    # an edited report is re-indexed (triggers), a deleted study never comes back
    store.set_report(s3, findings="Left pneumothorax.", diagnosis="pneumothorax")
    assert [h.study_id for h in store.search_text("pneumothorax")] == [s3]
    assert store.search_text("haemorrhage") == []
    store.mark_deleted(study_ids=[s1])
    assert [h.study_id for h in store.search_text("subdural")] == [s2]
    assert store.search_text('subdural OR pneumothorax', raw=True)
    with pytest.raises(QueryError):
        store.search_text('"unbalanced', raw=True)
    assert store.search_text('"unbalanced') == []  # user words are quoted: never a syntax error
    assert [st.id for st in store.list_studies(CaseFilter(text="pneumothorax"))] == [s3]
    assert [st.id for st in store.list_studies(CaseFilter(diagnosis="chronic"))] == [s2]


def test_filters_tags_collections_teaching_and_follow_ups(store: CaseStore) -> None:
    store.add_stack(make_stack("1.9", study="S1", date_="20190105"))
    store.add_stack(make_stack("2.9", study="S2", date_="20200105", modality="MR", desc="T1 axial"))
    store.add_stack(make_stack("3.9", study="S3", patient="P2", date_="20210105"))
    ids = {st.study_uid: st.id for st in store.list_studies()}
    store.add_tag(ids["S1"], "Trauma")
    store.add_tag(ids["S1"], "trauma")  # tags are case-insensitive, and idempotent
    store.add_tag(ids["S3"], "neuro")
    store.add_to_collection("Teaching: head", ids["S3"], note="classic")
    store.set_teaching(ids["S3"], TeachingInfo(True, "Look at the basal cisterns", "beginner", "deidentified"))
    assert store.tags() == [("neuro", 1), ("Trauma", 1)]
    assert [s.id for s in store.list_studies(CaseFilter(tags=("TRAUMA",)))] == [ids["S1"]]
    assert [s.id for s in store.list_studies(CaseFilter(collections=("teaching: head",)))] == [ids["S3"]]
    assert [s.id for s in store.list_studies(CaseFilter(teaching_only=True))] == [ids["S3"]]
    assert store.get_teaching(ids["S3"]).teaching_points.startswith("Look")
    assert [s.modality for s in store.list_series(CaseFilter(modalities=("mr",)))] == ["MR"]
    store.set_report(ids["S1"], diagnosis="contusion")
    [s1] = store.list_series(CaseFilter(study_ids=(ids["S1"],)))
    assert (s1.diagnosis, s1.tags, s1.patient_id, s1.study_description) == ("contusion", ["Trauma"], "P1", "CT HEAD")
    assert store.get_series(s1.id).diagnosis == "contusion"
    assert {s.id for s in store.list_studies(CaseFilter(patient="p2"))} == {ids["S3"]}
    assert {s.id for s in store.list_studies(CaseFilter(date_from=date(2019, 6, 1), date_to=date(2020, 12, 31)))} \
        == {ids["S2"]}
    assert {s.id for s in store.list_studies(CaseFilter(text="axial"))} == {ids["S2"]}
    # same patient, different dates: prior / follow-up linked automatically
    assert [p[0] for p in store.priors(ids["S2"])] == [ids["S1"]]
    assert store.priors(ids["S2"])[0][2] == 365
    assert [f[0] for f in store.follow_ups(ids["S1"])] == [ids["S2"]]
    assert store.priors(ids["S3"]) == []
    by_id = {s.id: s for s in store.list_studies()}
    assert by_id[ids["S1"]].follow_up_count == 1 and by_id[ids["S2"]].prior_count == 1
    with pytest.raises(QueryError):
        store.set_teaching(ids["S3"], TeachingInfo(True, "", "expert", "unknown"))
    with pytest.raises(UnknownItemError):
        store.add_tag(9999, "x")


def test_deleted_series_are_hidden_everywhere(store: CaseStore) -> None:
    a = store.add_stack(make_stack("1.9", study="S1")).series_id
    b = store.add_stack(make_stack("2.9", study="S2", patient="P2")).series_id
    m = store.register_model("enc", "1", "ab" * 32, 4, "2d-slice")
    store.put_embeddings(m.id, a, [0, 1], np.eye(2, 4))
    store.put_embeddings(m.id, b, [0, 1], np.eye(2, 4)[::-1])
    store.mark_deleted(series_ids=[a])
    assert [s.id for s in store.list_series()] == [b]
    assert len(store.list_studies()) == 1
    with pytest.raises(UnknownItemError):
        store.get_series(a)
    assert set(store.get_embeddings(m.id).series_ids) == {b}
    assert set(store.resolve_labels(m.id, [0, 1, 2, 3]).values()) == {(b, 0), (b, 1)}
    assert list(store.dead_labels(m.id)) == [0, 1]
    assert store.series_missing_embeddings(m.id) == []
    store.mark_deleted(series_ids=[a], deleted=False)
    assert len(store.list_series()) == 2


def test_models_and_embeddings(store: CaseStore, tmp_path: Path) -> None:
    a = store.add_stack(make_stack("1.9", study="S1")).series_id
    b = store.add_stack(make_stack("2.9", study="S2")).series_id
    m = store.register_model("casebook-baseline", "1.0", "cd" * 32, 8, "2d-slice")
    assert store.register_model("casebook-baseline", "1.0", "cd" * 32, 8, "2d-slice").id == m.id
    with pytest.raises(StoreError, match="new version"):
        store.register_model("casebook-baseline", "1.0", "ef" * 32, 8, "2d-slice")
    assert store.get_model("casebook-baseline@1.0").id == m.id == store.get_model("casebook-baseline").id
    assert store.series_missing_embeddings(m.id) == [a, b]
    rng = np.random.default_rng(0)
    va = rng.standard_normal((6, 8)).astype(np.float32)
    la = store.put_embeddings(m.id, a, [-1, 0, 1, 2, 3, 4], va)
    assert list(la) == [0, 1, 2, 3, 4, 5]
    assert store.series_missing_embeddings(m.id) == [b]
    # replacing a slice vector gives it a new label: labels are never reused
    lb = store.put_embeddings(m.id, a, [0], va[1:2] * 2)
    assert list(lb) == [6]
    got = store.get_embeddings(m.id, [a])
    assert list(got.labels) == [0, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(got.vectors[-1], va[1] * 2)
    assert list(got.slice_indices) == [-1, 1, 2, 3, 4, 0]
    store.put_embeddings(m.id, a, [0], va[:1], roi='{"box":[0,1,0,1,0,1]}')
    assert len(store.get_embeddings(m.id, [a])) == 6 and len(store.get_embeddings(m.id, [a], roi=True)) == 7
    with pytest.raises(QueryError, match="8-d"):
        store.put_embeddings(m.id, b, [0], np.zeros((1, 4)))
    with pytest.raises(QueryError):
        store.put_embeddings(m.id, b, [0], np.full((1, 8), np.nan))
    store.put_embeddings(m.id, b, list(range(3)), rng.standard_normal((3, 8)))
    assert store.labels_for_series(m.id, [a, b])[b].tolist() == [8, 9, 10]
    # the store is the index's authoritative source (real hnswlib index built from it)
    src = store.embedding_source(m.id)
    labels = src.labels()
    assert src.digest() == LabelDigest.of(labels)
    batches = list(src.iter_batches(4))
    assert np.concatenate([l for l, _ in batches]).tolist() == labels.tolist()
    index = VectorIndex.open(tmp_path / "vectors", m.key, m.dim, src)
    try:
        assert len(index) == len(labels)
        q = src.vectors(labels[:1])
        res = index.search(q, k=1)
        assert res.hits(0)[0][0] == labels[0]
    finally:
        index.close()
    # deleting a series changes the digest, so an index knows it is stale
    before = src.digest()
    store.mark_deleted(series_ids=[b])
    assert src.digest() != before and src.digest().count == before.count - 3


def test_concurrent_writers_and_readers(store: CaseStore) -> None:
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(8):
                store.add_stack(make_stack(f"{w}.{i}", study=f"S{w}.{i}", patient=f"P{w}", n=4))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                store.list_studies()
                store.stats()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)] + [threading.Thread(target=reader)
                                                                                  for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.stats().series == 32 and store.stats().instances == 128
    # a second store object on the same file (another process would do the same) sees it all
    other = CaseStore.open(store.path)
    try:
        other.add_stack(make_stack("9.9", study="S9"))
        assert store.stats().series == 33
    finally:
        other.close()


def test_not_a_database_is_refused_and_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "casebook.sqlite"
    bad.write_bytes(b"this is a spreadsheet, not a database\n" * 100)
    before = sha(bad)
    with pytest.raises(StoreError) as err:
        CaseStore.open(bad)
    assert str(bad) in str(err.value) and "not an SQLite database" in str(err.value)
    assert sha(bad) == before and sorted(p.name for p in tmp_path.iterdir()) == ["casebook.sqlite"]


def test_damaged_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "casebook.sqlite"
    s = CaseStore.open(path)
    for i in range(40):
        s.add_stack(make_stack(f"{i}.9", study=f"S{i}", n=20))
    s.close()
    with sqlite3.connect(path) as con:  # fold the WAL in, so the main file holds everything
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for off in range(page * 3, len(data) - page, page * 2):  # scribble over every other page
        data[off + 8 : off + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    before = sha(path)
    with pytest.raises(StoreError) as err:
        CaseStore.open(path)
    assert str(path) in str(err.value) and "damaged" in str(err.value)
    assert sha(path) == before


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    before = sha(path)
    with pytest.raises(StoreError, match="not a Casebook library"):
        CaseStore.open(path)
    assert sha(path) == before


def test_store_from_a_newer_casebook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "casebook.sqlite"
    CaseStore.open(path).close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE alembic_version SET version_num = '0099_future'")
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = sha(path)
    with pytest.raises(StoreError, match="newer Casebook"):
        CaseStore.open(path)
    assert sha(path) == before


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="casebook ingest"):
        CaseStore.open(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()
