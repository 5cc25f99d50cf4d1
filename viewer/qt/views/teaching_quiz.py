"""The quiz dialog: a case as an unknown (key image, history), the answer (free text or choices),
the reveal (diagnosis, teaching fields, similar cases) and the running score. Layout only: the
controller feeds it questions and reveals from the quiz service."""
from __future__ import annotations

import html
from typing import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QButtonGroup, QDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QTextBrowser, QVBoxLayout, QWidget)


class QuizDialog(QDialog):
    answered = Signal(str)
    next_requested = Signal()

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("teaching_quiz_dialog")
        self.resize(640, 720)
        lay = QVBoxLayout(self)
        self.header = QLabel("", self)
        self.header.setObjectName("quiz_header")
        lay.addWidget(self.header)
        self.image = QLabel(self)
        self.image.setObjectName("quiz_image")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(320, 320)
        self.image.setStyleSheet("background: black; color: #ccc;")
        lay.addWidget(self.image, 1)
        self.history = QLabel("", self)
        self.history.setWordWrap(True)
        lay.addWidget(self.history)
        self.choices_host = QWidget(self)
        self.choices_layout = QVBoxLayout(self.choices_host)
        self.choice_group = QButtonGroup(self)
        lay.addWidget(self.choices_host)
        self.answer = QLineEdit(self)
        self.answer.setObjectName("quiz_answer")
        self.answer.setPlaceholderText("Your diagnosis")
        self.answer.returnPressed.connect(self._submit)
        lay.addWidget(self.answer)
        self.reveal = QTextBrowser(self)
        self.reveal.setObjectName("quiz_reveal")
        self.reveal.setMaximumHeight(220)
        lay.addWidget(self.reveal)
        row = QHBoxLayout()
        self.score = QLabel("", self)
        self.score.setObjectName("quiz_score")
        row.addWidget(self.score, 1)
        self.submit_button = QPushButton("Answer", self)
        self.submit_button.setObjectName("quiz_submit")
        self.submit_button.clicked.connect(self._submit)
        self.next_button = QPushButton("Next", self)
        self.next_button.setObjectName("quiz_next")
        self.next_button.clicked.connect(self.next_requested)
        row.addWidget(self.submit_button)
        row.addWidget(self.next_button)
        lay.addLayout(row)

    def show_question(self, number: int, total: int, history: str, modalities: Sequence[str],
                      image: QPixmap | None, choices: Sequence[str]) -> None:
        self.header.setText(f"Unknown case {number} of {total} ({', '.join(modalities) or 'images'})")
        self.history.setText(f"History: {history}" if history else "No history given.")
        if image is not None:
            self.image.setPixmap(image.scaled(self.image.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))
        else:
            self.image.setText("no key image")
        for b in self.choice_group.buttons():
            self.choice_group.removeButton(b)
            b.deleteLater()
        for i, c in enumerate(choices):
            b = QRadioButton(c, self.choices_host)
            b.setObjectName(f"quiz_choice_{i}")
            self.choice_group.addButton(b, i)
            self.choices_layout.addWidget(b)
        self.choices_host.setVisible(bool(choices))
        self.answer.setVisible(not choices)
        self.answer.clear()
        self.reveal.clear()
        self.submit_button.setEnabled(True)
        self.next_button.setEnabled(False)

    def choice_buttons(self) -> list[QRadioButton]:
        return [b for b in self.choice_group.buttons() if isinstance(b, QRadioButton)]

    def _submit(self) -> None:
        if self.choices_host.isVisible() or self.choice_buttons():
            b = self.choice_group.checkedButton()
            if b is None:
                self.reveal.setPlainText("Choose an answer first.")
                return
            text = b.text()
        else:
            text = self.answer.text().strip()
            if not text:
                self.reveal.setPlainText("Type your diagnosis first.")
                return
        self.submit_button.setEnabled(False)
        self.answered.emit(text)

    def show_reveal(self, correct: bool, fields: dict[str, str], similar: Sequence[str], score: str,
                    last: bool) -> None:
        head = "<b style='color:#4caf50'>Correct.</b>" if correct else "<b style='color:#e57373'>Not quite.</b>"
        body = "".join(f"<p><b>{html.escape(k)}:</b> {html.escape(v)}</p>" for k, v in fields.items() if v)
        sim = ("<p><b>Similar cases:</b><br>" + "<br>".join(html.escape(s) for s in similar) + "</p>") if similar else ""
        self.reveal.setHtml(head + body + sim)
        self.score.setText(score)
        self.next_button.setEnabled(True)
        self.next_button.setText("Finish" if last else "Next")

    def show_final(self, score: str) -> None:
        self.header.setText("Quiz finished")
        self.score.setText(score)
        self.submit_button.setEnabled(False)
        self.next_button.setEnabled(False)
