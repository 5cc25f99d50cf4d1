"""Find similar: runs searches on a dedicated worker thread and fills the similar-case panel.

The search service (SQLite + HNSW index) is opened once on its own thread and only used there,
so SQLite connections never cross threads and the UI thread never waits on a query. Every search
shows progress (the first one may catch up or rebuild the index) and can be cancelled.

The controller binds narrow collaborators, not the window: the panel, the study's headless
state, the study viewer (box tool and drawn boxes), the current settings and a callback that
shows an analogue side by side. Filters, thumbnails and slice lookup are headless
(:mod:`casebook.viewer.core.services`).
"""
from __future__ import annotations

import html
import logging
import time
from typing import Any, Callable, Hashable

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal

from casebook.common.errors import CasebookError
from casebook.viewer.core.config import Settings
from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.lru import LRUCache
from casebook.viewer.core.progress import check_cancel
from casebook.viewer.core.services.search_types import QueryEncoder, QueryVectors, SearchHit, SearchResponse
from casebook.viewer.core.viewstate import Measurement, MprGeometry, ViewerState

from .. import workers
from ..views.similar_panel import SimilarPanel, gray_to_pixmap
from ..views.study_viewer import StudyViewer

log = logging.getLogger(__name__)

#: Analogue volumes kept decoded (opening a result again, its thumbnail on the next search).
ANALOGUE_CACHE = 8

OpenAnalogue = Callable[..., None]  # (volume, report_html, matched_slice=, query_slice=, orientation=)


class SimilarController(QObject):
    results_shown = Signal(object)  # SearchResponse, after the cards are on screen
    search_failed = Signal(str)
    search_cancelled = Signal()

    def __init__(self, panel: SimilarPanel, state: ViewerState, viewer: StudyViewer,
                 settings: Callable[[], Settings], open_analogue: OpenAnalogue,
                 encoder: QueryEncoder | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.state = state
        self.viewer = viewer
        self._settings = settings
        self._open_analogue = open_analogue
        self.encoder = encoder
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.pool.setExpiryTimeout(-1)  # one long-lived thread owns the service
        self._service: Any = None
        self._service_library = None
        self.response: SearchResponse | None = None
        self.current_series_id: int | None = None
        self.volumes: LRUCache[Hashable, Volume] = LRUCache(ANALOGUE_CACHE)
        self.last_elapsed_s = 0.0
        self._t0 = 0.0
        self.worker: workers.FunctionWorker | None = None  # the running search, if any
        panel.find_requested.connect(self.find)
        panel.open_requested.connect(self.open_hit)
        panel.feedback.connect(self.feedback)
        panel.cancel_requested.connect(self.cancel)
        viewer.box_drawn.connect(self.find_box)

    # -- service (worker thread only) -----------------------------------------------------------
    def _get_service(self, progress: Any = None, cancel: Any = None) -> Any:
        from casebook.viewer.core.services.search import open_store_search

        settings = self._settings()
        if self._service is None or self._service_library != settings.library_dir:
            if self._service is not None:
                self._service.close()
                self._service = None
            if progress is not None:
                progress(0, 0, "opening the library index")
            self._service = open_store_search(settings, encoder=self.encoder, progress=progress, cancel=cancel)
            self._service_library = settings.library_dir
        return self._service

    def set_encoder(self, encoder: QueryEncoder | None) -> None:
        """Give the search an encoder (``QueryEncoder``): box/ROI and folder queries need one."""
        self.encoder = encoder
        self._service_library = None  # reopen the service with it on the next search

    # -- queries --------------------------------------------------------------------------------
    def _view_to_k(self) -> int:
        """Volume slice index k of the slice on screen (the search service counts in k)."""
        g = self.state.geometry
        return g.canon_to_k(self.state.crosshair_canon) if g is not None else 0

    def find(self, mode: str) -> None:
        if mode == "box":
            self.viewer.controller.set_tool("box")
            self.panel.status.setText("Draw a box on any view.")
            return
        if self.current_series_id is None:
            self.panel.set_idle("Find similar works on series from the library: open it from the study browser "
                                "(or import it first).")
            return
        sid = self.current_series_id
        k = self._view_to_k() if mode == "slice" else None
        self._run(lambda svc: svc.query_from_series(sid) if k is None else svc.query_from_slice(sid, k),
                  "series" if k is None else f"slice {k + 1}")

    def find_box(self, m: Measurement) -> None:
        self.viewer.controller.set_tool("wl")
        if self.current_series_id is None or self.state.geometry is None:
            self.panel.set_idle("Open a series from the library to search with a box.")
            return
        box = self.state.geometry.image_box_to_ijk_box(m.orientation, m.slice_index, m.p0, m.p1)
        sid = self.current_series_id
        vol = self.state.volume

        def query(svc: Any) -> QueryVectors:
            remember = getattr(svc.encoder, "remember", None)
            if remember is not None and vol is not None:
                remember(sid, vol)  # the decoded series on screen: no second read from disk
            return svc.query_from_roi(sid, box)

        self._run(query, "box")

    def _run(self, make_query: Callable[[Any], QueryVectors], label: str) -> None:
        form = self.panel.form()
        try:
            filters = form.to_filters(exclude_same_study=self._settings().search.exclude_same_study)
        except CasebookError as exc:
            self.panel.set_idle(str(exc))
            return
        k, text = form.top_k, form.query_text

        def task(*, progress, cancel, signals):
            svc = self._get_service(progress, cancel)
            check_cancel(cancel)
            progress(0, 0, f"searching ({label})")
            resp = svc.search(make_query(svc), text=text, filters=filters, k=k)
            check_cancel(cancel)
            return resp, self._thumbnails(svc, resp, progress, cancel)

        self._start(task, f"Searching ({label})…")

    def feedback(self, hit: SearchHit, sign: int) -> None:
        if self.response is None:
            return
        resp0 = self.response

        def task(*, progress, cancel, signals):
            svc = self._get_service(progress, cancel)
            more = [hit.series_id] if sign > 0 else []
            less = [hit.series_id] if sign < 0 else []
            progress(0, 0, "re-ranking")
            resp = svc.feedback(resp0, more_like=more, not_like=less)
            check_cancel(cancel)
            return resp, self._thumbnails(svc, resp, progress, cancel)

        self._start(task, "Re-ranking…")

    def _start(self, task: Callable[..., Any], message: str,
               on_result: Callable[[Any], None] | None = None) -> None:
        """Run ``task`` on the service thread with the panel's progress bar and Cancel bound to it."""
        self.panel.set_busy(message)
        self._t0 = time.perf_counter()
        w = workers.FunctionWorker(task)
        self.worker = w
        w.signals.progress.connect(self._on_progress)
        w.signals.result.connect(on_result or self._show)
        w.signals.failed.connect(self._failed)
        w.signals.cancelled.connect(self._cancelled)
        w.signals.finished.connect(lambda w=w: self._finished(w))
        workers.start(w, self.pool)

    def cancel(self) -> None:
        """Stop the running search (its token is checked between the steps of the search)."""
        if self.worker is not None:
            self.worker.cancel()
            self.panel.cancel_button.setEnabled(False)
            self.panel.status.setText("Cancelling…")

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if self.worker is not None:
            self.panel.set_progress(done, total, message)

    def _finished(self, w: workers.FunctionWorker) -> None:
        if self.worker is w:
            self.worker = None

    def _thumbnails(self, svc: Any, resp: SearchResponse, progress: Any, cancel: Any) -> dict[Hashable, np.ndarray]:
        """The matched slice of each analogue: only that one file is decoded (cached volumes reused)."""
        from casebook.viewer.core.services.thumbnails import matched_slices

        store = getattr(svc.catalog, "store", None)
        if store is None:
            return {}
        return matched_slices(store, resp.hits, volumes=self.volumes, progress=progress, cancel=cancel)

    def _show(self, out: tuple[SearchResponse, dict[Hashable, np.ndarray]]) -> None:
        resp, thumbs = out
        self.response = resp
        window = self.state.window
        items = []
        for h in resp.hits:
            i = h.info
            info = {"score": h.score, "date": i.study_date.isoformat() if i.study_date else "",
                    "diagnosis": i.diagnosis, "snippet": i.report_snippet, "has_followup": i.has_follow_up}
            img = thumbs.get(h.series_id)
            pm = gray_to_pixmap(img, window) if img is not None and img.ndim == 2 else None
            items.append((h, info, pm))
        self.last_elapsed_s = time.perf_counter() - self._t0
        msg = f"{len(resp.hits)} similar cases in {self.last_elapsed_s:.2f} s"
        if not resp.hits and resp.reason:
            msg = f"No similar cases: {resp.reason}"
        self.panel.set_results(items, msg)
        self.results_shown.emit(resp)

    def _failed(self, message: str) -> None:
        self.panel.set_idle(f"Search failed: {message}")
        self.search_failed.emit(message)

    def _cancelled(self) -> None:
        self.panel.set_idle("Search cancelled.")
        self.search_cancelled.emit()

    # -- open a result side by side -------------------------------------------------------------
    def open_hit(self, hit: SearchHit) -> None:
        vol = self.volumes.get(hit.series_id)
        if vol is not None:
            self._open(hit, vol)
            return

        def task(*, progress, cancel, signals):
            from casebook.viewer.core.services.library import load_stored_volume

            svc = self._get_service(progress, cancel)
            return load_stored_volume(svc.catalog.store, int(hit.series_id), progress=progress, cancel=cancel)

        shown = self.panel.status.text()

        def opened(v: Volume, h: SearchHit = hit) -> None:
            self.volumes.put(h.series_id, v)
            self.panel.set_idle(shown)
            self._open(h, v)

        self._start(task, "Opening the case…", opened)

    def _report_html(self, hit: SearchHit) -> str:
        i = hit.info
        date = i.study_date.isoformat() if i.study_date else "date unknown"
        parts = [f"<h3>{html.escape(i.modality)} {html.escape(i.description)} — {date}</h3>",
                 f"<p><b>Score</b> {hit.score:.3f} ({html.escape(hit.via)})"
                 + (f"; matched slice {hit.matched_slice + 1} ↔ query slice {hit.query_slice + 1}"
                    if hit.matched_slice is not None and hit.query_slice is not None else "") + "</p>"]
        if i.diagnosis:
            parts.append(f"<p><b>Diagnosis</b>: {html.escape(i.diagnosis)}</p>")
        if i.report_snippet:
            parts.append(f"<p>{html.escape(i.report_snippet)}</p>")
        if i.has_follow_up:
            parts.append("<p><i>This patient has follow-up studies.</i></p>")
        return "".join(parts)

    def _open(self, hit: SearchHit, vol: Volume) -> None:
        g_a = MprGeometry(vol)
        o_a, idx_a = g_a.k_to_view(int(hit.matched_slice or 0))
        q_idx = None
        g = self.state.geometry
        if g is not None and hit.query_slice is not None:
            _o_q, q_idx = g.k_to_view(int(hit.query_slice))
        self._open_analogue(vol, self._report_html(hit), matched_slice=idx_a, query_slice=q_idx, orientation=o_a)
