"""Find similar: runs searches on a dedicated worker thread and fills the similar-case panel.

The search service (SQLite + HNSW index) is opened once on its own thread and only used there,
so SQLite connections never cross threads and the UI thread never waits on a query.
"""
from __future__ import annotations

import html
import logging
import time
from collections import OrderedDict
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal

from casebook.viewer.core.viewstate import Measurement

from .. import workers
from ..views.similar_panel import gray_to_pixmap

log = logging.getLogger(__name__)


def _instance_at(stack: Any, k: int) -> Any:
    """The instance that the loader puts at slice ``k`` (sorted along the slice normal)."""
    insts = list(stack.instances)
    o = next((i.orientation for i in insts if i.orientation), None)
    if o is not None and all(i.position is not None for i in insts):
        n = np.cross(np.asarray(o[:3], float), np.asarray(o[3:], float))
        insts.sort(key=lambda i: float(np.dot(np.asarray(i.position, float), n)))
    else:
        insts.sort(key=lambda i: (i.instance_number or 0, i.frame_index or 0))
    return insts[int(np.clip(k, 0, len(insts) - 1))]


class SimilarController(QObject):
    results_shown = Signal(object)  # SearchResponse, after the cards are on screen
    search_failed = Signal(str)

    def __init__(self, window: Any, encoder: Any = None) -> None:
        super().__init__(window)
        self.win = window
        self.panel = window.similar
        self.encoder = encoder
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.pool.setExpiryTimeout(-1)  # one long-lived thread owns the service
        self._service: Any = None
        self._service_library = None
        self.response: Any = None
        self.current_series_id: int | None = None
        self.volumes: OrderedDict[int, Any] = OrderedDict()  # small cache of analogues
        self.last_elapsed_s = 0.0
        self._t0 = 0.0
        self.panel.find_requested.connect(self.find)
        self.panel.open_requested.connect(self.open_hit)
        self.panel.feedback.connect(self.feedback)
        window.viewer.box_drawn.connect(self.find_box)

    # -- service (worker thread only) -----------------------------------------------------------
    def _get_service(self) -> Any:
        from casebook.viewer.core.services.search import open_store_search

        settings = self.win.settings
        if self._service is None or self._service_library != settings.library_dir:
            if self._service is not None:
                self._service.close()
            self._service = open_store_search(settings, encoder=self.encoder)
            self._service_library = settings.library_dir
        return self._service

    def _filters(self) -> Any:
        from casebook.viewer.core.services.search import SearchFilters

        from datetime import date

        f = self.panel.filters()
        s = self.win.settings.search

        def day(text: str | None, name: str) -> date | None:
            if not text:
                return None
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None

        return SearchFilters(modalities=(f["modality"],) if f["modality"] else (),
                             body_parts=(f["body_part"],) if f["body_part"] else (),
                             sex=f["sex"], age_min=f["age_min"], age_max=f["age_max"],
                             date_from=day(f["date_from"], "date from"), date_to=day(f["date_to"], "date to"),
                             tags=f["tags"], diagnosis=f["diagnosis"],
                             exclude_same_patient=f["exclude_same_patient"], exclude_same_study=s.exclude_same_study)

    def set_encoder(self, encoder: Any) -> None:
        """Give the search an encoder (``QueryEncoder``): box/ROI and folder queries need one."""
        self.encoder = encoder
        self._service_library = None  # reopen the service with it on the next search

    # -- queries --------------------------------------------------------------------------------
    def _view_to_k(self) -> int:
        """Volume slice index k of the slice on screen (the search service counts in k)."""
        g = self.win.state.geometry
        return g.canon_to_k(self.win.state.crosshair_canon) if g is not None else 0

    def find(self, mode: str) -> None:
        if mode == "box":
            self.win.viewer.controller.set_tool("box")
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
        self.win.viewer.controller.set_tool("wl")
        if self.current_series_id is None or self.win.state.geometry is None:
            self.panel.set_idle("Open a series from the library to search with a box.")
            return
        box = self.win.state.geometry.image_box_to_ijk_box(m.orientation, m.slice_index, m.p0, m.p1)
        sid = self.current_series_id
        vol = self.win.state.volume

        def query(svc: Any) -> Any:
            remember = getattr(svc.encoder, "remember", None)
            if remember is not None and vol is not None:
                remember(sid, vol)  # the decoded series on screen: no second read from disk
            return svc.query_from_roi(sid, box)

        self._run(query, "box")

    def _run(self, make_query, label: str) -> None:
        try:
            filters = self._filters()
        except ValueError as exc:
            self.panel.set_idle(str(exc))
            return
        self.panel.set_busy(f"Searching ({label})…")
        self._t0 = time.perf_counter()
        f = self.panel.filters()
        k = f["top_k"]
        text = f["text"]

        def task(*, progress, cancel, signals):
            svc = self._get_service()
            q = make_query(svc)
            resp = svc.search(q, text=text, filters=filters, k=k)
            return resp, self._thumbnails(svc, resp)

        w = workers.FunctionWorker(task)
        w.signals.result.connect(self._show)
        w.signals.failed.connect(self._failed)
        workers.start(w, self.pool)

    def feedback(self, hit: Any, sign: int) -> None:
        if self.response is None:
            return
        resp0 = self.response
        self.panel.set_busy("Re-ranking…")
        self._t0 = time.perf_counter()

        def task(*, progress, cancel, signals):
            svc = self._get_service()
            more = [hit.series_id] if sign > 0 else []
            less = [hit.series_id] if sign < 0 else []
            resp = svc.feedback(resp0, more_like=more, not_like=less)
            return resp, self._thumbnails(svc, resp)

        w = workers.FunctionWorker(task)
        w.signals.result.connect(self._show)
        w.signals.failed.connect(self._failed)
        workers.start(w, self.pool)

    def _thumbnails(self, svc: Any, resp: Any) -> dict[Any, np.ndarray]:
        """The matched slice of each analogue: only that one file is decoded (cached volumes reused)."""
        import dataclasses

        from casebook.viewer.core.dicom import load_volume
        from casebook.viewer.core.services.library import stack_for_series

        store = getattr(svc.catalog, "store", None)
        out: dict[Any, np.ndarray] = {}
        if store is None:
            return out
        for h in resp.hits:
            k = int(h.matched_slice or 0)
            try:
                vol = self.volumes.get(h.series_id)
                if vol is not None:
                    out[h.series_id] = vol.voxels[min(k, vol.shape[0] - 1)]
                    continue
                stack = stack_for_series(store, int(h.series_id))
                inst = _instance_at(stack, k)
                one = load_volume(dataclasses.replace(stack, instances=[inst]))
                out[h.series_id] = one.voxels[0]
            except Exception as exc:  # noqa: BLE001 - a missing file costs a thumbnail, not the search
                log.info("no thumbnail for series %s: %s", h.series_id, exc)
        return out

    def _cache(self, sid: Any, vol: Any) -> None:
        self.volumes[sid] = vol
        self.volumes.move_to_end(sid)
        while len(self.volumes) > 8:
            self.volumes.popitem(last=False)

    def _show(self, out: Any) -> None:
        resp, thumbs = out
        self.response = resp
        window = self.win.state.window
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

    # -- open a result side by side -------------------------------------------------------------
    def open_hit(self, hit: Any) -> None:
        vol = self.volumes.get(hit.series_id)
        if vol is not None:
            self._open(hit, vol, self._report_html(hit))
            return

        def task(*, progress, cancel, signals):
            from casebook.viewer.core.services.library import load_stored_volume

            svc = self._get_service()
            return load_stored_volume(svc.catalog.store, int(hit.series_id), progress=progress, cancel=cancel)

        w = workers.FunctionWorker(task)
        w.signals.result.connect(lambda v, h=hit: (self._cache(h.series_id, v), self._open(h, v, self._report_html(h))))
        w.signals.failed.connect(self._failed)
        workers.start(w, self.pool)

    def _report_html(self, hit: Any) -> str:
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

    def _open(self, hit: Any, vol: Any, report: str) -> None:
        from casebook.viewer.core.viewstate import MprGeometry

        g_a = MprGeometry(vol)
        o_a, idx_a = g_a.k_to_view(int(hit.matched_slice or 0))
        q_idx = None
        g = self.win.state.geometry
        if g is not None and hit.query_slice is not None:
            o_q, q_idx = g.k_to_view(int(hit.query_slice))
        self.win.open_analogue(vol, report, matched_slice=idx_a, query_slice=q_idx, orientation=o_a)
