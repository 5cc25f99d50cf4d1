"""The one DICOM date (DA) reader and formatter, below every package (the case store, ingest and
the viewer all turn "YYYYMMDD" into dates and "YYYY-MM-DD" text)."""
from __future__ import annotations

import re
from datetime import date

__all__ = ["format_da", "parse_da"]


def parse_da(value: str | None) -> date | None:
    """DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) to a date; anything else to None."""
    if not value:
        return None
    digits = re.sub(r"[^0-9]", "", str(value))[:8]
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def format_da(value: str | date | None) -> str:
    """A DA value (or a date) as ISO "YYYY-MM-DD" for display; "" when it is not a valid date."""
    if isinstance(value, date):
        return value.isoformat()
    d = parse_da(value)
    return d.isoformat() if d is not None else ""
