"""Viewer speed under a real X server with software OpenGL (run under Xvfb, e.g. xvfb-run).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/viewer.py [--screenshots docs]

Prints: launch-to-first-image (window creation + first rendered slice of a 300-slice 512² CT),
slices/s while scrolling that series in a 1x1 and a 2x2 layout (each step renders every affected
view), against the targets (≤ 3 s, ≥ 30 slices/s). True MPR: the same voxels as a 15° gantry-
tilted and as a 15° oblique acquisition (every view a resliced true patient plane), and the
straight series with its planes turned 20° (oblique MPR), scrolled the same way; each rate is
printed against the straight series' array-slicing rate measured in the same run. The series is real CT (dcm_qa_ct Philips,
29 slices 512²) restacked to 300 slices. Find-similar timing needs the case store and encoder.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

T_START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]


def ct_series(n: int = 300):
    import pydicom

    from casebook.viewer.core.dicom.volume import Volume

    shared = Path(os.environ.get("CASEBOOK_SHARED", REPO.parent / "shared")) / "data"
    folder = shared / "dicom" / "dcm_qa_ct" / "In" / "Philips" / "S21570" / "S2010"
    dss = [pydicom.dcmread(f) for f in sorted(folder.iterdir()) if f.is_file()]
    dss = sorted((d for d in dss if "ImagePositionPatient" in d and "PixelData" in d), key=lambda d: float(d.ImagePositionPatient[2]))
    base = np.stack([d.pixel_array.astype(np.int16) * int(d.RescaleSlope) + int(d.RescaleIntercept) for d in dss])
    vox = np.concatenate([base, base[::-1]] * (n // (2 * len(base)) + 1))[:n].astype(np.int16)
    ps = [float(x) for x in dss[0].PixelSpacing]
    return Volume(vox, (1.0, ps[0], ps[1]), tuple(float(x) for x in dss[0].ImagePositionPatient), np.eye(3),
                  modality="CT", description="restacked CT 512²", window=(40.0, 400.0))


def tilted(vol, degrees: float = 15.0, oblique: bool = False):
    """The same voxels as a gantry-tilted acquisition (slices stacked along a vector tilted
    ``degrees`` from their normal) or, with ``oblique``, as an acquisition turned ``degrees``
    about the L-R axis: both are resliced into true axial/coronal/sagittal planes."""
    from casebook.viewer.core.dicom.volume import GeometryReport, Volume

    t = np.radians(degrees)
    row = np.array([1.0, 0.0, 0.0])
    rep = GeometryReport()
    if oblique:
        col = np.array([0.0, np.cos(t), -np.sin(t)])
        kdir = np.cross(row, col)
    else:
        col = np.array([0.0, 1.0, 0.0])
        kdir = np.array([0.0, np.sin(t), np.cos(t)])  # the tilt: each slice shifted towards P
        rep.gantry_tilt_deg = degrees
    sk = vol.spacing[0]
    pos = np.asarray(vol.origin) + np.arange(vol.shape[0])[:, None] * sk * kdir
    kind = "oblique" if oblique else "gantry-tilted"
    return Volume(vol.voxels, vol.spacing, vol.origin, np.column_stack([row, col, kdir]), modality="CT",
                  description=f"{kind} {degrees:g}° CT 512²", window=(40.0, 400.0), geometry=rep,
                  slice_positions=pos)


def mpr_rates(app, win, vol, n: int) -> None:
    """Scroll rates of resliced series against the straight series' array slicing, same run."""

    cpu_ms: dict[tuple[str, str], float] = {}  # CPU ms per slice (user+sys, this process: the machine is shared)

    def rate(layout: str, view: str, rotate: float = 0.0) -> float:
        win.state.set_layout(layout)
        win.state.set_active_view(view)
        if rotate:
            win.state.rotate_plane("axial", rotate)
        app.processEvents()
        win.viewer.flush_renders()
        win.state.set_slice(view, 0)
        win.viewer.flush_renders()
        steps = min(n, win.state.n_slices(view) - 1)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            win.state.scroll(view, 1)
            win.viewer.flush_renders()
            app.processEvents()
        cpu_ms[(layout, view)] = 1000.0 * (time.process_time() - c) / steps
        return steps / (time.perf_counter() - t)

    from casebook.viewer.core.viewstate import StudyInfo

    rows = []
    for label, volume, rot in (("straight (array slices, baseline)", vol, 0.0),
                               ("gantry tilt 15° (resliced)", tilted(vol), 0.0),
                               ("oblique 15° (resliced)", tilted(vol, oblique=True), 0.0),
                               ("straight, planes turned 20° (oblique MPR)", vol, 20.0)):
        win.show_volume(volume, StudyInfo(patient_name="DEMO^PATIENT"))
        app.processEvents()
        g = win.state.geometry
        r1 = rate("1x1", "axial", rot)
        c1 = cpu_ms[("1x1", "axial")]
        r4 = rate("2x2", "axial")
        rows.append((label, r1, r4, g.is_resliced if not rot else True, c1, cpu_ms[("2x2", "axial")]))
    base1, base4 = rows[0][1], rows[0][2]
    print(f"true MPR, scrolling the axial view of a 300-slice 512² series (target >= 30 slices/s in 1x1); "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; CPU ms per "
          "slice is user+sys of this process (1000/that = the rate on an idle core):")
    for label, r1, r4, resliced, c1, c4 in rows:
        print(f"  {label:44s} 1x1 {r1:6.1f} slices/s [{r1 / 30:.2f}x of target, {r1 / base1:.2f}x of straight], "
              f"{c1:5.1f} CPU ms/slice  2x2 {r4:6.1f} slices/s [{r4 / base4:.2f}x of straight], {c4:5.1f} CPU ms/slice"
              f"{'' if resliced or label.startswith('straight (') else '  NOT RESLICED'}")


def mpr_screenshot(app, win, grab, save_png, out: Path) -> None:
    """The 18.5° gantry-tilted GE head CT (dcm_qa_ct) in 2x2, resliced into true planes, with the
    crosshair axes turned 20° in the axial view (oblique coronal and sagittal)."""
    from casebook.viewer.core.dicom import load_volume, scan
    from casebook.viewer.core.viewstate import StudyInfo

    shared = Path(os.environ.get("CASEBOOK_SHARED", REPO.parent / "shared")) / "data"
    (stack,) = scan([shared / "dicom" / "dcm_qa_ct" / "In" / "GE"]).stacks
    win.show_volume(load_volume(stack), StudyInfo(patient_name="DEMO^PATIENT"))
    win.state.set_layout("2x2")
    win.state.apply_preset("brain")
    win.state.rotate_plane("axial", 20.0)
    for _ in range(10):
        app.processEvents()
    win.viewer.flush_renders()
    out.mkdir(parents=True, exist_ok=True)
    save_png(_compose(win, grab), out / "true-mpr-tilted.png")
    print(f"wrote {out / 'true-mpr-tilted.png'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--screenshots", type=Path, help="write PNG screenshots of the main states here")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--mpr-only", action="store_true", help="only the true-MPR scroll rates (no Find similar)")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    vol = ct_series(args.slices)
    t0 = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from casebook.viewer.core.viewstate import StudyInfo
    from casebook.viewer.qt.main_window import MainWindow
    from casebook.viewer.render.capture import grab_render_window, save_png
    from casebook.viewer.render.widget import gl_renderer_name

    win = MainWindow()
    win.resize(1600, 1000)
    win.show()
    app.processEvents()
    win.show_volume(vol, StudyInfo(patient_name="DEMO^PATIENT"))
    app.processEvents()
    win.viewer.flush_renders()
    grab_render_window(win.viewer.viewports["axial"].render_window, render=False)
    t_first = time.perf_counter() - t0
    gl = gl_renderer_name(win.viewer.viewports["axial"].render_window) or "unknown GL"
    print(f"OpenGL renderer: {gl}")
    print(f"launch to first image: {t_first:.2f} s (window + first slice; target <= 3 s) "
          f"[{t_first / 3.0:.2f}x of target]")

    def scroll_rate(layout: str, n: int) -> float:
        win.state.set_layout(layout)
        win.state.set_active_view("axial")
        app.processEvents()
        win.viewer.flush_renders()
        win.state.set_slice("axial", 0)
        win.viewer.flush_renders()
        t = time.perf_counter()
        for i in range(n):
            win.state.scroll("axial", 1)
            win.viewer.flush_renders()
            app.processEvents()
        return n / (time.perf_counter() - t)

    n = min(args.slices - 1, 200)
    if args.mpr_only:
        mpr_rates(app, win, vol, n)
        if args.screenshots:
            mpr_screenshot(app, win, grab_render_window, save_png, args.screenshots)
        win.close()
        win.viewer.close_adapters()
        return 0
    r1 = scroll_rate("1x1", n)
    print(f"scroll 512² axial, 1x1 layout: {r1:.1f} slices/s (target >= 30) [{r1 / 30:.2f}x of target]")
    r4 = scroll_rate("2x2", n)
    print(f"scroll 512² axial, 2x2 layout (3 MPR views redrawn per step): {r4:.1f} slices/s")
    mpr_rates(app, win, vol, n)
    if args.screenshots:
        win.show_volume(vol, StudyInfo(patient_name="DEMO^PATIENT"))
        out = args.screenshots
        out.mkdir(parents=True, exist_ok=True)
        win.state.set_layout("2x2")
        win.state.set_slice("axial", 150)
        win.state.apply_preset("brain")
        app.processEvents()
        win.viewer.flush_renders()
        save_png(_compose(win, grab_render_window), out / "viewer-2x2.png")
        print(f"wrote {out / 'viewer-2x2.png'}")
    win.close()
    win.viewer.close_adapters()
    t_find = find_similar_time(app, args.slices)
    print(f"find similar (series, {args.slices}-slice stored series) click-to-results: {t_find:.2f} s "
          f"(target <= 1 s) [{t_find / 1.0:.2f}x of target]")
    return 0


ENCODER = os.environ.get("CASEBOOK_BENCH_MODEL", "casebook-baseline")


def find_similar_time(app, n_slices: int) -> float:
    """Library = the shared CT/COVID data + a restacked n-slice real CT series written as DICOM;
    time from the Find-similar click to the result cards (thumbnails included) on screen."""
    import tempfile

    import pydicom
    from pydicom.uid import generate_uid

    from casebook.index.case_store.store import CaseStore
    from casebook.viewer.core.config import Settings
    from casebook.viewer.core.services.ingest import ingest
    from casebook.viewer.core.services.embedding import embed_missing, open_encoder
    from casebook.viewer.core.viewstate import StudyInfo
    from casebook.viewer.qt.main_window import MainWindow

    shared = Path(os.environ.get("CASEBOOK_SHARED", REPO.parent / "shared")) / "data"
    tmp = Path(tempfile.mkdtemp(prefix="casebook-bench-"))
    src = shared / "dicom" / "dcm_qa_ct" / "In" / "Philips" / "S21570" / "S2010"
    dss = [pydicom.dcmread(f) for f in sorted(src.iterdir()) if f.is_file()]
    dss = [d for d in dss if "PixelData" in d and "ImagePositionPatient" in d]
    series_uid, out = generate_uid(), tmp / "big"
    out.mkdir()
    for k in range(n_slices):
        d = dss[k % len(dss)].copy()
        d.SeriesInstanceUID = series_uid
        d.SOPInstanceUID = generate_uid()
        d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
        d.InstanceNumber = k + 1
        d.ImagePositionPatient = [float(d.ImagePositionPatient[0]), float(d.ImagePositionPatient[1]), float(k)]
        d.PatientID = "BENCH-BIG"
        d.save_as(out / f"{k:04d}.dcm")
    settings = Settings(library_dir=tmp / "library", model=ENCODER)
    store = CaseStore.open(settings.database_path)
    ingest([out, shared / "dicom" / "dcm_qa_ct" / "In", shared / "temporal" / "covid19_ny_sbu" / "data-sample"], store)
    # The library is embedded by the built-in encoder, as `casebook embed` would do it.
    embed_missing(store, open_encoder(settings))
    # ... and its findings (a drawn box is matched against them), as `casebook embed` does
    from casebook.viewer.core.services.regions import embed_and_index_regions

    embed_and_index_regions(store, settings.index_dir)
    big = next(se.id for se in store.list_series() if se.slice_count == n_slices)
    store.close()
    win = MainWindow(settings, with_3d=False)
    win.resize(1600, 1000)
    win.show()
    win.open_stored(big)
    deadline = time.time() + 120
    while win.current_series_id != big and time.time() < deadline:
        app.processEvents()
        time.sleep(0.01)
    ctl = win.similar_controller
    done = []
    ctl.results_shown.connect(lambda r: done.append(time.perf_counter()))
    ctl.search_failed.connect(lambda m: done.append(-1.0))
    times = []
    for _ in range(3):  # the first click also opens the index; report the median of 3
        done.clear()
        t = time.perf_counter()
        win.similar.find_requested.emit("series")
        while not done and time.time() < deadline:
            app.processEvents()
            time.sleep(0.002)
        if not done or done[0] < 0:
            raise SystemExit(f"find similar failed: {win.similar.status.text()}")
        times.append(done[0] - t)
    print(f"  find similar (series) runs: {', '.join(f'{x:.2f}' for x in times)} s; {win.similar.status.text()}")
    from casebook.viewer.core.viewstate import Measurement

    box_times = []
    for _ in range(3):  # a drawn box is segmented and described, then matched against the findings
        done.clear()
        t = time.perf_counter()
        win.viewer.box_drawn.emit(Measurement("box", "axial", n_slices // 2, (150.0, 150.0), (330.0, 330.0)))
        while not done and time.time() < deadline + 120:
            app.processEvents()
            time.sleep(0.002)
        if not done or done[0] < 0:
            raise SystemExit(f"find similar (box) failed: {win.similar.status.text()}")
        box_times.append(done[0] - t)
    n_hits = len(ctl.response.hits) if ctl.response is not None else 0
    print(f"  find similar (box: finding search, {n_hits} cards) runs: {', '.join(f'{x:.2f}' for x in box_times)} s "
          f"(target <= 1 s); {win.similar.status.text()}")
    win.close()
    for v in win.all_viewers():
        v.close_adapters()
    return float(np.median(times))


def _compose(win, grab):
    """The 2x2 grid as one image from the four render windows (GL widgets cannot be grabbed by Qt)."""
    names = [["axial", "coronal"], ["sagittal", "3d"]]
    tiles = [[grab(win.viewer.viewports[n].render_window) for n in row] for row in names]
    h = min(t.shape[0] for row in tiles for t in row)
    w = min(t.shape[1] for row in tiles for t in row)
    rows = [np.concatenate([t[:h, :w] for t in row], axis=1) for row in tiles]
    img = np.concatenate(rows, axis=0)
    return img[::2, ::2].copy() if img.shape[1] > 1200 else img


if __name__ == "__main__":
    sys.exit(main())
