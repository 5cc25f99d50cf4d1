"""The PACS front door for the CLI, the viewer and the priors view: echo, search (with what is
already local), priors of a patient, and the push listener that ingests what a PACS sends."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from casebook.common.logs import log_ref

from ...config import Settings
from ...progress import SupportsCancel
from . import dicomweb, dimse
from .nodes import PacsConfig, load_config
from .query import RemoteStudy, StudyQuery
from .scp import StorageSCP, scp_tls_context
from .storage import Manifest, study_dir

log = logging.getLogger(__name__)


def echo(settings: Settings, node: str | None = None, *, cfg: PacsConfig | None = None) -> float:
    """Test a node: C-ECHO for DIMSE, a one-result QIDO-RS search for DICOMweb; seconds taken."""
    import time

    cfg = cfg or load_config(settings)
    nd = cfg.node(node)
    if nd.is_dimse:
        return dimse.echo(cfg, nd)
    t0 = time.perf_counter()
    dicomweb.search_studies(cfg, nd, StudyQuery(limit=1))
    return time.perf_counter() - t0


def mark_local(settings: Settings, studies: Sequence[RemoteStudy]) -> list[RemoteStudy]:
    """Fill each study's local counts from the library and its retrieve manifest (in place)."""
    from ..library import open_store

    if not studies:
        return list(studies)
    if not settings.database_path.exists():
        return list(studies)
    store = open_store(settings, create=False)
    try:
        local = store.local_study_contents([s.study_uid for s in studies])
    finally:
        store.close()
    for s in studies:
        have = local.get(s.study_uid, {})
        s.local_series, s.local_images = len(have), sum(have.values())
        man = Manifest.load(settings.library_dir, s.study_uid)
        s.partial = man is not None and man.state != "complete"
    return list(studies)


def search(settings: Settings, query: StudyQuery, node: str | None = None, *, cancel: SupportsCancel | None = None,
           cfg: PacsConfig | None = None) -> list[RemoteStudy]:
    """Study search at a node (C-FIND or QIDO-RS), newest first, each marked with what is local."""
    cfg = cfg or load_config(settings)
    nd = cfg.node(node)
    found = dimse.find_studies(cfg, nd, query, cancel=cancel) if nd.is_dimse else dicomweb.search_studies(cfg, nd, query)
    found.sort(key=lambda s: (s.study_date is None, -(s.study_date.toordinal() if s.study_date else 0)))
    return mark_local(settings, found)


def query_priors(settings: Settings, patient_id: str, *, exclude_study_uid: str = "", node: str | None = None,
                 cancel: SupportsCancel | None = None, issuer: str = "") -> list[RemoteStudy]:
    """The patient's studies at the priors node (``pacs.priors_node``, else the first node), newest
    first, without the study being read; each says whether it is local (``RemoteStudy.local``).

    With ``issuer`` (the open study's Issuer of Patient ID), a study whose node names another
    issuer is another patient and is left out; one the node returns without an issuer stays (the
    query matches on PatientID only: many nodes cannot match on the issuer).

    [] when no node is configured or the study has no patient ID: priors then come from the library
    alone. A node that cannot be reached raises :class:`PacsError` (the caller shows it and goes on).
    """
    cfg = load_config(settings)
    if not cfg.nodes or not patient_id.strip():
        return []
    name = settings.pacs.priors_node or None
    found = search(settings, StudyQuery(patient_id=patient_id.strip()), name, cancel=cancel, cfg=cfg)
    # exact patient ID: a PACS may match IDs case-insensitively or with wildcards
    iss = issuer.strip()
    return [s for s in found if s.study_uid != exclude_study_uid and s.patient_id == patient_id.strip()
            and not (iss and s.patient_issuer and s.patient_issuer != iss)]


class PushListener:
    """The storage SCP running for pushes: each study a node pushes is ingested, embedded and
    indexed on one background thread once the sender releases the association."""

    def __init__(self, settings: Settings, *, embed: bool = True, cfg: PacsConfig | None = None,
                 on_ingested: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self.cfg = cfg or load_config(settings)
        self.embed = embed
        self.on_ingested = on_ingested  # (headline, problem) after each pushed study
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="casebook-push")
        self._pending: list[Future] = []
        self._lock = threading.Lock()
        self.ingested_studies = 0
        self.scp = StorageSCP(settings.library_dir, ae_title=self.cfg.local.ae_title, bind=self.cfg.local.scp_bind,
                              port=self.cfg.local.scp_port, allowed_aets=self.cfg.allowed_calling_aets(),
                              on_push=self._on_push, timeout_s=self.cfg.local.timeout_s,
                              ssl_context=scp_tls_context(self.cfg.local))

    def start(self) -> "PushListener":
        self.scp.start()
        return self

    def stop(self) -> None:
        self.scp.stop()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "PushListener":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every pushed study handed over so far is ingested (tests, shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for f in pending:
            f.result(timeout)

    def _on_push(self, studies: list[str], released: bool) -> None:
        lib = self.settings.library_dir
        for uid in studies:
            man = Manifest.load(lib, uid) or Manifest(uid)
            man.node = "push"
            if not released:
                man.state, man.reason = "incomplete", "the sender aborted the association"
                man.save(lib)
                log.warning("push of %s aborted: images kept, not ingested until it is sent again", log_ref(uid))
                continue
            man.state, man.reason = "running", ""
            man.save(lib)
            with self._lock:
                self._pending.append(self._pool.submit(self._ingest, uid))

    def _ingest(self, study_uid: str) -> None:
        from ..import_pipeline import import_paths

        lib = self.settings.library_dir
        man = Manifest.load(lib, study_uid) or Manifest(study_uid, node="push")
        problem = ""
        headline = ""
        try:
            rep = import_paths(self.settings, [study_dir(lib, study_uid)], embed=self.embed)
            headline = rep.headline("a pushed study")
            man.state = "complete"
        except Exception as exc:  # noqa: BLE001 - one bad push must not stop the listener
            problem = f"ingest of a pushed study failed: {exc}"
            log.error("%s", problem)
            man.state, man.reason = "incomplete", problem
        man.save(lib)
        with self._lock:
            self.ingested_studies += 1
        if self.on_ingested is not None:
            self.on_ingested(headline, problem)


__all__ = ["PushListener", "echo", "mark_local", "query_priors", "search"]
