"""Render the application icon (resources/icons/casebook.svg) for the platform packages.

    python installer/make_icons.py OUT_DIR

Writes ``casebook-SIZE.png`` (16…512 px, Linux hicolor theme and the macOS iconset),
``casebook.ico`` (Windows: 16–256 px in one file) and ``casebook.iconset/`` (macOS ``iconutil``
input). Drawn by Qt's own SVG renderer, so no image tool is needed on the build machine.
"""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    return bytes(data.data())


def write_ico(pngs: dict[int, bytes], path: Path) -> None:
    """An ICO holding PNG images (Windows Vista and later read PNG entries)."""
    sizes = [s for s in sorted(pngs) if s <= 256]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for s in sizes:
        data = pngs[s]
        entries += struct.pack("<BBBBHHII", s % 256, s % 256, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    path.write_bytes(header + entries + blobs)


def main(argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    out = Path(argv[0] if argv else "build/installer/icons")
    out.mkdir(parents=True, exist_ok=True)
    svg = Path(__file__).resolve().parents[1] / "resources" / "icons" / "casebook.svg"
    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - fonts and painting need one
    pngs = {s: render(svg, s) for s in SIZES + (1024,)}
    for s, data in pngs.items():
        (out / f"casebook-{s}.png").write_bytes(data)
    write_ico(pngs, out / "casebook.ico")
    iconset = out / "casebook.iconset"
    iconset.mkdir(exist_ok=True)
    for s in (16, 32, 128, 256, 512):
        (iconset / f"icon_{s}x{s}.png").write_bytes(pngs[s])
        (iconset / f"icon_{s}x{s}@2x.png").write_bytes(pngs[s * 2])
    print(f"icons written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
