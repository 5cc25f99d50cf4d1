"""Retrieve a study from a node into the library, whole or not at all.

One retrieve: ask the node which series the study holds and how many images each has; skip what
the library already holds complete; move/get/WADO the rest into the received folder; ingest,
embed and index every series that arrived whole. A series with images missing (the node went
down, the association was aborted, the user cancelled) stays in the received folder, recorded
as incomplete in the study's manifest, and never reaches the store, so no listing or search
shows it; the next retrieve of the study asks for exactly the series still short and finishes.
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Sequence

from casebook.common.errors import Cancelled
from casebook.common.logs import log_ref

from ...config import Settings
from ...progress import ProgressCallback, SupportsCancel, no_progress
from . import dicomweb, dimse
from .errors import PacsError, RetrieveIncomplete
from .nodes import PacsConfig, load_config
from .query import RemoteSeries
from .scp import StorageSCP, scp_tls_context
from .storage import Manifest, count_files, series_dir

log = logging.getLogger(__name__)

METHODS = ("auto", "move", "get", "wado")
PHASE_RETRIEVE = "retrieving images"


@dataclass
class RetrieveResult:
    """What a retrieve did; :attr:`problem` is "" when the whole study is in the library."""

    node: str
    study_uid: str
    method: str
    series: int = 0  # series the node lists (of those asked for)
    expected: int = 0  # images the node lists for them
    transferred: int = 0  # images that came over the network this time
    already_local: int = 0  # series the library already had complete
    ingested_series: int = 0
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # (series UID, why)
    import_headline: str = ""
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.incomplete

    @property
    def problem(self) -> str:
        if not self.incomplete:
            return ""
        reasons = sorted({why for _uid, why in self.incomplete})
        return (f"{len(self.incomplete)} of {self.series} series did not arrive whole ({'; '.join(reasons)}); "
                "what arrived is kept, and retrieving the study again finishes it")

    def raise_if_incomplete(self) -> None:
        if self.incomplete:
            raise RetrieveIncomplete(self.node, self.problem, received=self.transferred, expected=self.expected)


def _remote_series(cfg: PacsConfig, node: Any, study_uid: str, cancel: SupportsCancel | None) -> list[RemoteSeries]:
    if node.is_dimse:
        return dimse.find_series(cfg, node, study_uid, cancel=cancel)
    return dicomweb.search_series(cfg, node, study_uid)


def retrieve_study(settings: Settings, study_uid: str, *, node: str | None = None, method: str = "auto",
                   series_uids: Sequence[str] | None = None, embed: bool = True, scp: StorageSCP | None = None,
                   progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None,
                   cfg: PacsConfig | None = None) -> RetrieveResult:
    """Bring ``study_uid`` (or some of its series) from ``node`` into the library (see module doc).

    ``method``: ``move`` (C-MOVE to Casebook's storage SCP: ``scp`` if one is running, else one is
    started on the configured port for the retrieve), ``get`` (C-GET, no port needed), ``wado``
    (WADO-RS, DICOMweb nodes); ``auto`` is move for DIMSE nodes and wado for DICOMweb ones.
    :class:`Cancelled` leaves the manifest marked incomplete; an incomplete result is returned
    with :attr:`RetrieveResult.problem` set (``raise_if_incomplete`` turns it into an error).
    """
    from ..import_pipeline import import_paths
    from ..library import open_store

    t0 = time.perf_counter()
    progress = progress or no_progress
    cfg = cfg or load_config(settings)
    nd = cfg.node(node)
    if method not in METHODS:
        raise PacsError(nd.name, f"unknown retrieve method {method!r} (use {', '.join(METHODS)})")
    if method == "auto":
        method = "move" if nd.is_dimse else "wado"
    if (method == "wado") == nd.is_dimse:
        raise PacsError(nd.name, f"a {nd.kind} node cannot be retrieved from with {method}")
    lib = settings.library_dir
    res = RetrieveResult(nd.name, study_uid, method)
    progress(0, 0, f"asking {nd.name} for the study's series")
    remote = _remote_series(cfg, nd, study_uid, cancel)
    if series_uids:
        wanted = set(series_uids)
        remote = [r for r in remote if r.series_uid in wanted]
    if not remote:
        raise PacsError(nd.name, "holds no such study (or none of the asked series): nothing to retrieve")
    res.series = len(remote)
    res.expected = sum(r.images or 0 for r in remote)

    store = open_store(settings)
    try:
        local = store.local_study_contents([study_uid]).get(study_uid, {})
    finally:
        store.close()
    man = Manifest.load(lib, study_uid) or Manifest(study_uid)
    man.node, man.state, man.reason = nd.name, "running", ""
    man.expected.update({r.series_uid: int(r.images or 0) for r in remote})
    man.save(lib)

    def whole(r: RemoteSeries, n: int) -> bool:
        return r.images is not None and n >= r.images

    todo: list[RemoteSeries] = []
    staged_whole: list[RemoteSeries] = []
    for r in remote:
        if whole(r, local.get(r.series_uid, 0)):
            res.already_local += 1
        elif whole(r, count_files(series_dir(lib, study_uid, r.series_uid))):
            staged_whole.append(r)  # arrived whole earlier, but its ingest did not happen
        else:
            todo.append(r)
    total = sum(r.images or 0 for r in todo)
    before = {r.series_uid: count_files(series_dir(lib, study_uid, r.series_uid)) for r in todo}
    transfer_problem: dict[str, str] = {}
    done = [0]

    def tick(_series: str = "") -> None:
        done[0] += 1
        progress(min(done[0], total), total, PHASE_RETRIEVE)

    if todo:
        progress(0, total, PHASE_RETRIEVE)
        uids = [r.series_uid for r in todo]
        try:
            if method == "move":
                with ExitStack() as stack:
                    if scp is None or not scp.running:
                        scp = stack.enter_context(StorageSCP(
                            lib, ae_title=cfg.local.ae_title, bind=cfg.local.scp_bind, port=cfg.local.scp_port,
                            allowed_aets=cfg.allowed_calling_aets(), timeout_s=cfg.local.timeout_s,
                            ssl_context=scp_tls_context(cfg.local)))
                    with scp.expect(study_uid) as exp:
                        last = [0]

                        def move_tick() -> None:
                            n = exp.count()
                            while last[0] < n:
                                last[0] += 1
                                tick()

                        ops = dimse.move_series(cfg, nd, study_uid, uids, tick=move_tick, cancel=cancel)
                        move_tick()
                transfer_problem = {u: o.problem for u, o in ops.items() if o.problem}
            elif method == "get":
                classes = dimse.sop_classes_in_study(cfg, nd, study_uid)
                ops = dimse.get_series(cfg, nd, study_uid, uids, lib, sop_classes=classes, tick=tick, cancel=cancel)
                transfer_problem = {u: o.problem for u, o in ops.items() if o.problem}
            else:
                transfer_problem = {u: p for u, p in dicomweb.retrieve_series(
                    cfg, nd, study_uid, uids, lib, tick=tick, cancel=cancel).items() if p}
        except Cancelled:
            man.state, man.reason = "incomplete", "cancelled"
            man.save(lib)
            raise
        except PacsError as exc:
            transfer_problem = {u: exc.reason for u in uids}
    res.transferred = sum(max(0, count_files(series_dir(lib, study_uid, r.series_uid)) - before[r.series_uid])
                          for r in todo)

    ready: list[RemoteSeries] = list(staged_whole)
    for r in todo:
        n = count_files(series_dir(lib, study_uid, r.series_uid))
        if whole(r, n) or (r.images is None and r.series_uid not in transfer_problem and n > 0):
            ready.append(r)
        else:
            why = transfer_problem.get(r.series_uid) or "the node sent fewer images than it lists"
            if r.images is not None:
                why = f"{n} of {r.images} images arrived: {why}"
            res.incomplete.append((r.series_uid, why))
    if ready:
        rep = import_paths(settings, [series_dir(lib, study_uid, r.series_uid) for r in ready], progress=progress,
                           cancel=cancel, embed=embed)
        res.ingested_series = len(ready)
        res.import_headline = rep.headline(f"{len(ready)} series from {nd.name}")
        man.ingested = sorted(set(man.ingested) | {r.series_uid for r in ready})
    man.state = "complete" if not res.incomplete else "incomplete"
    man.reason = res.problem
    man.save(lib)
    res.elapsed_s = time.perf_counter() - t0
    log.info("retrieve %s from %s: %d series, %d images over the network, %s", log_ref(study_uid), nd.name,
             res.series, res.transferred, "complete" if res.complete else "INCOMPLETE")
    return res


__all__ = ["METHODS", "PHASE_RETRIEVE", "RetrieveResult", "retrieve_study"]
