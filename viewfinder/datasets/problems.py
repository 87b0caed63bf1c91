"""Report a malformed dataset as one :class:`~viewfinder.errors.DatasetError` naming its first few problems."""
from __future__ import annotations

from ..errors import DatasetError

#: at most this many problems are listed in one message (the count says how many there were)
MAX_LISTED = 5


def raise_problems(problems: list[str], what: str) -> None:
    """Raise one :class:`DatasetError` listing the first few ``problems`` (no-op when empty)."""
    if not problems:
        return
    shown = "; ".join(problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    raise DatasetError(f"{what}: {shown}{more}")
