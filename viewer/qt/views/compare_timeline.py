"""The priors timeline: the patient's other studies, newest first, and the series chosen to compare.

Layout and binding only: the entries come from ``services.priors.find_priors`` (through the
compare controller); a double-click or *Compare* asks for the *current | prior* layout with the
study's chosen series, which the reader may change in the series box.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

if TYPE_CHECKING:  # the priors service (and the case store behind it) loads on the first compare
    from casebook.viewer.core.services.priors import PriorEntry

COLUMNS = ("Date", "Interval", "Study", "Matched on")


class PriorTimeline(QWidget):
    """The timeline list with the series choice and the Compare button."""

    compare_requested = Signal(int, int)  # study id, series id
    follow_up_requested = Signal(int, int)  # an analogue's later study: study id, series id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.title = QLabel("Open a study from the library to see its priors.", self)
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.itemSelectionChanged.connect(self._on_selected)
        self.tree.itemDoubleClicked.connect(lambda *_: self._request())
        lay.addWidget(self.tree, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Series:", self))
        self.series = QComboBox(self)
        self.series.setToolTip("The series of the selected study to compare (best match first)")
        row.addWidget(self.series, 1)
        self.compare_button = QPushButton("Compare", self)
        self.compare_button.setToolTip("Open current | prior, registered and linked (Shift+P)")
        self.compare_button.clicked.connect(self._request)
        row.addWidget(self.compare_button)
        lay.addLayout(row)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setObjectName("compare_status")
        lay.addWidget(self.status)
        self.entries: list[PriorEntry] = []
        self.mode = "priors"  # "priors" of the open study | "follow-up" of an analogue
        self._sync_buttons()

    def set_entries(self, entries: list[PriorEntry], title: str, mode: str = "priors") -> None:
        """Show ``entries`` (newest first); the newest *prior* is selected (the usual comparison)."""
        self.entries, self.mode = list(entries), mode
        self.title.setText(title)
        self.tree.clear()
        for e in self.entries:
            when = e.study.study_date.isoformat() if e.study.study_date else "?"
            desc = e.study.description or ", ".join(e.study.modalities) or "study"
            item = QTreeWidgetItem([when, e.interval_text(), desc, e.match])
            if e.match == "patient id, issuer unknown":
                item.setToolTip(3, "Same Patient ID, but one of the two studies names no Issuer of Patient ID: "
                                   "check it is the same patient")
            elif e.match != "patient id":
                item.setToolTip(3, "Not the same Patient ID: matched on " + e.match)
            item.setData(0, Qt.ItemDataRole.UserRole, e.study.id)
            self.tree.addTopLevelItem(item)
        for c in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(c)
        pick = next((i for i, e in enumerate(self.entries) if e.relation == "prior"), 0 if self.entries else None)
        if pick is not None:
            self.tree.setCurrentItem(self.tree.topLevelItem(pick))
        self._on_selected()

    def selected_entry(self) -> PriorEntry | None:
        item = self.tree.currentItem()
        if item is None:
            return None
        idx = self.tree.indexOfTopLevelItem(item)
        return self.entries[idx] if 0 <= idx < len(self.entries) else None

    def selected_series_id(self) -> int | None:
        sid = self.series.currentData()
        return None if sid is None else int(sid)

    def _on_selected(self) -> None:
        self.series.clear()
        e = self.selected_entry()
        if e is not None:
            for m in e.series:
                why = f" — {', '.join(m.reasons)}" if m.reasons else ""
                self.series.addItem(f"{m.series.modality} {m.series.description} ({m.series.slice_count}){why}",
                                    m.series.id)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.compare_button.setEnabled(self.selected_series_id() is not None)
        self.compare_button.setText("Open follow-up" if self.mode == "follow-up" else "Compare")

    def _request(self) -> None:
        e, sid = self.selected_entry(), self.selected_series_id()
        if e is None or sid is None:
            return
        (self.follow_up_requested if self.mode == "follow-up" else self.compare_requested).emit(e.study.id, sid)
