"""PS3.15 Annex E de-identification over every shared DICOM file and the pydicom / deid-data samples.

Each file goes through the export's de-identification (one context per source folder, as an
export shares one) and is written and read back; then, judged against the standard's table and
the source header, independently of the code under test:

- no Table E.1-1 attribute keeps its original value where its action says otherwise;
- no identifying string of any source header (names, IDs, institutions, dates, UIDs) appears
  anywhere in the written bytes (all elements, nested sequences, private tags);
- private tags are gone, Patient Identity Removed is YES, the method code sequence is written;
- UIDs are consistent within an export and different from the source; pixel data is unchanged.
"""
from __future__ import annotations

import gzip
import io
import os
import re
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from casebook.viewer.core.services.teaching import deid
from casebook.viewer.core.services.teaching.pixels import apply_mask, burned_in_risk

# identity attributes, named here from PS3.15's list of what identifies, not from the code's rule
ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "InstitutionName",
               "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "StudyID",
               "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator", "RequestedProcedureID",
               "PerformedProcedureStepID", "ScheduledProcedureStepID", "DetectorID", "PlateID", "CassetteID",
               "GantryID", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
DATE_KEYWORDS = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
INSTANCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def _package_dir(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def _read(path: Path) -> pydicom.Dataset | None:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return pydicom.dcmread(io.BytesIO(f.read()))
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _sources() -> dict[str, list[Path]]:
    """folder -> DICOM-looking files: every shared DICOM file, deid-data, pydicom's test files."""
    from tests.conftest import SHARED_DATA

    groups: dict[str, list[Path]] = defaultdict(list)
    roots = []
    if SHARED_DATA is not None:
        roots += [SHARED_DATA / "dicom", SHARED_DATA / "temporal" / "covid19_ny_sbu"]
    for pkg, sub in (("deid_data", "data"), ("pydicom", "data/test_files")):
        d = _package_dir(pkg)
        if d is not None:
            roots.append(d / sub)
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix.lower() not in (".json", ".nii", ".txt", ".md", ".py", ".pyc", ".csv", ".zip",
                                                        ".bval", ".bvec", ".png", ".jpg", ".j2k", ".jls", ".bmp"):
                groups[str(p.parent.relative_to(root.parent))].append(p)
    return groups


def identifiers(ds: pydicom.Dataset) -> set[str]:
    """What must not survive: person names, IDs, institutions, original dates, instance UIDs."""
    out: set[str] = set()

    def add(v: object) -> None:
        s = str(v).strip().rstrip("\0")
        if len(s) >= 4:
            out.add(s)

    def walk(d: pydicom.Dataset) -> None:
        for el in d:
            if el.VR == "SQ":
                for item in el.value or []:
                    walk(item)
                continue
            if el.tag.is_private:
                continue
            vals = list(el.value) if isinstance(el.value, (list, pydicom.multival.MultiValue)) else [el.value]
            if el.VR == "PN":
                for v in vals:
                    add(str(v).rstrip("^"))
                    for part in str(v).replace("=", "^").split("^"):
                        add(part)
            elif el.keyword in ID_KEYWORDS or el.keyword in DATE_KEYWORDS or el.keyword in INSTANCE_UIDS:
                for v in vals:
                    add(v)

    walk(ds)
    # a run of one character ("00000") says nothing about anybody
    return {s for s in out if s.upper() not in ("ANONYMOUS", "ANONYMIZED", "REMOVED") and len(set(s)) > 1}


def _elements(ds: pydicom.Dataset):
    for el in ds:
        yield el
        if el.VR == "SQ":
            for item in el.value or []:
                yield from _elements(item)


def _table_values(src: pydicom.Dataset, table: deid.ProfileTable) -> dict[int, tuple[str, str, object]]:
    """tag -> (row name, action, original value) of the top-level Table E.1-1 attributes with a value."""
    out = {}
    for el in src:
        rule = table.rule(el.tag)
        if rule is None or el.tag.is_private or el.VR == "SQ" or el.tag in deid.PATIENT_CHARACTERISTICS:
            continue  # (characteristics: K under the Retain Patient Characteristics option)
        v = el.value
        if v in (None, "", b"") or (isinstance(v, (list, pydicom.multival.MultiValue)) and not list(v)):
            continue
        out[int(el.tag)] = (rule.name, rule.action, el.VR, v)
    return out


def _check_table(before: dict, out: pydicom.Dataset, where: str) -> None:
    for tag, (name, action, vr, orig) in before.items():
        got = out.get(tag)
        if got is None:
            assert "X" in action, f"{where}: {name} removed though its action is {action}"
            continue
        # dates move by the patient's offset (Modified Dates option) instead of being emptied
        if action == "Z" and tag not in (deid.PATIENT_NAME, deid.PATIENT_ID) and vr not in ("DA", "DT"):
            assert got.value in (None, "", b""), f"{where}: {name} (Z) is not empty"
        assert got.value != orig, f"{where}: {name} ({action}) kept its original value"


def test_the_table_is_the_standards_table_e1_1() -> None:
    t = deid.profile_table()
    assert t.edition == deid.TABLE_EDITION and len(t) > 600  # Table E.1-1 lists ~650 attributes
    rows = {r.action for r in list(t.exact.values()) + t.masked}
    assert rows == {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    assert t.rule(0x00100010).action == "Z" and t.rule(0x00100020).action == "Z/D"  # name, ID
    assert t.rule(0x00080018).action == "U" and t.rule(0x0020000D).action == "U"  # SOP / study UID
    assert t.rule(0x00080080).action == "X/Z/D" and t.rule(0x00081140).action == "X/Z/U*"
    assert t.rule(0x60023000).action == "X" and t.rule(0x501A0010).action == "X"  # overlay, curve groups
    assert t.rule(0x00280010) is None  # Rows: not an identifier


@pytest.mark.slow  # ~1,300 files through the profile: about a minute on two idle cores
def test_every_sample_file_is_deidentified_by_its_table_action() -> None:
    groups = _sources()
    if not groups:
        pytest.skip("no DICOM samples installed")
    if os.environ.get("CI", "").lower() == "true":
        from tests.conftest import SHARED_DATA

        assert SHARED_DATA is not None, "shared data missing under CI"
    table = deid.profile_table()
    checked = 0
    for folder, paths in groups.items():
        ctx = deid.DeidContext(table=table)  # one export per folder
        sources = []
        for p in paths:
            ds = _read(p)
            if ds is None or "SOPInstanceUID" not in ds:
                continue
            deid.collect_identifiers(ds, ctx.identifiers)
            sources.append((p, ds))
        new_uids: dict[str, set[str]] = defaultdict(set)
        for p, ds in sources:
            where = f"{p.name} in {folder}"
            before = _table_values(ds, table)
            ids = identifiers(ds)
            uids = {kw: str(ds[kw].value) for kw in INSTANCE_UIDS if kw in ds and str(ds[kw].value or "").strip()}
            pixels = ds.PixelData if "PixelData" in ds else None
            deid.deidentify(ds, ctx)
            raw = _bytes(ds)
            back = pydicom.dcmread(io.BytesIO(raw))  # loads again in pydicom
            _check_table(before, back, where)
            # no private tags at any depth, profile flags written
            assert not [e for e in _elements(back) if e.tag.is_private], f"{where}: private tags left"
            assert back.PatientIdentityRemoved == "YES"
            assert "113100" in [i.CodeValue for i in back.DeidentificationMethodCodeSequence]
            # pixel data untouched
            if pixels is not None:
                # (an odd-length value gets DICOM's one padding byte when written)
                assert back.PixelData[:len(pixels)] == pixels and len(back.PixelData) - len(pixels) in (0, 1), \
                    f"{where}: pixel data changed"
            # no identifier of the source header anywhere in the written file (every element at
            # every depth, the file meta), as a whole token: a 4-digit study ID inside the 39
            # digits of a new random UID is chance, not a leak
            if ids:
                pat = re.compile("|".join(rf"(?<![\w.]){re.escape(x)}(?![\w.])" for x in sorted(ids, key=len,
                                                                                             reverse=True)))
                text = raw.decode("latin-1")
                for _code, meaning in deid.CODES.values():  # Casebook's own words ("Retain Patient ...")
                    text = text.replace(meaning, "")
                found = pat.findall(text)
                assert not found, f"{where}: {len(found)} identifier(s) left, e.g. one of length {len(found[0])}"
            # UIDs: different from the source, one new UID per source UID
            for kw, old in uids.items():
                assert back[kw].value != old, f"{where}: {kw} unchanged"
                new_uids[old].add(str(back[kw].value))
            assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
            checked += 1
        assert all(len(v) == 1 for v in new_uids.values()), f"{folder}: a source UID got two new UIDs"
    assert checked > 100


def _deep_copy(ds: pydicom.Dataset) -> pydicom.Dataset:
    import copy

    return copy.deepcopy(ds)


def test_dates_shift_by_one_offset_per_patient(need_shared) -> None:
    """COVID-19-NY-SBU: each patient's prior and current CT keep their interval, the dates move."""
    root = need_shared("temporal", "covid19_ny_sbu", "data-sample")
    ctx = deid.DeidContext()
    per_patient: dict[str, list[tuple[date, date]]] = defaultdict(list)
    for p in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(p)
        pid, before = str(ds.PatientID), str(ds.StudyDate)
        deid.deidentify(ds, ctx)
        after = str(ds.StudyDate)
        assert after != before and len(after) == 8
        per_patient[pid].append((date(int(before[:4]), int(before[4:6]), int(before[6:])),
                                 date(int(after[:4]), int(after[4:6]), int(after[6:]))))
    assert len(per_patient) >= 5
    offsets = set()
    for pairs in per_patient.values():
        assert len({(b - a).days for a, b in pairs}) == 1  # one offset for all of a patient's dates
        offsets.add((pairs[0][1] - pairs[0][0]).days)
        firsts = sorted(pairs)
        assert (firsts[-1][0] - firsts[0][0]) == (firsts[-1][1] - firsts[0][1])  # interval kept
    assert len(offsets) > 1  # patients do not share an offset


def test_no_source_date_lands_on_another_by_chance() -> None:
    """A content date 520 days after the study: an offset of -520 would write the true study date
    into the export (it did, once in CI, on highdicom's seg_image_sm_dots.dcm). With offsets of
    only -520 or -521 to draw from, every patient must get -521."""
    src = pydicom.dcmread(_package_dir("pydicom") / "data" / "test_files" / "CT_small.dcm")
    src.StudyDate, src.ContentDate = "20190604", "20201105"
    ctx = deid.DeidContext(dates=deid.DateShift(min_days=520, max_days=521))
    for n in range(24):  # a half chance each without the check
        ds = _deep_copy(src)
        ds.PatientID = f"P{n:03d}"
        deid.collect_identifiers(ds, ctx.identifiers)
        deid.deidentify(ds, ctx)
        raw = _bytes(ds).decode("latin-1")
        assert ds.ContentDate == "20190603" and "20190604" not in raw and "20201105" not in raw


def test_case_text_is_cleaned_of_header_identifiers(sample_file) -> None:
    ds = pydicom.dcmread(_package_dir("deid_data") / "data" / "humans" / "ctbrain1.dcm")
    ctx = deid.DeidContext()
    deid.collect_identifiers(ds, ctx.identifiers)
    name = str(ds.PatientName).split("^")[0]
    text = f"Mr {name.title()} (MRN {ds.PatientID}) scanned {ds.StudyDate[:4]}-{ds.StudyDate[4:6]}-{ds.StudyDate[6:]}; " \
           "subdural haematoma"
    cleaned, n = ctx.clean_text(text)
    assert n == 3 and name.lower() not in cleaned.lower() and str(ds.PatientID) not in cleaned
    assert "subdural haematoma" in cleaned


def test_burned_in_ultrasound_is_held_and_masks_blank_only_the_rectangle() -> None:
    d = _package_dir("deid_data") / "data"
    us = pydicom.dcmread(d / "ultrasounds" / "GREYSCALE_IMAGE.dcm")
    assert burned_in_risk(us) == "Burned In Annotation = YES"
    assert burned_in_risk(pydicom.dcmread(d / "animals" / "cat.dcm", stop_before_pixels=True)) is None  # DX, NO
    assert burned_in_risk(pydicom.dcmread(d / "humans" / "ctbrain1.dcm", stop_before_pixels=True))  # secondary capture
    before = us.pixel_array.copy()
    n = apply_mask(us, [[0, 0, 60, us.Columns]])
    after = pydicom.dcmread(io.BytesIO(_bytes(us))).pixel_array
    assert n == 60 * us.Columns
    assert (after[:60] == 0).all() and before[:60].any()
    np.testing.assert_array_equal(after[60:], before[60:])


def test_masks_cover_every_frame_of_a_multiframe_file() -> None:
    p = _package_dir("deid_data") / "data" / "ultrasounds" / "ultrasound-multiframe.dcm"
    ds = pydicom.dcmread(p)
    before = ds.pixel_array.copy()
    apply_mask(ds, [[10, 20, 50, 200]])
    after = pydicom.dcmread(io.BytesIO(_bytes(ds))).pixel_array
    assert after.shape == before.shape and after.shape[0] > 1
    assert (after[:, 10:50, 20:200] == 0).all()
    keep = np.ones(before.shape[:3], bool)
    keep[:, 10:50, 20:200] = False
    np.testing.assert_array_equal(after[keep], before[keep])


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
