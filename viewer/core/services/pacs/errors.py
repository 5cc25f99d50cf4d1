"""The PACS error family: every message names the node and the reason, never a patient."""
from __future__ import annotations

from casebook.common.errors import CasebookError


class PacsError(CasebookError):
    """A PACS or DICOMweb operation failed; ``node`` and ``reason`` say where and why."""

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.reason = reason
        # "?" when no single node is at fault (none configured, the nodes file itself is broken)
        super().__init__(reason if node in ("", "?") else f"PACS node {node!r}: {reason}")


class NodeConfigError(PacsError):
    """The nodes file or a node's entry is wrong (unknown node, bad port, missing URL...)."""


class RetrieveIncomplete(PacsError):
    """A retrieve ended with images missing: what arrived is kept, and the next retrieve finishes it."""

    def __init__(self, node: str, reason: str, *, received: int, expected: int | None) -> None:
        self.received = received
        self.expected = expected
        super().__init__(node, reason)


__all__ = ["NodeConfigError", "PacsError", "RetrieveIncomplete"]
