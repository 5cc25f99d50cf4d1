"""Study browser: the library's studies as a tree (study rows that expand to their series),
searched over every column. Layout only: the list, the search and the count are decided by
:mod:`casebook.viewer.core.services.study_list`."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QTreeView,
                               QVBoxLayout, QWidget)

from casebook.viewer.core.services.study_list import SeriesEntry, StudyEntry, StudyList

COLUMNS = ("Patient", "Patient ID", "Date", "Modality", "Description", "Diagnosis", "Tags", "Series")
#: Columns whose text is cut to this width (elided in the middle, full text in the tooltip):
#: anonymised IDs run to 60 characters and would push every other column off the panel.
ELIDED_WIDTH = {1: 120, 5: 220, 6: 160}
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1  # the StudyEntry / SeriesEntry behind a row
SORT_ROLE = Qt.ItemDataRole.UserRole + 2


def _item(text: Any, tooltip: str | None = None, sort: Any = None) -> QStandardItem:
    it = QStandardItem("" if text is None else str(text))
    it.setEditable(False)
    if tooltip:
        it.setToolTip(tooltip)
    it.setData(sort if sort is not None else str(text or "").lower(), SORT_ROLE)
    return it


class StudyBrowser(QWidget):
    """Emits ``open_requested({"series_id": ...})`` on double-click of a series (a study: its
    main series); ``import_requested`` from its button."""

    open_requested = Signal(object)
    import_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Search name, ID, date, modality, description, diagnosis, tags…")
        self.filter.setClearButtonEnabled(True)
        top.addWidget(self.filter)
        self.import_button = QPushButton("Import…", self)
        self.import_button.setToolTip("Import a folder or DICOMDIR into the library (it is indexed for search)")
        self.import_button.clicked.connect(self.import_requested)
        top.addWidget(self.import_button)
        lay.addLayout(top)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.model.setSortRole(SORT_ROLE)
        self.tree = QTreeView(self)
        self.tree.setModel(self.model)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(2, Qt.SortOrder.DescendingOrder)  # newest first, as the store lists them
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setExpandsOnDoubleClick(False)  # double-click opens; the arrow expands
        self.tree.header().setStretchLastSection(False)
        self.tree.doubleClicked.connect(self._open)
        self.tree.activated.connect(self._open)  # Enter on a row
        lay.addWidget(self.tree)
        self.status = QLabel("", self)
        lay.addWidget(self.status)
        self.studies = StudyList()
        self.shown: list[StudyEntry] = []
        self.filter.textChanged.connect(self._apply_filter)

    # -- filling ---------------------------------------------------------------------------------
    def set_studies(self, studies: StudyList) -> None:
        """Show the library's study list (the search typed so far stays applied)."""
        self.studies = studies
        self._apply_filter(self.filter.text())

    def _apply_filter(self, text: str) -> None:
        self.shown = self.studies.filter(text)
        header = self.tree.header()
        col, order = header.sortIndicatorSection(), header.sortIndicatorOrder()
        self.tree.setSortingEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        for st in self.shown:
            self.model.appendRow(self._study_items(st))
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(col, order)
        self._fit_columns()
        self.status.setText(self.studies.count_text(self.shown))
        if len(self.shown) == 1 and self.filter.text().strip():
            self.tree.expand(self.model.index(0, 0))  # one study found: show its series

    def _study_items(self, st: StudyEntry) -> list[QStandardItem]:
        items = [_item(st.patient_name or "—", st.patient_name or "no patient name"),
                 _item(st.patient_id, st.patient_id or None),
                 _item(st.date or "", None, st.date or ""),
                 _item(st.modalities), _item(st.description, st.description or None),
                 _item(st.diagnosis, st.diagnosis or None), _item(st.tags_text, st.tags_text or None),
                 _item(st.series_count, None, st.series_count)]
        for it in items:
            it.setData(st, ENTRY_ROLE)
        for se in sorted(st.series, key=lambda s: (s.number is None, s.number or 0, s.key)):
            items[0].appendRow(self._series_items(st, se))
        return items

    def _series_items(self, st: StudyEntry, se: SeriesEntry) -> list[QStandardItem]:
        desc = " ".join(x for x in (se.description, f"({se.body_part})" if se.body_part else "") if x)
        images = f"{se.images} image{'s' if se.images != 1 else ''}"
        items = [_item(se.label, None, se.number if se.number is not None else -1), _item(""), _item(""),
                 _item(se.modality), _item(desc, desc or None),
                 _item(se.diagnosis if se.diagnosis != st.diagnosis else "", None), _item(""),
                 _item(images, None, se.images)]
        for it in items:
            it.setData(se, ENTRY_ROLE)
        return items

    def _fit_columns(self) -> None:
        header = self.tree.header()
        for c in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(c)
            cap = ELIDED_WIDTH.get(c)
            if cap is not None and header.sectionSize(c) > cap:
                header.resizeSection(c, cap)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)

    # -- reading back ----------------------------------------------------------------------------
    def row_count(self) -> int:
        """Studies shown (after the search)."""
        return self.model.rowCount()

    def entry_at(self, index: QModelIndex) -> StudyEntry | SeriesEntry | None:
        return index.data(ENTRY_ROLE) if index.isValid() else None

    def study_index(self, row: int) -> QModelIndex:
        return self.model.index(row, 0)

    def series_index(self, study_row: int, series_row: int) -> QModelIndex:
        return self.model.index(series_row, 0, self.study_index(study_row))

    def _open(self, index: QModelIndex) -> None:
        entry = self.entry_at(index)
        se = entry.main_series if isinstance(entry, StudyEntry) else entry
        if isinstance(se, SeriesEntry):
            self.open_requested.emit({"series_id": se.series_id, "study_id": se.study_id, "key": se.key})
