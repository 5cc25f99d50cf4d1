"""Finding-level regions in the case store, and their vectors as index sources per modality family.

Why a table of its own: a region is a place in a series (a box on a slice range, a patient-space
centre) with a descriptor; a box query is matched against regions, and the hit must say *where*
the matched finding is so the viewer can box it and centre on it. Rows carry everything a result
card needs, so a search resolves a hit without reading pixels.

Vectors are stored as float16 (half the bytes; the cosine changes by < 1e-3) and served as
float32. Each modality family gets its own vector index (CT regions are never compared with MR
ones), fed by :class:`RegionEmbeddingSource`, which implements the index's ``EmbeddingSource``
protocol over the live regions (series and study not deleted) of one descriptor and family.
Labels are never reused, like embedding labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, exists, func, insert, select

from ..errors import QueryError, UnknownItemError
from .models import Region, RegionDescriptor, RegionSet, Series, Study, utcnow
from .sessions import chunks as _chunks
from .store import CaseStore

_COLUMNS = ("k0", "k1", "j0", "j1", "i0", "i1", "centre_k", "centre_j", "centre_i", "x", "y", "z",
            "diameter_mm", "volume_ml", "polarity", "contrast", "saliency")


@dataclass(frozen=True)
class DescriptorRecord:
    id: int
    name: str
    version: str
    dim: int

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def index_key(self, family: str) -> str:
        """The vector index of this descriptor's regions of one modality family."""
        return f"{self.key}~{family}"


@dataclass(frozen=True)
class RegionRow:
    """A region to store (what the detector found), or one read back (``label``, ``series_id`` set)."""

    box: tuple[int, int, int, int, int, int]  # k0, k1, j0, j1, i0, i1: end-exclusive voxels of the series
    centre: tuple[float, float, float]  # continuous (k, j, i)
    centre_lps: tuple[float, float, float] | None
    diameter_mm: float
    volume_ml: float
    polarity: int
    contrast: float
    saliency: float
    family: str = ""
    label: int = -1
    series_id: int = -1


def _row(r: Any) -> RegionRow:
    return RegionRow((r.k0, r.k1, r.j0, r.j1, r.i0, r.i1), (r.centre_k, r.centre_j, r.centre_i),
                     None if r.x is None else (r.x, r.y, r.z), r.diameter_mm, r.volume_ml, r.polarity,
                     r.contrast, r.saliency, r.family, r.label, r.series_id)


class RegionStore:
    """Regions of the series of one :class:`CaseStore` (same file, same transactions)."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ descriptors
    def register_descriptor(self, name: str, version: str, dim: int) -> DescriptorRecord:
        """Record a descriptor (idempotent); the same name@version with another size is refused."""
        if not name or not version or dim <= 0:
            raise QueryError("a region descriptor needs a name, a version and a positive size")
        with self.store._write() as s:
            d = s.scalar(select(RegionDescriptor).where(RegionDescriptor.name == name,
                                                        RegionDescriptor.version == version))
            if d is None:
                d = RegionDescriptor(name=name, version=version, dim=int(dim), next_label=0)
                s.add(d)
                s.flush()
            elif d.dim != int(dim):
                raise QueryError(f"region descriptor {name}@{version} is registered as {d.dim}-d, not {dim}-d; "
                                 "a changed descriptor needs a new version")
            return DescriptorRecord(d.id, d.name, d.version, d.dim)

    def get_descriptor(self, key: str) -> DescriptorRecord:
        name, _, version = key.partition("@")
        with self.store._read() as s:
            q = select(RegionDescriptor).where(RegionDescriptor.name == name)
            if version:
                q = q.where(RegionDescriptor.version == version)
            d = s.scalar(q.order_by(RegionDescriptor.id.desc()))
        if d is None:
            raise UnknownItemError(f"region descriptor {key!r} has no regions in the library; run `casebook embed`")
        return DescriptorRecord(d.id, d.name, d.version, d.dim)

    def other_versions(self, name: str, version: str) -> dict[str, int]:
        """Other versions of a descriptor that have region sets in the library (key -> series): a
        library embedded before an upgrade, whose findings the new version has yet to recompute."""
        with self.store._read() as s:
            rows = s.execute(select(RegionDescriptor.version, func.count(RegionSet.series_id))
                             .join(RegionSet, RegionSet.descriptor_id == RegionDescriptor.id)
                             .where(RegionDescriptor.name == name, RegionDescriptor.version != version)
                             .group_by(RegionDescriptor.version)).all()
        return {f"{name}@{v}": int(n) for v, n in rows if n}

    def drop_other_versions(self, name: str, version: str) -> list[tuple[DescriptorRecord, list[str], int]]:
        """Delete every other version of a descriptor with its region sets and regions, in one
        transaction: what an upgrade leaves behind (about 20 kB a series) once the new version
        covers the library. Returns each dropped descriptor, the families it had and the regions
        deleted, so the caller can remove its index files."""
        out: list[tuple[DescriptorRecord, list[str], int]] = []
        with self.store._write() as s:
            olds = list(s.scalars(select(RegionDescriptor).where(RegionDescriptor.name == name,
                                                                 RegionDescriptor.version != version)))
            for d in olds:
                fams = sorted(set(s.scalars(select(RegionSet.family).where(RegionSet.descriptor_id == d.id))))
                n = int(s.scalar(select(func.count()).select_from(Region).where(Region.descriptor_id == d.id)) or 0)
                s.execute(delete(Region).where(Region.descriptor_id == d.id))
                s.execute(delete(RegionSet).where(RegionSet.descriptor_id == d.id))
                out.append((DescriptorRecord(d.id, d.name, d.version, d.dim), fams, n))
                s.delete(d)
        return out

    # ------------------------------------------------------------------ writing
    def put_regions(self, descriptor_id: int, series_id: int, rows: Sequence[RegionRow], vectors: np.ndarray,
                    *, family: str, body_part: str = "") -> np.ndarray:
        """Replace the regions of a series (one transaction) and return their new labels."""
        vecs = np.asarray(vectors, np.float32)
        if vecs.ndim == 1:
            vecs = vecs.reshape(0 if vecs.size == 0 else 1, -1)
        if len(rows) != len(vecs):
            raise QueryError(f"{len(rows)} regions for {len(vecs)} vectors")
        if len(vecs) and not np.isfinite(vecs).all():
            raise QueryError(f"series {series_id}: a region vector contains NaN or infinity")
        with self.store._write() as s:
            d = s.get(RegionDescriptor, int(descriptor_id))
            if d is None:
                raise UnknownItemError(f"region descriptor {descriptor_id} is not registered")
            if len(vecs) and vecs.shape[1] != d.dim:
                raise QueryError(f"{d.name}@{d.version} regions are {d.dim}-d, got {vecs.shape[1]}-d")
            if s.get(Series, int(series_id)) is None:
                raise UnknownItemError(f"series {series_id} is not in the library")
            s.execute(delete(Region).where(Region.descriptor_id == d.id, Region.series_id == int(series_id)))
            s.execute(delete(RegionSet).where(RegionSet.descriptor_id == d.id, RegionSet.series_id == int(series_id)))
            start = int(d.next_label)
            labels = np.arange(start, start + len(rows), dtype=np.int64)
            d.next_label = start + len(rows)
            now = utcnow()
            s.add(RegionSet(descriptor_id=d.id, series_id=int(series_id), family=family, body_part=body_part or "",
                            count=len(rows), created=now))
            if len(rows):
                half = vecs.astype("<f2")
                s.execute(insert(Region), [{
                    "descriptor_id": d.id, "series_id": int(series_id), "label": int(lab), "family": family,
                    "k0": r.box[0], "k1": r.box[1], "j0": r.box[2], "j1": r.box[3], "i0": r.box[4], "i1": r.box[5],
                    "centre_k": r.centre[0], "centre_j": r.centre[1], "centre_i": r.centre[2],
                    "x": None if r.centre_lps is None else r.centre_lps[0],
                    "y": None if r.centre_lps is None else r.centre_lps[1],
                    "z": None if r.centre_lps is None else r.centre_lps[2],
                    "diameter_mm": r.diameter_mm, "volume_ml": r.volume_ml, "polarity": int(r.polarity),
                    "contrast": r.contrast, "saliency": r.saliency, "vector": half[n].tobytes(),
                } for n, (r, lab) in enumerate(zip(rows, labels))])
        return labels

    # ------------------------------------------------------------------ reading
    def _live(self, descriptor_id: int) -> list[Any]:
        return [Region.descriptor_id == int(descriptor_id), Series.state == "complete", Series.deleted.is_(False),
                Study.deleted.is_(False)]

    def _joined(self, *cols: Any) -> Any:
        return (select(*cols).join(Series, Series.id == Region.series_id).join(Study, Study.id == Series.study_id))

    def series_missing_regions(self, descriptor_id: int) -> list[int]:
        """Visible series whose regions were never computed with this descriptor."""
        has = exists().where(RegionSet.series_id == Series.id, RegionSet.descriptor_id == int(descriptor_id))
        with self.store._read() as s:
            return list(s.scalars(select(Series.id).join(Study, Study.id == Series.study_id)
                                  .where(self.store._visible(), ~has).order_by(Series.id)))

    def families(self, descriptor_id: int) -> dict[str, int]:
        """Live region count per modality family."""
        with self.store._read() as s:
            rows = s.execute(self._joined(Region.family, func.count(Region.id)).where(*self._live(descriptor_id))
                             .group_by(Region.family)).all()
        return {f: int(n) for f, n in rows}

    def series_family(self, descriptor_id: int, series_id: int) -> tuple[str, int] | None:
        """(family, region count) of a series' region set, or None when never computed."""
        with self.store._read() as s:
            r = s.execute(select(RegionSet.family, RegionSet.count).where(
                RegionSet.descriptor_id == int(descriptor_id), RegionSet.series_id == int(series_id))).first()
        return None if r is None else (str(r[0]), int(r[1]))

    def resolve(self, descriptor_id: int, labels: Iterable[int]) -> dict[int, RegionRow]:
        """label -> region, for live regions (a deleted series' regions are absent)."""
        labs = sorted({int(x) for x in labels})
        out: dict[int, RegionRow] = {}
        cols = [Region.label, Region.series_id, Region.family, *[getattr(Region, c) for c in _COLUMNS]]
        with self.store._read() as s:
            for chunk in _chunks(labs):
                for r in s.execute(self._joined(*cols).where(*self._live(descriptor_id), Region.label.in_(chunk))):
                    out[int(r.label)] = _row(r)
        return out

    def regions_of_series(self, descriptor_id: int, series_id: int) -> tuple[list[RegionRow], np.ndarray]:
        """A series' stored regions (label order) and their vectors."""
        cols = [Region.label, Region.series_id, Region.family, *[getattr(Region, c) for c in _COLUMNS], Region.vector]
        with self.store._read() as s:
            rows = s.execute(select(*cols).where(Region.descriptor_id == int(descriptor_id),
                                                 Region.series_id == int(series_id)).order_by(Region.label)).all()
        dim = self._dim(descriptor_id)
        vecs = np.empty((len(rows), dim), np.float32)
        for n, r in enumerate(rows):
            vecs[n] = np.frombuffer(r.vector, dtype="<f2")
        return [_row(r) for r in rows], vecs

    def labels_by_series(self, descriptor_id: int, family: str, series_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """series -> labels of its live regions of a family (for candidate sets from SQL filters)."""
        out: dict[int, list[int]] = {int(i): [] for i in series_ids}
        with self.store._read() as s:
            for chunk in _chunks(list(out)):
                for sid, lab in s.execute(self._joined(Region.series_id, Region.label).where(
                        *self._live(descriptor_id), Region.family == family, Region.series_id.in_(chunk))):
                    out[int(sid)].append(int(lab))
        return {k: np.asarray(v, np.int64) for k, v in out.items()}

    def _dim(self, descriptor_id: int) -> int:
        with self.store._read() as s:
            d = s.get(RegionDescriptor, int(descriptor_id))
        if d is None:
            raise UnknownItemError(f"region descriptor {descriptor_id} is not registered")
        return int(d.dim)

    def stored_bytes(self, descriptor_id: int) -> tuple[int, int, int]:
        """(series with regions, regions, bytes of their vectors) of one descriptor."""
        with self.store._read() as s:
            n_series = int(s.scalar(select(func.count(RegionSet.id)).where(
                RegionSet.descriptor_id == int(descriptor_id))) or 0)
            n, nbytes = s.execute(select(func.count(Region.id), func.coalesce(func.sum(func.length(Region.vector)), 0))
                                  .where(Region.descriptor_id == int(descriptor_id))).one()
        return n_series, int(n), int(nbytes)

    def source(self, descriptor_id: int, family: str) -> "RegionEmbeddingSource":
        return RegionEmbeddingSource(self, int(descriptor_id), family)


class RegionEmbeddingSource:
    """Live regions of one descriptor and family as a vector index ``EmbeddingSource``."""

    def __init__(self, regions: RegionStore, descriptor_id: int, family: str) -> None:
        self.regions, self.descriptor_id, self.family = regions, descriptor_id, family
        self.dim = regions._dim(descriptor_id)

    def _base(self, *cols: Any) -> Any:
        return self.regions._joined(*cols).where(*self.regions._live(self.descriptor_id), Region.family == self.family)

    def digest(self) -> Any:
        from ..vector_index import LabelDigest  # same package: index

        with self.regions.store._read() as s:
            n, total, mix = s.execute(self._base(
                func.count(Region.label), func.coalesce(func.sum(Region.label), 0),
                func.coalesce(func.sum(((Region.label % 2147483647) * 1103515245) % 2147483647), 0))).one()
        return LabelDigest(int(n), int(total), int(mix))

    def labels(self) -> np.ndarray:
        with self.regions.store._read() as s:
            return np.asarray(s.scalars(self._base(Region.label).order_by(Region.label)).all(), dtype=np.int64)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        labs = [int(x) for x in np.asarray(labels).ravel()]
        found: dict[int, bytes] = {}
        with self.regions.store._read() as s:
            for chunk in _chunks(labs):
                for lab, blob in s.execute(select(Region.label, Region.vector).where(
                        Region.descriptor_id == self.descriptor_id, Region.label.in_(chunk))):
                    found[int(lab)] = blob
        missing = [l for l in labs if l not in found]
        if missing:
            raise UnknownItemError(f"{len(missing)} region labels have no stored vector (e.g. {missing[0]})")
        out = np.empty((len(labs), self.dim), np.float32)
        for k, lab in enumerate(labs):
            out[k] = np.frombuffer(found[lab], dtype="<f2")
        return out

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = -1
        while True:
            with self.regions.store._read() as s:
                rows = s.execute(self._base(Region.label, Region.vector).where(Region.label > last)
                                 .order_by(Region.label).limit(int(batch_size))).all()
            if not rows:
                return
            labels = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.empty((len(rows), self.dim), np.float32)
            for k, r in enumerate(rows):
                vecs[k] = np.frombuffer(r[1], dtype="<f2")
            last = int(labels[-1])
            yield labels, vecs


__all__ = ["DescriptorRecord", "RegionEmbeddingSource", "RegionRow", "RegionStore"]
