"""Reading-room theme: a dark Fusion palette by default (bright chrome around dark images tires
the eye and lowers perceived contrast), the platform's light look on request."""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")


def dark_palette() -> QPalette:
    p = QPalette()
    base, window, text, mid = QColor(30, 33, 38), QColor(43, 47, 53), QColor(220, 224, 228), QColor(70, 76, 84)
    roles = {
        QPalette.ColorRole.Window: window, QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base, QPalette.ColorRole.AlternateBase: QColor(37, 41, 46),
        QPalette.ColorRole.ToolTipBase: window, QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Text: text, QPalette.ColorRole.Button: window, QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 90, 90), QPalette.ColorRole.Link: QColor(224, 160, 48),
        QPalette.ColorRole.Highlight: QColor(224, 160, 48), QPalette.ColorRole.HighlightedText: QColor(20, 20, 20),
        QPalette.ColorRole.PlaceholderText: QColor(130, 136, 144), QPalette.ColorRole.Mid: mid,
        QPalette.ColorRole.Dark: QColor(25, 27, 31), QPalette.ColorRole.Light: QColor(80, 86, 94),
    }
    for role, colour in roles.items():
        p.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 124, 130))
    return p


def apply_theme(app: QApplication, name: str) -> None:
    """Apply ``name`` ("dark" or "light"); Fusion in both, so both look alike on every OS."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if name == "dark" else app.style().standardPalette())
