"""The case store as a :class:`~.search_types.SearchCatalog`: labels, filters, exclusions,
full-text search and result details, all as SQLite queries of one model's embeddings."""
from __future__ import annotations

import re
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from casebook.index.errors import QueryError

from .search_types import SearchFilters, SeriesInfo


def _case_filter(filters: SearchFilters, **extra: Any) -> Any:
    from casebook.index.case_store.records import CaseFilter

    return CaseFilter(modalities=filters.modalities, body_parts=filters.body_parts, sex=filters.sex,
                      age_min=filters.age_min, age_max=filters.age_max, date_from=filters.date_from,
                      date_to=filters.date_to, tags=filters.tags, collections=filters.collections,
                      diagnosis=filters.diagnosis, teaching_only=filters.teaching_only, **extra)


class StoreCatalog:
    """:class:`SearchCatalog` over a :class:`casebook.index.case_store.store.CaseStore` and one model."""

    def __init__(self, store: Any, model_id: int) -> None:
        self.store = store
        self.model_id = int(model_id)

    def embedding_source(self) -> Any:
        return self.store.embedding_source(self.model_id)

    def close(self) -> None:
        self.store.close()

    def find_series(self, ref: str | int) -> int:
        """A series by store id, stack key or SeriesInstanceUID (the CLI accepts all three)."""
        ref_s = str(ref).strip()
        if ref_s.isdigit():
            return int(self.store.get_series(int(ref_s)).id)  # UnknownItemError is a QueryError
        found = self.store.find_series(ref_s)
        if found is None:
            raise QueryError(f"unknown series {ref_s!r}: no such series in the library (or it was deleted)")
        return int(found.id)

    def resolve_labels(self, labels: np.ndarray) -> Mapping[int, tuple[Hashable, int]]:
        return self.store.resolve_labels(self.model_id, [int(x) for x in labels])

    def series_labels(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, np.ndarray]:
        return self.store.labels_for_series(self.model_id, [int(s) for s in series_ids])

    def series_embeddings(self, series_id: Hashable) -> tuple[np.ndarray, list[int]]:
        self.store.get_series(int(series_id))  # unknown or deleted -> UnknownItemError (a QueryError)
        emb = self.store.get_embeddings(self.model_id, [int(series_id)])
        keep = emb.slice_indices >= 0
        if not keep.any():  # a 3-D model: the whole-series vector is the query
            keep = np.ones(len(emb), bool)
        return emb.labels[keep], [int(i) for i in emb.slice_indices[keep]]

    def series_keys(self, series_id: Hashable) -> tuple[Hashable, Hashable]:
        se = self.store.get_series(int(series_id))
        return se.patient_key, int(se.study_id)

    def labels_matching(self, filters: SearchFilters) -> np.ndarray | None:
        if not filters.restricts():
            return None
        sids = self.store.series_ids_matching(_case_filter(filters))
        if not sids:
            return np.empty(0, np.int64)
        groups = self.store.labels_for_series(self.model_id, sids)
        parts = [v for v in groups.values() if len(v)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def series_to_exclude(self, patient_key: Hashable | None, study_key: Hashable | None,
                          filters: SearchFilters) -> set[Hashable]:
        from casebook.index.case_store.records import CaseFilter

        out: set[Hashable] = set()
        if filters.exclude_same_patient and patient_key is not None:
            out |= set(self.store.series_ids_matching(CaseFilter(patient_key=str(patient_key), include_deleted=True)))
        if filters.exclude_same_patient and study_key is not None:
            # the same patient as the priors list knows it: the same PatientID where one side names no
            # issuer, and manual prior links. Why: a same-ID study without an issuer is the reader's own
            # patient's prior on the priors list, and must not come back as an independent analogue.
            from casebook.index.errors import UnknownItemError

            try:
                others = tuple(int(ps.study.id) for ps in self.store.patient_studies(int(study_key)))
            except UnknownItemError:  # the query's study was removed meanwhile: its key still applies
                others = ()
            if others:
                out |= set(self.store.series_ids_matching(CaseFilter(study_ids=others, include_deleted=True)))
        if filters.exclude_same_study and study_key is not None:
            out |= set(self.store.series_ids_matching(CaseFilter(study_ids=(int(study_key),), include_deleted=True)))
        return out

    def text_search(self, text: str, filters: SearchFilters, limit: int) -> list[tuple[Hashable, str]]:
        from casebook.index.case_store.records import CaseFilter

        hits = self.store.search_text(text, limit=limit)
        if not hits:  # no report has every word: any word, ranked by bm25
            words = re.findall(r"\w+", text, re.UNICODE)
            if not words:
                raise QueryError(f"text query {text!r} has no searchable words")
            hits = self.store.search_text(" OR ".join(f'"{w}"' for w in words), limit=limit, raw=True)
        allowed = set(self.store.series_ids_matching(_case_filter(filters))) if filters.restricts() else None
        out: list[tuple[Hashable, str]] = []
        seen: set[int] = set()
        for h in hits:
            if h.series_id is not None:
                sids = [int(h.series_id)]
            else:  # a study report speaks for the study's (non-localizer) series
                sids = self.store.series_ids_matching(CaseFilter(study_ids=(int(h.study_id),),
                                                                 include_localizers=False))
            for sid in sids:
                if sid in seen or (allowed is not None and sid not in allowed):
                    continue
                seen.add(sid)
                out.append((sid, h.snippet or ""))
        return out[:limit]

    def series_info(self, series_ids: Sequence[Hashable]) -> Mapping[Hashable, SeriesInfo]:
        from casebook.index.case_store.records import CaseFilter
        from casebook.index.errors import UnknownItemError

        series = {}
        for sid in series_ids:
            try:
                series[sid] = self.store.get_series(int(sid))
            except UnknownItemError:
                continue  # deleted between ranking and display: leave it out
        study_ids = tuple(sorted({se.study_id for se in series.values()}))
        studies = {st.id: st for st in self.store.list_studies(CaseFilter(study_ids=study_ids))} if study_ids else {}
        reports: dict[tuple[int, int | None], Any] = {}

        def report(study_id: int, series_id: int | None) -> Any:
            if (study_id, series_id) not in reports:
                reports[(study_id, series_id)] = self.store.get_report(study_id, series_id)
            return reports[(study_id, series_id)]

        out: dict[Hashable, SeriesInfo] = {}
        for sid, se in series.items():
            st = studies.get(se.study_id)
            if st is None:
                continue
            rep = report(se.study_id, se.id) or report(se.study_id, None)
            snippet = (rep.impression or rep.findings or "")[:240] if rep is not None else ""
            out[sid] = SeriesInfo(
                series_id=sid, study_key=se.study_id, patient_key=se.patient_key, modality=se.modality,
                body_part=se.body_part, description=se.description, study_date=se.study_date, sex=st.sex,
                age=st.age_years, diagnosis=(rep.diagnosis if rep is not None and rep.diagnosis else st.diagnosis),
                report_snippet=snippet, has_follow_up=st.follow_up_count > 0, slice_count=se.slice_count,
                finding=rep.finding if rep is not None and rep.diagnosis else "")
        return out

    def diagnoses(self) -> dict[Hashable, str]:
        """Diagnosis per series that has embeddings of this model (for the audit's P@k)."""
        dx = self.store.diagnoses()
        if not dx:
            return {}
        have = self.store.labels_for_series(self.model_id, list(dx))
        return {s: d for s, d in dx.items() if len(have.get(s, ())) > 0}
