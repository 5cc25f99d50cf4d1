"""Sessions of the case store: one short session per call, writes serialised, IN lists batched.

Every method opens its own short session, so one store can be shared by the GUI thread, ingest
workers, the encoder and the search service. Writes take SQLite's write lock up front
(``BEGIN IMMEDIATE``) and are serialised in-process too, so two writers never dead-lock on a
lock upgrade. Every part of the store builds on this.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import StoreError
from . import migrate as _migrate

CHUNK = 500  # bound parameters per IN (...) list


def chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Slices of ``seq`` small enough for one ``IN (...)`` list (SQLite bounds its parameters)."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class StoreSessions:
    """The SQLite file, its read and write engines, and the session context managers."""
    def __init__(self, path: str | Path, *, create: bool = True, migrate: bool = True, backup: bool = True) -> None:
        """Open (creating and/or migrating as needed) the store at ``path``; see :meth:`open`."""
        p = Path(path).expanduser().absolute()
        self.revision = _migrate.prepare(p, create=create, migrate=migrate, make_backup=backup)
        self.path = p
        self._write_engine = _migrate.make_engine(path, immediate=True)
        self._read_engine = _migrate.make_engine(path, immediate=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        self._write_lock = threading.RLock()
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, migrate: bool = True,
             backup: bool = True) -> "CaseStore":
        """Open (creating and/or migrating as needed) the store at ``path``.

        Raises :class:`StoreError` naming the file when it is not an SQLite database, is damaged,
        belongs to something else or was written by a newer Casebook; such a file is not modified.
        """
        return cls(path, create=create, migrate=migrate, backup=backup)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write_engine.dispose()
            self._read_engine.dispose()

    def __enter__(self) -> "CaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CaseStore({str(self.path)!r})"

    def free_space(self) -> tuple[int, int]:
        """(bytes in free pages, bytes in the file's pages): what :meth:`compact` would give back.

        Why: SQLite keeps the pages of deleted rows for reuse, so removing a large part of a
        library (an old region version, many studies) leaves the file as large as before."""
        with self._read() as s:
            conn = s.connection()
            size = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
        return free * size, pages * size

    def compact(self, *, min_free_fraction: float = 0.0) -> int:
        """Rewrite the file without its free pages (``VACUUM``) when at least ``min_free_fraction``
        of it is free; the bytes given back (0 when not worth it).

        ``VACUUM`` is all-or-nothing: when it cannot finish (no disk space for the copy it writes,
        another process writing) the file is as it was and :class:`StoreError` says why."""
        free, total = self.free_space()
        if free <= 0 or total <= 0 or free < min_free_fraction * total:
            return 0
        with self._write_lock:
            try:
                raw = self._write_engine.raw_connection()
            except SQLAlchemyError as exc:
                raise StoreError(f"{self.path}: not compacted (cannot connect: {exc}); nothing was changed") from exc
            try:
                cur = raw.cursor()
                cur.execute("VACUUM")
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode the file shrinks at the checkpoint
                cur.close()
            except sqlite3.Error as exc:  # the DBAPI's own errors: SQLAlchemy does not wrap a raw connection's
                raise StoreError(f"{self.path}: not compacted ({type(exc).__name__}: {exc}); "
                                 "nothing was changed") from exc
            finally:
                raw.close()
        return max(total - self.free_space()[1], 0)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        s = self._read_sessions()
        try:
            yield s
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.path}: cannot read the library: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
        finally:
            s.close()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_lock:
            s = self._write_sessions()
            try:
                yield s
                s.commit()
            except IntegrityError as exc:
                s.rollback()
                raise StoreError(f"{self.path}: refused by the library's constraints: {exc.orig}") from exc
            except SQLAlchemyError as exc:
                s.rollback()
                raise StoreError(f"{self.path}: cannot write to the library: {exc.orig if hasattr(exc, 'orig') else exc}") from exc
            except BaseException:
                s.rollback()
                raise
            finally:
                s.close()
