"""Ingest on a Ray cluster: header reading, decoding and encoding spread over workers, one writer.

Why: a hospital archive holds millions of series, which one workstation cannot read, decode and
embed in reasonable time. ``casebook ingest --ray [ADDRESS]`` hands the work that scales to Ray
workers (a local Ray with ``--ray-workers`` processes when no address is given; GPU workers where
the cluster has GPUs) while this process stays the ONLY writer to the case store and the vector
indexes, so SQLite never sees concurrent writers and every guarantee of the plain ingest holds:

* the ingest itself is :func:`.ingest.ingest` with a header reader that runs on the workers
  (:func:`casebook.viewer.core.dicom.scan.read_headers`); grouping into stacks and storing, one
  transaction per series, stay here;
* each series still lacking vectors or findings is then loaded ONCE on a worker, which computes
  its encoder vectors (:func:`.embedding.encode_volume`) and its findings
  (:func:`.regions.describe_volume`) and sends them back; this process writes them, one series
  at a time, and brings the indexes up to date (:func:`.import_pipeline.update_series_index`,
  :func:`.regions.index_regions`);
* resumable as the plain commands are: the work lists are "files not stored" and "series
  without vectors / findings", so a restarted run skips what is stored; a cancel stops between
  series and drops the work in flight, leaving nothing half-stored.

Workers read the DICOM files and the model from the same paths as this process (one machine, or
a cluster over a shared file system), and need Casebook installed. Ray is an optional extra
(``pip install 'casebook[ray]'``); this is the one module that imports it.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from casebook.index.case_store import CaseStore

from ..config import LimitSettings, Settings
from ..errors import Cancelled, CasebookError
from ..progress import ProgressCallback, SupportsCancel, no_progress
from .import_pipeline import PHASE_EMBED, IndexReport, update_series_index
from .ingest import IngestSummary, ingest

log = logging.getLogger(__name__)

#: object store of a local Ray: enough for a few volumes in flight, small enough for a laptop
LOCAL_OBJECT_STORE_BYTES = 300 * 1024 * 1024


class RayUnavailable(CasebookError):
    """``--ray`` was asked for but Ray is not installed, or the cluster cannot be reached."""


@dataclass
class RayIngestReport:
    """What ``casebook ingest --ray`` did: the plain ingest summary, then encoding and indexing."""

    ingest: IngestSummary
    index: IndexReport
    cluster: str = ""  # "local Ray, 2 CPU workers" / "ray://host:10001, 8 GPU workers"
    workers: int = 0
    gpus: int = 0
    encode_s: float = 0.0
    failed: list[tuple[int, str]] = field(default_factory=list)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("`casebook ingest --ray` needs Ray, an optional extra: pip install 'casebook[ray]' "
                             f"(or run without --ray to ingest in this process) [{exc}]") from None
    return ray


def start_local_ray(workers: int = 0, *, object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES) -> None:
    """Start a local Ray of ``workers`` processes (default: one per core) sized for a workstation:
    no dashboard, a small object store, workers at normal priority.

    Ray starts its workers at nice 15, meant for background jobs; here they ARE the ingest, and
    niced they starve behind any other program on the machine (measured: findings 10x slower on
    a busy 2-core box), so they run at the driver's priority unless ``RAY_worker_niceness`` says.
    """
    ray = _ray()
    n = workers if workers > 0 else (os.cpu_count() or 2)
    saved = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = saved if saved is not None else "0"
    try:
        ray.init(num_cpus=n, include_dashboard=False, object_store_memory=object_store_bytes,
                 log_to_driver=False, configure_logging=False, namespace="casebook")
    finally:
        if saved is None:
            del os.environ["RAY_worker_niceness"]


def _drop(refs: dict) -> None:
    """Forget tasks still in flight: they finish on their workers and their results are freed
    unread (nothing of them is written). Why not ``ray.cancel(force=True)``: on Ray 2.60 a forced
    cancel that races a task finishing aborts the *driver* (``task_manager.cc`` "Tried to complete
    task that was not pending", exit 1), i.e. it would kill the reading window or the CLI."""
    refs.clear()


class RayCluster:
    """A connection to Ray for one run: a local Ray started (and shut down) here when
    ``address`` is None, else the cluster at ``address`` (``auto``, ``host:port``, ``ray://…``)."""

    def __init__(self, address: str | None = None, workers: int = 0, *,
                 object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES) -> None:
        self.ray = _ray()
        self.address = address
        self._started = False
        if self.ray.is_initialized():  # a caller's own Ray session: use it, leave it running
            pass
        elif address is None:
            start_local_ray(workers, object_store_bytes=object_store_bytes)
            self._started = True
        else:
            try:
                self.ray.init(address=address, log_to_driver=False, configure_logging=False, namespace="casebook")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            self._started = True
        res = self.ray.cluster_resources()
        self.cpus = int(res.get("CPU", 0))
        self.gpus = int(res.get("GPU", 0))
        self.workers = self.gpus or max(1, self.cpus)
        where = "local Ray" if address is None else f"Ray at {address}"
        self.description = f"{where}, {self.workers} {'GPU' if self.gpus else 'CPU'} workers"
        log.info("ray: %s (%d CPUs, %d GPUs)", self.description, self.cpus, self.gpus)

    @staticmethod
    def check_installed() -> None:
        """Raise :class:`RayUnavailable` (naming the extra) when Ray is not installed."""
        _ray()

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def __enter__(self) -> "RayCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ header reading
    def header_reader(self, limits: LimitSettings, chunk: int = 0) -> Any:
        """A :data:`~casebook.viewer.core.dicom.scan.HeaderReader` that reads on the workers,
        ``chunk`` files per task (default: about four tasks per worker, 16-256 files each)."""
        remote = self.ray.remote(num_cpus=1, max_retries=0)(_read_headers_task)

        def read(batch: list[Path]) -> Iterator[Any]:
            size = chunk or min(256, max(16, -(-len(batch) // (4 * self.workers))))
            parts = [batch[i:i + size] for i in range(0, len(batch), size)]
            refs = {remote.remote([str(p) for p in part], limits): part for part in parts}
            try:
                pending = list(refs)
                while pending:
                    ready, pending = self.ray.wait(pending, num_returns=1)
                    for ref in ready:
                        try:
                            yield from self.ray.get(ref)
                        except self.ray.exceptions.RayError as exc:  # a worker died on one of these files
                            part = refs[ref]
                            if len(part) == 1:
                                yield from _problems(part, f"reading its header crashed a worker ({type(exc).__name__})")
                                continue
                            for p in part:  # again one file per task: only the file that crashes is reported
                                one = remote.remote([str(p)], limits)
                                refs[one] = [p]
                                pending.append(one)
            finally:  # cancelled or failed: what is still running is dropped (see _drop)
                _drop(refs)
        return read

    # ------------------------------------------------------------------ encoding
    def encode(self, store: CaseStore, settings: Settings, *, regions: bool = True,
               progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> IndexReport:
        """Vectors and findings of every series lacking them, computed on the workers and
        written here; then the indexes are brought up to date. See the module docstring."""
        from .embedding import open_encoder
        from .regions import RegionEmbedReport, index_regions, register

        progress = progress or no_progress
        rep = IndexReport()
        try:
            encoder = open_encoder(settings)  # registers the model here; workers open the same file
        except (CasebookError, ImportError, OSError, ValueError) as exc:
            log.warning("ray ingest: no encoder, series stored without vectors: %s", type(exc).__name__)
            rep.problem = f"the model {settings.model!r} cannot be loaded ({exc}); run `casebook embed` once it can"
            encoder = None
        model = None
        todo: dict[int, str] = {}
        if encoder is not None:
            prov = encoder.provenance
            model = store.register_model(prov.name, prov.version, prov.sha256, encoder.embedding_size,
                                         encoder.card.input_kind)
            todo = dict(store.series_needing_embeddings(model.id))
            rep.model, rep.provider = encoder.card.ident, f"{self.description}"
        region_rep = None
        want_regions: set[int] = set()
        if regions:
            rstore, desc = register(store)
            region_rep = RegionEmbedReport(desc.key)
            want_regions = set(rstore.series_missing_regions(desc.id))
        series = sorted(set(todo) | want_regions)
        owner = store.claim_owner()
        device = "cuda" if self.gpus else "cpu"
        opts: dict[str, Any] = {"num_gpus": 1} if self.gpus else {"num_cpus": 1}
        remote = self.ray.remote(max_retries=0, **opts)(_encode_series_task)
        model_path = str(encoder.path) if encoder is not None else ""
        window = 2 * self.workers + 1  # series in flight: keeps workers busy, bounds memory and cancel
        inflight: dict[Any, tuple[int, bool, dict]] = {}
        done = 0
        progress(0, len(series), PHASE_EMBED)

        def submit(sid: int) -> None:
            # a series claimed by a concurrent `casebook embed` is left to it (its findings are still done here)
            embed = sid in todo and model is not None and store.claim_series(model.id, sid, owner)
            info = store.get_series(sid)
            files = sorted({f.path for f in store.series_files(sid)})
            state = store.embedding_state(model.id, sid) if embed else None
            job = {"sid": sid, "key": info.key, "series_uid": info.series_uid, "files": files,
                   "modality": info.modality, "embed": embed, "regions": sid in want_regions,
                   "why": todo.get(sid, ""), "old_digest": state[1] if state else None,
                   "signature": store.series_file_signatures([sid]).get(sid, "") if embed else "",
                   "body_part": info.body_part}
            ref = remote.remote(job, model_path, device, settings.limits)
            inflight[ref] = (sid, embed, job)

        queue = list(series)
        try:
            while queue or inflight:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("ingest cancelled while encoding")
                while queue and len(inflight) < window:
                    submit(queue.pop(0))
                ready, _ = self.ray.wait(list(inflight), num_returns=1, timeout=0.5)
                for ref in ready:
                    sid, embed, job = inflight.pop(ref)
                    try:
                        try:
                            out = self.ray.get(ref)
                        except self.ray.exceptions.RayError as exc:
                            out = {"error": f"worker failed ({type(exc).__name__})"}
                        self._write(store, model, job, out, rep, region_rep)
                    finally:
                        if embed:
                            store.release_claim(model.id, sid, owner)
                    done += 1
                    progress(done, len(series), PHASE_EMBED)
        finally:  # cancelled or failed: drop the work in flight (nothing of it was written)
            for ref, (sid, embed, _job) in inflight.items():
                if embed:
                    store.release_claim(model.id, sid, owner)
            _drop(inflight)
        if model is not None:
            rep.remaining = len(store.series_needing_embeddings(model.id))
            update_series_index(store, settings, encoder.provenance, rep, progress=progress, cancel=cancel)
        if region_rep is not None:
            rstore, desc = register(store)
            region_rep.remaining = len(rstore.series_missing_regions(desc.id))
            index_regions(store, settings.index_dir, region_rep, cancel=cancel)
            rep.regions = region_rep
            rep.failed += [(sid, f"findings: {why}") for sid, why in region_rep.failed]
        return rep

    @staticmethod
    def _write(store: CaseStore, model: Any, job: dict, out: dict, rep: IndexReport, region_rep: Any) -> None:
        """Store one series' results (this process is the only writer)."""
        from .regions import register

        sid = job["sid"]
        log.debug("series %d on worker %s: load %.2fs, encode %.2fs, findings %.2fs", sid, out.get("pid"),
                  out.get("load_s", 0), out.get("embed_s", 0), out.get("regions_s", 0))
        if "error" in out:
            log.warning("series %d: cannot encode: %s", sid, out["error"])
            if job["embed"]:
                rep.failed.append((sid, out["error"]))
            if job["regions"] and region_rep is not None:
                region_rep.failed.append((sid, out["error"]))
            return
        if job["embed"]:
            if out.get("unchanged"):
                store.set_embedding_state(model.id, sid, job["signature"], out["digest"])
            else:
                store.put_embeddings(model.id, sid, out["idx"], out["vecs"], replace_series=True,
                                     file_signature=job["signature"], content_hash=out["digest"])
                rep.embedded += 1
        if job["regions"] and region_rep is not None:
            rstore, desc = register(store)
            rstore.put_regions(desc.id, sid, out["rows"], out["rvecs"], family=out["family"],
                               body_part=job["body_part"])
            region_rep.done += 1
            region_rep.regions += len(out["rows"])
            if out.get("context_map") is not None:
                from casebook.index.case_store.context_maps import ContextMapStore

                from .anatomy import IMAGE_RULE

                ContextMapStore(store).put(sid, *out["context_map"], anatomy=out.get("anatomy"),
                                           anatomy_version=IMAGE_RULE)
                region_rep.context_maps += 1
            elif out.get("context_error"):  # its findings are stored; `casebook embed` retries the map
                log.warning("series %d: no context map: %s", sid, out["context_error"])


def ingest_on_ray(paths: Sequence[str | Path], store: CaseStore, settings: Settings, *, address: str | None = None,
                  workers: int = 0, regions: bool = True, rescan: bool = False,
                  progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> RayIngestReport:
    """``casebook ingest --ray``: ingest ``paths`` with headers read on Ray, then encode what is
    new on Ray, writing everything from this process (see the module docstring). A cancel ends
    the report with ``ingest.cancelled`` set; what was stored is complete."""
    progress = progress or no_progress
    with RayCluster(address, workers) as cluster:
        summary = ingest(paths, store, progress=progress, cancel=cancel, rescan=rescan,
                         reader=cluster.header_reader(settings.limits))
        out = RayIngestReport(summary, IndexReport(problem="the ingest was cancelled"), cluster.description,
                              cluster.workers, cluster.gpus)
        if summary.cancelled:
            return out
        t0 = time.monotonic()
        try:
            out.index = cluster.encode(store, settings, regions=regions, progress=progress, cancel=cancel)
        except Cancelled:
            summary.cancelled = True
            out.index = IndexReport(problem="cancelled while encoding: run the same command again to go on")
        out.encode_s = time.monotonic() - t0
        summary.elapsed_s += out.encode_s
    return out


# ---------------------------------------------------------------------- on the workers
_ENCODERS: dict[tuple[str, str], Any] = {}  # one encoder per worker process and model


def _configure(limits: LimitSettings) -> None:
    from ..dicom import limits as dicom_limits

    dicom_limits.configure(limits)  # the driver's caps, not this node's settings file


def _problems(paths: Sequence[Path], reason: str) -> Iterator[Any]:
    from ..dicom.scan import FileProblem

    for p in paths:
        yield FileProblem(Path(p), reason)


def _read_headers_task(paths: list[str], limits: LimitSettings) -> list[Any]:
    from ..dicom.scan import read_headers

    _configure(limits)
    return read_headers(paths)


def _encode_series_task(job: dict, model_path: str, device: str, limits: LimitSettings) -> dict:
    """Load one stored series from its files and compute what the driver asked for."""
    from ..dicom.load import load_volume
    from .embedding import content_hash, encode_volume
    from .library import stack_from_files
    from .regions import describe_volume
    from .same_place import context_map_of, map_reading

    _configure(limits)
    t0 = time.perf_counter()
    try:
        vol = load_volume(stack_from_files(job["sid"], job["key"], job["series_uid"], job["files"]))
        out: dict[str, Any] = {"load_s": time.perf_counter() - t0, "pid": os.getpid()}
        if job["embed"]:
            out["digest"] = digest = content_hash(vol)
            if job["why"] == "files changed" and job["old_digest"] == digest:
                out["unchanged"] = True
            else:
                enc = _ENCODERS.get((model_path, device))
                if enc is None:
                    from casebook.inference.runtime import Encoder

                    enc = _ENCODERS[(model_path, device)] = Encoder(model_path, device=device, threads=1)
                t1 = time.perf_counter()
                idx, vecs = encode_volume(enc, vol)
                out["idx"], out["vecs"] = idx, np.ascontiguousarray(vecs, np.float32)
                out["embed_s"] = time.perf_counter() - t1
        if job["regions"]:
            t1 = time.perf_counter()
            out["family"], out["rows"], out["rvecs"] = describe_volume(vol, job["modality"])
            try:  # the same place on the patient's later scans; its findings do not depend on it
                out["context_map"] = context_map_of(vol, job["modality"])
                out["anatomy"] = map_reading(out["context_map"])  # what it shows of the body (read once)
            except (CasebookError, ValueError) as exc:
                out["context_map"] = None
                out["context_error"] = str(exc)
            out["regions_s"] = time.perf_counter() - t1
        return out
    except (CasebookError, OSError, ValueError, MemoryError) as exc:
        return {"error": str(exc)}


__all__ = ["LOCAL_OBJECT_STORE_BYTES", "RayCluster", "RayIngestReport", "RayUnavailable", "ingest_on_ray", "start_local_ray"]
