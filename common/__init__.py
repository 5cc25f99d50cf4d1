"""What every Casebook package shares: one error root, one ``Cancelled``, one progress protocol.

This package sits below ``casebook.index``, ``casebook.inference`` and ``casebook.viewer`` and
imports none of them (an import-linter contract checks it), so a cancelled index rebuild, a
cancelled embedding run and a cancelled series load are the same exception, and one ``except
CasebookError`` in a CLI command or a GUI worker catches every domain error.
"""
from __future__ import annotations

import logging

from .errors import Cancelled, CasebookError
from .progress import CancelToken, ProgressCallback, SupportsCancel, check_cancel, no_progress

logging.getLogger("casebook").addHandler(logging.NullHandler())

__all__ = [
    "CancelToken",
    "Cancelled",
    "CasebookError",
    "ProgressCallback",
    "SupportsCancel",
    "check_cancel",
    "no_progress",
]
