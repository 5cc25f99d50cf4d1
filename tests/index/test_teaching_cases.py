"""Teaching cases in a real SQLite case store: fields, key images, FTS5, filters, completeness, quiz scores."""
from __future__ import annotations

from pathlib import Path

import pytest

from casebook.index.case_store import CaseStore, InstanceRecord, StackRecord
from casebook.index.case_store.teaching_records import KeyImage, TeachingCase, TeachingFilter
from casebook.index.errors import QueryError, UnknownItemError


def _stack(study: str, modality: str, body_part: str = "", n: int = 4) -> StackRecord:
    key = f"{study}.1"
    return StackRecord(key=key, series_uid=key, study_uid=study, patient_id=f"P{study}", study_date="20240102",
                       modality=modality, body_part=body_part,
                       instances=[InstanceRecord(path=f"/d/{key}/{i}", sop_instance_uid=f"{key}.{i}",
                                                 position=(0.0, 0.0, float(i)), orientation=(1, 0, 0, 0, 1, 0))
                                  for i in range(n)])


@pytest.fixture
def store(tmp_path: Path):
    s = CaseStore.open(tmp_path / "t.sqlite")
    for study, mod, part in (("1.1", "MR", "HEAD"), ("1.2", "CT", "CHEST"), ("1.3", "CT", "ABDOMEN")):
        s.add_stack(_stack(study, mod, part))
    yield s
    s.close()


def _ids(store: CaseStore) -> dict[str, tuple[int, int]]:
    out = {}
    for se in store.list_series():
        out[se.series_uid.rsplit(".", 1)[0]] = (se.study_id, se.id)
    return out


def test_a_case_keeps_its_fields_key_images_tags_and_collections(store: CaseStore) -> None:
    study, series = _ids(store)["1.1"]
    cid = store.create_teaching_case(TeachingCase(
        study_id=study, title="Glioblastoma", history="Seizures", findings="Ring-enhancing mass",
        diagnosis="glioblastoma", differential=["metastasis", "abscess"], discussion="Butterfly pattern",
        certainty="almost certain", systems=["Neuroradiology"], difficulty="intermediate", author="Dr Reader",
        tags=["neuro", "tumour"], collections=["Brain tumours", "Friday quiz"],
        key_images=[KeyImage(series_id=series, slice_index=2, window_center=50, window_width=120,
                             annotations=[{"kind": "marker", "p0": [10, 12], "p1": [10, 12], "label": "mass"}])]))
    c = store.get_teaching_case(cid)
    assert (c.title, c.certainty, c.difficulty, c.author) == ("Glioblastoma", "almost certain", "intermediate",
                                                               "Dr Reader")
    assert c.differential == ["metastasis", "abscess"] and c.systems == ["Neuroradiology"]
    assert c.tags == ["neuro", "tumour"] and c.collections == ["Brain tumours", "Friday quiz"]
    [ki] = c.key_images
    assert (ki.slice_index, ki.sop_instance_uid, ki.window_width, ki.modality) == (2, "1.1.1.2", 120, "MR")
    assert ki.annotations[0]["label"] == "mass"
    assert c.missing() == [] and c.completeness() == 1.0
    # the study is flagged so `ls --teaching` and the search filters see the case
    assert store.get_study(study).is_teaching and store.get_study(study).difficulty == "intermediate"
    assert store.teaching_case_for_study(study) == cid
    # one case per study
    with pytest.raises(QueryError, match="already is teaching case"):
        store.create_teaching_case(TeachingCase(study_id=study))


def test_editing_replaces_fields_and_links_and_completeness_names_what_is_missing(store: CaseStore) -> None:
    study, series = _ids(store)["1.2"]
    cid = store.create_teaching_case(TeachingCase(study_id=study, title="Nodule", tags=["chest"],
                                                  collections=["A"]))
    c = store.get_teaching_case(cid)
    assert "diagnosis" in c.missing() and "key images" in c.missing() and "title" not in c.missing()
    c.diagnosis, c.tags, c.collections = "hamartoma", ["lung"], ["B"]
    store.update_teaching_case(c)
    kid = store.add_key_image(cid, KeyImage(series_id=series, slice_index=0))
    c = store.get_teaching_case(cid)
    assert c.diagnosis == "hamartoma" and c.tags == ["lung"] and c.collections == ["B"]
    assert "key images" not in c.missing() and "diagnosis" not in c.missing()
    assert store.remove_key_image(kid) and store.get_teaching_case(cid).key_images == []
    with pytest.raises(QueryError, match="outside series"):
        store.add_key_image(cid, KeyImage(series_id=series, slice_index=99))
    other_series = _ids(store)["1.1"][1]
    with pytest.raises(QueryError, match="not a series of the case"):
        store.add_key_image(cid, KeyImage(series_id=other_series, slice_index=0))
    with pytest.raises(QueryError, match="certainty"):
        c.certainty = "sure"
        store.update_teaching_case(c)
    with pytest.raises(QueryError, match="mask"):
        c.certainty, c.masks = "", {"1.2.1": [[5, 5, 1, 1]]}
        store.update_teaching_case(c)
    assert store.delete_teaching_case(cid) and not store.get_study(study).is_teaching
    with pytest.raises(UnknownItemError):
        store.get_teaching_case(cid)


def test_full_text_search_and_filters(store: CaseStore) -> None:
    ids = _ids(store)
    a = store.create_teaching_case(TeachingCase(study_id=ids["1.1"][0], title="Glioblastoma",
                                                discussion="Butterfly glioma crossing the corpus callosum",
                                                certainty="certain", systems=["Neuroradiology"], author="Ada Lovelace",
                                                tags=["neuro"], difficulty="advanced", collections=["Q"]))
    b = store.create_teaching_case(TeachingCase(study_id=ids["1.2"][0], title="Pulmonary embolism",
                                                findings="Filling defect in the right lower lobe artery",
                                                certainty="probable", systems=["Chest"], author="Alan Turing",
                                                tags=["chest", "emergency"], collections=["Q"]))
    c = store.create_teaching_case(TeachingCase(study_id=ids["1.3"][0], title="Appendicitis",
                                                history="Right iliac fossa pain", systems=["Gastrointestinal"],
                                                tags=["emergency"]))

    def got(**kw) -> list[int]:
        return [x.id for x in store.list_teaching_cases(TeachingFilter(**kw))]

    assert got(text="callosum") == [a]
    assert got(text="filling defect") == [b]
    assert set(got(text="right")) == {b, c}
    assert got(text="glio*") == [a]
    assert got(systems=("chest",)) == [b]
    assert got(modalities=("CT",)) == [b, c]
    assert got(tags=("emergency",)) == [b, c] and got(tags=("emergency", "chest")) == [b]
    assert got(certainty="probable") == [b] and got(difficulty="advanced") == [a]
    assert got(author="turing") == [b]
    assert got(collection="Q") == [a, b]
    assert got(text="right", tags=("chest",)) == [b]
    assert got(text="nothingmatches") == []
    hits = store.search_teaching_text("callosum")
    assert hits[0][0] == a and "[callosum]" in hits[0][2]
    # the FTS index follows edits (triggers)
    case = store.get_teaching_case(c)
    case.discussion = "Appendicolith seen"
    store.update_teaching_case(case)
    assert got(text="appendicolith") == [c]
    values = store.teaching_values()
    assert values["systems"] == ["Chest", "Gastrointestinal", "Neuroradiology"] and "CT" in values["modalities"]
    assert store.teaching_case_for_series([ids["1.2"][1]]) == {ids["1.2"][1]: b}


def test_quiz_scores_count_the_latest_answer_per_case(store: CaseStore) -> None:
    ids = _ids(store)
    a = store.create_teaching_case(TeachingCase(study_id=ids["1.1"][0], diagnosis="glioblastoma"))
    b = store.create_teaching_case(TeachingCase(study_id=ids["1.2"][0], diagnosis="embolism"))
    store.record_quiz_answer("ana", "Q", a, mode="free", answer="glioma", correct=False)
    store.record_quiz_answer("ana", "Q", a, mode="free", answer="glioblastoma", correct=True)
    store.record_quiz_answer("ana", "Q", b, mode="choice", answer="embolism", correct=True)
    store.record_quiz_answer("ben", "Q", b, mode="choice", answer="pneumonia", correct=False)
    store.record_quiz_answer("ana", "R", b, mode="free", answer="x", correct=False)
    scores = {(s.learner, s.collection): (s.answered, s.correct) for s in store.quiz_scores()}
    assert scores == {("ana", "Q"): (2, 2), ("ben", "Q"): (1, 0), ("ana", "R"): (1, 0)}
    [s] = store.quiz_scores("ana", "Q")
    assert s.percent == 100.0
    with pytest.raises(QueryError, match="learner"):
        store.record_quiz_answer(" ", "Q", a, mode="free", answer="", correct=False)
    with pytest.raises(QueryError, match="mode"):
        store.record_quiz_answer("ana", "Q", a, mode="oral", answer="", correct=False)
