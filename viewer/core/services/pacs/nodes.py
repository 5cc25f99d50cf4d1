"""Remote PACS nodes (DIMSE and DICOMweb) and Casebook's own DICOM identity.

Nodes live in a TOML file beside ``settings.toml`` (``pacs-nodes.toml``; the ``pacs.nodes_file``
setting or ``CASEBOOK_PACS_NODES`` names another), one ``[[node]]`` table each, because a
hospital has several (the PACS, a modality, a research archive) and IT edits them as a list::

    [[node]]
    name = "pacs"               # what Casebook calls it (CLI --node, dialogs)
    kind = "dimse"              # dimse | dicomweb
    ae_title = "ORTHANC"        # the node's AE title
    host = "10.0.0.5"
    port = 4242
    tls = false                 # DICOM TLS; ca_file / cert_file / key_file for client auth

    [[node]]
    name = "web"
    kind = "dicomweb"
    url = "https://pacs.example/dicom-web"
    auth = "basic"              # none | basic | token
    username = "reader"
    password_env = "PACS_PASSWORD"   # secrets from the environment, never written by Casebook
    ca_file = ""                # a private CA for TLS; verify = false only for a test server

Casebook's own identity (AE title, the storage SCP's interface, port and accepted calling AE
titles) are ordinary settings (``[pacs]`` in ``settings.toml``), see :mod:`..config`.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ...config import PacsSettings, Settings, config_file
from .errors import NodeConfigError

NODES_FILE_NAME = "pacs-nodes.toml"
_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE: 16 chars, no backslash / control


@dataclass
class Node:
    """One remote DICOM node as the user configured it."""

    name: str
    kind: str = "dimse"  # dimse | dicomweb
    ae_title: str = ""
    host: str = ""
    port: int = 104
    tls: bool = False
    url: str = ""
    auth: str = "none"  # none | basic | token
    username: str = ""
    password: str = ""  # prefer password_env: the nodes file may be readable by others
    password_env: str = ""
    token: str = ""
    token_env: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify: bool = True
    timeout_s: float = 0.0  # 0: the pacs.timeout_s setting
    description: str = ""

    @property
    def is_dimse(self) -> bool:
        return self.kind == "dimse"

    def secret(self) -> str:
        """The password or token, from the environment variable when one is named."""
        if self.auth == "basic":
            return os.environ.get(self.password_env, "") if self.password_env else self.password
        if self.auth == "token":
            return os.environ.get(self.token_env, "") if self.token_env else self.token
        return ""

    def where(self) -> str:
        """Where the node is, for messages (no secrets)."""
        if self.is_dimse:
            return f"{self.ae_title}@{self.host}:{self.port}{' (TLS)' if self.tls else ''}"
        return self.url

    def check(self, origin: str) -> "Node":
        """The node itself, or :class:`NodeConfigError` naming the file, node and field."""
        def bad(msg: str) -> NodeConfigError:
            return NodeConfigError(self.name or "?", f"{origin}: {msg}")

        if not self.name.strip():
            raise bad("every [[node]] needs a name")
        if self.kind not in ("dimse", "dicomweb"):
            raise bad(f"kind must be dimse or dicomweb, not {self.kind!r}")
        if self.is_dimse:
            if not _AET.match(self.ae_title or ""):
                raise bad(f"ae_title must be 1-16 printable characters without a backslash, not {self.ae_title!r}")
            if not self.host.strip():
                raise bad("host is missing")
            if not 1 <= int(self.port) <= 65535:
                raise bad(f"port must be 1-65535, not {self.port}")
        else:
            if not re.match(r"^https?://", self.url or ""):
                raise bad(f"url must start with http:// or https://, not {self.url!r}")
            if self.auth not in ("none", "basic", "token"):
                raise bad(f"auth must be none, basic or token, not {self.auth!r}")
            if self.auth == "basic" and not self.username:
                raise bad("auth = basic needs a username")
        for f in ("ca_file", "cert_file", "key_file"):
            v = getattr(self, f)
            if v and not Path(v).expanduser().is_file():
                raise bad(f"{f} {v} does not exist")
        if self.timeout_s < 0:
            raise bad("timeout_s must be >= 0")
        return self

    def to_toml(self) -> str:
        out = ["[[node]]"]
        for f in fields(Node):
            v = getattr(self, f.name)
            if v == f.default and f.name not in ("name", "kind"):
                continue
            out.append(f"{f.name} = {_toml(v)}")
        return "\n".join(out)


_FIELD_TYPES = {f.name: f.type for f in fields(Node)}


def nodes_file(settings: Settings) -> Path:
    """The nodes file of these settings (beside settings.toml unless ``pacs.nodes_file`` says)."""
    if settings.pacs.nodes_file:
        return Path(settings.pacs.nodes_file).expanduser()
    return config_file().parent / NODES_FILE_NAME


def load_nodes(path: Path) -> list[Node]:
    """The nodes in ``path`` ([] when it does not exist), each checked; names are unique."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NodeConfigError("?", f"{path}: cannot read the nodes file: {exc}") from exc
    unknown = set(data) - {"node"}
    if unknown:
        raise NodeConfigError("?", f"{path}: unknown table(s) {', '.join(sorted(unknown))} (expected [[node]])")
    out: list[Node] = []
    for i, raw in enumerate(data.get("node", [])):
        origin = f"{path} [[node]] #{i + 1}"
        if not isinstance(raw, dict):
            raise NodeConfigError("?", f"{origin}: must be a table")
        extra = set(raw) - set(_FIELD_TYPES)
        if extra:
            raise NodeConfigError(str(raw.get("name", "?")), f"{origin}: unknown field(s) {', '.join(sorted(extra))}")
        kw: dict[str, Any] = {}
        for k, v in raw.items():
            want = {"str": str, "int": int, "bool": bool, "float": (int, float)}[str(_FIELD_TYPES[k])]
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise NodeConfigError(str(raw.get("name", "?")), f"{origin}: {k} has the wrong type ({type(v).__name__})")
            kw[k] = float(v) if k == "timeout_s" else v
        if "name" not in kw:
            raise NodeConfigError("?", f"{origin}: every [[node]] needs a name")
        node = Node(**kw).check(origin)
        if any(n.name == node.name for n in out):
            raise NodeConfigError(node.name, f"{origin}: a second node with the same name")
        out.append(node)
    return out


def save_nodes(path: Path, nodes: list[Node]) -> Path:
    """Write the nodes file atomically (a crash never leaves half a file)."""
    for n in nodes:
        n.check(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("# Casebook PACS nodes (see the README's PACS section)\n\n"
                   + "\n\n".join(n.to_toml() for n in nodes) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass
class PacsConfig:
    """The nodes and Casebook's own identity, read once per operation."""

    local: PacsSettings
    nodes: list[Node] = field(default_factory=list)
    path: Path | None = None

    def node(self, name: str | None = None, *, kind: str | None = None) -> Node:
        """The node called ``name`` (or the first one of ``kind``), else a message listing them."""
        cands = [n for n in self.nodes if kind is None or n.kind == kind]
        if name is None:
            if not cands:
                raise NodeConfigError("?", f"no {kind or 'PACS'} node is configured (add one to {self.path}, "
                                           "or in Casebook: File → Query/Retrieve → Nodes…)")
            return cands[0]
        for n in self.nodes:
            if n.name == name:
                if kind is not None and n.kind != kind:
                    raise NodeConfigError(name, f"is a {n.kind} node, this needs a {kind} node")
                return n
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise NodeConfigError(name, f"no such node in {self.path} (configured: {known})")

    def timeout(self, node: Node) -> float:
        return float(node.timeout_s or self.local.timeout_s)

    def allowed_calling_aets(self) -> list[str]:
        """The SCP's accepted calling AE titles: every DIMSE node's, plus ``pacs.scp_allowed_aets``."""
        extra = [a.strip() for a in self.local.scp_allowed_aets.split(",") if a.strip()]
        return sorted({n.ae_title for n in self.nodes if n.is_dimse} | set(extra))


def load_config(settings: Settings) -> PacsConfig:
    """Nodes and local identity of ``settings``; the AE title is checked here, once."""
    if not _AET.match(settings.pacs.ae_title):
        raise NodeConfigError("local", f"pacs.ae_title must be 1-16 printable characters, not {settings.pacs.ae_title!r}")
    path = nodes_file(settings)
    return PacsConfig(settings.pacs, load_nodes(path), path)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


__all__ = ["NODES_FILE_NAME", "Node", "PacsConfig", "load_config", "load_nodes", "nodes_file", "save_nodes"]
