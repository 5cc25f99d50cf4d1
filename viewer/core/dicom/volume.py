"""The Volume model: voxels plus the geometry needed to place them in the patient.

Conventions (fixed, everything else builds on them):

* ``voxels`` is indexed ``[k, j, i]`` = (slice, row, column), i.e. (z, y, x); colour images add a
  trailing channel axis ``[k, j, i, c]``. Rescale slope/intercept are already applied (CT in HU).
* ``spacing`` is ``(sk, sj, si)`` in mm in the same (z, y, x) order: slice step (from positions,
  not SliceThickness), row spacing, column spacing.
* ``origin`` is the LPS patient position (mm) of the centre of voxel ``[0, 0, 0]``.
* ``direction`` is a 3x3 matrix whose *columns* are the unit LPS vectors along increasing
  i (column index: DICOM row direction), j (row index: DICOM column direction) and k (slice).
  For a gantry-tilted series the k column is the slice stacking direction, which is then not
  orthogonal to the first two; ``geometry.gantry_tilt_deg`` says by how much.
* ``affine_lps`` maps ``(i, j, k, 1)`` to LPS mm; ``affine_ras`` is the NIfTI-style equivalent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class GeometryReport:
    """What was noticed while stacking slices; shown to the reader, never silently fixed."""

    uniform_spacing: bool = True
    spacing_min: float | None = None
    spacing_max: float | None = None
    missing_slices: int = 0
    gantry_tilt_deg: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # False when the file gives none: the viewer then draws no orientation letters / no scale bar
    # (1 mm and an identity direction are only placeholders that keep the arithmetic going).
    pixel_spacing_known: bool = True
    patient_geometry_known: bool = True


@dataclass
class Volume:
    """An image series as a voxel array in patient space."""

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    modality: str = ""
    series_uid: str = ""
    study_uid: str = ""
    patient_id: str = ""
    description: str = ""
    window: tuple[float, float] | None = None  # (center, width) from the header, if any
    photometric: str = "MONOCHROME2"
    geometry: GeometryReport = field(default_factory=GeometryReport)
    source_files: list[Path] = field(default_factory=list)
    slice_positions: np.ndarray | None = None  # LPS position of each slice k, shape (nk, 3)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if self.voxels.ndim not in (3, 4):
            raise ValueError(f"voxels must be (z, y, x) or (z, y, x, c), got shape {self.voxels.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns)."""
        return tuple(int(n) for n in self.voxels.shape[:3])  # type: ignore[return-value]

    @property
    def is_color(self) -> bool:
        return self.voxels.ndim == 4

    @property
    def affine_lps(self) -> np.ndarray:
        sk, sj, si = self.spacing
        a = np.eye(4)
        a[:3, 0] = self.direction[:, 0] * si
        a[:3, 1] = self.direction[:, 1] * sj
        a[:3, 2] = self.direction[:, 2] * sk
        a[:3, 3] = self.origin
        return a

    @property
    def affine_ras(self) -> np.ndarray:
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Map (..., 3) voxel indices (i, j, k) to LPS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine_lps[:3, :3].T + self.affine_lps[:3, 3]

    def lps_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map (..., 3) LPS mm to continuous voxel indices (i, j, k)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine_lps)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    @property
    def value_range(self) -> tuple[float, float]:
        return float(np.min(self.voxels)), float(np.max(self.voxels))

    def default_window(self) -> tuple[float, float]:
        """Header window if present, else a robust percentile window; colour shows as stored."""
        if self.is_color:
            # RGB is already display values: the identity window over the stored range
            top = 255.0 if self.voxels.dtype == np.uint8 else float(max(np.max(self.voxels), 1))
            return top / 2.0, top
        if self.window is not None and self.window[1] > 0:
            return self.window
        sample = self.voxels[:: max(1, self.shape[0] // 16)]
        lo, hi = np.percentile(sample, [0.5, 99.5])
        width = float(max(hi - lo, 1.0))
        return float((hi + lo) / 2.0), width
