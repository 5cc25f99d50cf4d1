"""The Teaching panel: collections and filters, full-text search over the cases, the case list, the
case editor with its completeness indicator and key images, similar teaching cases, Quiz.

Layout only: the controller (``controllers/teaching.py``) fills it and acts on its signals.
"""
from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QPushButton, QSplitter, QTabWidget, QVBoxLayout,
                               QWidget)

from casebook.index.case_store.teaching_records import CERTAINTIES, TeachingCase, TeachingFilter

DIFFICULTIES = ("", "beginner", "intermediate", "advanced")
ANY = "(any)"


def _combo(parent: QWidget, values: Sequence[str], name: str) -> QComboBox:
    c = QComboBox(parent)
    c.setObjectName(name)
    c.addItems([ANY, *[v for v in values if v]])
    return c


class CaseEditor(QWidget):
    """The fields of one case, its key images and what is still missing."""

    save_requested = Signal()
    open_key_image = Signal(int)  # index in the case's key images

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.case: TeachingCase | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.completeness = QLabel("", self)
        self.completeness.setObjectName("teaching_completeness")
        self.completeness.setWordWrap(True)
        lay.addWidget(self.completeness)
        self.key_images = QListWidget(self)
        self.key_images.setObjectName("teaching_key_images")
        self.key_images.setViewMode(QListWidget.ViewMode.IconMode)
        self.key_images.setIconSize(QPixmap(96, 96).size())
        self.key_images.setMaximumHeight(130)
        self.key_images.itemDoubleClicked.connect(lambda it: self.open_key_image.emit(self.key_images.row(it)))
        lay.addWidget(self.key_images)
        form = QFormLayout()
        self.title = QLineEdit(self)
        self.diagnosis = QLineEdit(self)
        self.history = QPlainTextEdit(self)
        self.findings = QPlainTextEdit(self)
        self.differential = QPlainTextEdit(self)
        self.differential.setPlaceholderText("one diagnosis a line")
        self.discussion = QPlainTextEdit(self)
        for w in (self.history, self.findings, self.differential, self.discussion):
            w.setMaximumHeight(70)
        self.certainty = QComboBox(self)
        self.certainty.addItems(list(CERTAINTIES))
        self.difficulty = QComboBox(self)
        self.difficulty.addItems(list(DIFFICULTIES))
        self.systems = QLineEdit(self)
        self.systems.setPlaceholderText("comma-separated")
        self.tags = QLineEdit(self)
        self.tags.setPlaceholderText("comma-separated")
        self.collections = QLineEdit(self)
        self.collections.setPlaceholderText("comma-separated")
        self.author = QLineEdit(self)
        for label, w in (("Title", self.title), ("History", self.history), ("Findings", self.findings),
                         ("Diagnosis", self.diagnosis), ("Differential", self.differential),
                         ("Discussion", self.discussion), ("Certainty", self.certainty), ("Systems", self.systems),
                         ("Tags", self.tags), ("Difficulty", self.difficulty), ("Author", self.author),
                         ("Collections", self.collections)):
            w.setObjectName(f"teaching_{label.lower()}")
            form.addRow(label, w)
        lay.addLayout(form)
        self.save_button = QPushButton("Save case", self)
        self.save_button.setObjectName("teaching_save")
        self.save_button.clicked.connect(self.save_requested)
        lay.addWidget(self.save_button)
        self.setEnabled(False)

    @staticmethod
    def _split(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    def show_case(self, case: TeachingCase | None, thumbnails: Sequence[QPixmap | None] = ()) -> None:
        self.case = case
        self.setEnabled(case is not None)
        c = case or TeachingCase(study_id=0)
        self.title.setText(c.title)
        self.diagnosis.setText(c.diagnosis)
        self.history.setPlainText(c.history)
        self.findings.setPlainText(c.findings)
        self.differential.setPlainText("\n".join(c.differential))
        self.discussion.setPlainText(c.discussion)
        self.certainty.setCurrentText(c.certainty)
        self.difficulty.setCurrentText(c.difficulty)
        self.systems.setText(", ".join(c.systems))
        self.tags.setText(", ".join(c.tags))
        self.collections.setText(", ".join(c.collections))
        self.author.setText(c.author)
        self.key_images.clear()
        for i, ki in enumerate(c.key_images):
            it = QListWidgetItem(f"{ki.modality} {ki.slice_index + 1}", self.key_images)
            pm = thumbnails[i] if i < len(thumbnails) else None
            if pm is not None:
                it.setIcon(pm)
            it.setToolTip(ki.caption or f"W/L {ki.window_width:g}/{ki.window_center:g}, "
                                       f"{len(ki.annotations)} annotation(s)")
        self.show_completeness(c if case is not None else None)

    def show_completeness(self, case: TeachingCase | None) -> None:
        if case is None:
            self.completeness.setText("No case selected. Save as teaching case (Ctrl+K) while reading.")
            return
        missing = case.missing()
        pct = 100 * case.completeness()
        self.completeness.setText(f"Case {case.id}: {pct:.0f}% complete" +
                                  (f" — missing: {', '.join(missing)}" if missing else " — ready to share"))

    def edited(self) -> TeachingCase:
        """The case as edited in the form (fields only; key images are kept as they were)."""
        assert self.case is not None
        c = self.case
        c.title, c.diagnosis, c.author = self.title.text(), self.diagnosis.text(), self.author.text()
        c.history, c.findings = self.history.toPlainText(), self.findings.toPlainText()
        c.discussion = self.discussion.toPlainText()
        c.differential = [x.strip() for x in self.differential.toPlainText().splitlines() if x.strip()]
        c.certainty, c.difficulty = self.certainty.currentText(), self.difficulty.currentText()
        c.systems, c.tags, c.collections = (self._split(self.systems.text()), self._split(self.tags.text()),
                                            self._split(self.collections.text()))
        return c


class TeachingPanel(QWidget):
    """Find, open, edit and quiz teaching cases."""

    filters_changed = Signal()
    case_selected = Signal(int)
    open_requested = Signal(int)
    similar_requested = Signal(int)
    quiz_requested = Signal(str)
    export_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.search = QLineEdit(self)
        self.search.setObjectName("teaching_search")
        self.search.setPlaceholderText("Search the teaching cases (title, history, findings, diagnosis…)")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self.filters_changed)
        lay.addWidget(self.search)
        grid = QGridLayout()
        self.collection = _combo(self, [], "teaching_collection")
        self.system = _combo(self, [], "teaching_system")
        self.modality = _combo(self, [], "teaching_modality")
        self.tag = _combo(self, [], "teaching_tag")
        self.certainty_filter = _combo(self, CERTAINTIES, "teaching_certainty_filter")
        self.difficulty_filter = _combo(self, DIFFICULTIES, "teaching_difficulty_filter")
        self.author_filter = _combo(self, [], "teaching_author_filter")
        for i, (label, w) in enumerate((("Collection", self.collection), ("System", self.system),
                                        ("Modality", self.modality), ("Tag", self.tag),
                                        ("Certainty", self.certainty_filter), ("Difficulty", self.difficulty_filter),
                                        ("Author", self.author_filter))):
            grid.addWidget(QLabel(label, self), i // 2, (i % 2) * 2)
            grid.addWidget(w, i // 2, (i % 2) * 2 + 1)
            w.currentIndexChanged.connect(lambda _i: self.filters_changed.emit())
        lay.addLayout(grid)
        split = QSplitter(Qt.Orientation.Vertical, self)
        top = QWidget(split)
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        self.count = QLabel("", top)
        self.count.setObjectName("teaching_count")
        tl.addWidget(self.count)
        self.cases = QListWidget(top)
        self.cases.setObjectName("teaching_cases")
        self.cases.currentItemChanged.connect(self._current_changed)
        self.cases.itemDoubleClicked.connect(lambda it: self.open_requested.emit(int(it.data(Qt.ItemDataRole.UserRole))))
        tl.addWidget(self.cases, 1)
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open", top)
        self.similar_button = QPushButton("Similar teaching cases", top)
        self.quiz_button = QPushButton("Quiz…", top)
        self.export_button = QPushButton("Export…", top)
        for b, name in ((self.open_button, "teaching_open"), (self.similar_button, "teaching_similar"),
                        (self.quiz_button, "teaching_quiz"), (self.export_button, "teaching_export")):
            b.setObjectName(name)
            buttons.addWidget(b)
        self.open_button.clicked.connect(lambda: self._emit_current(self.open_requested))
        self.similar_button.clicked.connect(lambda: self._emit_current(self.similar_requested))
        self.quiz_button.clicked.connect(lambda: self.quiz_requested.emit(self._value(self.collection)))
        self.export_button.clicked.connect(self.export_requested)
        tl.addLayout(buttons)
        self.status = QLabel("", top)
        self.status.setObjectName("teaching_status")
        self.status.setWordWrap(True)
        tl.addWidget(self.status)
        self.tabs = QTabWidget(split)
        self.editor = CaseEditor(self.tabs)
        self.tabs.addTab(self.editor, "Case")
        self.similar = QListWidget(self.tabs)
        self.similar.setObjectName("teaching_similar_results")
        self.similar.itemDoubleClicked.connect(lambda it: self.case_selected.emit(int(it.data(Qt.ItemDataRole.UserRole))))
        self.tabs.addTab(self.similar, "Similar teaching cases")
        split.addWidget(top)
        split.addWidget(self.tabs)
        lay.addWidget(split, 1)

    @staticmethod
    def _value(combo: QComboBox) -> str:
        return "" if combo.currentText() == ANY else combo.currentText()

    def _emit_current(self, signal: Any) -> None:
        it = self.cases.currentItem()
        if it is not None:
            signal.emit(int(it.data(Qt.ItemDataRole.UserRole)))

    def _current_changed(self, cur: QListWidgetItem | None, _prev: QListWidgetItem | None) -> None:
        if cur is not None:
            self.case_selected.emit(int(cur.data(Qt.ItemDataRole.UserRole)))

    def filter(self) -> TeachingFilter:
        """The form as a filter (empty choices do not restrict)."""
        def one(c: QComboBox) -> tuple[str, ...]:
            v = self._value(c)
            return (v,) if v else ()

        return TeachingFilter(text=self.search.text().strip() or None, systems=one(self.system),
                              modalities=one(self.modality), tags=one(self.tag),
                              certainty=self._value(self.certainty_filter) or None,
                              difficulty=self._value(self.difficulty_filter) or None,
                              author=self._value(self.author_filter) or None,
                              collection=self._value(self.collection) or None)

    def set_choices(self, values: dict[str, list[str]]) -> None:
        """Offer the values the library has, keeping the current choices."""
        for combo, key in ((self.collection, "collections"), (self.system, "systems"), (self.modality, "modalities"),
                           (self.tag, "tags"), (self.author_filter, "authors")):
            cur = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ANY, *values.get(key, [])])
            combo.setCurrentText(cur if cur in values.get(key, []) else ANY)
            combo.blockSignals(False)

    def show_cases(self, cases: Sequence[TeachingCase], select: int | None = None) -> None:
        self.cases.blockSignals(True)
        self.cases.clear()
        row = -1
        for i, c in enumerate(cases):
            text = f"{c.title or '(untitled)'} — {c.diagnosis or 'no diagnosis'}  [{', '.join(c.modalities)}]" \
                   f"  {100 * c.completeness():.0f}%"
            it = QListWidgetItem(text, self.cases)
            it.setData(Qt.ItemDataRole.UserRole, int(c.id or 0))
            if c.id == select:
                row = i
        self.cases.blockSignals(False)
        self.count.setText(f"{len(cases)} teaching case(s)")
        if row >= 0:
            self.cases.setCurrentRow(row)

    def case_ids(self) -> list[int]:
        return [int(self.cases.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.cases.count())]

    def show_similar(self, rows: Sequence[tuple[int, str, float]], message: str = "") -> None:
        """(case id, text, score) of the teaching cases most like the selected one."""
        self.similar.clear()
        for cid, text, score in rows:
            it = QListWidgetItem(f"{text}  ({score:.2f})", self.similar)
            it.setData(Qt.ItemDataRole.UserRole, int(cid))
        self.tabs.setCurrentWidget(self.similar)
        self.status.setText(message or f"{len(rows)} similar teaching case(s)")

    def similar_ids(self) -> list[int]:
        return [int(self.similar.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.similar.count())]
