"""Similar-case panel: Find similar buttons, filters, a progress bar with Cancel, and a grid of
result cards. Layout only: the form's values go out as a typed
:class:`~casebook.viewer.core.services.search_form.SearchForm`, parsed in the core."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from casebook.viewer.core.services.search_form import SearchForm
from casebook.viewer.core.services.thumbnails import window_to_uint8


def gray_to_pixmap(img: np.ndarray, window: tuple[float, float], size: int = 128) -> QPixmap:
    """Window a slice like the query and make a thumbnail."""
    a = window_to_uint8(img, window)
    q = QImage(a.data, a.shape[1], a.shape[0], a.strides[0], QImage.Format.Format_Grayscale8).copy()
    return QPixmap.fromImage(q).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class ResultCard(QFrame):
    open_requested = Signal(object)
    feedback = Signal(object, int)  # +1 more like this, -1 not like this

    def __init__(self, hit: Any, info: dict[str, Any], pixmap: QPixmap | None, parent=None) -> None:
        super().__init__(parent)
        self.hit = hit
        self.has_thumbnail = pixmap is not None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        thumb = QLabel(self)
        thumb.setFixedSize(128, 128)
        thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        thumb.setStyleSheet("background: black;")
        if pixmap is not None:
            thumb.setPixmap(pixmap)
        lay.addWidget(thumb)
        badge = "  ⟳ follow-up" if info.get("has_followup") else ""
        head = QLabel(f"<b>{info.get('score', 0):.2f}</b>  {info.get('date', '')}{badge}", self)
        lay.addWidget(head)
        dx = QLabel(f"<i>{info.get('diagnosis', '') or 'no diagnosis'}</i>", self)
        dx.setWordWrap(True)
        lay.addWidget(dx)
        snip = QLabel(info.get("snippet", "")[:140], self)
        snip.setWordWrap(True)
        snip.setStyleSheet("color: #aaa; font-size: 10px;")
        lay.addWidget(snip)
        row = QHBoxLayout()
        for text, tip, val in (("Open", "Open side by side", 0), ("+", "More like this", 1), ("−", "Not like this", -1)):
            b = QPushButton(text, self)
            b.setToolTip(tip)
            b.setMaximumWidth(60 if val == 0 else 28)
            if val == 0:
                b.clicked.connect(lambda: self.open_requested.emit(self.hit))
            else:
                b.clicked.connect(lambda _=False, v=val: self.feedback.emit(self.hit, v))
            row.addWidget(b)
        lay.addLayout(row)
        self.setFixedWidth(150)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.open_requested.emit(self.hit)


class SimilarPanel(QWidget):
    find_requested = Signal(str)  # "series" | "slice" | "box"
    open_requested = Signal(object)
    feedback = Signal(object, int)
    cancel_requested = Signal()  # the Cancel button of a running search

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        btns = QHBoxLayout()
        self.buttons = {}
        for mode, text in (("series", "Series"), ("slice", "This slice"), ("box", "Draw box")):
            b = QPushButton(text, self)
            b.clicked.connect(lambda _=False, m=mode: self.find_requested.emit(m))
            btns.addWidget(b)
            self.buttons[mode] = b
        lay.addWidget(QLabel("<b>Find similar</b>", self))
        lay.addLayout(btns)
        f = QGridLayout()
        self.modality = QComboBox(self)
        self.modality.addItems(["any", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG"])
        self.body_part = QLineEdit(self)
        self.diagnosis = QLineEdit(self)
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("optional: words in reports")
        self.sex = QComboBox(self)
        self.sex.addItems(["any", "F", "M", "O"])
        self.age_min = QSpinBox(self)
        self.age_min.setRange(0, 120)
        self.age_min.setSpecialValueText("any")
        self.age_max = QSpinBox(self)
        self.age_max.setRange(0, 120)
        self.age_max.setSpecialValueText("any")
        self.date_from = QLineEdit(self)
        self.date_from.setPlaceholderText("YYYY-MM-DD")
        self.date_to = QLineEdit(self)
        self.date_to.setPlaceholderText("YYYY-MM-DD")
        self.tags = QLineEdit(self)
        self.tags.setPlaceholderText("comma-separated")
        self.top_k = QSpinBox(self)
        self.top_k.setRange(1, 100)
        self.top_k.setValue(12)
        self.exclude_patient = QCheckBox("exclude same patient", self)
        self.exclude_patient.setChecked(True)
        rows = (("Modality", self.modality), ("Body part", self.body_part), ("Sex", self.sex),
                ("Age from", self.age_min), ("Age to", self.age_max), ("Date from", self.date_from),
                ("Date to", self.date_to), ("Tags", self.tags), ("Diagnosis", self.diagnosis),
                ("Text", self.text), ("Results", self.top_k))
        for r, (lab, w) in enumerate(rows):
            f.addWidget(QLabel(lab, self), r, 0)
            f.addWidget(w, r, 1)
        f.addWidget(self.exclude_patient, len(rows), 0, 1, 2)
        lay.addLayout(f)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        busy = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop this search")
        self.cancel_button.clicked.connect(self.cancel_requested)
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.cancel_button)
        lay.addLayout(busy)
        self.progress.hide()
        self.cancel_button.hide()
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.grid_host = QWidget(self.scroll)
        self.grid = QGridLayout(self.grid_host)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.scroll.setWidget(self.grid_host)
        lay.addWidget(self.scroll, 1)
        self.cards: list[ResultCard] = []

    def form(self) -> SearchForm:
        """The filter form as typed (parsed into filters by the core)."""
        return SearchForm(modality=self.modality.currentText(), body_part=self.body_part.text(),
                          sex=self.sex.currentText(), age_min=self.age_min.value() or None,
                          age_max=self.age_max.value() or None, date_from=self.date_from.text(),
                          date_to=self.date_to.text(), tags=self.tags.text(), diagnosis=self.diagnosis.text(),
                          text=self.text.text(), top_k=self.top_k.value(),
                          exclude_same_patient=self.exclude_patient.isChecked())

    def set_busy(self, message: str) -> None:
        """A search runs: buttons off, an indeterminate bar and Cancel until it ends."""
        self.status.setText(message)
        for b in self.buttons.values():
            b.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()

    def set_progress(self, done: int, total: int, message: str = "") -> None:
        self.progress.setRange(0, max(total, 0))
        if total:
            self.progress.setValue(min(done, total))
        if message:
            self.status.setText(f"{message[:1].upper()}{message[1:]}…")

    def set_idle(self, message: str = "") -> None:
        self.status.setText(message)
        for b in self.buttons.values():
            b.setEnabled(True)
        self.progress.hide()
        self.cancel_button.hide()

    def set_results(self, items: list[tuple[Any, dict[str, Any], QPixmap | None]], message: str = "") -> None:
        for c in self.cards:
            self.grid.removeWidget(c)
            c.deleteLater()
        self.cards = []
        cols = 2
        for n, (hit, info, pm) in enumerate(items):
            card = ResultCard(hit, info, pm, self.grid_host)
            card.open_requested.connect(self.open_requested)
            card.feedback.connect(self.feedback)
            self.grid.addWidget(card, n // cols, n % cols)
            self.cards.append(card)
        self.set_idle(message or f"{len(items)} similar cases")
