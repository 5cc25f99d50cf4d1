"""The same place on the patient's other scans: a box's surroundings found again by its context map.

Why: with "exclude same patient" off, the first analogue a reader wants for a box on a tumour is the
same tumour on the patient's earlier scan, at the tumour. The region descriptor cannot give that:
other patients' glioblastomas look as alike as the patient's own (Brain-Tumor-Progression: the
earlier scan first for 2 of 11 patients). The 128 mm around the box can
(:mod:`casebook.inference.regions.context`): slid over the patient's other scans of the same
modality family and plane, it lands on the tumour for 11 of 11 patients, and the earlier scan
outscores every other patient's best place for 10 of 11. So the patient's own scans where the box's
surroundings are found again (context agreement >= ``SAME_PLACE``) are listed first, boxed where
they agree, and other patients' analogues follow in the region search's order.

Maps are computed at embed time (:func:`store_context_map`) and stored in the case store
(:class:`casebook.index.case_store.context_maps.ContextMapStore`).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from casebook.index.case_store.context_maps import ContextMapStore
from casebook.index.errors import StoreError
from casebook.inference.errors import PreprocessError
from casebook.inference.preprocess import ImageInput
from casebook.inference.regions import context as cx

from . import anatomy

log = logging.getLogger(__name__)

#: a context that agrees this well is taken as the same place. Brain-Tumor-Progression patients
#: 01-05 (where it was chosen): the earlier scan's best place 0.94-0.98, every one on the tumour
SAME_PLACE = 0.90
#: at most this many of the patient's other scans are searched per box (the most recent first):
#: about 5 ms for a brain MR map, 100 ms for a large CT
MAX_SCANS = 8
#: planes agree when their normals' |cosine| is at least this (an axial box is found on axial slabs)
SAME_PLANE = 0.9


@dataclass(frozen=True)
class SamePlace:
    """The box's surroundings found on one of the patient's other scans."""

    series_id: int
    score: float  # context agreement, -1..1
    box: tuple[int, int, int, int, int, int]  # the query box's size (mm) centred where it agrees, in that series' voxels
    centre_kji: tuple[float, float, float]
    diameter_mm: float  # the box's larger in-plane side


def to_map(cmap: cx.ContextMap) -> tuple[str, str, tuple[int, int, int], tuple[float, ...], tuple[float, ...], bytes]:
    """(version, family, shape, scale, offset, pixels) as the store keeps them."""
    return (cmap.version, cmap.family, tuple(int(v) for v in cmap.values.shape),  # type: ignore[return-value]
            tuple(float(v) for v in cmap.scale), tuple(float(v) for v in cmap.offset), cx.encode_map(cmap))


def context_map_of(image: Any, modality: str = "") -> tuple:
    """A series' context map as the store keeps it (:func:`to_map`); ``image`` a Volume or
    ImageInput, ``modality`` the file's when the image names none. Runs on Ray workers too."""
    img = image if isinstance(image, ImageInput) else ImageInput.from_volume(image)
    if not img.modality and modality:
        img.modality = modality
    return to_map(cx.context_map(img))


def map_reading(stored: tuple) -> str:
    """What a map (as :func:`to_map` gives it) shows of the body, as stored beside it: read from the
    stored bytes, so a reading made later from the store gives the same."""
    version, family, shape, scale, offset, pixels = stored
    return anatomy.to_text(anatomy.read_map(cx.decode_map(pixels, shape, scale, offset, family, version)))


def store_context_map(maps: ContextMapStore, series_id: int, image: Any, modality: str = "") -> None:
    """Compute and store a series' context map and what it shows of the body (embed time)."""
    stored = context_map_of(image, modality)
    maps.put(int(series_id), *stored, anatomy=map_reading(stored), anatomy_version=anatomy.IMAGE_RULE)


def load_context_map(maps: ContextMapStore, series_id: int) -> cx.ContextMap | None:
    """A stored map of the current version, or None (never computed, older, or damaged: logged)."""
    try:
        got = maps.get(int(series_id))
        if got is None or got.version != cx.CONTEXT_VERSION:
            return None
        return cx.decode_map(got.pixels, got.shape, got.scale, got.offset, got.family, got.version)
    except (StoreError, PreprocessError) as exc:
        log.warning("series %s: context map left out of the same-place search: %s", series_id, exc)
        return None


class MapCache:
    """Prepared context maps of the last few series searched (thread-safe): a reader draws box after
    box on one study, and the patient's other scans are the same each time; preparing a large CT's
    map takes ~0.07 s, sliding a box over a prepared one ~10 ms. Opening a study prepares them
    (:meth:`RegionSearchService.warm_up`)."""

    def __init__(self, maps: ContextMapStore, size: int = 2 * MAX_SCANS) -> None:
        self.maps, self.size = maps, int(size)
        self._items: OrderedDict[int, cx.PreparedMap | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, series_id: int) -> cx.PreparedMap | None:
        sid = int(series_id)
        with self._lock:
            if sid in self._items:
                self._items.move_to_end(sid)
                return self._items[sid]
        cmap = load_context_map(self.maps, sid)
        prep = cx.prepare_map(cmap) if cmap is not None else None
        with self._lock:
            self._items[sid] = prep
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return prep

    def forget(self) -> None:
        """Drop every prepared map (after ``casebook embed`` rewrote them)."""
        with self._lock:
            self._items.clear()


def _normal(orientation: Sequence[float] | None) -> np.ndarray | None:
    if not orientation or len(orientation) != 6:
        return None
    n = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else None


def same_plane(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two series' slices are parallel (unknown orientation: assumed so)."""
    na, nb = _normal(a), _normal(b)
    return na is None or nb is None or abs(float(na @ nb)) >= SAME_PLANE


@dataclass
class ContextQuery:
    """A box's context: the 64-d surroundings and the box's half-size in mm (k, j, i)."""

    vector: np.ndarray
    half_mm: tuple[float, float, float]


def box_context(maps: ContextMapStore, series_id: int, image: ImageInput, box: Sequence[int]) -> ContextQuery | None:
    """The context of a box on a stored series (its stored map, else one computed from ``image``);
    None where the surroundings are background or flat."""
    cmap = load_context_map(maps, series_id)
    if cmap is None:
        cmap = cx.context_map(image)
    k0, k1, j0, j1, i0, i1 = (int(v) for v in box)
    centre = ((k0 + k1 - 1) / 2.0, (j0 + j1 - 1) / 2.0, (i0 + i1 - 1) / 2.0)
    vec = cx.context_vector(cmap, centre)
    if vec is None:
        return None
    sk, sj, si = (float(s) for s in image.spacing)
    return ContextQuery(vec, ((k1 - k0) * sk / 2.0, (j1 - j0) * sj / 2.0, (i1 - i0) * si / 2.0))


def find_same_place(cache: MapCache, query: ContextQuery, family: str, candidates: Sequence[Any]
                    ) -> list[SamePlace]:
    """The candidates (series summaries, most recent first) where the box's surroundings agree at
    least ``SAME_PLACE``, best first. A candidate without a map of ``family`` is skipped."""
    out: list[SamePlace] = []
    for se in list(candidates)[:MAX_SCANS]:
        prep = cache.get(int(se.id))
        if prep is None or prep.cmap.family != family:
            continue
        m = cx.best_context(query.vector, prep)
        if m.score < SAME_PLACE:
            continue
        sk = float(se.slice_spacing or 1.0) or 1.0
        ps = tuple(se.pixel_spacing or (1.0, 1.0))
        sj, si = float(ps[0] or 1.0), float(ps[1] or 1.0)
        shape = (int(se.slice_count or 1), int(se.rows or 1), int(se.columns or 1))
        box = []
        for c, h, s, n in zip(m.centre_kji, query.half_mm, (sk, sj, si), shape):
            lo = int(np.clip(np.floor(c - max(h / s, 0.5) + 0.5), 0, max(n - 1, 0)))
            hi = int(np.clip(np.ceil(c + max(h / s, 0.5) + 0.5), lo + 1, max(n, 1)))
            box += [lo, hi]
        out.append(SamePlace(int(se.id), float(m.score), tuple(box), m.centre_kji,  # type: ignore[arg-type]
                             2.0 * max(query.half_mm[1], query.half_mm[2])))
    out.sort(key=lambda p: -p.score)
    return out


__all__ = ["MapCache", "MAX_SCANS", "SAME_PLACE", "SAME_PLANE", "ContextQuery", "SamePlace", "box_context", "find_same_place",
           "context_map_of", "load_context_map", "same_plane",
           "store_context_map"]
