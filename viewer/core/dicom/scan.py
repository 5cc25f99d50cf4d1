"""Header scanning: find DICOM files, read headers only, group into displayable stacks.

Public API (other layers code against it):

* :func:`scan` walks files, folders and DICOMDIRs, reads headers in parallel and groups them into
  :class:`SeriesStack` objects, splitting series that mix orientations, echoes, acquisitions,
  image sizes or localizers (:mod:`.grouping`; one file's header: :mod:`.headers`).
* :func:`load_volume` (from :mod:`.load`) decodes one stack into a :class:`~.volume.Volume`.
* :func:`load_series` is the convenience "give me the main volume in this folder".
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import DicomReadError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from .grouping import group_records
from .headers import _DicomDirRefs, _FileRecord, _read_file, resolve_in_parents
from .load import load_volume
from .stack import FileProblem, InstanceHeader, ScanResult, SeriesStack, main_stack
from .volume import Volume
from .walk import walk_files

__all__ = ["FileProblem", "HeaderReader", "InstanceHeader", "ScanResult", "SeriesStack", "load_series", "load_volume",
           "read_headers", "resolve_in_parents", "scan"]

log = logging.getLogger(__name__)


def _walk(paths: Iterable[str | Path], problems: list[FileProblem]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(walk_files(p))
        else:
            problems.append(FileProblem(p, "no such file or folder"))
    return files


#: ``reader(paths)`` -> iterator over the header of each path (any order): how :func:`scan` reads
#: a batch of files. The default is a thread pool here; ``casebook ingest --ray`` passes one that
#: reads on a Ray cluster (:mod:`casebook.viewer.core.services.distributed`).
HeaderReader = Callable[[list[Path]], Iterator[Any]]


def read_headers(paths: Iterable[str | Path]) -> list[Any]:
    """The header of each file (a record, a DICOMDIR's references or a :class:`FileProblem`), in
    order: one worker's share of a distributed scan. Never raises for a bad file."""
    return [_read_file(Path(p)) for p in paths]


def _pool_reader(pool: ThreadPoolExecutor) -> HeaderReader:
    def read(batch: list[Path]) -> Iterator[Any]:
        futures = [pool.submit(_read_file, p) for p in batch]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:  # a cancel (or any error) drops what has not started
            for f in futures:
                f.cancel()
    return read


def scan(
    paths: Iterable[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: SupportsCancel | None = None,
    workers: int = 0,
    reader: HeaderReader | None = None,
) -> ScanResult:
    """Read the headers of every DICOM file under ``paths`` and group them into stacks.

    Files are read in a thread pool (or by ``reader``, see :data:`HeaderReader`), headers only
    (pixel data is skipped, its offset kept so that :func:`load_volume` can read it directly).
    DICOMDIRs add the files they reference. Files that are not DICOM, or that cannot be parsed,
    become :class:`FileProblem` entries; nothing raises except :class:`Cancelled`.
    """
    problems: list[FileProblem] = []
    queue = _walk([paths] if isinstance(paths, (str, Path)) else paths, problems)
    seen: set[str] = set()
    records: list[_FileRecord] = []
    nworkers = workers if workers > 0 else (os.cpu_count() or 2)
    total = len(queue)
    done = 0
    files_seen = 0
    with ExitStack() as stack:
        if reader is None:
            reader = _pool_reader(stack.enter_context(
                ThreadPoolExecutor(max_workers=nworkers, thread_name_prefix="dicom-scan")))
        while queue:
            batch: list[Path] = []
            for p in queue:
                key = os.path.normcase(os.path.abspath(p))
                if key in seen:
                    continue
                seen.add(key)
                batch.append(p)
            queue = []
            files_seen += len(batch)
            results = reader(batch)
            try:
                for res in results:
                    check_cancel(cancel)
                    done += 1
                    if isinstance(res, FileProblem):
                        problems.append(res)
                    elif isinstance(res, _DicomDirRefs):
                        if res.missing:
                            shown = ", ".join(res.missing[:3]) + (", ..." if len(res.missing) > 3 else "")
                            problems.append(FileProblem(
                                res.path, f"DICOMDIR references {len(res.missing)} missing file(s): {shown}"))
                        new = [r for r in res.referenced
                               if os.path.normcase(os.path.abspath(r)) not in seen]
                        queue.extend(new)
                        total += len(new)
                    else:
                        records.append(res)
                    if progress is not None:
                        progress(done, total, "reading DICOM headers")
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()
    stacks, non_image = group_records(records, problems)
    log.info("scanned %d files: %d stacks, %d non-image series, %d skipped",
             files_seen, len(stacks), len(non_image), len(problems))
    return ScanResult(stacks=stacks, problems=sorted(problems, key=lambda p: str(p.path)),
                      files_seen=files_seen, non_image=non_image)



def load_series(path_or_paths: str | Path | Iterable[str | Path]) -> Volume:
    """Scan ``path_or_paths`` and load its main stack (:func:`~.stack.main_stack`)."""
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    res = scan(paths)
    best = main_stack(res.stacks)
    if best is None:
        where = ", ".join(str(p) for p in paths)
        detail = "; ".join(f"{p.path.name}: {p.reason}" for p in res.problems[:3])
        raise DicomReadError(where, "no loadable DICOM image series found" + (f" ({detail})" if detail else ""))
    return load_volume(best)
