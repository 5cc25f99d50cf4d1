"""Teaching files: tags, ordered collections with notes, and a study's teaching fields.

Radiologists curate teaching cases by tag and collection; these feed the filters in
:mod:`.queries` and the study summaries in :mod:`.listing`.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session

from ..errors import QueryError, UnknownItemError
from .models import Collection, CollectionStudy, Study, StudyTag, Tag
from .records import DEID_STATUSES, TEACHING_DIFFICULTIES, TeachingInfo


def _named(s: Session, model: type[Any], name: str, **fields: Any) -> Any:
    """The ``model`` row called ``name``, created (and flushed, so it has an id) when missing."""
    row = s.scalar(select(model).where(model.name == name))
    if row is None:
        row = model(name=name, **fields)
        s.add(row)
        s.flush()
    return row


class TeachingMixin:
    """Tags, collections and teaching fields.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def add_tag(self, study_id: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise QueryError("a tag needs a name")
        self.get_study(study_id)
        with self._write() as s:
            tag = _named(s, Tag, name)
            if s.get(StudyTag, (int(study_id), tag.id)) is None:
                s.add(StudyTag(study_id=int(study_id), tag_id=tag.id))

    def remove_tag(self, study_id: int, name: str) -> bool:
        with self._write() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name.strip()))
            if tag is None:
                return False
            res = s.execute(delete(StudyTag).where(StudyTag.study_id == int(study_id), StudyTag.tag_id == tag.id))
            return bool(res.rowcount)

    def tags(self) -> list[tuple[str, int]]:
        """Every tag with the number of (non-deleted) studies carrying it."""
        with self._read() as s:
            rows = s.execute(select(Tag.name, func.count(Study.id)).outerjoin(StudyTag, StudyTag.tag_id == Tag.id)
                             .outerjoin(Study, and_(Study.id == StudyTag.study_id, Study.deleted.is_(False)))
                             .group_by(Tag.id).order_by(Tag.name)).all()
        return [(r[0], r[1]) for r in rows]

    def add_to_collection(self, collection: str, study_id: int, *, note: str = "", description: str = "") -> None:
        name = collection.strip()
        if not name:
            raise QueryError("a collection needs a name")
        self.get_study(study_id)
        with self._write() as s:
            col = _named(s, Collection, name, description=description)
            link = s.get(CollectionStudy, (col.id, int(study_id)))
            if link is None:
                pos = s.scalar(select(func.coalesce(func.max(CollectionStudy.position), -1))
                               .where(CollectionStudy.collection_id == col.id)) + 1
                s.add(CollectionStudy(collection_id=col.id, study_id=int(study_id), position=pos, note=note))
            elif note:
                link.note = note

    def remove_from_collection(self, collection: str, study_id: int) -> bool:
        with self._write() as s:
            col = s.scalar(select(Collection).where(Collection.name == collection.strip()))
            if col is None:
                return False
            res = s.execute(delete(CollectionStudy).where(CollectionStudy.collection_id == col.id,
                                                          CollectionStudy.study_id == int(study_id)))
            return bool(res.rowcount)

    def collections(self) -> list[tuple[str, str, int]]:
        """(name, description, study count) of every collection."""
        with self._read() as s:
            rows = s.execute(select(Collection.name, Collection.description, func.count(CollectionStudy.study_id))
                             .outerjoin(CollectionStudy, CollectionStudy.collection_id == Collection.id)
                             .group_by(Collection.id).order_by(Collection.name)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def collection_studies(self, collection: str) -> list[int]:
        with self._read() as s:
            return list(s.scalars(select(CollectionStudy.study_id)
                                  .join(Collection, Collection.id == CollectionStudy.collection_id)
                                  .join(Study, Study.id == CollectionStudy.study_id)
                                  .where(Collection.name == collection.strip(), Study.deleted.is_(False))
                                  .order_by(CollectionStudy.position)))

    def set_teaching(self, study_id: int, info: TeachingInfo) -> None:
        if info.difficulty not in TEACHING_DIFFICULTIES:
            raise QueryError(f"difficulty must be one of {', '.join(d for d in TEACHING_DIFFICULTIES if d)}")
        if info.deid_status not in DEID_STATUSES:
            raise QueryError(f"de-identification status must be one of {', '.join(DEID_STATUSES)}")
        self.get_study(study_id)
        with self._write() as s:
            st = s.get(Study, int(study_id))
            assert st is not None
            st.is_teaching, st.teaching_points = info.is_teaching, info.teaching_points
            st.difficulty, st.deid_status = info.difficulty, info.deid_status

    def get_teaching(self, study_id: int) -> TeachingInfo:
        with self._read() as s:
            st = s.get(Study, int(study_id))
            if st is None:
                raise UnknownItemError(f"study {study_id} is not in the library")
            return TeachingInfo(st.is_teaching, st.teaching_points, st.difficulty, st.deid_status)
