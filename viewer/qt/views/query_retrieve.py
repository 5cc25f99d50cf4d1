"""The Query/Retrieve dialog and the PACS node settings (layout and binding only; the work is in
``controllers/pacs.py`` and ``core/services/pacs``)."""
from __future__ import annotations

from typing import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QGridLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget, QProgressBar,
                               QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from casebook.viewer.core.services.pacs import Node, RemoteStudy

COLUMNS = ("Date", "Patient ID", "Name", "Modality", "Description", "Accession", "Series", "Images", "Local")
LOCAL_TEXT = {"yes": "✔ in library", "partly": "partly (retrieve finishes it)", "no": ""}


class QueryRetrieveDialog(QDialog):
    """Search a node, see what is already local, retrieve with progress and Cancel."""

    search_requested = Signal()
    retrieve_requested = Signal()
    cancel_requested = Signal()
    nodes_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Query/Retrieve")
        self.resize(1100, 600)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.node = QComboBox(self)
        self.node.setMinimumWidth(220)
        top.addWidget(QLabel("Node", self))
        top.addWidget(self.node, 1)
        self.nodes_button = QPushButton("Nodes…", self)
        self.nodes_button.clicked.connect(self.nodes_requested)
        top.addWidget(self.nodes_button)
        lay.addLayout(top)

        grid = QGridLayout()
        self.patient_id = QLineEdit(self)
        self.patient_name = QLineEdit(self)
        self.patient_name.setPlaceholderText("part of the name, or DOE^J*")
        self.date_from = QLineEdit(self)
        self.date_from.setPlaceholderText("YYYY-MM-DD")
        self.date_to = QLineEdit(self)
        self.date_to.setPlaceholderText("YYYY-MM-DD")
        self.modality = QComboBox(self)
        self.modality.setEditable(True)
        self.modality.addItems(["", "CT", "MR", "CR", "DX", "MG", "US", "XA", "NM", "PT"])
        self.accession = QLineEdit(self)
        self.description = QLineEdit(self)
        for i, (label, w) in enumerate((("Patient ID", self.patient_id), ("Name", self.patient_name),
                                        ("Accession", self.accession), ("From", self.date_from),
                                        ("To", self.date_to), ("Modality", self.modality),
                                        ("Description", self.description))):
            grid.addWidget(QLabel(label, self), i // 4, (i % 4) * 2)
            grid.addWidget(w, i // 4, (i % 4) * 2 + 1)
            if isinstance(w, QLineEdit):
                w.returnPressed.connect(self.search_requested)
        self.search_button = QPushButton("Search", self)
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search_requested)
        grid.addWidget(self.search_button, 1, 7)
        lay.addLayout(grid)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.doubleClicked.connect(lambda _i: self.retrieve_requested.emit())
        self.table.itemSelectionChanged.connect(self._selection_changed)
        lay.addWidget(self.table, 1)

        bottom = QHBoxLayout()
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bottom.addWidget(self.status, 1)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.progress.setMinimumWidth(240)
        bottom.addWidget(self.progress)
        self.retrieve_button = QPushButton("Retrieve", self)
        self.retrieve_button.setEnabled(False)
        self.retrieve_button.clicked.connect(self.retrieve_requested)
        bottom.addWidget(self.retrieve_button)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        bottom.addWidget(self.cancel_button)
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        bottom.addWidget(close)
        lay.addLayout(bottom)
        self.studies: list[RemoteStudy] = []

    # ---- binding
    def set_nodes(self, nodes: Sequence[Node], current: str | None = None) -> None:
        self.node.clear()
        for n in nodes:
            self.node.addItem(f"{n.name} ({n.where()})", n.name)
        if current:
            i = self.node.findData(current)
            if i >= 0:
                self.node.setCurrentIndex(i)

    def node_name(self) -> str | None:
        return self.node.currentData()

    def set_studies(self, studies: Sequence[RemoteStudy]) -> None:
        self.studies = list(studies)
        self.table.setRowCount(len(self.studies))
        for r, s in enumerate(self.studies):
            vals = (s.study_date.isoformat() if s.study_date else "", s.patient_id, s.patient_name.replace("^", " "),
                    "/".join(s.modalities), s.description, s.accession_number,
                    "" if s.series_count is None else str(s.series_count), "" if s.images is None else str(s.images),
                    LOCAL_TEXT[s.local])
            for c, v in enumerate(vals):
                item = QTableWidgetItem(v)
                if c == len(vals) - 1 and s.local == "yes":
                    item.setForeground(Qt.GlobalColor.darkGreen)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._selection_changed()

    def selected_studies(self) -> list[RemoteStudy]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.studies[r] for r in rows if r < len(self.studies)]

    def set_busy(self, busy: bool, *, cancellable: bool) -> None:
        self.search_button.setEnabled(not busy)
        self.nodes_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and cancellable)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
        self._selection_changed(busy)

    def show_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat(f"{message} %v / %m")
        else:
            self.progress.setRange(0, 0)
        if message:
            self.status.setText(message)

    def show_status(self, text: str, *, error: bool = False) -> None:
        self.status.setStyleSheet("color: #e05050;" if error else "")
        self.status.setText(text)

    def _selection_changed(self, busy: bool | None = None) -> None:
        busy = self.cancel_button.isEnabled() if busy is None else busy
        self.retrieve_button.setEnabled(not busy and bool(self.selected_studies()))


class NodeSettingsDialog(QDialog):
    """Edit the nodes file: one entry per node, an Echo button to test the one shown."""

    echo_requested = Signal(object)  # a Node built from the form

    def __init__(self, nodes: Sequence[Node], local_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS nodes")
        self.resize(760, 460)
        self.nodes: list[Node] = [Node(**vars(n)) for n in nodes]
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(local_text, self))
        body = QHBoxLayout()
        left = QVBoxLayout()
        self.list = QListWidget(self)
        left.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add", self)
        self.remove_button = QPushButton("Remove", self)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        left.addLayout(row)
        body.addLayout(left, 1)
        form = QFormLayout()
        self.name = QLineEdit(self)
        self.kind = QComboBox(self)
        self.kind.addItems(["dimse", "dicomweb"])
        self.ae_title = QLineEdit(self)
        self.ae_title.setMaxLength(16)
        self.host = QLineEdit(self)
        self.port = QSpinBox(self)
        self.port.setRange(1, 65535)
        self.tls = QCheckBox("DICOM TLS", self)
        self.url = QLineEdit(self)
        self.url.setPlaceholderText("https://pacs.example/dicom-web")
        self.auth = QComboBox(self)
        self.auth.addItems(["none", "basic", "token"])
        self.username = QLineEdit(self)
        self.password_env = QLineEdit(self)
        self.password_env.setPlaceholderText("environment variable holding the password")
        self.token_env = QLineEdit(self)
        self.token_env.setPlaceholderText("environment variable holding the token")
        for label, w in (("Name", self.name), ("Kind", self.kind), ("AE title", self.ae_title), ("Host", self.host),
                         ("Port", self.port), ("", self.tls), ("URL", self.url), ("Authentication", self.auth),
                         ("User", self.username), ("Password from", self.password_env), ("Token from", self.token_env)):
            form.addRow(label, w)
        echo_row = QHBoxLayout()
        self.echo_button = QPushButton("Echo", self)
        self.echo_result = QLabel("", self)
        self.echo_result.setWordWrap(True)
        echo_row.addWidget(self.echo_button)
        echo_row.addWidget(self.echo_result, 1)
        form.addRow(echo_row)
        self.error = QLabel("", self)
        self.error.setStyleSheet("color: #e05050;")
        self.error.setWordWrap(True)
        form.addRow(self.error)
        body.addLayout(form, 2)
        lay.addLayout(body, 1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        lay.addWidget(self.buttons)
        self.buttons.rejected.connect(self.reject)
        self.add_button.clicked.connect(self._add)
        self.remove_button.clicked.connect(self._remove)
        self.list.currentRowChanged.connect(self._show)
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.echo_button.clicked.connect(lambda: self.echo_requested.emit(self._form_node()))
        self._current = -1
        for n in self.nodes:
            self.list.addItem(n.name)
        if self.nodes:
            self.list.setCurrentRow(0)
        else:
            self._show(-1)

    def _form_node(self) -> Node:
        n = Node(self.name.text().strip(), kind=self.kind.currentText(), ae_title=self.ae_title.text().strip(),
                 host=self.host.text().strip(), port=self.port.value(), tls=self.tls.isChecked(),
                 url=self.url.text().strip(), auth=self.auth.currentText(), username=self.username.text().strip(),
                 password_env=self.password_env.text().strip(), token_env=self.token_env.text().strip())
        if 0 <= self._current < len(self.nodes):  # keep fields the form does not show (certificates...)
            old = self.nodes[self._current]
            for f in ("password", "token", "ca_file", "cert_file", "key_file", "verify", "timeout_s", "description"):
                setattr(n, f, getattr(old, f))
        return n

    def _store_form(self) -> None:
        if 0 <= self._current < len(self.nodes):
            self.nodes[self._current] = self._form_node()
            self.list.item(self._current).setText(self.nodes[self._current].name)

    def _show(self, row: int) -> None:
        self._store_form()
        self._current = row
        n = self.nodes[row] if 0 <= row < len(self.nodes) else Node("")
        self.name.setText(n.name)
        self.kind.setCurrentText(n.kind)
        self.ae_title.setText(n.ae_title)
        self.host.setText(n.host)
        self.port.setValue(n.port)
        self.tls.setChecked(n.tls)
        self.url.setText(n.url)
        self.auth.setCurrentText(n.auth)
        self.username.setText(n.username)
        self.password_env.setText(n.password_env)
        self.token_env.setText(n.token_env)
        self.echo_result.setText("")
        self._kind_changed(n.kind)
        for w in (self.name, self.kind, self.echo_button):
            w.setEnabled(row >= 0)

    def _kind_changed(self, kind: str) -> None:
        dimse = kind == "dimse"
        for w in (self.ae_title, self.host, self.port, self.tls):
            w.setEnabled(dimse)
        for w in (self.url, self.auth, self.username, self.password_env, self.token_env):
            w.setEnabled(not dimse)

    def _add(self) -> None:
        self._store_form()
        self.nodes.append(Node(f"node {len(self.nodes) + 1}", ae_title="PACS", host="localhost", port=104))
        self.list.addItem(self.nodes[-1].name)
        self.list.setCurrentRow(len(self.nodes) - 1)

    def _remove(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.nodes):
            self._current = -1
            del self.nodes[row]
            self.list.takeItem(row)
            self._show(self.list.currentRow())

    def result_nodes(self) -> list[Node]:
        self._store_form()
        return list(self.nodes)

    def show_echo(self, text: str, ok: bool) -> None:
        self.echo_result.setStyleSheet("" if ok else "color: #e05050;")
        self.echo_result.setText(text)


__all__ = ["COLUMNS", "NodeSettingsDialog", "QueryRetrieveDialog"]
