"""Typed settings: one object, read from a TOML file, overridable by environment variables.

Order of precedence (last wins): built-in defaults, ``settings.toml`` in the platform's user
config dir (or the file named by ``CASEBOOK_CONFIG``), then ``CASEBOOK_*`` environment variables.
Environment overrides make a reading-room machine, a CI run and a cluster worker configurable
without touching the user's file.

Parsing is the standard library's ``tomllib``; validation is the small table :data:`KEYS` below
(type, allowed values or range, environment variable, one-line help) rather than pydantic: eleven
flat keys do not justify a compiled dependency in the bundle every reading-room PC installs, and
the same table drives the refusal messages, ``casebook doctor`` and the README's settings list,
so the three cannot drift apart. Every value, from the file or the environment, is checked:
``CASEBOOK_DECODE_PROCESSES=abc`` or ``device = "tpu"`` is refused with a message naming the key,
its origin and what is allowed.
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
    same_anatomy: bool = True
    min_score: float = 0.0


@dataclass
class PacsSettings:
    """Casebook's own DICOM identity and storage SCP (the remote nodes live in the nodes file)."""

    ae_title: str = "CASEBOOK"
    scp_enabled: bool = False  # the storage SCP listens only when asked (security: off by default)
    scp_bind: str = "127.0.0.1"
    scp_port: int = 11112
    scp_allowed_aets: str = ""  # comma-separated calling AE titles accepted besides the configured nodes'
    scp_tls_cert: str = ""  # PEM certificate (chain) of the storage SCP: set, the SCP speaks DICOM TLS only
    scp_tls_key: str = ""  # its PEM private key ("" = in the certificate file)
    scp_tls_ca: str = ""  # PEM CA of the senders: set, each sender must present a certificate it signed
    timeout_s: float = 30.0
    priors_node: str = ""  # node queried for a study's priors ("" = the first node in the nodes file)
    nodes_file: str = ""  # "" = pacs-nodes.toml beside settings.toml


@dataclass
class LimitSettings:
    """Caps checked before a file's pixels are allocated (a hostile header must not exhaust memory)."""

    max_dimension: int = 32768  # Rows or Columns of one image
    max_frames: int = 65536  # frames of one file
    max_voxels: int = 2_147_483_648  # voxels of one file or one loaded stack (2^31: 4 GiB of int16)


@dataclass
class Settings:
    """All user-tunable settings of Casebook."""

    library_dir: Path = field(default_factory=default_library_dir)
    model: str = "casebook-baseline"
    device: str = "auto"  # auto | cpu | cuda
    ingest_workers: int = 0  # 0: one per CPU core
    theme: str = "dark"  # dark | light (the reading room's lights are low)
    # priors: also match another Patient ID with the same name and birth date (shown as such)
    priors_name_birth_fallback: bool = False
    search: SearchSettings = field(default_factory=SearchSettings)
    pacs: PacsSettings = field(default_factory=PacsSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)

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
            f"priors_name_birth_fallback = {_toml_value(self.priors_name_birth_fallback)}",
            "",
            "[search]",
        ]
        for f in fields(SearchSettings):
            lines.append(f"{f.name} = {_toml_value(getattr(self.search, f.name))}")
        lines += ["", "[pacs]"]
        for f in fields(PacsSettings):
            lines.append(f"{f.name} = {_toml_value(getattr(self.pacs, f.name))}")
        lines += ["", "[limits]"]
        for f in fields(LimitSettings):
            lines.append(f"{f.name} = {_toml_value(getattr(self.limits, f.name))}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path | None = None) -> Path:
        """Write the settings atomically so that a crash never leaves half a file."""
        path = path or config_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        os.replace(tmp, path)
        return path


@dataclass(frozen=True)
class Key:
    """One setting: where it lives, its type and the values it may take."""

    name: str  # dotted: "search.top_k"
    type: type
    help: str
    env: str | None = None
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    empty_ok: bool = False  # a string key whose empty value means "not set"

    def check(self, value: Any, origin: str) -> Any:
        """``value`` converted to the key's type, or :class:`ConfigError` naming key and origin."""
        where = f"{origin}: {self.name}"
        t = self.type
        if t is Path:
            if not isinstance(value, (str, Path)) or str(value).strip() == "":
                raise ConfigError(f"{where} must be a path string")
            return Path(value).expanduser()
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise ConfigError(f"{where} must be {t.__name__}, not {type(value).__name__}")
        if t is str and not value.strip() and not self.empty_ok:
            raise ConfigError(f"{where} must not be empty")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(self.choices)}, not {value!r}")
        if self.min is not None and value < self.min:
            raise ConfigError(f"{where} must be >= {self.min:g}, not {value!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{where} must be <= {self.max:g}, not {value!r}")
        return value

    def parse_env(self, text: str) -> Any:
        """An environment variable's text as the key's type (then :meth:`check`)."""
        origin = f"{self.env}={text!r}"
        raw: Any = text.strip()
        try:
            if self.type is int:
                raw = int(raw)
            elif self.type is float:
                raw = float(raw)
            elif self.type is bool:
                low = raw.lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError("not a yes/no value")
                raw = low in ("1", "true", "yes", "on")
        except ValueError:
            raise ConfigError(f"{origin}: {self.name} must be {self.type.__name__}") from None
        return self.check(raw, origin)


KEYS: tuple[Key, ...] = (
    Key("library_dir", Path, "the library folder (case store, vector index, models)", env="CASEBOOK_LIBRARY"),
    Key("model", str, "encoder used for embedding and search (name or name@version; `casebook model list`)",
        env="CASEBOOK_MODEL"),
    Key("device", str, "where encoders run: auto (CUDA when usable, else CPU), cpu, cuda",
        env="CASEBOOK_DEVICE", choices=("auto", "cpu", "cuda")),
    Key("ingest_workers", int, "parallel DICOM header readers for ingest; 0 = one per CPU core",
        env="CASEBOOK_INGEST_WORKERS", min=0, max=256),
    Key("theme", str, "window colours: dark (reading room) or light", env="CASEBOOK_THEME",
        choices=("dark", "light")),
    Key("priors_name_birth_fallback", bool, "priors: also count studies of another Patient ID with the same "
        "name and birth date (marked 'name + birth date')", env="CASEBOOK_PRIORS_NAME_BIRTH"),
    Key("search.top_k", int, "results per search", env="CASEBOOK_TOP_K", min=1, max=1000),
    Key("search.exclude_same_patient", bool, "leave out the query patient's own cases"),
    Key("search.exclude_same_study", bool, "leave out other series of the query's study"),
    Key("search.same_anatomy", bool, "a box or Findings search matches only series of compatible anatomy "
        "(body part and descriptions; series that name none are kept)"),
    Key("search.min_score", float, "hide results scoring below this (0 to 1)", min=0.0, max=1.0),
    Key("pacs.ae_title", str, "Casebook's own DICOM AE title (what the PACS knows it as)", env="CASEBOOK_AE_TITLE"),
    Key("pacs.scp_enabled", bool, "listen for studies pushed by the PACS or a modality (off by default)",
        env="CASEBOOK_SCP_ENABLED"),
    Key("pacs.scp_bind", str, "network interface the storage SCP binds to (127.0.0.1: this machine only)",
        env="CASEBOOK_SCP_BIND"),
    Key("pacs.scp_port", int, "TCP port of Casebook's storage SCP (C-MOVE destination and push target)",
        env="CASEBOOK_SCP_PORT", min=1, max=65535),
    Key("pacs.scp_allowed_aets", str, "calling AE titles the SCP accepts besides the nodes' own, comma-separated",
        empty_ok=True),
    Key("pacs.scp_tls_cert", str, "PEM certificate of the storage SCP; set, it accepts DICOM TLS associations only",
        env="CASEBOOK_SCP_TLS_CERT", empty_ok=True),
    Key("pacs.scp_tls_key", str, "PEM private key of that certificate (empty: in the certificate file)",
        env="CASEBOOK_SCP_TLS_KEY", empty_ok=True),
    Key("pacs.scp_tls_ca", str, "PEM CA of the senders; set, the SCP requires a client certificate it signed",
        env="CASEBOOK_SCP_TLS_CA", empty_ok=True),
    Key("pacs.timeout_s", float, "seconds to wait for a PACS to connect or answer", env="CASEBOOK_PACS_TIMEOUT",
        min=1.0, max=3600.0),
    Key("pacs.priors_node", str, "node queried for the priors of an opened study (empty: the first node)", empty_ok=True),
    Key("pacs.nodes_file", str, "the PACS nodes file (empty: pacs-nodes.toml beside settings.toml)",
        env="CASEBOOK_PACS_NODES", empty_ok=True),
    Key("limits.max_dimension", int, "largest Rows or Columns of an image read; larger files are refused",
        env="CASEBOOK_MAX_DIMENSION", min=1, max=1 << 20),
    Key("limits.max_frames", int, "most frames of one file read; more are refused", env="CASEBOOK_MAX_FRAMES",
        min=1, max=1 << 24),
    Key("limits.max_voxels", int, "most voxels of one file or one loaded series; more are refused before "
        "memory is allocated", env="CASEBOOK_MAX_VOXELS", min=1, max=1 << 40),
)

# Environment variables that are not settings-file keys, checked the same way at start-up.
ENV_ONLY: tuple[Key, ...] = (
    Key("config file", Path, "settings file to read instead of the user config dir's settings.toml",
        env="CASEBOOK_CONFIG"),
    Key("decode processes", int, "worker processes decoding compressed slices; 0 or 1 = threads only "
        "(default: one per core, at most 8)", env="CASEBOOK_DECODE_PROCESSES", min=0, max=256),
)

_BY_NAME = {k.name: k for k in KEYS}


def env_key(env: str) -> Key:
    """The settings-table entry of an environment variable (for components that read one late)."""
    for key in (*KEYS, *ENV_ONLY):
        if key.env == env:
            return key
    raise KeyError(env)


def config_file() -> Path:
    env = os.environ.get("CASEBOOK_CONFIG")
    return Path(env).expanduser() if env else default_config_file()


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Refuse an invalid ``CASEBOOK_*`` variable at start-up, before any work is done, including
    those read deep inside a component (``CASEBOOK_DECODE_PROCESSES``)."""
    environ = dict(os.environ if environ is None else environ)
    for key in (*KEYS, *ENV_ONLY):
        if key.env and environ.get(key.env, "") != "":
            key.parse_env(environ[key.env])


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (default: the user config file) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    path = path or config_file()
    settings = Settings()
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read settings: {exc}") from exc
        _apply(settings, data, str(path))
    for key in KEYS:
        if key.env and environ.get(key.env, "") != "":
            _set(settings, key.name, key.parse_env(environ[key.env]))
    settings.library_dir = Path(settings.library_dir).expanduser()
    return settings


def _apply(settings: Settings, data: dict[str, Any], origin: str, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = prefix + key
        if isinstance(value, dict):
            if not any(k.name.startswith(dotted + ".") for k in KEYS):
                raise ConfigError(f"{origin}: unknown setting [{dotted}]" if dotted not in _BY_NAME
                                  else f"{origin}: {dotted} must be a value, not a table")
            _apply(settings, value, origin, dotted + ".")
            continue
        spec = _BY_NAME.get(dotted)
        if spec is None:
            if any(k.name.startswith(dotted + ".") for k in KEYS):
                raise ConfigError(f"{origin}: [{dotted}] must be a table")
            raise ConfigError(f"{origin}: unknown setting {dotted!r}")
        _set(settings, dotted, spec.check(value, origin))


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


__all__ = ["ENV_ONLY", "KEYS", "Key", "LimitSettings", "PacsSettings", "Settings", "SearchSettings", "check_environment", "config_file",
           "load_settings"]
