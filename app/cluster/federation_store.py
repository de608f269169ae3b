"""The example server's ``FederationStore``: SQLAlchemy tables for mirror, cache and purges.

Each method runs in its own short session: the middleware works before (and outside)
the request's session, and concurrent requests must never share one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.federation.identity import RemoteUser, UserRecord
from app.federation.mirroring import (
    MirrorPolicy,
    flags_for_existing_user,
    flags_for_new_user,
    flags_of,
    mirror_names,
)
from app.federation.store import CachedToken, PurgeEvent

from .database import Database
from .models import FederationPurge, FederationTokenCache, User
from .services.users import fit, free_username, get_user, to_record, username_base
from .upsert import insert_for

USERNAME_RETRIES = 3


class SqlFederationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def load_token(self, token_uuid: str) -> CachedToken | None:
        async with self.database.sessionmaker() as session:
            row = await session.get(FederationTokenCache, token_uuid)
            if row is None:
                return None
            return CachedToken(
                token_uuid=row.token_uuid,
                user_uuid=row.user_uuid,
                cluster_id=row.cluster_id,
                secret_digest=row.secret_digest,
                scopes=tuple(row.scopes),
                expires_at=row.expires_at,
                refreshes_at=row.refreshes_at,
                validated_at=row.validated_at,
                last_used_at=row.last_used_at,
            )

    async def save_token(self, entry: CachedToken) -> None:
        values = {
            "token_uuid": entry.token_uuid,
            "user_uuid": entry.user_uuid,
            "cluster_id": entry.cluster_id,
            "secret_digest": entry.secret_digest,
            "scopes": list(entry.scopes),
            "expires_at": entry.expires_at,
            "refreshes_at": entry.refreshes_at,
            "validated_at": entry.validated_at,
            "last_used_at": entry.last_used_at,
        }
        async with self.database.sessionmaker() as session:
            statement = insert_for(session, FederationTokenCache).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=["token_uuid"],
                set_={k: v for k, v in values.items() if k != "token_uuid"},
            )
            await session.execute(statement)
            await session.commit()

    async def touch_token(self, token_uuid: str, used_at: datetime) -> None:
        async with self.database.sessionmaker() as session:
            await session.execute(
                update(FederationTokenCache)
                .where(FederationTokenCache.token_uuid == token_uuid)
                .values(last_used_at=used_at)
            )
            await session.commit()

    async def get_user(self, uuid: str) -> UserRecord | None:
        async with self.database.sessionmaker() as session:
            user = await get_user(session, uuid=uuid)
            return to_record(user) if user else None

    async def mirror_user(self, remote: RemoteUser, policy: MirrorPolicy) -> UserRecord:
        # A username collision with a concurrent mirror (another worker) is retried with a
        # fresh look at the taken names; the uuid itself is upserted and never collides.
        for attempt in range(USERNAME_RETRIES):
            try:
                return await self._mirror_once(remote, policy)
            except IntegrityError:
                if attempt == USERNAME_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _mirror_once(self, remote: RemoteUser, policy: MirrorPolicy) -> UserRecord:
        # A peer's names may pass the columns (PostgreSQL refuses, SQLite would keep them):
        # stored cut to size; the username is cut by free_username, keeping it unique.
        first_name, last_name = map(fit, mirror_names(remote))
        email = fit(remote.email)
        async with self.database.sessionmaker() as session:
            user = await get_user(session, uuid=remote.uuid)
            if user is None:
                flags = flags_for_new_user(remote, policy)
                username = await free_username(
                    session, username_base(remote.username, remote.email)
                )
                insert = (
                    insert_for(session, User)
                    .values(
                        uuid=remote.uuid,
                        email=email,
                        username=username,
                        first_name=first_name,
                        last_name=last_name,
                        is_admin=flags.is_admin,
                        is_active=flags.is_active,
                        is_invited=flags.is_invited,
                        created_at=func.now(),
                        modified_at=func.now(),
                    )
                    .on_conflict_do_nothing(index_elements=["uuid"])
                )
                await session.execute(insert)
                await session.commit()
                user = await get_user(session, uuid=remote.uuid)
                assert user is not None
                return to_record(user)
            flags = flags_for_existing_user(remote, policy, flags_of(to_record(user)))
            user.is_admin, user.is_active, user.is_invited = (
                flags.is_admin,
                flags.is_active,
                flags.is_invited,
            )
            user.email, user.first_name, user.last_name = email, first_name, last_name
            if policy.login and remote.username and fit(remote.username) != user.username:
                user.username = await free_username(
                    session, remote.username, exclude_uuid=user.uuid
                )
            await session.commit()
            return to_record(user)

    async def latest_purge_id(self) -> int:
        async with self.database.sessionmaker() as session:
            return (await session.scalar(select(func.max(FederationPurge.id)))) or 0

    async def purges_after(self, purge_id: int) -> list[PurgeEvent]:
        async with self.database.sessionmaker() as session:
            rows = await session.scalars(
                select(FederationPurge)
                .where(FederationPurge.id > purge_id)
                .order_by(FederationPurge.id)
            )
            return [PurgeEvent(row.id, row.kind, row.value) for row in rows]
