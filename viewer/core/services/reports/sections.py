"""Report text into sections (history/indication, technique, findings, impression) and the
diagnosis the impression states.

RIS reports mark sections with headings at the start of a line ("CLINICAL HISTORY:",
"Technique -", "IMPRESSION"), in any case, with or without a colon; text before the first
heading, or a report with none, is findings. The diagnosis taken from an impression is its first
statement (list numbering and "there is" phrasing removed), so it reads like a coded one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SECTION_HEADINGS: dict[str, tuple[str, ...]] = {
    "history": ("clinical history", "history", "clinical information", "clinical details", "clinical indication",
                "indications", "indication", "reason for exam", "reason for examination", "reason for study",
                "clinical question", "referral reason"),
    "technique": ("technique", "procedure", "protocol", "examination", "exam", "comparison", "comparisons"),
    "findings": ("findings", "finding", "report", "description", "observations"),
    "impression": ("impression", "impressions", "conclusion", "conclusions", "summary", "opinion", "diagnosis",
                   "assessment", "interpretation"),
}
_HEADING = {h: sec for sec, hs in SECTION_HEADINGS.items() for h in hs}
_HEADING_RE = re.compile(
    r"^[ \t]*(?P<h>" + "|".join(sorted((re.escape(h) for h in _HEADING), key=len, reverse=True)) +
    r")[ \t]*(?:[:\-–][ \t]*|$)(?P<rest>.*)$", re.IGNORECASE | re.MULTILINE)
_NORMAL = re.compile(r"^(no (acute |significant )?(abnormalit(y|ies)|findings?|pathology)( (seen|detected|identified"
                     r"|demonstrated))?|normal( study| examination| scan)?|unremarkable( study)?)\b", re.IGNORECASE)


@dataclass
class Sections:
    history: str = ""
    technique: str = ""
    findings: str = ""
    impression: str = ""

    def any(self) -> bool:
        return bool(self.history or self.technique or self.findings or self.impression)


def split_sections(text: str) -> Sections:
    """Split report text on its headings (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts: dict[str, list[str]] = {k: [] for k in SECTION_HEADINGS}
    current = "findings"
    buf: list[str] = []

    def flush() -> None:
        body = "\n".join(buf).strip()
        if body:
            parts[current].append(body)
        buf.clear()

    for line in text.split("\n"):
        # a heading ends with a colon or dash, or the line: "Findings: clear lungs" and "FINDINGS"
        # are headings, "Findings were discussed" is not
        m = _HEADING_RE.match(line)
        if m:
            flush()
            current = _HEADING[m.group("h").lower()]
            rest = m.group("rest").strip()
            if rest:
                buf.append(rest)
        else:
            buf.append(line)
    flush()
    return Sections(**{k: "\n\n".join(v) for k, v in parts.items()})


def diagnosis_from_impression(impression: str) -> str:
    """The impression's first statement as a diagnosis ("" when there is none); "normal" for the
    usual ways of saying there is nothing."""
    text = impression.strip()
    if not text:
        return ""
    first = ""
    for line in text.split("\n"):
        line = re.sub(r"^\s*(\d+[.)]|[-*•])\s*", "", line).strip()
        if line:
            first = line
            break
    first = re.split(r"(?<=[A-Za-z0-9)])\.\s+(?=[A-Z])|;\s+", first, maxsplit=1)[0].strip().rstrip(".")
    first = re.sub(r"^(there (is|are)|findings (are )?(consistent|compatible) with|consistent with|"
                   r"compatible with|in keeping with|suggestive of)\s+", "", first, flags=re.IGNORECASE)
    first = re.sub(r"^(an?|the)\s+", "", first, flags=re.IGNORECASE)
    if _NORMAL.match(first):
        return "normal"
    return first[:200].strip()
