"""The case store's report versions, links, labels with provenance, vocabulary, study removal and
the embedding bookkeeping that keeps vectors true to their images (real SQLite files)."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest

from casebook.index.case_store import CaseFilter, CaseStore, InstanceRecord, StackRecord
from casebook.index.case_store.report_records import ReportDocumentIn
from casebook.index.errors import QueryError, UnknownItemError


def stack(key: str, *, study: str, patient: str = "P1", date_: str = "20240305", modality: str = "CT",
          accession: str = "", n: int = 3, mtime: int = 1000) -> StackRecord:
    return StackRecord(key=key, series_uid=key, study_uid=study, patient_id=patient, study_date=date_,
                       modality=modality, accession_number=accession, study_description="CT CHEST",
                       instances=[InstanceRecord(path=f"/d/{key}/{i}.dcm", sop_instance_uid=f"{key}.{i}",
                                                 position=(0.0, 0.0, float(i)), orientation=(1, 0, 0, 0, 1, 0),
                                                 file_size=100 + i, file_mtime_ns=mtime + i) for i in range(n)])


def doc(text: str = "A 9 mm nodule in the right upper lobe.", *, accession: str = "", study_uid: str = "",
        patient_id: str = "", study_date: date | None = None, modality: str = "", status: str = "final",
        observed: datetime | None = None, diagnosis: str = "pulmonary nodule", code: str = "",
        impression: str = "Pulmonary nodule.") -> ReportDocumentIn:
    body = f"{text}|{accession}|{study_uid}|{status}|{observed}|{diagnosis}|{code}|{impression}"
    return ReportDocumentIn(source_kind="hl7", content_sha256=hashlib.sha256(body.encode()).hexdigest(),
                            source_path="/r/a.hl7", accession_number=accession, study_uid=study_uid,
                            patient_id=patient_id, study_date=study_date, modality=modality, status=status,
                            observed=observed, findings=text, impression=impression, diagnosis=diagnosis,
                            diagnosis_code=code, diagnosis_source="coded" if code else "impression")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store migrated once; each test works on its own copy (migrating takes seconds on 2 cores)."""
    path = tmp_path_factory.mktemp("template") / "casebook.sqlite"
    CaseStore.open(path).close()
    return path


@pytest.fixture
def store(tmp_path: Path, empty_store: Path):
    (tmp_path / "lib").mkdir()
    shutil.copy(empty_store, tmp_path / "lib" / "casebook.sqlite")
    s = CaseStore.open(tmp_path / "lib" / "casebook.sqlite")
    s.add_stack(stack("1.1.1", study="1.1", accession="ACC1"))
    s.add_stack(stack("2.1.1", study="2.1", patient="P2", modality="MR"))
    s.add_stack(stack("3.1.1", study="3.1", patient="P3", date_="20240310"))
    yield s
    s.close()


def sid(store: CaseStore, uid: str) -> int:
    return next(st.id for st in store.list_studies() if st.study_uid == uid)


def test_reports_link_by_accession_then_study_uid_then_patient_date_modality(store: CaseStore) -> None:
    a = store.add_report_document(doc(accession="ACC1", study_uid="2.1"))  # accession wins over the UID
    b = store.add_report_document(doc("Normal brain.", study_uid="2.1", diagnosis="normal"))
    c = store.add_report_document(doc("Rib fracture.", patient_id="P3", study_date=date(2024, 3, 10),
                                      modality="CT", diagnosis="rib fracture"))
    wrong_modality = store.add_report_document(doc("x", patient_id="P3", study_date=date(2024, 3, 10),
                                                   modality="MR", diagnosis="x"))
    assert (a.status, a.study_id, a.link_method) == ("new", sid(store, "1.1"), "accession")
    assert (b.study_id, b.link_method) == (sid(store, "2.1"), "study_uid")
    assert (c.study_id, c.link_method) == (sid(store, "3.1"), "patient_date_modality")
    assert wrong_modality.study_id is None
    rep = store.get_report(sid(store, "3.1"))
    assert rep is not None and rep.findings == "Rib fracture." and rep.source == "import"
    assert rep.diagnosis == "rib fracture" and rep.finding == "fracture"  # the vocabulary term
    assert store.report_document_counts() == {"linked": 2, "weak": 1, "unmatched": 1, "history": 0}
    assert [d.id for d in store.report_documents(unmatched=True)] == [wrong_modality.document_id]
    # the text is searchable at once (FTS5 over the study's report row)
    assert [h.study_id for h in store.search_text("rib fracture")] == [sid(store, "3.1")]


def test_reimport_is_idempotent_and_an_amendment_replaces_with_history(store: CaseStore) -> None:
    first = doc(accession="ACC1", observed=datetime(2024, 3, 5, 14, 30))
    assert store.add_report_document(first).status == "new"
    assert store.add_report_document(first).status == "duplicate"
    amended = doc("A 9 mm nodule in the right upper lobe. Addendum: stable since 2022.", accession="ACC1",
                  status="corrected", observed=datetime(2024, 3, 6, 9, 0), diagnosis="benign granuloma")
    out = store.add_report_document(amended)
    assert out.status == "amended"
    st = sid(store, "1.1")
    rep = store.get_report(st)
    assert "Addendum" in rep.findings and rep.diagnosis == "benign granuloma"
    versions = store.report_documents(study_id=st)
    assert [(v.status, v.is_current) for v in versions] == [("corrected", True), ("final", False)]
    assert versions[1].superseded_by == versions[0].id
    # a version older than the current one arriving late is history only
    late = doc("preliminary text", accession="ACC1", status="preliminary", observed=datetime(2024, 3, 5, 12, 0))
    assert store.add_report_document(late).status == "older"
    assert "Addendum" in store.get_report(st).findings
    assert [e.value for e in store.label_history(st) if e.kind == "diagnosis"] == ["pulmonary nodule",
                                                                                    "benign granuloma"]
    assert all(e.source == "import" for e in store.label_history(st))


def test_unmatched_report_links_when_its_study_arrives_and_weak_links_get_stronger(store: CaseStore) -> None:
    out = store.add_report_document(doc("Liver metastases.", accession="ACC9", patient_id="P9",
                                        study_date=date(2024, 1, 2), modality="CT", diagnosis="liver mets"))
    assert out.study_id is None
    assert store.link_pending_reports() == 0
    store.add_stack(stack("9.1.1", study="9.1", patient="P9", date_="20240102", accession="ACC9"))
    assert store.link_pending_reports() == 1
    st = sid(store, "9.1")
    assert store.report_documents(study_id=st)[0].link_method == "accession"
    assert store.get_report(st).finding == "liver metastasis"
    # a weak link moves to the right study once one with the accession arrives
    weak = store.add_report_document(doc("Renal cyst.", accession="ACC7", patient_id="P3",
                                         study_date=date(2024, 3, 10), modality="CT", diagnosis="renal cyst"))
    assert (weak.study_id, weak.link_method) == (sid(store, "3.1"), "patient_date_modality")
    store.add_stack(stack("7.1.1", study="7.1", patient="P3", date_="20240310", accession="ACC7"))
    assert store.link_pending_reports() == 1
    assert store.report_documents(study_id=sid(store, "7.1"))[0].link_method == "accession"
    assert store.get_report(sid(store, "3.1")).findings == ""  # the wrongly linked text left study 3.1


def test_reader_labels_have_provenance_and_survive_imports(store: CaseStore) -> None:
    st = sid(store, "1.1")
    store.add_report_document(doc(accession="ACC1", observed=datetime(2024, 3, 5)))
    assert store.set_diagnosis(st, "lung nodule", source="reader", actor="dr.ana")
    assert not store.set_diagnosis(st, "lung nodule", source="reader", actor="dr.ana")  # no change, no event
    store.tag_study(st, "teaching", source="reader", actor="dr.ana")
    store.set_note(st, "compare with 2022", source="reader", actor="dr.ana")
    store.add_report_document(doc("amended text", accession="ACC1", status="corrected",
                                  observed=datetime(2024, 3, 6), diagnosis="granuloma"))
    labels = store.study_labels(st)
    assert (labels.diagnosis, labels.finding, labels.diagnosis_source) == ("lung nodule", "pulmonary nodule", "reader")
    assert store.get_report(st).findings == "amended text"  # the text follows the amendment
    assert labels.note == "compare with 2022" and labels.tags == ["teaching"]
    prov = labels.provenance
    assert (prov["diagnosis"].source, prov["diagnosis"].actor) == ("reader", "dr.ana")
    assert prov["tag:teaching"].source == "reader" and prov["note"].value == "compare with 2022"
    assert store.untag_study(st, "teaching", source="feedback", actor="review")
    assert [(e.kind, e.action, e.source) for e in store.label_history(st)][-1] == ("tag", "remove", "feedback")
    with pytest.raises(QueryError, match="label source"):
        store.set_note(st, "x", source="robot")


def test_vocabulary_counts_synonyms_as_one_finding_everywhere(store: CaseStore) -> None:
    a, b, c = sid(store, "1.1"), sid(store, "2.1"), sid(store, "3.1")
    store.set_diagnosis(a, "pulmonary nodule")
    store.set_diagnosis(b, "Lung nodule")
    store.set_diagnosis(c, "Nodule, RUL")
    assert {store.map_finding(t) for t in ("pulmonary nodule", "lung nodule", "nodule, RUL")} == {"pulmonary nodule"}
    for query in ("lung nodule", "pulmonary nodule", "nodule, RUL"):
        assert {s.id for s in store.list_studies(CaseFilter(diagnosis=query))} == {a, b, c}
    assert set(store.diagnoses().values()) == {"pulmonary nodule"}  # one training / calibration label
    # a synonym of a report's second finding finds it too (its `finding` is the first, renal cyst)
    store.add_stack(stack("4.1.1", study="4.1", patient="P4"))
    d = sid(store, "4.1")
    store.set_diagnosis(d, "Simple renal cyst; nodule, RUL")
    assert store.study_labels(d).finding == "renal cyst"
    assert {s.id for s in store.list_studies(CaseFilter(diagnosis="lung nodule"))} == {a, b, c, d}
    assert {s.id for s in store.list_studies(CaseFilter(diagnosis="renal cyst"))} == {d}
    assert store.map_finding("ground-glass pulmonary nodule") == "ground-glass nodule"  # longest phrase wins
    # a report stating several findings names each once, in order; a longer phrase's words do not count twice
    assert store.map_findings("Simple renal cyst (left kidney); solid pulmonary nodule, RUL.") == [
        "renal cyst", "pulmonary nodule"]
    assert store.map_findings("ground-glass pulmonary nodule") == ["ground-glass nodule"]
    assert store.map_findings("bronchial wall thickening") == []  # no vocabulary term: no finding
    # editing the vocabulary maps every report again
    store.add_vocabulary_term("bronchiectasis", ["bronchial dilatation"])
    store.set_diagnosis(c, "Bronchial dilatation, lower lobes")
    assert store.study_labels(c).finding == "bronchiectasis"
    store.remove_synonym("nodule, RUL")
    store.set_diagnosis(c, "Nodule, RUL")
    assert store.study_labels(c).finding == ""
    with pytest.raises(QueryError, match="already names 'pulmonary nodule'"):
        store.add_vocabulary_term("mass", ["lung nodule"])
    store.remove_vocabulary_term("bronchiectasis")
    with pytest.raises(UnknownItemError):
        store.remove_vocabulary_term("bronchiectasis")


def test_delete_study_removes_everything_but_the_files(store: CaseStore) -> None:
    st = sid(store, "1.1")
    store.add_report_document(doc(accession="ACC1"))
    store.tag_study(st, "teaching")
    m = store.register_model("m", "1", "abc", 4, "2d-slice")
    [se] = store.list_series(CaseFilter(study_ids=(st,)))
    store.put_embeddings(m.id, se.id, [-1, 0], np.ones((2, 4), np.float32))
    store.record_problems([])
    removed = store.delete_study(st)
    assert removed.series_ids == [se.id] and removed.files == [f"/d/1.1.1/{i}.dcm" for i in range(3)]
    assert st not in {s.id for s in store.list_studies(CaseFilter(include_deleted=True))}
    assert len(store.get_embeddings(m.id, include_deleted=True)) == 0
    assert store.report_documents() == [] and store.label_history(st) == []
    with sqlite3.connect(store.path) as con:
        assert con.execute("SELECT count(*) FROM report WHERE study_id = ?", (st,)).fetchone()[0] == 0
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(UnknownItemError):
        store.delete_study(st)


def test_embeddings_needing_work_follow_file_changes(store: CaseStore) -> None:
    m = store.register_model("m", "1", "abc", 4, "2d-slice")
    ids = [s.id for s in store.list_series()]
    assert store.series_needing_embeddings(m.id) == [(i, "missing") for i in ids]
    sigs = store.series_file_signatures(ids)
    for i in ids:
        store.put_embeddings(m.id, i, [-1], np.ones((1, 4), np.float32), replace_series=True,
                             file_signature=sigs[i], content_hash="h")
    assert store.series_needing_embeddings(m.id) == []
    # the files of the first series are rewritten (same UIDs, new mtime): its vectors are suspect
    store.add_stack(stack("1.1.1", study="1.1", accession="ACC1", mtime=5000))
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE source_file SET mtime_ns = mtime_ns + 1 WHERE path LIKE '/d/1.1.1/%'")
        if con.execute("SELECT count(*) FROM source_file WHERE path LIKE '/d/1.1.1/%'").fetchone()[0] == 0:
            con.executemany("INSERT INTO source_file(path, size, mtime_ns, status, reason, seen) "
                            "VALUES (?, 1, 99, 'stored', '', '2024-01-01')", [(f"/d/1.1.1/{i}.dcm",) for i in range(3)])
    assert store.series_needing_embeddings(m.id) == [(ids[0], "files changed")]
    store.set_embedding_state(m.id, ids[0], store.series_file_signatures([ids[0]])[ids[0]], "h")
    assert store.series_needing_embeddings(m.id) == []


def test_replaced_vectors_stay_readable_for_an_index_catching_up(store: CaseStore) -> None:
    m = store.register_model("m", "1", "abc", 4, "2d-slice")
    se = store.list_series()[0].id
    old = store.put_embeddings(m.id, se, [-1, 0], np.eye(4, dtype=np.float32)[:2])
    src = store.embedding_source(m.id)
    labels = src.labels()  # an index read these, then another process re-embedded the series
    new = store.put_embeddings(m.id, se, [-1, 0], np.eye(4, dtype=np.float32)[2:], replace_series=True)
    assert not set(old) & set(new)
    got = src.vectors(labels)  # no "labels have no stored embedding"
    assert np.allclose(got, np.eye(4, dtype=np.float32)[:2])
    assert set(src.labels()) == set(new)  # ... and the next sync sees only the new ones
    with pytest.raises(UnknownItemError):
        src.vectors(np.asarray([10_000]))


def test_claims_share_series_between_runs_and_lapse_with_their_process(store: CaseStore) -> None:
    m = store.register_model("m", "1", "abc", 4, "2d-slice")
    se = store.list_series()[0].id
    a, b = store.claim_owner(), store.claim_owner()
    assert store.claim_series(m.id, se, a)
    assert not store.claim_series(m.id, se, b)
    assert store.claims(m.id) == {se: a}
    store.release_claim(m.id, se, a)
    assert store.claim_series(m.id, se, b)
    # a claim held by a process that has ended is taken over at once
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = a.split(":")[0]
    ghost = f"{host}:{int(dead.stdout)}:dead"
    store.release_claim(m.id, se, b)
    assert store.claim_series(m.id, se, ghost)
    assert store.claim_series(m.id, se, a)
    # ... and a claim whose lease ran out too (another host: its process cannot be checked)
    store.release_claim(m.id, se, a)
    assert store.claim_series(m.id, se, "otherhost:1:x", lease_s=-1)
    assert store.claim_series(m.id, se, b)
    assert not store.claim_series(m.id, se, "otherhost:1:x")
