"""What the library already holds of studies a PACS lists (for "already local" marks and retrieves)."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import func, select

from .models import Instance, Series, Study
from .sessions import chunks


class RemoteMixin:
    """Local contents by DICOM UID, for comparing with a PACS's answer.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    def local_study_contents(self, study_uids: Iterable[str]) -> dict[str, dict[str, int]]:
        """study UID -> {series UID: distinct images stored} over complete, non-deleted series.

        Counted by SOP Instance UID (a multi-frame image is one), as a PACS counts them.
        """
        uids = sorted(set(study_uids))
        out: dict[str, dict[str, int]] = {}
        with self._read() as s:
            for chunk in chunks(uids):
                rows = s.execute(select(Study.study_uid, Series.series_uid,
                                        func.count(func.distinct(Instance.sop_instance_uid)))
                                 .join(Series, Series.study_id == Study.id)
                                 .join(Instance, Instance.series_id == Series.id)
                                 .where(Study.study_uid.in_(chunk), Series.state == "complete",
                                        Series.deleted.is_(False), Study.deleted.is_(False))
                                 .group_by(Study.study_uid, Series.series_uid))
                for study, series, n in rows:
                    d = out.setdefault(study, {})
                    d[series] = d.get(series, 0) + int(n)
        return out
