"""The end of an import: what was stored, whether it is searchable, and every skipped file with
its reason (as ``casebook ingest`` prints them), so that nothing is dropped silently."""
from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from casebook.viewer.core.services.import_pipeline import ImportReport


def _table(headers: list[str], rows: list[list[str]], parent: QWidget) -> QTableWidget:
    t = QTableWidget(len(rows), len(headers), parent)
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            it = QTableWidgetItem(text)
            it.setToolTip(text)
            t.setItem(r, c, it)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


class ImportReportDialog(QDialog):
    """Non-blocking summary of one import (shown with ``show()``; the reader reads on)."""

    def __init__(self, what: str, report: ImportReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Import of {what}")
        self.report = report
        lay = QVBoxLayout(self)
        self.headline = QLabel(report.headline(what), self)
        self.headline.setWordWrap(True)
        lay.addWidget(self.headline)
        self.searchable = QLabel("The new series can be searched with Find similar." if report.index.searchable
                                 else f"Find similar cannot use the new series yet: {report.index.text()}", self)
        self.searchable.setWordWrap(True)
        lay.addWidget(self.searchable)
        s = report.ingest
        self.reasons = _table(["Skipped because", "Files"], [[r, str(n)] for r, n in s.skip_reasons()], self)
        self.files = _table(["Skipped file", "Reason"], [[f.path, f.reason] for f in s.skipped], self)
        failed = [[str(sid), why] for sid, why in report.index.failed]
        self.failed = _table(["Series not embedded", "Reason"], failed, self)
        if s.skipped:
            lay.addWidget(QLabel(f"<b>{len(s.skipped)} file(s) skipped</b>", self))
            lay.addWidget(self.reasons)
            lay.addWidget(self.files, 1)
        if failed:
            lay.addWidget(self.failed)
        for t, shown in ((self.reasons, bool(s.skipped)), (self.files, bool(s.skipped)), (self.failed, bool(failed))):
            t.setVisible(shown)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        buttons.accepted.connect(self.close)
        lay.addWidget(buttons)
        self.resize(820, 480 if s.skipped else 160)
