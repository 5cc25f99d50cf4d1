"""The PACS nodes file and the [pacs] settings: read, written, and refused with the file, node
and field named."""
from __future__ import annotations

from pathlib import Path

import pytest

from casebook.viewer.core.config import Settings, load_settings
from casebook.viewer.core.errors import ConfigError
from casebook.viewer.core.services import pacs
from casebook.viewer.core.services.pacs.query import StudyQuery, parse_date_arg, wildcard


def test_nodes_round_trip_through_the_file(tmp_path: Path):
    path = tmp_path / "pacs-nodes.toml"
    nodes = [pacs.Node("main pacs", ae_title="PACS1", host="10.0.0.5", port=4242, description="radiology"),
             pacs.Node("web", kind="dicomweb", url="https://pacs.example/dicom-web", auth="basic", username="reader",
                       password_env="PACS_PW")]
    pacs.save_nodes(path, nodes)
    text = path.read_text()
    assert "[[node]]" in text and "PACS_PW" in text and "password =" not in text
    assert pacs.load_nodes(path) == nodes
    assert pacs.load_nodes(tmp_path / "absent.toml") == []


@pytest.mark.parametrize("entry, expected", [
    ('name = "a"\nkind = "dimse"\nae_title = "X"\nhost = "h"\nport = 70000', r"'a'.*#1: port must be 1-65535"),
    ('name = "a"\nae_title = "WAY-TOO-LONG-AE-TITLE"\nhost = "h"', r"'a'.*ae_title must be 1-16"),
    ('name = "a"\nae_title = "X"', r"'a'.*host is missing"),
    ('name = "w"\nkind = "dicomweb"\nurl = "ftp://x"', r"'w'.*url must start with http"),
    ('name = "w"\nkind = "dicomweb"\nurl = "http://x"\nauth = "basic"', r"'w'.*needs a username"),
    ('name = "w"\nkind = "dicomweb"\nurl = "http://x"\nauth = "kerberos"', r"'w'.*auth must be none, basic or token"),
    ('name = "a"\nae_title = "X"\nhost = "h"\nport = "104"', r"'a'.*port has the wrong type"),
    ('name = "a"\nae_title = "X"\nhost = "h"\ncolour = "red"', r"'a'.*unknown field\(s\) colour"),
    ('ae_title = "X"\nhost = "h"', r"needs a name"),
    ('name = "a"\nkind = "hl7"', r"'a'.*kind must be dimse or dicomweb"),
])
def test_bad_node_entries_are_refused_naming_file_node_and_field(tmp_path: Path, entry: str, expected: str):
    path = tmp_path / "pacs-nodes.toml"
    path.write_text("[[node]]\n" + entry + "\n")
    with pytest.raises(pacs.NodeConfigError, match=expected) as err:
        pacs.load_nodes(path)
    assert str(path) in str(err.value)


def test_duplicate_names_and_broken_toml_are_refused(tmp_path: Path):
    path = tmp_path / "n.toml"
    one = '[[node]]\nname = "a"\nae_title = "X"\nhost = "h"\n'
    path.write_text(one + one)
    with pytest.raises(pacs.NodeConfigError, match="second node with the same name"):
        pacs.load_nodes(path)
    path.write_text("[[node]\nname=")
    with pytest.raises(pacs.NodeConfigError, match="cannot read the nodes file"):
        pacs.load_nodes(path)


def test_config_picks_nodes_and_lists_allowed_calling_aes(tmp_path: Path):
    s = Settings(library_dir=tmp_path)
    s.pacs.nodes_file = str(tmp_path / "n.toml")
    s.pacs.scp_allowed_aets = " CT1 , MR2 ,,"
    pacs.save_nodes(Path(s.pacs.nodes_file), [pacs.Node("p", ae_title="PACS", host="h"),
                                              pacs.Node("w", kind="dicomweb", url="http://x")])
    cfg = pacs.load_config(s)
    assert cfg.node().name == "p" and cfg.node(kind="dicomweb").name == "w"
    assert cfg.allowed_calling_aets() == ["CT1", "MR2", "PACS"]
    with pytest.raises(pacs.NodeConfigError, match="'w': is a dicomweb node"):
        cfg.node("w", kind="dimse")
    with pytest.raises(pacs.NodeConfigError, match=r"'x': no such node .*configured: p, w"):
        cfg.node("x")
    s.pacs.ae_title = "BAD\\AE"
    with pytest.raises(pacs.NodeConfigError, match="pacs.ae_title"):
        pacs.load_config(s)


def test_no_node_configured_says_where_to_add_one(tmp_path: Path):
    s = Settings(library_dir=tmp_path)
    s.pacs.nodes_file = str(tmp_path / "none.toml")
    with pytest.raises(pacs.NodeConfigError, match="no PACS node is configured"):
        pacs.load_config(s).node()
    assert pacs.query_priors(s, "P1") == []  # priors then come from the library alone


def test_pacs_settings_from_file_and_environment(tmp_path: Path):
    f = tmp_path / "settings.toml"
    f.write_text('[pacs]\nae_title = "READROOM1"\nscp_port = 104\nscp_allowed_aets = ""\n')
    s = load_settings(f, {"CASEBOOK_SCP_BIND": "0.0.0.0"})
    assert (s.pacs.ae_title, s.pacs.scp_port, s.pacs.scp_bind, s.pacs.scp_enabled) == ("READROOM1", 104, "0.0.0.0", False)
    with pytest.raises(ConfigError, match="CASEBOOK_SCP_PORT='abc'"):
        load_settings(f, {"CASEBOOK_SCP_PORT": "abc"})
    f.write_text('[pacs]\nscp_port = 0\n')
    with pytest.raises(ConfigError, match="pacs.scp_port must be >= 1"):
        load_settings(f, {})
    s2 = Settings(library_dir=tmp_path)
    s2.save(f)
    assert load_settings(f, {}).pacs == s2.pacs  # the written file reads back


def test_query_helpers():
    assert wildcard("smith") == "*smith*" and wildcard("SM?TH*") == "SM?TH*" and wildcard(" ") == ""
    q = StudyQuery(date_from=parse_date_arg("2024-01-31"), date_to=parse_date_arg("20240229"))
    assert q.date_range() == "20240131-20240229"
    assert StudyQuery(date_from=parse_date_arg("2024-01-31")).date_range() == "20240131-"
    with pytest.raises(ValueError, match="not a date"):
        parse_date_arg("yesterday")
