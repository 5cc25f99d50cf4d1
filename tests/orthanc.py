"""A real Orthanc for the PACS tests and the benchmark: started on free loopback ports with a
throwaway configuration and storage folder, stopped at the end.

Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``, installed by
``scripts/setup.sh --test``) refuses C-FIND, C-MOVE and C-GET from AE titles it does not know
(``DicomAlwaysAllowFind/Move/Get`` are false), so the configuration names Casebook's SCP in
``DicomModalities``, exactly as a hospital's PACS administrator would.
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def orthanc_available() -> str:
    """"" when Orthanc and its DICOMweb plugin are installed, else why not."""
    if not Path(ORTHANC_BIN).is_file():
        return "Orthanc is not installed (scripts/setup.sh --test installs the Debian package orthanc)"
    if not Path(DICOMWEB_PLUGIN).exists():
        return "the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb)"
    return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc process; ``modalities`` maps a name to (AE title, port) on 127.0.0.1."""

    def __init__(self, root: Path, *, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]] | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modalities = dict(modalities or {})
        self.users = dict(users or {})
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    def _config(self) -> dict[str, Any]:
        return {
            "Name": "casebook-test",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "storage"),
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomCheckModalityHost": False,
            "DicomScuTimeout": 10,
            "DicomModalities": {name: {"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowFind": True,
                                       "AllowMove": True, "AllowGet": True, "AllowStore": True, "AllowEcho": True}
                                for name, (aet, port) in self.modalities.items()},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "ConcurrentJobs": 2,
            "SaveJobs": False,
            "OverwriteInstances": True,
        }

    def start(self, timeout: float = 30.0) -> "Orthanc":
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(self._config(), indent=1), encoding="utf-8")
        (self.root / "logs").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([ORTHANC_BIN, f"--logdir={self.root / 'logs'}", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}; logs in {self.root / 'logs'}")
            try:
                self.rest("GET", "/system")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:g} s; logs in {self.root / 'logs'}")

    def stop(self, graceful: bool = False) -> None:
        """Stop Orthanc; a throwaway one is killed (its clean shutdown takes seconds)."""
        if self.proc is not None and self.proc.poll() is None:
            if not graceful:
                self.proc.kill()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "Orthanc":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- REST
    def rest(self, method: str, path: str, body: bytes | dict | list | None = None,
             content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.users:
            user, pw = next(iter(self.users.items()))
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def upload(self, paths: Iterable[Path]) -> list[str]:
        """POST each file to /instances; returns Orthanc's instance IDs."""
        ids = []
        for p in paths:
            r = self.rest("POST", "/instances", Path(p).read_bytes(), "application/dicom")
            ids.append(r["ID"])
        return ids

    def add_modality(self, name: str, aet: str, port: int) -> None:
        self.rest("PUT", f"/modalities/{name}", {"AET": aet, "Host": "127.0.0.1", "Port": port,
                                                  "AllowFind": True, "AllowMove": True, "AllowGet": True})

    def delete_instances(self, ids: Iterable[str]) -> None:
        for i in ids:
            self.rest("DELETE", f"/instances/{i}")


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM image files under ``folder`` (Part 10 with rows: no DICOMDIRs, no raw data), sorted."""
    import pydicom

    out = []
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM" and "Rows" in pydicom.dcmread(p, stop_before_pixels=True):
                out.append(p)
    return out





# ---- a Casebook set up against an Orthanc, for the tests --------------------------------------

def casebook_settings(tmp: Path, orthanc: "Orthanc", scp_port: int, *, library: Path | None = None,
                      web_auth: tuple[str, str] | None = None) -> Any:
    """Settings with a library in ``tmp`` and a nodes file naming ``orthanc`` twice: as the DIMSE
    node "pacs" and as the DICOMweb node "web" (basic auth when ``web_auth`` is given)."""
    from casebook.viewer.core.config import Settings
    from casebook.viewer.core.services.pacs import Node, save_nodes

    s = Settings(library_dir=library or tmp / "library")
    s.pacs.scp_port = scp_port
    s.pacs.timeout_s = 10.0
    s.pacs.nodes_file = str(tmp / "pacs-nodes.toml")
    web = Node("web", kind="dicomweb", url=orthanc.dicomweb_url)
    if web_auth:
        web.auth, web.username, web.password = "basic", web_auth[0], web_auth[1]
    save_nodes(Path(s.pacs.nodes_file), [Node("pacs", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port),
                                         web])
    return s


def pixel_bytes(path: Path) -> tuple[str, bytes]:
    """(SOP Instance UID, raw PixelData bytes) of a file."""
    import pydicom

    ds = pydicom.dcmread(path)
    return str(ds.SOPInstanceUID), bytes(ds.PixelData)
__all__ = ["DICOMWEB_PLUGIN", "ORTHANC_BIN", "Orthanc", "casebook_settings", "dicom_files", "free_port", "orthanc_available", "pixel_bytes"]
