"""Priors: the covid19_ny_sbu pairs ingested from DICOM, series ranking, the stored registration,
the name + birth date fallback, and the CLI (`casebook priors`, `casebook register` refusals)."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest

from casebook.index.case_store import CaseStore
from casebook.index.case_store.registrations import RegistrationRecord
from casebook.index.errors import QueryError, UnknownItemError
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.priors import (PriorsError, find_priors, follow_up_studies, interval_text,
                                                   open_pair)
from casebook.viewer.core.services.registration import RegistrationOptions



@pytest.fixture(scope="module")
def covid_store(tmp_path_factory: pytest.TempPathFactory, need_shared) -> CaseStore:
    root = need_shared("temporal", "covid19_ny_sbu", "data-sample")
    path = tmp_path_factory.mktemp("covid") / "casebook.sqlite"
    store = CaseStore.open(path)
    ingest([root], store, workers=1)
    yield store
    store.close()


def _patient_dates(root: Path) -> dict[str, list[str]]:
    """The truth from the files themselves: PatientID -> the study dates it has."""
    out: dict[str, set[str]] = {}
    for f in root.rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out.setdefault(str(ds.PatientID), set()).add(str(ds.StudyDate))
    return {k: sorted(v) for k, v in out.items()}


def test_each_current_study_shows_its_prior(covid_store: CaseStore, need_shared) -> None:
    truth = _patient_dates(need_shared("temporal", "covid19_ny_sbu", "data-sample"))
    assert len(truth) == 10 and all(len(d) == 2 for d in truth.values())
    studies = covid_store.list_studies()
    assert len(studies) == 20
    checked = 0
    for st in studies:
        entries = find_priors(covid_store, st.id)
        assert len(entries) == 1, st.patient_id
        e = entries[0]
        assert e.study.patient_id == st.patient_id and e.match == "patient id"
        days = (st.study_date - e.study.study_date).days
        assert e.interval_days == days != 0
        current_is_later = st.study_date.strftime("%Y%m%d") == truth[st.patient_id][1]
        assert e.relation == ("prior" if current_is_later else "later")
        if current_is_later:
            checked += 1
            # the best prior series: same modality, and the same plane as the current's largest series
            best = e.best
            assert best is not None and best.series.modality == "CT"
            assert any("same modality" in r for r in best.reasons)
            assert "prior" in interval_text(e.interval_days) or "before" in interval_text(e.interval_days)
    assert checked == 10
    # dates ordered: a patient's timeline is newest first
    for st in studies:
        dates = [e.study.study_date for e in find_priors(covid_store, st.id)]
        assert dates == sorted(dates, reverse=True)


def test_best_series_follows_the_plane_of_the_current_series(covid_store: CaseStore) -> None:
    for st in covid_store.list_studies()[::2]:  # every other study (each has an axial and a coronal series)
        for cur in covid_store.list_series(study_id=st.id):
            entry = find_priors(covid_store, st.id, current_series_id=cur.id)[0]
            best = entry.best.series
            # the truth: the data set keeps each plane in its own folder
            folder = {Path(f.path).parent.name for f in covid_store.series_files(cur.id)}
            best_folder = {Path(f.path).parent.name for f in covid_store.series_files(best.id)}
            assert folder == best_folder, (cur.description, best.description)
            assert any("same plane" in r for r in entry.best.reasons)


def test_single_slice_prior_gives_an_unlinked_pair_with_the_reason(covid_store: CaseStore) -> None:
    st = next(s for s in covid_store.list_studies() if find_priors(covid_store, s.id)[0].relation == "prior")
    entry = find_priors(covid_store, st.id)[0]
    cur = covid_store.list_series(study_id=st.id)[0]
    pair = open_pair(covid_store, cur.id, entry.best.series.id)
    assert not pair.linked
    assert "single slice" in pair.message and "not linked" in pair.message.lower()
    assert "frames of reference" in pair.message  # these two were never in one frame
    assert pair.prior.shape[0] == 1 and pair.current.shape[0] == 1


def test_follow_up_of_an_analogue_lists_its_later_studies(covid_store: CaseStore) -> None:
    earlier = [s for s in covid_store.list_studies() if find_priors(covid_store, s.id)[0].relation == "later"]
    assert len(earlier) == 10
    for st in earlier:
        later = follow_up_studies(covid_store, st.id)
        assert len(later) == 1 and later[0].study.study_date > st.study_date
        assert later[0].interval_text().endswith("later")


def test_missing_prior_files_are_a_clear_error(tmp_path: Path, need_shared) -> None:
    src = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304")
    copy = tmp_path / "A002304"
    shutil.copytree(src, copy)
    store = CaseStore.open(tmp_path / "lib.sqlite")
    try:
        ingest([copy], store, workers=1)
        st = store.list_studies()[0]
        entry = find_priors(store, st.id)[0]
        for f in (copy / "axial").glob(f"{entry.study.study_date.strftime('%Y%m%d')}*.dcm"):
            f.unlink()
        for f in (copy / "coronal").glob(f"{entry.study.study_date.strftime('%Y%m%d')}*.dcm"):
            f.unlink()
        cur = store.list_series(study_id=st.id)[0]
        with pytest.raises(PriorsError, match=r"prior series \d+ cannot be shown: .*files"):
            open_pair(store, cur.id, entry.best.series.id)
    finally:
        store.close()


def test_name_and_birth_date_fallback_is_marked(tmp_path: Path, need_shared) -> None:
    """Two Patient IDs for one person (e.g. after a merger): found only with the fallback, marked as such."""
    src = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304", "axial")
    files = sorted(src.glob("*.dcm"))
    out = tmp_path / "in"
    out.mkdir()
    for n, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.PatientID = f"SITE{n}-123"
        ds.PatientName = "Doe^Jane" if n == 0 else "DOE^JANE"
        ds.PatientBirthDate = "19500101"
        ds.save_as(out / f.name)
    store = CaseStore.open(tmp_path / "lib.sqlite")
    try:
        ingest([out], store, workers=1)
        a, b = sorted(store.list_studies(), key=lambda s: s.study_date)
        assert find_priors(store, b.id) == []
        entries = find_priors(store, b.id, name_birth_fallback=True)
        assert [e.study.id for e in entries] == [a.id] and entries[0].match == "name + birth date"
        assert entries[0].relation == "prior"
    finally:
        store.close()


def _rewrite(src: Path, out: Path, patient_id: str, issuer: str | None) -> None:
    """Copies of real shared files under another PatientID and Issuer of Patient ID (None: no issuer)."""
    out.mkdir(parents=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.PatientID = patient_id
        if issuer is None:
            if "IssuerOfPatientID" in ds:
                del ds.IssuerOfPatientID
        else:
            ds.IssuerOfPatientID = issuer
        ds.save_as(out / f.name)


def test_the_same_patient_id_from_two_issuers_is_two_patients(tmp_path: Path, need_shared) -> None:
    """Two hospitals both hand out MRN 100: each patient's prior is their own study, never the other's;
    a study that names no issuer still finds both, marked "patient id, issuer unknown"."""
    root = need_shared("temporal", "covid19_ny_sbu", "data-sample")
    _rewrite(root / "A002304" / "axial", tmp_path / "in" / "a", "MRN100", "HOSP_A")
    _rewrite(root / "A027284" / "axial", tmp_path / "in" / "b", "MRN100", "HOSP_B")
    _rewrite(root / "A046441" / "axial", tmp_path / "in" / "c", "MRN100", None)
    store = CaseStore.open(tmp_path / "lib.sqlite")
    try:
        ingest([tmp_path / "in"], store, workers=1)
        folder = {st.id: Path(store.series_files(store.list_series(study_id=st.id)[0].id)[0].path).parent.name
                  for st in store.list_studies()}
        assert sorted(folder.values()) == ["a", "a", "b", "b", "c", "c"]
        keys = {p.patient_key for p in store.list_patients()}
        assert keys == {"MRN100\\HOSP_A", "MRN100\\HOSP_B", "MRN100"}
        for sid, f in folder.items():
            entries = find_priors(store, sid)
            by_folder = {folder[e.study.id]: e.match for e in entries}
            if f == "c":  # no issuer: both hospitals' MRN100 could be this patient, and the list says so
                assert by_folder == {"c": "patient id", "a": "patient id, issuer unknown",
                                     "b": "patient id, issuer unknown"}
            else:
                other = "b" if f == "a" else "a"
                assert other not in by_folder, (f, by_folder)
                assert by_folder == {f: "patient id", "c": "patient id, issuer unknown"}
    finally:
        store.close()


def test_a_library_from_before_issuers_keeps_its_patients(tmp_path: Path, need_shared) -> None:
    """Migration 0007 on a library with data: patients keep their keys (issuer empty); a later study
    of the same PatientID that names an issuer is listed as a prior "patient id, issuer unknown"."""
    from casebook.index.case_store import migrate

    root = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304", "axial")
    first, second = sorted(root.glob("*.dcm"))
    path = tmp_path / "lib.sqlite"
    (tmp_path / "old").mkdir()
    shutil.copy(first, tmp_path / "old" / first.name)
    with CaseStore.open(path) as store:
        ingest([tmp_path / "old"], store, workers=1)
    migrate.downgrade(path, "0006")  # the library as it was before issuers
    with sqlite3.connect(path) as con:
        assert "issuer" not in {r[1] for r in con.execute("PRAGMA table_info(patient)")}
    with CaseStore.open(path) as store:
        assert store.revision == migrate.head_revision() >= "0007"  # upgraded to the head, through 0007
        [p] = store.list_patients()
        assert p.patient_key == p.patient_id == "A002304"
        (tmp_path / "new").mkdir()
        ds = pydicom.dcmread(second)
        ds.IssuerOfPatientID = "HOSP_A"
        ds.save_as(tmp_path / "new" / second.name)
        ingest([tmp_path / "new"], store, workers=1)
        assert sorted(q.patient_key for q in store.list_patients()) == ["A002304", "A002304\\HOSP_A"]
        a, b = sorted(store.list_studies(), key=lambda s: s.study_date)
        assert [(e.study.id, e.match) for e in find_priors(store, b.id)] == [(a.id, "patient id, issuer unknown")]
        assert [(e.study.id, e.match) for e in find_priors(store, a.id)] == [(b.id, "patient id, issuer unknown")]


def test_registration_is_stored_reused_and_nudged(tmp_path: Path, need_shared) -> None:
    src = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304")
    store = CaseStore.open(tmp_path / "lib.sqlite")
    try:
        ingest([src], store, workers=1)
        a, b = [s.id for s in store.list_series()][:2]
        m = np.eye(4)
        m[:3, 3] = (1.5, -2.0, 3.0)
        rec = store.save_registration(RegistrationRecord(a, b, "rigid", m, metric=-0.5, quality=1.3, overlap=0.9,
                                                         iterations=40, seconds=2.5, software="SimpleITK x"))
        assert rec.id is not None and rec.nudge is None
        again = store.get_registration(a, b, "rigid")
        np.testing.assert_allclose(again.matrix, m)
        assert (again.metric, again.quality, again.software) == (-0.5, 1.3, "SimpleITK x")
        nudge = np.eye(4)
        nudge[0, 3] = 2.0
        store.set_registration_nudge(a, b, "rigid", nudge)
        # a recomputation keeps the reader's nudge
        store.save_registration(RegistrationRecord(a, b, "rigid", m, metric=-0.6))
        got = store.get_registration(a, b, "rigid")
        np.testing.assert_allclose(got.nudge, nudge)
        np.testing.assert_allclose(got.effective[:3, 3], (3.5, -2.0, 3.0))
        assert store.get_registration(a, b, "affine") is None
        assert len(store.registrations_of(b)) == 1
        with pytest.raises(QueryError, match="4x4"):
            store.save_registration(RegistrationRecord(a, b, "rigid", np.eye(3)))
        with pytest.raises(UnknownItemError, match="series 999"):
            store.save_registration(RegistrationRecord(a, 999, "rigid", m))
        with pytest.raises(UnknownItemError, match="no affine registration"):
            store.set_registration_nudge(a, b, "affine", nudge)
        # the pair is single-slice: open_pair does not register, and says so
        pair = open_pair(store, a, b, options=RegistrationOptions())
        assert pair.linked  # the stored registration is reused, nothing is recomputed
        assert "stored" in pair.message and "nudged" in pair.message
    finally:
        store.close()


def test_interval_text() -> None:
    assert interval_text(None) == "date unknown"
    assert interval_text(0) == "same day"
    assert interval_text(1) == "1 day before"
    assert interval_text(-45) == "1 month later"
    assert interval_text(400) == "1 year 1 month before"


def _cli(capsys: pytest.CaptureFixture, *args: str, lib: Path) -> tuple[int, str, str]:
    """The real command line, in this process (the wrapper, exit codes and output as a shell sees them)."""
    from casebook.viewer.cli import main

    capsys.readouterr()
    rc = main(["--library", str(lib), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_priors_and_register_refusals(tmp_path: Path, need_shared, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CASEBOOK_CONFIG", str(tmp_path / "settings.toml"))
    src = need_shared("temporal", "covid19_ny_sbu", "data-sample", "A002304")
    lib = tmp_path / "lib"
    monkeypatch.setenv("CASEBOOK_LIBRARY", str(lib))  # main() sets it; restored after the test
    lib.mkdir()
    store = CaseStore.open(lib / "casebook.sqlite")
    try:
        ingest([src], store, workers=1)
        later = max(store.list_studies(), key=lambda s: s.study_date)
        cur = store.list_series(study_id=later.id)[0].id
        prior = find_priors(store, later.id)[0].best.series.id
    finally:
        store.close()
    rc, out, err = _cli(capsys, "priors", str(later.id), lib=lib)
    assert rc == 0, err
    assert "1 other study of the patient" in out and "before" in out and "patient id" in out
    rc, out, _err = _cli(capsys, "priors", later.study_uid, "--json", lib=lib)
    assert rc == 0 and '"relation": "prior"' in out
    rc, _out, err = _cli(capsys, "priors", "99999", lib=lib)
    assert rc == 2 and "study 99999" in err
    rc, _out, err = _cli(capsys, "register", str(cur), str(prior), lib=lib)
    assert rc == 2 and "single slice" in err


def test_exclude_same_patient_excludes_what_the_priors_list_calls_the_same_patient(tmp_path: Path,
                                                                                    need_shared) -> None:
    """"Exclude same patient" in a search drops the studies the priors list shows as this patient's:
    the same PatientID without an issuer, and a manually linked prior; another issuer's MRN100 stays."""
    from casebook.viewer.core.services.search_types import SearchFilters
    from casebook.viewer.core.services.store_catalog import StoreCatalog

    root = need_shared("temporal", "covid19_ny_sbu", "data-sample")
    _rewrite(root / "A002304" / "axial", tmp_path / "in" / "a", "MRN100", "HOSP_A")
    _rewrite(root / "A027284" / "axial", tmp_path / "in" / "b", "MRN100", "HOSP_B")
    _rewrite(root / "A046441" / "axial", tmp_path / "in" / "c", "MRN100", None)
    _rewrite(root / "A048383" / "axial", tmp_path / "in" / "d", "OTHER7", "HOSP_A")
    store = CaseStore.open(tmp_path / "lib.sqlite")
    try:
        ingest([tmp_path / "in"], store, workers=1)
        folder_of = {se.id: Path(store.series_files(se.id)[0].path).parent.name for se in store.list_series()}
        study_of = {se.id: se.study_id for se in store.list_series()}
        key_of = {se.id: se.patient_key for se in store.list_series()}
        cat = StoreCatalog(store, -1)
        on = SearchFilters(exclude_same_patient=True, exclude_same_study=False)

        def excluded(folder: str) -> set[str]:
            sid = next(s for s, f in folder_of.items() if f == folder)
            return {folder_of[s] for s in cat.series_to_exclude(key_of[sid], study_of[sid], on)}

        assert excluded("a") == {"a", "c"}  # c names no issuer: the priors list shows it as a's
        assert excluded("b") == {"b", "c"}
        assert excluded("c") == {"a", "b", "c"}
        assert excluded("d") == {"d"}
        # a manual link makes d a's prior, and a search from a then leaves d out too
        a_study = next(study_of[s] for s, f in folder_of.items() if f == "a")
        d_study = next(study_of[s] for s, f in folder_of.items() if f == "d")
        store.link_prior(a_study, d_study)
        assert excluded("a") == {"a", "c", "d"}
        off = SearchFilters(exclude_same_patient=False, exclude_same_study=False)
        assert cat.series_to_exclude(key_of[next(iter(folder_of))], a_study, off) == set()
    finally:
        store.close()
