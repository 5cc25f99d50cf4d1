"""Casebook's storage SCP and the DIMSE failure messages, with real associations over loopback
(pynetdicom as the sending modality) and real sockets; no PACS needed."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pydicom
import pytest

from casebook.viewer.core.config import PacsSettings
from casebook.viewer.core.services import pacs
from casebook.viewer.core.services.pacs.storage import instance_path


def _send(path: Path, port: int, calling: str) -> tuple[bool, int | None]:
    """C-STORE ``path`` to 127.0.0.1:port as ``calling``: (association accepted, status)."""
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CASEBOOK")
    if not assoc.is_established:
        return False, None
    status = assoc.send_c_store(ds)
    assoc.release()
    return True, int(status.Status)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm"])
def test_scp_stores_a_known_senders_image_byte_for_byte_and_refuses_strangers(tmp_path, sample_file, name):
    src = sample_file(name)  # uncompressed, and JPEG 2000 kept in its transfer syntax
    pushed: list[tuple[list[str], bool]] = []
    scp = pacs.StorageSCP(tmp_path, ae_title="CASEBOOK", bind="127.0.0.1", port=0, allowed_aets=["CT1"],
                          on_push=lambda studies, ok: pushed.append((studies, ok)))
    with scp:
        assert _send(src, scp.port, "STRANGER") == (False, None)
        assert scp.stored == 0 and not (tmp_path / "received").exists()
        assert _send(src, scp.port, "CT1") == (True, 0)
    ds = pydicom.dcmread(src)
    got = instance_path(tmp_path, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    back = pydicom.dcmread(got)
    assert back.PixelData == ds.PixelData and back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert pushed == [([str(ds.StudyInstanceUID)], True)]


def test_busy_port_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        scp = pacs.StorageSCP(tmp_path, ae_title="CASEBOOK", bind="127.0.0.1", port=port, allowed_aets=["X"])
        with pytest.raises(pacs.PacsError, match=rf"cannot listen on 127.0.0.1:{port}.*pacs.scp_port"):
            scp.start()


def test_a_node_that_never_answers_is_a_timeout(tmp_path):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        held: list[socket.socket] = []
        threading.Thread(target=lambda: held.append(srv.accept()[0]), daemon=True).start()
        cfg = pacs.PacsConfig(PacsSettings(timeout_s=1.0), [])
        node = pacs.Node("silent", ae_title="PACS", host="127.0.0.1", port=srv.getsockname()[1])
        with pytest.raises(pacs.PacsError, match=r"'silent'.*(no answer .* within 1 s|timeout)"):
            pacs.dimse.echo(cfg, node)
        for c in held:
            c.close()
