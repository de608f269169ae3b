"""The revocation notice outbox as operators see it, per remote (docs/protocol.md#revocation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.storage.revocation_models import FederationRevocationNotice


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    remote: str
    pending: int
    delivered: int
    given_up: int
    max_attempts: int
    oldest_pending: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None


async def outbox_summary(session: AsyncSession) -> list[OutboxSummary]:
    """The outbox per remote, for the admin page and API."""
    outbox = FederationRevocationNotice
    pending = outbox.finished_at.is_(None)
    rows = await session.execute(
        select(
            outbox.remote,
            func.count(case((pending, 1))),
            func.count(case((outbox.outcome == "delivered", 1))),
            func.count(case((outbox.outcome.in_(("expired", "abandoned")), 1))),
            func.max(case((pending, outbox.attempts))),
            func.min(case((pending, outbox.created_at))),
            func.min(case((pending, outbox.next_attempt_at))),
        )
        .group_by(outbox.remote)
        .order_by(outbox.remote)
    )
    summaries = []
    for remote, waiting, delivered, given_up, attempts, oldest, next_at in rows:
        last_error = await session.scalar(
            select(outbox.last_error)
            .where(outbox.remote == remote, outbox.last_error.is_not(None))
            .order_by(outbox.id.desc())
            .limit(1)
        )
        summaries.append(
            OutboxSummary(
                remote=remote,
                pending=waiting,
                delivered=delivered,
                given_up=given_up,
                max_attempts=attempts or 0,
                oldest_pending=_aware(oldest),
                next_attempt_at=_aware(next_at),
                last_error=last_error,
            )
        )
    return summaries


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back naive text or datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
