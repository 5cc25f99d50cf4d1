"""The study panel: the open study's report (sections, diagnosis and where it came from) and the
reader's labels (diagnosis, tags, note) with who set each, editable in place. Layout only; the
controller (:mod:`..controllers.study_panel`) loads and saves."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCompleter, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton,
                               QTextBrowser, QVBoxLayout, QWidget)


class StudyPanel(QWidget):
    """Report and labels of one study; emits ``save_requested(diagnosis, tags, note)`` and
    ``delete_requested()``; ``set_enabled_for_study(False)`` when no stored study is open."""

    save_requested = Signal(str, list, str)
    delete_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.title = QLabel("<i>No study from the library is open.</i>", self)
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.report = QTextBrowser(self)
        self.report.setObjectName("study_report")
        lay.addWidget(self.report, 1)
        form = QFormLayout()
        self.diagnosis = QLineEdit(self)
        self.diagnosis.setObjectName("study_diagnosis")
        self.diagnosis.setPlaceholderText("e.g. pulmonary nodule")
        self.finding = QLabel("", self)
        self.finding.setObjectName("study_finding")
        self.tags = QLineEdit(self)
        self.tags.setObjectName("study_tags")
        self.tags.setPlaceholderText("comma-separated, e.g. teaching, follow-up")
        self.note = QPlainTextEdit(self)
        self.note.setObjectName("study_note")
        self.note.setMaximumHeight(70)
        self.provenance = QLabel("", self)
        self.provenance.setObjectName("study_provenance")
        self.provenance.setWordWrap(True)
        form.addRow("Diagnosis", self.diagnosis)
        form.addRow("", self.finding)
        form.addRow("Tags", self.tags)
        form.addRow("Note", self.note)
        lay.addLayout(form)
        lay.addWidget(self.provenance)
        row = QHBoxLayout()
        self.save = QPushButton("Save labels", self)
        self.save.setObjectName("study_save")
        self.revert = QPushButton("Revert", self)
        self.delete = QPushButton("Remove from library…", self)
        self.delete.setObjectName("study_delete")
        row.addWidget(self.save)
        row.addWidget(self.revert)
        row.addStretch(1)
        row.addWidget(self.delete)
        lay.addLayout(row)
        self.status = QLabel("", self)
        self.status.setObjectName("study_status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.save.clicked.connect(self._emit_save)
        self.delete.clicked.connect(self.delete_requested.emit)
        self.set_enabled_for_study(False)

    def _emit_save(self) -> None:
        tags = [t.strip() for t in self.tags.text().split(",") if t.strip()]
        self.save_requested.emit(self.diagnosis.text().strip(), tags, self.note.toPlainText().strip())

    def set_vocabulary(self, terms: list[str]) -> None:
        self.diagnosis.setCompleter(QCompleter(terms, self))

    def set_enabled_for_study(self, enabled: bool) -> None:
        for w in (self.diagnosis, self.tags, self.note, self.save, self.revert, self.delete):
            w.setEnabled(enabled)
        if not enabled:
            self.title.setText("<i>No study from the library is open.</i>")
            self.report.clear()
            self.diagnosis.clear()
            self.tags.clear()
            self.note.clear()
            self.finding.clear()
            self.provenance.clear()

    def show_study(self, title: str, report_html: str, diagnosis: str, finding: str, tags: list[str], note: str,
                   provenance: str) -> None:
        self.set_enabled_for_study(True)
        self.title.setText(title)
        pal = self.report.palette()
        self.report.document().setDefaultStyleSheet(
            f"body, p, h3, b, i, small {{ color: {pal.color(pal.ColorRole.Text).name()}; }}")
        self.report.setHtml(report_html)
        self.diagnosis.setText(diagnosis)
        self.finding.setText(f"<small>counts as: <i>{finding}</i></small>" if finding else "")
        self.tags.setText(", ".join(tags))
        self.note.setPlainText(note)
        self.provenance.setText(provenance)
