"""Region (finding) index: detect and store the candidate findings of every series, and open the
per-family region vector indexes.

Why here: detection and description are pure numpy (``casebook.inference.regions``), storage is
the case store's (``casebook.index.case_store.regions``); this module joins them with the stored
pixels, like :mod:`.embedding` does for encoder vectors. Resumable the same way: a series whose
region set is stored is done (also when it has no region), so an interrupted run continues.
"""
from __future__ import annotations

import logging
import os
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from casebook.index.case_store import CaseStore
from casebook.index.case_store.regions import DescriptorRecord, RegionRow, RegionStore
from casebook.index.vector_index import VectorIndex
from casebook.inference.preprocess import ImageInput
from casebook.inference.regions import REGION_CARD, find_regions, modality_family

from ..errors import CasebookError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from ..dicom.volume import Volume
from .library import load_stored_volume

log = logging.getLogger(__name__)


@dataclass
class RegionEmbedReport:
    descriptor: str
    done: int = 0
    regions: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    remaining: int = 0
    unscaled: int = 0  # series without pixel spacing: no mm scale, so no findings (stored as none)
    indexed: dict[str, int] = field(default_factory=dict)  # family -> regions in its index afterwards
    problem: str = ""  # why box search will not find the new findings yet ("" when it will)

    def text(self) -> str:
        if self.problem:
            return f"findings not indexed: {self.problem}"
        fams = ", ".join(f"{f} {n}" for f, n in sorted(self.indexed.items())) or "none"
        out = f"findings of {self.done} series ({self.regions} regions); region index {fams}"
        if self.unscaled:
            out += f"; {self.unscaled} without pixel spacing (no findings: no mm scale)"
        if self.failed:
            out += f"; {len(self.failed)} series failed"
        if self.remaining:
            out += f"; {self.remaining} series still to do (`casebook embed`)"
        return out


def register(store: CaseStore) -> tuple[RegionStore, DescriptorRecord]:
    """The store's region tables and the shipped descriptor's record (registered if new)."""
    regions = RegionStore(store)
    return regions, regions.register_descriptor(REGION_CARD.name, REGION_CARD.version, REGION_CARD.dim)


def rows_of(found: list) -> list[RegionRow]:
    """Detector regions as storable rows."""
    return [RegionRow(r.box, r.centre, r.centre_lps, r.diameter_mm, r.volume_ml, r.polarity, r.contrast, r.saliency,
                      r.family) for r in found]


def describe_volume(vol: Volume, modality: str = "", *, cancel: SupportsCancel | None = None
                    ) -> tuple[str, list[RegionRow], np.ndarray]:
    """(modality family, region rows, descriptors) of one volume's findings, ready for
    ``RegionStore.put_regions``; the same code runs in-process and on a distributed worker."""
    image = ImageInput.from_volume(vol)
    # findings are described at a physical scale (mm): an image whose file gives no pixel spacing
    # (a scanned page, a dose-report screen, a secondary capture) has none, and its "regions"
    # would be text and icons matched against lesions
    found = find_regions(image, cancel=cancel) if vol.geometry.pixel_spacing_known else []
    vecs = [r.vector for r in found]
    return (modality_family(image.modality or modality), rows_of(found),
            np.vstack(vecs) if vecs else np.empty((0, REGION_CARD.dim), np.float32))


#: environment override of the number of findings worker processes (0 or 1: in this process)
ENV_WORKERS = "CASEBOOK_FINDINGS_WORKERS"
MAX_DEFAULT_WORKERS = 8  # memory: each worker holds one volume and its filtered copies


def findings_workers(requested: int = 0) -> int:
    """Processes the findings step uses: ``requested`` when > 0, else ``$CASEBOOK_FINDINGS_WORKERS``,
    else one per usable core (at most 8). Why processes: detection is numpy and single-series
    SimpleITK calls on small crops, which threads within one series do not keep busy."""
    if requested > 0:
        return requested
    env = os.environ.get(ENV_WORKERS, "").strip()
    if env:
        try:
            return max(int(env), 1)
        except ValueError:
            log.warning("%s=%r is not a number: one findings worker per core", ENV_WORKERS, env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def embed_regions(store: CaseStore, *, progress: ProgressCallback | None = None,
                  cancel: SupportsCancel | None = None, limit: int | None = None,
                  workers: int = 0) -> RegionEmbedReport:
    """Detect, describe and store the regions of every series that has none yet.

    Series are computed in ``workers`` processes (0: :func:`findings_workers`) and written here,
    in the same order and with the same values as one process writes them: this process stays
    the only writer to the store. A cancel stops the workers and keeps what was written."""
    regions, desc = register(store)
    todo = regions.series_missing_regions(desc.id)
    if limit is not None:
        todo = todo[:limit]
    rep = RegionEmbedReport(desc.key)
    n_workers = min(findings_workers(workers), len(todo))
    results = (_parallel_results(store, todo, n_workers, cancel) if n_workers > 1
               else _serial_results(store, todo, cancel))
    with closing(results):
        for n, (sid, body_part, out) in enumerate(results):
            if isinstance(out, str):
                log.warning("series %d: no regions: %s", sid, out)
                rep.failed.append((sid, out))
                if progress:
                    progress(n + 1, len(todo), f"regions of series {sid}")
                continue
            try:
                family, rows, vecs, scaled = out
                if not scaled:
                    rep.unscaled += 1
                    log.info("series %d: no pixel spacing, so no findings are stored for it", sid)
                regions.put_regions(desc.id, sid, rows, vecs, family=family, body_part=body_part)
                rep.done += 1
                rep.regions += len(rows)
            except (CasebookError, OSError, ValueError) as exc:
                if cancel is not None and cancel.is_set():
                    raise
                log.warning("series %d: no regions: %s", sid, exc)
                rep.failed.append((sid, str(exc)))
            if progress:
                progress(n + 1, len(todo), f"regions of series {sid}")
    rep.remaining = len(regions.series_missing_regions(desc.id))
    return rep


# (family, rows, vectors, pixel spacing known), or why the series has no findings
_Outcome = tuple[str, list[RegionRow], np.ndarray, bool] | str


def _serial_results(store: CaseStore, todo: list[int], cancel: SupportsCancel | None
                    ) -> Iterator[tuple[int, str, _Outcome]]:
    """(series id, body part, outcome) of each series of ``todo`` in order, computed here."""
    for sid in todo:
        check_cancel(cancel)
        body = ""
        try:
            se = store.get_series(sid)
            body = se.body_part
            vol = load_stored_volume(store, sid, cancel=cancel)
            family, rows, vecs = describe_volume(vol, se.modality, cancel=cancel)
            out: _Outcome = (family, rows, vecs, bool(vol.geometry.pixel_spacing_known))
        except (CasebookError, OSError, ValueError) as exc:
            if cancel is not None and cancel.is_set():
                raise
            out = str(exc)
        yield sid, body, out


def _parallel_results(store: CaseStore, todo: list[int], n_workers: int, cancel: SupportsCancel | None
                      ) -> Iterator[tuple[int, str, _Outcome]]:
    """As :func:`_serial_results`, computed in ``n_workers`` spawned processes that read the
    series' files themselves (nothing volume-sized crosses a pipe), yielded in ``todo`` order.
    Up to two series per worker are being computed at any time; finished ones wait (small) until
    their turn, so a long series at the front never leaves the other workers idle. A worker that
    dies (out of memory) ends the pool: the series not yet yielded are computed here instead."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from ..dicom import limits as dicom_limits

    ctx = multiprocessing.get_context("spawn")  # never fork: the caller may hold threads (GUI, onnxruntime)
    logs = ctx.Queue()
    forwarder = _LogForwarder(logs)
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(dicom_limits.current(), logs,
                                         logging.getLogger("casebook").getEffectiveLevel()))
    window = 2 * n_workers
    futures: dict[int, Any] = {}
    queue = list(todo)
    finished = False
    broken = -1  # position in todo from which the series are computed here
    try:
        for pos, sid in enumerate(todo):
            while True:
                check_cancel(cancel)
                running = sum(1 for f in futures.values() if not f.done())
                while queue and running < window:
                    nxt = queue.pop(0)
                    futures[nxt] = pool.submit(_describe_series_task, _series_job(store, nxt))
                    running += 1
                done, _ = wait([futures[sid]], timeout=0.2)
                if done:
                    break
            try:
                out = futures.pop(sid).result()
            except BrokenProcessPool as exc:
                log.warning("a findings worker died (%s): the other series are computed in this process", exc)
                broken = pos
                break
            body = store.get_series(sid).body_part
            yield sid, body, out
        if broken >= 0:
            _stop(pool)
            yield from _serial_results(store, todo[broken:], cancel)
        finished = True
    finally:
        if not finished:  # cancelled or failed: stop the workers now; nothing they hold is written
            _stop(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        forwarder.stop()
        logs.close()


def _series_job(store: CaseStore, sid: int) -> dict[str, Any]:
    se = store.get_series(sid)
    return {"sid": sid, "key": se.key, "series_uid": se.series_uid, "modality": se.modality,
            "files": sorted({f.path for f in store.series_files(sid)})}


def _stop(pool: Any) -> None:
    """Terminate a pool's worker processes at once (a series takes seconds; a cancel must not wait)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public kill before 3.14
        if proc.is_alive():
            proc.terminate()


class _LogForwarder:
    """Re-emits the workers' log records through this process's loggers (their handlers, their
    levels), so a worker's warning reaches the log file rather than a stray stderr."""

    def __init__(self, queue: Any) -> None:
        import threading

        self._queue = queue
        self._thread = threading.Thread(target=self._run, name="findings-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                record = self._queue.get()
            except (EOFError, OSError):
                return
            if record is None:
                return
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)

    def stop(self) -> None:
        try:
            self._queue.put(None)
        except (OSError, ValueError):
            return
        self._thread.join(timeout=5)


def _worker_init(limits: Any, logs: Any, level: int) -> None:
    """A findings worker: the parent's DICOM limits, one SimpleITK thread (the workers are the
    parallelism), no decode pool of its own, logs sent to the parent."""
    import logging.handlers

    import SimpleITK as sitk

    from ..dicom import limits as dicom_limits

    os.environ["CASEBOOK_DECODE_PROCESSES"] = "0"
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    dicom_limits.configure(limits)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logs)]
    root.setLevel(level)


def _describe_series_task(job: dict[str, Any]) -> _Outcome:
    """On a worker: load one stored series from its files and describe its findings."""
    from .library import stack_from_files
    from ..dicom.load import load_volume

    try:
        vol = load_volume(stack_from_files(job["sid"], job["key"], job["series_uid"], job["files"]))
        family, rows, vecs = describe_volume(vol, job["modality"])
        return family, rows, vecs, bool(vol.geometry.pixel_spacing_known)
    except (CasebookError, OSError, ValueError) as exc:  # the parent logs and lists it, as in-process
        return str(exc)


def embed_and_index_regions(store: CaseStore, index_dir: Path, *, progress: ProgressCallback | None = None,
                            cancel: SupportsCancel | None = None, limit: int | None = None,
                            workers: int = 0) -> RegionEmbedReport:
    """Detect the findings of every series that has none yet, then bring each modality family's
    region index up to date, so the next box query opens it at once (embed, demo and import)."""
    rep = embed_regions(store, progress=progress, cancel=cancel, limit=limit, workers=workers)
    index_regions(store, index_dir, rep, cancel=cancel)
    return rep


def index_regions(store: CaseStore, index_dir: Path, rep: RegionEmbedReport, *,
                  cancel: SupportsCancel | None = None) -> None:
    """Bring every family's region index up to date with the store, noting sizes (or why not) in ``rep``."""
    regions, desc = register(store)
    for family in sorted(regions.families(desc.id)):
        check_cancel(cancel)
        try:
            idx = open_region_index(index_dir, regions, desc, family, cancel=cancel)
            try:
                rep.indexed[family] = len(idx)
            finally:
                idx.close()
        except (CasebookError, OSError) as exc:  # the next box search catches the index up
            log.warning("region index %s not updated now: %s", family, type(exc).__name__)
            rep.problem = f"the {family} region index was not updated ({exc}); the next box search catches it up"


def open_region_index(index_dir: Path, regions: RegionStore, desc: DescriptorRecord, family: str, *,
                      progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> VectorIndex:
    """The on-disk vector index of one family's regions, checked and caught up against the store."""
    return VectorIndex.open(index_dir, desc.index_key(family), desc.dim, regions.source(desc.id, family),
                            progress=progress, cancel=cancel)


__all__ = ["ENV_WORKERS", "RegionEmbedReport", "describe_volume", "embed_and_index_regions", "embed_regions", "findings_workers", "index_regions", "open_region_index", "register", "rows_of"]
