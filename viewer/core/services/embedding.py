"""Embed every stored series whose embeddings for the current model are missing or no longer
match its images.

Resumable by construction: each series' vectors are written in one transaction, and the work
list is "series with no embedding of this model, or whose files changed since", so an interrupted
run simply continues. When a series' files changed (regenerated, replaced, grown), its pixels are
hashed: the same pixels keep their vectors, other pixels are embedded again. Concurrent runs on
one library share the work: each series is claimed before it is embedded (a lease in the store),
so two ``casebook embed`` never compute the same series twice. The model is recorded in the store
by name, version and file hash: a retrained file with the same name and version is refused rather
than silently mixed with older vectors.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from casebook.index.case_store import CaseStore
from casebook.inference.embedding import embed_image
from casebook.inference.preprocess import ImageInput
from casebook.inference.registry import find_model
from casebook.inference.runtime import Encoder

from ..config import Settings, load_settings
from ..dicom.volume import Volume
from ..errors import CasebookError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from .library import load_stored_volume, open_store

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    model: str
    provider: str
    done: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    remaining: int = 0
    reembedded: int = 0  # of ``done``: series whose images had changed
    unchanged: int = 0  # files rewritten with the same pixels: vectors kept
    claimed_elsewhere: int = 0  # left to another run working on the same library


def open_encoder(settings: Settings, model: str | None = None) -> Encoder:
    return Encoder(find_model(model or settings.model, settings.models_dir).path, device=settings.device)


def content_hash(vol: Volume) -> str:
    """A digest of what the encoder sees: the voxels, their shape and type, and the spacing."""
    h = hashlib.blake2b(digest_size=20)
    vox = np.ascontiguousarray(vol.voxels)
    h.update(f"{vox.shape}|{vox.dtype}|{tuple(round(float(x), 4) for x in vol.spacing)}".encode())
    h.update(memoryview(vox).cast("B"))
    return h.hexdigest()


def encode_volume(encoder: Encoder, vol: Volume, *, cancel: SupportsCancel | None = None
                  ) -> tuple[list[int], np.ndarray]:
    """(slice indices, vectors) of one volume as the store keeps them: the series vector at -1,
    then one per slice or slab. The same code runs in-process and on a distributed worker."""
    emb = embed_image(encoder, ImageInput.from_volume(vol), cancel=cancel)
    return [-1, *(int(k) for k in emb.part_slices)], np.vstack([emb.series[None], emb.parts])


def embed_missing(store: CaseStore, encoder: Encoder, *, progress: ProgressCallback | None = None,
                  cancel: SupportsCancel | None = None, limit: int | None = None) -> EmbedReport:
    """Compute and store series (slice index -1) and per-slice/slab embeddings of every series
    lacking them or whose images changed; a series that cannot be read or encoded is reported
    and skipped, one claimed by another run is left to it."""
    prov = encoder.provenance
    rec = store.register_model(prov.name, prov.version, prov.sha256, encoder.embedding_size, encoder.card.input_kind)
    todo = store.series_needing_embeddings(rec.id)
    if limit is not None:
        todo = todo[:limit]
    report = EmbedReport(model=encoder.card.ident, provider=encoder.provider)
    owner = store.claim_owner()
    for n, (sid, why) in enumerate(todo):
        check_cancel(cancel)
        if not store.claim_series(rec.id, sid, owner):
            report.claimed_elsewhere += 1
            if progress:
                progress(n + 1, len(todo), f"series {sid}")
            continue
        try:
            # another run may have finished it between our list and our claim
            if not store.series_needing_embeddings(rec.id, [sid]):
                continue
            signature = store.series_file_signatures([sid]).get(sid, "")
            vol = load_stored_volume(store, sid, cancel=cancel)
            digest = content_hash(vol)
            state = store.embedding_state(rec.id, sid)
            if why == "files changed" and state is not None and state[1] == digest:
                store.set_embedding_state(rec.id, sid, signature, digest)
                report.unchanged += 1
                continue
            idx, vecs = encode_volume(encoder, vol, cancel=cancel)
            store.put_embeddings(rec.id, sid, idx, vecs, replace_series=True, file_signature=signature,
                                 content_hash=digest)
            report.done += 1
            if why == "files changed":
                report.reembedded += 1
        except (CasebookError, OSError, ValueError) as exc:
            if cancel is not None and cancel.is_set():
                raise
            log.warning("series %d: cannot embed: %s", sid, exc)
            report.failed.append((sid, str(exc)))
        finally:
            store.release_claim(rec.id, sid, owner)
            if progress:
                progress(n + 1, len(todo), f"series {sid}")
    report.remaining = len(store.series_needing_embeddings(rec.id))
    return report


def embed_library(settings: Settings | None = None, model: str | None = None, **kw) -> EmbedReport:
    """Embed the library's missing series; a library that does not exist is refused
    (:class:`~.library.LibraryMissing`), never created empty."""
    settings = settings or load_settings()
    encoder = open_encoder(settings, model)  # a bad model is refused before the store is touched
    store = open_store(settings, create=False)
    try:
        return embed_missing(store, encoder, **kw)
    finally:
        store.close()


__all__ = ["EmbedReport", "content_hash", "encode_volume", "embed_missing", "embed_library", "open_encoder"]


def training_set_from_store(store: CaseStore, kind: str = "2d-slice", *, size: int | None = None,
                            slices_per_series: int = 8, val_fraction: float = 0.15, seed: int = 0,
                            label_tags: Sequence[str] | None = None,
                            progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None):
    """The library as a training set for ``casebook train-encoder --from-store``.

    Labels are the series' diagnoses (its own report's, else its study's), or with ``label_tags``
    the one of those study tags a series' study carries (a teaching file's own categories; a study
    with none or several of them is unlabelled). Unlabelled series (-1) are still used by the
    self-supervised term. The val split is drawn by study, so slices of one study never sit on
    both sides. Images are mapped to [0, 1] with the same modality rules as the shipped models
    (CT wide window, MR percentiles, radiographs as is). Needs numpy only, not torch.
    """
    from casebook.inference.preprocess import normalise_intensity, resample_to, sample_slices
    from casebook.inference.training.data import LabelledArrays, TrainingDataError, default_intensity

    three_d = kind == "3d-volume"
    size = size or (32 if three_d else 64)
    rules = default_intensity(kind)
    series = store.list_series()
    if label_tags:
        classes = sorted({t.strip() for t in label_tags if t.strip()})
        diag = {}
        for s in series:
            hits = [t for t in (s.tags or []) if t in classes]
            if len(hits) == 1:
                diag[s.id] = hits[0]
        missing = [t for t in classes if t not in diag.values()]
        if missing:
            raise TrainingDataError(f"{store.path}: no series carries the tag(s) {', '.join(missing)} alone")
        names = classes
    else:
        diag = store.diagnoses()
        names = sorted(set(diag.values()))
    label_of = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(seed)
    studies = sorted({s.study_id for s in series})
    val_studies = set(rng.choice(studies, size=max(1, int(len(studies) * val_fraction)), replace=False).tolist()) if studies else set()
    buckets: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for n, s in enumerate(series):
        check_cancel(cancel)
        try:
            vol = load_stored_volume(store, s.id, cancel=cancel)
        except (CasebookError, OSError, ValueError) as exc:
            log.warning("series %d: skipped for training: %s", s.id, exc)
            continue
        img = ImageInput.from_volume(vol)
        spec = rules.get((img.modality or "").upper(), rules["default"])
        if img.modality.upper() in ("CR", "DX", "MG", "RG", "XA", "RF") and "XR" in rules:
            spec = rules["XR"]
        lab = label_of.get(diag.get(s.id, ""), -1)
        xs, ys = buckets[s.study_id in val_studies]
        if three_d:
            norm = normalise_intensity(img.voxels, spec, img.photometric)
            xs.append(resample_to(norm, img.spacing, (size,) * 3, None))
            ys.append(lab)
        else:
            for k in sample_slices(img.shape[0], slices_per_series):
                norm = normalise_intensity(img.voxels[k], spec, img.photometric)
                xs.append(resample_to(norm, img.spacing[1:], (size, size), None))
                ys.append(lab)
        if progress:
            progress(n + 1, len(series), "series")
    (tx, ty), (vx, vy) = buckets[False], buckets[True]
    if not tx or not vx:
        raise TrainingDataError(f"{store.path}: too few readable series to train (train {len(tx)}, val {len(vx)})")
    out = LabelledArrays(np.stack(tx), np.asarray(ty, np.int64), np.stack(vx), np.asarray(vy, np.int64),
                         source=f"case store {store.path}", label_names=names)
    out.validate()
    return out


__all__ += ["training_set_from_store"]
