"""Header scanning: find DICOM files, read headers only, group into displayable stacks.

Public API (other layers code against it):

* :func:`scan` walks files, folders and DICOMDIRs, reads headers in parallel and groups them into
  :class:`SeriesStack` objects, splitting series that mix orientations, echoes, acquisitions,
  image sizes or localizers.
* :func:`load_volume` decodes one stack into a :class:`~.volume.Volume`.
* :func:`load_series` is the convenience "give me the main volume in this folder".
"""
from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import DicomReadError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from . import _fastheader, _io
from .volume import Volume

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------------------------
# Reading one file's header
# --------------------------------------------------------------------------------------------

# SOP classes that carry no displayable image volume even if some have pixel data (SEG).
_NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key objects
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA/STL
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects except RT Image (handled below)
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, fiducials, SEG, ...
    "1.2.840.10008.5.1.4.1.1.91.",  # microscopy bulk annotations
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR spectroscopy
    "1.2.840.10008.5.1.4.1.1.4.3",  # enhanced MR colour? (kept) -- see _is_image
    "1.2.840.10008.5.1.4.1.1.78.",  # ophthalmic measurements
    "1.2.840.10008.5.1.4.1.1.79.",
    "1.2.840.10008.5.1.4.1.1.80.",
    "1.2.840.10008.5.1.4.1.1.82.",
    "1.2.840.10008.5.1.4.1.1.200.",  # protocols
    "1.2.840.10008.5.1.4.34.",  # RT treatment records
    "1.2.840.10008.5.1.4.38.",  # hanging protocols
    "1.2.840.10008.5.1.4.39.",  # colour palettes
    "1.2.840.10008.5.1.4.43.",
    "1.2.840.10008.5.1.4.44.",
    "1.2.840.10008.5.1.4.45.",
)
_IMAGE_EXCEPTIONS = (
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
)
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_LOCALIZER_WORDS = ("LOCALIZER", "SCOUT", "SURVIEW", "TOPOGRAM", "SCANOGRAM")


def _sop_class_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name if name and name != uid else uid
    except Exception:  # noqa: BLE001 - a malformed UID is still worth naming
        return uid or "unknown SOP class"


def _is_image_class(sop_class_uid: str) -> bool:
    if any(sop_class_uid == e for e in _IMAGE_EXCEPTIONS):
        return True
    return not any(sop_class_uid.startswith(p) for p in _NON_IMAGE_PREFIXES)


def _s(ds: Any, name: str) -> str:
    try:
        v = ds.get(name, "")
    except Exception:  # noqa: BLE001 - malformed value
        return ""
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v).strip()


def _first(ds: Any, name: str) -> Any:
    """First value of an element (multi-valued elements give their first item); None if empty."""
    v = ds.get(name, None)
    if v is None or v == "":
        return None
    if isinstance(v, list) or type(v).__name__ == "MultiValue":
        v = v[0]
    return v


def _i(ds: Any, name: str) -> int | None:
    try:
        v = _first(ds, name)
        return None if v is None else int(float(v))
    except Exception:  # noqa: BLE001
        return None


def _f(ds: Any, name: str) -> float | None:
    try:
        v = _first(ds, name)
        if v is None:
            return None
        x = float(v)
        return x if math.isfinite(x) else None
    except Exception:  # noqa: BLE001
        return None


def _fs(ds: Any, name: str, n: int) -> tuple[float, ...] | None:
    try:
        v = ds.get(name, None)
        if v is None or v == "":
            return None
        vals = tuple(float(x) for x in v)
        if len(vals) != n or not all(math.isfinite(x) for x in vals):
            return None
        return vals
    except Exception:  # noqa: BLE001
        return None


def _item(ds: Any, seq: str) -> Any:
    try:
        s = ds.get(seq, None)
        if s:
            return s[0]
    except Exception:  # noqa: BLE001
        pass
    return None


def _window(ds: Any) -> tuple[float, float] | None:
    c, w = _f(ds, "WindowCenter"), _f(ds, "WindowWidth")
    if c is None or w is None or w <= 0:
        return None
    return (c, w)


@dataclass
class _FileRecord:
    """Result of reading one file: instances plus series-level attributes (from its header)."""

    instances: list[InstanceHeader]
    series: dict[str, Any]
    is_image: bool
    is_localizer: bool
    enhanced: bool


@dataclass
class _DicomDirRefs:
    path: Path
    referenced: list[Path]
    missing: list[str]


def _read_dicomdir_refs(path: Path, ds: Any) -> _DicomDirRefs:
    base = path.parent
    refs: list[Path] = []
    missing: list[str] = []
    lower_cache: dict[Path, dict[str, str]] = {}
    for rec in ds.get("DirectoryRecordSequence", []) or []:
        fid = rec.get("ReferencedFileID", None)
        if not fid:
            continue
        parts = [fid] if isinstance(fid, str) else list(fid)
        p = base.joinpath(*parts)
        if not p.exists():
            # DICOMDIR file IDs are upper case; media written on other systems may differ.
            cur = base
            ok = True
            for part in parts:
                names = lower_cache.get(cur)
                if names is None:
                    try:
                        names = {n.lower(): n for n in os.listdir(cur)}
                    except OSError:
                        names = {}
                    lower_cache[cur] = names
                real = names.get(str(part).lower())
                if real is None:
                    ok = False
                    break
                cur = cur / real
            if not ok:
                missing.append("/".join(str(x) for x in parts))
                continue
            p = cur
        refs.append(p)
    return _DicomDirRefs(path, refs, missing)


def _frame_headers(ds: Any, path: Path, base: dict[str, Any]) -> list[InstanceHeader]:
    """Expand an enhanced multi-frame object into one header per frame (functional groups)."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", None) or []
    nframes = base["number_of_frames"]
    out: list[InstanceHeader] = []

    def group(fg: Any, name: str) -> Any:
        it = _item(fg, name) if fg is not None else None
        if it is None and shared is not None:
            it = _item(shared, name)
        return it

    for fi in range(nframes):
        fg = per_frame[fi] if fi < len(per_frame) else None
        kw = dict(base)
        kw["frame_index"] = fi
        pp = group(fg, "PlanePositionSequence")
        po = group(fg, "PlaneOrientationSequence")
        pm = group(fg, "PixelMeasuresSequence")
        pv = group(fg, "PixelValueTransformationSequence")
        fc = group(fg, "FrameContentSequence")
        voi = group(fg, "FrameVOILUTSequence")
        echo = group(fg, "MREchoSequence")
        diff = group(fg, "MRDiffusionSequence")
        ftype = group(fg, "MRImageFrameTypeSequence") or group(fg, "CTImageFrameTypeSequence")
        if pp is not None:
            kw["position"] = _fs(pp, "ImagePositionPatient", 3)
        if po is not None:
            kw["orientation"] = _fs(po, "ImageOrientationPatient", 6)
        if pm is not None:
            ps = _fs(pm, "PixelSpacing", 2)
            kw["pixel_spacing"] = ps or kw["pixel_spacing"]
            kw["slice_thickness"] = _f(pm, "SliceThickness") or kw["slice_thickness"]
            kw["spacing_between_slices"] = _f(pm, "SpacingBetweenSlices") or kw["spacing_between_slices"]
        if pv is not None:
            slope, inter = _f(pv, "RescaleSlope"), _f(pv, "RescaleIntercept")
            kw["rescale_slope"] = 1.0 if slope is None or slope == 0 else slope
            kw["rescale_intercept"] = 0.0 if inter is None else inter
        if voi is not None:
            kw["window"] = _window(voi) or kw["window"]
        if fc is not None:
            kw["temporal_index"] = _i(fc, "TemporalPositionIndex")
            kw["stack_id"] = _s(fc, "StackID")
            kw["acquisition_datetime"] = _s(fc, "FrameAcquisitionDateTime") or kw["acquisition_datetime"]
        if echo is not None:
            kw["echo_time"] = _f(echo, "EffectiveEchoTime")
        if diff is not None:
            kw["b_value"] = _f(diff, "DiffusionBValue")
        if ftype is not None:
            ft = ftype.get("FrameType", None)
            if ft:
                kw["image_type"] = tuple(str(x).upper() for x in (ft if not isinstance(ft, str) else [ft]))
        out.append(InstanceHeader(**kw))
    return out


def _read_file(path: Path, fast: bool = True) -> _FileRecord | FileProblem | _DicomDirRefs:
    """Read one file's header (no pixel data); never raises.

    ``fast`` tries the byte-level parser of :mod:`._fastheader` first (common files; far cheaper
    than pydicom); it declines anything unusual, which then takes the pydicom path below.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        fp = _io.open_binary(path)
    except OSError as exc:
        return FileProblem(path, f"cannot open: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - corrupt gzip etc.
        return FileProblem(path, f"cannot open: {exc}")
    try:
        why = _io.sniff(fp)
        if why is not None:
            return FileProblem(path, why)
        if fast:
            fh = _fastheader.parse(fp, _HEADER_TAGS)
            if fh is not None:
                return _record_from_dataset(path, fh.dataset, fh.transfer_syntax_uid, fh.pixel_info,
                                            fh.float_pixels)
            fp.seek(0)
        try:
            # Only the tags we use are parsed; the rest (large private blocks) is skipped.
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True, specific_tags=_HEADER_TAGS)
        except InvalidDicomError as exc:
            return FileProblem(path, f"not a valid DICOM file: {exc}")
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt headers
            return FileProblem(path, f"unreadable DICOM header: {type(exc).__name__}: {exc}")
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        media_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
        if media_class == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
            return _read_dicomdir_refs(path, ds)
        if not ts:
            ts = "1.2.840.10008.1.2" if ds.is_implicit_VR else (
                "1.2.840.10008.1.2.1" if ds.is_little_endian else "1.2.840.10008.1.2.2")
        if len(ds) == 0:
            return FileProblem(path, "not a DICOM file (no data elements)")
        pixel_info = None
        if ts not in _io.DEFLATED:
            try:
                pixel_info = _io.pixel_element_at(fp, bool(ds.is_little_endian), bool(ds.is_implicit_VR))
            except Exception:  # noqa: BLE001
                pixel_info = None
        float_pixels = False
        if pixel_info is not None:
            # Which pixel element was found decides float handling at load time.
            fp.seek(pixel_info[0] - (8 if ds.is_implicit_VR else 12))
            tag4 = fp.read(4)
            float_pixels = tag4[2:4] in (b"\x08\x00", b"\x09\x00", b"\x00\x08", b"\x00\x09")
        return _record_from_dataset(path, ds, ts, pixel_info, float_pixels)
    except Exception as exc:  # noqa: BLE001 - last line of defence: report, never crash the scan
        return FileProblem(path, f"unreadable DICOM header: {type(exc).__name__}: {exc}")
    finally:
        fp.close()


def _record_from_dataset(path: Path, ds: Any, ts: str, pixel_info: tuple[int, int] | None,
                         float_pixels: bool) -> _FileRecord | FileProblem:
    sop_class = _s(ds, "SOPClassUID")
    rows, cols = _i(ds, "Rows") or 0, _i(ds, "Columns") or 0
    image_type = tuple(x.strip().upper() for x in _s(ds, "ImageType").split("\\") if x.strip())
    is_image = _is_image_class(sop_class) and rows > 0 and cols > 0
    if is_image and pixel_info is None and ts in (_io.NATIVE_LE | _io.NATIVE_BE):
        is_image = False  # header of an image class but no pixel data element at all
    nframes = _i(ds, "NumberOfFrames") or 1
    series_uid = _s(ds, "SeriesInstanceUID")
    if not series_uid:
        # Old exports sometimes lack it; keep such files together per folder and series number.
        series_uid = f"nouid:{path.parent}:{_s(ds, 'SeriesNumber') or '?'}:{_s(ds, 'StudyInstanceUID')}"
    desc = _s(ds, "SeriesDescription")
    is_localizer = any(w in t for t in image_type for w in _LOCALIZER_WORDS) or any(
        w.lower() in desc.lower() for w in ("localizer", "localiser", "scout", "surview", "topogram"))
    series = {
        "series_uid": series_uid,
        "study_uid": _s(ds, "StudyInstanceUID"),
        "patient_id": _s(ds, "PatientID"),
        "patient_name": _s(ds, "PatientName"),
        "patient_sex": _s(ds, "PatientSex"),
        "patient_birth_date": _s(ds, "PatientBirthDate"),
        "patient_age": _s(ds, "PatientAge"),
        "study_date": _s(ds, "StudyDate"),
        "study_time": _s(ds, "StudyTime"),
        "study_description": _s(ds, "StudyDescription"),
        "accession_number": _s(ds, "AccessionNumber"),
        "series_number": _i(ds, "SeriesNumber"),
        "series_description": desc,
        "modality": _s(ds, "Modality"),
        "body_part": _s(ds, "BodyPartExamined"),
        "manufacturer": _s(ds, "Manufacturer"),
        "frame_of_reference_uid": _s(ds, "FrameOfReferenceUID"),
        "institution_name": _s(ds, "InstitutionName"),
        "referring_physician": _s(ds, "ReferringPhysicianName"),
        "sop_class_uid": sop_class,
    }
    slope = _f(ds, "RescaleSlope")
    inter = _f(ds, "RescaleIntercept")
    base: dict[str, Any] = dict(
        path=path,
        sop_instance_uid=_s(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        instance_number=_i(ds, "InstanceNumber"),
        position=_fs(ds, "ImagePositionPatient", 3),
        orientation=_fs(ds, "ImageOrientationPatient", 6),
        number_of_frames=nframes,
        transfer_syntax_uid=ts,
        acquisition_number=_i(ds, "AcquisitionNumber"),
        echo_number=_i(ds, "EchoNumbers"),
        acquisition_datetime=_s(ds, "AcquisitionDateTime")
        or (_s(ds, "AcquisitionDate") + _s(ds, "AcquisitionTime")),
        rows=rows,
        columns=cols,
        bits_allocated=_i(ds, "BitsAllocated") or 0,
        bits_stored=_i(ds, "BitsStored") or (_i(ds, "BitsAllocated") or 0),
        pixel_representation=_i(ds, "PixelRepresentation") or 0,
        samples_per_pixel=_i(ds, "SamplesPerPixel") or 1,
        photometric=_s(ds, "PhotometricInterpretation").upper(),
        planar_configuration=_i(ds, "PlanarConfiguration") or 0,
        rescale_slope=1.0 if slope is None or slope == 0 else slope,
        rescale_intercept=0.0 if inter is None else inter,
        pixel_spacing=_fs(ds, "PixelSpacing", 2) or _fs(ds, "ImagerPixelSpacing", 2),
        slice_thickness=_f(ds, "SliceThickness"),
        spacing_between_slices=_f(ds, "SpacingBetweenSlices"),
        window=_window(ds),
        image_type=image_type,
        echo_time=_f(ds, "EchoTime"),
        temporal_index=_i(ds, "TemporalPositionIdentifier"),
        b_value=_f(ds, "DiffusionBValue"),
        pixel_offset=pixel_info[0] if pixel_info else None,
        pixel_length=pixel_info[1] if pixel_info else None,
        float_pixels=float_pixels,
    )
    enhanced = False
    if is_image and "PerFrameFunctionalGroupsSequence" in ds and nframes > 1 or (
        is_image and "SharedFunctionalGroupsSequence" in ds and "PerFrameFunctionalGroupsSequence" in ds
    ):
        enhanced = True
        # Enhanced objects put geometry in functional groups; the frames become the instances.
        instances = _frame_headers(ds, path, base)
        if instances and instances[0].position is not None:
            base["position"] = instances[0].position
    else:
        instances = [InstanceHeader(**base)]
    return _FileRecord(instances, series, is_image, is_localizer, enhanced)


# --------------------------------------------------------------------------------------------
# Walking inputs
# --------------------------------------------------------------------------------------------

_HEADER_TAGS = [
    "AccessionNumber",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "AcquisitionNumber",
    "AcquisitionTime",
    "BitsAllocated",
    "BitsStored",
    "BodyPartExamined",
    "Columns",
    "DiffusionBValue",
    "EchoNumbers",
    "EchoTime",
    "FrameOfReferenceUID",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "ImageType",
    "ImagerPixelSpacing",
    "InstanceNumber",
    "InstitutionName",
    "Manufacturer",
    "Modality",
    "NumberOfFrames",
    "PatientAge",
    "PatientBirthDate",
    "PatientID",
    "PatientName",
    "PatientSex",
    "PhotometricInterpretation",
    "PixelRepresentation",
    "PixelSpacing",
    "PlanarConfiguration",
    "ReferringPhysicianName",
    "RescaleIntercept",
    "RescaleSlope",
    "Rows",
    "SOPClassUID",
    "SOPInstanceUID",
    "SamplesPerPixel",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SliceThickness",
    "SpacingBetweenSlices",
    "StudyDate",
    "StudyDescription",
    "StudyInstanceUID",
    "StudyTime",
    "TemporalPositionIdentifier",
    "WindowCenter",
    "WindowWidth",
    "DirectoryRecordSequence",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "SpecificCharacterSet",
]

_SKIP_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


def _walk(paths: Iterable[str | Path], problems: list[FileProblem]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    if n.lower() in _SKIP_NAMES or n.startswith("._"):
                        continue
                    files.append(Path(root) / n)
        else:
            problems.append(FileProblem(p, "no such file or folder"))
    return files


def scan(
    paths: Iterable[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: SupportsCancel | None = None,
    workers: int = 0,
) -> ScanResult:
    """Read the headers of every DICOM file under ``paths`` and group them into stacks.

    Files are read in a thread pool, headers only (pixel data is skipped, its offset kept so that
    :func:`load_volume` can read it directly). DICOMDIRs add the files they reference. Files that
    are not DICOM, or that cannot be parsed, become :class:`FileProblem` entries; nothing raises
    except :class:`Cancelled`.
    """
    problems: list[FileProblem] = []
    queue = _walk([paths] if isinstance(paths, (str, Path)) else paths, problems)
    seen: set[str] = set()
    records: list[_FileRecord] = []
    nworkers = workers if workers > 0 else (os.cpu_count() or 2)
    total = len(queue)
    done = 0
    files_seen = 0
    with ThreadPoolExecutor(max_workers=nworkers, thread_name_prefix="dicom-scan") as pool:
        while queue:
            batch: list[Path] = []
            for p in queue:
                key = os.path.normcase(os.path.abspath(p))
                if key in seen:
                    continue
                seen.add(key)
                batch.append(p)
            queue = []
            files_seen += len(batch)
            futures = {pool.submit(_read_file, p): p for p in batch}
            try:
                for fut in as_completed(futures):
                    check_cancel(cancel)
                    res = fut.result()
                    done += 1
                    if isinstance(res, FileProblem):
                        problems.append(res)
                    elif isinstance(res, _DicomDirRefs):
                        if res.missing:
                            shown = ", ".join(res.missing[:3]) + (", ..." if len(res.missing) > 3 else "")
                            problems.append(FileProblem(
                                res.path, f"DICOMDIR references {len(res.missing)} missing file(s): {shown}"))
                        new = [r for r in res.referenced
                               if os.path.normcase(os.path.abspath(r)) not in seen]
                        queue.extend(new)
                        total += len(new)
                    else:
                        records.append(res)
                    if progress is not None:
                        progress(done, total, "reading DICOM headers")
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    stacks, non_image = _group(records, problems)
    log.info("scanned %d files: %d stacks, %d non-image series, %d skipped",
             files_seen, len(stacks), len(non_image), len(problems))
    return ScanResult(stacks=stacks, problems=sorted(problems, key=lambda p: str(p.path)),
                      files_seen=files_seen, non_image=non_image)


# --------------------------------------------------------------------------------------------
# Grouping and splitting
# --------------------------------------------------------------------------------------------

def _normal(o: tuple[float, ...]) -> np.ndarray:
    r = np.asarray(o[:3], dtype=np.float64)
    c = np.asarray(o[3:], dtype=np.float64)
    n = np.cross(r, c)
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _inst_sort_key(h: InstanceHeader) -> tuple:
    return (h.instance_number if h.instance_number is not None else 1 << 30,
            h.frame_index if h.frame_index is not None else -1, str(h.path))


def _positions_repeat(insts: list[InstanceHeader]) -> bool:
    seen: set[tuple[float, float, float]] = set()
    for h in insts:
        if h.position is None:
            continue
        k = tuple(round(x, 2) for x in h.position)
        if k in seen:
            return True
        seen.add(k)  # type: ignore[arg-type]
    return False


def _partition(insts: list[InstanceHeader], keyf: Callable[[InstanceHeader], Any]) -> list[list[InstanceHeader]]:
    groups: dict[Any, list[InstanceHeader]] = {}
    for h in insts:
        groups.setdefault(keyf(h), []).append(h)
    return list(groups.values())


def _orientation_groups(insts: list[InstanceHeader]) -> list[list[InstanceHeader]]:
    reps: list[tuple[float, ...] | None] = []
    out: list[list[InstanceHeader]] = []
    for h in insts:
        o = h.orientation
        for i, r in enumerate(reps):
            if (o is None and r is None) or (
                o is not None and r is not None and max(abs(a - b) for a, b in zip(o, r)) < 1e-3
            ):
                out[i].append(h)
                break
        else:
            reps.append(o)
            out.append([h])
    return out


def _echo_key(h: InstanceHeader) -> Any:
    if h.echo_number is not None:
        return h.echo_number
    return round(h.echo_time, 2) if h.echo_time is not None else None


def _volume_order_key(h: InstanceHeader) -> tuple:
    """Order of the volumes of a 4D acquisition at any one slice position."""
    return (
        "\\".join(h.image_type[2:]),
        h.acquisition_number if h.acquisition_number is not None else -1,
        h.temporal_index if h.temporal_index is not None else -1,
        h.acquisition_datetime or "",
        _inst_sort_key(h),
    )


def _split_repeats(insts: list[InstanceHeader]) -> list[tuple[list[InstanceHeader], int | None]]:
    """Split a group whose slice positions repeat (4D: time, diffusion, magnitude/phase, ...).

    The n-th occurrence of each position (in acquisition order) goes to volume n, which is how
    converters such as dcm2niix build 4D data; returns ``(instances, volume index or None)``.
    """
    if not _positions_repeat(insts):
        return [(insts, None)]
    counts: dict[tuple, int] = {}
    vols: dict[int, list[InstanceHeader]] = {}
    for h in sorted(insts, key=_volume_order_key):
        k = tuple(round(x, 2) for x in h.position) if h.position is not None else ("nopos", id(h))
        n = counts.get(k, 0)
        counts[k] = n + 1
        vols.setdefault(n, []).append(h)
    return [(v, i + 1) for i, v in sorted(vols.items())]


_LABEL_ATTRS: list[tuple[str, Callable[[InstanceHeader], Any]]] = [
    ("type", lambda h: "\\".join(h.image_type[2:]) if len(h.image_type) > 2 else ""),
    ("acquisition", lambda h: h.acquisition_number),
    ("b", lambda h: round(h.b_value, 1) if h.b_value is not None else None),
    ("temporal position", lambda h: h.temporal_index),
]


def _image_parts(images: list[_FileRecord]) -> list[tuple[list[InstanceHeader], str, bool]]:
    """Split the image instances of one series into 3D stacks, each with a short reason."""
    raw: list[tuple[list[InstanceHeader], dict[str, Any], bool]] = []
    single: list[InstanceHeader] = []
    loc_paths = {r.instances[0].path for r in images if r.is_localizer}
    for r in images:
        if not r.enhanced and r.instances[0].number_of_frames > 1:
            # Classic multi-frame files (cine, US, XA, NM...) are each a stack of their own.
            raw.append((r.instances, {"multi-frame": r.instances[0].path.name}, r.is_localizer))
        else:
            single.extend(r.instances)
    for is_loc in (False, True):
        group = [h for h in single if (h.path in loc_paths) == is_loc]
        for by_class in _partition(group, lambda h: h.sop_class_uid):
            for sized in _partition(by_class, lambda h: (h.rows, h.columns, h.samples_per_pixel)):
                for oriented in _orientation_groups(sized):
                    for echo in _partition(oriented, _echo_key):
                        for sub, vol in _split_repeats(echo):
                            h = sub[0]
                            d = {"class": h.sop_class_uid, "size": f"{h.rows}x{h.columns}",
                                 "orientation": _orientation_label(h.orientation),
                                 "orient_key": tuple(round(x, 3) for x in h.orientation) if h.orientation else None,
                                 "echo": _echo_key(h), "volume": vol}
                            raw.append((sub, d, is_loc))
    if len(raw) == 1:
        insts, d, is_loc = raw[0]
        return [(insts, "localizer" if is_loc else "", is_loc)]

    def varies(name: str) -> bool:
        return len({d.get(name) for _, d, _ in raw}) > 1

    out: list[tuple[list[InstanceHeader], str, bool]] = []
    for insts, d, is_loc in raw:
        bits: list[str] = ["localizer"] if is_loc else []
        if "multi-frame" in d:
            bits.append(f"multi-frame {d['multi-frame']}")
        if varies("class"):
            bits.append(_sop_class_name(d.get("class") or ""))
        if varies("size"):
            bits.append(str(d.get("size")))
        if varies("orient_key"):
            bits.append(f"orientation {d.get('orientation')}")
        if varies("echo") and d.get("echo") is not None:
            bits.append(f"echo {d.get('echo')}")
        vol = d.get("volume")
        if vol is not None:
            for name, keyf in _LABEL_ATTRS:
                vals = {keyf(h) for h in insts}
                if len(vals) != 1 or None in vals or "" in vals:
                    continue
                if len({keyf(h) for r, _, _ in raw for h in r}) > 1:
                    bits.append(f"{name} {next(iter(vals))}")
            bits.append(f"volume {vol}")
        out.append((insts, ", ".join(bits), is_loc))
    return out


def _group(records: list[_FileRecord], problems: list[FileProblem]) -> tuple[list[SeriesStack], list[SeriesStack]]:
    by_series: dict[str, list[_FileRecord]] = {}
    for r in records:
        by_series.setdefault(r.series["series_uid"], []).append(r)
    stacks: list[SeriesStack] = []
    non_image: list[SeriesStack] = []
    for uid, recs in by_series.items():
        # The same SOP instance twice (copies in two folders) would double slices: keep the first.
        uniq: list[_FileRecord] = []
        seen_sop: set[str] = set()
        for r in sorted(recs, key=lambda r: str(r.instances[0].path)):
            sop = r.instances[0].sop_instance_uid
            if sop and sop in seen_sop:
                problems.append(FileProblem(r.instances[0].path, f"duplicate of SOP instance {sop} (skipped)"))
                continue
            seen_sop.add(sop)
            uniq.append(r)
        images = [r for r in uniq if r.is_image]
        others = [r for r in uniq if not r.is_image]
        if others:
            by_class: dict[str, list[_FileRecord]] = {}
            for r in others:
                by_class.setdefault(r.series["sop_class_uid"], []).append(r)
            for cls, rs in by_class.items():
                st = _make_stack(uid, rs[0], [h for r in rs for h in r.instances],
                                 f"non-image: {_sop_class_name(cls)}", False)
                st.is_image = False
                non_image.append(st)
        if not images:
            continue
        parts = _image_parts(images)
        # Main stacks first (largest non-localizer), so the plain series UID names the main one.
        parts.sort(key=lambda p: (p[2], -len(p[0]), min(_inst_sort_key(h) for h in p[0])))
        rec0 = images[0]
        for n, (insts, lab, is_loc) in enumerate(parts):
            key = uid if n == 0 else f"{uid}#{n + 1}"
            st = _make_stack(key, rec0, sorted(insts, key=_inst_sort_key), lab, is_loc)
            stacks.append(st)
    stacks.sort(key=_stack_order)
    return stacks, non_image


def _stack_order(s: SeriesStack) -> tuple:
    part = int(s.key.rsplit("#", 1)[1]) if "#" in s.key[len(s.series_uid):] else 1
    return (s.study_date, s.study_uid, s.series_number if s.series_number is not None else 1 << 30,
            s.series_uid, part)


def _orientation_label(o: tuple[float, ...] | None) -> str:
    if o is None:
        return "unknown"
    n = _normal(o)
    axis = int(np.argmax(np.abs(n)))
    return ("sagittal", "coronal", "axial")[axis] if abs(n[axis]) > 0.8 else "oblique"


def _make_stack(key: str, rec: _FileRecord, insts: list[InstanceHeader], reason: str, is_loc: bool) -> SeriesStack:
    s = rec.series
    h0 = insts[0]
    return SeriesStack(
        key=key,
        series_uid=s["series_uid"],
        study_uid=s["study_uid"],
        patient_id=s["patient_id"],
        patient_name=s["patient_name"],
        patient_sex=s["patient_sex"],
        patient_birth_date=s["patient_birth_date"],
        patient_age=s["patient_age"],
        study_date=s["study_date"],
        study_time=s["study_time"],
        study_description=s["study_description"],
        accession_number=s["accession_number"],
        series_number=s["series_number"],
        series_description=s["series_description"],
        modality=s["modality"],
        body_part=s["body_part"],
        manufacturer=s["manufacturer"],
        rows=h0.rows,
        columns=h0.columns,
        instances=insts,
        split_reason=reason,
        is_localizer=is_loc,
        pixel_spacing=h0.pixel_spacing,
        slice_thickness=h0.slice_thickness,
        photometric=h0.photometric,
        frame_of_reference_uid=s["frame_of_reference_uid"],
        sop_class_uid=s["sop_class_uid"],
        is_image=True,
        institution_name=s["institution_name"],
        referring_physician=s["referring_physician"],
    )


def load_volume(
    stack: SeriesStack,
    *,
    progress: ProgressCallback | None = None,
    cancel: SupportsCancel | None = None,
) -> Volume:
    """Decode the pixels of ``stack`` into a Volume in patient space.

    Slices that cannot be decoded are left out and listed in ``volume.meta["bad_files"]`` and the
    geometry report; only when none can be read does this raise :class:`DicomReadError`.
    """
    from .load import load_stack

    return load_stack(stack, progress=progress, cancel=cancel)


def load_series(path_or_paths: str | Path | Iterable[str | Path]) -> Volume:
    """Scan ``path_or_paths`` and load the largest image stack found (localizers last)."""
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    res = scan(paths)
    if not res.stacks:
        where = ", ".join(str(p) for p in paths)
        detail = "; ".join(f"{p.path.name}: {p.reason}" for p in res.problems[:3])
        raise DicomReadError(where, "no loadable DICOM image series found" + (f" ({detail})" if detail else ""))
    best = max(res.stacks, key=lambda s: (not s.is_localizer, len(s.instances) * max(1, s.instances[0].number_of_frames if s.instances[0].frame_index is None else 1)))
    return load_volume(best)
