"""A study's report for display: sections, diagnosis with its source and vocabulary term, how it
is linked, and the label provenance; as plain data and as HTML (the study panel and the analogue
pane both show it, so a report reads the same beside the study and beside every analogue)."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from casebook.index.case_store import CaseStore, Report
from casebook.index.case_store.report_records import ReportDocumentRecord, StudyLabels

LINK_TEXT = {"accession": "linked by accession number", "study_uid": "linked by Study Instance UID",
             "patient_date_modality": "linked by patient ID + study date + modality only (weaker link: check it)",
             "manual": "linked by hand", "": ""}
SOURCE_TEXT = {"coded": "coded in the report", "impression": "from the impression", "reader": "set by a reader",
               "import": "from the import", "feedback": "from feedback", "demo": "demo ground truth"}


@dataclass
class StudyReportView:
    study_id: int
    report: Report | None
    labels: StudyLabels
    versions: list[ReportDocumentRecord] = field(default_factory=list)

    @property
    def current(self) -> ReportDocumentRecord | None:
        cur = [v for v in self.versions if v.is_current]
        return cur[0] if cur else None

    @property
    def link_text(self) -> str:
        return LINK_TEXT.get(self.current.link_method, "") if self.current else ""

    def provenance_text(self, key: str) -> str:
        ev = self.labels.provenance.get(key)
        if ev is None:
            return ""
        who = f" ({ev.actor})" if ev.actor else ""
        return f"{ev.source}{who}, {ev.created:%Y-%m-%d %H:%M}"

    def html(self, *, heading: str = "") -> str:
        rep = self.report
        parts = [f"<h3>{html.escape(heading)}</h3>"] if heading else []
        if rep is None or not any((rep.history, rep.technique, rep.findings, rep.impression, rep.diagnosis)):
            parts.append("<p><i>No report stored for this study.</i></p>")
            return "".join(parts)
        if rep.diagnosis:
            src = SOURCE_TEXT.get(rep.diagnosis_source, rep.diagnosis_source)
            term = f" → <i>{html.escape(rep.finding)}</i>" if rep.finding and rep.finding.lower() != \
                rep.diagnosis.lower() else ""
            parts.append(f"<p><b>Diagnosis</b>: {html.escape(rep.diagnosis)}{term}"
                         + (f" <small>({html.escape(src)})</small>" if src else "") + "</p>")
        for title, text in (("History", rep.history), ("Technique", rep.technique), ("Findings", rep.findings),
                            ("Impression", rep.impression)):
            if text:
                body = "<br>".join(html.escape(line) for line in text.split("\n"))
                parts.append(f"<p><b>{title}</b><br>{body}</p>")
        if rep.note:
            parts.append(f"<p><b>Note</b>: {html.escape(rep.note)}</p>")
        cur = self.current
        if cur is not None:
            older = sum(1 for v in self.versions if v.report_key == cur.report_key and not v.is_current)
            meta = [cur.status, cur.source_kind.upper(), self.link_text]
            if older:
                meta.append(f"{older} earlier version(s) kept")
            parts.append("<p><small>" + html.escape(" · ".join(m for m in meta if m)) + "</small></p>")
        return "".join(parts)


def study_report(store: CaseStore, study_id: int) -> StudyReportView:
    """Everything the panel shows about a study's report and labels."""
    return StudyReportView(int(study_id), store.get_report(study_id), store.study_labels(study_id),
                           store.report_documents(study_id=study_id))
