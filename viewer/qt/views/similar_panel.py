"""Similar-case panel: Find similar buttons, filters, a progress bar with Cancel, and a grid of
result cards. Layout only: the form's values go out as a typed
:class:`~casebook.viewer.core.services.search_form.SearchForm`, parsed in the core."""
from __future__ import annotations

import html
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from casebook.common.errors import CasebookError
from casebook.viewer.core.services.search_form import SearchForm
from casebook.viewer.core.services.thumbnails import window_to_uint8


THUMB = 160  # thumbnail side, pixels
CARD_W = THUMB + 14  # card width: the thumbnail and the card's margins
#: Images narrower than this are named on the card ("16×16 image"): scaled up they look blank.
TINY_SIDE = 32


def gray_to_pixmap(img: np.ndarray, window: tuple[float, float], size: int = THUMB,
                   region: tuple[float, float, float, float] | None = None) -> QPixmap:
    """Window a slice like the query and make a thumbnail; ``region`` (i0, j0, i1, j1 in the
    slice's pixels) is outlined: the matched region of a region-level hit."""
    a = window_to_uint8(img, window)
    q = QImage(a.data, a.shape[1], a.shape[0], a.strides[0], QImage.Format.Format_Grayscale8).copy()
    pm = QPixmap.fromImage(q).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
    if region is not None and a.shape[0] and a.shape[1]:
        i0, j0, i1, j1 = (float(v) for v in region)
        sx, sy = pm.width() / a.shape[1], pm.height() / a.shape[0]
        painter = QPainter(pm)
        painter.setPen(QPen(QColor(255, 200, 0), 2))
        painter.drawRect(QRectF(i0 * sx, j0 * sy, max(i1 - i0, 1) * sx, max(j1 - j0, 1) * sy))
        painter.end()
    return pm


def _small(label: QLabel, delta: float = -1.0) -> QLabel:
    f = label.font()
    f.setPointSizeF(max(6.0, f.pointSizeF() + delta))
    label.setFont(f)
    return label


class ResultCard(QFrame):
    """One analogue: its matched slice, score and date, follow-up badge, diagnosis and report
    words, in the palette's colours (readable in both themes).

    ``info`` keys: score, date, diagnosis, snippet, has_followup, and optionally confidence
    (0..1, a calibrated figure), region (the matched box on the thumbnail's slice), image_size
    ((rows, columns) of the analogue's images) and description.
    """

    open_requested = Signal(object)
    feedback = Signal(object, int)  # +1 more like this, -1 not like this

    def __init__(self, hit: Any, info: dict[str, Any], pixmap: QPixmap | None, parent=None) -> None:
        super().__init__(parent)
        self.hit = hit
        self.info = info
        self.has_thumbnail = pixmap is not None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedWidth(CARD_W)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(3)
        self.thumb = QLabel(self)
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setStyleSheet("background: black; color: #ccc;")
        if pixmap is not None:
            self.thumb.setPixmap(pixmap)
        else:
            self.thumb.setText("no image")
        lay.addWidget(self.thumb)
        size = info.get("image_size")
        self.size_note = None
        if size and min(size) < TINY_SIDE:
            self.size_note = _small(QLabel(f"{size[1]}×{size[0]} image (shown enlarged)", self))
            lay.addWidget(self.size_note)
        head = QHBoxLayout()
        head.setSpacing(4)
        self.score = QLabel(f"<b>{info.get('score', 0):.2f}</b>", self)
        self.score.setToolTip("similarity score")
        self.date = QLabel(info.get("date", "") or "date unknown", self)
        self.date.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        head.addWidget(self.score)
        head.addWidget(self.date, 1)
        lay.addLayout(head)
        conf = info.get("confidence")
        self.confidence = None
        if conf is not None:
            self.confidence = QLabel(f"confidence {100 * float(conf):.0f}%", self)
            self.confidence.setToolTip("calibrated probability that this case has the same diagnosis, fitted on "
                                       "this library's labelled cases")
            lay.addWidget(self.confidence)
        elif info.get("confidence_text"):
            text = str(info["confidence_text"])
            self.confidence = _small(QLabel(text.split(";")[0], self))
            same_place = text.startswith("same place")  # the patient's own scan: no probability applies
            self.confidence.setToolTip(text if same_place else text + " (no probability: too few labelled cases to fit one)")
            lay.addWidget(self.confidence)
        self.badge = None
        if info.get("has_followup"):
            self.badge = QLabel("⟳ follow-up", self)
            self.badge.setToolTip("this patient has later studies")
            lay.addWidget(self.badge)
        dx = info.get("diagnosis", "") or ""
        self.diagnosis = QLabel(f"<i>{html.escape(dx) or 'no diagnosis'}</i>", self)
        self.diagnosis.setWordWrap(True)
        self.diagnosis.setToolTip(dx)
        lay.addWidget(self.diagnosis)
        snippet = " ".join((info.get("snippet", "") or "").split())
        self.snippet = _small(QLabel(snippet[:160] + ("…" if len(snippet) > 160 else ""), self))
        self.snippet.setWordWrap(True)
        self.snippet.setToolTip(snippet)
        if snippet:
            lay.addWidget(self.snippet)
        else:
            self.snippet.hide()
        row = QHBoxLayout()
        for text, tip, val in (("Open", "Open side by side", 0), ("+", "More like this", 1), ("−", "Not like this", -1)):
            b = QPushButton(text, self)
            b.setToolTip(tip)
            if val == 0:
                b.clicked.connect(lambda: self.open_requested.emit(self.hit))
            else:
                b.setFixedWidth(30)
                b.clicked.connect(lambda _=False, v=val: self.feedback.emit(self.hit, v))
            row.addWidget(b, 1 if val == 0 else 0)
        lay.addLayout(row)
        # the width is fixed, so the height that holds every wrapped line is known: fix it, so that
        # a crowded grid can never squeeze the text rows over the thumbnail
        lay.activate()
        self.setFixedHeight(lay.heightForWidth(CARD_W) if lay.hasHeightForWidth() else lay.sizeHint().height())

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.open_requested.emit(self.hit)


class SimilarPanel(QWidget):
    find_requested = Signal(str)  # "series" | "slice" | "box"
    open_requested = Signal(object)
    feedback = Signal(object, int)
    cancel_requested = Signal()  # the Cancel button of a running search
    add_requested = Signal()  # "Add to library" for a folder opened without importing it

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        btns = QHBoxLayout()
        self.buttons = {}
        tips = {"series": "Cases that look like this series (whole-slice likeness)",
                "findings": "Cases with the same findings: this series' least typical regions, matched one by one",
                "slice": "Cases that look like the slice on screen", "box": "Draw a box around a finding"}
        for mode, text in (("series", "Series"), ("findings", "Findings"), ("slice", "This slice"), ("box", "Draw box")):
            b = QPushButton(text, self)
            b.setToolTip(tips[mode])
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
        self.same_anatomy = QCheckBox("same anatomy", self)
        self.same_anatomy.setChecked(True)
        self.same_anatomy.setToolTip("A box or Findings search matches only series of the same anatomy (head, chest, "
                                     "abdomen, ...), as their headers say; series that name none are kept")
        rows = (("Modality", self.modality), ("Body part", self.body_part), ("Sex", self.sex),
                ("Age from", self.age_min), ("Age to", self.age_max), ("Date from", self.date_from),
                ("Date to", self.date_to), ("Tags", self.tags), ("Diagnosis", self.diagnosis),
                ("Text", self.text))
        # the filters fold away (the cards need the height); the toggle names the active ones, so a
        # folded filter never narrows the results unseen
        self.filters_box = QWidget(self)
        f.setContentsMargins(0, 0, 0, 0)
        self.filters_box.setLayout(f)
        for r, (lab, w) in enumerate(rows):
            f.addWidget(QLabel(lab, self.filters_box), r, 0)
            f.addWidget(w, r, 1)
        self.filters_toggle = QToolButton(self)
        self.filters_toggle.setCheckable(True)
        self.filters_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.filters_toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.filters_toggle.toggled.connect(self._show_filters)
        head = QHBoxLayout()
        head.addWidget(self.filters_toggle, 1)
        head.addWidget(QLabel("Results", self))
        head.addWidget(self.top_k)
        lay.addLayout(head)
        lay.addWidget(self.filters_box)
        checks = QHBoxLayout()
        checks.addWidget(self.exclude_patient)
        checks.addWidget(self.same_anatomy)
        checks.addStretch(1)
        lay.addLayout(checks)
        for w in (self.modality, self.sex):
            w.currentTextChanged.connect(self._update_filters_toggle)
        for w in (self.body_part, self.diagnosis, self.text, self.date_from, self.date_to, self.tags):
            w.textChanged.connect(self._update_filters_toggle)
        for w in (self.age_min, self.age_max):
            w.valueChanged.connect(self._update_filters_toggle)
        self._show_filters(False)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
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
        self.add_button = QPushButton("Add this folder to the library", self)
        self.add_button.setToolTip("Import the open folder (stored, embedded and indexed) so that every "
                                   "search mode works on it")
        self.add_button.clicked.connect(self.add_requested)
        self.add_button.hide()
        lay.addWidget(self.add_button)
        self.results_for = QLabel("", self)  # which study the cards below belong to
        self.results_for.setWordWrap(True)
        self.results_for.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.results_for)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.grid_host = QWidget(self.scroll)
        self.grid = QGridLayout(self.grid_host)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.grid.setSpacing(6)
        self.scroll.setWidget(self.grid_host)
        lay.addWidget(self.scroll, 1)
        self.cards: list[ResultCard] = []
        self.columns = 0
        self.scroll.viewport().installEventFilter(self)

    def _show_filters(self, shown: bool) -> None:
        self.filters_box.setVisible(shown)
        self.filters_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self._update_filters_toggle()

    def _update_filters_toggle(self) -> None:
        """The toggle says which filters are set ("Filters: modality=CT"), or that none is."""
        try:
            said = self.form().to_filters().describe()
        except CasebookError:
            said = "a field needs correcting"
        if self.text.text().strip():
            said = f"{'' if said == 'no filters' else said + ', '}report text {self.text.text().strip()!r}"
        self.filters_toggle.setText(f"Filters: {said}")
        shown = self.filters_toggle.isChecked()
        self.filters_toggle.setToolTip("Fold the filters away" if shown else "Show the filters")

    def form(self) -> SearchForm:
        """The filter form as typed (parsed into filters by the core)."""
        return SearchForm(modality=self.modality.currentText(), body_part=self.body_part.text(),
                          sex=self.sex.currentText(), age_min=self.age_min.value() or None,
                          age_max=self.age_max.value() or None, date_from=self.date_from.text(),
                          date_to=self.date_to.text(), tags=self.tags.text(), diagnosis=self.diagnosis.text(),
                          text=self.text.text(), top_k=self.top_k.value(),
                          exclude_same_patient=self.exclude_patient.isChecked(),
                          same_anatomy=self.same_anatomy.isChecked())

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
        self._fit_labels()
        QTimer.singleShot(0, self._fit_labels)  # again once the new text is laid out at its width
        for b in self.buttons.values():
            b.setEnabled(True)
        self.progress.hide()
        self.cancel_button.hide()

    def set_results(self, items: list[tuple[Any, dict[str, Any], QPixmap | None]], message: str = "",
                    results_for: str = "") -> None:
        """Show new cards (the list starts at the top again) and say which study they are for."""
        self._remove_cards()
        for hit, info, pm in items:
            card = ResultCard(hit, info, pm, self.grid_host)
            card.open_requested.connect(self.open_requested)
            card.feedback.connect(self.feedback)
            self.cards.append(card)
        self.columns = 0
        self._reflow()
        self.scroll.verticalScrollBar().setValue(0)
        self.results_for.setText(results_for)
        self.set_idle(message or f"{len(items)} similar cases")  # fits both labels

    def clear_results(self, message: str = "") -> None:
        """No cards (another study is open: its results would mislead)."""
        self._remove_cards()
        self.results_for.setText("")
        self.set_idle(message)

    def reset_filters(self, top_k: int, exclude_same_patient: bool, same_anatomy: bool = True) -> None:
        """Back to "any" in every filter (the defaults of the settings for count and exclusion)."""
        self.modality.setCurrentIndex(0)
        self.sex.setCurrentIndex(0)
        for w in (self.body_part, self.diagnosis, self.text, self.date_from, self.date_to, self.tags):
            w.clear()
        self.age_min.setValue(0)
        self.age_max.setValue(0)
        self.top_k.setValue(top_k)
        self.exclude_patient.setChecked(exclude_same_patient)
        self.same_anatomy.setChecked(same_anatomy)

    def _remove_cards(self) -> None:
        for c in self.cards:
            self.grid.removeWidget(c)
            c.hide()  # deleted later: until then it must not show under the new cards
            c.deleteLater()
        self.cards = []

    def columns_for(self, width: int) -> int:
        """As many card columns as the scroll area's width holds (at least one)."""
        m = self.grid.contentsMargins()
        usable = width - m.left() - m.right() + self.grid.horizontalSpacing()
        return max(1, usable // (CARD_W + self.grid.horizontalSpacing()))

    def _reflow(self) -> None:
        cols = self.columns_for(self.scroll.viewport().width())
        if cols == self.columns:
            return
        self.columns = cols
        for c in self.cards:
            self.grid.removeWidget(c)
        for n, c in enumerate(self.cards):
            self.grid.addWidget(c, n // cols, n % cols, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            c.show()  # not left to the layout's queued show: the cards are on screen when this returns

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if obj is self.scroll.viewport() and event.type() == QEvent.Type.Resize:
            self._reflow()
            self._fit_labels()
        return super().eventFilter(obj, event)

    def _fit_labels(self) -> None:
        """Keep every wrapped line of the status and "Similar to" labels visible: in a short dock
        the layout gave them the height of fewer lines than their text wraps to at this width, and
        the reader saw half lines. Each label gets exactly the height its text needs at its width
        (the cards' area is what gives way)."""
        for label in (self.status, self.results_for):
            width = label.width() if label.width() > 50 else max(self.width() - 4, 120)
            text = label.text()
            need = 0
            if text:
                rect = label.fontMetrics().boundingRect(QRect(0, 0, width, 100000),
                                                        int(Qt.TextFlag.TextWordWrap), text)
                need = rect.height() + 2 * label.margin() + 2
            if label.height() != need or label.minimumHeight() != need:
                label.setFixedHeight(need)
