"""Reading one DICOM file's header (no pixel data) into :class:`~.stack.InstanceHeader` records.

Never raises for a bad file: it becomes a :class:`~.stack.FileProblem` naming the file. A fast
byte-level parser (:mod:`._fastheader`) reads common files; pydicom reads the rest.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _fastheader, _io
from .stack import FileProblem, InstanceHeader


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


def _child(folder: Path, name: str, listing: dict[Path, dict[str, str]]) -> Path | None:
    """``folder/name``, matching the name case-insensitively (DICOMDIR file IDs are upper case;
    media written on other systems may differ). ``listing`` caches each folder's names."""
    names = listing.get(folder)
    if names is None:
        try:
            names = {n.lower(): n for n in os.listdir(folder)}
        except OSError:
            names = {}
        listing[folder] = names
    real = names.get(name.lower())
    return folder / real if real is not None else None


def _resolve_file_id(dicomdir: Path, parts: list[str], listing: dict[Path, dict[str, str]]) -> Path | None:
    """The file a DICOMDIR's Referenced File ID names, or None.

    The standard roots references at the DICOMDIR's own folder; some media (a Philips DIRFILE in
    ``S21570/S2010/`` naming ``S21570/S2010/I230``) root them higher up. A reference of n parts
    can be rooted at most n - 1 folders above; the nearest root that holds the file wins.
    """
    own = dicomdir.parent.joinpath(*parts)
    if own.is_file():
        return own
    parents = list(Path(os.path.abspath(dicomdir)).parents)  # [own folder, its parent, ...]
    for root in parents[:len(parts)]:
        cur: Path | None = root
        for part in parts:
            cur = _child(cur, part, listing) if cur is not None else None
        if cur is not None and cur.is_file():
            return cur
    return None


def resolve_in_parents(dicomdir: Path, file_ids: list[str]) -> tuple[list[Path], list[str]]:
    """Referenced file IDs ("A/B/C") resolved as the DICOMDIR reader does (its own folder, then
    the folders above it, any case). Returns (found paths, IDs still missing)."""
    found: list[Path] = []
    missing: list[str] = []
    listing: dict[Path, dict[str, str]] = {}
    for fid in file_ids:
        hit = _resolve_file_id(dicomdir, [p for p in fid.replace("\\", "/").split("/") if p], listing)
        (found.append(hit) if hit is not None else missing.append(fid))
    return found, missing


def _read_dicomdir_refs(path: Path, ds: Any) -> _DicomDirRefs:
    refs: list[Path] = []
    missing: list[str] = []
    listing: dict[Path, dict[str, str]] = {}
    for rec in ds.get("DirectoryRecordSequence", []) or []:
        fid = rec.get("ReferencedFileID", None)
        if not fid:
            continue
        parts = [str(x) for x in ([fid] if isinstance(fid, str) else list(fid))]
        p = _resolve_file_id(path, parts, listing)
        if p is None:
            missing.append("/".join(parts))
        else:
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
        truncated = _truncated_header(fp, ds, meta, ts, pixel_info)
        if truncated is not None:
            return FileProblem(path, truncated)
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


def _truncated_header(fp: Any, ds: Any, meta: Any, ts: str, pixel_info: tuple[int, int] | None) -> str | None:
    """Why an image object's header is cut short (the file ends before its pixel data), or None.

    pydicom stops quietly at the end of a truncated file, which would make a CT cut inside its
    header look like a non-image object; an image class whose parse ran into the end of the file
    without reaching Rows/Columns or the Pixel Data element is a truncated file instead.
    """
    if pixel_info is not None or ts in _io.DEFLATED:
        return None
    sop = _s(ds, "SOPClassUID") or (str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else "")
    if not sop or not _is_image_class(sop):
        return None
    try:
        here = fp.tell()
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        fp.seek(here)
    except (OSError, ValueError):
        return None
    if here < size:
        return None  # the header ended properly: no pixel data element (judged by the caller)
    missing = "Rows/Columns" if not (_i(ds, "Rows") and _i(ds, "Columns")) else "the Pixel Data element"
    return (f"truncated: the file ends inside its header after {size} bytes, before {missing} "
            f"({_sop_class_name(sop)})")


def _declared_problem(path: Path, ds: Any, rows: int, cols: int) -> str | None:
    """Why the declared image size or frame count cannot be read (limits, nonsense), or None."""
    from .limits import check_declared
    from ..errors import DicomReadError

    raw = _i(ds, "NumberOfFrames")
    frames = 1 if raw is None or raw == 0 else raw
    try:
        check_declared(path, rows, cols, frames, _i(ds, "SamplesPerPixel") or 1)
    except DicomReadError as exc:
        return exc.reason
    per_frame = None
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
    except Exception:  # noqa: BLE001 - a broken sequence: the enhanced path decides below
        per_frame = None
    if per_frame and frames > 1 and len(per_frame) < frames:
        return (f"declares {frames} frames but its per-frame functional groups describe {len(per_frame)} "
                "(a corrupt NumberOfFrames)")
    return None


def _record_from_dataset(path: Path, ds: Any, ts: str, pixel_info: tuple[int, int] | None,
                         float_pixels: bool) -> _FileRecord | FileProblem:
    sop_class = _s(ds, "SOPClassUID")
    rows, cols = _i(ds, "Rows") or 0, _i(ds, "Columns") or 0
    image_type = tuple(x.strip().upper() for x in _s(ds, "ImageType").split("\\") if x.strip())
    is_image = _is_image_class(sop_class) and rows > 0 and cols > 0
    if is_image and pixel_info is None and ts in (_io.NATIVE_LE | _io.NATIVE_BE):
        is_image = False  # header of an image class but no pixel data element at all
    if is_image:
        why = _declared_problem(path, ds, rows, cols)
        if why is not None:
            return FileProblem(path, why)
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
        # the assigning authority of PatientID: the same ID from two hospitals is two patients
        "patient_issuer": _s(ds, "IssuerOfPatientID"),
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
    "IssuerOfPatientID",
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
