"""DICOM TLS on Casebook's storage SCP: real TLS associations (pynetdicom on both sides) against the
push listener, with a throwaway self-signed certificate made here by ``openssl``. A sender that
trusts the certificate pushes real CT slices into the library; a plain-TCP sender, a sender that
does not trust it, and (with a sender CA required) a sender without a client certificate store
nothing."""
from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.conftest import require_shared  # noqa: E402
from tests.orthanc import dicom_files, free_port  # noqa: E402

from casebook.viewer.core.config import Settings  # noqa: E402
from casebook.viewer.core.services import pacs  # noqa: E402

SENDER = "TLSSENDER"


def _cert(folder: Path, name: str, cn: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    """A PEM certificate and key: self-signed, or signed by ``ca`` (cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    if ca is None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
                        "-addext", san, "-keyout", key, "-out", crt], check=True, capture_output=True)
    else:
        csr = folder / f"{name}.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                        "-keyout", key, "-out", csr], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                        "-days", "1", "-out", crt], check=True, capture_output=True)
    return crt, key


def _settings(tmp_path: Path, crt: Path, key: Path, ca: Path | None = None) -> Settings:
    s = Settings(library_dir=tmp_path / "library")
    s.pacs.scp_port = free_port()
    s.pacs.timeout_s = 10.0
    s.pacs.nodes_file = str(tmp_path / "pacs-nodes.toml")
    s.pacs.scp_allowed_aets = SENDER
    s.pacs.scp_tls_cert, s.pacs.scp_tls_key = str(crt), str(key)
    s.pacs.scp_tls_ca = str(ca) if ca else ""
    pacs.save_nodes(Path(s.pacs.nodes_file), [])
    return s


def _push(port: int, files: list[Path], tls: ssl.SSLContext | None) -> tuple[bool, list[int]]:
    """C-STORE ``files`` to the SCP as SENDER; (associated, statuses)."""
    import pydicom
    from pynetdicom import AE, StoragePresentationContexts

    ae = AE(ae_title=SENDER)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.requested_contexts = StoragePresentationContexts[:127]
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="CASEBOOK",
                             tls_args=(tls, "localhost") if tls is not None else None)
    except (ssl.SSLError, OSError):
        return False, []
    if not assoc.is_established:
        return False, []
    statuses = []
    try:
        for f in files:
            st = assoc.send_c_store(pydicom.dcmread(f))
            statuses.append(int(getattr(st, "Status", -1)) if st else -1)
    finally:
        assoc.release()
    return True, statuses


def _client(trust: Path | None, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trust) if trust else None)
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@pytest.fixture(scope="module")
def ct_slices() -> list[Path]:
    return dicom_files(require_shared("dicom", "dcm_qa_ct", "In", "GE"))[:4]


def test_push_over_tls_arrives_and_plain_or_untrusting_senders_store_nothing(tmp_path, ct_slices):
    crt, key = _cert(tmp_path, "scp", "localhost")
    settings = _settings(tmp_path, crt, key)
    with pacs.PushListener(settings, embed=False) as listener:
        port = listener.scp.port
        assert listener.scp.ssl_context is not None
        # plain DICOM against a TLS-only port: no association, nothing stored
        ok, _ = _push(port, ct_slices[:1], None)
        assert not ok
        # TLS, but the sender does not trust the SCP's certificate: the handshake fails
        other, _ = _cert(tmp_path, "other", "someone-else")
        ok, _ = _push(port, ct_slices[:1], _client(other))
        assert not ok
        assert listener.scp.stored == 0
        # a sender that trusts it: every slice is stored, then ingested as a pushed study
        ok, statuses = _push(port, ct_slices, _client(crt))
        assert ok and statuses == [0] * len(ct_slices)
        listener.wait_idle(60)
    assert listener.scp.stored == len(ct_slices)
    assert listener.ingested_studies == 1
    from casebook.viewer.core.services.library import open_store

    store = open_store(settings, create=False)
    try:
        assert sum(s.slice_count for s in store.list_series()) == len(ct_slices)
    finally:
        store.close()


def test_a_required_sender_certificate_is_checked(tmp_path, ct_slices):
    ca = _cert(tmp_path, "ca", "Casebook test CA")
    crt, key = _cert(tmp_path, "scp", "localhost")
    sender = _cert(tmp_path, "sender", SENDER, ca=ca)
    settings = _settings(tmp_path, crt, key, ca=ca[0])
    with pacs.PushListener(settings, embed=False) as listener:
        port = listener.scp.port
        ok, _ = _push(port, ct_slices[:1], _client(crt))  # no client certificate
        assert not ok
        ok, statuses = _push(port, ct_slices[:2], _client(crt, sender))
        assert ok and statuses == [0, 0]
        listener.wait_idle(60)
    assert listener.scp.stored == 2


def test_an_unusable_certificate_is_refused_when_the_scp_is_set_up(tmp_path):
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("not a certificate\n")
    settings = _settings(tmp_path, bad, bad)
    with pytest.raises(pacs.PacsError, match="pacs.scp_tls_cert"):
        pacs.PushListener(settings, embed=False)
