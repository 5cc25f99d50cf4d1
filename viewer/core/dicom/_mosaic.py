"""Siemens mosaic images: one stored image holding all slices of a volume as tiles.

Why: Siemens EPI/fMRI/DWI series store each volume as a single "MOSAIC" image (ImageType), the
slices laid out row by row on an M x M grid. Shown as stored, the reader sees a contact sheet at a
wrong position; cut into slices (what dcm2niix and nibabel do) it is a normal 3D volume.

The number of tiles comes from the Siemens private element (0019,100A) NumberOfImagesInMosaic or
from the CSA image header (0029,1010); the slice normal from the CSA header's SliceNormalVector.
The ImagePositionPatient of a mosaic is that of the whole stored image's corner, so the first
slice's position is shifted by half the difference between the mosaic and the tile sizes
(nibabel's ``MosaicWrapper.image_position``).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _io

_CSA_IMAGE = (0x0029, 0x1010)
_N_IN_MOSAIC = (0x0019, 0x100A)


@dataclass(frozen=True)
class MosaicInfo:
    n_images: int
    slice_normal: tuple[float, float, float] | None  # CSA SliceNormalVector, when present


def parse_csa(data: bytes) -> dict[str, list[str]]:
    """The tags of a Siemens CSA header (formats SV10 "CSA2" and the older "CSA1"): name -> values."""
    out: dict[str, list[str]] = {}
    if len(data) < 16:
        return out
    pos = 0
    if data[:4] == b"SV10":
        pos = 8  # "SV10" + 4 unused bytes
    n_tags, _check = struct.unpack_from("<II", data, pos)
    pos += 8
    if not 0 < n_tags <= 1000:
        return out
    for _ in range(n_tags):
        if pos + 84 > len(data):
            break
        name = data[pos:pos + 64].split(b"\0", 1)[0].decode("latin_1")
        _vm, _vr, _syngodt, n_items, _xx = struct.unpack_from("<i4siii", data, pos + 64)
        pos += 84
        values: list[str] = []
        if not 0 <= n_items <= 10000:
            break
        for _i in range(n_items):
            if pos + 16 > len(data):
                return out
            length = struct.unpack_from("<iiii", data, pos)[1]
            pos += 16
            if length < 0 or pos + length > len(data):
                return out
            if length:
                values.append(data[pos:pos + length].split(b"\0", 1)[0].decode("latin_1").strip())
            pos += (length + 3) // 4 * 4
        out[name] = values
    return out


def mosaic_info(path: Path) -> MosaicInfo | None:
    """Tile count and slice normal of a Siemens mosaic file, or ``None`` when they are not known."""
    import pydicom

    fp = _io.open_binary(path)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    finally:
        fp.close()
    n: int | None = None
    normal: tuple[float, float, float] | None = None
    csa: dict[str, list[str]] = {}
    elem = ds.get(_CSA_IMAGE)
    if elem is not None and isinstance(elem.value, (bytes, bytearray)):
        try:
            csa = parse_csa(bytes(elem.value))
        except (struct.error, UnicodeDecodeError):
            csa = {}
    elem = ds.get(_N_IN_MOSAIC)
    if elem is not None:
        n = _as_int(elem.value)
    if n is None and csa.get("NumberOfImagesInMosaic"):
        n = _as_int(csa["NumberOfImagesInMosaic"][0])
    sn = csa.get("SliceNormalVector") or []
    if len(sn) == 3:
        try:
            v = tuple(float(x) for x in sn)
            if math.isfinite(sum(v)) and any(v):
                normal = v  # type: ignore[assignment]
        except ValueError:
            pass
    if n is None or n < 1:
        return None
    return MosaicInfo(n, normal)


def _as_int(value: Any) -> int | None:
    if isinstance(value, (bytes, bytearray)):
        if len(value) >= 2:
            return int(struct.unpack_from("<H", value)[0])  # US stored in an implicit/UN element
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def tile_grid(n_images: int, rows: int, cols: int) -> tuple[int, int, int] | None:
    """``(tiles per side, tile rows, tile cols)`` or ``None`` when the mosaic cannot hold the tiles."""
    m = math.ceil(math.sqrt(n_images))
    if m < 1 or rows % m or cols % m:
        return None
    return m, rows // m, cols // m


def detile(image: np.ndarray, n_images: int, m: int) -> np.ndarray:
    """Cut a (rows, cols) mosaic into (n_images, rows/m, cols/m) slices, tiles read row by row."""
    rows, cols = image.shape[:2]
    tr, tc = rows // m, cols // m
    tiles = image.reshape(m, tr, m, tc).transpose(0, 2, 1, 3).reshape(m * m, tr, tc)
    return np.ascontiguousarray(tiles[:n_images])
