"""A viewport: a frame around one VTK widget. Layout only; gestures go to the controller."""
from __future__ import annotations

from PySide6.QtWidgets import QFrame, QVBoxLayout

from casebook.viewer.render.widget import create_vtk_widget


class Viewport(QFrame):
    """Hosts one render window; ``name`` is an orientation or ``"3d"``."""

    def __init__(self, name: str, parent=None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName(f"viewport_{name}")
        self.setFrameShape(QFrame.Shape.Box)
        self.setLineWidth(2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        self.vtk_widget = create_vtk_widget(self)
        lay.addWidget(self.vtk_widget)
        self.set_active(False)

    @property
    def render_window(self):
        return self.vtk_widget.GetRenderWindow()

    def set_active(self, active: bool) -> None:
        self.setStyleSheet("QFrame#%s { border: 2px solid %s; }" % (self.objectName(), "#e0a030" if active else "#303030"))
