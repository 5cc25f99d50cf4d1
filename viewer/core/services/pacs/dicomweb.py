"""DICOMweb with dicomweb-client: QIDO-RS search, WADO-RS retrieve, STOW-RS send.

Basic authentication (``auth = "basic"``, password from ``password_env``) and bearer tokens
(``auth = "token"``, from ``token_env``) are set on the HTTP session; TLS uses the node's CA file
(or the system's) and an optional client certificate. Every failure is a :class:`PacsError`
naming the node and the reason: the server is down, the name does not resolve, TLS failed,
authentication was refused (HTTP 401/403), the request timed out, or the server said no.
"""
from __future__ import annotations

import io
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pydicom
from pydicom.dataset import Dataset


from ...progress import ProgressCallback, SupportsCancel, check_cancel, no_progress
from .errors import PacsError
from .nodes import Node, PacsConfig
from .query import RemoteSeries, RemoteStudy, StudyQuery, study_from_dataset, to_int, wildcard
from .storage import instance_path, uids_of, write_instance

log = logging.getLogger(__name__)

_STUDY_FIELDS = ["StudyInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName", "StudyDate", "StudyDescription",
                 "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
_SERIES_FIELDS = ["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances"]


def _session(cfg: PacsConfig, node: Node) -> Any:
    import requests

    timeout = cfg.timeout(node)

    class _Session(requests.Session):
        def request(self, *a: Any, **kw: Any) -> Any:  # every request gets the node's timeout
            kw.setdefault("timeout", timeout)
            return super().request(*a, **kw)

        def send(self, request: Any, **kw: Any) -> Any:
            # QIDO wildcards go as a literal "*" (legal in a query, RFC 3986): servers such as
            # Orthanc's DICOMweb plugin do not decode "%2A" and would match nothing
            if request.url and "?" in request.url:
                base, query = request.url.split("?", 1)
                request.url = base + "?" + query.replace("%2A", "*").replace("%2a", "*")
            return super().send(request, **kw)

    s = _Session()
    if node.auth == "basic":
        s.auth = (node.username, node.secret())
    elif node.auth == "token":
        tok = node.secret()
        if not tok:
            raise PacsError(node.name, f"auth = token but no token is set{f' ({node.token_env} is empty)' if node.token_env else ''}")
        s.headers["Authorization"] = f"Bearer {tok}"
    s.verify = node.ca_file or node.verify
    if node.cert_file:
        s.cert = (node.cert_file, node.key_file) if node.key_file else node.cert_file
    return s


def client(cfg: PacsConfig, node: Node) -> Any:
    """A dicomweb-client over the node's URL with its authentication and TLS settings."""
    from dicomweb_client.api import DICOMwebClient

    if node.kind != "dicomweb":
        raise PacsError(node.name, "is a DIMSE node; use `casebook pacs` or choose a DICOMweb node")
    c = DICOMwebClient(url=node.url.rstrip("/"), session=_session(cfg, node))
    # its default retries a failed request five times with exponential waits (30 s before a down
    # server is reported); the reader asked now, and the next search or retrieve is the retry
    c.set_http_retry_params(retry=False)
    return c


@contextmanager
def web_errors(node: Node, what: str) -> Iterator[None]:
    """Turn HTTP, TLS and connection failures into one :class:`PacsError` naming node and reason."""
    import requests

    try:
        yield
    except requests.exceptions.SSLError as exc:
        raise PacsError(node.name, f"{what}: TLS error talking to {node.url} ({_short(exc)})") from exc
    except requests.exceptions.ConnectTimeout as exc:
        raise PacsError(node.name, f"{what}: timeout connecting to {node.url}") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise PacsError(node.name, f"{what}: timeout: {node.url} did not answer in time") from exc
    except requests.exceptions.ConnectionError as exc:
        text = str(exc)
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            raise PacsError(node.name, f"{what}: unknown host in {node.url}") from exc
        if "refused" in text.lower():
            raise PacsError(node.name, f"{what}: node down: connection refused at {node.url}") from exc
        raise PacsError(node.name, f"{what}: cannot reach {node.url} ({_short(exc)})") from exc
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        if code in (401, 403):
            raise PacsError(node.name, f"{what}: authentication refused (HTTP {code}); check the node's "
                                       f"username and password or token") from exc
        if code == 404:
            raise PacsError(node.name, f"{what}: not found on the server (HTTP 404): wrong URL, or the "
                                       "study is no longer there") from exc
        raise PacsError(node.name, f"{what}: the server answered HTTP {code}") from exc
    except (ValueError, OSError) as exc:  # a malformed multipart or JSON answer
        raise PacsError(node.name, f"{what}: unreadable answer from {node.url} ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:197] + "..."


def search_studies(cfg: PacsConfig, node: Node, q: StudyQuery) -> list[RemoteStudy]:
    """QIDO-RS study search with the same fields as the DIMSE C-FIND."""
    filters: dict[str, str] = {}
    for key, value in (("PatientID", q.patient_id.strip()), ("PatientName", wildcard(q.patient_name)),
                       ("StudyDate", q.date_range()), ("StudyDescription", wildcard(q.description)),
                       ("AccessionNumber", q.accession_number.strip()),
                       ("ModalitiesInStudy", q.modality.strip().upper()), ("StudyInstanceUID", q.study_uid.strip())):
        if value:
            filters[key] = value
    c = client(cfg, node)
    with web_errors(node, "QIDO-RS search"):
        items = c.search_for_studies(search_filters=filters, fields=_STUDY_FIELDS, limit=q.limit)
    out = []
    for it in items:
        st = study_from_dataset(node.name, Dataset.from_json(it))
        if st.study_uid:
            out.append(st)
    return out


def search_series(cfg: PacsConfig, node: Node, study_uid: str) -> list[RemoteSeries]:
    """QIDO-RS series of one study, with each series' image count."""
    c = client(cfg, node)
    with web_errors(node, "QIDO-RS series search"):
        items = c.search_for_series(study_instance_uid=study_uid, fields=_SERIES_FIELDS)
    out = []
    for it in items:
        ds = Dataset.from_json(it)
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if uid:
            out.append(RemoteSeries(series_uid=uid, study_uid=study_uid, modality=str(ds.get("Modality", "") or ""),
                                    number=to_int(ds.get("SeriesNumber")),
                                    description=str(ds.get("SeriesDescription", "") or ""),
                                    images=to_int(ds.get("NumberOfSeriesRelatedInstances"))))
    return out


def _raw_parts(c: Any, node: Node, study_uid: str, series_uid: str) -> Iterator[bytes] | None:
    """The series' instances as the server sent them, part by part off the stream (no decode and
    re-encode: the files are byte for byte what the server holds, and a 130-slice series with large
    private headers is written in a fraction of the time). None when this dicomweb-client lacks
    the streaming helpers (then the datasets are decoded and written again)."""
    get, decode = getattr(c, "_http_get", None), getattr(c, "_decode_multipart_message", None)
    if get is None or decode is None:
        return None
    url = f"{node.url.rstrip('/')}/studies/{study_uid}/series/{series_uid}"
    headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    response = get(url, params={}, headers=headers, stream=True)
    if not response.headers.get("Content-Type", "").startswith("multipart/related"):
        return iter([response.content])
    return decode(response, stream=True)


def retrieve_series(cfg: PacsConfig, node: Node, study_uid: str, series_uids: Sequence[str], library_dir: Path, *,
                    tick: Callable[[str], None], cancel: SupportsCancel | None = None) -> dict[str, str]:
    """WADO-RS each series into the received folder, one instance at a time off the multipart
    stream (memory stays flat for a 2000-slice CT). Returns series UID -> problem ("" when whole)."""
    c = client(cfg, node)
    out: dict[str, str] = {}
    for uid in series_uids:
        out[uid] = ""
        try:
            with web_errors(node, "WADO-RS retrieve"):
                parts = _raw_parts(c, node, study_uid, uid)
                if parts is not None:
                    for part in parts:
                        check_cancel(cancel, f"WADO-RS retrieve from {node.name}")
                        _study, series, sop = uids_of(part)
                        write_instance(instance_path(library_dir, study_uid, series, sop), part)
                        tick(uid)
                    continue
                for ds in c.iter_series(study_uid, uid):
                    check_cancel(cancel, f"WADO-RS retrieve from {node.name}")
                    buf = io.BytesIO()
                    ds.save_as(buf, enforce_file_format=True)
                    write_instance(instance_path(library_dir, study_uid, str(ds.SeriesInstanceUID),
                                                 str(ds.SOPInstanceUID)), buf.getvalue())
                    tick(uid)
        except PacsError as exc:
            out[uid] = exc.reason
            if "authentication" in exc.reason or "node down" in exc.reason or "TLS" in exc.reason:
                raise
    return out


def send(cfg: PacsConfig, node: Node, paths: Sequence[Path], *, batch: int = 16,
         progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> tuple[int, list[tuple[str, str]]]:
    """STOW-RS the files (e.g. a de-identified teaching export), a batch per request.

    Returns (images stored, [(file, why not)]); a file that is not DICOM is listed, the rest go on.
    """
    progress = progress or no_progress
    c = client(cfg, node)
    stored = 0
    problems: list[tuple[str, str]] = []
    files = [Path(p) for p in paths]
    for i in range(0, len(files), batch):
        check_cancel(cancel, f"STOW-RS to {node.name}")
        chunk: list[Dataset] = []
        names: list[str] = []
        for p in files[i:i + batch]:
            try:
                chunk.append(pydicom.dcmread(p))
                names.append(str(p))
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                problems.append((str(p), f"not a readable DICOM file ({_short(exc)})"))
        if chunk:
            with web_errors(node, "STOW-RS send"):
                rsp = c.store_instances(chunk)
            failed = rsp.get("FailedSOPSequence", []) if rsp is not None else []
            bad = {str(f.get("ReferencedSOPInstanceUID", "")): int(f.get("FailureReason", 0) or 0) for f in failed}
            for ds, name in zip(chunk, names):
                if str(ds.SOPInstanceUID) in bad:
                    problems.append((name, f"refused by the server (failure reason 0x{bad[str(ds.SOPInstanceUID)]:04X})"))
                else:
                    stored += 1
        progress(min(i + batch, len(files)), len(files), f"sending to {node.name}")
    return stored, problems


__all__ = ["client", "retrieve_series", "search_series", "search_studies", "send", "web_errors"]
