"""What may go into a log line about a study or series.

Logs end up in support tickets and shared folders, so they carry no patient data. DICOM UIDs
identify a study or a series across systems (the de-identification profile replaces them), so a
log names a series by a short one-way digest of its UID: enough to tell two log lines about the
same series apart, useless for finding the patient.
"""
from __future__ import annotations

import hashlib

__all__ = ["log_ref"]


def log_ref(uid_or_key: object) -> str:
    """A short stable reference for a UID or series key, safe to log (``series#1a2b3c4d``)."""
    digest = hashlib.sha256(str(uid_or_key).encode("utf-8", "replace")).hexdigest()[:8]
    return f"series#{digest}"
