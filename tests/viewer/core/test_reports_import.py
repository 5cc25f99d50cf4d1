"""Importing reports as hospitals send them: HL7 v2.3/v2.5 ORU^R01 written here with the segments
real RIS send, a Comprehensive SR built with highdicom, an Encapsulated PDF, CSV and JSON exports;
linking to studies ingested from real DICOM files; bad input reported per file, nothing half
stored."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from casebook.index.case_store import CaseFilter, CaseStore
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.reports import (ReportImportError, diagnosis_from_impression, import_reports,
                                                   load_mapping, split_sections)

from .reports_samples import oru, write_ct, write_pdf_report, write_sr


@pytest.fixture
def lib(tmp_path: Path):
    """A library holding two real CT studies: one with accession ACC1001, one without."""
    write_ct(tmp_path / "dicom" / "a", study_uid="1.2.826.0.1.3680043.10.1", accession="ACC1001")
    write_ct(tmp_path / "dicom" / "b", study_uid="1.2.826.0.1.3680043.10.2", patient_id="MRN002",
             study_date="20240306", seed=1)
    store = CaseStore.open(tmp_path / "lib" / "casebook.sqlite")
    assert ingest([tmp_path / "dicom"], store).series_stored == 2
    yield store
    store.close()


def study(store: CaseStore, uid: str) -> int:
    return next(s.id for s in store.list_studies() if s.study_uid == uid)


def rows(store: CaseStore, table: str) -> int:
    with sqlite3.connect(store.path) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_sections_and_diagnosis_from_the_impression() -> None:
    s = split_sections("Clinical history: cough.\nTECHNIQUE - CT chest, no contrast.\nFindings:\nA 9 mm nodule.\n"
                       "Findings were discussed with Dr X.\nIMPRESSION\n1. Nodule, RUL. Follow-up in 3 months.\n"
                       "2. No effusion.")
    assert (s.history, s.technique) == ("cough.", "CT chest, no contrast.")
    assert s.findings == "A 9 mm nodule.\nFindings were discussed with Dr X."
    assert s.impression.startswith("1. Nodule, RUL.")
    assert diagnosis_from_impression(s.impression) == "Nodule, RUL"
    assert diagnosis_from_impression("There is a small left pneumothorax.") == "small left pneumothorax"
    assert diagnosis_from_impression("No acute abnormality.") == "normal"
    assert split_sections("Lungs are clear.").findings == "Lungs are clear."


def test_hl7_v23_and_v25_reports_link_by_accession_and_study_uid(lib: CaseStore, tmp_path: Path) -> None:
    v23 = oru(version="2.3", in_obr18=False)  # accession in OBR-3 only, no MSH-18: UTF-8
    uid_b = "1.2.826.0.1.3680043.10.2"
    v25 = oru(version="2.5", control="MSG2", pid="MRN002", accession="ACC-NOT-IN-LIBRARY", charset="8859/1",
              study_dt="202403061000", obx=[
                  "OBX|1|FT|18785-6^Indications^LN||Kopfschmerzen seit 3 Wochen, Zustand nach Stürz.||||||F",
                  "OBX|2|FT|18782-3^Findings^LN||Subdural collection over the left convexity,\\.br\\8 mm wide.||||||F",
                  "OBX|3|FT|19005-8^Impression^LN||Acute subdural haematoma.||||||F",
                  "OBX|4|CWE|DX^Diagnosis^L||95453001^Subdural hematoma^SCT||||||F"],
              extra=[f"ZDS|{uid_b}^Casebook^Application^DICOM"])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "chest.hl7").write_text(v23, encoding="utf-8")
    (tmp_path / "in" / "head.hl7").write_bytes(v25.encode("latin-1"))
    summary = import_reports(lib, [tmp_path / "in"])
    assert summary.errors == [] and (summary.new, summary.linked) == (2, 2)
    a, b = study(lib, "1.2.826.0.1.3680043.10.1"), study(lib, uid_b)
    ra, rb = lib.get_report(a), lib.get_report(b)
    assert (ra.history, ra.technique) == ("Cough for three weeks.", "CT chest without contrast.")
    assert ra.findings == "A 9 mm solid nodule in the right upper lobe.\nNo pleural effusion."
    assert (ra.diagnosis, ra.diagnosis_source, ra.finding) == ("Nodule, RUL", "impression", "pulmonary nodule")
    assert ra.author == "Anna Radiologist"
    assert rb.history == "Kopfschmerzen seit 3 Wochen, Zustand nach Stürz."  # latin-1 decoded by MSH-18
    assert rb.findings == "Subdural collection over the left convexity,\n8 mm wide."
    assert (rb.diagnosis, rb.diagnosis_code, rb.diagnosis_source) == ("Subdural hematoma", "SCT:95453001", "coded")
    assert rb.finding == "subdural haematoma"
    assert lib.report_documents(study_id=b)[0].link_method == "study_uid"
    # searchable, filterable by synonym, and the same files again change nothing
    assert [h.study_id for h in lib.search_text("subdural convexity")] == [b]
    assert [s.id for s in lib.list_studies(CaseFilter(diagnosis="subdural hemorrhage"))] == [b]
    # what the study panel and the analogue pane show: sections, diagnosis source, the link
    from casebook.viewer.core.services.reports.display import study_report

    page = study_report(lib, b).html()
    assert "<b>Findings</b><br>Subdural collection over the left convexity,<br>8 mm wide." in page
    assert "coded in the report" in page and "linked by Study Instance UID" in page
    weak = study_report(lib, a)
    assert "from the impression" in weak.html() and weak.link_text == "linked by accession number"
    again = import_reports(lib, [tmp_path / "in"])
    assert (again.new, again.duplicate) == (0, 2) and rows(lib, "report_document") == 2


def test_amended_hl7_report_replaces_the_final_one_and_keeps_it(lib: CaseStore, tmp_path: Path) -> None:
    f = tmp_path / "final.hl7"
    f.write_text(oru())
    c = tmp_path / "corrected.hl7"
    c.write_text(oru(control="MSG9", status="C", report_dt="202403061100", obx=[
        "OBX|1|TX|&GDT^Report||FINDINGS: 9 mm nodule, calcified: a granuloma.||||||C",
        "OBX|2|TX|&GDT^Report||IMPRESSION: Calcified granuloma, benign.||||||C"]))
    import_reports(lib, [f])
    out = import_reports(lib, [c])
    assert out.amended == 1
    st = study(lib, "1.2.826.0.1.3680043.10.1")
    assert lib.get_report(st).impression == "Calcified granuloma, benign."
    assert lib.get_report(st).diagnosis == "Calcified granuloma, benign"
    assert [(v.status, v.is_current) for v in lib.report_documents(study_id=st)] == [("corrected", True),
                                                                                     ("final", False)]
    assert lib.search_text("right upper lobe") == []  # the replaced text is no longer the study's
    # the older final message arriving again later does not undo the correction
    assert import_reports(lib, [f]).duplicate == 1
    assert lib.get_report(st).impression == "Calcified granuloma, benign."


def test_unmatched_report_links_when_its_study_is_ingested(lib: CaseStore, tmp_path: Path) -> None:
    (tmp_path / "early.hl7").write_text(oru(accession="ACC7777", pid="MRN777", control="E1"))
    out = import_reports(lib, [tmp_path / "early.hl7"])
    assert out.unmatched == 1
    assert [d.accession_number for d in lib.report_documents(unmatched=True)] == ["ACC7777"]
    write_ct(tmp_path / "later", study_uid="1.2.826.0.1.3680043.10.7", accession="ACC7777", patient_id="MRN777")
    ingest([tmp_path / "later"], lib)  # ingest links waiting reports
    st = study(lib, "1.2.826.0.1.3680043.10.7")
    assert lib.report_documents(unmatched=True) == []
    assert lib.get_report(st).finding == "pulmonary nodule"


def test_sr_built_with_highdicom_and_a_newer_sr_replaces_it(lib: CaseStore, tmp_path: Path) -> None:
    ct = sorted((tmp_path / "dicom" / "b").glob("*.dcm"))
    first = write_sr(tmp_path / "sr1.dcm", ct, findings="Left convexity collection, 8 mm.",
                     impression="Subdural haematoma.", content_dt=datetime(2024, 3, 6, 12, 0))
    newer = write_sr(tmp_path / "sr2.dcm", ct, findings="Left convexity collection, 8 mm, unchanged.",
                     impression="Chronic subdural haematoma.", coded=("35489007", "SCT", "Chronic subdural hematoma"),
                     content_dt=datetime(2024, 3, 7, 9, 0))
    assert import_reports(lib, [first]).linked == 1
    assert import_reports(lib, [newer]).amended == 1
    st = study(lib, "1.2.826.0.1.3680043.10.2")
    rep = lib.get_report(st)
    assert rep.findings == "Left convexity collection, 8 mm, unchanged."
    assert (rep.diagnosis, rep.diagnosis_code, rep.finding) == ("Chronic subdural hematoma", "SCT:35489007",
                                                              "subdural haematoma")
    assert lib.report_documents(study_id=st)[0].link_method == "study_uid"
    assert rep.author == "Radiologist^Anna"


def test_sr_and_pdf_met_at_ingest_are_read_as_reports(tmp_path: Path) -> None:
    ct = write_ct(tmp_path / "dicom" / "a", study_uid="1.2.826.0.1.3680043.10.1", accession="ACC1001")
    write_sr(tmp_path / "dicom" / "a" / "report.dcm", ct, findings="Small nodule, right upper lobe.",
             impression="Lung nodule.")
    write_pdf_report(tmp_path / "dicom" / "pdf.dcm", study_uid="1.2.826.0.1.3680043.10.1", accession="ACC1001",
                     patient_id="MRN001", lines=["CLINICAL HISTORY: smoker.", "FINDINGS: 6 mm nodule.",
                                                 "IMPRESSION: Pulmonary nodule, follow-up advised."])
    with CaseStore.open(tmp_path / "lib.sqlite") as store:
        summary = ingest([tmp_path / "dicom"], store)
        reasons = {Path(s.path).name: s.reason for s in summary.skipped}
        assert reasons["report.dcm"].startswith("report imported") and "linked" in reasons["report.dcm"]
        assert reasons["pdf.dcm"].startswith("report imported")
        st = store.list_studies()[0].id
        kinds = {d.source_kind for d in store.report_documents(study_id=st)}
        assert kinds == {"sr", "pdf"}
        pdf = next(d for d in store.report_documents(study_id=st) if d.source_kind == "pdf")
        assert (pdf.history, pdf.findings) == ("smoker.", "6 mm nodule.")
        assert store.get_report(st).finding == "pulmonary nodule"


def test_csv_and_json_exports_with_a_column_mapping(lib: CaseStore, tmp_path: Path) -> None:
    csv_file = tmp_path / "ris.csv"
    csv_file.write_text("Akte;Befund;Beurteilung;Datum;Status\n"
                        "ACC1001;Rundherd im rechten Oberlappen, 9 mm.;Lung nodule.;2024-03-05;F\n",
                        encoding="cp1252")
    mapping = load_mapping(None, ["accession=Akte", "findings=Befund", "impression=Beurteilung",
                                  "study_date=Datum"])
    with pytest.raises(ReportImportError, match="unknown field"):
        load_mapping(None, ["befund=Befund"])
    out = import_reports(lib, [csv_file], mapping=mapping, encoding="cp1252")
    assert out.errors == [] and out.linked == 1
    st = study(lib, "1.2.826.0.1.3680043.10.1")
    assert lib.get_report(st).findings == "Rundherd im rechten Oberlappen, 9 mm."
    assert lib.get_report(st).finding == "pulmonary nodule"
    mfile = tmp_path / "map.toml"
    mfile.write_text('patient_id = "MRN"\nstudy_date = "Exam Date"\ntext = "Report"\n')
    js = tmp_path / "export.json"
    js.write_text(json.dumps({"reports": [
        {"MRN": "MRN002", "Exam Date": "20240306", "Modality": "CT",
         "Report": "HISTORY: fall.\nFINDINGS: Left rib fracture.\nIMPRESSION: Rib fracture."}]}))
    out = import_reports(lib, [js], mapping=load_mapping(mfile))
    assert out.weak == 1  # patient + date + modality only: the weaker link
    b = study(lib, "1.2.826.0.1.3680043.10.2")
    assert (lib.get_report(b).history, lib.get_report(b).finding) == ("fall.", "fracture")
    assert lib.report_documents(study_id=b)[0].link_strength == "weak"


def test_bad_files_get_a_clear_error_each_and_the_rest_is_imported(lib: CaseStore, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.hl7").write_text(oru())
    (d / "adt.hl7").write_text(oru().replace("ORU^R01", "ADT^A08"))
    (d / "no_obx.hl7").write_text("\r".join(s for s in oru().split("\r") if not s.startswith("OBX")))
    (d / "charset.hl7").write_text(oru(charset="KLINGON-1"))
    (d / "latin1_undeclared.hl7").write_bytes(oru(control="L1", accession="ACC5").replace(
        "Cough", "Hüsteln").encode("latin-1"))
    (d / "two.hl7").write_text(oru(control="T1", accession="ACC6") + oru(control="T2", accession="ACC7")
                               .replace("202403051000", "2024-03-05"))  # second message: a bad date
    ct = sorted((tmp_path / "dicom" / "a").glob("*.dcm"))
    sr = write_sr(d / "orphan_sr.dcm", ct, findings="text")
    ds = pydicom.dcmread(sr)
    for kw in ("StudyInstanceUID", "AccessionNumber", "CurrentRequestedProcedureEvidenceSequence"):
        if kw in ds:
            delattr(ds, kw)
    ds.save_as(sr)
    (d / "broken.pdf.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    (d / "bad.csv").write_text("Accession Number,Findings,Status\nACC8,text,maybe\nACC9,other text,F\n")
    (d / "notes.txt").write_text("not a report")
    before = rows(lib, "report_document")
    out = import_reports(lib, [d])
    why = "\n".join(e for _, e in out.errors)
    assert "adt.hl7: message 1: is ADT^A08 (MSH-9), not an ORU^R01 result" in why
    assert "no_obx.hl7: message 1: has no OBX segment" in why
    assert "charset.hl7: MSH-18 names the character set 'KLINGON-1'" in why
    assert "latin1_undeclared.hl7: not valid UTF-8 at byte" in why and "--encoding latin-1" in why
    assert "two.hl7: message 2: '2024-03-05' is not an HL7 date/time" in why
    assert "orphan_sr.dcm: the report names no study" in why
    assert "bad.csv: line 2: status 'maybe'" in why
    assert "notes.txt" not in why  # a folder's other files are not reports
    assert len(out.errors) == 7
    # the good ones are in, whole: good.hl7, two.hl7 message 1, bad.csv line 3
    assert out.new == 3 and rows(lib, "report_document") == before + 3
    with sqlite3.connect(lib.path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM report_document WHERE findings = '' AND impression = ''"
                           ).fetchone()[0] == 0
    assert import_reports(lib, [d / "latin1_undeclared.hl7"], encoding="latin-1").new == 1
    with pytest.raises(ReportImportError, match="no such file"):
        import_reports(lib, [tmp_path / "missing.hl7"])


def _issued(files: list[Path], issuer: str) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        ds.IssuerOfPatientID = issuer
        ds.save_as(f)


def test_a_report_never_links_to_another_hospitals_patient_with_the_same_mrn(tmp_path: Path) -> None:
    """Hospital A's and hospital B's MRN100 are two patients: B's report (PID-3 assigning authority
    HOSP_B) waits for B's study instead of attaching to A's study of that day and modality, and an
    accession both hospitals used links only within the issuer."""
    a = write_ct(tmp_path / "dicom" / "a", study_uid="1.2.826.0.1.3680043.10.31", accession="ACC55",
                 patient_id="MRN100", study_date="20240305")
    _issued(a, "HOSP_A")
    store = CaseStore.open(tmp_path / "lib" / "casebook.sqlite")
    try:
        ingest([tmp_path / "dicom"], store)
        by_patient_day = oru(pid="MRN100^^^HOSP_B^MR", accession="", control="B1")
        by_accession = oru(pid="MRN100^^^HOSP_B^MR", accession="ACC55", control="B2",
                           obx=["OBX|1|TX|&IMP^Impression||Renal cyst.||||||F"])
        (tmp_path / "b.hl7").write_text(by_patient_day + by_accession)
        out = import_reports(store, [tmp_path / "b.hl7"])
        assert out.unmatched == 2, out
        docs = store.report_documents(unmatched=True)
        assert {d.patient_issuer for d in docs} == {"HOSP_B"}
        assert store.get_report(study(store, "1.2.826.0.1.3680043.10.31")) is None
        b = write_ct(tmp_path / "later" / "b", study_uid="1.2.826.0.1.3680043.10.32", accession="ACC55",
                     patient_id="MRN100", study_date="20240305", seed=3)
        _issued(b, "HOSP_B")
        ingest([tmp_path / "later"], store)  # ingest links waiting reports
        assert store.report_documents(unmatched=True) == []
        linked = {d.study_id for d in store.report_documents()}
        assert linked == {study(store, "1.2.826.0.1.3680043.10.32")}
    finally:
        store.close()
