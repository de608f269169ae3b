"""``SqlFederationStore``: the ``FederationStore`` over clusterfed's tables and the host's
users table (through its :class:`~clusterfed.storage.users.UserTable`).

Each method runs in its own short session: the middleware works before (and outside)
the request's session, and concurrent requests must never share one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.identity import RemoteUser, UserRecord
from clusterfed.trust.mirroring import (
    MirrorPolicy,
    flags_for_existing_user,
    flags_for_new_user,
    flags_of,
    mirror_names,
)
from clusterfed.trust.store import CachedToken, PurgeEvent

from .database import Database
from .models import FederationPurge, FederationTokenCache
from .upsert import prebuilt_upsert, upsert_params
from .users import SelectableUserTable, UserJoin, UserTable, fit, free_username, username_base

# Two workers mirroring one user at the same moment: the loser's insert collides on the
# uuid (or on the username it chose) and its next attempt finds the winner's row.
MIRROR_ATTEMPTS = 3
_TOKEN_CACHE = FederationTokenCache.__table__
_TOUCH = (
    update(_TOKEN_CACHE)
    .where(_TOKEN_CACHE.c.token_uuid == bindparam("b_uuid"))
    .values(last_used_at=bindparam("b_used"))
)
_TOKEN_BY_UUID = select(_TOKEN_CACHE).where(_TOKEN_CACHE.c.token_uuid == bindparam("token_uuid"))
_TOKEN_BY_DIGEST = (
    select(_TOKEN_CACHE)
    .where(_TOKEN_CACHE.c.cluster_id == bindparam("cluster_id"))
    .where(_TOKEN_CACHE.c.secret_digest == bindparam("digest"))
    .limit(1)
)


_TOKEN_COLUMNS = len(_TOKEN_CACHE.c)


class _JoinedReads:
    """The hot reads as single statements over the host's users table (when the host's
    :class:`UserTable` lets clusterfed select from it): a token row with its user, and a
    user by UUID."""

    def __init__(self, users: SelectableUserTable) -> None:
        self.users = UserJoin(users)
        tokens = select(_TOKEN_CACHE, *self.users.columns).select_from(
            self.users.onto(_TOKEN_CACHE, _TOKEN_CACHE.c.user_uuid)
        )
        self.token_by_uuid = tokens.where(_TOKEN_CACHE.c.token_uuid == bindparam("token_uuid"))
        self.token_by_digest = (
            tokens.where(_TOKEN_CACHE.c.cluster_id == bindparam("cluster_id"))
            .where(_TOKEN_CACHE.c.secret_digest == bindparam("digest"))
            .limit(1)
        )
        self.user_by_uuid = select(*self.users.columns).where(self.users.uuid == bindparam("uuid"))

    def cached(self, row: Any) -> CachedToken:
        """A joined row: the token's columns, then its user's (all NULL: no such user)."""
        return _cached(row, self.users.record(row[_TOKEN_COLUMNS:]))


def _cached(row: Any, user: UserRecord | None) -> CachedToken:
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
        user=user,
    )


class SqlFederationStore:
    def __init__(self, database: Database, users: UserTable) -> None:
        self.database = database
        self.users = users
        self._joined = _JoinedReads(users) if isinstance(users, SelectableUserTable) else None

    @property
    def _dialect(self) -> str:
        return self.database.engine.dialect.name

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[AsyncSession]:
        """A session for plain reads, on one connection in autocommit: on PostgreSQL that
        saves the BEGIN and ROLLBACK round trips around each read. (SQLite's driver
        begins no transaction for a read anyway; there, setting and resetting the
        isolation level would only add trips to the connection's thread.)"""
        engine = self.database.engine
        async with engine.connect() as connection:
            if engine.dialect.name != "sqlite":
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            async with self.database.sessionmaker(bind=connection) as session:
                yield session

    async def load_token(self, token_uuid: str) -> CachedToken | None:
        if self._joined is not None:  # the row and its user in one statement
            row = await self.database.reads.first(
                self._joined.token_by_uuid, {"token_uuid": token_uuid}
            )
            return None if row is None else self._joined.cached(row)
        # The row and its user on one connection: the L2 path's whole database work.
        async with self._reader() as session:
            # A row, not an ORM object; the statement built once.
            row = (await session.execute(_TOKEN_BY_UUID, {"token_uuid": token_uuid})).first()
            return (
                None if row is None else _cached(row, await self.users.get(session, row.user_uuid))
            )

    async def load_token_by_digest(self, cluster_id: str, digest: str) -> CachedToken | None:
        if self._joined is not None:
            row = await self.database.reads.first(
                self._joined.token_by_digest, {"cluster_id": cluster_id, "digest": digest}
            )
            return None if row is None else self._joined.cached(row)
        async with self._reader() as session:
            row = (
                await session.execute(
                    _TOKEN_BY_DIGEST, {"cluster_id": cluster_id, "digest": digest}
                )
            ).first()
            return (
                None if row is None else _cached(row, await self.users.get(session, row.user_uuid))
            )

    async def save_token(self, entry: CachedToken) -> None:
        statement, params = self._token_upsert(entry)
        # A cache row: lost to a power cut, the token is validated again (point_writes).
        await self.database.writes.execute(statement, params, durable=False)

    async def _upsert_token(self, session: AsyncSession, entry: CachedToken) -> None:
        await session.execute(*self._token_upsert(entry))

    def _token_upsert(self, entry: CachedToken) -> tuple[Any, dict[str, Any]]:
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
        statement = prebuilt_upsert(self._dialect, _TOKEN_CACHE, ("token_uuid",))
        return statement, upsert_params(values)

    async def touch_tokens(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        rows = [{"b_uuid": uuid, "b_used": used_at} for uuid, used_at in used.items()]
        async with self.database.sessionmaker() as session:
            await session.execute(_TOUCH, rows)  # one executemany, one commit
            await session.commit()

    async def get_user(self, uuid: str) -> UserRecord | None:
        if self._joined is not None:
            row = await self.database.reads.first(self._joined.user_by_uuid, {"uuid": uuid})
            return None if row is None else self._joined.users.record(row)
        async with self._reader() as session:
            return await self.users.get(session, uuid)

    async def mirror_user(
        self, remote: RemoteUser, policy: MirrorPolicy, *, token: CachedToken | None = None
    ) -> UserRecord:
        # Most validations are of users mirrored before and unchanged since: then the
        # only write is the token's, and the user is read the cheap way outside it. (Were
        # the mirror changed in between, the next validation brings it up to date.)
        if self._joined is not None:
            existing = await self.get_user(remote.uuid)
            record, settled = self._mirrored(remote, policy, existing)
            if existing is not None and settled and record == existing:
                if token is not None:
                    await self.save_token(token)
                return existing
        for attempt in range(MIRROR_ATTEMPTS):
            try:
                return await self._mirror_once(remote, policy, token)
            except IntegrityError:
                if attempt == MIRROR_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _mirrored(
        self, remote: RemoteUser, policy: MirrorPolicy, existing: UserRecord | None
    ) -> tuple[UserRecord, bool]:
        """The mirror of ``remote`` by the mirroring rules, and whether its username is
        settled: not for a new user or one whose login cluster renamed them (then the
        username is to be chosen, with the database)."""
        # A peer's names may pass the host's columns (PostgreSQL refuses them, SQLite would
        # keep them): stored cut to size; free_username cuts the username, keeping it unique.
        limits = self.users.limits()
        first_name, last_name = mirror_names(remote)
        username: str | None = None
        renamed = False
        if existing is None:
            flags = flags_for_new_user(remote, policy)
        else:
            flags = flags_for_existing_user(remote, policy, flags_of(existing))
            # The username is set once, and follows only the login cluster.
            wanted = fit(remote.username, limits.get("username"))
            renamed = bool(policy.login and remote.username and wanted != existing.username)
            if not renamed:
                username = existing.username
        record = UserRecord(
            uuid=remote.uuid,
            email=fit(remote.email, limits.get("email")),
            username=username,
            first_name=fit(first_name, limits.get("first_name")),
            last_name=fit(last_name, limits.get("last_name")),
            is_admin=flags.is_admin,
            is_active=flags.is_active,
            is_invited=flags.is_invited,
        )
        return record, existing is not None and not renamed

    async def _mirror_once(
        self, remote: RemoteUser, policy: MirrorPolicy, token: CachedToken | None
    ) -> UserRecord:
        async with self.database.sessionmaker() as session:
            existing = await self.users.get(session, remote.uuid)
            record, settled = self._mirrored(remote, policy, existing)
            if not settled:
                if existing is None:
                    base = username_base(remote.username, remote.email)
                    username = await free_username(self.users, session, base)
                else:
                    assert remote.username is not None
                    username = await free_username(
                        self.users, session, remote.username, exclude_uuid=existing.uuid
                    )
                record = replace(record, username=username)
            if existing is None:
                await self.users.create(session, record)
            elif record != existing:
                await self.users.update(session, record)
            if token is not None:
                # One transaction for the validation's writes: one commit, not two.
                await self._upsert_token(session, token)
            await session.commit()
            return record

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

    async def forget_token(self, token_uuid: str, *, digest: str | None) -> bool:
        """Drop a revoked token from L2 (only if its digest matches, when one is given) and
        log a purge so every worker drops it from L1; whether a row was dropped."""
        statement = delete(FederationTokenCache).where(
            FederationTokenCache.token_uuid == token_uuid
        )
        if digest is not None:
            statement = statement.where(FederationTokenCache.secret_digest == digest)
        async with self.database.sessionmaker() as session:
            result = await session.execute(statement)
            deleted = bool(result.rowcount)  # type: ignore[attr-defined]
            # With a digest, only the worker whose DELETE took the row logs the purge:
            # a notice delivered twice, or applied by two workers at once, purges once.
            if deleted or digest is None:
                session.add(FederationPurge(kind="token", value=token_uuid))
            await session.commit()
            return deleted
