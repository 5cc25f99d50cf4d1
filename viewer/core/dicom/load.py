"""Pixel decoding and geometry: turn a :class:`SeriesStack` into a :class:`Volume`.

Speed matters (a 400-slice CT must open in well under a second): uncompressed slices are read
straight from the file offset found by the header scan into a preallocated array, in a thread
pool (file reads and numpy release the GIL). Compressed single-frame slices skip ``dcmread``: their
fragments are cut from the bytes and decoded by pydicom's plugins (``_codec``), in spawned worker
processes writing into shared memory for large stacks (the codecs hold the GIL). Everything else
(multi-frame, colour, anything the fast paths decline) goes through ``pydicom.dcmread`` and
``pixel_array`` in the thread pool (:mod:`.pixels`). Siemens mosaics are cut into their slices
(``_mosaic``); the slice geometry is :mod:`.geometry`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from casebook.common.logs import log_ref

from ..errors import DicomReadError, SeriesGeometryError
from ..progress import ProgressCallback, SupportsCancel
from . import _mosaic
from .geometry import _geometry
from .limits import check_declared, check_volume
from .pixels import (_FileCache, _Slot, _decode_all, _fill_slot, _raw_dtype, _rescale,
                     _shared_volume, clear_gz_cache, precheck)
from .stack import InstanceHeader, SeriesStack, stack_headers
from .volume import GeometryReport, Volume

__all__ = ["load_volume"]

log = logging.getLogger(__name__)


def load_volume(stack: SeriesStack, *, progress: ProgressCallback | None = None,
                cancel: SupportsCancel | None = None, workers: int = 0) -> Volume:
    """Decode the pixels of ``stack`` into a Volume in patient space.

    Slices that cannot be decoded are left out and listed in ``volume.meta["bad_files"]`` and the
    geometry report; only when none can be read does this raise :class:`DicomReadError`.
    """
    if not stack.is_image:
        raise DicomReadError(stack.instances[0].path if stack.instances else stack.key,
                             f"not an image object ({stack.split_reason or stack.sop_class_uid}); nothing to display")
    headers = list(stack.instances)
    if not headers:
        raise SeriesGeometryError(stack.key, "stack has no instances")
    h0 = headers[0]
    check_declared(h0.path, h0.rows, h0.columns, max(1, h0.number_of_frames), max(1, h0.samples_per_pixel))
    headers = stack_headers(stack)  # a classic multi-frame file: one header per frame
    color = h0.samples_per_pixel == 3 or h0.photometric == "PALETTE COLOR"
    if (len(headers) == 1 and h0.frame_index is None and h0.number_of_frames == 1 and not color
            and any("MOSAIC" in t for t in h0.image_type)):
        mosaic = _load_mosaic(stack, h0)
        if mosaic is not None:
            return mosaic
    rows, cols = h0.rows, h0.columns
    for h in headers:
        if (h.rows, h.columns) != (rows, cols):
            raise SeriesGeometryError(stack.key, f"{h.path.name} is {h.rows}x{h.columns}, stack is {rows}x{cols}")
    # Validate before allocating: only files that can hold the frames they declare are decoded.
    headers, pre_bad = precheck(headers, color)
    if not headers:
        first = pre_bad[0]
        if len(pre_bad) == 1:
            raise first
        raise type(first)(first.path, f"{first.reason} (and all {len(pre_bad) - 1} other slices of stack "
                                      f"{stack.key} failed)")
    check_volume(stack.key, len(headers), rows, cols, 3 if color else 1)
    order, spacing, origin, direction, rep, positions = _geometry(headers, stack)
    headers = [headers[i] for i in order]
    n = len(headers)
    if color:
        raw = np.empty((n, rows, cols, 3), dtype=np.uint8 if h0.bits_allocated <= 8 else np.uint16)
    else:
        dtypes = {_raw_dtype(h) for h in headers}
        raw_dtype = np.result_type(*dtypes) if len(dtypes) > 1 else dtypes.pop()
        raw = np.empty((n, rows, cols), dtype=raw_dtype)
    cache = _FileCache()
    bad: list[tuple[int, DicomReadError]] = []
    nworkers = workers if workers > 0 else min(32, (os.cpu_count() or 2) * 2)
    shm, pooled, proc = _shared_volume(raw, headers, color)
    if shm is not None:
        raw = shm.array(raw.shape, raw.dtype)
    voxels = None
    try:
        _decode_all(raw, headers, color, cache, bad, pooled, shm, proc, nworkers, progress, cancel)
        raw, headers, voxels, rep, spacing, origin, direction, positions = _finish(
            raw, headers, color, bad, stack, rep, spacing, origin, direction, positions)
    finally:
        if shm is not None:
            raw = None  # type: ignore[assignment]
            voxels = shm.finish(voxels)
    if stack.extra.get("missing_files"):
        rep.warnings.append(stack.extra["missing_files"])
    if pre_bad:
        rep.warnings.extend(f"skipped {Path(e.path).name}: {e.reason}" for e in pre_bad)
        log.warning("%s: %d slices refused before decoding, loaded the rest", log_ref(stack.key), len(pre_bad))
    window = next((h.window for h in headers if h.window is not None), None)
    vol = Volume(
        voxels=voxels,
        spacing=tuple(float(x) for x in spacing),  # type: ignore[arg-type]
        origin=tuple(float(x) for x in origin),  # type: ignore[arg-type]
        direction=direction,
        modality=stack.modality,
        series_uid=stack.series_uid,
        study_uid=stack.study_uid,
        patient_id=stack.patient_id,
        description=stack.series_description,
        window=window,
        photometric="RGB" if color else (h0.photometric or "MONOCHROME2"),
        geometry=rep,
        source_files=list(dict.fromkeys(h.path for h in headers)),
        slice_positions=positions[[i for i in range(len(positions))]] if positions is not None and not bad else (
            np.array([h.position for h in headers], dtype=np.float64) if positions is not None else None),
        meta={"stack_key": stack.key, "bad_files": [(str(e.path), e.reason) for e in pre_bad]
              + [(str(e.path), e.reason) for _, e in bad],
              "transfer_syntaxes": sorted({h.transfer_syntax_uid for h in headers})},
    )
    return vol


def _load_mosaic(stack: SeriesStack, h: InstanceHeader) -> Volume | None:
    """A Siemens mosaic cut into its slices (as dcm2niix does), or ``None`` to show it as stored."""
    try:
        info = _mosaic.mosaic_info(h.path)
    except Exception:  # noqa: BLE001 - private header unreadable: the image is shown as stored
        info = None
    if info is None or info.n_images < 2 or h.position is None or h.orientation is None:
        return None
    grid = _mosaic.tile_grid(info.n_images, h.rows, h.columns)
    if grid is None:
        log.warning("mosaic of %d images does not tile a %dx%d image: shown as stored", info.n_images, h.rows, h.columns)
        return None
    m, tr, tc = grid
    raw = np.empty((1, h.rows, h.columns), dtype=_raw_dtype(h))
    try:
        _fill_slot(_Slot(0, h), raw, _FileCache(), False)
    except DicomReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure names the file
        raise DicomReadError(h.path, f"pixel data cannot be decoded: {type(exc).__name__}: {exc}") from exc
    finally:
        clear_gz_cache()
    n = info.n_images
    tiles = _mosaic.detile(raw[0], n, m)
    o = np.asarray(h.orientation, dtype=np.float64)
    row = o[:3] / (np.linalg.norm(o[:3]) or 1.0)
    col = o[3:] / (np.linalg.norm(o[3:]) or 1.0)
    normal = np.cross(row, col)
    sj, si = (float(h.pixel_spacing[0]), float(h.pixel_spacing[1])) if h.pixel_spacing else (1.0, 1.0)
    sk = float(h.spacing_between_slices or h.slice_thickness or 1.0)
    # The stored position is the corner of the whole mosaic; the first tile is centred in it.
    first = np.asarray(h.position, dtype=np.float64) + col * sj * (h.rows - tr) / 2 + row * si * (h.columns - tc) / 2
    rep = GeometryReport()
    sn = np.asarray(info.slice_normal, dtype=np.float64) if info.slice_normal is not None else normal
    if abs(float(np.linalg.norm(sn)) - 1.0) > 0.01 or abs(float(sn @ normal)) < 0.99:
        rep.warnings.append("mosaic slice normal missing or not perpendicular to the image plane: "
                            "slices assumed along the image normal")
        sn = normal
    positions = first + np.arange(n)[:, None] * sk * (sn if float(sn @ normal) > 0 else -normal)
    if float(sn @ normal) < 0:
        tiles = tiles[::-1]  # acquired against the image normal: store in increasing position
        positions = positions[::-1]
    voxels = _rescale(np.ascontiguousarray(tiles), [h] * n)
    return Volume(
        voxels=voxels,
        spacing=(sk, sj, si),
        origin=tuple(float(x) for x in positions[0]),  # type: ignore[arg-type]
        direction=np.column_stack([row, col, normal]),
        modality=stack.modality,
        series_uid=stack.series_uid,
        study_uid=stack.study_uid,
        patient_id=stack.patient_id,
        description=stack.series_description,
        window=h.window,
        photometric=h.photometric or "MONOCHROME2",
        geometry=rep,
        source_files=[h.path],
        slice_positions=np.ascontiguousarray(positions),
        meta={"stack_key": stack.key, "bad_files": [], "transfer_syntaxes": [h.transfer_syntax_uid],
              "mosaic": {"images": n, "tiles_per_side": m}},
    )


def _finish(raw: np.ndarray, headers: list[InstanceHeader], color: bool, bad: list[tuple[int, DicomReadError]],
            stack: SeriesStack, rep: GeometryReport, spacing: Any, origin: Any, direction: Any,
            positions: Any) -> tuple[Any, ...]:
    """Drop unreadable slices (re-deriving the geometry) and apply the rescale."""
    clear_gz_cache()
    n = len(headers)
    if bad:
        bad.sort(key=lambda b: b[0])
        if len(bad) == n:
            first = bad[0][1]
            if n == 1:
                raise first
            raise type(first)(first.path, f"{first.reason} (and all {n - 1} other slices of stack {stack.key} failed)")
        keep = sorted(set(range(n)) - {k for k, _ in bad})
        for _, exc in bad:
            rep.warnings.append(f"skipped {Path(exc.path).name}: {exc.reason}")
        log.warning("%s: %d of %d slices unreadable, loaded the rest", log_ref(stack.key), len(bad), n)
        raw = raw[keep]
        headers = [headers[k] for k in keep]
        # Geometry again from the slices actually loaded (a hole becomes a reported gap).
        _, spacing, origin, direction, rep2, positions = _geometry(headers, stack)
        rep2.warnings.extend(w for w in rep.warnings if w.startswith("skipped "))
        rep = rep2
    voxels = raw if color else _rescale(raw, headers)
    return raw, headers, voxels, rep, spacing, origin, direction, positions

