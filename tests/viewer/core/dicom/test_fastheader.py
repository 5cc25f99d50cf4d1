"""The byte-level header parser must give exactly what the pydicom path gives, or decline."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from casebook.viewer.core.dicom import _fastheader, _io

headers_mod = importlib.import_module("casebook.viewer.core.dicom.headers")


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        out.extend(Path(dirpath) / n for n in sorted(names))
    return sorted(out)


def test_fast_header_matches_pydicom_on_shared_data(need_shared):
    root = need_shared("dicom")
    fast_used = 0
    mismatches: list[str] = []
    for path in _files(root):
        try:
            with _io.open_binary(path) as fp:
                if _io.sniff(fp) is not None:
                    continue
                fh = _fastheader.parse(fp, headers_mod._HEADER_TAGS)
        except Exception:  # noqa: BLE001 - unreadable files are the pydicom path's business
            continue
        if fh is None:
            continue
        fast_used += 1
        fast = headers_mod._read_file(path)
        slow = headers_mod._read_file(path, fast=False)
        assert isinstance(fast, headers_mod._FileRecord), f"{path}: fast path gave {fast!r}"
        if not isinstance(slow, headers_mod._FileRecord):
            mismatches.append(f"{path}: pydicom path gave {slow!r}")
            continue
        for name in ("series", "instances", "is_image", "is_localizer", "enhanced"):
            a, b = getattr(fast, name), getattr(slow, name)
            if a != b:
                mismatches.append(f"{path}: {name} differs:\n fast={a}\n slow={b}")
    assert not mismatches, "\n".join(mismatches[:5]) + f"\n({len(mismatches)} mismatching files)"
    # The common case must actually take the fast path, or the speed-up is lost silently.
    assert fast_used > 100, fast_used


def test_fast_header_declines_unusual_files(tmp_path):
    not_dicom = tmp_path / "x.dcm"
    not_dicom.write_bytes(b"\0" * 200)
    with open(not_dicom, "rb") as fp:
        assert _fastheader.parse(fp, headers_mod._HEADER_TAGS) is None
    truncated = tmp_path / "t.dcm"
    truncated.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00" + b"1.2")
    with open(truncated, "rb") as fp:
        assert _fastheader.parse(fp, headers_mod._HEADER_TAGS) is None
