"""DICOM input: header scanning, series grouping and splitting, Volume assembly."""
from .volume import GeometryReport, Volume

__all__ = ["Volume", "GeometryReport"]
