"""The bar above the prior pane in the compare layout: what is shown, the registration's quality,
and the interval change of the measurement being compared. Layout only."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

MODE_LABELS = {"prior": "Prior", "fade": "Fade", "checkerboard": "Checkerboard",
               "subtraction": "Subtraction (current − prior)"}


class CompareBar(QWidget):
    mode_changed = Signal(str)
    fade_changed = Signal(float)
    copy_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        row = QHBoxLayout()
        self.mode = QComboBox(self)
        for key, label in MODE_LABELS.items():
            self.mode.addItem(label, key)
        self.mode.setToolTip("What the right pane shows: the prior, or a view of both on the current's grid")
        self.mode.currentIndexChanged.connect(lambda _i: self.mode_changed.emit(str(self.mode.currentData())))
        row.addWidget(self.mode)
        self.fade = QSlider(Qt.Orientation.Horizontal, self)
        self.fade.setRange(0, 100)
        self.fade.setValue(50)
        self.fade.setToolTip("Fade: 0 = current, 100 = registered prior")
        self.fade.valueChanged.connect(lambda v: self.fade_changed.emit(v / 100.0))
        self.fade.setEnabled(False)
        row.addWidget(self.fade, 1)
        self.copy_button = QPushButton("Copy measurement", self)
        self.copy_button.setToolTip("Copy the selected measurement to the same place on the other study "
                                    "(Ctrl+Shift+C), then adjust it")
        self.copy_button.clicked.connect(self.copy_requested.emit)
        row.addWidget(self.copy_button)
        outer.addLayout(row)
        self.quality = QLabel("", self)
        self.quality.setObjectName("registration_quality")
        self.quality.setWordWrap(True)
        outer.addWidget(self.quality)
        self.change = QLabel("", self)
        self.change.setObjectName("interval_change")
        self.change.setWordWrap(True)
        self.change.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.change)

    def set_linked(self, linked: bool) -> None:
        """Fade, checkerboard and subtraction need a registration; copying needs one too."""
        for i in range(1, self.mode.count()):
            self.mode.model().item(i).setEnabled(linked)
        self.copy_button.setEnabled(linked)
        if not linked:
            self.mode.setCurrentIndex(0)

    def set_mode(self, mode: str) -> None:
        i = self.mode.findData(mode)
        if i >= 0 and i != self.mode.currentIndex():
            self.mode.setCurrentIndex(i)
        self.fade.setEnabled(mode == "fade")
