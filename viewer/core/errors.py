"""Domain errors of the viewer core.

Every error names the file (or series) and the problem so that a reader or an IT admin can act
on it; none carries patient-identifying data beyond the path the user gave us.
"""
from __future__ import annotations

from pathlib import Path

from casebook.common.errors import Cancelled, CasebookError

__all__ = [
    "Cancelled",
    "CasebookError",
    "ConfigError",
    "DicomReadError",
    "SeriesGeometryError",
    "UnsupportedTransferSyntaxError",
]


class DicomReadError(CasebookError):
    """A file could not be read as DICOM or lacks what is needed to use it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedTransferSyntaxError(DicomReadError):
    """Pixel data is encoded in a transfer syntax no installed codec can decode."""


class SeriesGeometryError(CasebookError):
    """A series cannot be assembled into a volume (e.g. inconsistent orientation or size)."""

    def __init__(self, series: str, reason: str) -> None:
        self.series = series
        self.reason = reason
        super().__init__(f"series {series}: {reason}")


class ConfigError(CasebookError):
    """The settings file or an environment override is invalid."""
