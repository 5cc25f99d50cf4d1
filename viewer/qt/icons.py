"""Toolbar and window icons from ``casebook.resources`` (SVG, drawn in the palette's text colour).

The SVG files use ``currentColor``; Qt's SVG renderer has no notion of it, so the colour of the
current palette is substituted before rendering. One set of files then serves the dark and the
light theme, and a missing file gives an empty icon (the action keeps its text) instead of an error.
"""
from __future__ import annotations

import logging
from functools import lru_cache

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from casebook.resources import ICONS_DIR

log = logging.getLogger(__name__)

_SIZES = (16, 24, 32, 48)


def _colour(role: QPalette.ColorRole = QPalette.ColorRole.ButtonText) -> str:
    app = QGuiApplication.instance()
    return app.palette().color(role).name() if app is not None else "#202020"  # type: ignore[union-attr]


@lru_cache(maxsize=None)
def _render(name: str, colour: str) -> QIcon:
    path = ICONS_DIR / f"{name}.svg"
    try:
        svg = path.read_text(encoding="utf-8").replace("currentColor", colour)
    except OSError as exc:
        log.warning("icon %s unavailable: %s", name, exc)
        return QIcon()
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    if not renderer.isValid():
        log.warning("icon %s: not a valid SVG", path)
        return QIcon()
    icon = QIcon()
    for size in _SIZES:
        pm = QPixmap(size, size)
        pm.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pm)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        icon.addPixmap(pm)
    return icon


def icon(name: str) -> QIcon:
    """The icon ``resources/icons/<name>.svg`` in the current palette's text colour."""
    return _render(name, _colour())


def app_icon() -> QIcon:
    """Casebook's application icon (full colour)."""
    return _render("casebook", "#000000")


def icon_names() -> list[str]:
    return sorted(p.stem for p in ICONS_DIR.glob("*.svg"))
