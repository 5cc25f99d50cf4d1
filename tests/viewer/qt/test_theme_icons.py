"""Toolbar icons and the reading-room theme, on a real main window under Xvfb."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage, QPalette
from PySide6.QtWidgets import QApplication, QToolBar

from casebook.viewer.core.config import load_settings
from casebook.viewer.core.errors import ConfigError

pytestmark = pytest.mark.gui


def _pixels(qicon, size: int = 24) -> np.ndarray:
    img = qicon.pixmap(size, size).toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    rows = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return rows[:, : img.width() * 4].reshape(img.height(), img.width(), 4).copy()


@pytest.fixture
def restore_look(qapp):
    palette, style = qapp.palette(), qapp.style().name()
    yield qapp
    qapp.setStyle(style)
    qapp.setPalette(palette)


def test_every_icon_renders_in_the_palette_colour(restore_look) -> None:
    from casebook.viewer.qt.icons import app_icon, icon, icon_names
    from casebook.viewer.qt.theme import apply_theme

    names = icon_names()
    assert {"wl", "pan", "zoom", "distance", "ellipse", "box", "similar", "layout-2x2"} <= set(names)
    for theme, want_light in (("dark", True), ("light", False)):
        apply_theme(restore_look, theme)
        for name in names:
            if name == "casebook":
                continue
            px = _pixels(icon(name))
            drawn = px[px[:, :, 3] > 200]
            assert len(drawn) > 8, f"{name}: nothing drawn"
            lum = drawn[:, :3].mean()
            assert (lum > 150) if want_light else (lum < 110), f"{name} ({theme}): luminance {lum:.0f}"
    px = _pixels(app_icon(), 48)
    assert (px[:, :, 3] > 0).mean() > 0.8 and px[..., :3].std() > 20  # a full-colour square


def test_toolbar_actions_have_icons_and_shortcut_tooltips(qtbot, settings, restore_look) -> None:
    from casebook.viewer.qt.main_window import MainWindow
    from casebook.viewer.qt.theme import apply_theme

    apply_theme(restore_look, "dark")
    win = MainWindow(settings, with_3d=False)
    qtbot.addWidget(win)
    try:
        tb = win.findChild(QToolBar, "reading_toolbar")
        actions = [a for a in tb.actions() if not a.isSeparator()]
        assert len(actions) >= 15
        for a in actions:
            assert not a.icon().isNull(), a.text()
            assert a.shortcut().isEmpty() or a.shortcut().toString() in a.toolTip(), a.text()
        assert "(W)" in win.actions_by_name["Window/level"].toolTip()
        # A theme change redraws the icons in the new text colour.
        before = _pixels(win.actions_by_name["Pan"].icon())
        apply_theme(restore_look, "light")
        win.refresh_icons()
        after = _pixels(win.actions_by_name["Pan"].icon())
        assert before[before[:, :, 3] > 200][:, :3].mean() > after[after[:, :, 3] > 200][:, :3].mean() + 80
    finally:
        win.close()
        for v in win.all_viewers():
            v.close_adapters()
        QApplication.processEvents()


def test_dark_theme_palette_and_setting(restore_look, tmp_path, monkeypatch) -> None:
    from casebook.viewer.qt.theme import apply_theme

    apply_theme(restore_look, "dark")
    window = restore_look.palette().color(QPalette.ColorRole.Window)
    text = restore_look.palette().color(QPalette.ColorRole.WindowText)
    assert window.lightness() < 70 and text.lightness() > 180
    cfg = tmp_path / "settings.toml"
    cfg.write_text('theme = "light"\n')
    assert load_settings(cfg, environ={}).theme == "light"
    assert load_settings(cfg, environ={"CASEBOOK_THEME": "dark"}).theme == "dark"
    cfg.write_text('theme = "purple"\n')
    with pytest.raises(ConfigError, match="theme"):
        load_settings(cfg, environ={})
    s = load_settings(tmp_path / "none.toml", environ={})
    assert s.theme == "dark" and 'theme = "dark"' in s.to_toml()
