"""CSV and JSON report exports (one report per row or object), with a configurable column mapping.

A RIS export is a table keyed by accession number. Each report field below is read from the
first column whose header matches one of its names (case, spaces and underscores ignored); a
mapping (``--map findings=BEFUND`` or a TOML/JSON file of ``field = "column"``) names the column
for exports with other headers. ``text`` is the whole report when the export has no section
columns: it is split on its headings. JSON is a list of objects, an object with a ``reports``
list, or one object per line (JSON Lines).

| field | default column names |
|---|---|
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from casebook.index.case_store.report_records import ReportDocumentIn

from .errors import ReportFormatError, ReportImportError
from .sections import diagnosis_from_impression, split_sections

FIELDS: dict[str, tuple[str, ...]] = {
    "accession": ("accession", "accession number", "accessionnumber", "acc", "acc no", "accession no"),
    "report_id": ("report id", "reportid", "report number", "order number", "filler order number"),
    "study_uid": ("study uid", "studyinstanceuid", "study instance uid", "studyuid"),
    "patient_id": ("patient id", "patientid", "mrn", "pid", "patient number"),
    "study_date": ("study date", "studydate", "exam date", "date"),
    "modality": ("modality",),
    "status": ("status", "report status", "result status"),
    "report_time": ("report time", "report date", "signed", "signed at", "reported", "report datetime"),
    "author": ("author", "radiologist", "reported by", "signed by", "reader"),
    "history": ("history", "clinical history", "indication", "clinical information"),
    "technique": ("technique", "procedure", "protocol"),
    "findings": ("findings", "finding"),
    "impression": ("impression", "conclusion", "summary"),
    "text": ("text", "report", "report text", "body"),
    "diagnosis": ("diagnosis", "dx", "final diagnosis"),
    "diagnosis_code": ("diagnosis code", "dx code", "icd", "icd10", "snomed"),
}
__doc__ += "\n".join(f"| `{k}` | {', '.join(v)} |" for k, v in FIELDS.items()) + "\n"
_STATUS = {"p": "preliminary", "prelim": "preliminary", "preliminary": "preliminary", "f": "final",
           "final": "final", "signed": "final", "c": "corrected", "corrected": "corrected", "amended": "corrected",
           "a": "corrected", "addendum": "corrected", "x": "cancelled", "cancelled": "cancelled",
           "canceled": "cancelled", "": "final"}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]+", " ", name.strip().lower()).strip()


def load_mapping(path: Path | None = None, pairs: Iterable[str] = ()) -> dict[str, str]:
    """field -> column from a TOML/JSON file and ``field=column`` pairs (pairs win); an unknown
    field is refused with the list of known ones."""
    out: dict[str, str] = {}
    if path is not None:
        try:
            raw = path.read_text(encoding="utf-8")
            if path.suffix.lower() == ".json":
                data = json.loads(raw)
            else:
                import tomllib

                data = tomllib.loads(raw)
        except (OSError, ValueError) as exc:
            raise ReportImportError(f"{path}: cannot read the column mapping: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ReportImportError(f"{path}: a column mapping is `field = \"column\"` lines")
        out.update(data)
    for p in pairs:
        if "=" not in p:
            raise ReportImportError(f"column mapping {p!r}: write it as field=column")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    bad = [k for k in out if k not in FIELDS]
    if bad:
        raise ReportImportError(f"column mapping: unknown field(s) {', '.join(bad)}; known: {', '.join(FIELDS)}")
    return out


def _columns(headers: list[str], mapping: Mapping[str, str], where: str) -> dict[str, str]:
    by_key = {_key(h): h for h in headers}
    cols: dict[str, str] = {}
    for field, names in FIELDS.items():
        if field in mapping:
            col = mapping[field]
            if col not in headers and _key(col) not in by_key:
                raise ReportFormatError(f"{where}: the mapping names column {col!r} for {field}, "
                                        f"but the file has {', '.join(headers)}")
            cols[field] = col if col in headers else by_key[_key(col)]
            continue
        for n in names:
            if _key(n) in by_key:
                cols[field] = by_key[_key(n)]
                break
    if not ({"accession", "study_uid", "report_id"} & cols.keys() or {"patient_id", "study_date"} <= cols.keys()):
        raise ReportFormatError(f"{where}: no column says which study a report belongs to (accession, study UID, "
                                f"or patient ID + study date); columns: {', '.join(headers)}; name them with --map")
    if not ({"findings", "impression", "text", "diagnosis"} & cols.keys()):
        raise ReportFormatError(f"{where}: no report text column (findings, impression, text or diagnosis); "
                                f"columns: {', '.join(headers)}; name them with --map")
    return cols


def _date(value: str) -> date | None:
    v = value.strip()
    if not v:
        return None
    for fmt, part in (("%Y-%m-%d", v[:10]), ("%Y%m%d", v[:8]), ("%d.%m.%Y", v[:10]), ("%Y/%m/%d", v[:10])):
        try:
            return datetime.strptime(part, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD or YYYYMMDD)")


def _datetime(value: str) -> datetime | None:
    v = value.strip()
    if not v:
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        pass
    if re.fullmatch(r"\d{8,14}", v):
        return datetime.strptime(v.ljust(14, "0"), "%Y%m%d%H%M%S")
    raise ValueError(f"{value!r} is not a date/time (ISO 8601 or YYYYMMDDHHMMSS)")


def row_document(row: Mapping[str, Any], cols: Mapping[str, str], kind: str, path: Path, ref: str) -> ReportDocumentIn:
    where = f"{path}: {ref}"

    def get(field: str) -> str:
        col = cols.get(field)
        v = row.get(col) if col else None
        return "" if v is None else str(v).strip()

    try:
        study_date, observed = _date(get("study_date")), _datetime(get("report_time"))
    except ValueError as exc:
        raise ReportFormatError(f"{where}: {exc}") from exc
    status = _STATUS.get(get("status").lower())
    if status is None:
        raise ReportFormatError(f"{where}: status {get('status')!r} is not one of preliminary, final, corrected, "
                                "cancelled (or P, F, C, X)")
    history, technique, findings, impression = get("history"), get("technique"), get("findings"), get("impression")
    if get("text"):
        secs = split_sections(get("text"))
        history, technique = history or secs.history, technique or secs.technique
        findings, impression = findings or secs.findings, impression or secs.impression
    if not (findings or impression or get("diagnosis")):
        raise ReportFormatError(f"{where}: the report text is empty")
    if not (get("accession") or get("study_uid") or get("report_id") or (get("patient_id") and study_date)):
        raise ReportFormatError(f"{where}: names no study (no accession, study UID, or patient ID + date)")
    diagnosis, code = get("diagnosis"), get("diagnosis_code")
    source = ("coded" if code else "import") if diagnosis else ""
    if not diagnosis:
        diagnosis = diagnosis_from_impression(impression)
        source = "impression" if diagnosis else ""
    content = json.dumps({k: get(k) for k in FIELDS}, sort_keys=True)
    return ReportDocumentIn(
        source_kind=kind, content_sha256=hashlib.sha256(f"{kind}\0{content}".encode()).hexdigest(),
        source_path=str(path), source_ref=ref, report_id=get("report_id"), status=status, observed=observed,
        accession_number=get("accession"), study_uid=get("study_uid"), patient_id=get("patient_id"),
        study_date=study_date, modality=get("modality").upper(), author=get("author"), history=history,
        technique=technique, findings=findings, impression=impression, diagnosis=diagnosis, diagnosis_code=code,
        diagnosis_source=source)


def _read_text(path: Path, encoding: str | None) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReportFormatError(f"{path}: cannot read: {exc.strerror}") from exc
    enc = encoding or "utf-8-sig"
    try:
        return raw.decode(enc)
    except LookupError as exc:
        raise ReportImportError(f"--encoding {enc}: not an encoding Python knows") from exc
    except UnicodeDecodeError as exc:
        raise ReportFormatError(f"{path}: not valid {enc} at byte {exc.start}; give the file's encoding "
                                "(`--encoding latin-1`, `--encoding cp1252`)") from exc


def read_csv_file(path: Path, mapping: Mapping[str, str], *, encoding: str | None = None
                  ) -> list[ReportDocumentIn | ReportFormatError]:
    text = _read_text(path, encoding)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    headers = [h for h in (reader.fieldnames or []) if h is not None]
    if not headers:
        raise ReportFormatError(f"{path}: empty CSV file (no header row)")
    cols = _columns(headers, mapping, str(path))
    out: list[ReportDocumentIn | ReportFormatError] = []
    try:
        for row in reader:
            ref = f"line {reader.line_num}"
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            try:
                out.append(row_document(row, cols, "csv", path, ref))
            except ReportFormatError as exc:
                out.append(exc)
    except csv.Error as exc:
        out.append(ReportFormatError(f"{path}: line {reader.line_num}: malformed CSV: {exc}"))
    return out


def read_json_file(path: Path, mapping: Mapping[str, str], *, encoding: str | None = None
                   ) -> list[ReportDocumentIn | ReportFormatError]:
    text = _read_text(path, encoding)
    try:
        data = json.loads(text)
        items = data.get("reports") if isinstance(data, dict) else data
    except json.JSONDecodeError:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ReportFormatError(f"{path}: not JSON or JSON Lines (line {n}: {exc.msg})") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ReportFormatError(f"{path}: JSON reports are a list of objects (or {{\"reports\": [...]}})")
    headers = sorted({k for i in items for k in i})
    if not items:
        return []
    cols = _columns(headers, mapping, str(path))
    out: list[ReportDocumentIn | ReportFormatError] = []
    for n, item in enumerate(items, 1):
        try:
            out.append(row_document(item, cols, "json", path, f"report {n}"))
        except ReportFormatError as exc:
            out.append(exc)
    return out
