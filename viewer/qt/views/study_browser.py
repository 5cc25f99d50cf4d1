"""Study browser: the library as a searchable, sortable table. Layout only."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QTableView, QVBoxLayout, QWidget

COLUMNS = [("patient", "Patient"), ("date", "Date"), ("modality", "Mod"), ("description", "Description"),
           ("body_part", "Body part"), ("images", "Images"), ("diagnosis", "Diagnosis"), ("tags", "Tags")]


class StudyBrowser(QWidget):
    """Emits ``open_requested(row_dict)`` on double-click; ``import_requested`` from its button."""

    open_requested = Signal(object)
    import_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Search patient, description, diagnosis, tags…")
        self.filter.setClearButtonEnabled(True)
        top.addWidget(self.filter)
        self.import_button = QPushButton("Import…", self)
        self.import_button.clicked.connect(self.import_requested)
        top.addWidget(self.import_button)
        lay.addLayout(top)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.doubleClicked.connect(self._open)
        lay.addWidget(self.table)
        self.status = QLabel("", self)
        lay.addWidget(self.status)

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.model.removeRows(0, self.model.rowCount())
        for row in rows:
            items = []
            for key, _ in COLUMNS:
                v = row.get(key, "")
                it = QStandardItem("" if v is None else str(v))
                if isinstance(v, (int, float)):
                    it.setData(v, Qt.ItemDataRole.DisplayRole)
                it.setData(row, Qt.ItemDataRole.UserRole + 1)
                items.append(it)
            self.model.appendRow(items)
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(rows)} series")

    def row_count(self) -> int:
        return self.proxy.rowCount()

    def _open(self, index) -> None:
        row = self.proxy.data(index, Qt.ItemDataRole.UserRole + 1)
        if row:
            self.open_requested.emit(row)
