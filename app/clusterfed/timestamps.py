"""Timestamps on the wire: ISO 8601 in UTC with a ``Z``, as Arvados writes them."""

from __future__ import annotations

from datetime import datetime


def wire_time(value: datetime | None) -> str | None:
    """``value`` (an aware UTC instant, as every boundary of clusterfed hands them out) as
    Arvados writes it, ``2026-12-07T06:07:05.123456Z``; None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value else None
