"""One MPR viewport: a VTK renderer that mirrors a :class:`ViewerState` for one orientation.

The adapter subscribes to the state's events and only updates VTK objects; rendering is asked
for through ``request_render`` so the Qt layer can coalesce several events into one frame.
World coordinates are image millimetres: x = column * col_mm, y = row * row_mm (y down, the
camera's view-up is -y), so the scale bar and measurements are in real units for free.

The image is the state's plane in patient space: a view of the voxel array for a straight
series, or cut by :class:`~.reslice.PlaneReslicer` (``vtkImageReslice``) for an oblique, tilted or
rotated one, so the axial view of a tilted head CT is a true axial plane.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPolyData, vtkPolyLine
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkActor2D,
    vtkCoordinate,
    vtkImageProperty,
    vtkImageSlice,
    vtkImageSliceMapper,
    vtkPolyDataMapper,
    vtkPolyDataMapper2D,
    vtkRenderer,
    vtkTextActor,
)
from vtkmodules.vtkCommonCore import vtkLookupTable
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL backend)
import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text rendering)

from casebook.viewer.core.viewstate import Measurement, ViewerState, is_single_image, preset_label

from .reslice import PlaneReslicer

# Slicer's plane colours: axial red, coronal green, sagittal yellow.
PLANE_COLORS = {"axial": (0.95, 0.3, 0.3), "coronal": (0.35, 0.85, 0.35), "sagittal": (0.95, 0.85, 0.3)}
OVERLAY_COLOR = (0.92, 0.92, 0.75)
MEASURE_COLOR = (0.3, 0.9, 1.0)
SELECTED_COLOR = (1.0, 0.85, 0.2)
PREVIEW_COLOR = (1.0, 0.8, 0.2)
LABEL_GAP_PX = 6.0  # between a shape and its label, in display pixels
HIGHLIGHT_COLOR = (1.0, 0.6, 0.1)
SEARCH_BOX_COLOR = (1.0, 0.45, 0.85)  # not a measurement colour: it is the query, not a value
_NICE_MM = (1, 2, 5, 10, 20, 25, 50, 100, 200, 500)


def _polyline_actor(color: tuple[float, float, float], width: float = 1.5) -> tuple[vtkActor, vtkPolyData]:
    pd = vtkPolyData()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(pd)
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*color)
    actor.GetProperty().SetLineWidth(width)
    actor.GetProperty().LightingOff()
    actor.PickableOff()
    return actor, pd


def _set_polylines(pd: vtkPolyData, lines: list[np.ndarray]) -> None:
    pts = vtkPoints()
    cells = vtkCellArray()
    n = 0
    for line in lines:
        pl = vtkPolyLine()
        pl.GetPointIds().SetNumberOfIds(len(line))
        for i, p in enumerate(line):
            pts.InsertNextPoint(float(p[0]), float(p[1]), float(p[2]) if len(p) > 2 else 0.0)
            pl.GetPointIds().SetId(i, n + i)
        n += len(line)
        cells.InsertNextCell(pl)
    pd.SetPoints(pts)
    pd.SetLines(cells)
    pd.Modified()


_CHAR_PX = 7.6  # average advance of the 13-pt overlay font (Arial) in pixels


def _clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters with an ellipsis, at a word boundary when there is one."""
    if len(text) <= n:
        return text
    cut = text[: max(n - 1, 1)]
    space = cut.rfind(" ")
    if space > 0:  # never mid-word while a whole word fits
        cut = cut[:space]
    return cut.rstrip(" ,;:-^") + "…"


def text_width_px(prop: Any, text: str, dpi: int = 72) -> float:
    """Width in display pixels of ``text`` drawn with ``prop`` (FreeType's own measure)."""
    from vtkmodules.vtkRenderingCore import vtkTextRenderer

    if not text:
        return 0.0
    bb = [0, 0, 0, 0]
    if not vtkTextRenderer.GetInstance().GetBoundingBox(prop, text, bb, dpi):
        return len(text) * _CHAR_PX
    return float(bb[1] - bb[0])


_FIT_CACHE: dict[tuple[Any, ...], str] = {}


def fit_lines(prop: Any, lines: list[str], max_px: float, dpi: int = 72) -> list[str]:
    """Each line shortened (whole words first, then an ellipsis) until it is at most ``max_px`` wide.

    Cached per font and width: the overlay refits on every slice step.
    """
    out = []
    for line in lines:
        key = (prop.GetFontSize(), prop.GetBold(), prop.GetFontFamily(), line, int(max_px), dpi)
        hit = _FIT_CACHE.get(key)
        if hit is None:
            if text_width_px(prop, line, dpi) <= max_px:
                hit = line
            else:  # the longest prefix that fits (widths grow with the prefix length)
                lo, hi = 1, len(line) - 1
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if text_width_px(prop, _clip(line, mid), dpi) <= max_px:
                        lo = mid
                    else:
                        hi = mid - 1
                hit = _clip(line, lo)
            if len(_FIT_CACHE) > 4096:
                _FIT_CACHE.clear()
            _FIT_CACHE[key] = hit
        out.append(hit)
    return out


def _text(size: int, color: tuple[float, float, float] = OVERLAY_COLOR, bold: bool = False) -> vtkTextActor:
    t = vtkTextActor()
    p = t.GetTextProperty()
    p.SetFontSize(size)
    p.SetColor(*color)
    p.SetBold(bold)
    p.SetShadow(True)
    p.SetFontFamilyToArial()
    t.PickableOff()
    return t


def _label_text(color: tuple[float, float, float]) -> vtkTextActor:
    """A measurement label: hangs down from its anchor, on a dark box so it reads over bone and air."""
    t = _text(13, color)
    p = t.GetTextProperty()
    p.SetVerticalJustificationToTop()
    p.SetBackgroundColor(0.0, 0.0, 0.0)
    p.SetBackgroundOpacity(0.6)
    return t


class SliceViewAdapter:
    """Renders ``state``'s ``orientation`` slice with overlays into ``renderer``."""

    def __init__(self, state: ViewerState, orientation: str, render_window: Any,
                 request_render: Callable[[], None] | None = None) -> None:
        self.state = state
        self.orientation = orientation
        self.render_window = render_window
        self.request_render = request_render or render_window.Render
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        render_window.AddRenderer(self.renderer)

        self.image = vtkImageData()
        self.reslicer = PlaneReslicer()
        self._pixels: np.ndarray | None = None
        self._color = False  # the shown slice has RGB channels (no grey lookup table then)
        self.mapper = vtkImageSliceMapper()
        self.mapper.SetInputData(self.image)
        self.lut = vtkLookupTable()
        self.prop = vtkImageProperty()
        self.prop.SetInterpolationTypeToLinear()
        self.prop.SetLookupTable(self.lut)
        self.prop.UseLookupTableScalarRangeOn()
        self.actor = vtkImageSlice()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.prop)
        self.actor.VisibilityOff()
        self.renderer.AddViewProp(self.actor)

        self.cross_h, self.cross_h_pd = _polyline_actor((1, 1, 1), 1.0)
        self.cross_v, self.cross_v_pd = _polyline_actor((1, 1, 1), 1.0)
        for a in (self.cross_h, self.cross_v):
            self.renderer.AddActor(a)
        # "why similar": a frame just inside the view's edge, in display pixels (on the image's
        # own edge it would cut through the corner text when the image fills the view)
        self.highlight_pd = vtkPolyData()
        hm = vtkPolyDataMapper2D()
        hm.SetInputData(self.highlight_pd)
        self.highlight = vtkActor2D()
        self.highlight.SetMapper(hm)
        self.highlight.GetProperty().SetColor(*HIGHLIGHT_COLOR)
        self.highlight.GetProperty().SetLineWidth(3.0)
        self.highlight.VisibilityOff()
        self.renderer.AddViewProp(self.highlight)

        self.corners = {k: _text(13) for k in ("tl", "tr", "bl", "br")}
        self.corners["tr"].GetTextProperty().SetJustificationToRight()
        self.corners["br"].GetTextProperty().SetJustificationToRight()
        self.corners["tl"].GetTextProperty().SetVerticalJustificationToTop()
        self.corners["tr"].GetTextProperty().SetVerticalJustificationToTop()
        self.markers = {k: _text(18, (1.0, 1.0, 0.55), bold=True) for k in ("left", "right", "top", "bottom")}
        for k, t in self.markers.items():
            tp = t.GetTextProperty()
            tp.SetJustificationToCentered()
            tp.SetVerticalJustificationToCentered()
            t.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.markers["left"].SetPosition(0.025, 0.5)
        self.markers["right"].SetPosition(0.975, 0.5)
        self.markers["top"].SetPosition(0.5, 0.965)
        self.markers["bottom"].SetPosition(0.5, 0.035)
        for t in (*self.corners.values(), *self.markers.values()):
            self.renderer.AddViewProp(t)
        self.highlight_text = _text(14, HIGHLIGHT_COLOR, bold=True)
        self.highlight_text.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.highlight_text.SetPosition(0.5, 0.08)
        self.highlight_text.GetTextProperty().SetJustificationToCentered()
        self.highlight_text.VisibilityOff()
        self.renderer.AddViewProp(self.highlight_text)

        # scale bar in display pixels
        self.scale_pd = vtkPolyData()
        m2 = vtkPolyDataMapper2D()
        m2.SetInputData(self.scale_pd)
        self.scale_actor = vtkActor2D()
        self.scale_actor.SetMapper(m2)
        self.scale_actor.GetProperty().SetColor(*OVERLAY_COLOR)
        self.scale_actor.GetProperty().SetLineWidth(2)
        self.scale_text = _text(12)
        self.scale_text.GetTextProperty().SetJustificationToCentered()
        self.renderer.AddViewProp(self.scale_actor)
        self.renderer.AddViewProp(self.scale_text)

        # measurements on this slice: id(measurement) -> (shape actor, its polydata, its label)
        self._measure_actors: dict[int, tuple[vtkActor, vtkPolyData, vtkTextActor]] = {}
        self._preview_actor, self._preview_pd = _polyline_actor(PREVIEW_COLOR, 1.5)
        self._preview_actor.VisibilityOff()
        self.renderer.AddActor(self._preview_actor)
        self.preview_text = _label_text(PREVIEW_COLOR)
        self.preview_text.VisibilityOff()
        self.renderer.AddViewProp(self.preview_text)
        # the last box drawn for Find similar: stays until the next one
        self.search_box_actor, self._search_box_pd = _polyline_actor(SEARCH_BOX_COLOR, 2.0)
        self.search_box_actor.VisibilityOff()
        self.renderer.AddActor(self.search_box_actor)

        ev = state.events
        self._subs = [
            (ev.volume, self._on_volume), (ev.slice, self._on_slice), (ev.crosshair, self._on_crosshair),
            (ev.window, self._on_window), (ev.invert, self._on_window), (ev.zoom, self._on_camera),
            (ev.pan, self._on_camera), (ev.measurements, self._on_measurements),
            (ev.selection, self._on_measurements), (ev.preview, self._on_preview),
            (ev.highlight, self._on_highlight), (ev.overlay, self._on_overlay),
            (ev.crosshair_visible, self._on_crosshair), (ev.loading, self._on_overlay),
            (ev.study_info, self._on_overlay), (ev.cine, self._on_overlay),
            (ev.search_box, self._on_search_box), (ev.plane, self._on_volume),
        ]
        for emitter, cb in self._subs:
            emitter.connect(cb)
        if state.geometry is not None:
            self._on_volume()

    def close(self) -> None:
        for emitter, cb in self._subs:
            emitter.disconnect(cb)
        self._subs = []

    # -- event handlers -------------------------------------------------------------------------
    def _on_volume(self, **_: Any) -> None:
        self._update_image()
        self._update_window()
        self._update_markers()
        self._update_camera()
        self._update_crosshair()
        self._sync_measurements()
        self._update_preview()
        self._update_search_box()
        self._update_overlay_text()
        self.request_render()

    def _on_slice(self, orientation: str, index: int) -> None:
        if orientation == self.orientation:
            self._update_image()
            self._sync_measurements()
            self._update_search_box()
            self._update_highlight()
            self._update_overlay_text()
        self._update_crosshair()
        self.request_render()

    def _on_crosshair(self, **_: Any) -> None:
        self._update_crosshair()
        self.request_render()

    def _on_window(self, **_: Any) -> None:
        self._update_window()
        self._update_overlay_text()
        self.request_render()

    def _on_camera(self, orientation: str, **_: Any) -> None:
        if orientation == self.orientation:
            self._update_camera()
            self._update_overlay_text()
            self.request_render()

    def _on_measurements(self, **_: Any) -> None:
        self._sync_measurements()
        self.request_render()

    def _on_preview(self, **_: Any) -> None:
        self._update_preview()
        self.request_render()

    def _on_search_box(self, **_: Any) -> None:
        self._update_search_box()
        self.request_render()

    def _update_search_box(self) -> None:
        m = self.state.search_box
        on = (m is not None and self.state.geometry is not None and m.orientation == self.orientation
              and m.slice_index == self.state.slice_index(self.orientation))
        if on:
            _set_polylines(self._search_box_pd, [self._measurement_points(m)])
        self.search_box_actor.SetVisibility(on)

    def _on_highlight(self, **_: Any) -> None:
        self._update_highlight()
        self.request_render()

    def _on_overlay(self, **_: Any) -> None:
        self._update_overlay_text()
        self.request_render()

    # -- updates --------------------------------------------------------------------------------
    def _update_image(self) -> None:
        g = self.state.geometry
        if g is None:
            self.actor.VisibilityOff()
            return
        index = self.state.slice_index(self.orientation)
        if self.reslicer.supports(g):
            # a true plane cut from the whole volume in C++ (the core's numpy sampler measures on
            # the same plane); shares the reslicer's output arrays
            self.image.ShallowCopy(self.reslicer.cut(g, self.orientation, index))
            self._pixels = None
            if self._color:
                self._color = False
                self._update_window()
            self.actor.VisibilityOn()
            return
        img = g.slice_array(self.orientation, index)
        if img.ndim == 2 and img.dtype not in (np.int16, np.uint16, np.uint8, np.float32):
            img = img.astype(np.float32)
        pix = np.ascontiguousarray(img)
        rows, cols = pix.shape[:2]
        ncomp = pix.shape[2] if pix.ndim == 3 else 1
        row_mm, col_mm = g.pixel_spacing(self.orientation)
        if self.image.GetDimensions() != (cols, rows, 1):
            self.image.SetDimensions(cols, rows, 1)
        self.image.SetSpacing(col_mm, row_mm, 1.0)
        self.image.SetOrigin(0.0, 0.0, 0.0)
        arr = numpy_to_vtk(pix.reshape(-1, ncomp) if ncomp > 1 else pix.reshape(-1), deep=False)
        self._pixels = pix  # keep the buffer alive while VTK uses it
        self.image.GetPointData().SetScalars(arr)
        self.image.Modified()
        if (ncomp > 1) != self._color:
            self._color = ncomp > 1
            self._update_window()
        self.actor.VisibilityOn()

    def _update_window(self) -> None:
        c, w = self.state.window
        if self._color:
            # RGB / YBR / palette: the stored colours through window/level per channel, no grey
            # table (a lookup table would map the first channel to grey: Doppler red turns white)
            self.prop.SetLookupTable(None)
            self.prop.SetUseLookupTableScalarRange(False)
            self.prop.SetColorWindow(-w if self.state.invert else w)
            self.prop.SetColorLevel(c)
            return
        self.prop.SetLookupTable(self.lut)
        self.prop.SetUseLookupTableScalarRange(True)
        lo, hi = c - w / 2.0, c + w / 2.0
        self.lut.SetTableRange(lo, hi)
        self.lut.SetNumberOfTableValues(256)
        self.lut.SetRampToLinear()
        if self.state.invert:
            self.lut.SetValueRange(1.0, 0.0)
        else:
            self.lut.SetValueRange(0.0, 1.0)
        self.lut.SetSaturationRange(0.0, 0.0)
        self.lut.SetHueRange(0.0, 0.0)
        self.lut.SetAlphaRange(1.0, 1.0)
        self.lut.ForceBuild()
        self.prop.SetColorWindow(w)
        self.prop.SetColorLevel(c)

    def image_extent_mm(self) -> tuple[float, float]:
        g = self.state.geometry
        return g.extent_mm(self.orientation) if g is not None else (1.0, 1.0)

    def fit_scale(self) -> float:
        """Parallel scale (half the view height in mm) that fits the whole image."""
        g = self.state.geometry
        if g is None:
            return 1.0
        vw, vh = self.render_window.GetSize()
        return g.fit_half_height_mm(self.orientation, vw, vh)

    def _update_camera(self) -> None:
        g = self.state.geometry
        if g is None:
            return
        row_mm, col_mm = g.pixel_spacing(self.orientation)
        w_mm, h_mm = self.image_extent_mm()
        # image pixel centres span [0, (n-1)*sp]; centre of the image is there
        cx = (w_mm - col_mm) / 2.0 - self.state.pan[self.orientation][0]
        cy = (h_mm - row_mm) / 2.0 - self.state.pan[self.orientation][1]
        cam = self.renderer.GetActiveCamera()
        cam.SetFocalPoint(cx, cy, 0.0)
        cam.SetPosition(cx, cy, -1000.0)
        cam.SetViewUp(0.0, -1.0, 0.0)
        cam.SetParallelScale(self.fit_scale() / self.state.zoom[self.orientation])
        cam.SetClippingRange(1.0, 2000.0)
        self._update_scale_bar()
        self._place_labels()

    def on_resize(self) -> None:
        self._update_camera()
        self._update_highlight()
        self._update_overlay_text()
        self.request_render()

    def _update_scale_bar(self) -> None:
        vw, vh = self.render_window.GetSize()
        if vw <= 0 or vh <= 0 or self.state.geometry is None:
            return
        px_per_mm = vh / (2.0 * self.renderer.GetActiveCamera().GetParallelScale())
        target = vw * 0.2 / px_per_mm
        length = max([n for n in _NICE_MM if n <= target] or [_NICE_MM[0]])
        lp = length * px_per_mm
        x1 = vw - 20.0
        x0 = x1 - lp
        y = 40.0
        _set_polylines(self.scale_pd, [np.array([[x0, y + 6, 0], [x0, y, 0], [x1, y, 0], [x1, y + 6, 0]])])
        self.scale_text.SetInput(f"{length:g} mm" if length < 10 or length % 10 else f"{length / 10:g} cm")
        self.scale_text.SetPosition((x0 + x1) / 2.0, y + 8)

    def geometry_known(self) -> tuple[bool, bool]:
        """(patient orientation known, pixel spacing known): what the file actually says."""
        v = self.state.volume
        if v is None:
            return False, False
        return v.geometry.patient_geometry_known, v.geometry.pixel_spacing_known

    def _update_markers(self) -> None:
        g = self.state.geometry
        if g is None:
            return
        oriented, _ = self.geometry_known()
        for k, label in g.markers(self.orientation).items():
            # letters from a placeholder direction would be a lie: none when the file gives none
            self.markers[k].SetInput(label if oriented else "")

    def image_to_world(self, row: float, col: float) -> tuple[float, float]:
        g = self.state.geometry
        row_mm, col_mm = g.pixel_spacing(self.orientation) if g else (1.0, 1.0)
        return col * col_mm, row * row_mm

    def _update_crosshair(self) -> None:
        g = self.state.geometry
        # one image (a radiograph, an ultrasound loop): no other planes for the lines to point at
        if g is None or not self.state.show_crosshair or is_single_image(g.volume):
            self.cross_h.VisibilityOff()
            self.cross_v.VisibilityOff()
            return
        _, row, col = g.canon_to_image(self.orientation, self.state.crosshair_canon)
        w_mm, h_mm = self.image_extent_mm()
        row_mm, col_mm = g.pixel_spacing(self.orientation)
        x, y = self.image_to_world(row, col)
        x0, x1 = -col_mm / 2.0, w_mm - col_mm / 2.0
        y0, y1 = -row_mm / 2.0, h_mm - row_mm / 2.0
        gap = 0.04 * max(w_mm, h_mm)  # leave the crosshair centre free: it hides the finding
        z = -0.5
        _set_polylines(self.cross_h_pd, [np.array([[x0, y, z], [x - gap, y, z]]), np.array([[x + gap, y, z], [x1, y, z]])])
        _set_polylines(self.cross_v_pd, [np.array([[x, y0, z], [x, y - gap, z]]), np.array([[x, y + gap, z], [x, y1, z]])])
        # horizontal line = the plane whose index varies with rows; vertical = with columns
        h_plane, v_plane = {"axial": ("coronal", "sagittal"), "coronal": ("axial", "sagittal"),
                            "sagittal": ("axial", "coronal")}[self.orientation]
        self.cross_h.GetProperty().SetColor(*PLANE_COLORS[h_plane])
        self.cross_v.GetProperty().SetColor(*PLANE_COLORS[v_plane])
        self.cross_h.VisibilityOn()
        self.cross_v.VisibilityOn()

    def _update_highlight(self) -> None:
        idx = self.state.slice_index(self.orientation)
        on = idx in self.state.highlight.get(self.orientation, set())
        if on:
            vw, vh = self.render_window.GetSize()
            x0, y0, x1, y1 = 1.5, 1.5, max(vw - 1.5, 2.0), max(vh - 1.5, 2.0)
            _set_polylines(self.highlight_pd, [np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0], [x0, y0, 0]])])
            self.highlight_text.SetInput("why similar")
        self.highlight.SetVisibility(on)
        self.highlight_text.SetVisibility(on)

    def overlay_notes(self) -> list[str]:
        """What the image cannot tell, said on the image (orientation, scale)."""
        oriented, spaced = self.geometry_known()
        notes = []
        g = self.state.geometry
        if g is not None and g.is_resliced and self.state.plane_angle_deg == 0.0:
            notes.append(f"Resliced: {g.reslice_reason}")
        if self.state.volume is not None and not oriented:
            notes.append("No patient orientation in file")
        if self.state.volume is not None and not spaced:
            notes.append("No pixel spacing: sizes in pixels")
        return notes

    def _update_overlay_text(self) -> None:
        st, g, v = self.state, self.state.geometry, self.state.volume
        oriented, spaced = self.geometry_known()
        on = st.show_overlay and g is not None
        for t in self.corners.values():
            t.SetVisibility(on)
        for t in self.markers.values():
            t.SetVisibility(on and oriented)
        for t in (self.scale_actor, self.scale_text):
            t.SetVisibility(on and spaced)
        if g is None or v is None:
            return
        idx = st.slice_index(self.orientation)
        n = g.n_slices(self.orientation)
        # slice position along the slice normal, in patient mm
        ax = g.slice_axis(self.orientation)
        c = st.crosshair_canon
        c[ax] = idx
        lps = g.canon_to_lps(c)
        comp = {"axial": 2, "coronal": 1, "sagittal": 0}[self.orientation]
        name = {"axial": "Z", "coronal": "Y", "sagittal": "X"}[self.orientation]
        # The two top corners share the width with the top orientation letter between them: each
        # line is cut (at a word) to its half minus the letter, never drawn over another text.
        vw0 = max(self.render_window.GetSize()[0], 1)
        dpi = int(self.render_window.GetDPI() or 72)
        letter = text_width_px(self.markers["top"].GetTextProperty(), self.markers["top"].GetInput() or "", dpi)
        half = vw0 / 2.0 - 6.0 - (letter / 2.0 + 8.0 if oriented and letter else 4.0)
        tprop = self.corners["tl"].GetTextProperty()
        self.corners["tl"].SetInput("\n".join(fit_lines(tprop, st.study_info.overlay_lines(), half, dpi)))
        angle = st.plane_angle_deg
        plane = self.orientation.capitalize() + (f" {angle:.0f}°" if angle > 0.0 else "")  # turned planes: the angle
        right = [f"{v.modality} {v.description}".strip(), plane if oriented else "", *self.overlay_notes()]
        self.corners["tr"].SetInput("\n".join(fit_lines(tprop, [x for x in right if x], half, dpi)))
        loading = "" if st.loading_fraction >= 1.0 else f"  loading {st.loading_fraction * 100:.0f}%"
        cine = f"  CINE {st.cine_fps:.0f} fps" if st.cine_playing and self.orientation == st.active_view else ""
        if angle > 0.0:  # a turned plane: its position along its own normal
            where = f"\nd: {float(lps @ g.plane_normal(self.orientation)):.1f} mm" if oriented else ""
        else:
            where = f"\n{name}: {lps[comp]:.1f} mm" if oriented else ""
        self.corners["bl"].SetInput(f"Im {idx + 1}/{n}{loading}{cine}{where}")
        wc, ww = st.window
        inv = "  INV" if st.invert else ""
        if st.preset not in ("custom", "default"):
            inv += f"  {preset_label(st.preset)}"
        cam = self.renderer.GetActiveCamera()
        vw, vh = self.render_window.GetSize()
        _, col_mm = g.pixel_spacing(self.orientation)
        # zoom as screen pixels per in-plane image pixel, as PACS show it
        zf = (vh / (2.0 * cam.GetParallelScale())) * col_mm if vh > 0 else 1.0
        self.corners["br"].SetInput(f"W {ww:.0f} L {wc:.0f}{inv}\nZoom {zf:.2f}")
        vw = max(vw, 1)
        vh = max(vh, 1)
        self.corners["tl"].SetPosition(6, vh - 6)
        self.corners["tr"].SetPosition(vw - 6, vh - 6)
        self.corners["bl"].SetPosition(6, 6)
        self.corners["br"].SetPosition(vw - 6, 6)
        self._update_scale_bar()

    # -- measurements ---------------------------------------------------------------------------
    def _measurement_points(self, m: Measurement) -> np.ndarray:
        x0, y0 = self.image_to_world(*m.p0)
        x1, y1 = self.image_to_world(*m.p1)
        z = -0.7
        if m.kind == "distance":
            return np.array([[x0, y0, z], [x1, y1, z]])
        cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
        if m.kind == "box":
            return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z], [x0, y0, z]])
        t = np.linspace(0, 2 * math.pi, 65)
        return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t), np.full_like(t, z)], axis=1)

    def _sync_measurements(self) -> None:
        """One shape and one value label per measurement on the shown slice (any number of them)."""
        idx = self.state.slice_index(self.orientation)
        wanted = {id(m): m for m in self.state.measurements
                  if m.orientation == self.orientation and m.slice_index == idx and self.state.measurement_on_planes(m)}
        for key in list(self._measure_actors):
            if key not in wanted:
                actor, _, text = self._measure_actors.pop(key)
                self.renderer.RemoveActor(actor)
                self.renderer.RemoveViewProp(text)
        for key, m in wanted.items():
            if key not in self._measure_actors:
                actor, pd = _polyline_actor(MEASURE_COLOR, 2.0)
                text = _label_text(MEASURE_COLOR)
                self.renderer.AddActor(actor)
                self.renderer.AddViewProp(text)
                self._measure_actors[key] = (actor, pd, text)
            actor, pd, text = self._measure_actors[key]
            _set_polylines(pd, [self._measurement_points(m)])
            text.SetInput(self.measurement_text(m))
            color = SELECTED_COLOR if m is self.state.selected else MEASURE_COLOR
            actor.GetProperty().SetColor(*color)
            actor.GetProperty().SetLineWidth(3.0 if m is self.state.selected else 2.0)
            text.GetTextProperty().SetColor(*color)
        self._place_labels()

    @staticmethod
    def measurement_text(m: Measurement) -> str:
        """``"#1 23.4 mm"``: the number links the label on the image to the row in the list."""
        label = m.label()
        return f"#{m.number} {label}" if m.number else label

    def _shape_box_display(self, m: Measurement) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the shape on screen in display pixels (origin bottom-left)."""
        pts = self._measurement_points(m)
        xs, ys = [], []
        for x, y, _ in pts[:: max(1, len(pts) // 16)].tolist() + [pts[-1].tolist()]:
            dx, dy = self.world_to_display(x, y)
            xs.append(dx)
            ys.append(dy)
        return min(xs), min(ys), max(xs), max(ys)

    def _label_size(self, text: str) -> tuple[float, float]:
        lines = text.split("\n")
        return max(len(line) for line in lines) * _CHAR_PX, len(lines) * 16.0

    def _place_labels(self) -> None:
        """Each label beside its shape, right of it (left when it would leave the view), not on another label."""
        if self.state.geometry is None:
            return
        vw, vh = self.render_window.GetSize()
        taken: list[tuple[float, float, float, float]] = []
        items = [(m, self._measure_actors[id(m)][2]) for m in self.state.measurements if id(m) in self._measure_actors]
        if self.state.preview is not None and self.preview_text.GetVisibility():
            items.append((self.state.preview, self.preview_text))
        for m, text in items:
            x0, y0, x1, y1 = self._shape_box_display(m)
            w, h = self._label_size(text.GetInput() or "")
            top = y1
            if m.kind == "distance":  # beside the end point furthest right, not the box corner
                ax, ay = self.world_to_display(*self.image_to_world(*m.label_anchor()))
                x1, top = ax, ay + h / 2.0
                x0 = min(x0, ax)
            left = x1 + LABEL_GAP_PX + w > vw and x0 - LABEL_GAP_PX - w >= 0
            tx = x0 - LABEL_GAP_PX - w if left else x1 + LABEL_GAP_PX
            ty = min(top, vh - 4.0)  # top of the label level with the top of the shape
            for _ in range(len(taken) + 1):
                box = (tx, ty - h, tx + w, ty)
                hit = next((t for t in taken if box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3]), None)
                if hit is None:
                    break
                ty = hit[1] - 2.0  # below the label in the way
            taken.append((tx, ty - h, tx + w, ty))
            text.GetTextProperty().SetJustificationToLeft()
            text.SetPosition(tx, ty)

    def _update_preview(self) -> None:
        """The measurement being drawn, with its live value."""
        m = self.state.preview
        on = m is not None and m.orientation == self.orientation and self.state.geometry is not None
        if on:
            _set_polylines(self._preview_pd, [self._measurement_points(m)])
            self.preview_text.SetInput(m.label())
        self._preview_actor.SetVisibility(on)
        self.preview_text.SetVisibility(on and bool(self.preview_text.GetInput()))
        if on:
            self._place_labels()

    def label_actors(self) -> list[tuple[Measurement, vtkTextActor]]:
        """The measurements drawn on the shown slice with their label actors (tests, screenshots)."""
        return [(m, self._measure_actors[id(m)][2]) for m in self.state.measurements if id(m) in self._measure_actors]

    def world_to_display(self, x: float, y: float) -> tuple[float, float]:
        """World mm -> display pixels (origin bottom-left, as VTK's display coordinates)."""
        coord = vtkCoordinate()
        coord.SetCoordinateSystemToWorld()
        coord.SetValue(float(x), float(y), 0.0)
        dx, dy = coord.GetComputedDoubleDisplayValue(self.renderer)
        return float(dx), float(dy)

    # -- picking --------------------------------------------------------------------------------
    def display_to_image(self, x: float, y_from_top: float) -> tuple[float, float]:
        """Widget pixel (origin top-left, device pixels) -> image (row, col), continuous."""
        _, vh = self.render_window.GetSize()
        coord = vtkCoordinate()
        coord.SetCoordinateSystemToDisplay()
        coord.SetValue(float(x), float(vh - 1 - y_from_top), 0.0)
        wx, wy, _ = coord.GetComputedWorldValue(self.renderer)
        g = self.state.geometry
        row_mm, col_mm = g.pixel_spacing(self.orientation) if g else (1.0, 1.0)
        return wy / row_mm, wx / col_mm

    def mm_per_display_pixel(self) -> float:
        _, vh = self.render_window.GetSize()
        return 2.0 * self.renderer.GetActiveCamera().GetParallelScale() / max(vh, 1)

    def image_rect_on_display(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the image's pixel-centre extent in widget pixels, top-left origin."""
        g = self.state.geometry
        rows, cols = g.image_shape(self.orientation) if g else (1, 1)
        _, vh = self.render_window.GetSize()
        out = []
        for r, c in ((0, 0), (rows - 1, cols - 1)):
            dx, dy = self.world_to_display(*self.image_to_world(r, c))
            out.append((dx, vh - 1 - dy))
        return out[0][0], out[0][1], out[1][0], out[1][1]
