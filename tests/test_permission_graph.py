"""Local permission evaluation (app/cluster/permissions.py) on SQLite and PostgreSQL.

Each path to an object is tested on its own: ownership, nested projects, each level of
link, role membership (and its cap), cycles, and the listing walk agreeing with checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cluster.db import create_engine, create_sessionmaker
from app.cluster.models import Collection, Group, Link
from app.cluster.permissions import owner_root, permission_level, reachable, readable_clause
from app.federation.tokens import COLLECTION_TYPE, GROUP_TYPE, LINK_TYPE, USER_TYPE, new_uuid
from tests.support.databases import DatabaseFactory

READ, WRITE, MANAGE = 1, 2, 3


@pytest.fixture
async def session(databases: DatabaseFactory) -> AsyncIterator[AsyncSession]:
    engine = create_engine(databases.new_url("perm"))
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
            await session.rollback()
    finally:
        await engine.dispose()


def user() -> str:
    return new_uuid("zzzzz", USER_TYPE)


async def project(session: AsyncSession, owner: str, group_class: str = "project") -> str:
    row = Group(
        uuid=new_uuid("zzzzz", GROUP_TYPE), owner_uuid=owner, name="p", group_class=group_class
    )
    session.add(row)
    await session.flush()
    return row.uuid


async def collection(session: AsyncSession, owner: str) -> str:
    row = Collection(
        uuid=new_uuid("zzzzz", COLLECTION_TYPE), owner_uuid=owner, portable_data_hash="x+0"
    )
    session.add(row)
    await session.flush()
    return row.uuid


async def grant(session: AsyncSession, tail: str, head: str, name: str) -> str:
    row = Link(
        uuid=new_uuid("zzzzz", LINK_TYPE),
        owner_uuid=tail,
        link_class="permission",
        name=name,
        tail_uuid=tail,
        head_uuid=head,
    )
    session.add(row)
    await session.flush()
    return row.uuid


async def level(session: AsyncSession, who: str, what: str) -> int:
    return await permission_level(session, user_uuid=who, target_uuid=what)


async def readable(session: AsyncSession, who: str) -> set[str]:
    down = reachable(who)
    rows = await session.scalars(
        select(Collection.uuid).where(readable_clause(Collection, down, who))
    )
    return set(rows)


async def test_owner_manages_and_strangers_get_nothing(session: AsyncSession) -> None:
    ann, bob = user(), user()
    mine = await collection(session, ann)
    assert await level(session, ann, mine) == MANAGE
    assert await level(session, bob, mine) == 0
    assert await level(session, ann, new_uuid("zzzzz", COLLECTION_TYPE)) == 0  # no such thing


async def test_ownership_flows_down_nested_projects(session: AsyncSession) -> None:
    ann, bob = user(), user()
    top = await project(session, ann)
    middle = await project(session, top)
    deep = await collection(session, await project(session, middle))
    assert await level(session, ann, deep) == MANAGE
    assert await level(session, bob, deep) == 0
    assert deep in await readable(session, ann)


@pytest.mark.parametrize(
    ("name", "expected"), [("can_read", 1), ("can_write", 2), ("can_manage", 3)]
)
async def test_each_link_level_reaches_nested_contents(
    session: AsyncSession, name: str, expected: int
) -> None:
    owner, guest = user(), user()
    top = await project(session, owner)
    inner = await collection(session, await project(session, top))
    await grant(session, guest, top, name)
    assert await level(session, guest, top) == expected
    assert await level(session, guest, inner) == expected
    assert inner in await readable(session, guest)


async def test_links_of_other_classes_grant_nothing(session: AsyncSession) -> None:
    owner, guest = user(), user()
    top = await project(session, owner)
    session.add(
        Link(
            uuid=new_uuid("zzzzz", LINK_TYPE),
            owner_uuid=owner,
            link_class="star",
            name="can_manage",
            tail_uuid=guest,
            head_uuid=top,
        )
    )
    await session.flush()
    assert await level(session, guest, top) == 0


async def test_role_membership_passes_the_roles_grants_capped_by_membership(
    session: AsyncSession,
) -> None:
    owner, member, reader = user(), user(), user()
    role = await project(session, owner, "role")
    target = await collection(session, await project(session, await project(session, owner)))
    top = await session.scalar(select(Collection.owner_uuid).where(Collection.uuid == target))
    await grant(session, role, top, "can_write")
    await grant(session, member, role, "can_manage")
    await grant(session, reader, role, "can_read")
    assert await level(session, member, target) == WRITE
    # Arvados's rule: a read-only member of a role gets read-only use of its grants.
    assert await level(session, reader, target) == READ
    assert target in await readable(session, member)


async def test_nested_roles_and_a_project_inside_another(session: AsyncSession) -> None:
    owner, ann = user(), user()
    outer_role = await project(session, owner, "role")
    inner_role = await project(session, owner, "role")
    parent = await project(session, owner)
    child = await project(session, parent)
    thing = await collection(session, child)
    await grant(session, outer_role, parent, "can_manage")
    await grant(session, inner_role, outer_role, "can_manage")
    await grant(session, ann, inner_role, "can_write")
    assert await level(session, ann, thing) == WRITE


async def test_best_path_wins_and_cycles_terminate(session: AsyncSession) -> None:
    owner, ann = user(), user()
    a = await project(session, owner, "role")
    b = await project(session, owner, "role")
    target = await project(session, owner)
    await grant(session, a, b, "can_manage")
    await grant(session, b, a, "can_manage")  # a cycle
    await grant(session, ann, a, "can_read")
    await grant(session, b, target, "can_manage")
    await grant(session, ann, target, "can_write")
    assert await level(session, ann, target) == WRITE


async def test_owner_root_finds_the_remote_project_at_the_top(session: AsyncSession) -> None:
    remote_project = new_uuid("qr1hi", GROUP_TYPE)
    inner = await project(session, remote_project)
    thing = await collection(session, inner)
    assert await owner_root(session, thing, local_id="zzzzz") == remote_project
    assert await owner_root(session, await collection(session, user()), local_id="zzzzz") is None
