"""3D volume rendering of the state's volume, with CT/MR transfer-function presets.

Degrades gracefully: on a software OpenGL (Mesa llvmpipe, no GPU) it uses VTK's CPU ray caster
on a volume downsampled to at most ``max_dim_software`` voxels per axis with a coarser sample
distance, so a reading-room PC without a GPU still gets a usable (if softer) 3D view. The 3D view
re-renders only when the volume or preset changes, never while the reader scrolls the MPRs.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPiecewiseFunction
from vtkmodules.vtkRenderingCore import (
    vtkColorTransferFunction,
    vtkRenderer,
    vtkTextActor,
    vtkVolume,
    vtkVolumeProperty,
)
from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
import vtkmodules.vtkRenderingFreeType  # noqa: F401

from casebook.resources import PRESETS_DIR
from casebook.viewer.core.viewstate import ViewerState, ViewStateError

from .widget import is_software_gl

log = logging.getLogger(__name__)


def load_volume_presets() -> dict[str, dict[str, Any]]:
    return json.loads((PRESETS_DIR / "volume_presets.json").read_text(encoding="utf-8"))["presets"]


def default_preset(presets: dict[str, dict[str, Any]], modality: str) -> str:
    """The preset a modality opens with: HU tables only for CT, percentile ones for the rest.

    A CT transfer function on MR signal is a brown block (MR has no Hounsfield scale), so the
    choice follows the modality of each new volume, not the last preset used.
    """
    m = (modality or "").upper()
    for want in (m, "*"):
        for name, p in presets.items():
            if want in p.get("modalities", ()):
                return name
    return next(iter(presets))


def _family(modality: str) -> str:
    """CT (Hounsfield units) or anything else (relative intensities)."""
    return "CT" if (modality or "").upper() == "CT" else "other"


class VolumeViewAdapter:
    """Volume rendering of ``state.volume`` into its own renderer."""

    def __init__(self, state: ViewerState, render_window: Any, request_render: Callable[[], None] | None = None,
                 max_dim_gpu: int = 384, max_dim_software: int = 160) -> None:
        self.state = state
        self.render_window = render_window
        self.request_render = request_render or render_window.Render
        self.presets = load_volume_presets()
        self.preset = ""
        self._chosen: dict[str, str] = {}  # the reader's preset per family (CT / other), this session
        self.max_dim_gpu = max_dim_gpu
        self.max_dim_software = max_dim_software
        self.software: bool | None = None
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.05, 0.05, 0.08)
        render_window.AddRenderer(self.renderer)
        self.image = vtkImageData()
        self._buf: np.ndarray | None = None
        self.mapper = vtkSmartVolumeMapper()
        self.mapper.SetInputData(self.image)
        self.prop = vtkVolumeProperty()
        self.prop.SetInterpolationTypeToLinear()
        self.volume_actor = vtkVolume()
        self.volume_actor.SetMapper(self.mapper)
        self.volume_actor.SetProperty(self.prop)
        self.volume_actor.VisibilityOff()
        self.renderer.AddVolume(self.volume_actor)
        self.label = vtkTextActor()
        self.label.GetTextProperty().SetFontSize(13)
        self.label.GetTextProperty().SetColor(0.9, 0.9, 0.75)
        self.label.SetPosition(6, 6)
        self.renderer.AddViewProp(self.label)
        self.enabled = True
        state.events.volume.connect(self._on_volume)
        if state.volume is not None:
            self._on_volume()

    def close(self) -> None:
        self.state.events.volume.disconnect(self._on_volume)

    def _detect(self) -> None:
        if self.software is None:
            self.software = is_software_gl(self.render_window)
            if self.software:
                # CPU ray caster: multi-threaded, needs no GL 3D textures, predictable on llvmpipe.
                self.mapper.SetRequestedRenderModeToRayCast()
                log.info("software OpenGL: volume rendering uses the CPU ray caster")
            else:
                self.mapper.SetRequestedRenderModeToGPU()

    def _on_volume(self, keep_view: bool = False, **_: Any) -> None:
        if not self.enabled:
            return
        g = self.state.geometry
        v = self.state.volume
        if g is None or v is None or v.is_color or min(g.canon.shape[:3]) < 2:
            self.volume_actor.VisibilityOff()
            self.label.SetInput("3D: needs a multi-slice grey-scale series" if v is not None else "")
            self.request_render()
            return
        self._detect()
        max_dim = self.max_dim_software if self.software else self.max_dim_gpu
        steps = [max(1, int(np.ceil(n / max_dim))) for n in g.canon.shape[:3]]  # the stored voxels, not resliced
        sub = g.canon[:: steps[0], :: steps[1], :: steps[2]]
        buf = np.ascontiguousarray(sub, dtype=np.float32 if sub.dtype not in (np.int16, np.uint16, np.uint8) else sub.dtype)
        ns, npp, nl = buf.shape
        self.image.SetDimensions(nl, npp, ns)
        self.image.SetSpacing(g.canon_spacing[2] * steps[2], g.canon_spacing[1] * steps[1], g.canon_spacing[0] * steps[0])
        self.image.SetOrigin(0.0, 0.0, 0.0)
        self.image.GetPointData().SetScalars(numpy_to_vtk(buf.reshape(-1), deep=False))
        self._buf = buf
        self.image.Modified()
        if self.software:
            # coarser steps and lower resolution while rotating keep the CPU ray caster usable
            self.mapper.SetSampleDistance(float(min(self.image.GetSpacing())) * 1.5)
            self.mapper.AutoAdjustSampleDistancesOn()
            self.mapper.InteractiveAdjustSampleDistancesOn()
            self.mapper.SetInteractiveUpdateRate(8.0)
        self.volume_actor.VisibilityOn()
        if not keep_view or not self.preset:
            fam = _family(v.modality)
            self.set_preset(self._chosen.get(fam) or default_preset(self.presets, v.modality), render=False,
                            remember=False)
        else:
            self.set_preset(self.preset, render=False, remember=False)
        # keep the reader's 3D view only when the same volume is refined (e.g. a progressive load)
        if not keep_view or getattr(self, "_last_shape", None) != g.canon.shape[:3]:
            self.reset_camera()
        self._last_shape = g.canon.shape[:3]
        mode = "CPU ray cast (no GPU)" if self.software else "GPU ray cast"
        self.label.SetInput(f"3D {self.presets[self.preset]['label']} - {mode}")
        self.request_render()

    def _percentiles(self) -> tuple[float, float]:
        assert self._buf is not None
        lo, hi = np.percentile(self._buf[:: max(1, self._buf.shape[0] // 16)], [1.0, 99.0])
        return float(lo), float(max(hi, lo + 1.0))

    def set_preset(self, name: str, render: bool = True, remember: bool = True) -> None:
        """Apply a transfer function; the reader's choice (``remember``) returns for the same kind
        of volume (CT or not) later in the session."""
        if name not in self.presets:
            raise ViewStateError(f"unknown volume preset {name!r}; known: {sorted(self.presets)}")
        p = self.presets[name]
        self.preset = name
        if remember and self.state.volume is not None:
            self._chosen[_family(self.state.volume.modality)] = name
        scale = (lambda x: x)
        if p.get("relative") and self._buf is not None:
            lo, hi = self._percentiles()
            scale = (lambda x, lo=lo, hi=hi: lo + x * (hi - lo))
        ctf = vtkColorTransferFunction()
        for s, r, g, b in p["color"]:
            ctf.AddRGBPoint(scale(s), r, g, b)
        otf = vtkPiecewiseFunction()
        for s, o in p["opacity"]:
            otf.AddPoint(scale(s), o)
        self.prop.SetColor(ctf)
        self.prop.SetScalarOpacity(otf)
        self.prop.SetShade(bool(p.get("shade", True)))
        self.prop.SetAmbient(0.3)
        self.prop.SetDiffuse(0.7)
        self.prop.SetSpecular(0.2)
        if p.get("blend") == "mip":
            self.mapper.SetBlendModeToMaximumIntensity()
        else:
            self.mapper.SetBlendModeToComposite()
        if render:
            self.label.SetInput(f"3D {p['label']}")
            self.request_render()

    def reset_camera(self) -> None:
        """Anterior view, head up (the patient faces the reader)."""
        cam = self.renderer.GetActiveCamera()
        b = self.volume_actor.GetBounds()
        c = ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2)
        cam.SetFocalPoint(*c)
        cam.SetPosition(c[0], c[1] - 1000.0, c[2])  # world y = posterior: camera in front
        cam.SetViewUp(0.0, 0.0, 1.0)
        self.renderer.ResetCamera()
        self.renderer.ResetCameraClippingRange()

    def rotate(self, d_azimuth: float, d_elevation: float) -> None:
        cam = self.renderer.GetActiveCamera()
        cam.Azimuth(d_azimuth)
        cam.Elevation(d_elevation)
        cam.OrthogonalizeViewUp()
        self.renderer.ResetCameraClippingRange()
        self.request_render()

    def dolly(self, factor: float) -> None:
        self.renderer.GetActiveCamera().Dolly(factor)
        self.renderer.ResetCameraClippingRange()
        self.request_render()
