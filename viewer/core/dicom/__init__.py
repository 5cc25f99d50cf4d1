"""DICOM input: header scanning, series grouping and splitting, Volume assembly."""
from .scan import (
    FileProblem,
    InstanceHeader,
    ScanResult,
    SeriesStack,
    load_series,
    load_volume,
    scan,
)
from .volume import GeometryReport, Volume

__all__ = [
    "FileProblem",
    "GeometryReport",
    "InstanceHeader",
    "ScanResult",
    "SeriesStack",
    "Volume",
    "load_series",
    "load_volume",
    "scan",
]
