"""De-identification of DICOM objects: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

The attribute table is Table E.1-1 of the standard as shipped by the maintained
``dicom-anonymizer`` package (``dicomanonymizer.dicom_anonymization_databases``, one module per
edition of the standard, generated from its published tables); Casebook applies it itself
because a teaching export needs what no library does across a whole export at once: UIDs
replaced consistently in every file (references kept), one date offset per patient (intervals
kept), pixel masks, and a report. Options applied, all from PS3.15 Table E.1-1 and named in the
De-identification Method Code Sequence:

- *Retain Longitudinal Temporal Information with Modified Dates* (113107): dates and the date
  part of date-times are shifted by a per-patient number of days instead of replaced, so the
  intervals between a patient's studies are kept; times (TM) follow the basic profile's action;
- *Retain Patient Characteristics* (113108), optional: age, sex, size and weight are kept;
- *Clean Pixel Data* (113101) when a burned-in text mask was applied.

Actions: D (dummy value of the VR; dates shifted, UIDs mapped), Z (zero length, or a pseudonym
for the patient's name and ID), X (removed), K (kept), C (cleaned: identifying strings found in
the source header are removed from the text), U (UID replaced consistently), and the compound
ones (X/Z, X/D, X/Z/D, Z/D, X/Z/U*) resolved as documented in :func:`resolve`. Attributes not in
the table are kept, except private tags (removed), unknown UIDs (mapped) and any text that still
carries an identifier of the source header (cleaned: the safety net the tests check).
"""
from __future__ import annotations

import importlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable, Iterable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.datadict import keyword_for_tag
from pydicom.tag import Tag
from pydicom.uid import UID_dictionary, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ...errors import CasebookError

TABLE_EDITION = "dicomfields_2026c"  # the newest edition dicom-anonymizer ships (DICOM 2026c)
CATEGORIES = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
              "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
# PS3.15 Table E.1-1 "Retain Patient Characteristics Option" column: K for these (a subset kept)
PATIENT_CHARACTERISTICS = {Tag(0x0010, 0x1010), Tag(0x0010, 0x0040), Tag(0x0010, 0x1020), Tag(0x0010, 0x1030)}
PATIENT_NAME, PATIENT_ID = Tag(0x0010, 0x0010), Tag(0x0010, 0x0020)
DATE_VRS = ("DA", "DT")
TEXT_VRS = ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT")
# DICOM's code for the profile and options (CID 7050 De-identification Method)
CODES = {"basic": ("113100", "Basic Application Confidentiality Profile"),
         "clean_pixels": ("113101", "Clean Pixel Data Option"),
         "modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
         "patient_characteristics": ("113108", "Retain Patient Characteristics Option")}
REMOVED = "REMOVED"
# File Meta elements that name a station or carry private data (Source, Sending, Receiving AE
# Title; Private Information Creator UID, Private Information): dropped from every file.
FILE_META_REMOVED = {Tag(0x0002, 0x0016), Tag(0x0002, 0x0017), Tag(0x0002, 0x0018), Tag(0x0002, 0x0100),
                     Tag(0x0002, 0x0102)}


class DeidError(CasebookError):
    """A file cannot be de-identified (the message names the file and why)."""


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1: a tag (with a mask for repeating groups), its name and action."""

    tag: int
    mask: int
    name: str
    action: str

    def matches(self, tag: int) -> bool:
        return (tag & self.mask) == (self.tag & self.mask)


@dataclass
class ProfileTable:
    """Table E.1-1 by tag, with the repeating-group rows (50xx, 60xx) apart."""

    edition: str
    exact: dict[int, Rule]
    masked: list[Rule]

    def rule(self, tag: int) -> Rule | None:
        r = self.exact.get(int(tag))
        if r is not None:
            return r
        for m in self.masked:
            if m.matches(int(tag)):
                return m
        return None

    def __len__(self) -> int:
        return len(self.exact) + len(self.masked)


_TABLE: ProfileTable | None = None


def profile_table(edition: str = TABLE_EDITION) -> ProfileTable:
    """Table E.1-1 of ``edition`` from dicom-anonymizer's copy of the standard (loaded once)."""
    global _TABLE
    if _TABLE is not None and _TABLE.edition == edition:
        return _TABLE
    try:
        mod = importlib.import_module(f"dicomanonymizer.dicom_anonymization_databases.{edition}")
        src = mod.__file__
    except ImportError as exc:
        raise DeidError(f"the PS3.15 attribute table {edition!r} is not installed (pip install dicom-anonymizer): "
                        f"{exc}") from exc
    names: dict[tuple[int, int], str] = {}
    if src:
        for m in re.finditer(r"\(0x([0-9A-Fa-f]{4}), 0x([0-9A-Fa-f]{4})[^)]*\),\s*#\s*(.+)", open(src).read()):
            names[(int(m.group(1), 16), int(m.group(2), 16))] = m.group(3).strip()
    exact: dict[int, Rule] = {}
    masked: list[Rule] = []
    for cat, action in CATEGORIES.items():
        for t in getattr(mod, cat):
            name = names.get((t[0], t[1]), "")
            if len(t) == 4:
                masked.append(Rule((t[0] << 16) | t[1], (t[2] << 16) | t[3], name, action))
            else:
                exact[(t[0] << 16) | t[1]] = Rule((t[0] << 16) | t[1], 0xFFFFFFFF, name, action)
    _TABLE = ProfileTable(edition, exact, masked)
    return _TABLE


def resolve(action: str, vr: str, tag: int, *, keep_characteristics: bool) -> str:
    """The single action Casebook applies for a table action on an element of ``vr``.

    Dates and date-times of any row are shifted (the Modified Dates option, see the module
    docstring). Compound actions: a UID with a U is mapped; otherwise the first choice that can never fail an IOD less than removal is taken:
    X/Z and X/Z/D empty the element (Z), X/D removes it (X), Z/D empties it (Z), X/Z/U* keeps
    the sequence and maps its UIDs (U: references to the exported images stay valid).
    """
    if keep_characteristics and tag in PATIENT_CHARACTERISTICS:
        return "K"
    if tag in (PATIENT_NAME, PATIENT_ID):
        return "P"
    if vr in DATE_VRS:
        # the Modified Dates option: every date of a patient moves by the same whole-day offset
        return "D"  # Z with a consistent pseudonym (zero length would split a patient's studies)
    if action in ("D", "Z", "X", "U", "K", "C"):
        return action
    if action == "X/Z/U*":
        return "U"
    if "D" in action and vr in DATE_VRS:
        return "D"
    return {"X/Z": "Z", "X/Z/D": "Z", "X/D": "X", "Z/D": "Z"}.get(action, "X")


def _is_known_uid(value: str) -> bool:
    """A UID the standard defines (SOP classes, transfer syntaxes, coding schemes): never PHI."""
    return value in UID_dictionary or value.startswith("1.2.840.10008.")


@dataclass
class Identifiers:
    """Identifying strings found in source headers: what must appear nowhere in an export."""

    strings: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)

    def add_value(self, vr: str, value: Any) -> None:
        vals = list(value) if isinstance(value, (list, MultiValue)) else [value]
        for v in vals:
            s = str(v).strip() if v is not None else ""
            if not s:
                continue
            if vr == "UI":
                if not _is_known_uid(s):
                    self.uids.add(s)
            elif vr in DATE_VRS:
                if len(s) >= 8 and s[:8].isdigit():
                    self.dates.add(s[:8])
            elif vr == "PN":
                for part in re.split(r"[\^=]+", s):
                    part = part.strip()
                    if len(part) >= 3:
                        self.strings.add(part)
                if len(s.replace("^", "")) >= 3:
                    self.strings.add(s.rstrip("^"))
            elif vr in ("LO", "SH", "ST", "LT", "UT", "UC", "AE") and len(s) >= 4:
                self.strings.add(s)

    def pattern(self) -> re.Pattern[str] | None:
        """One case-insensitive pattern for all of them (dates also as YYYY-MM-DD, DD/MM/YYYY,
        DD.MM.YYYY and MM/DD/YYYY), longest first; None when there is nothing to look for."""
        alts = [rf"(?<!\w){re.escape(s)}(?!\w)" for s in sorted(self.strings | self.uids, key=len, reverse=True)]
        for d in sorted(self.dates):
            y, m, dd = d[:4], d[4:6], d[6:8]
            for form in (d, f"{y}-{m}-{dd}", f"{dd}/{m}/{y}", f"{dd}.{m}.{y}", f"{m}/{dd}/{y}"):
                alts.append(rf"(?<!\d){re.escape(form)}(?!\d)")
        return re.compile("|".join(alts), re.IGNORECASE) if alts else None


# Which removed attributes hold identities (names, numbers, places), as opposed to descriptions
# ("Study Description", "Protocol Name") whose words recur harmlessly in kept attributes such as
# Body Part Examined: the values of the former are what must appear nowhere in an export.
IDENTITY_KEYWORDS = re.compile(r"(?<!Descrip)(ID|IDs|Number|Name|Names|Address|Telephone|Institution|Station|"
                               r"Physician|Operator|Issuer|Locator|Serial|Department|Insurance|Country|Region|"
                               r"Religious|Occupation|Military|Branch|Location|Label|Identifier|Code|Organization|Originator|"
                               r"Author|AE|Telecom|Service)s?(?=[A-Z]|$)")
DESCRIPTIVE_NAMES = {"ProtocolName", "ROIName", "RTPlanName", "StructureSetName", "PositionAcquisitionTemplateName"}


def is_identity_attribute(keyword: str) -> bool:
    """True for an attribute whose value identifies someone or somewhere (see IDENTITY_KEYWORDS)."""
    return bool(keyword) and keyword not in DESCRIPTIVE_NAMES and bool(IDENTITY_KEYWORDS.search(keyword))
IDENTIFYING_ACTIONS = ("D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")


def collect_identifiers(ds: Dataset, into: Identifiers | None = None, *, table: ProfileTable | None = None,
                        keep_characteristics: bool = True) -> Identifiers:
    """The identifying values of ``ds`` (every nesting level): names, dates and UIDs, and the
    values of identity attributes (:func:`is_identity_attribute`) that Table E.1-1 removes or
    replaces."""
    table = table or profile_table()
    ids = into or Identifiers()

    def walk(d: Dataset, private_parent: bool) -> None:
        for el in d:
            rule = table.rule(el.tag)
            private = el.tag.is_private or private_parent
            if el.VR == "SQ":
                for item in el.value or []:
                    walk(item, private)
                continue
            if private:
                # removed whole; vendors' strings there ("NEURO", "DEFAULT") are no identity of
                # their own, and a copy of the patient's name is caught by the standard attribute
                continue
            if rule is not None and rule.action in IDENTIFYING_ACTIONS:
                if keep_characteristics and el.tag in PATIENT_CHARACTERISTICS:
                    continue
                if el.VR in ("PN", "UI", "DA", "DT") or is_identity_attribute(keyword_for_tag(el.tag) or ""):
                    ids.add_value(el.VR, el.value)
            elif el.VR == "UI":
                ids.add_value("UI", el.value)

    walk(ds, False)
    if hasattr(ds, "file_meta"):
        for el in ds.file_meta:
            if el.VR == "UI" and el.tag in (Tag(0x0002, 0x0003),):
                ids.add_value("UI", el.value)
    return ids


class UidMap:
    """Source UID -> new UID, the same across a whole export (so references stay linked)."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\0")
        if not uid or _is_known_uid(uid):
            return uid
        new = self.map.get(uid)
        if new is None:
            new = f"2.25.{uuid.uuid4().int}"
            self.map[uid] = new
        return new


class DateShift:
    """One whole-day offset per patient (random, never stored in the export)."""

    def __init__(self, min_days: int = 365, max_days: int = 3650) -> None:
        self.min_days, self.max_days = min_days, max_days
        self.offsets: dict[str, int] = {}

    def offset(self, patient: str, avoid: Iterable[str] = ()) -> int:
        """The patient's offset, drawn once. ``avoid``: the export's source dates (YYYYMMDD); an
        offset that would move one of them onto another (a content date shifted onto the true
        study date) is drawn again, so no source date appears in the export even by chance."""
        if patient not in self.offsets:
            known = {d for d in avoid if len(d) == 8 and d.isdigit()}
            days = 0
            for _ in range(64):
                days = -(self.min_days + secrets.randbelow(self.max_days - self.min_days + 1))
                if not any(self.shift_da(d, days) in known for d in known):
                    break
            self.offsets[patient] = days
        return self.offsets[patient]

    @staticmethod
    def shift_da(value: str, days: int) -> str:
        s = str(value).strip()
        try:
            d = date(int(s[0:4]), int(s[4:6]), int(s[6:8])) + timedelta(days=days)
        except (ValueError, IndexError):
            return ""  # not a date: emptied (Z), never kept
        return f"{d.year:04d}{d.month:02d}{d.day:02d}"

    def shift(self, vr: str, value: str, days: int) -> str:
        s = str(value).strip()
        if vr == "DA":
            if "-" in s:  # a date range (query form): shift both ends
                return "-".join(self.shift_da(p, days) if p else "" for p in s.split("-"))
            return self.shift_da(s, days)
        # DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX; the date part shifts, the rest is kept
        if len(s) < 8:
            return ""
        head = self.shift_da(s[:8], days)
        return head + s[8:] if head else ""


def _dummy(vr: str) -> Any:
    """A non-zero-length value valid for ``vr`` that says nothing (PS3.15 action D)."""
    return {"PN": "ANONYMOUS", "AS": "000Y", "IS": "0", "DS": "0", "TM": "000000", "DA": "19000101",
            "DT": "19000101000000", "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0, "SV": 0, "UV": 0,
            "OB": b"\0\0", "OW": b"\0\0", "OF": b"\0\0\0\0", "OD": b"\0" * 8, "UN": b"\0\0", "AT": 0,
            "UR": "", }.get(vr, REMOVED)


@dataclass
class DeidContext:
    """What one export shares between its files: the maps, the pseudonyms, what was done."""

    uids: UidMap = field(default_factory=UidMap)
    dates: DateShift = field(default_factory=DateShift)
    identifiers: Identifiers = field(default_factory=Identifiers)
    pseudonyms: dict[str, tuple[str, str]] = field(default_factory=dict)  # source patient -> (name, id)
    keep_characteristics: bool = True
    table: ProfileTable = field(default_factory=profile_table)
    actions: dict[str, int] = field(default_factory=dict)  # action -> elements, for the report
    cleaned: int = 0  # text elements that still carried an identifier

    def pseudonym(self, patient: str) -> tuple[str, str]:
        if patient not in self.pseudonyms:
            n = len(self.pseudonyms) + 1
            self.pseudonyms[patient] = (f"TEACHING^PATIENT {n:03d}", f"CBT-{secrets.token_hex(4).upper()}")
        return self.pseudonyms[patient]

    def count(self, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1

    def clean_text(self, text: str) -> tuple[str, int]:
        """``text`` with every source identifier replaced by ``[removed]`` (action C)."""
        p = self._pattern()
        if p is None or not text:
            return text, 0
        return p.subn("[removed]", text)

    def _pattern(self) -> re.Pattern[str] | None:
        key = (len(self.identifiers.strings), len(self.identifiers.dates), len(self.identifiers.uids))
        if getattr(self, "_pkey", None) != key:
            self._pkey, self._pat = key, self.identifiers.pattern()
        return self._pat


def _patient_key(ds: Dataset) -> str:
    return str(ds.get("PatientID", "") or "") or f"anon:{ds.get('StudyInstanceUID', '')}"


def deidentify(ds: Dataset, ctx: DeidContext, *, patient: str | None = None, masked: bool = False) -> Dataset:
    """De-identify ``ds`` in place (and return it) with the export's shared ``ctx``.

    ``ctx.identifiers`` must already hold the identifiers of every source file of the export
    (:func:`collect_identifiers`), so that text mentioning another file's patient is cleaned too.
    Pixel data is not touched here (masks are applied by the caller before).
    """
    patient = patient if patient is not None else _patient_key(ds)
    days = ctx.dates.offset(patient, avoid=ctx.identifiers.dates)
    name, pid = ctx.pseudonym(patient)
    _deid_dataset(ds, ctx, days, name, pid, top=True)
    # an empty (Type 1) instance UID in the source: U asks for a non-zero-length UID; the
    # study's and series' are shared by the export's files of that patient, the image's is its own
    for kw in ("StudyInstanceUID", "SeriesInstanceUID"):
        if kw in ds and not str(ds[kw].value or "").strip():
            ds[kw].value = ctx.uids(f"(empty {kw} of {patient})")
    if "SOPInstanceUID" in ds and not str(ds.SOPInstanceUID or "").strip():
        ds.SOPInstanceUID = f"2.25.{uuid.uuid4().int}"
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    fm = ds.file_meta
    # the File Meta names this object: the new SOP Class / Instance UIDs (also when the
    # source file had none, as some old files do)
    if "SOPInstanceUID" in ds:
        fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    elif "MediaStorageSOPInstanceUID" in fm:
        fm.MediaStorageSOPInstanceUID = ctx.uids(str(fm.MediaStorageSOPInstanceUID))
    if "SOPClassUID" in ds and not fm.get("MediaStorageSOPClassUID"):
        fm.MediaStorageSOPClassUID = ds.SOPClassUID
    for t in list(fm.keys()):
        rule = ctx.table.rule(t)
        if (rule is not None and rule.action != "U") or t in FILE_META_REMOVED:
            del fm[t]  # the AE titles name the sending station; private information is private
    if "TransferSyntaxUID" not in fm:  # a file without File Meta: say how it is encoded
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None or little is None:
            implicit, little = True, True
        fm.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"PS3.15 E.1-1 basic profile ({ctx.table.edition}), Casebook"
    seq = []
    opts = ["basic", "modified_dates"] + (["patient_characteristics"] if ctx.keep_characteristics else []) + \
        (["clean_pixels"] if masked else [])
    for o in opts:
        item = Dataset()
        item.CodeValue, item.CodeMeaning = CODES[o]
        item.CodingSchemeDesignator = "DCM"
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(seq)
    if masked:
        ds.BurnedInAnnotation = "NO"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    return ds


def _deid_dataset(d: Dataset, ctx: DeidContext, days: int, name: str, pid: str, *, top: bool) -> None:
    for tag in list(d.keys()):
        el = d[tag]
        if top and el.tag.group == 0x0000:
            del d[tag]  # a DIMSE command set left in a file: not part of a stored object
            continue
        if el.tag.is_private:
            del d[tag]
            ctx.count("X (private)")
            continue
        rule = ctx.table.rule(el.tag)
        try:
            if rule is None:
                _keep_unlisted(d, el, ctx, days, name, pid)
                continue
            act = resolve(rule.action, el.VR, int(el.tag), keep_characteristics=ctx.keep_characteristics)
            ctx.count(act)
            _apply(d, el, act, ctx, days, name, pid)
        except (ValueError, TypeError, OverflowError, UnicodeError):
            # a value its VR cannot hold (an IS of "1A"): what cannot be read cannot be checked
            if tag in d:
                del d[tag]
            ctx.count("X (unreadable value)")


def _apply(d: Dataset, el: DataElement, act: str, ctx: DeidContext, days: int, name: str, pid: str) -> None:
    tag = el.tag
    if act == "K":
        return
    if act == "X":
        del d[tag]
        return
    if act == "P":
        el.value = name if tag == PATIENT_NAME else pid
        return
    if el.VR == "SQ":
        if act == "Z":
            el.value = Sequence([])
        else:  # D, U, C: keep the items, de-identified by the same table (references stay valid)
            for item in el.value or []:
                _deid_dataset(item, ctx, days, name, pid, top=False)
        return
    if act == "Z":
        el.value = "" if el.VR in TEXT_VRS + ("UI",) else None
        return
    if act == "U" or (act == "D" and el.VR == "UI"):
        el.value = _map_uids(el.value, ctx)
        return
    if act == "C":
        _clean(el, ctx)
        return
    # D
    if el.VR in DATE_VRS:
        el.value = _map_values(el.value, lambda v: ctx.dates.shift(el.VR, v, days))
    else:
        el.value = _dummy(el.VR)


def _map_values(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, (list, MultiValue)):
        return [fn(str(v)) for v in value]
    return fn(str(value)) if value not in (None, "") else value


def _map_uids(value: Any, ctx: DeidContext) -> Any:
    return _map_values(value, ctx.uids)


def _clean(el: DataElement, ctx: DeidContext) -> None:
    if el.VR not in TEXT_VRS or el.VR in ("IS", "DS") or el.value in (None, ""):  # numbers name nobody
        return
    total = 0

    def one(v: str) -> str:
        nonlocal total
        out, n = ctx.clean_text(v)
        total += n
        return out

    new = _map_values(el.value, one)
    if total and el.VR in ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM"):
        new = ""  # a coded value with an identifier in it: emptied, "[removed]" would not fit the VR
    el.value = new
    if total:
        ctx.cleaned += 1


def _keep_unlisted(d: Dataset, el: DataElement, ctx: DeidContext, days: int, name: str, pid: str) -> None:
    """An attribute the table does not list: kept, but nested items are de-identified, unknown
    UIDs mapped (a reference to an exported image stays valid) and identifiers cleaned (C)."""
    if el.VR == "SQ":
        for item in el.value or []:
            _deid_dataset(item, ctx, days, name, pid, top=False)
        return
    if el.VR == "UI":
        el.value = _map_uids(el.value, ctx)
        return
    if el.VR in ("DA", "DT") and el.value not in (None, ""):
        el.value = _map_values(el.value, lambda v: ctx.dates.shift(el.VR, v, days))
        return
    if el.VR in TEXT_VRS:
        _clean(el, ctx)
    elif el.VR in ("OB", "UN") and el.tag != Tag(0x7FE0, 0x0010) and isinstance(el.value, bytes) \
            and len(el.value) < 4096 and _mentions(el.value, ctx):
        del d[el.tag]  # an opaque blob that spells an identifier
        ctx.cleaned += 1


def _mentions(blob: bytes, ctx: DeidContext) -> bool:
    p = ctx._pattern()
    return p is not None and p.search(blob.decode("latin-1", errors="ignore")) is not None


def walk_elements(ds: Dataset) -> Iterable[DataElement]:
    """Every element of ``ds`` at every nesting level (for checks and tests)."""
    for el in ds:
        yield el
        if el.VR == "SQ":
            for item in el.value or []:
                yield from walk_elements(item)


__all__ = ["CODES", "DateShift", "DeidContext", "DeidError", "Identifiers", "ProfileTable", "Rule", "TABLE_EDITION",
           "UidMap", "collect_identifiers", "deidentify", "profile_table", "resolve", "walk_elements"]
