"""What every Casebook package shares: one error root, one ``Cancelled``, one progress protocol.

This package sits below ``casebook.index``, ``casebook.inference`` and ``casebook.viewer`` and
imports none of them (an import-linter contract checks it), so a cancelled index rebuild, a
cancelled embedding run and a cancelled series load are the same exception, and one ``except
CasebookError`` in a CLI command or a GUI worker catches every domain error.
"""
from __future__ import annotations

import logging
import os

# Nothing leaves the hospital: ONNX Runtime's official builds (1.2x and later) send usage
# telemetry from Linux and macOS too (a device id under ~/.cache/Microsoft, a session file in
# $TMPDIR, an uploader). The runtime reads this switch once, when it is first initialised, so it
# is set here, below every package that could import onnxruntime.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from .errors import Cancelled, CasebookError  # noqa: E402 - after the switch above
from .progress import CancelToken, ProgressCallback, SupportsCancel, check_cancel, no_progress  # noqa: E402

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
