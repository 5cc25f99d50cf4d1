"""DICOM input: header scanning, series grouping and splitting, Volume assembly.

Modules by job: :mod:`.stack` (the data model and the slice/main-stack rules), :mod:`.walk` (the
directory walker), :mod:`.headers` (one file's header), :mod:`.grouping` (series into stacks),
:mod:`.scan` (all of it over files and folders), :mod:`.load` with :mod:`.pixels` and
:mod:`.geometry` (a stack into a Volume).
"""
from .load import load_volume
from .scan import load_series, scan
from .stack import (
    FileProblem,
    InstanceHeader,
    ScanResult,
    SeriesStack,
    main_stack,
    slice_count,
    slice_order,
    slice_stack,
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
    "main_stack",
    "scan",
    "slice_count",
    "slice_order",
    "slice_stack",
]
