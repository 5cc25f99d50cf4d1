"""Fast header path for the common DICOM file: parse the few tags the scan needs straight from bytes.

Why: ``pydicom.dcmread`` costs ~5 ms per file even with ``specific_tags`` (GIL-bound, so threads
do not help) and dominated series loading. Most files are plain Part 10 files (preamble, ``DICM``,
group 0002 meta, little endian body); for those we walk the elements ourselves, skip every value
we do not need (sequences included, defined or undefined length) and stop at the pixel data.

The values are converted exactly as pydicom does for the scan's helpers in ``scan.py`` (DS/IS
strings, UI/text padding, backslash multi-values, default/Latin-1/UTF-8 text). Anything else --
big endian, deflate, missing preamble, DICOMDIR, enhanced multi-frame functional groups, a VR that
differs from the dictionary, a value pydicom would parse differently, any parse error -- returns
``None`` and the caller uses the pydicom path unchanged.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable

from . import _io

_HEAD_BYTES = 64 * 1024
_MAX_FULL_READ = 64 * 1024 * 1024  # files without pixel data are read whole up to this size
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
              b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# Presence of these means "not the common case": the pydicom path handles them.
_BAIL_TAGS = {0x00041220, 0x52009229, 0x52009230}  # DirectoryRecord, Shared/PerFrame functional groups
_SPECIFIC_CHARSET = 0x00080005
_INT_RE = re.compile(r"\s*[+-]?\d+\s*\Z")
_FLOAT_RE = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*\Z")
# SpecificCharacterSet values whose decoding we reproduce exactly (Python codec names as pydicom).
_CHARSETS = {"": "iso8859", "ISO_IR 6": "iso8859", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

_US = struct.Struct("<H")
_UL = struct.Struct("<I")
_TAG = struct.Struct("<HH")


class _Bail(Exception):
    """Not the common case, or a value pydicom would read differently: use the pydicom path."""


def _wanted(keywords: Iterable[str]) -> dict[int, tuple[str, str]]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    out: dict[int, tuple[str, str]] = {}
    for kw in keywords:
        tag = tag_for_keyword(kw)
        if tag is None or tag in _BAIL_TAGS:
            continue
        out[int(tag)] = (kw, dictionary_VR(tag))
    return out


class FastDataset:
    """The parsed tags, with the small part of ``pydicom.Dataset``'s API that scan.py uses."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class FastHeader:
    dataset: FastDataset
    transfer_syntax_uid: str
    pixel_info: tuple[int, int] | None
    float_pixels: bool


def _multi(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else items


def _convert(raw: bytes, vr: str, encoding: str) -> Any:
    """Mirror pydicom's value conversion for the VRs of the scanned tags."""
    if vr == "US":
        if len(raw) % 2:
            raise _Bail
        if not raw:
            return None
        return _multi([v[0] for v in _US.iter_unpack(raw)])
    if vr == "FD":
        if len(raw) % 8:
            raise _Bail
        if not raw:
            return None
        return _multi([v[0] for v in struct.iter_unpack("<d", raw)])
    if vr in ("DS", "IS"):
        text = raw.decode("latin_1").rstrip("\0 ")
        if not text.strip():
            return None
        out: list[Any] = []
        for part in text.split("\\"):
            if not part.strip():
                out.append("")
            elif vr == "IS" and _INT_RE.match(part):
                out.append(int(part))
            elif vr == "DS" and _FLOAT_RE.match(part):
                out.append(float(part))
            else:
                raise _Bail  # pydicom's validation/conversion rules decide this one
        return _multi(out)
    if vr in ("CS", "AS", "DA", "TM", "DT", "UI"):
        return _multi(raw.decode("latin_1").rstrip(" \0").split("\\"))
    if vr in ("SH", "LO", "UC"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise _Bail from None
        return _multi([v.rstrip("\0 ") for v in text.split("\\")])
    if vr == "PN":
        try:
            text = raw.rstrip(b"\0 ").decode(encoding)
        except UnicodeDecodeError:
            raise _Bail from None
        return _multi(text.split("\\"))
    raise _Bail


class _Parser:
    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.buf = fp.read(_HEAD_BYTES)
        self.complete = len(self.buf) < _HEAD_BYTES

    def need(self, end: int) -> None:
        """Make sure ``buf`` holds bytes up to ``end`` (reads the rest of the file once if not)."""
        if end <= len(self.buf) or self.complete:
            if end > len(self.buf):
                raise _Bail  # truncated
            return
        rest = self.fp.read(_MAX_FULL_READ)
        self.buf += rest
        self.complete = len(rest) < _MAX_FULL_READ
        if end > len(self.buf):
            raise _Bail

    def element(self, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """``(tag, vr, value_offset, length)`` of the element header at ``pos``."""
        self.need(pos + 8)
        buf = self.buf
        g, e = _TAG.unpack_from(buf, pos)
        tag = (g << 16) | e
        if g == 0xFFFE:  # item / delimiters never carry a VR
            return tag, None, pos + 8, _UL.unpack_from(buf, pos + 4)[0]
        if implicit:
            return tag, None, pos + 8, _UL.unpack_from(buf, pos + 4)[0]
        vr = buf[pos + 4:pos + 6]
        if vr in _SHORT_VRS:
            return tag, vr, pos + 8, _US.unpack_from(buf, pos + 6)[0]
        if vr in _LONG_VRS:
            self.need(pos + 12)
            return tag, vr, pos + 12, _UL.unpack_from(buf, pos + 8)[0]
        raise _Bail  # unknown VR: not explicit VR after all, or corrupt

    def skip_undefined(self, pos: int, implicit: bool) -> int:
        """Skip the items of an undefined-length sequence starting at ``pos``; return the end."""
        while True:
            tag, _, vpos, length = self.element(pos, implicit)
            if tag == _SEQ_END:
                return vpos
            if tag != _ITEM:
                raise _Bail
            if length != _UNDEFINED:
                pos = vpos + length
                continue
            pos = vpos
            while True:  # undefined-length item: walk its elements up to the item delimiter
                tag, vr, vpos, length = self.element(pos, implicit)
                if tag == _ITEM_END:
                    pos = vpos
                    break
                if length == _UNDEFINED:
                    if vr == b"UN":
                        raise _Bail  # implicit VR inside explicit: leave it to pydicom
                    pos = self.skip_undefined(vpos, implicit)
                else:
                    pos = vpos + length


def parse(fp: BinaryIO, keywords: Iterable[str]) -> FastHeader | None:
    """Parse the header of a common-case DICOM file from ``fp`` (positioned at 0), or ``None``.

    ``fp`` is left at an unspecified position. ``keywords`` are the tags to collect (those
    pydicom's ``specific_tags`` would read); values are converted like pydicom does.
    """
    try:
        return _parse(fp, _wanted_cached(tuple(keywords)))
    except (_Bail, struct.error, IndexError, ValueError, OverflowError):
        return None


_WANTED_CACHE: dict[tuple[str, ...], dict[int, tuple[str, str]]] = {}


def _wanted_cached(keywords: tuple[str, ...]) -> dict[int, tuple[str, str]]:
    w = _WANTED_CACHE.get(keywords)
    if w is None:
        w = _WANTED_CACHE[keywords] = _wanted(keywords)
    return w


def _parse(fp: BinaryIO, wanted: dict[int, tuple[str, str]]) -> FastHeader | None:
    p = _Parser(fp)
    buf = p.buf
    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    # File meta information: always explicit VR little endian.
    pos = 132
    ts = media_class = None
    while True:
        p.need(pos + 8)
        if _US.unpack_from(p.buf, pos)[0] != 0x0002:
            break
        tag, vr, vpos, length = p.element(pos, False)
        if length == _UNDEFINED:
            return None
        p.need(vpos + length)
        if tag == 0x00020010:
            ts = p.buf[vpos:vpos + length].decode("latin_1").rstrip("\0 ")
        elif tag == 0x00020002:
            media_class = p.buf[vpos:vpos + length].decode("latin_1").rstrip("\0 ")
        pos = vpos + length
    if not ts or media_class == _DICOMDIR_CLASS:
        return None
    if ts == "1.2.840.10008.1.2":
        implicit = True
    elif ts in _io.NATIVE_BE or ts in _io.DEFLATED:
        return None
    else:
        implicit = False  # explicit VR little endian body (native or encapsulated pixel data)
    if implicit:
        # pydicom switches to explicit VR when an "implicit" body carries VRs; so do we (bail).
        p.need(pos + 6)
        if p.buf[pos + 4:pos + 6] in _SHORT_VRS or p.buf[pos + 4:pos + 6] in _LONG_VRS:
            return None
    raw_values: dict[int, tuple[bytes, str]] = {}
    pixel_info: tuple[int, int] | None = None
    float_pixels = False
    while True:
        if p.complete and pos >= len(p.buf):
            break  # end of file without pixel data
        tag, vr, vpos, length = p.element(pos, implicit)
        if tag in _io.PIXEL_TAGS:
            pixel_info = (vpos, length)
            float_pixels = tag != 0x7FE00010
            break
        if tag in _BAIL_TAGS or tag >> 16 in (0x0002, 0xFFFE):
            return None
        w = wanted.get(tag)
        if w is not None:
            if length == _UNDEFINED:
                return None
            if vr is not None and vr.decode("ascii") != w[1]:
                return None  # VR differs from the dictionary: pydicom's rules apply
            p.need(vpos + length)
            raw_values[tag] = (p.buf[vpos:vpos + length], w[1])
            pos = vpos + length
        elif length == _UNDEFINED:
            if vr == b"UN":
                return None
            pos = p.skip_undefined(vpos, implicit)
        else:
            pos = vpos + length
    charset_raw = raw_values.pop(_SPECIFIC_CHARSET, None)
    charset = ""
    values: dict[str, Any] = {}
    if charset_raw is not None:
        cs = _convert(charset_raw[0], "CS", "")
        if isinstance(cs, list):
            return None
        charset = (cs or "").strip()
        values["SpecificCharacterSet"] = cs
    encoding = _CHARSETS.get(charset)
    if encoding is None:
        return None
    for tag, (raw, vr) in raw_values.items():
        values[wanted[tag][0]] = _convert(raw, vr, encoding)
    if not values:
        return None
    return FastHeader(FastDataset(values), ts, pixel_info, float_pixels)
