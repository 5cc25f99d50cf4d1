"""Starts the Qt application (imported late: ``casebook --help`` never loads Qt)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from casebook.viewer.core.config import load_settings

log = logging.getLogger(__name__)


def ensure_app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("Casebook")
        app.setOrganizationName("Casebook")
    return app  # type: ignore[return-value]


def run_gui(path: Path | None = None) -> int:
    """Open the main window (on ``path`` if given) and run the event loop."""
    app = ensure_app()
    from .icons import app_icon
    from .main_window import MainWindow
    from .theme import apply_theme

    settings = load_settings()
    apply_theme(app, settings.theme)
    app.setWindowIcon(app_icon())
    win = MainWindow(settings)
    win.show()
    win.open_library_when_shown()  # the window paints first, then the case store opens
    if path is not None:
        win.open_path(path)
    return int(app.exec())
