"""Encoder models and their embeddings: the authoritative vectors that every vector index caches.

Labels are never reused (a replaced vector gets a new label), so an index can always tell a
changed vector from the one it holds; :class:`StoreEmbeddingSource` hands a model's live
embeddings to :class:`casebook.index.vector_index.VectorIndex`.

Embeddings stay true to the images: each series' embeddings record what they were computed from
(its files' signature and a hash of its pixels, :class:`~.models.EmbeddingState`), so regenerated
or replaced images are embedded again. Concurrent ``casebook embed`` runs share the work through
one claim per series (:class:`~.models.EmbedClaim`, with a lease, so a killed run's claims lapse),
and a replaced vector is kept a while (:class:`~.models.RetiredEmbedding`) so an index catching up
from a label list read just before never finds a label without its vector.
"""
from __future__ import annotations

import hashlib
import os
import socket
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, exists, func, insert, or_, select

from ..errors import QueryError, StoreError, UnknownItemError
from .models import (EmbedClaim, Embedding, EmbeddingState, Instance, Model, RetiredEmbedding, Series, SourceFile,
                     Study, utcnow)
from .records import ModelRecord
from .sessions import chunks

if TYPE_CHECKING:
    from .store import CaseStore


RETIRED_KEEP = timedelta(hours=1)  # how long a replaced vector stays readable for catching-up indexes


def _owner_alive(owner: str) -> bool:
    """False only when the claim's owner is a process of this host that has ended."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddingsMixin:
    """Registering encoders, storing and reading embeddings, label bookkeeping.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    @staticmethod
    def _model_record(m: Model) -> ModelRecord:
        return ModelRecord(m.id, m.name, m.version, m.sha256, m.dim, m.input_kind, m.created)

    def register_model(self, name: str, version: str, sha256: str, dim: int, input_kind: str) -> ModelRecord:
        """Record an encoder (idempotent). The same name@version with another file or size is refused:
        index files are named by name@version, so a retrained model needs a new version."""
        if not name or not version or dim <= 0:
            raise QueryError("a model needs a name, a version and a positive embedding size")
        with self._write() as s:
            m = s.scalar(select(Model).where(Model.name == name, Model.version == version))
            if m is None:
                m = Model(name=name, version=version, sha256=sha256, dim=int(dim), input_kind=input_kind,
                          next_label=0)
                s.add(m)
                s.flush()
            elif m.sha256 != sha256 or m.dim != int(dim):
                raise StoreError(f"model {name}@{version} is already registered with another file "
                                 f"(sha256 {m.sha256[:12]}…, {m.dim}-d); give the new file a new version")
            return self._model_record(m)

    def list_models(self) -> list[ModelRecord]:
        with self._read() as s:
            return [self._model_record(m) for m in s.scalars(select(Model).order_by(Model.name, Model.version))]

    def get_model(self, model: int | str) -> ModelRecord:
        """A model by id, by ``name@version`` or by name alone (its newest registration)."""
        with self._read() as s:
            if isinstance(model, int):
                m = s.get(Model, model)
            elif "@" in model:
                name, version = model.split("@", 1)
                m = s.scalar(select(Model).where(Model.name == name, Model.version == version))
            else:
                m = s.scalar(select(Model).where(Model.name == model).order_by(Model.id.desc()))
        if m is None:
            raise UnknownItemError(f"model {model!r} is not registered in the library")
        return self._model_record(m)

    def put_embeddings(self, model_id: int, series_id: int, slice_indices: Sequence[int], vectors: np.ndarray,
                       *, roi: str = "", replace_series: bool = False, file_signature: str | None = None,
                       content_hash: str = "") -> np.ndarray:
        """Store vectors (one row per slice index, -1 = whole series) and return their new labels.

        A vector replacing an existing one (same model, series, slice, ROI) gets a NEW label: labels
        are never reused, so an index can always tell a changed vector from the one it holds.
        ``replace_series`` first drops every embedding of the series for this model.
        ``file_signature``/``content_hash`` record what the vectors were computed from, in the same
        transaction (see :meth:`series_needing_embeddings`).
        """
        vecs = np.ascontiguousarray(np.asarray(vectors, dtype="<f4"))
        if vecs.ndim == 1:
            vecs = vecs[None, :]
        idx = [int(i) for i in slice_indices]
        if len(idx) != len(vecs):
            raise QueryError(f"{len(idx)} slice indices for {len(vecs)} vectors")
        if len(set(idx)) != len(idx):
            raise QueryError("slice indices must be distinct")
        if not np.isfinite(vecs).all():
            raise QueryError(f"series {series_id}: embedding contains NaN or infinity")
        with self._write() as s:
            m = s.get(Model, int(model_id))
            if m is None:
                raise UnknownItemError(f"model {model_id} is not registered in the library")
            if vecs.shape[1] != m.dim:
                raise QueryError(f"model {m.name}@{m.version} makes {m.dim}-d embeddings, got {vecs.shape[1]}-d")
            if s.get(Series, int(series_id)) is None:
                raise UnknownItemError(f"series {series_id} is not in the library")
            which = [Embedding.model_id == m.id, Embedding.series_id == int(series_id),
                     *([] if replace_series else [Embedding.slice_index.in_(idx), Embedding.roi == roi])]
            now = utcnow()
            old = s.execute(select(Embedding.label, Embedding.vector).where(*which)).all()
            if old:
                s.execute(insert(RetiredEmbedding).prefix_with("OR REPLACE"), [
                    {"model_id": m.id, "label": int(lab), "vector": blob, "retired": now} for lab, blob in old])
            s.execute(delete(RetiredEmbedding).where(RetiredEmbedding.retired < now - RETIRED_KEEP))
            s.execute(delete(Embedding).where(*which))
            if file_signature is not None:
                st = s.get(EmbeddingState, (m.id, int(series_id)))
                if st is None:
                    s.add(EmbeddingState(model_id=m.id, series_id=int(series_id), file_signature=file_signature,
                                         content_hash=content_hash, created=now))
                else:
                    st.file_signature, st.content_hash, st.created = file_signature, content_hash, now
            start = int(m.next_label)
            labels = np.arange(start, start + len(idx), dtype=np.int64)
            m.next_label = start + len(idx)
            if len(idx):
                s.execute(insert(Embedding), [{
                    "model_id": m.id, "series_id": int(series_id), "slice_index": si, "roi": roi,
                    "label": int(lab), "vector": vecs[n].tobytes(), "created": now,
                } for n, (si, lab) in enumerate(zip(idx, labels))])
        return labels

    def delete_embeddings(self, model_id: int, series_id: int | None = None) -> int:
        with self._write() as s:
            cond = [Embedding.model_id == int(model_id)]
            if series_id is not None:
                cond.append(Embedding.series_id == int(series_id))
            return s.execute(delete(Embedding).where(*cond)).rowcount

    def _live_embedding_cond(self, model_id: int) -> list[Any]:
        return [Embedding.model_id == int(model_id), Series.state == "complete", Series.deleted.is_(False),
                Study.deleted.is_(False)]

    def get_embeddings(self, model_id: int, series_ids: Sequence[int] | None = None, *,
                       include_deleted: bool = False, roi: bool = False) -> "EmbeddingSet":
        """Stored embeddings of a model (live series only unless ``include_deleted``), label order.

        ROI embeddings (from boxes drawn in the viewer) are left out unless ``roi=True``.
        """
        cond: list[Any] = ([Embedding.model_id == int(model_id)] if include_deleted
                           else self._live_embedding_cond(model_id))
        if not roi:
            cond.append(Embedding.roi == "")
        dim = self.get_model(int(model_id)).dim
        base = (select(Embedding.label, Embedding.series_id, Embedding.slice_index, Embedding.roi, Embedding.vector)
                .join(Series, Series.id == Embedding.series_id).join(Study, Study.id == Series.study_id))
        rows: list[Any] = []
        with self._read() as s:
            if series_ids is None:
                rows = s.execute(base.where(*cond).order_by(Embedding.label)).all()
            else:
                for chunk in chunks([int(i) for i in series_ids]):
                    rows.extend(s.execute(base.where(*cond, Embedding.series_id.in_(chunk))).all())
                rows.sort(key=lambda r: r[0])
        return EmbeddingSet.from_rows(rows, dim)

    def series_missing_embeddings(self, model_id: int) -> list[int]:
        """Visible series with no embedding of this model yet (what ``casebook embed`` works on)."""
        has = exists().where(Embedding.series_id == Series.id, Embedding.model_id == int(model_id))
        with self._read() as s:
            return list(s.scalars(select(Series.id).join(Study, Study.id == Series.study_id)
                                  .where(self._visible(), ~has).order_by(Series.id)))

    # ------------------------------------------------------------ embeddings true to the images

    def series_file_signatures(self, series_ids: Sequence[int]) -> dict[int, str]:
        """series id -> digest of its images' (SOP UID, frame, path, size, mtime): changes whenever
        a file of the series is rewritten, replaced or added (cheap: no file is read)."""
        out: dict[int, "hashlib._Hash"] = {}
        with self._read() as s:
            for chunk in chunks([int(i) for i in series_ids]):
                rows = s.execute(select(Instance.series_id, Instance.sop_instance_uid, Instance.frame_index,
                                        Instance.path, SourceFile.size, SourceFile.mtime_ns)
                                 .outerjoin(SourceFile, SourceFile.path == Instance.path)
                                 .where(Instance.series_id.in_(chunk))
                                 .order_by(Instance.series_id, Instance.sop_instance_uid, Instance.frame_index)).all()
                for sid, uid, frame, path, size, mtime in rows:
                    h = out.setdefault(sid, hashlib.sha256())
                    h.update(f"{uid}\0{frame}\0{path}\0{size}\0{mtime}\n".encode())
        return {sid: h.hexdigest() for sid, h in out.items()}

    def embedding_state(self, model_id: int, series_id: int) -> tuple[str, str] | None:
        """(file signature, content hash) the series' embeddings of the model were computed from."""
        with self._read() as s:
            st = s.get(EmbeddingState, (int(model_id), int(series_id)))
        return None if st is None else (st.file_signature, st.content_hash)

    def set_embedding_state(self, model_id: int, series_id: int, file_signature: str, content_hash: str) -> None:
        """Record that the embeddings are still true for these files (their pixels did not change)."""
        with self._write() as s:
            st = s.get(EmbeddingState, (int(model_id), int(series_id)))
            if st is None:
                s.add(EmbeddingState(model_id=int(model_id), series_id=int(series_id), file_signature=file_signature,
                                     content_hash=content_hash, created=utcnow()))
            else:
                st.file_signature, st.content_hash = file_signature, content_hash

    def series_needing_embeddings(self, model_id: int, series_ids: Sequence[int] | None = None
                                  ) -> list[tuple[int, str]]:
        """(series id, why) of visible series whose embeddings of the model are missing or may no
        longer match their images: "missing", or "files changed" (the files' signature differs from
        the one recorded at embedding; the pixels' hash then decides). Embeddings from before this
        was recorded count as true when no file of the series is newer than they are."""
        has = exists().where(Embedding.series_id == Series.id, Embedding.model_id == int(model_id))
        with self._read() as s:
            q = select(Series.id, has).join(Study, Study.id == Series.study_id).where(self._visible())
            if series_ids is not None:
                q = q.where(Series.id.in_([int(i) for i in series_ids]))
            rows = s.execute(q.order_by(Series.id)).all()
            sq = select(EmbeddingState.series_id, EmbeddingState.file_signature).where(
                EmbeddingState.model_id == int(model_id))
            if series_ids is not None:  # one series re-checked after its claim: never the whole table
                sq = sq.where(EmbeddingState.series_id.in_([int(i) for i in series_ids]))
            states = dict(s.execute(sq).all())
            embedded = [sid for sid, h in rows if h]
            legacy = [sid for sid in embedded if sid not in states]
            newest_vec: dict[int, datetime] = {}
            newest_file: dict[int, int] = {}
            for chunk in chunks(legacy):
                newest_vec.update(s.execute(select(Embedding.series_id, func.min(Embedding.created))
                                            .where(Embedding.model_id == int(model_id),
                                                   Embedding.series_id.in_(chunk))
                                            .group_by(Embedding.series_id)).all())
                newest_file.update(s.execute(select(Instance.series_id, func.max(SourceFile.mtime_ns))
                                             .join(SourceFile, SourceFile.path == Instance.path)
                                             .where(Instance.series_id.in_(chunk))
                                             .group_by(Instance.series_id)).all())
        sigs = self.series_file_signatures(embedded)
        out: list[tuple[int, str]] = []
        adopt: list[tuple[int, str]] = []
        for sid, h in rows:
            if not h:
                out.append((sid, "missing"))
            elif sid in states:
                if states[sid] != sigs.get(sid):
                    out.append((sid, "files changed"))
            else:
                made = newest_vec.get(sid)
                mtime = newest_file.get(sid)
                # created is naive UTC; mtime_ns is POSIX time
                made_ns = (made.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds() * 1e9 if made else 0
                if made is None or mtime is None or mtime > made_ns:
                    out.append((sid, "files changed"))
                else:
                    adopt.append((sid, sigs.get(sid, "")))
        if adopt:  # unchanged since they were embedded: record it, so the check stays cheap
            with self._write() as s:
                for sid, sig in adopt:
                    if s.get(EmbeddingState, (int(model_id), sid)) is None:
                        s.add(EmbeddingState(model_id=int(model_id), series_id=sid, file_signature=sig,
                                             content_hash="", created=utcnow()))
        return out

    @staticmethod
    def claim_owner() -> str:
        """This process's name on claims: host, process id and a random part."""
        return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"

    def claim_series(self, model_id: int, series_id: int, owner: str, *, lease_s: float = 900.0) -> bool:
        """Take the claim on a series for ``owner`` (True), unless another live run holds it.

        A claim past its lease, or held by a process of this host that no longer runs, is taken
        over: a killed ``casebook embed`` never blocks the others for long.
        """
        now = utcnow()
        with self._write() as s:
            c = s.get(EmbedClaim, (int(model_id), int(series_id)))
            if c is not None and c.owner != owner and c.expires > now and _owner_alive(c.owner):
                return False
            if c is None:
                s.add(EmbedClaim(model_id=int(model_id), series_id=int(series_id), owner=owner,
                                 expires=now + timedelta(seconds=lease_s)))
            else:
                c.owner, c.expires = owner, now + timedelta(seconds=lease_s)
        return True

    def release_claim(self, model_id: int, series_id: int, owner: str) -> None:
        with self._write() as s:
            s.execute(delete(EmbedClaim).where(EmbedClaim.model_id == int(model_id),
                                               EmbedClaim.series_id == int(series_id), EmbedClaim.owner == owner))

    def claims(self, model_id: int) -> dict[int, str]:
        """series id -> owner of the live claims of a model (for ``casebook embed`` to report)."""
        with self._read() as s:
            return dict(s.execute(select(EmbedClaim.series_id, EmbedClaim.owner)
                                  .where(EmbedClaim.model_id == int(model_id), EmbedClaim.expires > utcnow())).all())

    def labels_for_series(self, model_id: int, series_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """series id -> labels of its live, non-ROI embeddings for the model."""
        out: dict[int, list[int]] = {int(i): [] for i in series_ids}
        with self._read() as s:
            for chunk in chunks(list(out)):
                for sid, lab in s.execute(select(Embedding.series_id, Embedding.label)
                                          .join(Series, Series.id == Embedding.series_id)
                                          .join(Study, Study.id == Series.study_id)
                                          .where(*self._live_embedding_cond(model_id), Embedding.roi == "",
                                                 Embedding.series_id.in_(chunk))
                                          .order_by(Embedding.slice_index)):
                    out[sid].append(lab)
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}

    def resolve_labels(self, model_id: int, labels: Iterable[int]) -> dict[int, tuple[int, int]]:
        """label -> (series id, slice index) for labels of live embeddings (deleted ones are absent)."""
        labs = sorted({int(x) for x in labels})
        out: dict[int, tuple[int, int]] = {}
        with self._read() as s:
            for chunk in chunks(labs):
                for lab, sid, si in s.execute(select(Embedding.label, Embedding.series_id, Embedding.slice_index)
                                              .join(Series, Series.id == Embedding.series_id)
                                              .join(Study, Study.id == Series.study_id)
                                              .where(*self._live_embedding_cond(model_id),
                                                     Embedding.label.in_(chunk))):
                    out[lab] = (sid, si)
        return out

    def dead_labels(self, model_id: int) -> np.ndarray:
        """Labels of embeddings whose series or study is deleted (to mark deleted in an index)."""
        with self._read() as s:
            rows = s.scalars(select(Embedding.label).join(Series, Series.id == Embedding.series_id)
                             .join(Study, Study.id == Series.study_id)
                             .where(Embedding.model_id == int(model_id),
                                    or_(Series.deleted.is_(True), Study.deleted.is_(True)))).all()
        return np.asarray(rows, dtype=np.int64)

    def embedding_source(self, model_id: int) -> "StoreEmbeddingSource":
        """The live embeddings of a model as a ``casebook.index.vector_index.EmbeddingSource``."""
        return StoreEmbeddingSource(self, int(model_id))


class EmbeddingSet:
    """Embeddings as arrays: ``labels``, ``series_ids``, ``slice_indices`` (int64), ``vectors`` (float32)."""

    def __init__(self, labels: np.ndarray, series_ids: np.ndarray, slice_indices: np.ndarray, vectors: np.ndarray,
                 rois: list[str]) -> None:
        self.labels, self.series_ids, self.slice_indices, self.vectors, self.rois = (
            labels, series_ids, slice_indices, vectors, rois)

    @classmethod
    def from_rows(cls, rows: Sequence[Any], dim: int) -> "EmbeddingSet":
        n = len(rows)
        vecs = np.empty((n, dim), dtype=np.float32)
        for k, r in enumerate(rows):
            vecs[k] = np.frombuffer(r[4], dtype="<f4")
        return cls(np.fromiter((r[0] for r in rows), np.int64, n), np.fromiter((r[1] for r in rows), np.int64, n),
                   np.fromiter((r[2] for r in rows), np.int64, n), vecs, [r[3] for r in rows])

    def __len__(self) -> int:
        return len(self.labels)


class StoreEmbeddingSource:
    """A model's live embeddings for :class:`casebook.index.vector_index.VectorIndex` (structural protocol)."""

    def __init__(self, store: CaseStore, model_id: int) -> None:
        self.store, self.model_id = store, model_id

    def _base(self, *cols: Any) -> Any:
        return (select(*cols).join(Series, Series.id == Embedding.series_id).join(Study, Study.id == Series.study_id)
                .where(*self.store._live_embedding_cond(self.model_id), Embedding.roi == ""))

    def digest(self) -> Any:
        from ..vector_index import LabelDigest  # same package: index

        with self.store._read() as s:
            n, total, mix = s.execute(self._base(
                func.count(Embedding.label), func.coalesce(func.sum(Embedding.label), 0),
                func.coalesce(func.sum(((Embedding.label % 2147483647) * 1103515245) % 2147483647), 0))).one()
        return LabelDigest(int(n), int(total), int(mix))

    def labels(self) -> np.ndarray:
        with self.store._read() as s:
            return np.asarray(s.scalars(self._base(Embedding.label).order_by(Embedding.label)).all(), dtype=np.int64)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        labs = [int(x) for x in np.asarray(labels).ravel()]
        dim = self.store.get_model(self.model_id).dim
        found: dict[int, bytes] = {}
        with self.store._read() as s:
            for chunk in chunks(labs):
                for lab, blob in s.execute(select(Embedding.label, Embedding.vector)
                                           .where(Embedding.model_id == self.model_id, Embedding.label.in_(chunk))):
                    found[lab] = blob
        missing = [l for l in labs if l not in found]
        if missing:  # replaced since the caller read its labels: the retired copy keeps them in step
            with self.store._read() as s:
                for chunk in chunks(missing):
                    for lab, blob in s.execute(select(RetiredEmbedding.label, RetiredEmbedding.vector)
                                               .where(RetiredEmbedding.model_id == self.model_id,
                                                      RetiredEmbedding.label.in_(chunk))):
                        found[lab] = blob
            missing = [l for l in labs if l not in found]
        if missing:
            raise UnknownItemError(f"{len(missing)} labels have no stored embedding (e.g. {missing[0]})")
        out = np.empty((len(labs), dim), dtype=np.float32)
        for k, lab in enumerate(labs):
            out[k] = np.frombuffer(found[lab], dtype="<f4")
        return out

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        dim = self.store.get_model(self.model_id).dim
        last = -1
        while True:
            with self.store._read() as s:
                rows = s.execute(self._base(Embedding.label, Embedding.vector).where(Embedding.label > last)
                                 .order_by(Embedding.label).limit(int(batch_size))).all()
            if not rows:
                return
            labels = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.empty((len(rows), dim), dtype=np.float32)
            for k, r in enumerate(rows):
                vecs[k] = np.frombuffer(r[1], dtype="<f4")
            last = int(labels[-1])
            yield labels, vecs
