"""The scan's data model: one file's header, a displayable stack, a skipped file, a scan result.

Kept apart from the scanner and the loader so that both (and the services) import the types
without importing each other; the rules that depend only on these types live here too: the
loader's slice order, the one slice of a stack, and which stack of a folder is the main one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np


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
    # Pixel format and per-image values needed to decode without re-reading the header.
    rows: int = 0
    columns: int = 0
    bits_allocated: int = 0
    bits_stored: int = 0
    pixel_representation: int = 0
    samples_per_pixel: int = 1
    photometric: str = ""
    planar_configuration: int = 0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    window: tuple[float, float] | None = None
    image_type: tuple[str, ...] = ()
    echo_time: float | None = None
    temporal_index: int | None = None
    b_value: float | None = None
    stack_id: str = ""
    pixel_offset: int | None = None  # byte offset of native pixel data (decompressed stream for .gz)
    pixel_length: int | None = None  # 0xFFFFFFFF when encapsulated
    float_pixels: bool = False  # Float/Double Float Pixel Data


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
    patient_issuer: str = ""  # (0010,0021) Issuer of Patient ID
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
    non_image: list[SeriesStack] = field(default_factory=list)  # SR, SEG, PR, raw data... (not volumes)


def frame_header(h: InstanceHeader, i: int) -> InstanceHeader:
    """Frame ``i`` of a classic multi-frame file as its own header (only frame 0 keeps a position)."""
    return dataclasses.replace(h, frame_index=i, position=h.position if i == 0 else None,
                               orientation=h.orientation if i == 0 else None)


def stack_headers(stack: SeriesStack) -> list[InstanceHeader]:
    """One header per slice the loader makes: a classic multi-frame file stands for all its frames."""
    headers = list(stack.instances)
    if len(headers) == 1 and headers[0].frame_index is None and headers[0].number_of_frames > 1:
        return [frame_header(headers[0], i) for i in range(headers[0].number_of_frames)]
    return headers


def slice_order(headers: list[InstanceHeader]) -> list[int]:
    """Indices of ``headers`` in volume order (k): along the slice normal when every header has a
    position and orientation, else by instance number. The loader and every "which file is slice k"
    question use this one rule."""
    n = len(headers)
    if not all(h.position is not None and h.orientation is not None for h in headers):
        return sorted(range(n), key=lambda i: (headers[i].instance_number if headers[i].instance_number is not None
                                               else 1 << 30, headers[i].frame_index or 0, str(headers[i].path)))
    o = np.asarray(headers[0].orientation, dtype=np.float64)
    row = o[:3] / (np.linalg.norm(o[:3]) or 1.0)
    col = o[3:] / (np.linalg.norm(o[3:]) or 1.0)
    normal = np.cross(row, col)
    d = np.array([h.position for h in headers], dtype=np.float64) @ normal
    return sorted(range(n), key=lambda i: (d[i], headers[i].instance_number or 0))


def slice_count(stack: SeriesStack) -> int:
    """Slices the loader makes of ``stack`` (frames of a multi-frame file count one each)."""
    return len(stack_headers(stack))


def slice_stack(stack: SeriesStack, k: int) -> SeriesStack:
    """A stack of only slice ``k`` (clipped), so one slice is decoded without reading the others.

    A mosaic is one file holding every slice: it is returned whole (its one file is the slice).
    """
    headers = stack_headers(stack)
    if not headers or (len(headers) == 1 and any("MOSAIC" in t for t in headers[0].image_type)):
        return stack
    order = slice_order(headers)
    h = headers[order[int(np.clip(k, 0, len(order) - 1))]]
    return dataclasses.replace(stack, instances=[h])


def main_stack(stacks: Iterable[SeriesStack], key: str | None = None) -> SeriesStack | None:
    """The stack a reader means by "this series/folder": the one named ``key`` if given and
    present, else the image stack with the most slices, localizers only when nothing else."""
    images = [s for s in stacks if s.is_image]
    if key:
        named = [s for s in images if s.key == key]
        if named:
            return named[0]
    if not images:
        return None
    return max(images, key=lambda s: (not s.is_localizer, slice_count(s)))
