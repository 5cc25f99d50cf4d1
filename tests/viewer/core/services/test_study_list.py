"""The study browser's list, built from a real case store: studies with their series, the search
over every column the browser shows, the count that follows it, and what a study row opens."""
from __future__ import annotations

import pytest

from casebook.viewer.core.services.study_list import build_study_list, display_name, search_terms


@pytest.fixture(scope="module")
def store(tmp_path_factory, need_shared):
    from casebook.index.case_store.store import CaseStore
    from casebook.viewer.core.services.ingest import ingest

    root = tmp_path_factory.mktemp("study-list")
    store = CaseStore.open(root / "casebook.sqlite")
    ingest([need_shared("dicom", "dcm_qa_ct", "In"), need_shared("temporal", "covid19_ny_sbu", "data-sample")], store)
    yield store
    store.close()


def test_studies_hold_their_series_and_the_stores_fields(store):
    sl = build_study_list(store)
    studies = store.list_studies(limit=None)
    assert [s.study_id for s in sl.studies] == [s.id for s in studies]  # newest first, like the store
    assert sl.series_total == len(store.list_series())
    for entry, summary in zip(sl.studies, studies):
        assert entry.series_count == summary.series_count
        assert entry.patient_id == summary.patient_id
        assert entry.patient_name == display_name(summary.patient_name)
        assert entry.modalities == ", ".join(summary.modalities)
        assert {s.series_id for s in entry.series} == {s.id for s in store.list_series(study_id=summary.id)}
        main = entry.main_series
        assert main is not None and main.images == max(s.images for s in entry.series if not s.is_localizer)


def test_search_finds_tags_names_ids_and_dates_and_the_count_follows(store):
    studies = store.list_studies(limit=None)
    tagged = studies[:2]
    for st in tagged:
        store.add_tag(st.id, "follow-up-grew")
    try:
        sl = build_study_list(store)
        found = sl.filter("follow-up-grew")
        assert sorted(s.study_id for s in found) == sorted(s.id for s in tagged)
        assert sl.count_text(found) == (f"2 of {len(studies)} studies "
                                        f"({sum(s.series_count for s in tagged)} series)")
        assert sl.count_text(sl.filter("")) == f"{len(studies)} studies ({sl.series_total} series)"
        named = next(s for s in studies if s.patient_name)
        family = named.patient_name.split("^")[0]
        assert named.id in {s.study_id for s in sl.filter(family.lower())}  # by name, any case
        assert named.id in {s.study_id for s in sl.filter(display_name(named.patient_name))}  # as shown
        with_id = next(s for s in studies if s.patient_id)
        assert with_id.id in {s.study_id for s in sl.filter(with_id.patient_id)}
        dated = next(s for s in studies if s.study_date)
        assert dated.id in {s.study_id for s in sl.filter(dated.study_date.isoformat())}
        # every term must match: the tag and one tagged study's patient ID find that patient's tagged studies
        pid = tagged[0].patient_id
        assert sorted(s.study_id for s in sl.filter(f"follow-up-grew {pid}")) == sorted(
            s.id for s in tagged if pid.lower() in (s.patient_id.lower(), s.patient_name.lower()))
        assert sl.filter("no-such-thing-anywhere") == []
        assert sl.count_text([]) == f"0 of {len(studies)} studies (0 series)"
    finally:
        for st in tagged:
            store.remove_tag(st.id, "follow-up-grew")


def test_display_name_and_terms():
    assert display_name("DOE^JANE^^DR") == "DOE, JANE DR"
    assert display_name("PLASTIC") == "PLASTIC"
    assert display_name("^^") == ""
    assert display_name("YAMADA^TARO=山田^太郎") == "YAMADA, TARO"
    assert search_terms('CT "follow up"  grew') == ["ct", "follow up", "grew"]
    assert search_terms('unclosed "quote') == ["unclosed", "quote"]
