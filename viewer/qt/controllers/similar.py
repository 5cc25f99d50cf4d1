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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable

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

if TYPE_CHECKING:
    from casebook.viewer.core.services.library import StackCache

log = logging.getLogger(__name__)

#: Analogue volumes kept decoded (opening a result again, its thumbnail on the next search).
ANALOGUE_CACHE = 8
#: Series stacks (headers) of analogues kept for the next cards, while their files are unchanged.
STACK_CACHE = 512

OpenAnalogue = Callable[..., None]  # (volume, report_html, matched_slice=, query_slice=, orientation=)


def card_info(hit: SearchHit) -> dict[str, Any]:
    """What a result card shows of a hit; ``confidence`` and ``region`` when the hit carries them
    (region-level search: a calibrated probability, the matched box (i0, j0, i1, j1) on the
    thumbnail's slice)."""
    i = hit.info
    info: dict[str, Any] = {"score": hit.score, "date": i.study_date.isoformat() if i.study_date else "",
                            "diagnosis": i.diagnosis, "snippet": i.report_snippet, "has_followup": i.has_follow_up,
                            "description": f"{i.modality} {i.description}".strip()}
    for name in ("confidence", "region", "confidence_text"):
        value = getattr(hit, name, None)
        if value is not None and value != "":
            info[name] = value
    return info


class SimilarController(QObject):
    results_shown = Signal(object)  # SearchResponse, after the cards are on screen
    search_failed = Signal(str)
    search_cancelled = Signal()
    add_to_library = Signal(object)  # Path: the reader asked to import the folder on screen

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
        self._series_id: int | None = None
        self.folder: Path | None = None  # a folder on screen that was opened without importing it
        self.stack_key: str | None = None
        self._results_study: tuple[Any, ...] = (None, None, None)  # the study the panel's results are for
        self.volumes: LRUCache[Hashable, Volume] = LRUCache(ANALOGUE_CACHE)
        self.stacks: StackCache = LRUCache(STACK_CACHE)
        self.last_elapsed_s = 0.0
        self._t0 = 0.0
        self.worker: workers.FunctionWorker | None = None  # the running search, if any
        self.warming: workers.FunctionWorker | None = None  # the last warm-up (see _warm_up)
        self.warmed: tuple[int, str | None] | None = None  # (series, region family it opened)
        self.library_warming: workers.FunctionWorker | None = None  # see warm_library
        self.library_warmed: list[str] | None = None  # region families the library warm-up opened
        self.last_box: tuple[int, ...] | None = None  # the voxel box of the last box query
        panel.find_requested.connect(self.find)
        panel.open_requested.connect(self.open_hit)
        panel.feedback.connect(self.feedback)
        panel.cancel_requested.connect(self.cancel)
        panel.add_requested.connect(lambda: self.folder is not None and self.add_to_library.emit(self.folder))
        viewer.box_drawn.connect(self.find_box)

    # -- what is on screen ----------------------------------------------------------------------
    @property
    def current_series_id(self) -> int | None:
        return self._series_id

    @current_series_id.setter
    def current_series_id(self, series_id: int | None) -> None:
        self.set_study(series_id)

    def set_study(self, series_id: int | None, folder: Path | None = None, stack_key: str | None = None) -> None:
        """The study on screen is now a library series (``series_id``) or a folder opened without
        importing it. Results and filters of another study are cleared: they belong to another
        patient and would read as answers about this one."""
        folder = Path(folder) if folder is not None else None
        self._series_id, self.folder, self.stack_key = series_id, folder, stack_key
        study = (series_id, folder, stack_key)
        if (series_id is None and folder is None) or study == self._results_study:
            return  # loading (the next study is not known yet), or the same study again
        self._results_study = study
        had_results = bool(self.panel.cards) or self.response is not None
        if self.worker is not None:
            self.worker.cancel()
        self.response = None
        s = self._settings().search
        self.panel.reset_filters(s.top_k, s.exclude_same_patient, s.same_anatomy)
        self.panel.clear_results("Results of the previous study cleared." if had_results else "")
        self.panel.add_button.setVisible(series_id is None and folder is not None)
        if series_id is not None:
            self._warm_up(int(series_id))

    def _warm_up(self, series_id: int) -> None:
        """Open the library's index for this series on the service thread while the reader looks at
        the study (the first box otherwise waits seconds for it); quietly: a failure shows on the
        search itself, and a search queued meanwhile runs after it on the same thread."""

        def task(*, progress, cancel, signals):
            check_cancel(cancel)
            try:
                self.warmed = (series_id, self._get_service().warm_up(series_id))
            except CasebookError as exc:
                log.info("search warm-up for series %s: %s", series_id, type(exc).__name__)
                self.warmed = (series_id, None)
            return self.warmed

        self.warming = workers.start(workers.FunctionWorker(task), self.pool)

    def warm_library(self) -> None:
        """When the library opens, ready every modality family's finding search on the service
        thread (index, typicality, calibrations), so that a box drawn the moment the first study
        is on screen answers as fast as later ones; once per opened service."""
        if self.library_warming is not None and not self.library_warming.done.is_set():
            return
        if self.library_warmed is not None and self._service is not None \
                and self._service_library == self._settings().library_dir:
            return

        def task(*, progress, cancel, signals):
            check_cancel(cancel)
            try:
                # a study opened meanwhile has its own warm-up queued: let it go first
                self.library_warmed = self._get_service().warm_up_library(lambda: self._series_id is None)
            except CasebookError as exc:
                log.info("library search warm-up: %s", type(exc).__name__)
                self.library_warmed = []
            return self.library_warmed

        self.library_warming = workers.start(workers.FunctionWorker(task), self.pool)

    def library_changed(self) -> None:
        """Series were added (an import): the next search reopens the index with their vectors."""
        self._service_library = None
        self.library_warmed = None

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
        if mode == "findings":
            self.find_findings()
            return
        k = self._view_to_k() if mode == "slice" else None
        if self.current_series_id is None and self.folder is not None:
            folder, key = self.folder, self.stack_key

            def folder_q(svc: Any) -> QueryVectors:
                from casebook.viewer.core.services.folder_query import folder_query

                return folder_query(svc, folder, stack_key=key, slice_index=k)

            self._run(folder_q, f"folder {folder.name}" + ("" if k is None else f", slice {k + 1}"))
            return
        if self.current_series_id is None:
            self.panel.set_idle("Open a series from the study browser, or a folder, to find similar cases.")
            return
        sid = self.current_series_id
        self._run(lambda svc: svc.query_from_series(sid) if k is None else svc.query_from_slice(sid, k),
                  "series" if k is None else f"slice {k + 1}")

    def find_findings(self) -> None:
        """Cases with the same findings: the series' least typical regions, matched one by one."""
        if self.current_series_id is None:
            self.panel.set_idle("Findings search works on series of the library: open one from the study browser.")
            return
        sid = self.current_series_id
        self._run_regions(lambda svc, filters, k: svc.search_findings(sid, filters=filters, k=k),
                          "matching this series' findings", "Searching (findings of this series)…")

    def _run_regions(self, search: Callable[[Any, Any, int], Any], doing: str, status: str) -> bool:
        """Run a finding (region) search with the panel's filters on a worker; False when the form
        is invalid (the panel then says why)."""
        asked = self._form_query()
        if asked is None:
            return False
        filters, k, _ = asked

        def task(*, progress, cancel, signals):
            svc = self._get_service(progress, cancel)
            check_cancel(cancel)
            progress(0, 0, doing)
            resp = search(svc, filters, k)
            check_cancel(cancel)
            return resp, self._thumbnails(svc, resp, progress, cancel)

        self._start(task, status)
        return True

    def find_box(self, m: Measurement) -> None:
        """A box is matched against the archive's findings (region search), not whole slices."""
        self.viewer.controller.set_tool("wl")
        if self.current_series_id is None or self.state.geometry is None:
            self.panel.set_idle("A box searches series of the library: open one from the study browser"
                                + (", or add this folder to the library." if self.folder is not None else "."))
            return
        box = self.state.geometry.image_box_to_ijk_box(m.orientation, m.slice_index, m.p0, m.p1)
        sid = self.current_series_id
        vol = self.state.volume  # the decoded series on screen: no second read from disk
        if self._run_regions(lambda svc, filters, k: svc.search_box(sid, box, filters=filters, k=k, image=vol),
                             "finding what the box shows", "Searching (box: the finding in it)…"):
            self.last_box = box

    def _form_query(self) -> tuple[Any, int, str] | None:
        """(filters, k, text) from the panel's form, or None when it is invalid (the panel says why)."""
        form = self.panel.form()
        try:
            filters = form.to_filters(exclude_same_study=self._settings().search.exclude_same_study)
        except CasebookError as exc:
            self.panel.filters_toggle.setChecked(True)  # the field to correct is in view
            self.panel.set_idle(str(exc))
            return None
        return filters, form.top_k, form.query_text

    def _run(self, make_query: Callable[[Any], QueryVectors], label: str) -> None:
        asked = self._form_query()
        if asked is None:
            return
        filters, k, text = asked

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
        study = self._results_study
        deliver = on_result or self._show
        # a search that ends after another study was opened answers nothing on screen now
        w.signals.result.connect(lambda out, st=study: self._deliver(st, out, deliver))
        w.signals.failed.connect(self._failed)
        w.signals.cancelled.connect(self._cancelled)
        w.signals.finished.connect(lambda w=w: self._finished(w))
        workers.start(w, self.pool)

    def _deliver(self, study: tuple[Any, ...], out: Any, deliver: Callable[[Any], None]) -> None:
        if study != self._results_study:
            self.panel.set_idle("")
            return
        deliver(out)

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
        return matched_slices(store, resp.hits, volumes=self.volumes, progress=progress, cancel=cancel,
                              stacks=self.stacks)

    def _show(self, out: tuple[SearchResponse, dict[Hashable, np.ndarray]]) -> None:
        resp, thumbs = out
        self.response = resp
        window = self.state.window
        items = []
        for h in resp.hits:
            info = card_info(h)
            img = thumbs.get(h.series_id)
            if img is not None and img.ndim == 2:
                info["image_size"] = img.shape
            pm = gray_to_pixmap(img, window, region=info.get("region")) if img is not None and img.ndim == 2 else None
            items.append((h, info, pm))
        self.last_elapsed_s = time.perf_counter() - self._t0
        msg = f"{len(resp.hits)} similar cases in {self.last_elapsed_s:.2f} s"
        if not resp.hits and resp.reason:
            msg = f"No similar cases: {resp.reason.rstrip('.')}."
        elif resp.reason:  # fewer than asked: say which filter removed the rest
            msg += f" ({resp.reason})"
        said = getattr(resp.region_query, "searched_for", "")
        if said:  # what the box was taken to hold, to check against what was drawn
            msg += f"\nSearched for {said}."
        self.panel.set_results(items, msg, results_for=self._results_for())
        self.results_shown.emit(resp)

    def _results_for(self) -> str:
        """Which study the cards answer (named, so that they are never read as another's)."""
        from casebook.viewer.core.services.study_list import display_name

        si = self.state.study_info
        what = " · ".join(x for x in (display_name(si.patient_name), si.patient_id, si.study_description,
                                      si.study_date) if x)
        if not what:
            v = self.state.volume
            what = f"{v.modality} {v.description}".strip() if v is not None else ""
        return f"Similar to: {what}" if what else ""

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
            return load_stored_volume(svc.catalog.store, int(hit.series_id), progress=progress, cancel=cancel,
                                      stacks=self.stacks)

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
        if getattr(hit, "matched_box", None) is not None:
            parts.append(f"<p><b>Matched finding</b>: {hit.matched_diameter_mm:.0f} mm, boxed on slice "
                         f"{hit.matched_slice + 1}; {html.escape(hit.confidence_text)}</p>")
        full = self._full_report_html(i.study_key)  # the whole report, as the study panel shows it
        if i.diagnosis and not full:
            parts.append(f"<p><b>Diagnosis</b>: {html.escape(i.diagnosis)}</p>")
        if full:
            parts.append(full)
        elif i.report_snippet:
            parts.append(f"<p>{html.escape(i.report_snippet)}</p>")
        if i.has_follow_up:
            parts.append("<p><i>This patient has follow-up studies.</i></p>")
        return "".join(parts)

    def _full_report_html(self, study_id: Any) -> str:
        """The analogue's report with its sections and diagnosis source ("" when none is stored)."""
        store = getattr(getattr(self._service, "catalog", None), "store", None)
        if store is None or study_id is None:
            return ""
        from casebook.viewer.core.services.reports.display import study_report

        try:
            view = study_report(store, int(study_id))
        except (CasebookError, TypeError, ValueError):
            return ""
        return view.html() if view.report is not None else ""

    def _open(self, hit: SearchHit, vol: Volume) -> None:
        g_a = MprGeometry(vol)
        o_a, idx_a = g_a.k_to_view(int(hit.matched_slice or 0))
        q_idx = None
        g = self.state.geometry
        if g is not None and hit.query_slice is not None:
            _o_q, q_idx = g.k_to_view(int(hit.query_slice))
        self._open_analogue(vol, self._report_html(hit), matched_slice=idx_a, query_slice=q_idx, orientation=o_a,
                            focus_box=getattr(hit, "matched_box", None))
