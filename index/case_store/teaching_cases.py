"""Teaching cases: the case fields, key images, full-text search over cases, quiz answers.

A case belongs to one study (tags and collections are the study's, so ``casebook ls --teaching``
and the search filters see the same cases); the study's ``is_teaching`` and ``difficulty`` are
kept in step with the case.
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

from sqlalchemy import Integer, cast, delete, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from ..errors import QueryError, UnknownItemError
from .models import (Collection, CollectionStudy, Instance, QuizAnswer, Series, Study, StudyTag, Tag, TeachingCase,
                     TeachingKeyImage, utcnow)
from .queries import fts_query
from .records import TEACHING_DIFFICULTIES
from .teaching_records import CERTAINTIES, KeyImage, QuizScore, TeachingFilter
from .teaching_records import TeachingCase as CaseRecord


def _lines(values: Iterable[str]) -> str:
    return "\n".join(v.strip() for v in values if v and v.strip())


def _split(value: str) -> list[str]:
    return [v for v in (x.strip() for x in (value or "").splitlines()) if v]


def _check(case: CaseRecord) -> None:
    if case.certainty not in CERTAINTIES:
        raise QueryError(f"certainty must be one of {', '.join(c for c in CERTAINTIES if c)}, not {case.certainty!r}")
    if case.difficulty not in TEACHING_DIFFICULTIES:
        raise QueryError(f"difficulty must be one of {', '.join(d for d in TEACHING_DIFFICULTIES if d)}, "
                         f"not {case.difficulty!r}")
    for uid, rects in case.masks.items():
        for r in rects:
            if len(r) != 4 or not all(isinstance(v, int) and v >= 0 for v in r) or r[0] >= r[2] or r[1] >= r[3]:
                raise QueryError(f"mask {r!r} of series {uid!r} must be [row0, col0, row1, col1] "
                                 "with row0 < row1 and col0 < col1")


class TeachingCasesMixin:
    """Teaching cases and quiz answers. Mixed into :class:`~.store.CaseStore`."""

    # -- cases --------------------------------------------------------------------------------
    def create_teaching_case(self, case: CaseRecord) -> int:
        """Store a new case for ``case.study_id`` (one case per study); returns its id."""
        _check(case)
        self.get_study(case.study_id)
        existing = self.teaching_case_for_study(case.study_id)
        if existing is not None:
            raise QueryError(f"study {case.study_id} already is teaching case {existing}")
        with self._write() as s:
            row = TeachingCase(study_id=int(case.study_id))
            s.add(row)
            self._fill_case(s, row, case)
            s.flush()
            for ki in case.key_images:
                self._add_key_image(s, row.id, ki)
            case_id = row.id
        self._sync_case_links(case)
        return case_id

    def update_teaching_case(self, case: CaseRecord) -> None:
        """Replace the fields, tags and collections of case ``case.id`` (key images: see add/remove)."""
        if case.id is None:
            raise QueryError("a case to update needs its id")
        _check(case)
        with self._write() as s:
            row = s.get(TeachingCase, int(case.id))
            if row is None:
                raise UnknownItemError(f"teaching case {case.id} is not in the library")
            case.study_id = row.study_id
            self._fill_case(s, row, case)
        self._sync_case_links(case)

    def _fill_case(self, s: Session, row: TeachingCase, case: CaseRecord) -> None:
        for name in ("title", "history", "findings", "diagnosis", "discussion", "certainty", "author", "source"):
            setattr(row, name, (getattr(case, name) or "").strip())
        row.differential, row.systems = _lines(case.differential), _lines(case.systems)
        row.masks, row.excluded = json.dumps(case.masks, sort_keys=True), json.dumps(sorted(set(case.excluded)))
        row.updated = utcnow()
        st = s.get(Study, row.study_id)
        assert st is not None
        st.is_teaching, st.difficulty = True, case.difficulty
        if case.source == "imported":
            st.deid_status = "deidentified"

    def _sync_case_links(self, case: CaseRecord) -> None:
        have = set(self.get_study(case.study_id).tags)
        for t in set(case.tags) - have:
            self.add_tag(case.study_id, t)
        for t in have - set(case.tags):
            self.remove_tag(case.study_id, t)
        now = set(self._study_collections([case.study_id]).get(case.study_id, []))
        for c in [c for c in case.collections if c not in now]:
            self.add_to_collection(c, case.study_id)
        for c in now - set(case.collections):
            self.remove_from_collection(c, case.study_id)

    def delete_teaching_case(self, case_id: int) -> bool:
        """Forget a case (its study, images, tags and collections stay)."""
        with self._write() as s:
            row = s.get(TeachingCase, int(case_id))
            if row is None:
                return False
            st = s.get(Study, row.study_id)
            if st is not None:
                st.is_teaching = False
            s.delete(row)
            return True

    def teaching_case_for_study(self, study_id: int) -> int | None:
        with self._read() as s:
            return s.scalar(select(TeachingCase.id).where(TeachingCase.study_id == int(study_id)))

    def get_teaching_case(self, case_id: int) -> CaseRecord:
        got = self._case_records([int(case_id)])
        if not got:
            raise UnknownItemError(f"teaching case {case_id} is not in the library")
        return got[0]

    def _study_collections(self, study_ids: Sequence[int]) -> dict[int, list[str]]:
        with self._read() as s:
            rows = s.execute(select(CollectionStudy.study_id, Collection.name)
                             .join(Collection, Collection.id == CollectionStudy.collection_id)
                             .where(CollectionStudy.study_id.in_([int(i) for i in study_ids]))
                             .order_by(Collection.name)).all()
        out: dict[int, list[str]] = {}
        for sid, name in rows:
            out.setdefault(sid, []).append(name)
        return out

    def _case_records(self, case_ids: Sequence[int] | None = None) -> list[CaseRecord]:
        with self._read() as s:
            q = select(TeachingCase, Study).join(Study, Study.id == TeachingCase.study_id).where(
                Study.deleted.is_(False))
            if case_ids is not None:
                q = q.where(TeachingCase.id.in_(list(case_ids)))
            rows = s.execute(q.order_by(TeachingCase.id)).all()
            study_ids = [st.id for _, st in rows]
            tags: dict[int, list[str]] = {}
            for sid, name in s.execute(select(StudyTag.study_id, Tag.name).join(Tag, Tag.id == StudyTag.tag_id)
                                       .where(StudyTag.study_id.in_(study_ids)).order_by(Tag.name)).all():
                tags.setdefault(sid, []).append(name)
            mods: dict[int, list[str]] = {}
            for sid, mod in s.execute(select(Series.study_id, Series.modality).distinct()
                                      .where(Series.study_id.in_(study_ids), Series.deleted.is_(False),
                                             Series.state == "complete").order_by(Series.modality)).all():
                if mod:
                    mods.setdefault(sid, []).append(mod)
            kis: dict[int, list[KeyImage]] = {}
            for ki, uid, mod in s.execute(select(TeachingKeyImage, Series.series_uid, Series.modality)
                                          .join(Series, Series.id == TeachingKeyImage.series_id)
                                          .where(TeachingKeyImage.case_id.in_([c.id for c, _ in rows]))
                                          .order_by(TeachingKeyImage.position, TeachingKeyImage.id)).all():
                kis.setdefault(ki.case_id, []).append(KeyImage(
                    series_id=ki.series_id, slice_index=ki.slice_index, sop_instance_uid=ki.sop_instance_uid,
                    frame_index=ki.frame_index, orientation=ki.orientation, view_index=ki.view_index,
                    window_center=ki.window_center,
                    window_width=ki.window_width, annotations=json.loads(ki.annotations or "[]"),
                    caption=ki.caption, id=ki.id, position=ki.position, series_uid=uid, modality=mod))
        cols = self._study_collections(study_ids)
        return [CaseRecord(study_id=st.id, title=c.title, history=c.history, findings=c.findings,
                           diagnosis=c.diagnosis, differential=_split(c.differential), discussion=c.discussion,
                           certainty=c.certainty, systems=_split(c.systems), difficulty=st.difficulty,
                           author=c.author, tags=tags.get(st.id, []), collections=cols.get(st.id, []),
                           key_images=kis.get(c.id, []), masks=json.loads(c.masks or "{}"),
                           excluded=json.loads(c.excluded or "[]"), source=c.source, id=c.id,
                           study_uid=st.study_uid, modalities=mods.get(st.id, []), created=c.created,
                           updated=c.updated) for c, st in rows]

    # -- key images ---------------------------------------------------------------------------
    def add_key_image(self, case_id: int, ki: KeyImage) -> int:
        """Add a key image (appended last); the SOP Instance UID is looked up when not given."""
        with self._write() as s:
            if s.get(TeachingCase, int(case_id)) is None:
                raise UnknownItemError(f"teaching case {case_id} is not in the library")
            return self._add_key_image(s, int(case_id), ki)

    def _add_key_image(self, s: Session, case_id: int, ki: KeyImage) -> int:
        se = s.get(Series, int(ki.series_id))
        row = s.get(TeachingCase, case_id)
        if se is None or row is None or se.study_id != row.study_id:
            raise QueryError(f"series {ki.series_id} is not a series of the case's study")
        if not 0 <= int(ki.slice_index) < max(se.slice_count, 1):
            raise QueryError(f"slice {ki.slice_index} is outside series {ki.series_id} "
                             f"({se.slice_count} slices)")
        sop, frame = ki.sop_instance_uid, ki.frame_index
        if not sop:
            inst = s.execute(select(Instance.sop_instance_uid, Instance.frame_index)
                             .where(Instance.series_id == se.id, Instance.slice_index == int(ki.slice_index))).first()
            if inst is not None:
                sop, frame = inst[0], inst[1]
        pos = s.scalar(select(func.coalesce(func.max(TeachingKeyImage.position), -1))
                       .where(TeachingKeyImage.case_id == case_id)) + 1
        k = TeachingKeyImage(case_id=case_id, position=pos, series_id=se.id, sop_instance_uid=sop,
                             frame_index=int(frame), slice_index=int(ki.slice_index), orientation=ki.orientation,
                             view_index=None if ki.view_index is None else int(ki.view_index),
                             window_center=float(ki.window_center), window_width=float(ki.window_width),
                             annotations=json.dumps(ki.annotations), caption=ki.caption)
        s.add(k)
        s.flush()
        row.updated = utcnow()
        return k.id

    def remove_key_image(self, key_image_id: int) -> bool:
        with self._write() as s:
            return bool(s.execute(delete(TeachingKeyImage).where(TeachingKeyImage.id == int(key_image_id))).rowcount)

    # -- finding cases ------------------------------------------------------------------------
    def search_teaching_text(self, query: str, limit: int = 200) -> list[tuple[int, float, str]]:
        """(case id, score (higher is better), snippet) by FTS5 over the case fields."""
        q = fts_query(query)
        if not q:
            return []
        sql = text("SELECT f.rowid, bm25(teaching_fts), snippet(teaching_fts, -1, '[', ']', '…', 10) "
                   "FROM teaching_fts f JOIN teaching_case c ON c.id = f.rowid JOIN study st ON st.id = c.study_id "
                   "WHERE teaching_fts MATCH :q AND st.deleted = 0 ORDER BY bm25(teaching_fts) LIMIT :n")
        try:
            with self._read() as s:
                rows = s.execute(sql, {"q": q, "n": int(limit)}).all()
        except Exception as exc:  # a malformed query is the user's to fix
            raise QueryError(f"text query {query!r} is not valid: {exc}") from exc
        return [(int(r[0]), -float(r[1]), str(r[2])) for r in rows]

    def list_teaching_cases(self, f: TeachingFilter | None = None) -> list[CaseRecord]:
        """Cases matching ``f``; with a text query, best match first."""
        f = f or TeachingFilter()
        order: list[int] | None = None
        ids: set[int] | None = set(f.case_ids) if f.case_ids else None
        if f.text and f.text.strip():
            order = [cid for cid, _, _ in self.search_teaching_text(f.text, limit=10_000)]
            ids = set(order) if ids is None else ids & set(order)
        if f.collection:
            col_studies = set(self.collection_studies(f.collection))
        cases = self._case_records(sorted(ids) if ids is not None else None)
        out = []
        for c in cases:
            if f.systems and not {x.lower() for x in f.systems} & {x.lower() for x in c.systems}:
                continue
            if f.modalities and not {m.upper() for m in f.modalities} & set(c.modalities):
                continue
            if f.tags and not {t.lower() for t in f.tags} <= {t.lower() for t in c.tags}:
                continue
            if f.certainty and c.certainty != f.certainty:
                continue
            if f.difficulty and c.difficulty != f.difficulty:
                continue
            if f.author and f.author.lower() not in c.author.lower():
                continue
            if f.collection and c.study_id not in col_studies:
                continue
            out.append(c)
        if order is not None:
            rank = {cid: i for i, cid in enumerate(order)}
            out.sort(key=lambda c: rank.get(c.id or 0, 0))
        elif f.collection:
            pos = {sid: i for i, sid in enumerate(self.collection_studies(f.collection))}
            out.sort(key=lambda c: pos.get(c.study_id, 0))
        return out

    def teaching_values(self) -> dict[str, list[str]]:
        """Values present for each filter (systems, modalities, tags, authors): the view's choices."""
        cases = self._case_records()
        def uniq(vals: Iterable[str]) -> list[str]:
            return sorted({v for v in vals if v}, key=str.lower)
        return {"systems": uniq(x for c in cases for x in c.systems),
                "modalities": uniq(x for c in cases for x in c.modalities),
                "tags": uniq(x for c in cases for x in c.tags),
                "authors": uniq(c.author for c in cases),
                "collections": uniq(x for c in cases for x in c.collections)}

    def teaching_case_for_series(self, series_ids: Sequence[int]) -> dict[int, int]:
        """series id -> case id, for series of teaching-case studies (search results to cases)."""
        with self._read() as s:
            rows = s.execute(select(Series.id, TeachingCase.id).join(TeachingCase, TeachingCase.study_id == Series.study_id)
                             .where(Series.id.in_([int(i) for i in series_ids]))).all()
        return {int(a): int(b) for a, b in rows}

    def study_id_for_uid(self, study_uid: str) -> int | None:
        """The (non-deleted) study with this Study Instance UID (an import finds its cases)."""
        with self._read() as s:
            return s.scalar(select(Study.id).where(Study.study_uid == study_uid, Study.deleted.is_(False)))

    def locate_instance(self, sop_instance_uid: str, frame_index: int = -1) -> tuple[int, int] | None:
        """(series id, slice index) of a stored image by SOP Instance UID (and frame)."""
        with self._read() as s:
            row = s.execute(select(Instance.series_id, Instance.slice_index)
                            .join(Series, Series.id == Instance.series_id)
                            .where(Instance.sop_instance_uid == sop_instance_uid,
                                   Instance.frame_index == int(frame_index), Series.deleted.is_(False))).first()
        return (int(row[0]), int(row[1])) if row else None

    # -- quiz ---------------------------------------------------------------------------------
    def record_quiz_answer(self, learner: str, collection: str, case_id: int, *, mode: str, answer: str,
                           correct: bool) -> None:
        if not learner.strip():
            raise QueryError("a quiz answer needs the learner's name")
        if mode not in ("free", "choice"):
            raise QueryError(f"quiz mode must be free or choice, not {mode!r}")
        try:
            with self._write() as s:
                s.add(QuizAnswer(learner=learner.strip(), collection=collection.strip(), case_id=int(case_id),
                                 mode=mode, answer=answer, correct=bool(correct)))
        except SQLAlchemyError as exc:
            raise QueryError(f"teaching case {case_id} is not in the library") from exc

    def quiz_scores(self, learner: str | None = None, collection: str | None = None) -> list[QuizScore]:
        """Score per learner and collection: the latest answer to each case counts."""
        with self._read() as s:
            qa = aliased(QuizAnswer)
            latest = (select(func.max(qa.id)).group_by(qa.learner, qa.collection, qa.case_id)
                      .correlate(None).scalar_subquery())
            q = select(QuizAnswer.learner, QuizAnswer.collection, func.count(QuizAnswer.id),
                       func.sum(cast(QuizAnswer.correct, Integer)), func.max(QuizAnswer.created)).where(QuizAnswer.id.in_(latest))
            if learner:
                q = q.where(QuizAnswer.learner == learner.strip())
            if collection:
                q = q.where(QuizAnswer.collection == collection.strip())
            rows = s.execute(q.group_by(QuizAnswer.learner, QuizAnswer.collection)
                             .order_by(QuizAnswer.collection, QuizAnswer.learner)).all()
        return [QuizScore(r[0], r[1], int(r[2]), int(r[3] or 0), r[4]) for r in rows]
