"""The keyboard shortcut reference (F1)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout

SHORTCUTS: list[tuple[str, str]] = [
    ("Mouse wheel / Up, Down / Left, Right", "Previous / next slice"),
    ("Page Up / Page Down", "Back / forward 10 slices"),
    ("Home / End", "First / last slice"),
    ("Ctrl + wheel, right drag", "Zoom"),
    ("Middle drag", "Pan"),
    ("Left drag", "Current tool (window/level by default)"),
    ("Double-click", "Toggle single view"),
    ("Shift + left drag, ',' / '.' (Shift: 1°), '/'", "Oblique MPR: turn the view's crosshair axes / true planes again"),
    ("W / P / Z / C", "Tool: window-level / pan / zoom / crosshair"),
    ("D / E / B", "Tool: distance / ellipse ROI / box for Find similar"),
    ("Delete", "Delete the selected measurement (else the last one)"),
    ("M", "Show / hide the measurement list (click a row to go to its slice)"),
    ("F2 F3 F4 F5 F6", "Window: CT lung / mediastinum / abdomen / bone / brain"),
    ("F7 / F8", "Window: auto (MR) / header default"),
    ("I", "Invert"),
    ("R", "Reset view (fit, default window)"),
    ("Space", "Cine play / stop"),
    ("[ / ]", "Cine slower / faster"),
    ("Ctrl+1 / Ctrl+2 / Ctrl+4", "Layout 1×1 / 1×2 / 2×2"),
    ("X", "Show / hide crosshair"),
    ("O", "Show / hide overlay text"),
    ("Ctrl+F", "Find similar (series)"),
    ("Ctrl+Shift+F", "Find similar (current slice)"),
    ("Shift+P", "Compare with the prior (current | prior, registered and linked)"),
    ("Alt+1 / 2 / 3 / 4", "Compare: prior / fade / checkerboard / subtraction"),
    ("Alt+arrows, Alt+PgUp/PgDn", "Nudge the registration: move the prior 1 mm"),
    ("Alt+, / Alt+.", "Nudge the registration: rotate the prior 0.5°"),
    ("Ctrl+Shift+C", "Copy the selected measurement to the other study"),
    ("Ctrl+Shift+U", "Later studies of the open similar case (follow-up)"),
    ("Ctrl+O", "Open folder"),
    ("Ctrl+I", "Import folder / DICOMDIR into the library"),
    ("Ctrl+,", "Settings"),
    ("Ctrl+K / K", "Save as teaching case / add a key image (the slice on screen)"),
    ("F1", "This help"),
]


class HelpDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        lay = QVBoxLayout(self)
        table = QTableWidget(len(SHORTCUTS), 2, self)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        for r, (k, a) in enumerate(SHORTCUTS):
            table.setItem(r, 0, QTableWidgetItem(k))
            table.setItem(r, 1, QTableWidgetItem(a))
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.resizeColumnsToContents()
        table.resizeRowsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay.addWidget(table)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.table = table
        # wide enough for every key and action (no sideways scrolling), as tall as the screen allows
        need_w = (sum(table.columnWidth(c) for c in range(2)) + table.verticalScrollBar().sizeHint().width()
                  + 2 * table.frameWidth() + lay.contentsMargins().left() + lay.contentsMargins().right() + 24)
        need_h = (table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(table.rowCount()))
                  + 2 * table.frameWidth() + bb.sizeHint().height() + 48)
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        max_w = screen.width() - 40 if screen is not None else need_w
        max_h = screen.height() - 60 if screen is not None else need_h
        self.resize(min(max(560, need_w), max_w), min(need_h, max_h))
