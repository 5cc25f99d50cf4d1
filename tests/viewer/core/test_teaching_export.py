"""De-identified export and import of teaching cases, on a real library of real DICOM files.

Round trip: cases made from stored studies (pydicom's CT and MR, deid-data's ultrasound with
burned-in text, a COVID-19-NY-SBU patient's prior and current CT) are exported, checked file by
file and in the JSON, and imported into a fresh library: same cases, fields, key images and
collections. The CLI runs the same services.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from datetime import date
from pathlib import Path

import pydicom
import pytest

from casebook.index.case_store.teaching_records import KeyImage, TeachingFilter
from casebook.viewer.core.config import Settings
from casebook.viewer.core.services.import_pipeline import import_paths
from casebook.viewer.core.services.library import open_store
from casebook.viewer.core.services.teaching.authoring import draft_case
from casebook.viewer.core.services.teaching.deid import CODES
from casebook.viewer.core.services.teaching.export import DOC_NAME, ExportError, export_cases
from casebook.viewer.core.services.teaching.importer import ImportFormatError, import_export

from .test_deid import _package_dir, identifiers


@pytest.fixture(scope="module")
def sources(need_shared) -> list[Path]:
    pyd = _package_dir("pydicom") / "data" / "test_files"
    covid = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304", "axial")
    us = _package_dir("deid_data") / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    return [pyd / "CT_small.dcm", pyd / "MR_small.dcm", us, *sorted(covid.glob("*.dcm"))]


@pytest.fixture(scope="module")
def library(tmp_path_factory, sources):
    """A library with a teaching case per study, two collections, a report that pre-fills."""
    settings = Settings(library_dir=tmp_path_factory.mktemp("teach-lib"))
    import_paths(settings, sources, embed=False)
    store = open_store(settings)
    cases = {}
    try:
        for st in store.list_studies():
            se = store.list_series(study_id=st.id)[0]
            mod = se.modality
            if mod == "CT" and st.patient_id != "1CT1":
                store.set_report(st.id, findings="Ground-glass opacities in both lower lobes", impression="Viral",
                                 diagnosis="COVID-19 pneumonia", author="Dr Report")
            case = draft_case(store, st.id)
            case.history = f"Referred; patient {st.patient_name.split('^')[0]} seen {st.study_date}"
            case.certainty, case.difficulty, case.systems = "probable", "beginner", ["Chest"]
            case.differential = ["organising pneumonia"]
            case.collections = ["Chest quiz"] if mod == "CT" else ["Other"]
            case.tags = [mod.lower()]
            case.key_images = [KeyImage(series_id=se.id, slice_index=0, window_center=-600, window_width=1500,
                                        annotations=[{"kind": "marker", "p0": [20, 30], "p1": [20, 30],
                                                      "label": "here"}], caption="key finding")]
            cases[mod + str(st.study_date)] = store.create_teaching_case(case)
    finally:
        store.close()
    return settings, cases


def _all_source_identifiers(sources: list[Path]) -> set[str]:
    out: set[str] = set()
    for p in sources:
        out |= identifiers(pydicom.dcmread(p, stop_before_pixels=True))
    return out


def test_draft_is_prefilled_from_the_report(library) -> None:
    settings, cases = library
    store = open_store(settings)
    try:
        covid = [store.get_teaching_case(c) for k, c in cases.items() if k.startswith("CT") and "2004" not in k]
    finally:
        store.close()
    assert covid and all(c.title == c.diagnosis == "COVID-19 pneumonia" for c in covid)
    assert all(c.findings.startswith("Ground-glass") and c.discussion == "Viral" and c.author == "Dr Report"
               for c in covid)


def test_export_holds_back_burned_in_ultrasound_until_masked(library, tmp_path: Path, sources) -> None:
    settings, cases = library
    store = open_store(settings)
    try:
        ids = list(cases.values())
        rep = export_cases(store, ids, tmp_path / "first")
        [held] = [h for h in rep.held if h.status == "held back"]
        assert held.modality == "US" and "Burned In Annotation" in held.reason
        assert not rep.complete and "Held back" in (tmp_path / "first" / "export-report.txt").read_text()
        us_files = [p for p in (tmp_path / "first" / "DICOM").rglob("*.dcm")
                    if pydicom.dcmread(p, stop_before_pixels=True).Modality == "US"]
        assert us_files == []
        with pytest.raises(ExportError, match="new or empty"):
            export_cases(store, ids, tmp_path / "first")
        # the author confirms a mask over the text band: now it goes, blanked on its frame
        us_case = store.get_teaching_case(next(c for k, c in cases.items() if k.startswith("US")))
        uid = us_case.key_images[0].series_uid
        us_case.masks = {uid: [[0, 0, 80, 4096]]}  # clipped to the image
        store.update_teaching_case(us_case)
        rep2 = export_cases(store, ids, tmp_path / "second")
        assert rep2.complete and rep2.masked_files == 1
        [us] = [p for p in (tmp_path / "second" / "DICOM").rglob("*.dcm") if pydicom.dcmread(p).Modality == "US"]
        ds = pydicom.dcmread(us)
        assert (ds.pixel_array[:80] == 0).all() and ds.BurnedInAnnotation == "NO"
        assert "113101" in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
    finally:
        store.close()


@pytest.fixture(scope="module")
def export(library, tmp_path_factory):
    settings, cases = library
    store = open_store(settings)
    try:
        us = store.get_teaching_case(next(c for k, c in cases.items() if k.startswith("US")))
        us.excluded = [us.key_images[0].series_uid]  # the other way out: leave it out
        store.update_teaching_case(us)
        out = tmp_path_factory.mktemp("export") / "out"
        rep = export_cases(store, [c for k, c in cases.items()], out)
    finally:
        store.close()
    return out, rep


def test_export_has_no_identifier_and_keeps_links_dates_and_pixels(export, sources) -> None:
    out, rep = export
    assert rep.complete and [h.status for h in rep.held] == ["excluded"]
    files = sorted((out / "DICOM").rglob("*.dcm"))
    assert len(files) == rep.files_written == len(sources) - 1
    phi = _all_source_identifiers(sources)
    # whole tokens (as in test_deid): an institution called "TOSHIBA" is not leaked by the
    # manufacturer "TOSHIBA_MEC" that the profile keeps
    pattern = re.compile("|".join(rf"(?<![\w.]){re.escape(x)}(?![\w.])" for x in sorted(phi, key=len, reverse=True)))
    doc_text = (out / DOC_NAME).read_text(encoding="utf-8")
    report_text = (out / "export-report.txt").read_text() + (out / "export-report.json").read_text()
    src_pixels = {hashlib.sha256(pydicom.dcmread(p).PixelData).hexdigest() for p in sources}
    by_case: dict[str, list[pydicom.Dataset]] = {}
    for f in files:
        raw = f.read_bytes().decode("latin-1")
        for _code, meaning in CODES.values():  # Casebook's own words ("Retain Patient ...")
            raw = raw.replace(meaning, "")
        assert not pattern.findall(raw), f"{f.name}: a source identifier is in the file"
        ds = pydicom.dcmread(f)
        assert ds.PatientIdentityRemoved == "YES"
        assert hashlib.sha256(ds.PixelData).hexdigest() in src_pixels  # pixels unchanged
        by_case.setdefault(f.parts[-3], []).append(ds)
    assert not pattern.findall(doc_text + report_text), "identifier in the JSON or report"
    assert "[removed]" in doc_text  # the patient's name typed in the history was cleaned
    doc = json.loads(doc_text)
    for c in doc["cases"]:
        dss = by_case[c["ref"]]
        assert {str(d.StudyInstanceUID) for d in dss} == {c["study_uid"]}  # the JSON points at its images
        sops = {str(d.SOPInstanceUID) for d in dss}
        assert all(k["sop_instance_uid"] in sops for k in c["key_images"]) and c["key_images"]
    # the COVID patient's two studies: one pseudonym, new dates, the same interval
    covid = [dss[0] for dss in by_case.values() if dss[0].Modality == "CT" and dss[0].Rows != 128]
    assert len(covid) == 2 and len({str(d.PatientID) for d in covid}) == 1
    src = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).StudyDate) for p in sources if "covid" in str(p))
    new = sorted(str(d.StudyDate) for d in covid)
    assert src != new

    def days(a: str, b: str) -> int:
        return (date(int(b[:4]), int(b[4:6]), int(b[6:])) - date(int(a[:4]), int(a[4:6]), int(a[6:]))).days

    assert days(*src) == days(*new)
    with zipfile.ZipFile(out / "casebook-teaching.zip") as z:
        assert DOC_NAME in z.namelist() and len([n for n in z.namelist() if n.endswith(".dcm")]) == len(files)


def test_exported_files_load_in_casebook(export) -> None:
    from casebook.viewer.core.dicom import load_series

    out, _ = export
    for folder in sorted({p.parent for p in (out / "DICOM").rglob("*.dcm")}):
        vol = load_series(folder)
        assert vol.voxels.size > 0


def test_import_into_a_fresh_library_round_trips(library, export, tmp_path: Path) -> None:
    settings, cases = library
    out, _ = export
    fresh = Settings(library_dir=tmp_path / "fresh")
    rep = import_export(fresh, out / "casebook-teaching.zip", embed=False)
    assert len(rep.created) == len(cases) - 1 and not rep.missing_key_images  # the excluded US stays out
    src_store, new_store = open_store(settings), open_store(fresh)
    try:
        old = {c.title + c.history[:8]: c for c in src_store.list_teaching_cases() if "US" not in c.modalities}
        new = {c.title + c.history[:8]: c for c in new_store.list_teaching_cases()}
        assert old.keys() == new.keys()
        for key, a in old.items():
            b = new[key]
            for name in ("title", "findings", "diagnosis", "discussion", "certainty", "difficulty", "author",
                         "differential", "systems", "tags", "collections", "modalities"):
                assert getattr(a, name) == getattr(b, name), name
            assert "[removed]" in b.history and b.source == "imported"
            assert [(k.slice_index, k.window_center, k.window_width, k.annotations, k.caption) for k in a.key_images] \
                == [(k.slice_index, k.window_center, k.window_width, k.annotations, k.caption) for k in b.key_images]
            assert new_store.get_study(b.study_id).deid_status == "deidentified"
        assert [len(new_store.list_teaching_cases(TeachingFilter(collection=n))) for n in ("Chest quiz", "Other")] \
            == [3, 1]
    finally:
        src_store.close()
        new_store.close()
    again = import_export(fresh, out, embed=False)  # the folder form, a second time: nothing doubles
    assert again.created == [] and all("already in this library" in why for _, why in again.skipped)
    with pytest.raises(ImportFormatError, match="teaching export"):
        import_export(fresh, tmp_path, embed=False)


def test_cli_add_ls_show_edit_export_import(library_dir: Path, sources, tmp_path: Path, capsys) -> None:
    from casebook.viewer.cli import main

    assert main(["ingest", str(sources[0]), str(sources[2])]) == 0
    store = open_store(Settings(library_dir=library_dir))
    try:
        ids = {se.modality: (se.study_id, se.id) for se in store.list_series()}
    finally:
        store.close()
    ct_study, ct_series = ids["CT"]
    us_study, us_series = ids["US"]
    capsys.readouterr()
    assert main(["teach", "add", str(ct_study), "--diagnosis", "normal CT", "--certainty", "certain",
                 "--key-image", f"{ct_series}:0:40:400", "--collection", "Quiz", "--tag", "demo"]) == 0
    assert main(["teach", "add", str(us_study), "--title", "Renal cyst", "--collection", "Quiz",
                 "--key-image", f"{us_series}:0"]) == 0
    assert "teaching case 2" in capsys.readouterr().out
    assert main(["teach", "ls", "--collection", "Quiz", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["study_id"] for c in listed] == [ct_study, us_study] and "history" in listed[0]["missing"]
    assert main(["teach", "edit", "1", "--history", "Headache", "--system", "Neuroradiology",
                 "--differential", "artefact", "--add-tag", "ct"]) == 0
    assert main(["teach", "show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "history: Headache" in shown and "differential: artefact" in shown and "tags: ct, demo" in shown
    assert main(["teach", "ls", "--text", "headache"]) == 0 and "normal CT" in capsys.readouterr().out
    # the ultrasound is held back: exit 1 and the report says how to release it
    assert main(["teach", "export", "--collection", "Quiz", str(tmp_path / "x1")]) == 1
    assert f"series {us_series} US" in capsys.readouterr().out
    assert main(["teach", "edit", "2", "--mask", f"{us_series}:0,0,80,640"]) == 0
    assert main(["teach", "export", "1", "2", str(tmp_path / "x2")]) == 0
    assert main(["teach", "edit", "2", "--mask", f"{us_series}:9,9,1,1"]) == 2  # refused with one line
    assert main(["teach", "export", "--all", "--collection", "Quiz", str(tmp_path / "x3")]) == 2
    capsys.readouterr()
    assert main(["--library", str(tmp_path / "other"), "teach", "import", str(tmp_path / "x2"), "--no-embed"]) == 0
    assert "Imported 2 teaching case(s)" in capsys.readouterr().out
    assert main(["--library", str(tmp_path / "other"), "teach", "ls", "--collection", "Quiz"]) == 0
    assert "Renal cyst" in capsys.readouterr().out
