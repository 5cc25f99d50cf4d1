"""Saving: a small delta file plus the sidecar, or a whole new base generation; atomic either way.

A save writes only the delta and the sidecar, so an ingest into a million-vector library writes
kilobytes; when the delta outgrows a tenth of the base, everything is merged into a new base file
while searches go on. Another process may have saved meanwhile: generations never collide.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import hnswlib
import numpy as np

from ..errors import VectorIndexError
from .files import file_crc32, fsync_file, read_hnsw_header, sampled_crc32
from .labels import LabelDigest, member
from .locks import dir_lock
from .mapped import MAPPED_SEARCH_BUILT
from .sidecar import FORMAT_VERSION, IndexMeta, write_sidecar
from .vectors import FileVectors, VectorStore

log = logging.getLogger(__name__)


class SavingMixin:
    """Writing generations, deltas and the sidecar.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    def save(self) -> Path:
        """Persist every change: the delta and the sidecar, or a new base generation.

        Only the sidecar commits a save (temp file, fsync, rename), so a crash at any point
        leaves the previous saved state whole. Searches go on meanwhile; writers wait.
        """
        self._ready.wait()
        if getattr(self, "_unsaved", None):  # a read-only or full disk: this session searches from memory
            log.debug("%s: not saved (%s)", self.stem, self._unsaved)
            return self.directory
        try:
            return self._save_locked()
        except OSError as exc:
            from .sync import disk_problem

            raise VectorIndexError(disk_problem(self.directory, exc)) from exc

    def _save_locked(self) -> Path:
        with self._save_lock, self._dir_lock():
            if self._index is not None:
                with self._lock.read():
                    idx, live, deleted = self._index, self._live, set(self._deleted)
                    meta, store = self._write_generation(idx, live, deleted)
                with self._lock.write():
                    self._install(idx, live, deleted, meta, store)
            elif self._mapped is not None and self._meta is not None:
                if not (self._dirty or self._delta_needs_merge()):
                    return self.directory / self._meta.index_file
                disk = self._disk_meta()
                if disk is not None and disk.index_file != self._meta.index_file:
                    # Another process wrote a new base file since this one was opened (and may
                    # have removed ours): a delta on top of ours would name a file that is gone.
                    # The index is a cache of the case store: the next open catches up from it.
                    log.warning("%s: another Casebook process rewrote the index; this process's %d "
                                "additions are left to the case store (caught up at the next open)",
                                self.stem, self.delta_count)
                    self._dirty = False
                elif self._delta_needs_merge():
                    self._merge_and_write()
                else:
                    with self._lock.read():
                        meta = self._write_delta(disk.delta_seq if disk is not None else 0)
                    with self._lock.write():
                        self._meta, self._dirty = meta, False
                    self._remove_stale(meta)
            else:
                raise self._load_error or VectorIndexError(f"vector index {self.stem} is closed")
            return self.directory / self._meta.index_file

    @contextmanager
    def _dir_lock(self) -> Iterator[None]:
        """This model's cross-process write lock (see :func:`.locks.dir_lock`)."""
        with dir_lock(self.directory / f"{self.stem}.lock"):
            yield

    def _disk_meta(self) -> IndexMeta | None:
        """The sidecar as it is on disk now (another process may have saved since)."""
        try:
            return IndexMeta.from_json(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None

    def _delta_needs_merge(self) -> bool:
        base = self._vectors.file.count if self._vectors.file is not None else 0
        return self.delta_count > max(self.params.delta_min_merge, self.params.delta_fraction * base)

    def _merge_and_write(self) -> None:
        """Fold the delta and the tombstones into a new base generation (caller holds _save_lock).

        hnswlib loads the base file (a few seconds per million vectors) while searches go on
        against the mapped base and the delta; the swap to the new file takes the write lock.
        """
        path = self.directory / self._meta.index_file
        start = time.perf_counter()
        # hnswlib trusts what it loads; a large base was only sample-checked when it was opened.
        if file_crc32(path) != self._meta.crc32:
            raise VectorIndexError(f"{path}: checksum mismatch (corrupt file): not merging into it")
        with self._lock.read():
            base = self._vectors.file
            idx = hnswlib.Index(space=self.SPACE, dim=self.dim)
            try:
                idx.load_index(str(path), max_elements=(base.count if base else 0) + self.delta_count + 16)
            except (RuntimeError, MemoryError, ValueError) as exc:
                raise VectorIndexError(f"{path}: hnswlib cannot load it to merge the delta: {exc}") from exc
            idx.set_ef(max(self.params.ef, 1))
            idx.set_num_threads(self.params.num_threads)
            self._merge_delta_into(idx)
            live = self._live
            dead = np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted))
            # Deletions of vectors that never reached a base file vanish with the delta.
            deleted = set(dead[member(base._sorted, dead)].tolist()) if base is not None else set()
            meta, store = self._write_generation(idx, live, deleted)
        with self._lock.write():
            self._install(idx, live, deleted, meta, store)
        log.info("%s: merged the delta into a new base file in %.1fs", self.stem, time.perf_counter() - start)

    def _write_delta(self, seq_floor: int = 0) -> IndexMeta:
        """Write the delta (if any) as its own file, then the sidecar naming it with the tombstones."""
        meta = self._meta
        seq = max(meta.delta_seq, seq_floor) + 1
        fields: dict = {"delta_file": "", "delta_size": 0, "delta_crc32": 0}
        if self._delta is not None and self._delta.element_count:
            final = self.directory / f"{self.stem}.{self._generation:06d}.d{seq:05d}.hnsw"
            tmp = final.with_name(final.name + ".tmp")
            try:
                self._delta.save_index(str(tmp))
                fsync_file(tmp)
                _check_written(tmp)
                fields = {"delta_file": final.name, "delta_size": tmp.stat().st_size, "delta_crc32": file_crc32(tmp)}
                os.replace(tmp, final)
            except BaseException as exc:
                tmp.unlink(missing_ok=True)
                if isinstance(exc, RuntimeError):  # hnswlib's failed write
                    import errno

                    raise OSError(errno.ENOSPC if not _fits(tmp) else errno.EIO, str(exc)) from exc
                raise
        try:
            return self._commit_delta(meta, fields, seq)
        except BaseException:  # the sidecar was not written: the new delta file is named by nothing
            if fields["delta_file"]:
                (self.directory / fields["delta_file"]).unlink(missing_ok=True)
            raise

    def _commit_delta(self, meta: IndexMeta, fields: dict, seq: int) -> IndexMeta:
        new = dataclasses.replace(
            meta, format=FORMAT_VERSION, count=int(len(self._live)), label_digest=LabelDigest.of(self._live).as_list(),
            deleted=sorted(self._deleted), delta_seq=seq, saved_at=time.time(), ef=self.params.ef,
            recall_estimate=self.recall_estimate, **fields)
        self._write_meta(new)  # the commit point
        log.debug("%s: saved a delta of %d, %d tombstones", self.stem, self.delta_count, len(self._deleted))
        return new

    def _install(self, idx: hnswlib.Index, live: np.ndarray, deleted: set[int], meta: IndexMeta,
                 store: "VectorStore") -> None:
        """Make a just-written generation current (caller holds the write lock): searched in
        place through a map where the _hnswmap module exists, else from ``idx`` in memory."""
        mapped = None
        if MAPPED_SEARCH_BUILT and self.use_mapped:
            try:
                mapped = self._map_graph(self.directory / meta.index_file)
            except VectorIndexError as exc:  # pragma: no cover - just written and checked
                log.warning("%s; keeping the graph in memory", exc)
        self._index, self._mapped, self._delta, self._deny = (None if mapped is not None else idx), mapped, None, None
        self._live, self._deleted = live, set(deleted)
        self._vectors, self._meta = store, meta
        self._exact_cache = None
        self._generation = int(meta.index_file.rsplit(".", 2)[-2])
        self._dirty = False
        self._remove_stale(meta)

    def _remove_stale(self, meta: IndexMeta) -> None:
        keep = {meta.index_file, meta.labels_file, meta.delta_file, self.meta_path.name}
        for stale in self.directory.glob(f"{self.stem}.*"):
            if stale.name not in keep and (".hnsw" in stale.name or ".labels.npy" in stale.name):
                try:
                    stale.unlink()
                except OSError as exc:  # pragma: no cover - e.g. still mapped on Windows
                    log.warning("%s: cannot remove old index generation: %s", stale, exc)

    def _write_generation(self, idx: hnswlib.Index, live: np.ndarray,
                          deleted: set[int]) -> tuple[IndexMeta, "VectorStore"]:
        """Write ``idx`` as the next generation: temp file, fsync, rename, then the sidecar."""
        disk = self._disk_meta()
        disk_gen = int(disk.index_file.rsplit(".", 2)[-2]) if disk is not None and disk.index_file else 0
        gen = max(self._generation, disk_gen) + 1  # another process may have written generations too
        final = self._index_path(gen)
        tmp = final.with_name(final.name + ".tmp")
        labels_tmp = final.with_suffix(".labels.npy").with_name(final.with_suffix(".labels.npy").name + ".tmp")
        committed = False
        try:
            meta, store = self._write_generation_files(idx, live, deleted, gen, final, tmp, labels_tmp)
            committed = True
            return meta, store
        finally:
            if not committed:  # a full disk or a crash of the write: leave no partial file behind
                for p in (tmp, labels_tmp, final, final.with_suffix(".labels.npy"),
                          self.meta_path.with_name(self.meta_path.name + ".tmp")):
                    try:
                        p.unlink()
                    except OSError:
                        pass

    def _write_generation_files(self, idx: hnswlib.Index, live: np.ndarray, deleted: set[int], gen: int,
                                final: Path, tmp: Path, labels_tmp: Path) -> tuple[IndexMeta, "VectorStore"]:
        try:
            idx.save_index(str(tmp))
        except RuntimeError as exc:  # hnswlib reports a failed write (a full disk) as RuntimeError
            import errno

            raise OSError(errno.ENOSPC if "space" in str(exc).lower() or not _fits(tmp) else errno.EIO,
                          str(exc)) from exc
        fsync_file(tmp)
        _check_written(tmp)
        size = tmp.stat().st_size
        meta = IndexMeta(
            format=FORMAT_VERSION, model_key=self.model_key, dim=self.dim, space=self.SPACE,
            M=self.params.M, ef_construction=self.params.ef_construction, ef=self.params.ef,
            count=int(len(live)), element_count=int(idx.element_count),
            max_elements=int(idx.get_max_elements()), label_digest=LabelDigest.of(live).as_list(),
            deleted=sorted(deleted), index_file=final.name, file_size=size, crc32=file_crc32(tmp),
            sample_crc32=sampled_crc32(tmp, size), saved_at=time.time(),
            recall_estimate=self.recall_estimate,
        )
        os.replace(tmp, final)
        fv = FileVectors(final, read_hnsw_header(final))
        labels_path = final.with_suffix(".labels.npy")
        with open(labels_tmp, "wb") as fh:
            np.save(fh, fv.labels.astype("<i8"))
            fh.flush()
            os.fsync(fh.fileno())
        meta.labels_file, meta.labels_crc32 = labels_path.name, file_crc32(labels_tmp)
        os.replace(labels_tmp, labels_path)
        self._write_meta(meta)  # the commit point
        store = VectorStore(self.dim, fv)
        log.debug("%s: saved generation %d, %d live", self.stem, gen, meta.count)
        return meta, store

    def _write_meta(self, meta: IndexMeta) -> None:
        try:
            write_sidecar(self.meta_path, meta)
        except BaseException:
            self.meta_path.with_name(self.meta_path.name + ".tmp").unlink(missing_ok=True)
            raise


def _check_written(tmp: Path) -> None:
    """hnswlib writes through a C++ stream that does not report a failed write: a file shorter
    than its own header says is a write that ran out of room (or failed otherwise)."""
    import errno

    try:
        read_hnsw_header(tmp)
    except VectorIndexError as exc:
        raise OSError(errno.ENOSPC if not _fits(tmp) else errno.EIO, f"incomplete write of {tmp.name}: {exc}") from exc


def _fits(path: Path, need: int = 1 << 20) -> bool:
    """Is there still room on the disk of ``path`` (a write failed: was it for lack of space)?"""
    import shutil

    try:
        return shutil.disk_usage(path.parent).free >= need
    except OSError:
        return True
