"""HL7 v2 ORU^R01 result messages (v2.3 to v2.5, as RIS send reports) to report documents.

Parsed with the maintained ``hl7`` package (python-hl7). Which fields carry what follows what
radiology information systems send (IHE Radiology, and the common variants):

- ``MSH-18`` character set (``ASCII``, ``8859/1``, ``8859/15``, ``UNICODE UTF-8``); without it a
  file must be UTF-8 (or the caller names its encoding); ``MSH-9`` must be ``ORU^R01``;
- ``PID-3`` patient ID: the repetition whose identifier type (``CX.5``) is ``MR`` (else the first),
  its ID (``CX.1``) and assigning authority (``CX.4``'s namespace ID, as DICOM's Issuer of Patient ID),
  which must agree with the study's Issuer of Patient ID for a patient-keyed link;
- ``OBR-18`` accession number, else ``OBR-3`` (filler order number, which many RIS set to the
  accession); ``OBR-3`` is also the report's own id; ``OBR-7`` study date/time; ``OBR-22`` report
  time (else ``MSH-7``); ``OBR-24`` modality when it is a DICOM modality code; ``OBR-25`` result
  status (``P`` preliminary, ``F`` final, ``C`` corrected, ``X`` cancelled); ``OBR-32`` reading
  radiologist;
- ``OBX`` ``TX``/``FT``/``ST`` lines are the report text, assigned to a section by ``OBX-3``
  (``&IMP`` impression, ``&HIS`` history, ``&TCM`` technique, and the LOINC codes 18782-3
  findings, 19005-8 impression, 18785-6/55752-0 history, 55111-9 technique); the rest (``&GDT``
  general text) is split on its headings; ``CE``/``CWE`` values are coded diagnoses
  (``code^text^system``); an ``OBX-3`` of ``113014^Study Instance UID^DCM`` (or a ``ZDS-1``)
  names the Study Instance UID.

A file may hold several messages (one per ``MSH``; MLLP framing bytes are ignored). Each message is
parsed whole before anything is stored: a malformed one is a :class:`ReportFormatError` naming the
file and the message, and the others still count.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path

from casebook.index.case_store.report_records import ReportDocumentIn

from .errors import ReportFormatError
from .sections import Sections, diagnosis_from_impression, split_sections

CHARSETS = {"": None, "ascii": "ascii", "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/5": "iso8859-5",
            "8859/7": "iso8859-7", "8859/9": "iso8859-9", "8859/15": "iso8859-15", "unicode utf-8": "utf-8",
            "utf-8": "utf-8", "unicode": "utf-8", "iso ir192": "utf-8", "iso ir100": "latin-1"}
DICOM_MODALITIES = {"CT", "MR", "CR", "DX", "MG", "US", "NM", "PT", "XA", "RF", "OT", "SC", "DR", "IO", "OP"}
_STATUS = {"P": "preliminary", "F": "final", "C": "corrected", "A": "corrected", "X": "cancelled",
           "R": "preliminary", "S": "preliminary", "I": "preliminary"}
_OBX_SECTION = {"FIND": "findings", "18782-3": "findings", "IMP": "impression",
                "19005-8": "impression", "HIS": "history", "HIST": "history", "IND": "history",
                "18785-6": "history", "55752-0": "history", "TCM": "technique", "TECH": "technique",
                "55111-9": "technique", "DIAG": "impression"}
_TEXT_TYPES = {"TX", "FT", "ST"}
_CODED_TYPES = {"CE", "CWE", "CNE"}


def parse_ts(value: str) -> datetime | None:
    """An HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as a naive datetime, None if empty."""
    v = re.sub(r"[+-]\d{4}$", "", value.strip()).split(".")[0]
    if not v:
        return None
    if not re.fullmatch(r"\d{4,14}", v):
        raise ValueError(f"{value!r} is not an HL7 date/time")
    fmt = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(v))
    if fmt is None:
        raise ValueError(f"{value!r} is not an HL7 date/time")
    return datetime.strptime(v, fmt)


def decode(raw: bytes, path: Path, encoding: str | None = None) -> str:
    """The file's text in the character set MSH-18 names (or ``encoding``, else UTF-8)."""
    if encoding is None:
        head = raw[:2000].decode("ascii", errors="replace")
        m = re.search(r"MSH(.)", head)
        if m:
            sep = m.group(1)
            first = head[m.start():].split("\r")[0].split("\n")[0]
            fields = first.split(sep)
            charset = fields[17].strip() if len(fields) > 17 else ""
            if charset.lower() not in CHARSETS:
                raise ReportFormatError(f"{path}: MSH-18 names the character set {charset!r}, which Casebook "
                                        f"cannot read (known: {', '.join(k for k in CHARSETS if k)})")
            encoding = CHARSETS[charset.lower()]
    try:
        return raw.decode(encoding or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        at = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
        raise ReportFormatError(f"{path}: not valid {encoding or 'UTF-8'}{at} and MSH-18 names no other character "
                                "set; give the file's encoding (`--encoding latin-1`)") from exc


def split_messages(text: str) -> list[str]:
    """One string per message, segments separated by CR as HL7 wants (MLLP framing dropped)."""
    text = text.replace("\x0b", "").replace("\x1c", "").replace("\r\n", "\r").replace("\n", "\r")
    out: list[list[str]] = []
    for seg in text.split("\r"):
        if not seg.strip():
            continue
        if seg.startswith("MSH"):
            out.append([])
        if not out:
            raise ValueError(f"text before the first MSH segment ({seg[:20]!r})")
        out[-1].append(seg)
    return ["\r".join(m) for m in out]


def _text(raw: str) -> str:
    return raw.replace("\r", "\n")


def parse_message(text: str, path: Path, number: int) -> ReportDocumentIn:
    """One ORU^R01 message as a report document (see the module docstring)."""
    import hl7

    where = f"{path}: message {number}"
    try:
        msg = hl7.parse(text)
    except Exception as exc:  # the parser raises plain exceptions on broken structure
        raise ReportFormatError(f"{where}: not an HL7 v2 message ({exc.__class__.__name__}: {exc})") from exc
    try:
        msh = msg.segment("MSH")
    except KeyError as exc:
        raise ReportFormatError(f"{where}: no MSH segment") from exc
    kind = f"{msh.extract_field(field_num=9)}^{msh.extract_field(field_num=9, component_num=2)}"
    if kind != "ORU^R01":
        raise ReportFormatError(f"{where}: is {kind.strip('^') or 'of no type'} (MSH-9), not an ORU^R01 result")
    control = msh.extract_field(field_num=10)
    segs = {name: msg.segments(name) if _has(msg, name) else [] for name in ("PID", "OBR", "OBX", "ZDS")}
    if not segs["OBR"]:
        raise ReportFormatError(f"{where}: has no OBR segment (the order the report belongs to)")
    if not segs["OBX"]:
        raise ReportFormatError(f"{where}: has no OBX segment (no report text)")
    obr = segs["OBR"][0]
    pid, issuer = _patient_id(segs["PID"][0]) if segs["PID"] else ("", "")
    filler = obr.extract_field(field_num=3)
    accession = obr.extract_field(field_num=18) or filler
    try:
        study_dt = parse_ts(obr.extract_field(field_num=7))
        observed = parse_ts(obr.extract_field(field_num=22)) or parse_ts(msh.extract_field(field_num=7))
    except ValueError as exc:
        raise ReportFormatError(f"{where}: {exc}") from exc
    modality = obr.extract_field(field_num=24).upper()
    modality = modality if modality in DICOM_MODALITIES else ""
    status_code = (obr.extract_field(field_num=25) or segs["OBX"][0].extract_field(field_num=11)).upper()[:1]
    status = _STATUS.get(status_code, "final")
    # OBR-32: v2.5 "id&family&given" in its first component, v2.3 "id^family^given"
    author = (" ".join(p for p in (obr.extract_field(field_num=32, component_num=1, subcomponent_num=3),
                                   obr.extract_field(field_num=32, component_num=1, subcomponent_num=2)) if p)
              or " ".join(p for p in (obr.extract_field(field_num=32, component_num=3),
                                      obr.extract_field(field_num=32, component_num=2)) if p)
              or obr.extract_field(field_num=32))
    study_uid = segs["ZDS"][0].extract_field(field_num=1) if segs["ZDS"] else ""
    by_section: dict[str, list[str]] = {"history": [], "technique": [], "findings": [], "impression": []}
    loose: list[str] = []
    coded: tuple[str, str] | None = None
    for n, obx in enumerate(segs["OBX"], 1):
        vtype = obx.extract_field(field_num=2).upper()
        ident = str(obx[3]) if len(obx) > 3 else ""
        code = ident.split("^")[0].lstrip("&").upper()
        if len(ident.split("^")) > 1 and ident.split("^")[0] == "113014":
            study_uid = study_uid or obx.extract_field(field_num=5)
            continue
        if vtype in _TEXT_TYPES:
            reps = str(obx[5]).split("~") if len(obx) > 5 else []
            lines = [_text(obx.extract_field(field_num=5, repeat_num=r + 1)) for r in range(len(reps))]
            body = "\n".join(lines)
            sec = _OBX_SECTION.get(code)
            (by_section[sec] if sec else loose).append(body)
        elif vtype in _CODED_TYPES:
            c_value = obx.extract_field(field_num=5, component_num=1)
            c_text = obx.extract_field(field_num=5, component_num=2)
            c_sys = obx.extract_field(field_num=5, component_num=3)
            if not (c_value or c_text):
                raise ReportFormatError(f"{where}: OBX {n} is coded ({vtype}) but has no code")
            if coded is None:
                coded = (c_text or c_value, f"{c_sys}:{c_value}" if c_value else "")
        elif vtype in ("", "RP", "ED", "NM", "SN", "DT", "TS", "CX", "HD"):
            continue
        else:
            raise ReportFormatError(f"{where}: OBX {n} has the value type {vtype!r}, which is not a report value")
    split = split_sections("\n".join(loose))
    secs = Sections(*("\n\n".join(x for x in (*by_section[k], getattr(split, k)) if x.strip()).strip()
                      for k in ("history", "technique", "findings", "impression")))
    if not secs.any() and coded is None:
        raise ReportFormatError(f"{where}: the OBX segments hold no report text")
    if coded is not None:
        diagnosis, dx_code, dx_source = coded[0], coded[1], "coded"
    else:
        diagnosis, dx_code = diagnosis_from_impression(secs.impression), ""
        dx_source = "impression" if diagnosis else ""
    sha = hashlib.sha256(b"hl7\0" + text.encode("utf-8")).hexdigest()
    return ReportDocumentIn(
        source_kind="hl7", content_sha256=sha, source_path=str(path), source_ref=control or f"message {number}",
        report_id=filler, status=status, observed=observed, accession_number=accession, study_uid=study_uid,
        patient_id=pid, patient_issuer=issuer, study_date=study_dt.date() if study_dt else None, modality=modality,
        author=author,
        history=secs.history, technique=secs.technique, findings=secs.findings, impression=secs.impression,
        diagnosis=diagnosis, diagnosis_code=dx_code, diagnosis_source=dx_source)


def _cx(seg: object, rep: int, comp: int, sub: int | None = None) -> str:
    """One (sub)component of PID-3, "" when the sender left it out (python-hl7 raises on a path
    deeper than the value: "100" has no 5th component)."""
    kw = {"field_num": 3, "repeat_num": rep, "component_num": comp}
    for extra in ([{"subcomponent_num": sub}, {}] if sub is not None else [{}]):
        try:
            return str(seg.extract_field(**kw, **extra) or "").strip()  # type: ignore[attr-defined]
        except IndexError:
            continue
    return ""


def _patient_id(seg: object) -> tuple[str, str]:
    """(ID, assigning authority) of PID-3: the medical record number when several IDs are sent."""
    raw = str(seg[3]) if len(seg) > 3 else ""  # type: ignore[arg-type, index]
    reps = range(1, raw.count("~") + 2)
    pick = next((r for r in reps if _cx(seg, r, 5).upper() == "MR"), 1)
    # the namespace ID is what DICOM's Issuer of Patient ID carries (IHE); a universal ID alone
    # (an OID) cannot be compared with it, and is not used
    return _cx(seg, pick, 1), _cx(seg, pick, 4, 1)


def _has(msg: object, name: str) -> bool:
    try:
        msg.segments(name)  # type: ignore[attr-defined]
        return True
    except KeyError:
        return False


def read_hl7_file(path: Path, *, encoding: str | None = None) -> list[ReportDocumentIn | ReportFormatError]:
    """Every message of an HL7 file: a document, or the error that message has."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReportFormatError(f"{path}: cannot read: {exc.strerror}") from exc
    text = decode(raw, path, encoding)
    try:
        messages = split_messages(text)
    except ValueError as exc:
        raise ReportFormatError(f"{path}: not an HL7 v2 file: {exc}") from exc
    if not messages:
        raise ReportFormatError(f"{path}: holds no HL7 message")
    out: list[ReportDocumentIn | ReportFormatError] = []
    for n, m in enumerate(messages, 1):
        try:
            out.append(parse_message(m, path, n))
        except ReportFormatError as exc:
            out.append(exc)
    return out


def looks_like_hl7(head: bytes) -> bool:
    return head.lstrip(b"\x0b\r\n\t \xef\xbb\xbf").startswith(b"MSH")


__all__ = ["read_hl7_file", "parse_message", "looks_like_hl7", "parse_ts", "decode"]
