"""Progress and cancellation for the viewer core: the shared protocol of ``casebook.common``.

Re-exported here so that core modules keep one short import; the definitions live in
:mod:`casebook.common.progress`, below every package.
"""
from __future__ import annotations

from casebook.common.progress import (
    CancelToken,
    ProgressCallback,
    SupportsCancel,
    check_cancel,
    no_progress,
)

__all__ = ["CancelToken", "ProgressCallback", "SupportsCancel", "check_cancel", "no_progress"]
