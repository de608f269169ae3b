"""The host's users table, as clusterfed needs it (docs/mounting.md), and the username rule.

A host hands clusterfed a :class:`UserTable`: four calls, each made inside a session
clusterfed opens on the host's database. Everything else about mirrored users (the
flag rules of docs/protocol.md#mirroring-remote-users, the username choice, two workers
seeing one user first at the same moment) is clusterfed's work, in ``storage.store``.

Most hosts keep users in a SQLAlchemy model with Arvados's attribute names; for them
``ModelUserTable(User)`` is the whole adapter. Its table needs unique ``uuid`` and
``username`` columns: a collision is how a race between two first sightings shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import ColumnElement, FromClause, bindparam, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.identity import UserRecord

USER_FIELDS = tuple(f.name for f in fields(UserRecord))
TEXT_FIELDS = ("email", "username", "first_name", "last_name")
MAX_USERNAME_SUFFIX = 10_000

_LEADING_NON_LETTERS = re.compile(r"^[^A-Za-z]+")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")


class UserTable(Protocol):
    async def get(self, session: AsyncSession, uuid: str) -> UserRecord | None: ...

    async def create(self, session: AsyncSession, user: UserRecord) -> None:
        """Insert ``user``; a uuid or username that is already taken raises IntegrityError."""

    async def update(self, session: AsyncSession, user: UserRecord) -> None:
        """Write every field of ``user`` to the row with its uuid."""

    async def username_taken(
        self, session: AsyncSession, username: str, *, exclude_uuid: str | None = None
    ) -> bool: ...

    def limits(self) -> Mapping[str, int]:
        """The longest value each text field's column holds ({} when none is bounded).

        A peer's names can be longer than a column (PostgreSQL refuses them, SQLite would
        keep them): clusterfed stores them cut to size, usernames still unique."""
        ...


@runtime_checkable
class SelectableUserTable(Protocol):
    """A :class:`UserTable` clusterfed may read in its own statements: the L2 lookup then
    reads a token and its user in one joined statement instead of two."""

    def record_columns(self) -> tuple[FromClause, tuple[ColumnElement[Any], ...]]:
        """The users table, and its columns of a :class:`UserRecord` in field order."""
        ...


class UserJoin:
    """A :class:`SelectableUserTable`'s record columns, labelled, for statements that read
    another table's row and its user at once (an outer join: a missing user reads as
    NULLs). ``record(values)`` turns those columns of a row back into a record."""

    def __init__(self, users: SelectableUserTable) -> None:
        self.table, columns = users.record_columns()
        self.uuid = columns[USER_FIELDS.index("uuid")]
        # Labels no joined table's own column has (a token row has a user_uuid of its own).
        pairs = zip(columns, USER_FIELDS, strict=True)
        self.columns = tuple(column.label(f"users_{field}") for column, field in pairs)

    def onto(self, table: FromClause, user_uuid: ColumnElement[Any]) -> FromClause:
        return table.outerjoin(self.table, self.uuid == user_uuid)

    @staticmethod
    def record(values: Sequence[Any]) -> UserRecord | None:
        """The user of a row's record columns, or None when the join found none."""
        return None if values[USER_FIELDS.index("uuid")] is None else UserRecord(*values)


class ModelUserTable:
    """A :class:`UserTable` over a SQLAlchemy model.

    ``columns`` maps a :class:`UserRecord` field to the model's attribute where the
    names differ, e.g. ``ModelUserTable(Account, is_admin="admin")``; extra columns the
    model requires on insert come from ``defaults``.
    """

    def __init__(
        self, model: type[Any], *, defaults: dict[str, Any] | None = None, **columns: str
    ) -> None:
        unknown = set(columns) - set(USER_FIELDS)
        if unknown:
            raise TypeError(f"not UserRecord fields: {', '.join(sorted(unknown))}")
        self.model = model
        self.defaults = dict(defaults or {})
        self.attributes = {name: columns.get(name, name) for name in USER_FIELDS}
        missing = [a for a in self.attributes.values() if not hasattr(model, a)]
        if missing:
            raise TypeError(f"{model.__name__} has no attribute {', '.join(missing)}")
        # Built once: building a statement cost as much as running it.
        self._by_uuid = select(*(self._column(field) for field in USER_FIELDS)).where(
            self._column("uuid") == bindparam("uuid")
        )
        self._limits = {
            field: length
            for field in TEXT_FIELDS
            if isinstance(length := getattr(self._column(field).type, "length", None), int)
        }

    def limits(self) -> Mapping[str, int]:
        return self._limits

    def record_columns(self) -> tuple[FromClause, tuple[ColumnElement[Any], ...]]:
        columns = tuple(self._column(field).expression for field in USER_FIELDS)
        return inspect(self.model).selectable, columns

    def _column(self, field: str) -> Any:
        return getattr(self.model, self.attributes[field])

    async def get(self, session: AsyncSession, uuid: str) -> UserRecord | None:
        # The columns, not the ORM object: no identity map or instance to build, which
        # was most of the cost of an L2 hit.
        row = (await session.execute(self._by_uuid, {"uuid": uuid})).first()
        if row is None:
            return None
        return UserRecord(*row)

    async def create(self, session: AsyncSession, user: UserRecord) -> None:
        values = {a: getattr(user, f) for f, a in self.attributes.items()}
        session.add(self.model(**self.defaults, **values))
        await session.flush()

    async def update(self, session: AsyncSession, user: UserRecord) -> None:
        row = await session.scalar(select(self.model).where(self._column("uuid") == user.uuid))
        if row is None:
            raise LookupError(f"no user {user.uuid}")
        for field, attribute in self.attributes.items():
            if field != "uuid" and getattr(row, attribute) != getattr(user, field):
                setattr(row, attribute, getattr(user, field))
        await session.flush()

    async def username_taken(
        self, session: AsyncSession, username: str, *, exclude_uuid: str | None = None
    ) -> bool:
        query = select(self._column("uuid")).where(self._column("username") == username)
        if exclude_uuid is not None:
            query = query.where(self._column("uuid") != exclude_uuid)
        return (await session.scalar(query.limit(1))) is not None


def username_base(username: str | None, email: str | None) -> str | None:
    """The remote's username, else the email's local part cleaned up."""
    if username:
        return username
    if not email:
        return None
    local = email.split("@", 1)[0]
    return _NON_ALNUM.sub("", _LEADING_NON_LETTERS.sub("", local)) or None


def fit(value: str | None, limit: int | None) -> str | None:
    """``value`` cut to a column of ``limit`` characters."""
    return value[:limit] if value is not None and limit is not None else value


async def free_username(
    users: UserTable, session: AsyncSession, base: str | None, *, exclude_uuid: str | None = None
) -> str | None:
    """``base``, or ``base2``, ``base3``, ... whichever no other user has.

    Each cut to fit the column: a suffix takes the place of the base's last characters.
    """
    if not base:
        return None
    limit = users.limits().get("username")
    for n in range(1, MAX_USERNAME_SUFFIX):
        suffix = "" if n == 1 else str(n)
        candidate = (fit(base, limit - len(suffix)) if limit else base) + suffix
        if not await users.username_taken(session, candidate, exclude_uuid=exclude_uuid):
            return candidate
    raise RuntimeError(f"no free username for {base!r} after {MAX_USERNAME_SUFFIX} tries")
