"""DIMSE with pynetdicom: C-ECHO, C-FIND (study and series level), C-MOVE and C-GET.

Every failure becomes a :class:`PacsError` naming the node and the reason a hospital's IT can act
on: the node is down (connection refused), the host is unknown, no answer within the timeout, the
TLS handshake failed, the node rejected the association (and why: e.g. "Calling AE title not
recognised" when the PACS does not know Casebook), or it refused the query or retrieve (status).
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from pydicom.dataset import Dataset

from casebook.common.errors import Cancelled

from ...progress import SupportsCancel
from .errors import PacsError
from .nodes import Node, PacsConfig
from .query import RemoteSeries, RemoteStudy, StudyQuery, study_from_dataset, to_int, wildcard
from .storage import instance_path, uids_of, write_instance

log = logging.getLogger(__name__)
# pynetdicom logs each refused or failed association at ERROR; Casebook turns every one of them into
# one PacsError naming the node and the reason, so its own lines would only say the same thing twice.
_pynetdicom_log = logging.getLogger("pynetdicom")
if _pynetdicom_log.level == logging.NOTSET:
    _pynetdicom_log.setLevel(logging.CRITICAL)

_PENDING = (0xFF00, 0xFF01)
_STUDY_KEYS = ("PatientID", "PatientName", "StudyDate", "StudyDescription", "AccessionNumber",
               "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
               "StudyInstanceUID")


def tls_context(node: Node) -> ssl.SSLContext:
    """Client TLS context of a node: its CA (or the system's), its client certificate if any."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.ca_file or None)
        if node.cert_file:
            ctx.load_cert_chain(node.cert_file, node.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise PacsError(node.name, f"TLS set-up failed: {exc}") from exc
    if not node.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _why_not_connected(node: Node, timeout: float) -> str:
    """Tell node down / unknown host / timeout / TLS apart (pynetdicom only says it failed)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout) as sock:
            if node.tls:
                try:
                    with tls_context(node).wrap_socket(sock, server_hostname=node.host):
                        pass
                except (ssl.SSLError, OSError) as exc:
                    return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    except socket.gaierror:
        return f"unknown host {node.host!r}"
    except ConnectionRefusedError:
        return f"node down: connection refused at {node.host}:{node.port}"
    except (socket.timeout, TimeoutError):
        return f"timeout: no connection to {node.host}:{node.port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot reach {node.host}:{node.port}: {exc.strerror or exc}"
    return f"no answer to the association request within {timeout:g} s"


def _reject_reason(assoc: Any) -> str:
    prim = getattr(assoc.acceptor, "primitive", None)
    reason = getattr(prim, "reason_str", "") or "no reason given"
    source = getattr(prim, "source_str", "")
    return f"association rejected: {reason}{f' ({source})' if source else ''}"


def _make_ae(cfg: PacsConfig, node: Node) -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=cfg.local.ae_title)
    t = cfg.timeout(node)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = t
    ae.connection_timeout = t
    ae.maximum_pdu_size = 0
    return ae


@contextmanager
def associate(cfg: PacsConfig, node: Node, ae: Any, *, evt_handlers: list | None = None,
              ext_neg: list | None = None) -> Iterator[Any]:
    """An established association with ``node`` (released at the end), or a :class:`PacsError`."""
    if not node.is_dimse:
        raise PacsError(node.name, "is a DICOMweb node; use `casebook web` or choose a DIMSE node")
    tls = (tls_context(node), node.host) if node.tls else None
    for attempt in (1, 2):
        t0 = time.monotonic()
        try:
            assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=tls,
                                 evt_handlers=evt_handlers, ext_neg=ext_neg)
        except socket.gaierror as exc:
            raise PacsError(node.name, f"unknown host {node.host!r}") from exc
        except OSError as exc:
            raise PacsError(node.name, _why_not_connected(node, cfg.timeout(node))) from exc
        if assoc.is_established:
            break
        answer = getattr(assoc.acceptor, "primitive", None)
        if assoc.is_rejected or getattr(answer, "result", None) in (1, 2):  # 1, 2: rejected (permanent, transient)
            raise PacsError(node.name, _reject_reason(assoc))
        waited = time.monotonic() - t0
        why = _why_not_connected(node, cfg.timeout(node))
        if why.startswith("no answer") and waited < 0.9 * cfg.timeout(node):
            if getattr(answer, "result", None) == 0:
                why = "the node accepted none of the requested services (presentation contexts)"
            elif attempt == 1:
                # a node that rejects and closes at once can be read as an abort when the close arrives
                # before the rejection (seen with Orthanc under load): ask once more for its reason
                log.info("PACS node %r aborted the association request; asking once more", node.name)
                continue
            else:
                why = "the node aborted the association"
        raise PacsError(node.name, why)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status_text(status: Dataset | None) -> str:
    if status is None or "Status" not in status:
        return "no response (timeout or the association was aborted)"
    code = int(status.Status)
    comment = str(status.get("ErrorComment", "") or "")
    return f"status 0x{code:04X}{f' ({comment})' if comment else ''}"


def echo(cfg: PacsConfig, node: Node) -> float:
    """C-ECHO round trip in seconds; :class:`PacsError` says why the node cannot be used."""
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = _make_ae(cfg, node)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    with associate(cfg, node, ae) as assoc:
        status = assoc.send_c_echo()
    if status is None or int(getattr(status, "Status", -1)) != 0:
        raise PacsError(node.name, f"C-ECHO failed: {_status_text(status)}")
    return time.perf_counter() - t0


def _no_answer(cfg: PacsConfig, what: str) -> str:
    return (f"{what}: the node ended the association without an answer (timeout, or it does not accept "
            f"queries from Casebook's AE title {cfg.local.ae_title!r}: add it to the node's DICOM modalities)")


def _find(cfg: PacsConfig, node: Node, ident: Dataset, limit: int, cancel: SupportsCancel | None) -> list[Dataset]:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND  # type: ignore[attr-defined]

    ae = _make_ae(cfg, node)
    ae.add_requested_context(FIND)
    out: list[Dataset] = []
    with associate(cfg, node, ae) as assoc:
        for status, found in assoc.send_c_find(ident, FIND):
            if status is None or "Status" not in status:
                raise PacsError(node.name, _no_answer(cfg, "C-FIND"))
            code = int(status.Status)
            if code in _PENDING:
                if found is not None:
                    out.append(found)
                if len(out) >= limit or (cancel is not None and cancel.is_set()):
                    assoc.abort()  # stop the node sending more than we will show
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"C-FIND at {node.name} cancelled")
                    break
            elif code != 0:
                raise PacsError(node.name, f"C-FIND refused: {_status_text(status)}")
    return out


def find_studies(cfg: PacsConfig, node: Node, q: StudyQuery, *, cancel: SupportsCancel | None = None) -> list[RemoteStudy]:
    """Study-level C-FIND (patient ID, name, dates, modality, accession number, description)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = q.patient_id.strip()
    ds.PatientName = wildcard(q.patient_name)
    ds.IssuerOfPatientID = ""  # asked for, not matched on: many nodes cannot match on it
    ds.StudyDate = q.date_range()
    ds.StudyTime = ""
    ds.StudyDescription = wildcard(q.description)
    ds.AccessionNumber = q.accession_number.strip()
    ds.ModalitiesInStudy = q.modality.strip().upper()
    ds.NumberOfStudyRelatedSeries = None
    ds.NumberOfStudyRelatedInstances = None
    ds.StudyInstanceUID = q.study_uid.strip()
    out = []
    for r in _find(cfg, node, ds, q.limit, cancel):
        out.append(study_from_dataset(node.name, r))
    return [s for s in out if s.study_uid]


def find_series(cfg: PacsConfig, node: Node, study_uid: str, *, cancel: SupportsCancel | None = None) -> list[RemoteSeries]:
    """Series-level C-FIND within one study, with each series' image count."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    ds.SeriesNumber = None
    ds.SeriesDescription = ""
    ds.NumberOfSeriesRelatedInstances = None
    out = []
    for r in _find(cfg, node, ds, 100000, cancel):
        uid = str(r.get("SeriesInstanceUID", "") or "")
        if uid:
            out.append(RemoteSeries(series_uid=uid, study_uid=study_uid, modality=str(r.get("Modality", "") or ""),
                                    number=to_int(r.get("SeriesNumber")),
                                    description=str(r.get("SeriesDescription", "") or ""),
                                    images=to_int(r.get("NumberOfSeriesRelatedInstances"))))
    return out


@dataclass
class SubOps:
    """What a C-MOVE or C-GET reported for one series."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    problem: str = ""  # "" when the node reported success


def _series_ident(study_uid: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    return ds


def _follow(cfg: PacsConfig, node: Node, what: str, responses: Any, assoc: Any, tick: Callable[[], None],
            cancel: SupportsCancel | None) -> SubOps:
    ops = SubOps()
    answered = False
    for status, _ident in responses:
        if cancel is not None and cancel.is_set():
            assoc.abort()
            raise Cancelled(f"{what} from {node.name} cancelled")
        if status is None or "Status" not in status:
            ops.problem = (f"{what}: the association ended part-way (the node went down or stopped the transfer)"
                           if answered else _no_answer(cfg, what))
            break
        answered = True
        code = int(status.Status)
        ops.completed = int(status.get("NumberOfCompletedSuboperations", ops.completed) or 0)
        ops.failed = int(status.get("NumberOfFailedSuboperations", ops.failed) or 0)
        ops.warning = int(status.get("NumberOfWarningSuboperations", ops.warning) or 0)
        tick()
        if code in _PENDING:
            continue
        if code not in (0x0000, 0xB000):  # success, or "completed with failures / warnings"
            ops.problem = f"{what} refused: {_status_text(status)}"
            if code == 0xA801:
                ops.problem += f" (the node does not know the move destination {assoc.requestor.ae_title!r}: " \
                               "add Casebook to its DICOM modalities)"
        elif ops.failed:
            ops.problem = f"{ops.failed} image(s) failed to transfer ({_status_text(status)})"
    if ops.problem == "" and not assoc.is_established and not getattr(assoc, "is_released", False):
        ops.problem = "the association was aborted"
    return ops


def move_series(cfg: PacsConfig, node: Node, study_uid: str, series_uids: Sequence[str], *,
                tick: Callable[[], None], cancel: SupportsCancel | None = None) -> dict[str, SubOps]:
    """C-MOVE each series to Casebook's own AE title (its storage SCP must be listening)."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # type: ignore[attr-defined]

    ae = _make_ae(cfg, node)
    ae.add_requested_context(MOVE)
    out: dict[str, SubOps] = {}
    with associate(cfg, node, ae) as assoc:
        for uid in series_uids:
            resp = assoc.send_c_move(_series_ident(study_uid, uid), cfg.local.ae_title, MOVE)
            out[uid] = _follow(cfg, node, "C-MOVE", resp, assoc, tick, cancel)
            if not assoc.is_established:
                break
    return out


def get_series(cfg: PacsConfig, node: Node, study_uid: str, series_uids: Sequence[str], library_dir: Path, *,
               sop_classes: Sequence[str], tick: Callable[[str], None],
               cancel: SupportsCancel | None = None) -> dict[str, SubOps]:
    """C-GET each series over one association; images come back on it (no SCP port needed)."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET  # type: ignore[attr-defined]

    ae = _make_ae(cfg, node)
    ae.add_requested_context(GET)
    classes = list(dict.fromkeys(sop_classes)) or [cx.abstract_syntax for cx in StoragePresentationContexts]
    classes = classes[:127]  # an association holds at most 128 presentation contexts
    roles = []
    for uid in classes:
        ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES[:])
        roles.append(build_role(uid, scp_role=True))
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        try:
            data = event.encoded_dataset()
            study, series, sop = uids_of(data)
        except Exception:  # noqa: BLE001 - an undecodable image is refused, the rest goes on
            return 0xC000
        try:
            write_instance(instance_path(library_dir, study, series, sop), data)
        except OSError:
            return 0xA700
        with lock:
            tick(series)
        return 0x0000

    out: dict[str, SubOps] = {}
    with associate(cfg, node, ae, evt_handlers=[(evt.EVT_C_STORE, on_store)], ext_neg=roles) as assoc:
        for uid in series_uids:
            resp = assoc.send_c_get(_series_ident(study_uid, uid), GET)
            out[uid] = _follow(cfg, node, "C-GET", resp, assoc, lambda: None, cancel)
            if not assoc.is_established:
                break
    return out


def sop_classes_in_study(cfg: PacsConfig, node: Node, study_uid: str) -> list[str]:
    """The study's SOP classes (to propose exactly those storage contexts for C-GET)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    ds.SOPClassesInStudy = ""
    found = _find(cfg, node, ds, 10, None)
    out: list[str] = []
    for r in found:
        v = r.get("SOPClassesInStudy", "") or []
        out.extend([str(v)] if isinstance(v, str) else [str(x) for x in v])
    return [u for u in out if u]


__all__ = ["SubOps", "associate", "echo", "find_series", "find_studies", "get_series", "move_series",
           "sop_classes_in_study", "tls_context"]
