"""Revoking tokens issued here (docs/protocol.md#revocation), and what the issuer remembers for it.

A revoked token's row stays, with ``expires_at`` set to the moment of revocation, and
its secret is still there to compute each notice's proof. The same transaction queues
one notice for every cluster in ``RemoteClusters`` that validated the token, and logs a
token purge, which drops it from every worker's local token cache within
PurgePollInterval: from then on every request with it is refused.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.config import ClusterConfig
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.storage.database import Database
from clusterfed.storage.db import utcnow
from clusterfed.storage.models import FederationPurge
from clusterfed.storage.revocation_models import (
    FederationRevocationNotice,
    FederationTokenValidator,
)
from clusterfed.storage.upsert import insert_for, prebuilt_upsert, upsert_params
from clusterfed.tokens import is_cluster_id, salted_secret, secrets_equal
from clusterfed.trust.revocation import ECHO_WINDOW

_VALIDATORS = FederationTokenValidator.__table__


async def record_validation(database: Database, *, token_uuid: str, cluster_id: str) -> None:
    """Cluster ``cluster_id`` validated our token (its ``remote=``): notify it on revocation.

    Committed on its own, before the answer goes out: once the validator can cache the
    token, a revocation finds it here."""
    statement = prebuilt_upsert(
        database.engine.dialect.name, _VALIDATORS, ("token_uuid", "cluster_id")
    )
    values = {"token_uuid": token_uuid, "cluster_id": cluster_id, "validated_at": utcnow()}
    await database.writes.execute(statement, upsert_params(values))


def presented_by_itself(
    record: ApiClientAuthorization,
    secret: str,
    *,
    config: ClusterConfig,
    hints: tuple[str | None, ...] = (),
) -> bool:
    """Is ``secret`` the token's own, or its secret salted for a cluster whose salted
    copies count here (``ClusterConfig.accepts_salted_for``: one in ``RemoteClusters``)?

    A copy salted for a cluster this one does not federate with never revokes: whoever
    was handed it (a fan-out elsewhere) must not be able to end the user's token. The
    clusters tried are every remote; the request's ``remote=`` and the cluster that
    forwarded it (``hints``) are only tried first, and only if they are remotes too.
    """
    if secrets_equal(secret, record.api_token):
        return True
    candidates = dict.fromkeys(
        [hint for hint in hints if hint and is_cluster_id(hint)] + list(config.remote_clusters)
    )
    matches = [
        secrets_equal(secret, salted_secret(record.api_token, c))
        for c in candidates
        if config.accepts_salted_for(c)
    ]
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
