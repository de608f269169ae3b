"""The example server's ``RevocationStore``: the issuer's notice outbox.

The outbox and validator tables are clusterfed's (``storage.revocation_models``); the
secrets that proofs are computed from are the server's own token rows.

Each method runs in its own short session, like ``SqlFederationStore``. Claims are one
conditional UPDATE per row, so of two workers racing for a notice exactly one gets it,
on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update

from clusterfed.server.models import ApiClientAuthorization
from clusterfed.storage.database import Database
from clusterfed.storage.db import utcnow
from clusterfed.storage.revocation_models import (
    FederationRevocationNotice,
    FederationTokenValidator,
)
from clusterfed.trust.revocation import Notice

CLAIM_BATCH = 50
ERROR_LENGTH = 255


class SqlRevocationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def claim_notices(self, *, now: datetime, lease_until: datetime) -> list[Notice]:
        outbox = FederationRevocationNotice
        free = or_(outbox.claimed_until.is_(None), outbox.claimed_until < now)
        async with self.database.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(outbox.id, outbox.token_uuid, outbox.remote, outbox.attempts)
                    .add_columns(outbox.give_up_at, outbox.echo)
                    .where(outbox.finished_at.is_(None), outbox.next_attempt_at <= now, free)
                    .order_by(outbox.next_attempt_at)
                    .limit(CLAIM_BATCH)
                )
            ).all()
            claimed = []
            for notice_id, token_uuid, remote, attempts, give_up_at, echo in rows:
                result = await session.execute(
                    update(outbox)
                    .where(outbox.id == notice_id, outbox.finished_at.is_(None), free)
                    .values(claimed_until=lease_until)
                )
                await session.commit()  # one row at a time: never hold locks on a batch
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(
                        Notice(notice_id, token_uuid, remote, attempts, give_up_at, echo)
                    )
            return claimed

    async def token_secret(self, token_uuid: str) -> str | None:
        async with self.database.sessionmaker() as session:
            return await session.scalar(
                select(ApiClientAuthorization.api_token).where(
                    ApiClientAuthorization.uuid == token_uuid
                )
            )

    async def notice_delivered(self, notice_id: int, *, again_at: datetime | None) -> None:
        if again_at is not None:
            await self._update(notice_id, next_attempt_at=again_at, echo=False, claimed_until=None)
            return
        await self._update(notice_id, finished_at=utcnow(), outcome="delivered", claimed_until=None)

    async def notice_failed(
        self, notice_id: int, *, attempts: int, retry_at: datetime, error: str
    ) -> None:
        await self._update(
            notice_id,
            attempts=attempts,
            next_attempt_at=retry_at,
            last_error=error[:ERROR_LENGTH],
            claimed_until=None,
        )

    async def notice_abandoned(self, notice_id: int, *, outcome: str, reason: str) -> None:
        # Kept, finished, so the operator sees it on the admin page; never sent again.
        await self._update(
            notice_id,
            finished_at=utcnow(),
            outcome=outcome,
            claimed_until=None,
            last_error=reason[:ERROR_LENGTH],
        )

    async def _update(self, notice_id: int, **values: object) -> None:
        async with self.database.sessionmaker() as session:
            await session.execute(
                update(FederationRevocationNotice)
                .where(FederationRevocationNotice.id == notice_id)
                .values(**values)
            )
            await session.commit()

    async def prune(self, *, before: datetime) -> int:
        outbox, validators = FederationRevocationNotice, FederationTokenValidator
        tokens = ApiClientAuthorization
        # A token still live then: its validators may yet need a notice.
        live = (
            select(tokens.id)
            .where(tokens.uuid == validators.token_uuid)
            .where(or_(tokens.expires_at.is_(None), tokens.expires_at >= before))
            .exists()
        )
        async with self.database.sessionmaker() as session:
            finished = await session.execute(
                delete(outbox).where(outbox.finished_at.is_not(None), outbox.finished_at < before)
            )
            forgotten = await session.execute(delete(validators).where(~live))
            await session.commit()
        return (finished.rowcount or 0) + (forgotten.rowcount or 0)  # type: ignore[attr-defined]
