"""Read back what a render window shows, as numpy (tests, screenshots, benchmarks).

``QWidget.grab()`` returns garbage for GL widgets; the render window's own buffer is the truth.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter


def grab_render_window(render_window: Any, render: bool = True) -> np.ndarray:
    """RGB uint8 image (rows top-down) of the render window's back buffer."""
    if render:
        render_window.Render()
    f = vtkWindowToImageFilter()
    f.SetInput(render_window)
    f.SetInputBufferTypeToRGB()
    f.ReadFrontBufferOff()
    f.ShouldRerenderOff()
    f.Update()
    img = f.GetOutput()
    w, h, _ = img.GetDimensions()
    arr = vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)
    return np.ascontiguousarray(arr[::-1])


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 array as PNG (through VTK: no extra imaging dependency)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    path = Path(path)
    h, w = rgb.shape[:2]
    img = vtkImageData()
    img.SetDimensions(w, h, 1)
    flat = np.ascontiguousarray(rgb[::-1]).reshape(-1, rgb.shape[2])
    arr = numpy_to_vtk(flat, deep=True)
    img.GetPointData().SetScalars(arr)
    wr = vtkPNGWriter()
    wr.SetFileName(str(path))
    wr.SetInputData(img)
    wr.Write()
    return path
