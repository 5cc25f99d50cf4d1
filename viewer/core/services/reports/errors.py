"""Errors of report import: one family, messages naming the file (and message or row)."""
from __future__ import annotations

from casebook.common.errors import CasebookError


class ReportImportError(CasebookError):
    """Reports could not be imported (a path, mapping or setting the user must fix)."""


class ReportFormatError(ReportImportError):
    """One file, message or row is not a readable report: the rest of the import goes on."""
