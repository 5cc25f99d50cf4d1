from __future__ import annotations

from pathlib import Path

import pytest

from casebook.viewer.core.config import Settings, load_settings
from casebook.viewer.core.errors import ConfigError


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "settings.toml"
    cfg.write_text('library_dir = "/data/lib"\nmodel = "mine"\n[search]\ntop_k = 30\n')
    s = load_settings(cfg, environ={})
    assert s.library_dir == Path("/data/lib") and s.model == "mine" and s.search.top_k == 30
    s = load_settings(cfg, environ={"CASEBOOK_LIBRARY": str(tmp_path / "x"), "CASEBOOK_TOP_K": "5"})
    assert s.library_dir == tmp_path / "x" and s.search.top_k == 5 and s.model == "mine"
    assert s.database_path == tmp_path / "x" / "casebook.sqlite"


def test_round_trip_save(tmp_path: Path) -> None:
    s = Settings(library_dir=tmp_path / 'we"ird', model="m", device="cpu")
    s.search.exclude_same_patient = False
    path = s.save(tmp_path / "s.toml")
    back = load_settings(path, environ={})
    assert back == s


@pytest.mark.parametrize(
    "text, fragment",
    [("nonsense = 1\n", "unknown setting"), ("model = 3\n", "model must be str"), ("device = \"tpu\"\n", "device must be"),
     ("[search]\ntop_k = true\n", "must be int"), ("model = \n", "cannot read")],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "settings.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(cfg, environ={})


def test_bad_environment_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CASEBOOK_TOP_K"):
        load_settings(tmp_path / "none.toml", environ={"CASEBOOK_TOP_K": "many"})
