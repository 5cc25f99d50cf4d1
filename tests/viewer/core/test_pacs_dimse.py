"""DIMSE against a real Orthanc: echo, find, move, get, push, and the failures a reading room meets.

Orthanc is started by the test on free loopback ports with a throwaway configuration (see
tests/orthanc.py); real shared DICOM (a GE and a Philips head CT) is stored into it first.
"""
from __future__ import annotations

import json
import sys
import urllib.error
from datetime import date
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.conftest import require_shared  # noqa: E402
from tests.orthanc import Orthanc, casebook_settings, dicom_files, free_port, orthanc_available, pixel_bytes  # noqa: E402

from casebook.common.errors import Cancelled  # noqa: E402
from casebook.index.case_store.records import CaseFilter  # noqa: E402
from casebook.viewer.core.services import pacs  # noqa: E402
from casebook.viewer.core.services.library import open_store  # noqa: E402

pytestmark = pytest.mark.skipif(bool(orthanc_available()), reason=orthanc_available() or "ok")


@pytest.fixture(scope="module")
def ct_files() -> dict[str, list[Path]]:
    root = require_shared("dicom", "dcm_qa_ct", "In")
    return {"GE": dicom_files(root / "GE"), "Philips": dicom_files(root / "Philips")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, ct_files):
    """One Orthanc holding both studies; Casebook's SCP port is known to it as modality CASEBOOK."""
    tmp = tmp_path_factory.mktemp("orthanc")
    scp_port = free_port()
    o = Orthanc(tmp / "orthanc", modalities={"casebook": ("CASEBOOK", scp_port)}).start()
    o.upload(ct_files["GE"] + ct_files["Philips"])
    yield o, scp_port
    o.stop()


@pytest.fixture
def settings(lab, tmp_path):
    o, scp_port = lab
    return casebook_settings(tmp_path, o, scp_port)


def _study(settings, **q) -> pacs.RemoteStudy:
    found = pacs.search(settings, pacs.StudyQuery(**q), "pacs")
    assert len(found) == 1, found
    return found[0]


def _source_pixels(files: list[Path]) -> dict[str, bytes]:
    return dict(pixel_bytes(p) for p in files)


def _library_pixels(settings) -> dict[str, bytes]:
    store = open_store(settings, create=False)
    try:
        out = {}
        for s in store.list_series():
            for inst in store.series_files(s.id):
                sop, px = pixel_bytes(Path(inst.path))
                out[sop] = px
        return out
    finally:
        store.close()


def test_echo_and_the_failures_name_node_and_reason(settings, lab):
    o, _ = lab
    assert pacs.echo(settings, "pacs") > 0
    cfg = pacs.load_config(settings)
    down = pacs.Node("down", ae_title="ORTHANC", host="127.0.0.1", port=free_port())
    with pytest.raises(pacs.PacsError, match=r"'down'.*node down: connection refused"):
        pacs.dimse.echo(cfg, down)
    wrong_called = pacs.Node("wrongae", ae_title="NOT-ORTHANC", host="127.0.0.1", port=o.dicom_port)
    with pytest.raises(pacs.PacsError, match=r"'wrongae'.*association rejected: Called AE title not recognised"):
        pacs.dimse.echo(cfg, wrong_called)
    unknown_host = pacs.Node("nohost", ae_title="ORTHANC", host="no-such-host.invalid", port=104)
    with pytest.raises(pacs.PacsError, match=r"'nohost'.*unknown host"):
        pacs.dimse.echo(cfg, unknown_host)
    tls = pacs.Node("tls", ae_title="ORTHANC", host="127.0.0.1", port=o.dicom_port, tls=True)
    with pytest.raises(pacs.PacsError, match=r"'tls'.*TLS error"):  # Orthanc's port speaks plain DICOM
        pacs.dimse.echo(cfg, tls)
    with pytest.raises(pacs.NodeConfigError, match=r"'nosuch'.*configured: pacs, web"):
        pacs.echo(settings, "nosuch")


def test_orthanc_refuses_find_from_an_unknown_ae_and_the_message_says_so(settings):
    settings.pacs.ae_title = "STRANGER"
    with pytest.raises(pacs.PacsError, match=r"'pacs'.*C-FIND.*'STRANGER'.*DICOM modalities"):
        pacs.search(settings, pacs.StudyQuery(), "pacs")


def test_find_at_study_and_series_level_by_each_field(settings, ct_files):
    everything = pacs.search(settings, pacs.StudyQuery(), "pacs")
    assert len(everything) == 2
    ph = _study(settings, patient_id="PLASTIC")
    assert ph.study_date == date(2015, 2, 6) and ph.modalities == ["CT"] and ph.images == 34 and ph.series_count == 2
    assert ph.local == "no"
    assert _study(settings, description="TRAUMA").study_uid == ph.study_uid  # substring
    assert _study(settings, date_from=date(2015, 1, 1), date_to=date(2015, 12, 31)).study_uid == ph.study_uid
    assert pacs.search(settings, pacs.StudyQuery(date_from=date(2016, 1, 1)), "pacs") == []
    assert pacs.search(settings, pacs.StudyQuery(modality="MR"), "pacs") == []
    ge = _study(settings, patient_id="QMNx85rKkkg")
    assert ge.description == "HEAD" and ge.images == len(ct_files["GE"])
    assert _study(settings, patient_name="REMOV").study_uid == ge.study_uid
    assert _study(settings, study_uid=ge.study_uid).patient_id == "QMNx85rKkkg"
    cfg = pacs.load_config(settings)
    series = pacs.dimse.find_series(cfg, cfg.node("pacs"), ph.study_uid)
    assert sorted(s.images for s in series) == [6, 28] and {s.modality for s in series} == {"CT"}


def test_move_lands_identical_pixels_in_the_library_then_the_study_is_local(settings, ct_files):
    ph = _study(settings, patient_id="PLASTIC")
    seen: list[tuple[int, int]] = []
    res = pacs.retrieve_study(settings, ph.study_uid, node="pacs", method="move", embed=False,
                              progress=lambda d, t, m: seen.append((d, t)))
    assert res.complete and res.transferred == 34 and res.ingested_series == 2, res
    assert (34, 34) in seen
    assert _library_pixels(settings) == _source_pixels(ct_files["Philips"])
    store = open_store(settings, create=False)
    try:
        assert len({s.series_uid for s in store.list_series(CaseFilter(patient="PLASTIC"))}) == 2  # by patient
    finally:
        store.close()
    again = _study(settings, patient_id="PLASTIC")
    assert again.local == "yes" and again.local_images == 34
    second = pacs.retrieve_study(settings, ph.study_uid, node="pacs", method="move", embed=False)
    assert second.complete and second.transferred == 0 and second.already_local == 2


def test_get_embeds_and_indexes_so_the_series_is_searchable(settings, ct_files):
    ge = _study(settings, patient_id="QMNx85rKkkg")
    res = pacs.retrieve_study(settings, ge.study_uid, node="pacs", method="get", embed=True)
    assert res.complete and res.transferred == 28
    assert "embedded" in res.import_headline and "index" in res.import_headline, res.import_headline
    assert _library_pixels(settings) == _source_pixels(ct_files["GE"])
    from casebook.viewer.core.services.search_open import open_store_search  # the reader's Find similar
    from casebook.viewer.core.services.search_types import SearchFilters

    store = open_store(settings, create=False)
    try:
        sid = store.list_series()[0].id
    finally:
        store.close()
    svc = open_store_search(settings, auto_encoder=False)
    try:
        resp = svc.search(svc.query_from_series(sid), filters=SearchFilters(exclude_same_patient=False,
                                                                             exclude_same_study=False))
    finally:
        svc.close()
    assert resp.hits and resp.hits[0].series_id == sid and resp.hits[0].score > 0.99


def test_cancelled_retrieve_is_never_shown_and_the_next_one_finishes_it(settings):
    ph = _study(settings, patient_id="PLASTIC")
    token = pacs_token()

    def progress(done: int, total: int, message: str) -> None:
        if message == pacs.retrieve.PHASE_RETRIEVE and done >= 5:
            token.set()

    with pytest.raises(Cancelled):
        pacs.retrieve_study(settings, ph.study_uid, node="pacs", method="get", embed=False, progress=progress,
                            cancel=token)
    man = pacs.Manifest.load(settings.library_dir, ph.study_uid)
    assert man is not None and man.state == "incomplete" and man.reason == "cancelled"
    store = open_store(settings)
    try:
        assert store.list_series() == []  # nothing half-received is listed
    finally:
        store.close()
    assert _study(settings, patient_id="PLASTIC").local == "partly"
    assert [m.study_uid for m in pacs.incomplete_retrieves(settings.library_dir)] == [ph.study_uid]
    res = pacs.retrieve_study(settings, ph.study_uid, node="pacs", method="get", embed=False)
    assert res.complete and res.ingested_series == 2
    assert _study(settings, patient_id="PLASTIC").local == "yes"
    assert pacs.incomplete_retrieves(settings.library_dir) == []


def pacs_token():
    from casebook.common.progress import CancelToken

    return CancelToken()


def test_node_down_half_way_keeps_the_study_out_until_a_retrieve_completes(tmp_path, ct_files):
    scp_port = free_port()
    o = Orthanc(tmp_path / "orthanc", modalities={"casebook": ("CASEBOOK", scp_port)}).start()
    try:
        o.upload(ct_files["GE"])
        settings = casebook_settings(tmp_path, o, scp_port)
        ge = _study(settings)

        def progress(done: int, total: int, message: str) -> None:
            if message == pacs.retrieve.PHASE_RETRIEVE and done >= 6 and o.proc is not None:
                o.proc.kill()  # the PACS dies in the middle of the C-MOVE
                o.proc.wait()
                o.proc = None

        res = pacs.retrieve_study(settings, ge.study_uid, node="pacs", method="move", embed=False, progress=progress)
        assert not res.complete and res.ingested_series == 0
        assert "'pacs'" in str(pytest.raises(pacs.RetrieveIncomplete, res.raise_if_incomplete).value)
        assert "of 28 images arrived" in res.problem and "again finishes it" in res.problem
        assert "ended part-way" in res.problem, res.problem
        store = open_store(settings)
        try:
            assert store.list_series() == [] and store.local_study_contents([ge.study_uid]) == {}
        finally:
            store.close()
        with pytest.raises(pacs.PacsError, match=r"'pacs'.*node down"):
            pacs.retrieve_study(settings, ge.study_uid, node="pacs", embed=False)
        o.start()  # the PACS is back (same storage, same ports)
        done = pacs.retrieve_study(settings, ge.study_uid, node="pacs", method="move", embed=False)
        assert done.complete and done.ingested_series == 1
        assert _library_pixels(settings) == _source_pixels(ct_files["GE"])
    finally:
        o.stop()


def _orthanc_study_ids(o: Orthanc) -> list[str]:
    return list(o.rest("GET", "/studies"))


def test_push_from_orthanc_arrives_in_the_library(settings, lab, ct_files):
    o, _ = lab
    got: list[str] = []
    with pacs.PushListener(settings, embed=False, on_ingested=lambda h, p: got.append(p or h)) as listener:
        ge_id = next(i for i in _orthanc_study_ids(o)
                     if o.rest("GET", f"/studies/{i}")["PatientMainDicomTags"]["PatientID"] == "QMNx85rKkkg")
        o.rest("POST", "/modalities/casebook/store", {"Resources": [ge_id], "Synchronous": True})
        listener.wait_idle(60)
    assert listener.scp.stored == 28 and listener.ingested_studies == 1, got
    assert "1 series stored" in got[0]
    assert _library_pixels(settings) == _source_pixels(ct_files["GE"])


def test_push_from_an_unknown_ae_is_refused_and_nothing_is_stored(lab, tmp_path):
    o, scp_port = lab
    settings = casebook_settings(tmp_path, o, scp_port)
    pacs.save_nodes(Path(settings.pacs.nodes_file), [])  # Casebook knows no node ...
    settings.pacs.scp_allowed_aets = "MODALITY1"  # ... only this sender
    with pacs.PushListener(settings, embed=False) as listener:
        with pytest.raises(urllib.error.HTTPError):
            o.rest("POST", "/modalities/casebook/store", {"Resources": _orthanc_study_ids(o)[:1], "Synchronous": True})
        listener.wait_idle(10)
    assert listener.scp.stored == 0
    assert not (settings.library_dir / "received").exists() or not any((settings.library_dir / "received").iterdir())


def test_scp_without_allowed_ae_titles_refuses_to_start(tmp_path):
    scp = pacs.StorageSCP(tmp_path, ae_title="CASEBOOK", bind="127.0.0.1", port=0, allowed_aets=[])
    with pytest.raises(pacs.PacsError, match="accepting anyone is refused"):
        scp.start()


def test_cli_echo_find_and_move(settings, lab, capsys, monkeypatch, tmp_path):
    from casebook.viewer.cli import main

    cfg_file = tmp_path / "settings.toml"
    settings.save(cfg_file)
    monkeypatch.setenv("CASEBOOK_CONFIG", str(cfg_file))
    monkeypatch.delenv("CASEBOOK_LIBRARY", raising=False)
    assert main(["pacs", "echo"]) == 0
    assert "C-ECHO ok" in capsys.readouterr().out
    assert main(["pacs", "find", "--patient-id", "PLASTIC", "--series", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 1 and len(found[0]["series"]) == 2 and found[0]["local"] == "no"
    assert main(["pacs", "move", found[0]["study_uid"], "--no-embed", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["complete"] and out["transferred"] == 34
    assert main(["pacs", "find", "--node", "nosuch"]) == 2
    assert "PACS node 'nosuch'" in capsys.readouterr().err


def test_priors_of_the_opened_study_come_from_the_pacs_with_their_local_state(settings):
    ph = _study(settings, patient_id="PLASTIC")
    assert pacs.query_priors(settings, "PLASTIC", exclude_study_uid=ph.study_uid) == []
    priors = pacs.query_priors(settings, "PLASTIC")
    assert [p.study_uid for p in priors] == [ph.study_uid] and priors[0].local == "no"
    assert pacs.query_priors(settings, "PLAST") == []  # exact patient ID only
    # the Issuer of Patient ID is asked for (a return key), not matched on: a node that stores
    # none for the study keeps it in the list of an open study that names its issuer
    assert priors[0].patient_issuer == ""
    assert [p.study_uid for p in pacs.query_priors(settings, "PLASTIC", issuer="HOSP_A")] == [ph.study_uid]
    assert pacs.query_priors(settings, "") == []


def test_cli_scp_receives_a_push_until_ctrl_c(settings, lab, tmp_path):
    import os
    import signal
    import subprocess
    import time

    o, scp_port = lab
    cfg_file = tmp_path / "settings.toml"
    settings.save(cfg_file)
    env = {**os.environ, "CASEBOOK_CONFIG": str(cfg_file)}
    env.pop("CASEBOOK_LIBRARY", None)
    exe = Path(sys.executable).with_name("casebook")
    proc = subprocess.Popen([str(exe), "pacs", "scp", "--no-embed"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert f"127.0.0.1:{scp_port}" in first and "ORTHANC" in first, first
        ge_id = next(i for i in _orthanc_study_ids(o)
                     if o.rest("GET", f"/studies/{i}")["PatientMainDicomTags"]["PatientID"] == "QMNx85rKkkg")
        o.rest("POST", "/modalities/casebook/store", {"Resources": [ge_id], "Synchronous": True})
        line = proc.stdout.readline()
        assert "1 series stored" in line, line
    finally:
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "stopped: 28 images received, 1 pushed studies ingested" in out, (out, err)
    assert proc.returncode == 130
