"""Who may do what to which object: the permission graph, evaluated in the database.

Levels: 0 none < 1 ``can_read`` < 2 ``can_write`` < 3 ``can_manage``. The graph has two
kinds of edge, each carrying a level:

- ownership, owner -> owned object, ``can_manage``: a project's contents (and the
  projects nested in it) inherit whatever level one holds on the project;
- permission links, tail -> head, the link's level. A role is an ordinary node:
  membership is a link user -> role, and the role's own links lead on from there.

A user's level on an object is the best, over all paths from the user to it, of the
weakest edge on the path. That is Arvados's rule: a ``can_read`` member of a role that
may write a project may only read it. Admins hold ``can_manage`` on everything; that is
decided by the caller (``access.py``), not here.

Two recursive CTEs in plain SQLAlchemy Core. What an edge is, is written once, for both
databases (:func:`_edges`); only how a step joins the walk to the edge kinds differs,
because SQLite and PostgreSQL run a recursive step differently (:func:`_walk`).


- :func:`permission_level` walks *up* from one object (to its owner and to the tails of
  permission links on it) until it meets the user. Its cost follows the object's depth,
  not the database's size, which is what a single check wants.
- :func:`reachable` walks *down* from the user to every group and linked object it
  reaches; listings filter on it. Collections are leaves and are never expanded.

``UNION`` (not ``UNION ALL``) in both makes a cycle of links terminate: a (uuid, level)
pair already found is not found again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.server.models import Collection, Group, Link
from clusterfed.tokens import GROUP_TYPE, is_uuid, uuid_cluster, uuid_type

LEVELS: Mapping[str, int] = {"can_read": 1, "can_write": 2, "can_manage": 3}
LEVEL_NAMES: Mapping[int, str] = {level: name for name, level in LEVELS.items()}
MANAGE = LEVELS["can_manage"]
# A chain of projects deeper than this is refused rather than followed (see owner_root).
MAX_OWNER_DEPTH = 256

_link_level = case(
    (Link.name == "can_manage", 3),
    (Link.name == "can_write", 2),
    (Link.name == "can_read", 1),
    else_=0,
)


def _least(a: ColumnElement[int], b: ColumnElement[int]) -> ColumnElement[int]:
    # Neither LEAST (PostgreSQL) nor two-argument min() (SQLite) exists on both.
    return case((a < b, a), else_=b)


def _edges(walk: CTE, *, up: bool) -> list[Select[Any]]:
    """The ``(uuid, level)`` rows one edge away from ``walk``: one SELECT per edge kind.

    This is the one statement of what an edge is; :func:`_walk` decides how the database
    combines them. Each SELECT names ``walk`` once and meets it on an indexed key:
    ownership via groups (uuid or owner_uuid), grants via links (head_uuid or tail_uuid).
    """
    owner, owned = Group.owner_uuid, Group.uuid
    ownership = select((owner if up else owned).label("uuid"), walk.c.level.label("level")).where(
        (owned if up else owner) == walk.c.uuid
    )
    tail, head = Link.tail_uuid, Link.head_uuid
    grants = select(tail if up else head, _least(walk.c.level, _link_level)).where(
        (head if up else tail) == walk.c.uuid,
        Link.link_class == "permission",
        Link.name.in_(LEVELS),
    )
    return [ownership, grants]


def _walk(seeds: CompoundSelect, name: str, *, up: bool, dialect: str) -> CTE:
    """The recursive CTE from ``seeds`` along :func:`_edges`, in the shape ``dialect`` runs fast.

    The two databases evaluate a recursive step differently, so one shape cannot suit
    both. SQLite runs the step once per queued row and allows one recursive SELECT per
    edge kind (``seeds UNION ownership UNION grants``): each is an index lookup for that
    row. PostgreSQL allows a single recursive term, runs it once per iteration over the
    whole working table and plans its joins by cost against a guessed working table of
    ten rows per seed; with the edge tables a few thousand rows at 100k objects, a hash
    join over every group and link on every iteration looks cheaper than index probes,
    and is ~30x slower in fact. Joining the edge kinds ``LATERAL`` leaves it nothing to
    hash: each kind becomes an index scan parameterised by the walk's row.
    """
    # A recursive CTE must start from a plain SELECT to take .union(); wrap the seeds.
    rows = seeds.subquery(f"{name}_seeds")
    walk = select(rows.c.uuid, rows.c.level).cte(name, recursive=True)
    edges = _edges(walk, up=up)
    if dialect != "postgresql":
        return walk.union(*edges)
    step = union_all(*edges).lateral(f"{name}_step")
    return walk.union(select(step.c.uuid, step.c.level).select_from(walk.join(step, true())))


async def permission_level(session: AsyncSession, *, user_uuid: str, target_uuid: str) -> int:
    """The user's level on the target from local data alone (0 when none or no target)."""
    if user_uuid == target_uuid:
        return MANAGE
    # The walk's steps follow groups and links; a collection or link target is a leaf,
    # so its owner is a seed of its own.
    leaf_owner = union_all(
        select(Collection.owner_uuid).where(Collection.uuid == target_uuid),
        select(Link.owner_uuid).where(Link.uuid == target_uuid),
    ).subquery()
    seeds = union_all(
        select(literal(target_uuid, String).label("uuid"), literal(MANAGE, Integer).label("level")),
        select(leaf_owner.c.owner_uuid, literal(MANAGE, Integer)),
    )
    walk = _walk(seeds, "up", up=True, dialect=session.get_bind().dialect.name)
    level = await session.scalar(select(func.max(walk.c.level)).where(walk.c.uuid == user_uuid))
    return int(level or 0)


def reachable(user_uuid: str, *, dialect: str, roots: Mapping[str, int] | None = None) -> CTE:
    """``(uuid, level)`` rows for every node the user reaches, walking down.

    ``roots`` seeds the walk with extra starting points, e.g. projects of another
    cluster that cluster said the user may read (their local contents follow).
    ``dialect`` names the database the query will run on (``session.get_bind().dialect
    .name``): the walk's SQL differs between the two, see :func:`_walk`.
    """
    seeds = [
        select(literal(user_uuid, String).label("uuid"), literal(MANAGE, Integer).label("level"))
    ]
    seeds += [
        select(literal(uuid, String), literal(level, Integer))
        for uuid, level in (roots or {}).items()
    ]
    return _walk(union_all(*seeds), "down", up=False, dialect=dialect)


def readable_clause(
    model: type[Group | Collection | Link], down: CTE, user_uuid: str
) -> ColumnElement[bool]:
    """A WHERE clause: rows of ``model`` the walk ``down`` may read."""
    reached = select(down.c.uuid)
    if model is Group:
        return Group.uuid.in_(reached)
    if model is Collection:
        return or_(Collection.uuid.in_(reached), Collection.owner_uuid.in_(reached))
    # A link is visible to whoever may manage its head (they manage who gets access), to
    # its owner's readers, and to its tail: a user sees their own grants and memberships.
    managed = select(down.c.uuid).where(down.c.level >= MANAGE)
    return or_(
        Link.uuid.in_(reached),
        Link.owner_uuid.in_(reached),
        Link.tail_uuid == user_uuid,
        and_(Link.head_uuid.is_not(None), Link.head_uuid.in_(managed)),
    )


async def owner_of(session: AsyncSession, uuid: str) -> str | None:
    for model in (Collection, Group, Link):
        owner = await session.scalar(select(model.owner_uuid).where(model.uuid == uuid))
        if owner is not None:
            return owner
    return None


async def owner_root(session: AsyncSession, uuid: str, *, local_id: str) -> str | None:
    """The project of another cluster at the top of ``uuid``'s owner chain, if any.

    An object moved into a remote project has that project as its owner; objects in a
    local project that lives in a remote project reach it a few steps up.
    """
    current = await owner_of(session, uuid)
    for _ in range(MAX_OWNER_DEPTH):
        if current is None or not is_uuid(current):
            return None
        if uuid_cluster(current) != local_id:
            return current if uuid_type(current) == GROUP_TYPE else None
        if uuid_type(current) != GROUP_TYPE:
            return None  # a local user: the chain ends here
        current = await session.scalar(select(Group.owner_uuid).where(Group.uuid == current))
    return None
