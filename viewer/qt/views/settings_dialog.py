"""Settings dialog over the typed settings (window geometry lives in QSettings instead)."""
from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QWidget)

from casebook.viewer.core.config import Settings


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._settings = copy.deepcopy(settings)
        form = QFormLayout(self)
        row = QWidget(self)
        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        self.library = QLineEdit(str(settings.library_dir), row)
        browse = QPushButton("…", row)
        browse.clicked.connect(self._browse)
        rl.addWidget(self.library)
        rl.addWidget(browse)
        form.addRow("Library folder", row)
        self.model = QLineEdit(settings.model, self)
        form.addRow("Encoder model", self.model)
        self.top_k = QSpinBox(self)
        self.top_k.setRange(1, 200)
        self.top_k.setValue(settings.search.top_k)
        form.addRow("Results per search", self.top_k)
        self.min_score = QDoubleSpinBox(self)
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setValue(settings.search.min_score)
        form.addRow("Minimum score", self.min_score)
        self.excl_patient = QCheckBox("Exclude the same patient", self)
        self.excl_patient.setChecked(settings.search.exclude_same_patient)
        self.excl_study = QCheckBox("Exclude the same study", self)
        self.excl_study.setChecked(settings.search.exclude_same_study)
        self.same_anatomy = QCheckBox("Box and Findings searches: the same anatomy only (head, chest, abdomen, ...)", self)
        self.same_anatomy.setChecked(settings.search.same_anatomy)
        form.addRow(self.excl_patient)
        form.addRow(self.excl_study)
        form.addRow(self.same_anatomy)
        self.priors_name_birth = QCheckBox("Priors: also match another Patient ID on name + birth date "
                                           "(listed as \"name + birth date\")", self)
        self.priors_name_birth.setChecked(settings.priors_name_birth_fallback)
        form.addRow(self.priors_name_birth)
        self.theme = QComboBox(self)
        self.theme.addItem("Dark (reading room)", "dark")
        self.theme.addItem("Light", "light")
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        form.addRow("Theme", self.theme)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        form.addRow(bb)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Library folder", self.library.text())
        if d:
            self.library.setText(d)

    def result_settings(self) -> Settings:
        s = self._settings
        s.library_dir = Path(self.library.text()).expanduser()
        s.model = self.model.text().strip() or s.model
        s.search.top_k = self.top_k.value()
        s.search.min_score = float(self.min_score.value())
        s.search.exclude_same_patient = self.excl_patient.isChecked()
        s.search.exclude_same_study = self.excl_study.isChecked()
        s.search.same_anatomy = self.same_anatomy.isChecked()
        s.priors_name_birth_fallback = self.priors_name_birth.isChecked()
        s.theme = str(self.theme.currentData())
        return s
