"""Revoking tokens issued here (SPEC 3.7), and what the issuer remembers for it.

A revoked token's row stays, with ``expires_at`` set to the moment of revocation: every
request with it is refused from then on (local tokens are looked up on each request),
and its secret is still there to compute each notice's proof. The same transaction
queues one notice for every cluster in ``RemoteClusters`` that validated the token, and
logs a token purge, so a future in-process cache of local tokens drops it in every
worker too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.federation.config import ClusterConfig
from app.federation.revocation import ECHO_WINDOW
from app.federation.tokens import is_cluster_id, salted_secret, secrets_equal

from ..db import utcnow
from ..models import ApiClientAuthorization, FederationPurge
from ..revocation_models import FederationRevocationNotice, FederationTokenValidator
from ..upsert import insert_for


async def record_validation(session: AsyncSession, *, token_uuid: str, cluster_id: str) -> None:
    """Cluster ``cluster_id`` validated our token (its ``remote=``): notify it on revocation."""
    statement = insert_for(session, FederationTokenValidator).values(
        token_uuid=token_uuid, cluster_id=cluster_id, validated_at=utcnow()
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["token_uuid", "cluster_id"], set_={"validated_at": utcnow()}
        )
    )


async def validators(session: AsyncSession, *, token_uuid: str) -> list[str]:
    rows = await session.scalars(
        select(FederationTokenValidator.cluster_id).where(
            FederationTokenValidator.token_uuid == token_uuid
        )
    )
    return list(rows)


async def presented_by_itself(
    session: AsyncSession,
    record: ApiClientAuthorization,
    secret: str,
    *,
    config: ClusterConfig,
    hints: tuple[str | None, ...] = (),
) -> bool:
    """Is ``secret`` the token's own, or its secret salted for some cluster?

    The clusters tried: every remote, every cluster that validated it, and ``hints``
    (the request's ``remote=`` and the cluster that forwarded it). A token salted for a
    cluster that never validated it was never usable there, so nothing else is needed.
    """
    if secrets_equal(secret, record.api_token):
        return True
    candidates = set(config.remote_clusters) | set(
        await validators(session, token_uuid=record.uuid)
    )
    candidates.update(hint for hint in hints if is_cluster_id(hint))
    candidates.discard(config.cluster_id)
    matches = [secrets_equal(secret, salted_secret(record.api_token, c)) for c in candidates]
    return any(matches)


async def revoke_token(
    session: AsyncSession, record: ApiClientAuthorization, *, config: ClusterConfig
) -> list[str]:
    """Revoke it and queue the notices; returns the remotes queued. Commits."""
    now = utcnow()
    original_expiry = record.expires_at
    queued: list[str] = []
    if original_expiry is None or original_expiry > now:
        record.expires_at = now
        seen = await session.execute(
            select(FederationTokenValidator.cluster_id, FederationTokenValidator.validated_at)
            .where(FederationTokenValidator.token_uuid == record.uuid)
            .order_by(FederationTokenValidator.cluster_id)
        )
        recently = now - ECHO_WINDOW
        for remote, validated_at in seen.all():
            if remote not in config.remote_clusters:
                continue  # never contacted: it cannot be told
            statement = insert_for(session, FederationRevocationNotice).values(
                token_uuid=record.uuid,
                remote=remote,
                created_at=now,
                next_attempt_at=now,
                give_up_at=original_expiry,
                attempts=0,
                echo=validated_at >= recently,
            )
            await session.execute(
                statement.on_conflict_do_nothing(index_elements=["token_uuid", "remote"])
            )
            queued.append(remote)
        session.add(FederationPurge(kind="token", value=record.uuid))
    await session.commit()
    return queued


def token_json(record: ApiClientAuthorization) -> dict[str, Any]:
    expires_at = record.expires_at
    return {
        "kind": "arvados#apiClientAuthorization",
        "uuid": record.uuid,
        "owner_uuid": record.user_uuid,
        "expires_at": expires_at.isoformat().replace("+00:00", "Z") if expires_at else None,
        "scopes": list(record.scopes),
    }


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
