"""The JSON sidecar that names an index's current generation: its fields, reading and the atomic write.

Only the sidecar commits a save (temp file, fsync, rename, directory fsync): whatever files it
names are complete, so a crash at any point leaves either the old or the new state.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .files import fsync_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the sidecar may name a delta file (a build that reads only 1 rebuilds)
READABLE_FORMATS = (1, 2)
FULL_CHECK_LIMIT = 256 * 1024 * 1024  # files up to this size get a full CRC on every open


@dataclass
class IndexMeta:
    """Contents of the JSON sidecar that names the current index generation."""

    format: int
    model_key: str
    dim: int
    space: str
    M: int
    ef_construction: int
    ef: int
    count: int  # live (not deleted) elements
    element_count: int  # elements in the file, deleted included
    max_elements: int
    label_digest: list[int]
    deleted: list[int]
    index_file: str
    file_size: int
    crc32: int
    sample_crc32: int
    saved_at: float
    recall_estimate: float | None = None
    labels_file: str = ""  # row-order labels (.npy): opening never has to scan the index file
    labels_crc32: int = 0
    delta_file: str = ""  # hnswlib file of the vectors added since index_file was written
    delta_size: int = 0
    delta_crc32: int = 0
    delta_seq: int = 0

    @classmethod
    def from_json(cls, text: str) -> "IndexMeta":
        data = json.loads(text)
        names = {f for f in cls.__dataclass_fields__}
        missing = names - set(data) - {"recall_estimate", "labels_file", "labels_crc32", "delta_file",
                                       "delta_size", "delta_crc32", "delta_seq"}
        if missing:
            raise ValueError(f"sidecar lacks {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def list_indexes(directory: Path | str) -> list[IndexMeta]:
    """Sidecars of the indexes kept in ``directory`` (one per model), unreadable ones skipped."""
    out = []
    for p in sorted(Path(directory).glob("*.json")):
        try:
            out.append(IndexMeta.from_json(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: not an index sidecar: %s", p, exc)
    return out


def write_sidecar(path: Path, meta: IndexMeta) -> None:
    """Replace the sidecar at ``path`` atomically: the commit point of every save."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(asdict(meta), fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
