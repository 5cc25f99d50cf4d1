"""The hnswlib file on disk: its header, checksums, durable writes and per-model file names.

hnswlib trusts whatever it loads, so every file is parsed and checked here before hnswlib or the
memory map sees it; checksums catch truncation and bit rot (not tampering); ``fsync`` helpers
make the generation/sidecar renames crash-safe.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import VectorIndexError

HNSW_HEADER = struct.Struct("<QQQQQQiIQQQdQ")  # hnswlib HierarchicalNSW::saveIndex header (96 bytes)
_SAMPLE_BLOCKS = 64
_SAMPLE_BLOCK_SIZE = 64 * 1024


def model_file_stem(model_key: str) -> str:
    """File-system-safe name for a model key (keys look like ``name@version+sha``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key).strip("._") or "model"
    return f"{safe[:80]}-{zlib.crc32(model_key.encode()):08x}"


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def file_crc32(path: Path, chunk: int = 8 * 1024 * 1024) -> int:
    """CRC-32 of a whole file (integrity against truncation and bit rot, not tampering)."""
    crc = 0
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(chunk)
            if not buf:
                return crc
            crc = zlib.crc32(buf, crc)


def sampled_crc32(path: Path, size: int | None = None) -> int:
    """CRC-32 over the header, the tail and evenly spaced blocks: a cheap check for big files."""
    size = path.stat().st_size if size is None else size
    crc = 0
    with open(path, "rb") as fh:
        if size <= _SAMPLE_BLOCKS * _SAMPLE_BLOCK_SIZE:
            return zlib.crc32(fh.read())
        step = (size - _SAMPLE_BLOCK_SIZE) // (_SAMPLE_BLOCKS - 1)
        for i in range(_SAMPLE_BLOCKS):
            fh.seek(i * step)
            crc = zlib.crc32(fh.read(_SAMPLE_BLOCK_SIZE), crc)
    return crc


@dataclass(frozen=True)
class HnswHeader:
    element_count: int
    max_elements: int
    dim: int
    M: int
    ef_construction: int
    min_file_size: int
    size_per_element: int
    offset_data: int


def read_hnsw_header(path: Path) -> HnswHeader:
    """Parse and sanity-check an hnswlib file header before hnswlib is allowed to load it.

    hnswlib trusts its input; a truncated or foreign file can make it allocate wildly or crash,
    so the header fields and the minimum file size they imply are checked here first.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(HNSW_HEADER.size)
    if len(raw) < HNSW_HEADER.size:
        raise VectorIndexError(f"{path}: file is {size} bytes, shorter than an hnswlib header")
    (off0, max_el, count, per_el, label_off, off_data, _maxlevel, _entry, _max_m, max_m0, m, _mult,
     efc) = HNSW_HEADER.unpack(raw)
    data_bytes = per_el - (max_m0 * 4 + 4) - 8
    if (off0 != 0 or count > max_el or m == 0 or max_m0 != 2 * m or label_off != per_el - 8
            or off_data != max_m0 * 4 + 4 or data_bytes <= 0 or data_bytes % 4):
        raise VectorIndexError(f"{path}: not an hnswlib index (inconsistent header)")
    min_size = HNSW_HEADER.size + count * per_el + count * 4
    if size < min_size:
        raise VectorIndexError(f"{path}: truncated ({size} bytes, at least {min_size} expected)")
    return HnswHeader(count, max_el, data_bytes // 4, m, efc, min_size, per_el, off_data)
