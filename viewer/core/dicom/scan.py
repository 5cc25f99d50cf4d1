"""Header scanning: find DICOM files, read headers only, group into displayable stacks.

Public API (other layers code against it):

* :func:`scan` walks files, folders and DICOMDIRs, reads headers in parallel and groups them into
  :class:`SeriesStack` objects, splitting series that mix orientations, echoes, acquisitions,
  image sizes or localizers.
* :func:`load_volume` decodes one stack into a :class:`~.volume.Volume`.
* :func:`load_series` is the convenience "give me the main volume in this folder".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..progress import ProgressCallback, SupportsCancel
from .volume import Volume


@dataclass(frozen=True)
class InstanceHeader:
    """What the scan keeps of one file (or of one frame of a multi-frame file)."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    position: tuple[float, float, float] | None  # ImagePositionPatient (first frame if multi-frame)
    orientation: tuple[float, float, float, float, float, float] | None
    number_of_frames: int
    transfer_syntax_uid: str
    acquisition_number: int | None = None
    echo_number: int | None = None
    acquisition_datetime: str = ""
    frame_index: int | None = None  # set when a stack is made of frames of one multi-frame file


@dataclass
class SeriesStack:
    """One displayable stack; a mixed DICOM series is split into several."""

    key: str  # series_uid, or series_uid + "#2" etc. after a split
    series_uid: str
    study_uid: str
    patient_id: str
    patient_name: str
    patient_sex: str
    patient_birth_date: str
    patient_age: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    series_number: int | None
    series_description: str
    modality: str
    body_part: str
    manufacturer: str
    rows: int
    columns: int
    instances: list[InstanceHeader]
    split_reason: str = ""  # e.g. "echo 2", "orientation 2", "localizer"
    is_localizer: bool = False
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing) mm
    slice_thickness: float | None = None
    photometric: str = ""
    frame_of_reference_uid: str = ""
    sop_class_uid: str = ""
    is_image: bool = True  # False for SR, SEG, presentation states, raw data...
    institution_name: str = ""
    referring_physician: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileProblem:
    """A file that was skipped, and why (shown to the user; names the file)."""

    path: Path
    reason: str


@dataclass
class ScanResult:
    stacks: list[SeriesStack]
    problems: list[FileProblem]
    files_seen: int


def scan(
    paths: Iterable[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: SupportsCancel | None = None,
    workers: int = 0,
) -> ScanResult:
    """Read the headers of every DICOM file under ``paths`` and group them into stacks."""
    raise NotImplementedError("scan: implementation lands in the next commit")


def load_volume(
    stack: SeriesStack,
    *,
    progress: ProgressCallback | None = None,
    cancel: SupportsCancel | None = None,
) -> Volume:
    """Decode the pixels of ``stack`` into a Volume in patient space."""
    raise NotImplementedError("load_volume: implementation lands in the next commit")


def load_series(path_or_paths: str | Path | Iterable[str | Path]) -> Volume:
    """Scan ``path_or_paths`` and load the largest image stack found."""
    raise NotImplementedError("load_series: implementation lands in the next commit")
