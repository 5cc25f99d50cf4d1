"""Fixtures for the render/Qt tests: real shared series as Volumes.

Volumes come from the project's own loader (``load_series``), never from a test-only stacker:
a loader failure fails the GUI test that needed the volume.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casebook.viewer.core.dicom.volume import Volume


def _stop_xvfb_after_exit() -> None:
    """Keep pytest-xvfb's server alive until this process has fully exited.

    VTK's OpenGL (GLX) teardown talks to the X server during interpreter finalisation, after
    atexit handlers; pytest-xvfb stops Xvfb in an atexit handler, so Xlib would hit a dead server
    and exit(1) after a green run. A detached watcher stops Xvfb once this process is gone.
    """
    try:
        import pytest_xvfb
    except ImportError:
        return
    inst = getattr(pytest_xvfb, "xvfb_instance", None)
    vd = getattr(inst, "_virtual_display", None) if inst is not None else None
    if vd is None:
        return
    try:
        xpid = int(vd.pid)
    except Exception:  # noqa: BLE001 - fall back to pytest-xvfb's own shutdown
        return
    import os
    import subprocess

    subprocess.Popen(["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.2; done; kill {xpid}"],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pytest_xvfb.xvfb_instance = None


def pytest_sessionfinish(session, exitstatus) -> None:
    _stop_xvfb_after_exit()


def close_gl_windows(windows: list) -> None:
    """Close the windows a test opened and release their GL contexts before the X server goes."""
    import gc

    from PySide6.QtWidgets import QApplication

    while windows:
        w = windows.pop()
        w.close()
        for viewer in getattr(w, "all_viewers", lambda: [w])():
            viewer.close_adapters()
        w.deleteLater()
        del w
    QApplication.processEvents()
    gc.collect()


def load(path: Path) -> Volume:
    """The project's own loader: a GUI test on a volume the product cannot load would test nothing."""
    from casebook.viewer.core.dicom import load_series

    return load_series(path)


@pytest.fixture(scope="session")
def ct_volume(need_shared) -> Volume:
    return load(need_shared("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010"))


@pytest.fixture(scope="session")
def sag_mr_volume(need_shared) -> Volume:
    return load(need_shared("dicom", "pylibjpeg_data", "JPEGLossless", "JPEGLossless_1s_1f_u_16_12.dcm"))


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from casebook.viewer.core.config import load_settings

    monkeypatch.setenv("CASEBOOK_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setenv("CASEBOOK_CONFIG", str(tmp_path / "settings.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return load_settings()


def windowed(img: np.ndarray, center: float, width: float) -> np.ndarray:
    """What a linear grey ramp over [c - w/2, c + w/2] shows, 0..255."""
    return np.clip((img.astype(np.float64) - (center - width / 2.0)) / width * 255.0, 0, 255)


GRID = 16


def thumb_embedding(img: np.ndarray) -> np.ndarray:
    """A crude real-pixel slice descriptor (16x16 area means, robust z-score) for a test library."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    r = np.linspace(0, a.shape[0], GRID + 1).astype(int)
    c = np.linspace(0, a.shape[1], GRID + 1).astype(int)
    t = np.array([[a[r[i]:max(r[i + 1], r[i] + 1), c[j]:max(c[j + 1], c[j] + 1)].mean() for j in range(GRID)]
                  for i in range(GRID)])
    med, iqr = np.median(t), np.subtract(*np.percentile(t, [75, 25]))
    v = np.clip((t - med) / (iqr + 1e-6), -6, 6).ravel() + 1e-3
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="session")
def gui_library(tmp_path_factory, need_shared):
    """A real library: shared CT/COVID DICOM ingested, per-slice embeddings, a few fixture reports."""
    from casebook.index.case_store.store import CaseStore
    from casebook.viewer.core.config import Settings
    from casebook.viewer.core.services.ingest import ingest
    from casebook.viewer.core.services.library import load_stored_volume

    ct = need_shared("dicom", "dcm_qa_ct", "In")
    covid = need_shared("temporal", "covid19_ny_sbu", "data-sample")
    root = tmp_path_factory.mktemp("gui-library")
    settings = Settings(library_dir=root, model="testpix")
    store = CaseStore.open(settings.database_path)
    ingest([ct, covid], store)
    model = store.register_model("testpix", "1", "0" * 64, GRID * GRID, "2d-slice")
    head = None
    for se in store.list_series():
        vol = load_stored_volume(store, se.id)
        vecs = np.stack([thumb_embedding(vol.voxels[k]) for k in range(vol.shape[0])])
        store.put_embeddings(model.id, se.id, list(range(len(vecs))), vecs)
        if "/dcm_qa_ct/In/GE/" in store.series_files(se.id)[0].path:
            head = se.id
    for se in store.list_series():
        if se.id != head and se.modality == "CT":
            store.set_report(se.study_id, findings="Fixture report: chest CT, no acute findings.",
                             impression="normal", diagnosis="normal (fixture)")
    from casebook.viewer.core.services.regions import embed_and_index_regions

    regions = embed_and_index_regions(store, settings.index_dir)  # the findings a box is matched against
    assert not regions.failed and regions.indexed.get("CT", 0) > 0, regions.text()
    store.close()
    return settings, head


class PixelEncoder:
    """A ``QueryEncoder`` over the same descriptor as the test library (ROI crops, folders)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.model_key = "testpix@1"
        self.dim = GRID * GRID
        self.boxes: list[tuple[int, ...]] = []

    def encode_roi(self, series_id, box):
        from casebook.viewer.core.services.library import load_stored_volume, open_store
        from casebook.viewer.core.services.search import QueryVectors

        self.boxes.append(tuple(box))
        store = open_store(self.settings, create=False)
        try:
            vol = load_stored_volume(store, int(series_id))
        finally:
            store.close()
        k0, k1, j0, j1, i0, i1 = box
        crop = vol.voxels[k0:k1, j0:j1, i0:i1]
        vecs = np.stack([thumb_embedding(crop[k]) for k in range(crop.shape[0])])
        return QueryVectors(vecs, list(range(k0, k0 + crop.shape[0])), f"ROI {box}")

    def encode_folder(self, path):
        from casebook.viewer.core.services.search import QueryVectors

        vol = load(Path(path))
        return QueryVectors(np.stack([thumb_embedding(vol.voxels[k]) for k in range(vol.shape[0])]),
                            list(range(vol.shape[0])), f"folder {path}")


@pytest.fixture
def pixel_encoder(gui_library):
    return PixelEncoder(gui_library[0])


@pytest.fixture
def main_window(qtbot, monkeypatch, tmp_path):
    """``main_window(settings, size=(w, h))`` -> a shown MainWindow (no 3D), closed with its VTK
    adapters after the test; window geometry is kept out of the user's own settings."""
    from PySide6.QtWidgets import QApplication

    from casebook.viewer.qt.main_window import MainWindow

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-window"))
    made = []

    def make(settings, size=(1500, 900)):
        win = MainWindow(settings, with_3d=False)
        qtbot.addWidget(win)
        win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        made.append(win)
        return win

    yield make
    from PySide6.QtCore import QSettings

    for win in made:
        win.close()
        for v in win.all_viewers():
            v.close_adapters()
    QApplication.processEvents()
    # closing saved this test's dock layout (hidden, floating docks); QSettings keeps the first
    # location it read for the whole process, so the next test's window would restore it
    QSettings("Casebook", "Casebook").remove("main")
