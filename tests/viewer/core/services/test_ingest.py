"""Ingest into a real SQLite store from real DICOM: idempotence, resume, crash safety, bad files."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pydicom
import pytest

from casebook.index.case_store import CaseStore
from casebook.viewer.core.services import ingest as ingest_service
from casebook.viewer.core.services.ingest import PHASE_STORE, ingest
from casebook.viewer.core.services.library import load_stored_volume, stack_for_series

REPO = Path(__file__).resolve().parents[4]


def pydicom_test_files() -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files"


def dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def visible(store: CaseStore) -> list[tuple[str, int]]:
    return sorted((s.key, s.slice_count) for s in store.list_series())


def consistent(path: Path) -> None:
    """No series row without all its images: every series is complete and counts agree."""
    con = sqlite3.connect(path)
    try:
        bad = con.execute("SELECT count(*) FROM series WHERE state != 'complete'").fetchone()[0]
        mism = con.execute("SELECT count(*) FROM series s WHERE s.slice_count != "
                           "(SELECT count(*) FROM instance i WHERE i.series_id = s.id)").fetchone()[0]
        orphans = con.execute("SELECT count(*) FROM instance i WHERE NOT EXISTS "
                              "(SELECT 1 FROM series s WHERE s.id = i.series_id)").fetchone()[0]
    finally:
        con.close()
    assert (bad, mism, orphans) == (0, 0, 0)


@pytest.fixture
def ct_dir(need_shared) -> Path:
    return need_shared("dicom", "dcm_qa_ct", "In")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, need_shared) -> list[tuple[str, int]]:
    """What a clean, uninterrupted ingest of dcm_qa_ct stores."""
    src = need_shared("dicom", "dcm_qa_ct", "In")
    with CaseStore.open(tmp_path_factory.mktemp("ref") / "casebook.sqlite") as store:
        summary = ingest([src], store, workers=2)
        assert not summary.cancelled
        return visible(store)


def test_ingest_real_ct_then_reingest_changes_nothing(tmp_path: Path, ct_dir: Path,
                                                      reference: list[tuple[str, int]]) -> None:
    db = tmp_path / "casebook.sqlite"
    with CaseStore.open(db) as store:
        first = ingest([ct_dir], store, workers=2)
        assert first.series_stored == len(reference) >= 5
        assert first.images_stored == sum(n for _, n in reference)
        assert any(n == 28 for _, n in reference)  # the GE head CT, all 28 slices in one stack
        consistent(db)
        before = dump(db)
        again = ingest([ct_dir], store, workers=2)
        assert (again.series_stored, again.series_updated, again.images_stored) == (0, 0, 0)
        assert again.files_unchanged == first.files_stored
        assert dump(db) == before  # not a byte of content changed
        # even re-reading every file (--rescan) stores nothing new
        forced = ingest([ct_dir], store, workers=2, rescan=True)
        assert forced.images_stored == 0 and forced.series_unchanged == len(reference)
        assert visible(store) == reference
        ge = next(s for s in store.list_series() if s.slice_count == 28)
        assert ge.modality == "CT" and ge.slice_spacing and ge.rows == 512
        files = store.series_files(ge.id)
        assert len(files) == 28 and all(Path(f.path).is_file() for f in files)


def test_cancel_mid_ingest_then_resume(tmp_path: Path, ct_dir: Path, reference: list[tuple[str, int]]) -> None:
    db = tmp_path / "casebook.sqlite"
    cancel = threading.Event()
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, phase: str) -> None:
        seen.append((done, total, phase))
        if phase == PHASE_STORE and done > 0:
            cancel.set()  # stop after the first stored series

    with CaseStore.open(db) as store:
        part = ingest([ct_dir], store, progress=progress, cancel=cancel, workers=2)
        assert part.cancelled and 0 < part.series_stored < len(reference)
        consistent(db)
        got = visible(store)
        assert set(got) < set(reference)  # only whole series, each exactly as in a clean ingest
        rest = ingest([ct_dir], store, workers=2)
        assert not rest.cancelled
        assert rest.files_unchanged == part.files_stored  # stored files were not read again
        assert part.series_stored + rest.series_stored == len(reference)
        assert visible(store) == reference
    assert {p for _, _, p in seen} >= {ingest_service.PHASE_FIND, ingest_service.PHASE_SCAN, PHASE_STORE}


def test_cancel_during_scan_stores_nothing(tmp_path: Path, ct_dir: Path) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int, phase: str) -> None:
        if phase == ingest_service.PHASE_SCAN:
            cancel.set()

    with CaseStore.open(tmp_path / "casebook.sqlite") as store:
        summary = ingest([ct_dir], store, progress=progress, cancel=cancel, workers=1)
        assert summary.cancelled and summary.series_stored == 0
        assert store.list_series() == []


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from sqlalchemy import event
    from casebook.index.case_store import CaseStore
    from casebook.viewer.core.services.ingest import ingest

    store = CaseStore.open(sys.argv[1])
    kill_at = int(sys.argv[3])
    count = [0]

    @event.listens_for(store._write_engine, "after_cursor_execute")
    def crash(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO INSTANCE"):
            count[0] += 1
            if count[0] == kill_at:  # the images of this series are written, not yet committed
                sys.stdout.write("killing\\n"); sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    ingest([sys.argv[2]], store, workers=1)
    print("finished")
""")


def test_crash_mid_ingest_leaves_no_half_series(tmp_path: Path, ct_dir: Path,
                                                reference: list[tuple[str, int]]) -> None:
    db = tmp_path / "casebook.sqlite"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(db), str(ct_dir), "3"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "killing" in proc.stdout and "finished" not in proc.stdout
    assert Path(str(db) + "-wal").exists()  # the killed writer left its log behind
    with CaseStore.open(db) as store:
        consistent(db)
        got = visible(store)
        # the series committed before the kill are there, whole; the one being written is not
        assert 1 <= len(got) < len(reference) and set(got) < set(reference)
        assert store.stats().incomplete_series == 0
        ingest([ct_dir], store, workers=2)
        assert visible(store) == reference
        consistent(db)


def test_bad_files_are_listed_and_the_rest_is_stored(tmp_path: Path, ct_dir: Path) -> None:
    src = tmp_path / "incoming"
    src.mkdir()
    good = sorted((ct_dir / "GE").glob("*.dcm"))[:3]
    for f in good:
        shutil.copy(f, src / f.name)
    (src / "notes.txt").write_text("referral letter, not an image\n")
    (src / "empty.dcm").write_bytes(b"")
    (src / "truncated.dcm").write_bytes(good[0].read_bytes()[:200])
    (src / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden files are not ours to read
    missing = tmp_path / "not-there"
    with CaseStore.open(tmp_path / "casebook.sqlite") as store:
        summary = ingest([src, missing], store, workers=1)
        skipped = {Path(s.path).name: s.reason for s in summary.skipped}
        assert set(skipped) == {"notes.txt", "empty.dcm", "truncated.dcm", "not-there"}
        assert all(reason for reason in skipped.values())
        assert skipped["not-there"] == "no such file or folder"
        assert summary.series_stored == 1 and summary.images_stored == 3
        assert dict(summary.skip_reasons())  # grouped for the CLI table
        # an unchanged bad file is remembered: reported again without being re-read
        again = ingest([src], store, workers=1)
        assert {Path(s.path).name for s in again.skipped} == {"notes.txt", "empty.dcm", "truncated.dcm"}
        assert store.stats().problem_files == 3
        # a fixed file (new size/mtime) is read again
        shutil.copy(good[0], src / "truncated.dcm")
        fixed = ingest([src], store, workers=1)
        assert "truncated.dcm" not in {Path(s.path).name for s in fixed.skipped}
        assert fixed.files_duplicate == 1  # same image as the good copy already stored


def test_new_images_of_a_stored_series_update_it(tmp_path: Path, ct_dir: Path) -> None:
    src = tmp_path / "incoming"
    src.mkdir()
    files = sorted((ct_dir / "GE").glob("*.dcm"))
    for f in files[:10]:
        shutil.copy(f, src / f.name)
    with CaseStore.open(tmp_path / "casebook.sqlite") as store:
        first = ingest([src], store, workers=1)
        assert first.series_stored == 1 and first.images_stored == 10
        for f in files[10:]:
            shutil.copy(f, src / f.name)
        second = ingest([src], store, workers=1)
        assert (second.series_stored, second.series_updated, second.images_stored) == (0, 1, len(files) - 10)
        assert second.files_unchanged == 10
        [series] = store.list_series()
        assert series.slice_count == len(files)
        order = [f.position[2] for f in store.series_files(series.id)]
        assert len(order) == len(files)
        # the stored series loads back into a volume with every slice
        vol = load_stored_volume(store, series.id)
        assert vol.shape[0] == len(files)
        assert stack_for_series(store, series.id).key == series.key


@pytest.mark.slow
def test_every_package_and_shared_file_is_stored_or_explained(tmp_path: Path, need_shared) -> None:
    """pydicom's odd test files and the shared scanners: nothing escapes, every file accounted for."""
    roots = [pydicom_test_files(), need_shared("dicom", "dcm_qa_ts"), need_shared("dicom", "dcm_qa_enh"),
             need_shared("dicom", "pylibjpeg_data")]
    db = tmp_path / "casebook.sqlite"
    with CaseStore.open(db) as store:
        summary = ingest(roots, store, workers=2)
        consistent(db)
        states = store.file_states()
        skipped = {s.path for s in summary.skipped}
        walked = [os.path.join(r, n) for root in roots for r, d, names in os.walk(root)
                  if "/." not in r for n in names if not n.startswith(".") and n != "DICOMDIR"]
        unexplained = [p for p in walked if p not in states and p not in skipped]
        assert not unexplained, unexplained[:5]
        assert summary.series_stored > 20 and summary.files_skipped > 0
        # split multi-frame files count once: a rerun finds exactly the stored files unchanged
        again = ingest(roots, store, workers=2)
        assert again.files_unchanged == summary.files_stored + summary.files_unchanged
        assert again.images_stored == 0 and again.series_stored == 0
        assert {"CT", "MR"} <= set(store.stats().series_by_modality)


def test_moved_archive_keeps_its_cases_and_follows_the_files(tmp_path: Path, ct_dir: Path) -> None:
    """An archive copied to a new disk: same images, new paths. Nothing is duplicated or lost."""
    old = tmp_path / "old-nas" / "GE"
    shutil.copytree(ct_dir / "GE", old)
    db = tmp_path / "casebook.sqlite"
    with CaseStore.open(db) as store:
        first = ingest([old], store, workers=2)
        assert first.series_stored == 1
        [se] = store.list_series()
        store.set_report(se.study_id, findings="hyperdense lesion", diagnosis="fixture")
        store.add_tag(se.study_id, "teaching")
        new = tmp_path / "new-nas" / "GE"
        shutil.copytree(old, new)
        # While the old copy still exists, the new one is a duplicate and the library keeps the old.
        dup = ingest([new], store, workers=2)
        assert dup.files_duplicate == 28 and dup.files_relocated == 0
        assert all(f.path.startswith(str(old)) for f in store.series_files(se.id))
        shutil.rmtree(old)
        moved = ingest([new], store, workers=2)  # no --rescan needed: duplicates are read again
        assert moved.files_relocated == 28 and moved.series_stored == 0 and moved.images_stored == 0
        [after] = store.list_series()
        assert after.id == se.id and after.slice_count == 28 and after.tags == ["teaching"]
        assert store.get_report(se.study_id).diagnosis == "fixture"
        files = store.series_files(se.id)
        assert len(files) == 28 and all(f.path.startswith(str(new)) and Path(f.path).is_file() for f in files)
        assert load_stored_volume(store, se.id).shape[0] == 28
        consistent(db)
        again = ingest([new], store, workers=2)  # and the next run sees the files as unchanged
        assert again.files_unchanged == 28 and again.files_relocated == 0 and again.files_duplicate == 0
