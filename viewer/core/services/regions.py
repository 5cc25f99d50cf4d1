"""Region (finding) index: detect and store the candidate findings of every series, and open the
per-family region vector indexes.

Why here: detection and description are pure numpy (``casebook.inference.regions``), storage is
the case store's (``casebook.index.case_store.regions``); this module joins them with the stored
pixels, like :mod:`.embedding` does for encoder vectors. Resumable the same way: a series whose
region set is stored is done (also when it has no region), so an interrupted run continues.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casebook.index.case_store import CaseStore
from casebook.index.case_store.context_maps import ContextMapStore
from casebook.index.case_store.regions import DescriptorRecord, RegionRow, RegionStore
from casebook.index.errors import StoreError
from casebook.index.vector_index import VectorIndex
from casebook.inference.preprocess import ImageInput
from casebook.inference.regions import REGION_CARD, find_regions, modality_family
from casebook.inference.regions.context import CONTEXT_VERSION

from ..errors import CasebookError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from ..dicom.volume import Volume
from .library import load_stored_volume
from . import anatomy
from .same_place import load_context_map, store_context_map

log = logging.getLogger(__name__)


@dataclass
class RegionEmbedReport:
    descriptor: str
    done: int = 0
    regions: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    remaining: int = 0
    unscaled: int = 0  # series without pixel spacing: no mm scale, so no findings (stored as none)
    indexed: dict[str, int] = field(default_factory=dict)  # family -> regions in its index afterwards
    problem: str = ""  # why box search will not find the new findings yet ("" when it will)
    pruned: dict[str, int] = field(default_factory=dict)  # older descriptor version -> regions deleted
    compacted: int = 0  # bytes the library file gave back after the prune (0: not compacted)
    context_maps: int = 0  # series whose context map was computed (same place on the patient's other scans)
    anatomy_read: int = 0  # older maps read for the anatomy they show (new maps are read as they are made)

    def text(self) -> str:
        if self.problem:
            return f"findings not indexed: {self.problem}"
        fams = ", ".join(f"{f} {n}" for f, n in sorted(self.indexed.items())) or "none"
        out = f"findings of {self.done} series ({self.regions} regions); region index {fams}"
        if self.context_maps:
            out += f"; context maps of {self.context_maps} series"
        if self.anatomy_read:
            out += f"; anatomy read from the maps of {self.anatomy_read} older series"
        if self.unscaled:
            out += f"; {self.unscaled} without pixel spacing (no findings: no mm scale)"
        if self.failed:
            out += f"; {len(self.failed)} series failed"
        if self.remaining:
            out += f"; {self.remaining} series still to do (`casebook embed`)"
        for key, n in sorted(self.pruned.items()):
            out += f"; {n} regions of {key} removed (recomputed with {self.descriptor})"
        if self.compacted:
            out += f"; library file {self.compacted / 2**20:.1f} MiB smaller"
        return out


def register(store: CaseStore) -> tuple[RegionStore, DescriptorRecord]:
    """The store's region tables and the shipped descriptor's record (registered if new)."""
    regions = RegionStore(store)
    return regions, regions.register_descriptor(REGION_CARD.name, REGION_CARD.version, REGION_CARD.dim)


def rows_of(found: list) -> list[RegionRow]:
    """Detector regions as storable rows."""
    return [RegionRow(r.box, r.centre, r.centre_lps, r.diameter_mm, r.volume_ml, r.polarity, r.contrast, r.saliency,
                      r.family) for r in found]


def describe_volume(vol: Volume, modality: str = "", *, cancel: SupportsCancel | None = None
                    ) -> tuple[str, list[RegionRow], np.ndarray]:
    """(modality family, region rows, descriptors) of one volume's findings, ready for
    ``RegionStore.put_regions``; the same code runs in-process and on a distributed worker."""
    image = ImageInput.from_volume(vol)
    # findings are described at a physical scale (mm): an image whose file gives no pixel spacing
    # (a scanned page, a dose-report screen, a secondary capture) has none, and its "regions"
    # would be text and icons matched against lesions
    found = find_regions(image, cancel=cancel) if vol.geometry.pixel_spacing_known else []
    vecs = [r.vector for r in found]
    return (modality_family(image.modality or modality), rows_of(found),
            np.vstack(vecs) if vecs else np.empty((0, REGION_CARD.dim), np.float32))


def embed_regions(store: CaseStore, *, progress: ProgressCallback | None = None,
                  cancel: SupportsCancel | None = None, limit: int | None = None) -> RegionEmbedReport:
    """Detect, describe and store the regions (and the context map) of every series that has none
    yet; a library embedded before context maps existed gets its maps on the next run."""
    regions, desc = register(store)
    maps = ContextMapStore(store)
    todo = regions.series_missing_regions(desc.id)
    missing = set(todo)
    unmapped = set(maps.series_missing(CONTEXT_VERSION))
    todo = todo + sorted(unmapped - missing)
    if limit is not None:
        todo = todo[:limit]
    rep = RegionEmbedReport(desc.key)
    for n, sid in enumerate(todo):
        check_cancel(cancel)
        try:
            se = store.get_series(sid)
            vol = load_stored_volume(store, sid, cancel=cancel)
            if sid in missing:
                family, rows, vecs = describe_volume(vol, se.modality, cancel=cancel)
                if not vol.geometry.pixel_spacing_known:
                    rep.unscaled += 1
                    log.info("series %d: no pixel spacing, so no findings are stored for it", sid)
                regions.put_regions(desc.id, sid, rows, vecs, family=family, body_part=se.body_part)
                rep.done += 1
                rep.regions += len(rows)
            if sid in unmapped:
                try:
                    store_context_map(maps, sid, vol, se.modality)
                    rep.context_maps += 1
                except (CasebookError, ValueError) as exc:  # its findings are stored all the same
                    log.warning("series %d: no context map: %s", sid, exc)
                    rep.failed.append((sid, f"context map: {exc}"))
        except (CasebookError, OSError, ValueError) as exc:
            if cancel is not None and cancel.is_set():
                raise
            log.warning("series %d: no regions: %s", sid, exc)
            rep.failed.append((sid, str(exc)))
        if progress:
            progress(n + 1, len(todo), f"regions of series {sid}")
    rep.anatomy_read = read_map_anatomy(maps, progress=progress, cancel=cancel)
    rep.remaining = len(regions.series_missing_regions(desc.id))
    return rep


def read_map_anatomy(maps: ContextMapStore, *, progress: ProgressCallback | None = None,
                     cancel: SupportsCancel | None = None) -> int:
    """Read what each stored map shows of the body where it has no reading of the current rule (a
    map made before readings were stored, or under an older rule) from the map alone: no DICOM
    file is read."""
    unread = maps.series_unread(anatomy.IMAGE_RULE)
    readings: dict[int, str] = {}
    done = 0
    for n, sid in enumerate(unread):
        check_cancel(cancel)
        cmap = load_context_map(maps, sid)
        if cmap is not None:  # an older map's version: recomputed (and read) by the next embed
            readings[sid] = anatomy.to_text(anatomy.read_map(cmap))
        if len(readings) >= 200 or n + 1 == len(unread):
            done += maps.set_anatomy(readings, anatomy.IMAGE_RULE)
            readings = {}
        if progress:
            progress(n + 1, len(unread), f"anatomy of series {sid}")
    return done



def embed_and_index_regions(store: CaseStore, index_dir: Path, *, progress: ProgressCallback | None = None,
                            cancel: SupportsCancel | None = None, limit: int | None = None) -> RegionEmbedReport:
    """Detect the findings of every series that has none yet, then bring each modality family's
    region index up to date, so the next box query opens it at once (embed, demo and import)."""
    rep = embed_regions(store, progress=progress, cancel=cancel, limit=limit)
    index_regions(store, index_dir, rep, cancel=cancel)
    if rep.remaining == 0:
        prune_old_versions(store, index_dir, rep)
    return rep


#: free share of the library file at which removing old regions rewrites it without the free pages
COMPACT_FREE_FRACTION = 0.25


def prune_old_versions(store: CaseStore, index_dir: Path, rep: RegionEmbedReport | None = None) -> dict[str, int]:
    """Remove the regions and index files of older versions of the shipped descriptor.

    Why only here and only then: until the current version covers every series, a box query on
    a series it has not reached yet says why (its findings are of an older version) instead of
    finding nothing; once it covers them all, the old rows are dead weight (they are never
    searched: a query uses only the current version). The rows go in one transaction; the index
    files after it, so a crash between leaves only files that nothing opens. When the freed pages
    are a quarter of the library file or more, the file is rewritten without them (SQLite would
    keep them: an upgrade would otherwise leave the file as large as both versions)."""
    from casebook.index.vector_index.files import model_file_stem

    regions = RegionStore(store)
    dropped = regions.drop_other_versions(REGION_CARD.name, REGION_CARD.version)
    out: dict[str, int] = {}
    for d, families, n in dropped:
        out[d.key] = n
        for family in families:
            stem = model_file_stem(d.index_key(family))
            for path in Path(index_dir).glob(f"{stem}.*"):
                try:
                    path.unlink()
                except OSError as exc:  # a file another process holds open: harmless, never opened again
                    log.warning("old region index file %s not removed: %s", path.name, type(exc).__name__)
        log.info("removed %d regions of %s (the library is embedded with %s)", n, d.key, REGION_CARD.key)
    compacted = 0
    if out:  # SQLite keeps the freed pages: give them back once, when they are a large part of the file
        try:
            compacted = store.compact(min_free_fraction=COMPACT_FREE_FRACTION)
        except StoreError as exc:  # the file is as it was; the next prune or `casebook check --repair` retries
            log.warning("library file not compacted after removing old regions: %s", exc)
    if rep is not None:
        rep.pruned.update(out)
        rep.compacted = compacted
    return out


def index_regions(store: CaseStore, index_dir: Path, rep: RegionEmbedReport, *,
                  cancel: SupportsCancel | None = None) -> None:
    """Bring every family's region index up to date with the store, noting sizes (or why not) in ``rep``."""
    regions, desc = register(store)
    for family in sorted(regions.families(desc.id)):
        check_cancel(cancel)
        try:
            idx = open_region_index(index_dir, regions, desc, family, cancel=cancel)
            try:
                rep.indexed[family] = len(idx)
            finally:
                idx.close()
        except (CasebookError, OSError) as exc:  # the next box search catches the index up
            log.warning("region index %s not updated now: %s", family, type(exc).__name__)
            rep.problem = f"the {family} region index was not updated ({exc}); the next box search catches it up"


def open_region_index(index_dir: Path, regions: RegionStore, desc: DescriptorRecord, family: str, *,
                      progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> VectorIndex:
    """The on-disk vector index of one family's regions, checked and caught up against the store."""
    return VectorIndex.open(index_dir, desc.index_key(family), desc.dim, regions.source(desc.id, family),
                            progress=progress, cancel=cancel)


__all__ = ["RegionEmbedReport", "describe_volume", "embed_and_index_regions", "embed_regions", "index_regions", "open_region_index", "prune_old_versions", "register", "rows_of"]
