"""The measurement list: every distance and ROI of the study with its value; select, jump, delete.

Binds to the state only (Slicer Logic/Widget split): the list is rebuilt from
``state.measurements`` on the model's events, a click selects and jumps to the slice through the
state, Delete removes through the state; the overlay follows the same events.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from casebook.viewer.core.viewstate import Measurement, ViewerState

COLUMNS = ("#", "Type", "Where", "Value")


class MeasurementPanel(QWidget):
    """A table of ``state.measurements`` bound to the state."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(True)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.empty = QLabel("Draw with D (distance) or E (ellipse ROI).", self)
        self.empty.setWordWrap(True)
        row.addWidget(self.empty, 1)
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.setToolTip("Delete the selected measurement (Delete: the window's shortcut)")
        self.delete_button.clicked.connect(self.delete_selected)
        self.clear_button = QPushButton("Clear all", self)
        self.clear_button.clicked.connect(self.state.clear_measurements)
        row.addWidget(self.delete_button)
        row.addWidget(self.clear_button)
        lay.addLayout(row)
        self._rows: list[Measurement] = []
        self._syncing = False
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        self.table.cellClicked.connect(lambda r, _c: self._jump(r))
        self._subs = [(state.events.measurements, self._rebuild), (state.events.selection, self._on_state_selection),
                      (state.events.volume, self._rebuild)]
        for emitter, cb in self._subs:
            emitter.connect(cb)
        self._rebuild()

    def close_bindings(self) -> None:
        """Stop following the state (before the widget goes away)."""
        for emitter, cb in self._subs:
            emitter.disconnect(cb)
        self._subs = []

    def rows(self) -> list[tuple[str, ...]]:
        """The table's text, row by row (what the reader sees)."""
        return [tuple(self.table.item(r, c).text() for c in range(self.table.columnCount()))
                for r in range(self.table.rowCount())]

    # -- model -> widget --------------------------------------------------------------------------
    def _rebuild(self, **_: Any) -> None:
        self._syncing = True
        try:
            self._rows = list(self.state.measurements)
            self.table.setRowCount(len(self._rows))
            for r, m in enumerate(self._rows):
                where = f"{m.orientation.capitalize()} {m.slice_index + 1}"
                for c, text in enumerate((str(m.number), m.title().split(" ", 1)[-1], where,
                                          m.label().replace("\n", "  "))):
                    item = QTableWidgetItem(text)
                    item.setToolTip(m.label())
                    item.setData(Qt.ItemDataRole.UserRole, r)
                    self.table.setItem(r, c, item)
            self.table.resizeRowsToContents()
            self._select_row(self.state.selected)
        finally:
            self._syncing = False
        has = bool(self._rows)
        self.empty.setVisible(not has)
        self.clear_button.setEnabled(has)
        self.delete_button.setEnabled(self.state.selected is not None)

    def _select_row(self, m: Measurement | None) -> None:
        if m is None or m not in self._rows:
            self.table.clearSelection()
        else:
            self.table.selectRow(self._rows.index(m))

    def _on_state_selection(self, measurement: Measurement | None) -> None:
        self._syncing = True
        try:
            self._select_row(measurement)
        finally:
            self._syncing = False
        self.delete_button.setEnabled(measurement is not None)

    # -- widget -> model --------------------------------------------------------------------------
    def _on_table_selection(self) -> None:
        if self._syncing:
            return
        rows = {i.row() for i in self.table.selectedItems()}
        self.state.select_measurement(self._rows[min(rows)] if rows else None)

    def _jump(self, row: int) -> None:
        if 0 <= row < len(self._rows):
            self.state.go_to_measurement(self._rows[row])

    def delete_selected(self) -> None:
        if self.state.selected is not None:
            self.state.remove_measurement(self.state.selected)
