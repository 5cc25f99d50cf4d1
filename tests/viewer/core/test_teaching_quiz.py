"""The quiz service on a real case store: unknowns, free-text marking, distractors, scores."""
from __future__ import annotations

from pathlib import Path

import pytest

from casebook.index.case_store import CaseStore, InstanceRecord, StackRecord
from casebook.index.case_store.teaching_records import TeachingCase
from casebook.viewer.core.services.teaching.quiz import Neighbour, QuizError, QuizSession, is_correct, same_diagnosis

DIAGNOSES = ("Glioblastoma", "Pulmonary embolism", "Acute appendicitis", "Meningioma", "Renal cell carcinoma")


@pytest.fixture
def store(tmp_path: Path):
    s = CaseStore.open(tmp_path / "q.sqlite")
    for n, dx in enumerate(DIAGNOSES):
        key = f"2.{n}.1"
        s.add_stack(StackRecord(key=key, series_uid=key, study_uid=f"2.{n}", patient_id=f"Q{n}", modality="CT",
                                instances=[InstanceRecord(path=f"/q/{n}", sop_instance_uid=f"{key}.1")]))
    for n, st in enumerate(sorted(s.list_studies(), key=lambda x: x.study_uid)):
        s.create_teaching_case(TeachingCase(study_id=st.id, title=DIAGNOSES[n], diagnosis=DIAGNOSES[n],
                                            history=f"history {n}", collections=["Q"] if n < 3 else []))
    yield s
    s.close()


def test_free_text_marking_is_forgiving_but_not_loose() -> None:
    case = TeachingCase(study_id=1, title="Glioblastoma", diagnosis="Glioblastoma multiforme")
    assert is_correct("glioblastoma multiforme", case) and is_correct("Glioblastoma", case)
    assert is_correct("gliobastoma multiforme", case)  # a typo
    assert not is_correct("meningioma", case) and not is_correct("", case)
    assert same_diagnosis("Pulmonary embolism", "embolism, pulmonary")
    assert not same_diagnosis("Pulmonary embolism", "Pulmonary oedema")


def test_a_free_text_quiz_records_each_answer_and_scores_the_learner(store: CaseStore) -> None:
    quiz = QuizSession(store, "Q", "ana", mode="free")
    assert len(quiz) == 3
    q = quiz.question()
    assert q.number == 1 and q.choices == [] and q.history.startswith("history")
    assert not hasattr(q, "diagnosis")  # an unknown carries no diagnosis
    r1 = quiz.answer(quiz.cases[0].diagnosis.lower())
    r2 = quiz.answer("no idea")
    r3 = quiz.answer(quiz.cases[2].diagnosis)
    assert (r1.correct, r2.correct, r3.correct) == (True, False, True) and quiz.finished
    assert r2.case.diagnosis == quiz.cases[1].diagnosis  # the reveal names the diagnosis
    s = quiz.score()
    assert (s.learner, s.collection, s.answered, s.correct) == ("ana", "Q", 3, 2)
    with pytest.raises(QuizError, match="finished"):
        quiz.question()


def test_choices_take_neighbours_with_other_diagnoses_first(store: CaseStore) -> None:
    def neighbours(case: TeachingCase, k: int) -> list[Neighbour]:
        # the nearest one shares the diagnosis (must not become a distractor), then two others
        return [Neighbour(1, 0.9, case.diagnosis), Neighbour(2, 0.8, "Cerebral abscess"),
                Neighbour(3, 0.7, "Lymphoma"), Neighbour(4, 0.6, "cerebral  ABSCESS")]

    quiz = QuizSession(store, "Q", "ben", mode="choice", choices=4, neighbours=neighbours, seed=1)
    q = quiz.question()
    truth = quiz.cases[0].diagnosis
    assert truth in q.choices and "Cerebral abscess" in q.choices and "Lymphoma" in q.choices
    assert len(q.choices) == 4 and len({c.lower() for c in q.choices}) == 4
    # the fourth comes from another teaching case (the neighbours ran out of other diagnoses)
    assert [c for c in q.choices if c in DIAGNOSES and c != truth]
    r = quiz.answer("Lymphoma")
    assert not r.correct and [n.diagnosis for n in r.similar][:2] == [truth, "Cerebral abscess"]
    with pytest.raises(QuizError, match="no teaching case"):
        QuizSession(store, "empty", "ben")
    with pytest.raises(QuizError, match="learner"):
        QuizSession(store, "Q", " ")
