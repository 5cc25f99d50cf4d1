"""PACS in the window: the Query/Retrieve dialog, node settings with Echo, and the push listener
(started right after the window's first paint when ``pacs.scp_enabled`` is on). Searches,
retrieves and echoes run on workers; the dialog shows progress, Cancel and every failure with the
node and the reason."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMenu, QWidget

from casebook.common.errors import CasebookError
from casebook.viewer.core.config import Settings

from .. import workers

if TYPE_CHECKING:
    from casebook.viewer.core.services import pacs

    from ..views.query_retrieve import NodeSettingsDialog, QueryRetrieveDialog

# The PACS services (pydicom, pynetdicom, dicomweb-client, the case store) and the dialogs load
# when the reader first opens Query/Retrieve or when the push listener starts, not with the
# window: installing adds one menu entry.

log = logging.getLogger(__name__)


def _search_task(settings: Settings, query: pacs.StudyQuery, node: str | None, *, progress, cancel, signals):
    from casebook.viewer.core.services import pacs

    progress(0, 0, f"searching {node or 'the PACS'}")
    return pacs.search(settings, query, node, cancel=cancel)


def _retrieve_task(settings: Settings, studies: list[pacs.RemoteStudy], scp: pacs.StorageSCP | None, *, progress,
                   cancel, signals):
    from casebook.viewer.core.services import pacs

    results = []
    for i, s in enumerate(studies):
        label = f"study {i + 1} of {len(studies)}: " if len(studies) > 1 else ""
        results.append(pacs.retrieve_study(settings, s.study_uid, node=s.node, scp=scp,
                                           progress=lambda d, t, m: progress(d, t, label + m), cancel=cancel))
    pacs.mark_local(settings, studies)
    return results


def _echo_task(settings: Settings, node: pacs.Node, *, progress, cancel, signals):
    from casebook.viewer.core.services import pacs

    cfg = pacs.load_config(settings)
    node.check("the node dialog")
    return pacs.dimse.echo(cfg, node) if node.is_dimse else _web_echo(cfg, node)


def _web_echo(cfg: pacs.PacsConfig, node: pacs.Node) -> float:
    import time

    from casebook.viewer.core.services import pacs

    t0 = time.perf_counter()
    pacs.dicomweb.search_studies(cfg, node, pacs.StudyQuery(limit=1))
    return time.perf_counter() - t0


class PacsController(QObject):
    """Owns the Query/Retrieve dialog and the push listener of one window."""

    library_changed = Signal()

    def __init__(self, parent: QWidget, settings: Callable[[], Settings]) -> None:
        super().__init__(parent)
        self._parent = parent
        self._settings = settings
        self.dialog: QueryRetrieveDialog | None = None
        self.node_dialog: NodeSettingsDialog | None = None
        self.worker: workers.FunctionWorker | None = None
        self.listener: pacs.PushListener | None = None

    # ---- the dialog
    def open_dialog(self) -> QueryRetrieveDialog:
        from ..views.query_retrieve import QueryRetrieveDialog

        if self.dialog is None:
            d = QueryRetrieveDialog(self._parent)
            d.search_requested.connect(self.search)
            d.retrieve_requested.connect(self.retrieve)
            d.cancel_requested.connect(self.cancel)
            d.nodes_requested.connect(self.open_nodes)
            self.dialog = d
        self._fill_nodes()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _config(self) -> pacs.PacsConfig | None:
        from casebook.viewer.core.services import pacs

        try:
            return pacs.load_config(self._settings())
        except CasebookError as exc:
            if self.dialog is not None:
                self.dialog.show_status(str(exc), error=True)
            return None

    def _fill_nodes(self) -> None:
        from casebook.viewer.core.services import pacs

        assert self.dialog is not None
        cfg = self._config()
        if cfg is None:
            return
        self.dialog.set_nodes(cfg.nodes, self.dialog.node_name())
        if not cfg.nodes:
            self.dialog.show_status(f"No PACS node is configured yet: add one with Nodes… (saved to {cfg.path})")
        incomplete = pacs.incomplete_retrieves(self._settings().library_dir)
        if incomplete and cfg.nodes:
            self.dialog.show_status(f"{len(incomplete)} earlier retrieve(s) did not finish; search the study and "
                                    "retrieve it again to finish it")

    def _query(self) -> pacs.StudyQuery | None:
        from casebook.viewer.core.services import pacs

        d = self.dialog
        assert d is not None
        try:
            d0, d1 = pacs.parse_date_arg(d.date_from.text()), pacs.parse_date_arg(d.date_to.text())
        except ValueError as exc:
            d.show_status(str(exc), error=True)
            return None
        return pacs.StudyQuery(patient_id=d.patient_id.text(), patient_name=d.patient_name.text(), date_from=d0,
                               date_to=d1, modality=d.modality.currentText(), accession_number=d.accession.text(),
                               description=d.description.text())

    def search(self) -> None:
        d = self.dialog
        if d is None or self.worker is not None:
            return
        q = self._query()
        if q is None:
            return
        if d.node_name() is None:
            d.show_status("No node to search: add one with Nodes…", error=True)
            return
        w = workers.FunctionWorker(_search_task, self._settings(), q, d.node_name())
        w.signals.result.connect(self._searched)
        self._run(w, cancellable=True)

    def _searched(self, studies: list[pacs.RemoteStudy]) -> None:
        assert self.dialog is not None
        self.dialog.set_studies(studies)
        local = sum(1 for s in studies if s.local == "yes")
        self.dialog.show_status(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found"
                                + (f", {local} already in the library" if local else ""))

    def retrieve(self) -> None:
        d = self.dialog
        if d is None or self.worker is not None:
            return
        studies = d.selected_studies()
        if not studies:
            return
        # a C-MOVE goes to the push listener when it runs (same port): it counts the study's images
        scp = self.listener.scp if self.listener is not None and self.listener.scp.running else None
        w = workers.FunctionWorker(_retrieve_task, self._settings(), studies, scp)
        w.signals.result.connect(self._retrieved)
        self._run(w, cancellable=True)

    def _retrieved(self, results: list[pacs.RetrieveResult]) -> None:
        assert self.dialog is not None
        self.dialog.set_studies(self.dialog.studies)  # local marks refreshed by the task
        bad = [r for r in results if not r.complete]
        images = sum(r.transferred for r in results)
        if bad:
            self.dialog.show_status("; ".join(f"PACS node {r.node!r}: {r.problem}" for r in bad), error=True)
        else:
            self.dialog.show_status(f"Retrieved {len(results)} stud{'y' if len(results) == 1 else 'ies'} "
                                    f"({images} images over the network) into the library")
        self.library_changed.emit()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            if self.dialog is not None:
                self.dialog.show_status("Stopping…")

    def _run(self, w: workers.FunctionWorker, *, cancellable: bool) -> None:
        d = self.dialog
        assert d is not None
        self.worker = w
        d.set_busy(True, cancellable=cancellable)
        w.signals.progress.connect(d.show_progress)
        w.signals.failed.connect(lambda msg: d.show_status(msg, error=True))
        w.signals.cancelled.connect(lambda: (d.show_status("Cancelled: what arrived is kept, not shown until a "
                                                           "retrieve completes it"), self.library_changed.emit()))
        w.signals.finished.connect(self._done)
        workers.start(w)

    def _done(self) -> None:
        self.worker = None
        if self.dialog is not None:
            self.dialog.set_busy(False, cancellable=False)

    # ---- node settings
    def open_nodes(self) -> NodeSettingsDialog | None:
        from ..views.query_retrieve import NodeSettingsDialog

        cfg = self._config()
        if cfg is None:
            return None
        loc = cfg.local
        text = (f"Casebook is AE title {loc.ae_title}; its storage SCP listens on {loc.scp_bind}:{loc.scp_port} "
                f"({'on' if loc.scp_enabled else 'off'} at start). Each DIMSE node must know Casebook under that AE "
                f"title, host and port. Saved to {cfg.path}.")
        dlg = NodeSettingsDialog(cfg.nodes, text, self._parent)
        dlg.echo_requested.connect(lambda node: self._echo(dlg, node))
        dlg.buttons.accepted.connect(lambda: self._save_nodes(dlg, cfg.path))
        self.node_dialog = dlg
        dlg.show()
        return dlg

    def _echo(self, dlg: NodeSettingsDialog, node: pacs.Node) -> None:
        dlg.show_echo("Echo…", True)
        w = workers.FunctionWorker(_echo_task, self._settings(), node)
        w.signals.result.connect(lambda secs: dlg.show_echo(f"{node.name}: echo ok in {secs * 1000:.0f} ms", True))
        w.signals.failed.connect(lambda msg: dlg.show_echo(msg, False))
        workers.start(w)

    def _save_nodes(self, dlg: NodeSettingsDialog, path: Path | None) -> None:
        from casebook.viewer.core.services import pacs

        try:
            pacs.save_nodes(path or pacs.nodes_file(self._settings()), dlg.result_nodes())
        except (CasebookError, OSError) as exc:
            dlg.error.setText(str(exc))
            return
        dlg.accept()
        if self.dialog is not None:
            self._fill_nodes()

    # ---- push listener
    def start_listener_if_enabled(self) -> None:
        """Listen for pushed studies when the settings say so (off by default)."""
        s = self._settings()
        if not s.pacs.scp_enabled or self.listener is not None:
            return
        from casebook.viewer.core.services import pacs

        try:
            self.listener = pacs.PushListener(s, on_ingested=lambda h, p: self.library_changed.emit()).start()
        except CasebookError as exc:
            log.warning("storage SCP not started: %s", exc)
            self.listener = None

    def stop_listener(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None


def install_pacs(window: Any, menu: QMenu) -> PacsController:
    """Add *Query/Retrieve…* to ``menu``, refresh the window's library after retrieves and pushes,
    and start the push listener if enabled (one call from the main window)."""
    ctl = PacsController(window, lambda: window.settings)
    window.pacs_controller = ctl
    window._act("Query/Retrieve…", "Ctrl+Shift+R", ctl.open_dialog, menu)
    ctl.library_changed.connect(window.refresh_library)
    # the listener (pynetdicom, the case store) starts once the window is on the screen
    after_paint = getattr(window, "run_after_first_paint", None)
    if after_paint is not None:
        after_paint(ctl.start_listener_if_enabled)
    else:
        ctl.start_listener_if_enabled()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(ctl.stop_listener)
    return ctl


__all__ = ["PacsController", "install_pacs"]
