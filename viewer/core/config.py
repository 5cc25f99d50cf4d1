"""Typed settings: one object, read from a TOML file, overridable by environment variables.

Order of precedence (last wins): built-in defaults, ``settings.toml`` in the platform's user
config dir (or the file named by ``CASEBOOK_CONFIG``), then ``CASEBOOK_*`` environment variables.
Environment overrides make a reading-room machine, a CI run and a cluster worker configurable
without touching the user's file.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError

APP_NAME = "casebook"


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "settings.toml"


def default_library_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME)) / "library"


@dataclass
class SearchSettings:
    top_k: int = 12
    exclude_same_patient: bool = True
    exclude_same_study: bool = True
    min_score: float = 0.0


@dataclass
class Settings:
    """All user-tunable settings of Casebook."""

    library_dir: Path = field(default_factory=default_library_dir)
    model: str = "casebook-baseline"
    device: str = "auto"  # auto | cpu | cuda
    ingest_workers: int = 0  # 0: one per CPU core
    theme: str = "dark"  # dark | light (the reading room's lights are low)
    search: SearchSettings = field(default_factory=SearchSettings)

    @property
    def database_path(self) -> Path:
        return self.library_dir / "casebook.sqlite"

    @property
    def index_dir(self) -> Path:
        return self.library_dir / "vectors"

    @property
    def models_dir(self) -> Path:
        return self.library_dir / "models"

    def to_toml(self) -> str:
        lines = [
            f'library_dir = "{_esc(str(self.library_dir))}"',
            f'model = "{_esc(self.model)}"',
            f'device = "{_esc(self.device)}"',
            f"ingest_workers = {self.ingest_workers}",
            f'theme = "{_esc(self.theme)}"',
            "",
            "[search]",
        ]
        for f in fields(SearchSettings):
            lines.append(f"{f.name} = {_toml_value(getattr(self.search, f.name))}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path | None = None) -> Path:
        """Write the settings atomically so that a crash never leaves half a file."""
        path = path or config_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        os.replace(tmp, path)
        return path


_ENV = {
    "CASEBOOK_LIBRARY": ("library_dir", Path),
    "CASEBOOK_MODEL": ("model", str),
    "CASEBOOK_DEVICE": ("device", str),
    "CASEBOOK_INGEST_WORKERS": ("ingest_workers", int),
    "CASEBOOK_TOP_K": ("search.top_k", int),
    "CASEBOOK_THEME": ("theme", str),
}

_DEVICES = {"auto", "cpu", "cuda"}
_THEMES = {"dark", "light"}


def config_file() -> Path:
    env = os.environ.get("CASEBOOK_CONFIG")
    return Path(env) if env else default_config_file()


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (default: the user config file) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    path = path or config_file()
    settings = Settings()
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read settings: {exc}") from exc
        _apply(settings, data, str(path))
    for var, (name, conv) in _ENV.items():
        if var in environ and environ[var] != "":
            try:
                value = conv(environ[var])
            except ValueError as exc:
                raise ConfigError(f"{var}={environ[var]!r}: {exc}") from exc
            _set(settings, name, value)
    if settings.device not in _DEVICES:
        raise ConfigError(f"device must be one of {sorted(_DEVICES)}, not {settings.device!r}")
    if settings.theme not in _THEMES:
        raise ConfigError(f"theme must be one of {sorted(_THEMES)}, not {settings.theme!r}")
    settings.library_dir = Path(settings.library_dir).expanduser()
    return settings


def _apply(settings: Settings, data: dict[str, Any], origin: str) -> None:
    known = {f.name: f for f in fields(Settings)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown setting {key!r}")
        if key == "search":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: [search] must be a table")
            sknown = {f.name: f for f in fields(SearchSettings)}
            for skey, svalue in value.items():
                if skey not in sknown:
                    raise ConfigError(f"{origin}: unknown setting search.{skey!r}")
                setattr(settings.search, skey, _coerce(svalue, type(getattr(settings.search, skey)), f"search.{skey}", origin))
        else:
            current = getattr(settings, key)
            target = Path if isinstance(current, Path) else type(current)
            setattr(settings, key, _coerce(value, target, key, origin))


def _coerce(value: Any, target: type, name: str, origin: str) -> Any:
    if target is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: {name} must be a path string")
        return Path(value)
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigError(f"{origin}: {name} must be {target.__name__}, not {type(value).__name__}")
    return value


def _set(settings: Settings, dotted: str, value: Any) -> None:
    obj: Any = settings
    parts = dotted.split(".")
    for p in parts[:-1]:
        obj = getattr(obj, p)
    setattr(obj, parts[-1], value)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return f'"{_esc(str(v))}"'


__all__ = ["Settings", "SearchSettings", "load_settings", "config_file"]
