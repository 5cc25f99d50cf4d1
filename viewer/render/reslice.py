"""Cutting a display plane out of a resliced series with ``vtkImageReslice`` (multi-threaded C++).

The core (:mod:`casebook.viewer.core.viewstate.geometry`) decides *which* plane a view shows
(its origin, row and column steps in LPS mm); this module only cuts it, fast enough to scroll a
512² series: the whole volume is handed to VTK once, in voxel-index space, and each plane is one
4x4 matrix from output pixels to voxel indices. Even stacks (straight, oblique or gantry-tilted)
map affinely and take this path; a stack with uneven slice steps needs the core's piecewise map
(:class:`~casebook.viewer.core.viewstate.reslice.VolumeSampler`), which the adapter uses instead.
"""
from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkImagingCore import vtkImageReslice

from casebook.viewer.core.viewstate import MprGeometry


class PlaneReslicer:
    """One ``vtkImageReslice`` over one volume; :meth:`cut` returns a plane as ``vtkImageData``."""

    def __init__(self) -> None:
        self.reslice = vtkImageReslice()
        self.reslice.SetInterpolationModeToLinear()
        self.reslice.SetOutputDimensionality(2)
        # output keeps the stored type (int16 CT: rounded to the nearest unit, 25% faster than float)
        self.reslice.AutoCropOutputOff()
        self.reslice.TransformInputSamplingOff()
        self._input = vtkImageData()
        self._voxels: np.ndarray | None = None
        self._axes = vtkMatrix4x4()
        self.reslice.SetResliceAxes(self._axes)

    @staticmethod
    def supports(geometry: MprGeometry | None) -> bool:
        """Whether ``geometry``'s planes are cut here (resliced, evenly stacked)."""
        return (geometry is not None and geometry.sampler is not None
                and geometry.sampler.lps_to_ijk_affine is not None)

    def _bind(self, geometry: MprGeometry) -> None:
        vox = geometry.volume.voxels
        if self._voxels is vox:
            return
        buf = np.ascontiguousarray(vox)
        nk, nj, ni = buf.shape[:3]
        self._input = vtkImageData()
        self._input.SetDimensions(ni, nj, nk)
        self._input.SetSpacing(1.0, 1.0, 1.0)
        self._input.SetOrigin(0.0, 0.0, 0.0)
        self._input.GetPointData().SetScalars(numpy_to_vtk(buf.reshape(-1), deep=False))
        self._buf = buf  # keep the memory alive while VTK reads it
        self._voxels = vox
        self.reslice.SetInputData(self._input)
        assert geometry.sampler is not None
        self.reslice.SetBackgroundLevel(geometry.sampler.background)

    def plane_to_index(self, geometry: MprGeometry, orientation: str, index: int) -> np.ndarray:
        """4x4 from output world (x = col * col_mm, y = row * row_mm, 0) to voxel index (i, j, k)."""
        assert geometry.sampler is not None and geometry.sampler.lps_to_ijk_affine is not None
        m = geometry.sampler.lps_to_ijk_affine
        o, rs, cs, _, _ = geometry.plane_frame(orientation, index)
        row_mm, col_mm = geometry.pixel_spacing(orientation)
        lin = m[:3, :3]
        axes = np.eye(4)
        axes[:3, 0] = lin @ cs / col_mm
        axes[:3, 1] = lin @ rs / row_mm
        axes[:3, 2] = lin @ geometry.plane_normal(orientation)
        axes[:3, 3] = lin @ o + m[:3, 3]
        return axes

    def cut(self, geometry: MprGeometry, orientation: str, index: int) -> vtkImageData:
        """The plane ``index`` of ``orientation`` as an image of the stored type, spacing (col_mm, row_mm), origin 0."""
        self._bind(geometry)
        axes = self.plane_to_index(geometry, orientation, index)
        for r in range(4):
            for c in range(4):
                self._axes.SetElement(r, c, float(axes[r, c]))
        self._axes.Modified()
        rows, cols = geometry.image_shape(orientation)
        row_mm, col_mm = geometry.pixel_spacing(orientation)
        self.reslice.SetOutputSpacing(col_mm, row_mm, 1.0)
        self.reslice.SetOutputOrigin(0.0, 0.0, 0.0)
        self.reslice.SetOutputExtent(0, cols - 1, 0, rows - 1, 0, 0)
        self.reslice.Modified()
        self.reslice.Update()
        return self.reslice.GetOutput()

    def shown_array(self, geometry: MprGeometry, orientation: str, index: int) -> np.ndarray:
        """The pixels a slice view shows for that plane: cut here when :meth:`supports` it, else
        the core's own plane (a straight series' voxels, an uneven stack's sampled plane)."""
        if self.supports(geometry):
            return self.cut_array(geometry, orientation, index)
        return np.asarray(geometry.slice_array(orientation, index), dtype=np.float32)

    def cut_array(self, geometry: MprGeometry, orientation: str, index: int) -> np.ndarray:
        """:meth:`cut` as a (rows, cols) float32 numpy array (tests, screenshots)."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        out = self.cut(geometry, orientation, index)
        rows, cols = geometry.image_shape(orientation)
        return vtk_to_numpy(out.GetPointData().GetScalars()).reshape(rows, cols).astype(np.float32)


__all__ = ["PlaneReslicer"]
