"""DICOMweb against a real Orthanc (its DICOMweb plugin): QIDO-RS, WADO-RS, STOW-RS, basic and
token authentication, and the failures named by node and reason."""
from __future__ import annotations

import base64
import http.server
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.conftest import require_shared  # noqa: E402
from tests.orthanc import Orthanc, casebook_settings, dicom_files, free_port, orthanc_available, pixel_bytes  # noqa: E402

from casebook.viewer.core.services import pacs  # noqa: E402
from casebook.viewer.core.services.library import open_store  # noqa: E402

pytestmark = pytest.mark.skipif(bool(orthanc_available()), reason=orthanc_available() or "ok")

USER, PASSWORD = "reader", "correct horse"


@pytest.fixture(scope="module")
def ge_files() -> list[Path]:
    return dicom_files(require_shared("dicom", "dcm_qa_ct", "In", "GE"))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, ge_files):
    o = Orthanc(tmp_path_factory.mktemp("orthanc-web"), users={USER: PASSWORD}).start()
    o.upload(ge_files)
    yield o
    o.stop()


@pytest.fixture
def settings(orthanc, tmp_path):
    return casebook_settings(tmp_path, orthanc, free_port(), web_auth=(USER, PASSWORD))


def test_qido_search_with_basic_auth_and_wado_retrieve_identical_pixels(settings, ge_files):
    found = pacs.search(settings, pacs.StudyQuery(patient_id="QMNx85rKkkg"), "web")
    assert len(found) == 1 and found[0].images == 28 and found[0].modalities == ["CT"]
    assert found[0].local == "no"
    assert pacs.search(settings, pacs.StudyQuery(description="HEAD", modality="CT"), "web")[0].study_uid == found[0].study_uid
    assert pacs.search(settings, pacs.StudyQuery(patient_id="nobody"), "web") == []
    cfg = pacs.load_config(settings)
    assert [s.images for s in pacs.dicomweb.search_series(cfg, cfg.node("web"), found[0].study_uid)] == [28]
    res = pacs.retrieve_study(settings, found[0].study_uid, node="web", embed=False)
    assert res.method == "wado" and res.complete and res.transferred == 28
    store = open_store(settings, create=False)
    try:
        got = dict(pixel_bytes(Path(i.path)) for s in store.list_series() for i in store.series_files(s.id))
    finally:
        store.close()
    assert got == dict(pixel_bytes(p) for p in ge_files)
    assert pacs.search(settings, pacs.StudyQuery(patient_id="QMNx85rKkkg"), "web")[0].local == "yes"


def test_wrong_password_down_server_and_unknown_host_are_named(settings, orthanc):
    cfg = pacs.load_config(settings)
    bad = pacs.Node("web", kind="dicomweb", url=orthanc.dicomweb_url, auth="basic", username=USER, password="nope")
    with pytest.raises(pacs.PacsError, match=r"'web'.*authentication refused \(HTTP 401\)"):
        pacs.dicomweb.search_studies(cfg, bad, pacs.StudyQuery())
    down = pacs.Node("gone", kind="dicomweb", url=f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(pacs.PacsError, match=r"'gone'.*node down: connection refused"):
        pacs.dicomweb.search_studies(cfg, down, pacs.StudyQuery())
    nohost = pacs.Node("nohost", kind="dicomweb", url="http://no-such-host.invalid/dicom-web")
    with pytest.raises(pacs.PacsError, match=r"'nohost'.*(unknown host|cannot reach)"):
        pacs.dicomweb.search_studies(cfg, nohost, pacs.StudyQuery())
    tls = pacs.Node("tls", kind="dicomweb", url=f"https://127.0.0.1:{orthanc.http_port}/dicom-web")
    with pytest.raises(pacs.PacsError, match=r"'tls'.*TLS error"):
        pacs.dicomweb.search_studies(cfg, tls, pacs.StudyQuery())


def test_stow_sends_files_the_server_then_finds(tmp_path, ge_files, sample_file):
    o = Orthanc(tmp_path / "empty", users={USER: PASSWORD}).start()
    try:
        settings = casebook_settings(tmp_path, o, free_port(), web_auth=(USER, PASSWORD))
        cfg = pacs.load_config(settings)
        junk = tmp_path / "notes.txt"
        junk.write_text("not DICOM")
        stored, problems = pacs.dicomweb.send(cfg, cfg.node("web"), ge_files[:10] + [junk], batch=4)
        assert stored == 10 and [p for p, _ in problems] == [str(junk)]
        found = pacs.search(settings, pacs.StudyQuery(), "web")
        assert len(found) == 1 and found[0].images == 10
    finally:
        o.stop()


class _TokenProxy(http.server.ThreadingHTTPServer):
    """A real HTTP gateway in front of Orthanc that wants a bearer token (as an OAuth-protected
    DICOMweb endpoint does) and forwards with Orthanc's own credentials."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream, self.token, self.seen = upstream, token, []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a) -> None:  # noqa: ANN002
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv: _TokenProxy = self.server  # type: ignore[assignment]
        srv.seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"Bearer {srv.token}":
            self.send_response(401)
            self.end_headers()
            return
        req = urllib.request.Request(srv.upstream + self.path)
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        if self.headers.get("Accept"):
            req.add_header("Accept", self.headers["Accept"])
        with urllib.request.urlopen(req, timeout=30) as up:
            body = up.read()
            self.send_response(up.status)
            self.send_header("Content-Type", up.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


def test_token_auth_sends_the_bearer_token_from_the_environment(settings, orthanc, monkeypatch):
    proxy = _TokenProxy(orthanc.url, "t0ken-42")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/dicom-web"
        monkeypatch.setenv("CASEBOOK_TEST_TOKEN", "t0ken-42")
        pacs.save_nodes(Path(settings.pacs.nodes_file), [pacs.Node("gw", kind="dicomweb", url=url, auth="token",
                                                                   token_env="CASEBOOK_TEST_TOKEN")])
        assert pacs.search(settings, pacs.StudyQuery(patient_id="QMNx85rKkkg"), "gw")[0].images == 28
        assert proxy.seen[-1] == "Bearer t0ken-42"
        assert "t0ken" not in Path(settings.pacs.nodes_file).read_text()  # the secret stays in the environment
        monkeypatch.setenv("CASEBOOK_TEST_TOKEN", "stale")
        with pytest.raises(pacs.PacsError, match=r"'gw'.*authentication refused \(HTTP 401\)"):
            pacs.search(settings, pacs.StudyQuery(), "gw")
        monkeypatch.setenv("CASEBOOK_TEST_TOKEN", "")
        with pytest.raises(pacs.PacsError, match=r"'gw'.*no token is set \(CASEBOOK_TEST_TOKEN is empty\)"):
            pacs.search(settings, pacs.StudyQuery(), "gw")
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_cli_web_search_get_send(settings, orthanc, capsys, monkeypatch, tmp_path, ge_files):
    import json

    from casebook.viewer.cli import main

    cfg_file = tmp_path / "settings.toml"
    settings.save(cfg_file)
    monkeypatch.setenv("CASEBOOK_CONFIG", str(cfg_file))
    monkeypatch.delenv("CASEBOOK_LIBRARY", raising=False)
    assert main(["web", "search", "--modality", "CT", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 1
    assert main(["web", "get", found[0]["study_uid"], "--no-embed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["complete"]
    assert main(["web", "send", str(ge_files[0])]) == 0
    assert "1 of 1 files stored" in capsys.readouterr().out
    assert main(["web", "send", str(tmp_path / "missing")]) == 2
