"""Creates the Qt widget that hosts a VTK render window.

Lives in ``viewer.render`` so that ``viewer.qt`` never imports VTK itself (import-linter
contract); VTK's Qt module picks PySide6 because the caller has imported it already.
"""
from __future__ import annotations

from typing import Any


def create_vtk_widget(parent: Any = None) -> Any:
    """A ``QVTKRenderWindowInteractor`` whose VTK interactor does nothing on its own.

    All gestures are handled by the Qt controllers, which update the viewer state; the VTK
    interactor style is a no-op so VTK never moves the camera behind the model's back.
    """
    import vtkmodules.qt

    vtkmodules.qt.PyQtImpl = "PySide6"
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
    from vtkmodules.vtkInteractionStyle import vtkInteractorStyleUser

    w = QVTKRenderWindowInteractor(parent)
    w.GetRenderWindow().SetMultiSamples(0)
    w.GetRenderWindow().GetInteractor().SetInteractorStyle(vtkInteractorStyleUser())
    return w


def gl_renderer_name(render_window: Any) -> str:
    """The OpenGL renderer string ("llvmpipe ..." for software Mesa), empty when unknown."""
    try:
        caps = render_window.ReportCapabilities() or ""
    except Exception:  # noqa: BLE001 - capabilities are a hint only
        return ""
    for line in caps.splitlines():
        if "renderer string" in line.lower():
            return line.split(":", 1)[-1].strip()
    return ""


def is_software_gl(render_window: Any) -> bool:
    name = gl_renderer_name(render_window).lower()
    return any(s in name for s in ("llvmpipe", "softpipe", "swrast", "software"))
