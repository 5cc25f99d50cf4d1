"""Siemens mosaic helpers: CSA header parsing and de-tiling (the dcm2niix comparison covers real files)."""
from __future__ import annotations

import struct

import numpy as np

from casebook.viewer.core.dicom import _mosaic


def _csa2(tags: dict[str, list[str]]) -> bytes:
    out = b"SV10\x04\x03\x02\x01" + struct.pack("<II", len(tags), 77)
    for name, values in tags.items():
        out += name.encode().ljust(64, b"\0") + struct.pack("<i4siii", len(values), b"IS\0\0", 6, len(values), 77)
        for v in values:
            raw = v.encode() + b"\0"
            out += struct.pack("<iiii", len(raw), len(raw), 77, len(raw)) + raw.ljust((len(raw) + 3) // 4 * 4, b"\0")
    return out


def test_parse_csa2_reads_names_and_values():
    data = _csa2({"NumberOfImagesInMosaic": ["35"], "SliceNormalVector": ["0.0", "0.1", "0.99"], "Empty": []})
    csa = _mosaic.parse_csa(data)
    assert csa == {"NumberOfImagesInMosaic": ["35"], "SliceNormalVector": ["0.0", "0.1", "0.99"], "Empty": []}


def test_parse_csa_survives_garbage_and_truncation():
    data = _csa2({"NumberOfImagesInMosaic": ["35"], "SliceNormalVector": ["0.0", "0.1", "0.99"]})
    assert _mosaic.parse_csa(b"") == {}
    assert _mosaic.parse_csa(b"\xff" * 64) == {}
    assert _mosaic.parse_csa(data[:120]).get("SliceNormalVector") is None


def test_detile_reads_tiles_row_by_row():
    n, m, t = 7, 3, 4  # 7 slices on a 3x3 grid of 4x4 tiles: the last two tiles are blank
    slices = np.arange(n * t * t, dtype=np.int16).reshape(n, t, t)
    mosaic = np.zeros((m * t, m * t), dtype=np.int16)
    for k in range(n):
        r, c = divmod(k, m)
        mosaic[r * t:(r + 1) * t, c * t:(c + 1) * t] = slices[k]
    assert _mosaic.tile_grid(n, m * t, m * t) == (m, t, t)
    assert _mosaic.tile_grid(n, m * t + 1, m * t) is None
    np.testing.assert_array_equal(_mosaic.detile(mosaic, n, m), slices)
