"""Casebook's storage SCP: the C-MOVE destination and the target of studies pushed by a PACS.

It binds to the configured interface only, and accepts associations only from known calling AE
titles (the configured DIMSE nodes plus ``pacs.scp_allowed_aets``): a DICOM port open to any
sender would let anyone on the network write into the reading room's library. Images arrive
byte for byte into the received folder (:mod:`.storage`). Images of a study that a retrieve is
waiting for are counted towards it (:meth:`StorageSCP.expect`); any others are a push, handed to
``on_push`` once the sender releases the association (an aborted push is kept but not ingested:
the sender's next try completes it).

With ``pacs.scp_tls_cert`` set the SCP speaks DICOM TLS only (PS3.15 B.1: TLS 1.2 or later, the
port the same); with ``pacs.scp_tls_ca`` too, a sender must also present a certificate that CA
signed, on top of the AE-title check (:func:`server_tls_context`).
"""
from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from contextlib import contextmanager

from casebook.common.logs import log_ref

from ...config import PacsSettings

from .errors import PacsError
from .storage import instance_path, uids_of, write_instance

log = logging.getLogger(__name__)

# status codes of a C-STORE response (PS3.4 B.2.3)
_OK = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000


def server_tls_context(cert_file: str, key_file: str = "", ca_file: str = "") -> ssl.SSLContext:
    """The storage SCP's TLS context: its certificate and key, and with ``ca_file`` the CA whose
    client certificates it requires. A file that is missing or not PEM is a :class:`PacsError`
    naming the setting, when the SCP is set up, not at the first association."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise PacsError("local SCP", f"TLS certificate pacs.scp_tls_cert={cert_file!r} (key "
                                     f"{key_file or 'in the same file'}) not usable: {getattr(exc, 'strerror', None) or exc}"
                        ) from exc
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise PacsError("local SCP", f"TLS CA pacs.scp_tls_ca={ca_file!r} not usable: "
                                         f"{getattr(exc, 'strerror', None) or exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def scp_tls_context(local: PacsSettings) -> ssl.SSLContext | None:
    """The TLS context the ``[pacs]`` settings ask for (``None``: plain DICOM)."""
    if not local.scp_tls_cert:
        return None
    return server_tls_context(local.scp_tls_cert, local.scp_tls_key, local.scp_tls_ca)


@dataclass
class Expectation:
    """Images of one study a retrieve is waiting for; the SCP counts them as they arrive."""

    study_uid: str
    received: dict[str, set[str]] = field(default_factory=dict)  # series UID -> SOP UIDs
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.received.values())


PushCallback = Callable[[list[str], bool], None]  # (study UIDs, association released normally)


class StorageSCP:
    """A running storage SCP (start it, use it, stop it; also a context manager)."""

    def __init__(self, library_dir: Path, *, ae_title: str, bind: str, port: int, allowed_aets: list[str],
                 on_push: PushCallback | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout_s: float = 30.0) -> None:
        self.library_dir = Path(library_dir)
        self.ae_title = ae_title
        self.bind = bind
        self.port = port
        self.allowed_aets = list(allowed_aets)
        self.on_push = on_push
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s
        self._server = None
        self._expect: dict[str, Expectation] = {}
        self._pushes: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self.stored = 0
        self.refused_calls = 0

    # ---- life cycle
    def start(self) -> "StorageSCP":
        """Listen; :class:`PacsError` when the port is taken or no calling AE title is allowed."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        if not self.allowed_aets:
            raise PacsError("local SCP", "no calling AE title is allowed: configure a DIMSE node or "
                                         "pacs.scp_allowed_aets (an SCP accepting anyone is refused)")
        ae = AE(ae_title=self.ae_title)
        ae.require_calling_aet = self.allowed_aets
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.maximum_pdu_size = 0  # accept whatever PDU size the sender uses (fewer, larger reads)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_end, [True]),
                    (evt.EVT_ABORTED, self._on_end, [False]), (evt.EVT_REJECTED, self._on_rejected)]
        try:
            self._server = ae.start_server((self.bind, self.port), block=False, evt_handlers=handlers,
                                           ssl_context=self.ssl_context)
        except OSError as exc:
            raise PacsError("local SCP", f"cannot listen on {self.bind}:{self.port}: {exc.strerror or exc} "
                                         "(another program uses the port? set pacs.scp_port)") from exc
        if self.port == 0:
            self.port = int(self._server.server_address[1])
        log.info("storage SCP %s listening on %s:%d", self.ae_title, self.bind, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> "StorageSCP":
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- retrieves
    @contextmanager
    def expect(self, study_uid: str) -> Iterator[Expectation]:
        """Count images of ``study_uid`` towards a retrieve while the block runs."""
        e = Expectation(study_uid)
        with self._lock:
            self._expect[study_uid] = e
        try:
            yield e
        finally:
            with self._lock:
                self._expect.pop(study_uid, None)

    # ---- handlers (pynetdicom's threads)
    def _on_store(self, event) -> int:  # noqa: ANN001
        try:
            data = event.encoded_dataset()
            study, series, sop = uids_of(data)
        except Exception as exc:  # noqa: BLE001 - a peer's unreadable dataset is answered, not raised
            log.warning("storage SCP: refused an image that cannot be decoded (%s)", type(exc).__name__)
            return _CANNOT_UNDERSTAND
        try:
            write_instance(instance_path(self.library_dir, study, series, sop), data)
        except OSError as exc:
            log.error("storage SCP: cannot write a received image (%s)", exc.strerror or type(exc).__name__)
            return _OUT_OF_RESOURCES
        with self._lock:
            self.stored += 1
            e = self._expect.get(study)
            if e is None:
                self._pushes.setdefault(id(event.assoc), set()).add(study)
        if e is not None:
            with e.lock:
                e.received.setdefault(series, set()).add(sop)
        return _OK

    def _on_end(self, event, released: bool) -> None:  # noqa: ANN001
        with self._lock:
            studies = sorted(self._pushes.pop(id(event.assoc), set()))
        if studies:
            log.info("storage SCP: push of %d stud%s %s (%s)", len(studies), "y" if len(studies) == 1 else "ies",
                     "ended" if released else "aborted", ", ".join(log_ref(s) for s in studies))
            if self.on_push is not None:
                try:
                    self.on_push(studies, released)
                except Exception:  # noqa: BLE001 - a failing ingest must not kill the listener
                    log.exception("storage SCP: handling a pushed study failed")

    def _on_rejected(self, event) -> None:  # noqa: ANN001
        self.refused_calls += 1


__all__ = ["Expectation", "PushCallback", "StorageSCP", "scp_tls_context", "server_tls_context"]
