"""``casebook --self-test``: does this installation work, end to end, on this machine?

Run by an IT person after installing the bundle, and by CI on the freshly built bundle. It drives
the real main window from outside, the way a reader would, on a throwaway library in a temporary
folder (the user's library, settings and window geometry are never touched):

1. ``window``  the main window opens (Qt platform plugin, OpenGL, icons, theme); the time from
   the process start to the first window is the cold-start figure of the installer build;
2. ``library`` a tiny phantom library (4 patients, CT and MR) is written by spawned worker
   processes, which is what a frozen bundle most easily gets wrong (``freeze_support``);
3. ``decode``  a JPEG 2000 copy of one CT series, written with the shipped openjpeg encoder,
   loads to the same voxels (the pixel decoders are plug-ins found by name: a bundle can lose them);
4. ``import``  it is imported through the window's import path: ingest, embed with the shipped
   default encoder on onnxruntime, build the HNSW index;
5. ``open``    a stored CT series opens in the viewer;
6. ``search``  *Find similar* on it returns result cards from the other patients;
7. ``slice``   the axial view shows the image (read back from the GL buffer, not assumed);
8. ``3d``      the 3D view shows the volume rendering.

Each step prints what it checked; the first failure stops the run (later steps depend on it) and
is named. Steps time out instead of hanging, so a CI job or a remote session always gets an answer.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from casebook.common.errors import CasebookError

log = logging.getLogger(__name__)

STEPS: tuple[str, ...] = ("window", "library", "decode", "import", "open", "search", "slice", "3d")

# the tiny library: small enough for seconds on a 2-core CI runner, varied enough to search
PATIENTS, SIZE, SLICES = 4, 64, 16


class SelfTestError(CasebookError):
    """One self-test step found this installation not working; the message says what."""


@dataclass
class StepResult:
    """The outcome of one step: ``ok`` False with ``detail`` saying what was wrong."""

    name: str
    ok: bool
    detail: str
    seconds: float


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (the bundle's bootloader included), or ``None``
    where the platform does not tell. Linux: /proc start time against the boot clock;
    Windows: the process creation time."""
    try:
        if sys.platform.startswith("linux"):
            fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            start_ticks = int(fields[19])  # field 22 of stat(5), counting after the command name
            return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        if sys.platform == "win32":
            import ctypes
            from ctypes import wintypes

            ft = [wintypes.FILETIME() for _ in range(4)]
            k32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            if not k32.GetProcessTimes(k32.GetCurrentProcess(), *[ctypes.byref(f) for f in ft]):
                return None
            created = (ft[0].dwHighDateTime << 32 | ft[0].dwLowDateTime) / 1e7 - 11644473600.0
            return time.time() - created
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return None


class _Run:
    """State shared by the steps of one self-test run."""

    def __init__(self, workdir: Path, timeout_s: float) -> None:
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.app: Any = None
        self.win: Any = None
        self.settings: Any = None
        self.studies: list[Any] = []
        self.series_id: int | None = None
        self.response: Any = None
        self.dialogs: list[str] = []  # texts of modal message boxes the window raised
        self._watch: Any = None

    def watch_dialogs(self) -> None:
        """Close modal message boxes as they appear (the window shows one when a worker fails),
        keeping their text: unattended, a modal box would wait for a click that never comes."""
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication, QMessageBox

        def close_modal() -> None:
            w = QApplication.activeModalWidget()
            if isinstance(w, QMessageBox):
                self.dialogs.append(" ".join(w.text().split()))
                w.done(0)

        self._watch = QTimer()
        self._watch.setInterval(100)
        self._watch.timeout.connect(close_modal)
        self._watch.start()

    # -- waiting without a test framework ------------------------------------------------------
    def wait(self, done: Callable[[], bool], what: str, timeout_s: float | None = None) -> None:
        """Run the event loop until ``done()`` or the timeout (then a :class:`SelfTestError`)."""
        from PySide6.QtCore import QEventLoop

        limit = time.monotonic() + (timeout_s or self.timeout_s)
        while not done():
            if time.monotonic() > limit:
                raise SelfTestError(f"{what}: not done after {timeout_s or self.timeout_s:.0f} s")
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.005)

    def run_worker(self, worker: Any, what: str) -> Any:
        """Wait for a started :class:`FunctionWorker`; its result, or its failure as the error."""
        out: dict[str, Any] = {}
        worker.signals.result.connect(lambda r: out.setdefault("result", r))
        worker.signals.failed.connect(lambda m: out.setdefault("failed", m))
        worker.signals.cancelled.connect(lambda: out.setdefault("failed", "cancelled"))
        self.wait(lambda: bool(out), what)
        if "failed" in out:
            raise SelfTestError(f"{what} failed: {out['failed']}")
        return out["result"]

    # -- the steps -----------------------------------------------------------------------------
    def step_window(self) -> str:
        from PySide6.QtCore import QSettings

        from casebook.viewer.core.config import Settings

        from .app import ensure_app
        from .icons import app_icon
        from .main_window import MainWindow
        from .theme import apply_theme

        # window geometry and the like go to the work folder, not the user's QSettings
        QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(self.workdir / "qt"))
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(self.workdir / "qt"))
        self.settings = Settings(library_dir=self.workdir / "library")
        self.app = ensure_app()
        self.watch_dialogs()
        apply_theme(self.app, self.settings.theme)
        self.app.setWindowIcon(app_icon())
        self.win = MainWindow(self.settings, with_3d=True)
        self.win.resize(1280, 800)
        self.win.show()
        self.win.open_library_when_shown()  # as `casebook gui` does: after the first paint (an empty library)
        self.wait(lambda: self.win.first_exposed is not None, "the main window did not appear on the screen",
                  timeout_s=60)
        # the figure is taken when the window reached the screen, not after the library opened
        exposed_at, cpu = self.win.first_exposed
        since = seconds_since_process_start()
        if since is not None:
            since -= time.monotonic() - exposed_at
        self.wait(lambda: self.win.library_opened, "the library did not open after the first window", timeout_s=60)
        from casebook.viewer.render.widget import gl_renderer_name

        gl = gl_renderer_name(self.win.viewer.viewports["axial"].render_window) or "unknown"
        when = f"{since:.2f} s after the process started" if since is not None else "(process start unknown)"
        when += f" ({cpu:.2f} s CPU"
        if hasattr(os, "getloadavg"):
            when += f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        when += ")"
        where = (f"frozen bundle {Path(sys.executable).parent}" if getattr(sys, "frozen", False)
                 else f"Python {sys.prefix}")
        return f"main window shown {when}; {where}; Qt platform {self.app.platformName()}, OpenGL {gl}"

    def step_library(self) -> str:
        from casebook.viewer.core.demo.phantom import PhantomOptions, generate_library

        opts = PhantomOptions(patients=PATIENTS, size=SIZE, slices=SLICES, big_slices=0, follow_up_share=0.5)
        self.studies = generate_library(self.workdir / "dicom", opts, workers=2)
        files = sum(len(s.files) for st in self.studies for s in st.series)
        series = sum(len(st.series) for st in self.studies)
        if not files:
            raise SelfTestError("the phantom library has no files")
        return (f"{len(self.studies)} studies, {series} series, {files} DICOM files written by 2 spawned "
                f"worker processes")

    def step_decode(self) -> str:
        import pydicom
        from pydicom.uid import JPEG2000Lossless

        from casebook.viewer.core.dicom import load_series

        ct = next((s for st in self.studies for s in st.series if st.modality == "CT" and s.plane == "axial"), None)
        if ct is None:
            raise SelfTestError("the phantom library has no axial CT series")
        out = self.workdir / "j2k"
        out.mkdir(exist_ok=True)
        for n, f in enumerate(sorted(ct.files)):
            ds = pydicom.dcmread(f)
            try:
                ds.compress(JPEG2000Lossless)
            except Exception as exc:  # noqa: BLE001 - pydicom reports a missing encoder in several ways
                raise SelfTestError(f"JPEG 2000 encoding failed (openjpeg missing?): {exc}") from exc
            ds.save_as(out / f"{n:04d}.dcm")
        plain, j2k = load_series(sorted(ct.files)[0].parent), load_series(out)
        if j2k.shape != plain.shape or not np.array_equal(np.asarray(j2k.voxels), np.asarray(plain.voxels)):
            raise SelfTestError(f"the JPEG 2000 copy decodes to other voxels ({j2k.shape} vs {plain.shape})")
        return f"JPEG 2000 lossless copy of a CT series ({len(ct.files)} files) decodes to the same voxels"

    def step_import(self) -> str:
        expected = sum(len(st.series) for st in self.studies)
        report = self.run_worker(self.win.import_path(self.workdir / "dicom"), "the import")
        dlg = getattr(self.win, "import_report", None)
        if dlg is not None:
            dlg.close()
        ing, idx = report.ingest, report.index
        if ing.series_stored < expected:
            raise SelfTestError(f"{ing.series_stored} of {expected} series stored; skipped: "
                                + "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:3]))
        if idx.problem or idx.embedded < expected or idx.vectors <= 0:
            raise SelfTestError(f"embedding/indexing incomplete: {idx.text()}")
        self.wait(lambda: self.win.browser.row_count() >= len({st.patient_id for st in self.studies}) // 2,
                  "the study browser did not list the imported studies", timeout_s=30)
        return f"{ing.series_stored} series stored; {idx.text()}; {self.win.browser.row_count()} studies listed"

    def step_open(self) -> str:
        from casebook.viewer.core.services.library import open_store

        store = open_store(self.settings, create=False)
        try:
            ct = [s for s in store.list_series() if s.modality == "CT" and s.slice_count >= SLICES]
        finally:
            store.close()
        if not ct:
            raise SelfTestError("no stored CT series to open")
        axial = [s for s in ct if " AX" in s.description.upper()] or ct
        target = axial[min(1, len(axial) - 1)]  # not the first patient's: its search has fewer peers
        self.series_id = target.id
        self.run_worker(self.win.open_stored(target.id), f"opening stored series {target.id}")
        self.wait(lambda: self.win.state.volume is not None and self.win.current_series_id == target.id,
                  f"series {target.id} did not reach the viewer", timeout_s=30)
        v = self.win.state.volume
        return f"stored CT series {target.id} open: {v.shape[0]}×{v.shape[1]}×{v.shape[2]} voxels"

    def step_search(self) -> str:
        ctl = self.win.similar_controller
        got: dict[str, Any] = {}
        ctl.results_shown.connect(lambda r: got.setdefault("resp", r))
        ctl.search_failed.connect(lambda m: got.setdefault("failed", m))
        self.win.similar.buttons["series"].click()
        self.wait(lambda: bool(got), "Find similar")
        if "failed" in got:
            raise SelfTestError(f"Find similar failed: {got['failed']}")
        resp = got["resp"]
        if not resp.hits:
            raise SelfTestError(f"Find similar found nothing: {self.win.similar.status.text()}")
        if len(self.win.similar.cards) != len(resp.hits):
            raise SelfTestError(f"{len(resp.hits)} results but {len(self.win.similar.cards)} cards on screen")
        scores = [h.score for h in resp.hits]
        if scores != sorted(scores, reverse=True):
            raise SelfTestError("results are not ordered by score")
        self.response = resp
        return f"{len(resp.hits)} similar series shown as cards, best score {scores[0]:.3f}"

    def _grab(self, view: str) -> np.ndarray:
        from casebook.viewer.render.capture import grab_render_window

        self.win.viewer.flush_renders()
        self.app.processEvents()
        return grab_render_window(self.win.viewer.viewports[view].render_window)

    @staticmethod
    def _content(rgb: np.ndarray) -> tuple[float, int]:
        """Share of pixels that differ from the view's background (the corner colour), and the
        number of distinct grey levels among them."""
        grey = rgb.astype(np.int32).sum(axis=2)
        bg = np.median(np.concatenate([grey[:4, :4].ravel(), grey[-4:, -4:].ravel()]))
        fg = grey[np.abs(grey - bg) > 12]
        return fg.size / max(grey.size, 1), int(np.unique(fg // 3).size)

    def step_slice(self) -> str:
        rgb = self._grab("axial")
        share, levels = self._content(rgb)
        if share < 0.05 or levels < 16:
            raise SelfTestError(f"the axial view shows no image ({share:.1%} of pixels drawn, {levels} grey levels)")
        return f"axial slice drawn: {rgb.shape[1]}×{rgb.shape[0]} px, {share:.0%} of the view, {levels} grey levels"

    def step_3d(self) -> str:
        if "3d" not in self.win.viewer.viewports:
            raise SelfTestError("the viewer has no 3D view")
        self.win.state.set_layout("2x2")
        self.app.processEvents()
        rgb = self._grab("3d")
        share, levels = self._content(rgb)
        if share < 0.01 or levels < 4:
            raise SelfTestError(f"the 3D view shows no rendering ({share:.1%} of pixels drawn)")
        return f"3D volume rendering drawn: {share:.0%} of the view, {levels} levels"

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self.win is None:
            return
        try:
            for viewer in self.win.all_viewers():
                viewer.close_adapters()
            self.win.hide()
            self.win.deleteLater()
            self.app.processEvents()
        except Exception:  # noqa: BLE001 - tearing down must not hide the steps' outcome
            log.debug("self-test: closing the window failed", exc_info=True)
        self.win = None


def run_self_test(report: Callable[[StepResult], None] | None = None, *, workdir: Path | None = None,
                  keep: bool = False, timeout_s: float = 180.0,
                  steps: tuple[str, ...] = STEPS) -> list[StepResult]:
    """Run the steps in order (see the module docstring); ``report`` gets each result as it is
    known. Stops at the first failed step. The temporary work folder is removed unless ``keep``.
    ``steps`` is a leading part of :data:`STEPS` (each step needs the ones before it): ``("window",)``
    opens the window and closes it, which is what a repeated start-up measurement needs."""
    if not steps or tuple(steps) != STEPS[:len(steps)]:
        raise SelfTestError(f"self-test steps must be a leading part of {', '.join(STEPS)}; got {', '.join(steps)}")
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="casebook-self-test-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(work, timeout_s)
    results: list[StepResult] = []
    try:
        for name in steps:
            t = time.perf_counter()
            fn = getattr(run, f"step_{name}")
            try:
                detail, ok = fn(), True
            except Exception as exc:  # noqa: BLE001 - every failure is this step's finding
                log.debug("self-test step %s failed", name, exc_info=True)
                msg = " ".join(str(exc).split()) or type(exc).__name__
                if not isinstance(exc, CasebookError):
                    msg = f"{type(exc).__name__}: {msg}"
                if run.dialogs and run.dialogs[-1] not in msg:
                    msg += f" (the window said: {run.dialogs[-1]})"
                detail, ok = msg, False
            res = StepResult(name, ok, detail, time.perf_counter() - t)
            results.append(res)
            if report is not None:
                report(res)
            if not ok:
                break
    finally:
        run.close()
        if own and not keep:
            shutil.rmtree(work, ignore_errors=True)
    return results
