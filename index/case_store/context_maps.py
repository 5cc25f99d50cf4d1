"""Context maps in the case store: one small image per series (4 mm, one byte a pixel, zlib).

Why a table of its own: a box's surroundings are slid over the maps of the patient's other scans
to find the same place there (``casebook.inference.regions.context``); reading pixels from DICOM
at query time would take seconds a series. The store keeps bytes and numbers only (the index
never imports inference): decoding is the caller's.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import delete, exists, func, select

from ..errors import QueryError, StoreError, UnknownItemError
from .models import ContextMap, Series, Study, utcnow
from .sessions import chunks
from .store import CaseStore


@dataclass(frozen=True)
class StoredContextMap:
    """What was stored for a series: uint8 pixels (row-major ``shape``) and their voxel mapping."""

    series_id: int
    version: str
    family: str
    shape: tuple[int, int, int]
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    pixels: bytes


def _nums(text: str, kind: type) -> tuple:
    return tuple(kind(v) for v in text.split(","))


class ContextMapStore:
    """Context maps of the series of one :class:`CaseStore` (same file, same transactions)."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def put(self, series_id: int, version: str, family: str, shape: Sequence[int], scale: Sequence[float],
            offset: Sequence[float], pixels: bytes, *, anatomy: str | None = None, anatomy_version: str = "") -> None:
        """Replace a series' map (one transaction), with what it shows of the body where read
        (``anatomy``, see :meth:`set_anatomy`); a size that does not fill ``shape`` is refused."""
        shape = tuple(int(v) for v in shape)
        if len(shape) != 3 or min(shape) < 1 or shape[0] * shape[1] * shape[2] != len(pixels):
            raise QueryError(f"series {series_id}: a context map of {len(pixels)} bytes does not fill {shape}")
        with self.store._write() as s:
            if s.get(Series, int(series_id)) is None:
                raise UnknownItemError(f"series {series_id} is not in the library")
            s.execute(delete(ContextMap).where(ContextMap.series_id == int(series_id)))
            s.add(ContextMap(series_id=int(series_id), version=str(version), family=str(family),
                             shape=",".join(map(str, shape)), scale=",".join(f"{float(v):.9g}" for v in scale),
                             offset=",".join(f"{float(v):.9g}" for v in offset), data=zlib.compress(pixels, 6),
                             created=utcnow(), anatomy=anatomy,
                             anatomy_version=str(anatomy_version) if anatomy is not None else ""))

    def set_anatomy(self, readings: dict[int, str], version: str) -> int:
        """Store what each series' map shows of the body ("chest,abdomen"; "" nothing plain), as read
        by rule ``version``, in one transaction; series without a map are skipped. Returns the count."""
        n = 0
        with self.store._write() as s:
            for sid, text in readings.items():
                r = s.get(ContextMap, int(sid))
                if r is not None:
                    r.anatomy, r.anatomy_version = str(text), str(version)
                    n += 1
        return n

    def anatomy(self, series_ids: Sequence[int], version: str) -> dict[int, str]:
        """The stored readings of rule ``version`` for those of the series that have one (one
        statement per chunk of ids); a series read by another rule, or never, is left out."""
        out: dict[int, str] = {}
        with self.store._read() as s:
            for part in chunks([int(v) for v in series_ids], 500):
                stmt = select(ContextMap.series_id, ContextMap.anatomy).where(
                    ContextMap.series_id.in_(part), ContextMap.anatomy.is_not(None),
                    ContextMap.anatomy_version == str(version))
                out.update((int(sid), str(text)) for sid, text in s.execute(stmt))
        return out

    def series_unread(self, version: str) -> list[int]:
        """Series whose map has no reading of rule ``version`` (never read, or by an older rule)."""
        with self.store._read() as s:
            return list(s.scalars(select(ContextMap.series_id).where(
                (ContextMap.anatomy.is_(None)) | (ContextMap.anatomy_version != str(version)))
                .order_by(ContextMap.series_id)))

    def get(self, series_id: int) -> StoredContextMap | None:
        """A series' map, or None when it has none; a damaged row raises StoreError naming the series."""
        with self.store._read() as s:
            r = s.get(ContextMap, int(series_id))
            if r is None:
                return None
            try:
                shape, scale, offset = _nums(r.shape, int), _nums(r.scale, float), _nums(r.offset, float)
                pixels = zlib.decompress(r.data)
            except (ValueError, zlib.error) as exc:
                raise StoreError(f"series {series_id}: its context map is damaged ({exc})") from exc
            if len(shape) != 3 or shape[0] * shape[1] * shape[2] != len(pixels):
                raise StoreError(f"series {series_id}: its context map of {len(pixels)} bytes does not fill {shape}")
            return StoredContextMap(int(r.series_id), r.version, r.family, shape, scale, offset, pixels)  # type: ignore[arg-type]

    def series_missing(self, version: str) -> list[int]:
        """Visible series with no map of this version (never computed, or an older version)."""
        has = exists().where(ContextMap.series_id == Series.id, ContextMap.version == str(version))
        with self.store._read() as s:
            return list(s.scalars(select(Series.id).join(Study, Study.id == Series.study_id)
                                  .where(self.store._visible(), ~has).order_by(Series.id)))

    def stored_bytes(self) -> tuple[int, int]:
        """(series with a map, bytes stored)."""
        with self.store._read() as s:
            n, b = s.execute(select(func.count(ContextMap.series_id),
                                    func.coalesce(func.sum(func.length(ContextMap.data)), 0))).one()
        return int(n), int(b)


__all__ = ["ContextMapStore", "StoredContextMap"]
