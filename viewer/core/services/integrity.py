"""Integrity of a library (``casebook check``) and the repairs that can be made from what is kept.

Why: a library lives for years on a workstation that loses power, runs out of disk and has its
archive folders moved. The case store is the authoritative copy; the vector index is a cache of
its embeddings; the DICOM files stay where they were ingested from. So the checks are: the SQLite
file itself (``PRAGMA integrity_check``), every stored series complete, every embedding of every
model in its index exactly once with the same vector, and the stored files still present with the
size and modification time they had. What can be rebuilt is rebuilt by ``--repair``: the index
from the stored embeddings, missing embeddings by the encoder, incomplete series by re-reading
their files, and a damaged database from its latest backup followed by a re-ingest of the folders
it knew (nothing is deleted: the damaged file is moved aside).

The database is read through its own read-only connection, so a check never writes (it works on
a read-only library too).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casebook.common.errors import CasebookError
from casebook.common.progress import ProgressCallback, SupportsCancel, check_cancel, no_progress

from ..config import Settings, load_settings
from .library import require_library

log = logging.getLogger(__name__)

__all__ = ["CheckReport", "Finding", "FileCheck", "RepairError", "check_library", "check_files", "latest_backup",
           "repair_library"]

_VECTOR_SAMPLE = 512  # vectors compared between index and store per model
_VECTOR_TOL = 1e-4


@dataclass
class Finding:
    """One check's outcome: ``ok``, what was found, and whether ``--repair`` can fix it."""

    check: str
    ok: bool
    detail: str
    repairable: bool = False
    count: int = 0


@dataclass
class FileCheck:
    """Stored source files gone from disk or changed since ingest."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    series_affected: int = 0


@dataclass
class CheckReport:
    library: str
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    files: FileCheck = field(default_factory=FileCheck)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, check: str, ok: bool, detail: str, repairable: bool = False, count: int = 0) -> Finding:
        f = Finding(check, ok, detail, repairable and not ok, count)
        self.findings.append(f)
        return f


def _ro(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    con.execute("PRAGMA query_only = 1")
    return con


def latest_backup(db: Path) -> Path | None:
    """The newest backup of ``db`` that ingest made before a migration (``<name>.schema-*.bak``),
    or one ``--repair`` set aside; None when there is none."""
    cands = [p for p in db.parent.glob(f"{db.name}.*.bak") if p.is_file() and ".damaged-" not in p.name]
    return max(cands, key=lambda p: p.stat().st_mtime_ns) if cands else None


def _integrity(db: Path) -> list[str]:
    """Problems ``PRAGMA integrity_check`` lists (empty when the file is sound)."""
    try:
        con = _ro(db)
    except sqlite3.Error as exc:
        return [f"cannot open: {exc}"]
    try:
        rows = [r[0] for r in con.execute("PRAGMA integrity_check(20)")]
        return [] if rows == ["ok"] else rows
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        con.close()


def check_files(db: Path, *, progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None,
                limit: int | None = None) -> FileCheck:
    """Stored source files (status ``stored``) still there with their size and mtime."""
    progress = progress or no_progress
    out = FileCheck()
    con = _ro(db)
    try:
        rows = con.execute("SELECT path, size, mtime_ns, series_id FROM source_file WHERE status = 'stored' "
                           "ORDER BY path").fetchall()
    finally:
        con.close()
    if limit is not None:
        rows = rows[:limit]
    affected: set[int] = set()
    for n, (path, size, mtime_ns, sid) in enumerate(rows):
        if n % 256 == 0:
            check_cancel(cancel)
            progress(n, len(rows), "checking stored files")
        try:
            st = os.stat(path)
        except OSError:
            out.missing.append(path)
            if sid is not None:
                affected.add(int(sid))
            continue
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            out.changed.append(path)
            if sid is not None:
                affected.add(int(sid))
    out.checked = len(rows)
    out.series_affected = len(affected)
    progress(len(rows), len(rows), "checking stored files")
    return out


def check_library(settings: Settings | None = None, *, files: bool = True, progress: ProgressCallback | None = None,
                  cancel: SupportsCancel | None = None) -> CheckReport:
    """Every integrity check of the library in ``settings``; nothing is written."""
    settings = settings or load_settings()
    require_library(settings)
    progress = progress or no_progress
    t0 = time.monotonic()
    db = settings.database_path
    rep = CheckReport(library=str(settings.library_dir))
    problems = _integrity(db)
    if problems:
        backup = latest_backup(db)
        rep.add("database", False, f"{db} is damaged: {'; '.join(problems[:3])}"
                + (f" (backup {backup.name} can be restored)" if backup else " (no backup to restore)"),
                repairable=backup is not None, count=len(problems))
        rep.seconds = time.monotonic() - t0
        return rep
    check_cancel(cancel)
    con = _ro(db)
    try:
        rep.add("database", True, f"{db.name}: PRAGMA integrity_check ok{_free_note(con)}")
        _check_series(con, rep)
        models = con.execute("SELECT id, name, version, dim FROM model ORDER BY id").fetchall()
        for model_id, name, version, dim in models:
            check_cancel(cancel)
            _check_model(con, settings, rep, int(model_id), f"{name}@{version}", int(dim))
    finally:
        con.close()
    if files:
        rep.files = check_files(db, progress=progress, cancel=cancel)
        fc = rep.files
        bad = len(fc.missing) + len(fc.changed)
        detail = (f"{fc.checked} stored files present and unchanged" if not bad else
                  f"{len(fc.missing)} of {fc.checked} stored files missing, {len(fc.changed)} changed since ingest "
                  f"({fc.series_affected} series affected; e.g. {(fc.missing or fc.changed)[0]})")
        rep.add("files", not bad, detail, repairable=bool(fc.changed), count=bad)
    rep.seconds = time.monotonic() - t0
    return rep


#: free share of the database file that the check mentions and ``--repair`` gives back
COMPACT_AT = 0.05


def _free_fraction(con: sqlite3.Connection) -> tuple[int, float]:
    """(bytes in free pages, their share of the file): pages of deleted rows SQLite keeps for reuse."""
    size = int(con.execute("PRAGMA page_size").fetchone()[0])
    pages = int(con.execute("PRAGMA page_count").fetchone()[0])
    free = int(con.execute("PRAGMA freelist_count").fetchone()[0])
    return free * size, free / pages if pages else 0.0


def _free_note(con: sqlite3.Connection) -> str:
    free, share = _free_fraction(con)
    if share < COMPACT_AT:
        return ""
    return f"; {free / 2**20:.1f} MiB ({100 * share:.0f}%) of it is free pages of deleted rows (--repair compacts it)"


def _compact(db: Path) -> str:
    """Give the free pages of a sound database back to the disk (``VACUUM``), when worth it."""
    from casebook.index.case_store import CaseStore
    from casebook.index.errors import StoreError

    con = _ro(db)
    try:
        if _free_fraction(con)[1] < COMPACT_AT:
            return ""
    finally:
        con.close()
    try:
        with CaseStore.open(db, create=False, backup=False) as store:
            saved = store.compact(min_free_fraction=COMPACT_AT)
    except (StoreError, OSError) as exc:  # read-only, in use, or no room for VACUUM's copy: unchanged
        log.warning("%s", exc)
        return f"database not compacted: {exc}"
    return f"compacted the database: {saved / 2**20:.1f} MiB given back" if saved else ""


def _check_series(con: sqlite3.Connection, rep: CheckReport) -> None:
    incomplete = con.execute("SELECT count(*) FROM series WHERE deleted = 0 AND state != 'complete'").fetchone()[0]
    empty = con.execute("SELECT count(*) FROM series s WHERE deleted = 0 AND NOT EXISTS "
                        "(SELECT 1 FROM instance i WHERE i.series_id = s.id)").fetchone()[0]
    short = con.execute("SELECT count(*) FROM series s WHERE deleted = 0 AND state = 'complete' AND slice_count > 0 "
                        "AND slice_count != (SELECT count(*) FROM instance i WHERE i.series_id = s.id)").fetchone()[0]
    total = con.execute("SELECT count(*) FROM series WHERE deleted = 0").fetchone()[0]
    bad = incomplete + empty + short
    detail = (f"{total} series complete" if not bad else
              f"{incomplete} incomplete, {empty} without images, {short} with fewer images than slices, of {total}")
    rep.add("series", not bad, detail, repairable=bool(incomplete or short), count=bad)


def _store_labels(con: sqlite3.Connection, model_id: int) -> np.ndarray:
    rows = con.execute("SELECT e.label FROM embedding e JOIN series s ON s.id = e.series_id "
                       "WHERE e.model_id = ? AND s.deleted = 0 ORDER BY e.label", (model_id,)).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def _check_model(con: sqlite3.Connection, settings: Settings, rep: CheckReport, model_id: int, key: str,
                 dim: int) -> None:
    from casebook.index.errors import CaseIndexError
    from casebook.index.vector_index import VectorIndex

    labels = _store_labels(con, model_id)
    missing_emb = con.execute(
        "SELECT count(*) FROM series s WHERE s.deleted = 0 AND s.state = 'complete' AND NOT EXISTS "
        "(SELECT 1 FROM embedding e WHERE e.series_id = s.id AND e.model_id = ? AND e.slice_index = -1)",
        (model_id,)).fetchone()[0]
    rep.add(f"embeddings {key}", not missing_emb,
            f"{missing_emb} series without embeddings" if missing_emb else f"{len(labels)} embeddings, every series",
            repairable=True, count=missing_emb)
    dup = con.execute("SELECT count(*) FROM (SELECT label FROM embedding WHERE model_id = ? GROUP BY label "
                      "HAVING count(*) > 1)", (model_id,)).fetchone()[0]
    if dup:
        rep.add(f"labels {key}", False, f"{dup} index labels used by more than one embedding", count=dup)
    if not len(labels):
        return
    from casebook.index.vector_index import model_file_stem

    if not (settings.index_dir / f"{model_file_stem(key)}.json").exists():
        rep.add(f"index {key}", True, f"not built yet ({len(labels)} embeddings): built from the store at the "
                                      "first search, or by --repair")
        return
    try:
        index = VectorIndex.open(settings.index_dir, key, dim)  # no source: nothing repaired, nothing written
    except (CaseIndexError, OSError) as exc:
        rep.add(f"index {key}", False, f"unreadable: {exc}", repairable=True, count=len(labels))
        return
    try:
        live = np.asarray(index.live_labels, dtype=np.int64)
        in_index = np.isin(labels, live)
        not_indexed = int((~in_index).sum())
        extra = int((~np.isin(live, labels)).sum())
        wrong = 0
        sample = labels[in_index]
        if len(sample) > _VECTOR_SAMPLE:
            sample = np.random.default_rng(0).choice(sample, _VECTOR_SAMPLE, replace=False)
        if len(sample):
            got = index.get_vectors(sample)
            marks = ",".join("?" * len(sample))
            rows = dict(con.execute(f"SELECT label, vector FROM embedding WHERE model_id = ? AND label IN ({marks})",
                                    (model_id, *[int(x) for x in sample])).fetchall())
            for lab, vec in zip(sample, got):
                want = np.frombuffer(rows[int(lab)], dtype="<f4")
                n = float(np.linalg.norm(want)) or 1.0
                if want.shape != vec.shape or float(np.max(np.abs(want / n - vec))) > _VECTOR_TOL:
                    wrong += 1
    finally:
        index.close()
    bad = not_indexed + extra + wrong
    detail = (f"{len(labels)} embeddings indexed exactly once, {len(sample)} vectors compared: equal" if not bad else
              f"{not_indexed} embeddings not in the index, {extra} index entries the store does not have, "
              f"{wrong} of {len(sample)} sampled vectors differ")
    rep.add(f"index {key}", not bad, detail, repairable=True, count=bad)


# ------------------------------------------------------------------------------------- repair


def repair_library(settings: Settings | None = None, *, progress: ProgressCallback | None = None,
                   cancel: SupportsCancel | None = None) -> CheckReport:
    """Check, repair what can be rebuilt, and check again (the returned report is the second
    check's, with ``repaired`` listing what was done)."""
    settings = settings or load_settings()
    progress = progress or no_progress
    first = check_library(settings, progress=progress, cancel=cancel)
    done: list[str] = []
    failed = {f.check for f in first.findings if not f.ok}
    if "database" in failed:
        done.append(_restore_database(settings, progress, cancel))
    else:
        done.append(_compact(settings.database_path))
        done.append(_refresh_backup(settings.database_path))
    if "database" in failed:
        first = check_library(settings, progress=progress, cancel=cancel)
        failed = {f.check for f in first.findings if not f.ok}
    if "series" in failed or (first.files.changed and "files" in failed):
        done.append(_reingest_incomplete(settings, first, progress, cancel))
    if any(c.startswith("embeddings ") for c in failed):
        done.append(_embed_missing(settings, progress, cancel))
    done.extend(_rebuild_indexes(settings, progress, cancel))
    out = check_library(settings, progress=progress, cancel=cancel)
    out.repaired = [d for d in done if d]
    return out


def _restore_database(settings: Settings, progress: ProgressCallback, cancel: SupportsCancel | None) -> str:
    """Move the damaged file aside, put the latest backup in its place, re-ingest the folders it knew."""
    from casebook.index.case_store.migrate import backup as sqlite_backup

    from .ingest import ingest
    from .library import open_store

    db = settings.database_path
    src = latest_backup(db)
    if src is None:
        raise RepairError(f"{db}: damaged and no backup beside it ({db.name}.*.bak): move it away and re-ingest")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = db.with_name(f"{db.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        if p.exists():
            os.replace(p, Path(str(aside) + suffix))
    tmp = db.with_name(db.name + ".restore.tmp")
    try:
        sqlite_backup(src, tmp)  # a consistent copy; the backup itself stays as it is
        os.replace(tmp, db)
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise RepairError(f"{db}: cannot restore {src.name}: {exc}") from exc
    log.warning("restored the library database from its backup %s; the damaged file is %s", src.name, aside.name)
    store = open_store(settings, create=False)  # migrates the backup to the current schema
    try:
        con = _ro(db)
        try:
            paths = [r[0] for r in con.execute("SELECT path FROM source_file")]
        finally:
            con.close()
        roots = _roots(paths)
        existing = [r for r in roots if os.path.exists(r)]
        summary = ingest(existing, store, progress=progress, cancel=cancel) if existing else None
    finally:
        store.close()
    n = summary.series_stored + summary.series_updated if summary is not None else 0
    return (f"database restored from {src.name} (damaged file kept as {aside.name}); re-ingested "
            f"{len(existing)} folder(s): {n} series stored or updated")


def _refresh_backup(db: Path) -> str:
    """Keep a copy of a database that just passed ``integrity_check`` (``<name>.checked.bak``): the
    backup a later repair restores when the file gets damaged."""
    from casebook.index.case_store.migrate import backup as sqlite_backup

    target = db.with_name(f"{db.name}.checked.bak")
    tmp = db.with_name(f"{db.name}.checked.bak.tmp")
    try:
        sqlite_backup(db, tmp)
        os.replace(tmp, target)
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        log.warning("%s: cannot keep a backup of the sound database: %s", target, exc)
        return ""
    return f"kept a backup of the sound database: {target.name}"


def _roots(paths: list[str]) -> list[str]:
    """The fewest folders that hold every path (each file's folder, nested ones dropped)."""
    folders = sorted({os.path.dirname(p) for p in paths})
    out: list[str] = []
    for f in folders:
        if not out or not (f == out[-1] or f.startswith(out[-1].rstrip(os.sep) + os.sep)):
            out.append(f)
    return out


def _reingest_incomplete(settings: Settings, rep: CheckReport, progress: ProgressCallback,
                         cancel: SupportsCancel | None) -> str:
    from .ingest import ingest
    from .library import open_store

    db = settings.database_path
    con = _ro(db)
    try:
        paths = sorted({r[0] for r in con.execute(
            "SELECT i.path FROM instance i JOIN series s ON s.id = i.series_id WHERE s.deleted = 0 AND "
            "(s.state != 'complete' OR s.slice_count != (SELECT count(*) FROM instance j WHERE j.series_id = s.id))")})
    finally:
        con.close()
    paths = sorted(set(paths) | set(rep.files.changed))
    present = [p for p in paths if os.path.exists(p)]
    if not present:
        return ""
    store = open_store(settings, create=False)
    try:
        summary = ingest(present, store, progress=progress, cancel=cancel, rescan=True)
    finally:
        store.close()
    return f"re-read {len(present)} files of incomplete or changed series: {summary.series_stored} stored, " \
           f"{summary.series_updated} updated"


def _embed_missing(settings: Settings, progress: ProgressCallback, cancel: SupportsCancel | None) -> str:
    from .embedding import embed_library

    rep = embed_library(settings, progress=progress, cancel=cancel)
    return f"embedded {rep.done} series with {rep.model}" + (f", {len(rep.failed)} failed" if rep.failed else "")


def _rebuild_indexes(settings: Settings, progress: ProgressCallback, cancel: SupportsCancel | None) -> list[str]:
    """Each model's index caught up from (or rebuilt out of) the stored embeddings."""
    from casebook.index.vector_index import VectorIndex

    from .library import open_store

    out: list[str] = []
    store = open_store(settings, create=False)
    try:
        for rec in store.list_models():
            check_cancel(cancel)
            source = store.embedding_source(rec.id)
            index = VectorIndex.open(settings.index_dir, rec.key, rec.dim, source, progress=progress, cancel=cancel)
            try:
                live = np.asarray(index.live_labels, dtype=np.int64)
                want = np.asarray(source.labels(), dtype=np.int64)
                if index.report.action == "loaded" and np.array_equal(np.sort(live), np.sort(want)):
                    vec_ok = _vectors_agree(index, source, want)
                    if vec_ok:
                        continue
                    index.rebuild(source, progress=progress, cancel=cancel)
                    out.append(f"index {rec.key}: rebuilt from {len(want)} stored embeddings (vectors differed)")
                elif index.report.action != "loaded":
                    out.append(f"index {rec.key}: {index.report.action} ({index.report.reason})")
                else:
                    index.rebuild(source, progress=progress, cancel=cancel)
                    out.append(f"index {rec.key}: rebuilt from {len(want)} stored embeddings")
            finally:
                index.close()
    finally:
        store.close()
    return out


def _vectors_agree(index: object, source: object, labels: np.ndarray) -> bool:
    sample = labels if len(labels) <= _VECTOR_SAMPLE else np.random.default_rng(0).choice(labels, _VECTOR_SAMPLE,
                                                                                         replace=False)
    if not len(sample):
        return True
    got = index.get_vectors(sample)  # type: ignore[attr-defined]
    want = np.asarray(source.vectors(sample), dtype=np.float32)  # type: ignore[attr-defined]
    want = want / np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-12)
    return got.shape == want.shape and float(np.max(np.abs(got - want))) <= _VECTOR_TOL


class RepairError(CasebookError):
    """A repair that cannot be made from what the library keeps."""

