"""The view model's one error: a caller asked for a view that does not exist."""
from __future__ import annotations

from casebook.common.errors import CasebookError


class ViewStateError(CasebookError, ValueError):
    """An unknown orientation, layout, tool or preset was asked of the view model.

    Also a ``ValueError``: it is a wrong argument, and callers that check for that keep working.
    """
