"""Opening the SQLite file safely and running the alembic migrations programmatically.

Why so careful: the case store is the institution's curated library (reports, diagnoses, teaching
points). A file that is not a Casebook store, is damaged, or was written by a newer Casebook is
refused with a clear error and left byte-for-byte untouched; an older store is backed up next to
itself before it is migrated.
"""
from __future__ import annotations

import functools
import logging
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from ..errors import StoreError

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0
QUICK_CHECK_LIMIT = 256 * 1024 * 1024  # full quick_check on open up to this size


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None
    return head


@functools.lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in script_directory().walk_revisions())


def make_engine(path: Path, *, immediate: bool, foreign_keys: bool = True, pooled: bool = True) -> Engine:
    """An engine whose connections use WAL, foreign keys and a busy timeout.

    The DBAPI's own transaction handling is switched off and ``BEGIN`` (``BEGIN IMMEDIATE`` for
    the write engine) is emitted by us, so a writer takes the write lock when it starts instead
    of failing half way when a read lock cannot be upgraded.
    """
    kwargs: dict = {}
    if not pooled:
        kwargs["poolclass"] = NullPool
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def check_file(path: Path) -> None:
    """Refuse anything that is not an SQLite database before SQLite gets a chance to write to it."""
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a Casebook library file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the library file: {exc.strerror or exc}") from exc
    if size == 0:
        return
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path}: not a Casebook library: the file is not an SQLite database "
                         "(it was left unchanged)")


def inspect_file(path: Path) -> tuple[str | None, set[str]]:
    """(alembic revision or None, table names) read through a plain read-only connection."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the library database: {exc}") from exc
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if path.stat().st_size <= QUICK_CHECK_LIMIT:
            res = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
            if res != ["ok"]:
                raise StoreError(f"{path}: the library database is damaged ({'; '.join(res)}); it was left "
                                 "unchanged: restore it from a backup or move it away to start a new library")
        revision = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        return revision, tables
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: the library database is damaged or not a database ({exc}); it was left "
                         "unchanged") from exc
    finally:
        con.close()


def backup(path: Path, target: Path) -> None:
    """Consistent online copy of the database (WAL included) through SQLite's backup API."""
    src = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def prepare(path: Path, *, create: bool = True, migrate: bool = True, make_backup: bool = True) -> str:
    """Check ``path`` and bring its schema to the newest revision; return that revision."""
    existed = path.exists()
    if existed:
        check_file(path)
    elif not create:
        raise StoreError(f"{path}: no Casebook library here (run `casebook ingest` to create one)")
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot create the library folder: {exc.strerror or exc}") from exc
    revision, tables = inspect_file(path) if existed else (None, set())
    user_tables = {t for t in tables if not t.startswith("sqlite_")}
    if revision is None and user_tables - {"alembic_version"}:
        raise StoreError(f"{path}: an SQLite database but not a Casebook library (tables "
                         f"{', '.join(sorted(user_tables)[:5])}...); it was left unchanged")
    head = head_revision()
    if revision is not None and revision not in known_revisions():
        raise StoreError(f"{path}: written by a newer Casebook (schema {revision}; this version knows up to "
                         f"{head}); upgrade Casebook to open it. The file was left unchanged")
    if revision == head:
        return head
    if not migrate:
        raise StoreError(f"{path}: schema {revision or 'empty'} needs migrating to {head}")
    if revision is not None and make_backup:
        target = path.with_name(f"{path.name}.schema-{revision}.bak")
        log.info("backing up the library before migrating %s -> %s: %s", revision, head, target)
        backup(path, target)
    upgrade(path, head)
    return head


def upgrade(path: Path, revision: str = "head") -> None:
    _run(path, lambda cfg: command.upgrade(cfg, revision))


def downgrade(path: Path, revision: str) -> None:
    """Go back to an older schema (admin tool and migration tests)."""
    check_file(path)
    _run(path, lambda cfg: command.downgrade(cfg, revision))


def current_revision(path: Path) -> str | None:
    return inspect_file(path)[0]


def _run(path: Path, action) -> None:  # type: ignore[no-untyped-def]
    # Foreign keys off while tables are rebuilt (batch migrations drop and recreate tables;
    # with foreign keys on, dropping a parent table would cascade-delete its children).
    engine = make_engine(path, immediate=True, foreign_keys=False, pooled=False)
    try:
        with engine.connect() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            action(cfg)
            conn.commit()
            bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            conn.commit()
            if bad:
                raise StoreError(f"{path}: migration left {len(bad)} broken references")
    except StoreError:
        raise
    except Exception as exc:  # alembic / SQLAlchemy / sqlite errors all mean the same to the user
        raise StoreError(f"{path}: cannot migrate the library schema: {exc}") from exc
    finally:
        engine.dispose()
