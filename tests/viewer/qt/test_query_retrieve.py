"""The Query/Retrieve dialog and the node settings against a real Orthanc, in a real window."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.conftest import require_shared  # noqa: E402
from tests.orthanc import Orthanc, casebook_settings, dicom_files, free_port, orthanc_available  # noqa: E402

from casebook.viewer.core.services import pacs  # noqa: E402
from casebook.viewer.core.services.library import open_store  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(bool(orthanc_available()), reason=orthanc_available() or "ok")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    files = dicom_files(require_shared("dicom", "dcm_qa_ct", "In", "GE"))
    scp_port = free_port()
    o = Orthanc(tmp_path_factory.mktemp("orthanc-qt"), modalities={"casebook": ("CASEBOOK", scp_port)}).start()
    o.upload(files)
    yield o, scp_port
    o.stop()


def test_search_marks_local_retrieve_with_progress_then_marked_and_listed(qtbot, main_window, lab, tmp_path):
    o, scp_port = lab
    settings = casebook_settings(tmp_path, o, scp_port)
    win = main_window(settings)
    assert "Query/Retrieve…" in win.actions_by_name
    win.actions_by_name["Query/Retrieve…"].trigger()
    dlg = win.pacs_controller.dialog
    assert dlg is not None and dlg.isVisible() and dlg.node.count() == 2 and dlg.node_name() == "pacs"
    dlg.patient_id.setText("QMNx85rKkkg")
    dlg.search_button.click()
    qtbot.waitUntil(lambda: dlg.table.rowCount() == 1 and win.pacs_controller.worker is None, timeout=20000)
    assert dlg.table.item(0, 1).text() == "QMNx85rKkkg" and dlg.table.item(0, 7).text() == "28"
    assert dlg.table.item(0, 8).text() == ""  # not local yet
    assert "1 study found" in dlg.status.text()
    dlg.table.selectRow(0)
    assert dlg.retrieve_button.isEnabled()
    seen: list[int] = []
    dlg.progress.valueChanged.connect(seen.append)
    dlg.retrieve_button.click()
    assert dlg.cancel_button.isEnabled() and not dlg.search_button.isEnabled()
    qtbot.waitUntil(lambda: win.pacs_controller.worker is None, timeout=60000)
    assert "Retrieved 1 study (28 images" in dlg.status.text(), dlg.status.text()
    assert 28 in seen
    assert dlg.table.item(0, 8).text().startswith("✔")
    store = open_store(settings, create=False)
    try:
        assert len(store.list_studies()) == 1
    finally:
        store.close()
    qtbot.waitUntil(lambda: win.browser.row_count() == 1, timeout=10000)  # the study browser lists it


def test_a_down_node_is_reported_in_the_dialog(qtbot, main_window, lab, tmp_path):
    o, scp_port = lab
    settings = casebook_settings(tmp_path, o, scp_port)
    pacs.save_nodes(Path(settings.pacs.nodes_file), [pacs.Node("dead", ae_title="X", host="127.0.0.1", port=free_port())])
    win = main_window(settings)
    dlg = win.pacs_controller.open_dialog()
    dlg.search_button.click()
    qtbot.waitUntil(lambda: win.pacs_controller.worker is None and "dead" in dlg.status.text(), timeout=20000)
    assert "PACS node 'dead': node down: connection refused" in dlg.status.text()


def test_node_settings_echo_and_save(qtbot, main_window, lab, tmp_path):
    o, scp_port = lab
    settings = casebook_settings(tmp_path, o, scp_port)
    win = main_window(settings)
    win.pacs_controller.open_dialog()
    nd = win.pacs_controller.open_nodes()
    assert nd.list.count() == 2 and nd.name.text() == "pacs" and nd.ae_title.isEnabled()
    nd.echo_button.click()
    qtbot.waitUntil(lambda: "echo ok" in nd.echo_result.text(), timeout=20000)
    nd.add_button.click()
    nd.name.setText("ct scanner")
    nd.ae_title.setText("CT1")
    nd.host.setText("127.0.0.1")
    nd.port.setValue(free_port())
    nd.echo_button.click()
    qtbot.waitUntil(lambda: "node down" in nd.echo_result.text(), timeout=20000)
    nd.list.setCurrentRow(1)  # the web node: DIMSE fields off
    assert not nd.ae_title.isEnabled() and nd.url.isEnabled()
    nd.buttons.button(nd.buttons.StandardButton.Save).click()
    assert not nd.isVisible()
    names = [n.name for n in pacs.load_nodes(Path(settings.pacs.nodes_file))]
    assert names == ["pacs", "web", "ct scanner"]
    assert win.pacs_controller.dialog.node.count() == 3
