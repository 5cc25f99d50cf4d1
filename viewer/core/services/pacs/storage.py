"""Where received images are kept, and the per-study manifest that says whether a retrieve is whole.

Every image that reaches Casebook over the network (C-MOVE, C-GET, WADO-RS or a push) is written,
byte for byte as it arrived, to ``<library>/received/<study>/<series>/<SOP Instance UID>.dcm``; the
library's ingest then stores the paths there, so the files belong to the library. A study's
``retrieve.json`` records the node, what the node said each series holds and the retrieve's state:
a series is ingested only once every image the node listed has arrived, so a half-received series
is never shown or indexed (the listing shows ``complete`` series only, and a partial series never
reaches the store); the next retrieve asks for what is missing and finishes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RECEIVED_DIR = "received"
MANIFEST = "retrieve.json"


def _key(uid: str) -> str:
    # folder names from UIDs: short, filesystem-safe, stable (UIDs may be 64 chars; paths stay short)
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:16]


def _safe_name(uid: str) -> str:
    ok = all(c.isdigit() or c == "." for c in uid) and 0 < len(uid) <= 64
    return uid if ok else hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()


def received_root(library_dir: Path) -> Path:
    return Path(library_dir) / RECEIVED_DIR


def study_dir(library_dir: Path, study_uid: str) -> Path:
    return received_root(library_dir) / _key(study_uid)


def series_dir(library_dir: Path, study_uid: str, series_uid: str) -> Path:
    return study_dir(library_dir, study_uid) / _key(series_uid)


def instance_path(library_dir: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    return series_dir(library_dir, study_uid, series_uid) / f"{_safe_name(sop_uid)}.dcm"


def write_instance(path: Path, data: bytes) -> None:
    """Write one received file atomically: a crash leaves the old file or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".part{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def uids_of(data: bytes) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of an encoded file, reading only those three elements
    (a full decode of a header with large private groups costs more than the transfer)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True,
                         specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def count_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.suffix == ".dcm")


@dataclass
class Manifest:
    """What a study's retrieve expects and how far it got (``retrieve.json`` in the study folder)."""

    study_uid: str
    node: str = ""
    state: str = "running"  # running | incomplete | complete
    reason: str = ""
    expected: dict[str, int] = field(default_factory=dict)  # series UID -> images the node listed
    ingested: list[str] = field(default_factory=list)  # series UIDs handed to the library
    updated: float = 0.0

    def save(self, library_dir: Path) -> None:
        folder = study_dir(library_dir, self.study_uid)
        folder.mkdir(parents=True, exist_ok=True)
        self.updated = time.time()
        tmp = folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, folder / MANIFEST)

    @classmethod
    def load(cls, library_dir: Path, study_uid: str) -> "Manifest | None":
        path = study_dir(library_dir, study_uid) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return None


def incomplete_retrieves(library_dir: Path) -> list[Manifest]:
    """Retrieves that ended with images missing (the Query/Retrieve dialog offers to finish them)."""
    root = received_root(library_dir)
    out: list[Manifest] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        p = d / MANIFEST
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if data.get("state") != "complete":
                out.append(Manifest(**{k: v for k, v in data.items() if k in Manifest.__dataclass_fields__}))
    return out


__all__ = ["MANIFEST", "Manifest", "RECEIVED_DIR", "count_files", "incomplete_retrieves", "instance_path",
           "received_root", "series_dir", "study_dir", "uids_of", "write_instance"]
