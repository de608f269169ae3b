"""Local permission evaluation (app/cluster/permissions.py) on SQLite and PostgreSQL.

Each path to an object is tested on its own: ownership, nested projects, each level of
link, role membership (and its cap), cycles, and the listing walk agreeing with checks.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from clusterfed.server.models import Collection, Group, Link
from clusterfed.server.objects.permissions import (
    owner_root,
    permission_level,
    reachable,
    readable_clause,
)
from clusterfed.storage.db import create_engine, create_sessionmaker
from clusterfed.tokens import COLLECTION_TYPE, GROUP_TYPE, LINK_TYPE, USER_TYPE, new_uuid
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

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
    down = reachable(who, dialect=session.get_bind().dialect.name)
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


async def test_long_chains_of_both_edge_kinds_agree_up_and_down(session: AsyncSession) -> None:
    # The walk's step is SQL of its own shape on each database (see permissions._walk);
    # this checks it against the rule on a graph where every step matters: the weakest
    # edge along a long chain, a better path found late, and a cycle through the chain.
    owner, ann = user(), user()
    roles = [await project(session, owner, "role") for _ in range(4)]
    await grant(session, ann, roles[0], "can_manage")
    for tail, head in itertools.pairwise(roles):
        await grant(session, tail, head, "can_manage")
    await grant(session, roles[-1], roles[0], "can_manage")  # a cycle of roles
    chain = [await project(session, owner)]
    for _ in range(12):
        chain.append(await project(session, chain[-1]))
    await grant(session, roles[-1], chain[0], "can_read")  # the weak edge, far from ann
    deep = await collection(session, chain[-1])
    assert await level(session, ann, deep) == READ
    # A better path into the middle of the chain lifts everything below it only.
    await grant(session, roles[2], chain[6], "can_write")
    assert await level(session, ann, deep) == WRITE
    assert await level(session, ann, chain[5]) == READ
    # A link from the bottom of the chain back to a role: a cycle through both edge kinds.
    await grant(session, chain[-1], roles[1], "can_manage")
    assert await level(session, ann, deep) == WRITE
    down = reachable(ann, dialect=session.get_bind().dialect.name)
    query = select(down.c.uuid, func.max(down.c.level)).group_by(down.c.uuid)
    best = {node: best for node, best in await session.execute(query)}
    for node in chain:
        assert best[node] == await level(session, ann, node)
    assert deep in await readable(session, ann)
    assert await level(session, user(), deep) == 0
