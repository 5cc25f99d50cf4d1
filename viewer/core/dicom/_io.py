"""Low-level file access shared by scanning and loading: DICOM sniffing, gzip, pixel offsets."""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import BinaryIO

DICM_OFFSET = 128
GZIP_MAGIC = b"\x1f\x8b"

# First group numbers a preamble-less ("raw") DICOM stream may start with, as stored bytes.
_RAW_STARTS = {
    b"\x02\x00", b"\x08\x00", b"\x10\x00", b"\x18\x00", b"\x20\x00", b"\x28\x00",  # little endian
    b"\x00\x02", b"\x00\x08", b"\x00\x10", b"\x00\x18",  # big endian
}

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData

NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
NATIVE_BE = {"1.2.840.10008.1.2.2"}
DEFLATED = {"1.2.840.10008.1.2.1.99"}


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """Open a DICOM file, transparently decompressing ``.gz`` (Philips/Canon exports use it).

    A gzip stream is fully decompressed into memory so that seeking stays cheap.
    """
    f = open(path, "rb")
    head = f.read(2)
    if head == GZIP_MAGIC:
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f) as g:
                data = g.read()
        finally:
            f.close()
        return io.BytesIO(data)
    f.seek(0)
    return f


def sniff(fp: BinaryIO) -> str | None:
    """Return ``None`` when the stream looks like DICOM, else a reason why it does not.

    Cheap: reads at most 132 bytes, so that non-DICOM files are skipped without parsing.
    """
    head = fp.read(DICM_OFFSET + 4)
    fp.seek(0)
    if len(head) >= DICM_OFFSET + 4 and head[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM":
        return None
    if len(head) >= 8 and head[:2] in _RAW_STARTS:
        return None  # preamble-less DICOM (old ACR-NEMA style exports); let the parser decide
    if not head:
        return "empty file"
    return "not a DICOM file (no 'DICM' marker)"


def pixel_element_at(fp: BinaryIO, little_endian: bool, implicit_vr: bool) -> tuple[int, int] | None:
    """Read the pixel data element header at the current position: ``(value_offset, length)``.

    Called right after ``dcmread(..., stop_before_pixels=True)``, which leaves the stream at the
    start of the pixel data element. ``length`` is 0xFFFFFFFF for encapsulated (compressed) data.
    """
    start = fp.tell()
    hdr = fp.read(12)
    if len(hdr) < 8:
        return None
    e = "<" if little_endian else ">"
    group, elem = struct.unpack(e + "HH", hdr[:4])
    if ((group << 16) | elem) not in PIXEL_TAGS:
        return None
    if implicit_vr:
        (length,) = struct.unpack(e + "I", hdr[4:8])
        return start + 8, length
    vr = hdr[4:6]
    if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"SQ"):
        if len(hdr) < 12:
            return None
        (length,) = struct.unpack(e + "I", hdr[8:12])
        return start + 12, length
    (length,) = struct.unpack(e + "H", hdr[6:8])
    return start + 8, length
