"""Permission evaluation at 100k objects, and the cost of a cached remote check.

    .venv/bin/python -m bench permissions

1. On SQLite (and PostgreSQL when reachable): a database of 100,000 objects (projects in
   a tree, collections in them, permission links for users and roles). The median time
   of a ``can_write`` check on a collection deep in a nested tree, reached through a
   role, and of a filtered list of collections the user may read.
2. Two real clusters on loopback (``python -m app serve``): the in-process cost of a
   remote permission check answered from the cache vs. one that asks the home cluster.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterfed.server.migrate import upgrade_async
from clusterfed.server.models import Collection, Group, Link
from clusterfed.server.objects.permissions import permission_level, reachable, readable_clause
from clusterfed.storage.db import create_engine, create_sessionmaker, utcnow
from clusterfed.tokens import COLLECTION_TYPE, GROUP_TYPE, LINK_TYPE, new_uuid
from sqlalchemy import insert, select, text

OBJECTS = 100_000
DEEP = 30  # depth of the nested chain the deep check walks
PG_DSN = os.environ.get("CLUSTERFED_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _row(type_: str, owner: str, **fields: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "uuid": new_uuid("zzzzz", type_),
        "owner_uuid": owner,
        "created_at": now,
        "modified_at": now,
        "properties": {},
        **fields,
    }


def build_graph(total: int = OBJECTS, seed: int = 7) -> dict[str, Any]:
    """Rows for a realistic tree; returns them with the user, target and list filter."""
    rng = random.Random(seed)
    user = "zzzzz-tpzed-benchuser000001"
    others = [f"zzzzz-tpzed-{i:015d}" for i in range(1, 200)]
    groups: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    collections: list[dict[str, Any]] = []

    def project(owner: str, name: str) -> str:
        row = _row(GROUP_TYPE, owner, name=name, group_class="project", description=None)
        groups.append(row)
        return row["uuid"]

    def link(tail: str, head: str, name: str) -> None:
        links.append(
            _row(
                LINK_TYPE, tail, link_class="permission", name=name, tail_uuid=tail, head_uuid=head
            )
        )

    # Other users' trees: 2,000 projects, most of the data, none of it the user's.
    tops = [project(rng.choice(others), f"top {i}") for i in range(200)]
    projects = list(tops)
    while len(projects) < 2000:
        projects.append(project(rng.choice(projects), f"p{len(projects)}"))
    # Roles with members, and shares of random projects with users and roles.
    roles = [
        _row(GROUP_TYPE, others[0], name=f"role {i}", group_class="role", description=None)
        for i in range(50)
    ]
    groups += roles
    for role in roles:
        for member in rng.sample(others, 10):
            link(member, role["uuid"], "can_write")
    for _ in range(2000):
        tail = rng.choice(others + [r["uuid"] for r in roles])
        link(tail, rng.choice(projects), rng.choice(["can_read", "can_write", "can_manage"]))
    # The user's path: member of a role that may write a top project; a chain below it.
    role = roles[0]["uuid"]
    link(user, role, "can_manage")
    shared = project(others[5], "shared with the role")
    link(role, shared, "can_write")
    chain = [shared]
    for depth in range(DEEP):
        chain.append(project(chain[-1], f"level {depth}"))
    # Some projects of the user's own, and reads granted on a few foreign ones.
    mine = [project(user, f"mine {i}") for i in range(20)]
    for target in rng.sample(projects, 30):
        link(user, target, "can_read")
    homes = projects + mine + chain
    remaining = total - len(groups) - len(links)
    for i in range(remaining - 1):
        collections.append(
            _row(
                COLLECTION_TYPE,
                rng.choice(homes),
                name=f"sample-{i:06d}",
                description=None,
                manifest_text="",
                portable_data_hash="d41d8cd98f00b204e9800998ecf8427e+0",
            )
        )
    target = _row(
        COLLECTION_TYPE,
        chain[-1],
        name="deep target",
        description=None,
        manifest_text="",
        portable_data_hash="d41d8cd98f00b204e9800998ecf8427e+0",
    )
    collections.append(target)
    return {
        "groups": groups,
        "links": links,
        "collections": collections,
        "user": user,
        "target": target["uuid"],
    }


async def load(url: str, graph: dict[str, Any]) -> None:
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            for model, key in ((Group, "groups"), (Link, "links"), (Collection, "collections")):
                rows = graph[key]
                for start in range(0, len(rows), 5000):
                    await session.execute(insert(model), rows[start : start + 5000])
            await session.commit()
        async with engine.connect() as conn:
            # Fresh statistics, as autovacuum would have after a bulk load; without them
            # PostgreSQL plans the walk as if the tables were empty.
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    finally:
        await engine.dispose()


async def median_ms(fn: Callable[[], Awaitable[Any]], runs: int) -> float:
    await fn()  # warm caches and the statement cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def bench_database(label: str, url: str, graph: dict[str, Any]) -> None:
    started = time.perf_counter()
    await load(url, graph)
    print(f"{label}: loaded {OBJECTS:,} objects in {time.perf_counter() - started:.1f}s")
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            user, target = graph["user"], graph["target"]

            async def check() -> None:
                level = await permission_level(session, user_uuid=user, target_uuid=target)
                assert level == 2, level

            async def listing() -> None:
                down = reachable(user, dialect=session.get_bind().dialect.name)
                rows = await session.scalars(
                    select(Collection.uuid)
                    .where(readable_clause(Collection, down, user))
                    .where(Collection.name.like("sample-01%"))
                    .order_by(Collection.modified_at.desc(), Collection.uuid)
                    .limit(100)
                )
                assert rows.all()

            check_ms = await median_ms(check, 50)
            list_ms = await median_ms(listing, 20)
            print(f"{label}: can_write check {DEEP} projects deep via a role: {check_ms:.2f} ms")
            print(f"{label}: filtered list (name like, readable only, limit 100): {list_ms:.2f} ms")
    finally:
        await engine.dispose()


async def _pg_url() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception:  # not reachable: the PostgreSQL half is skipped, and says so
        return None
    name = f"cf_bench_{random.randrange(1 << 30):x}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def _drop_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def bench_databases(workdir: Path) -> None:
    graph = build_graph()
    await bench_database("sqlite", f"sqlite+aiosqlite:///{workdir / 'bench.db'}", graph)
    url = await _pg_url()
    if url is None:
        print(f"postgresql: skipped, not reachable at {PG_DSN}")
        return
    try:
        await bench_database("postgresql", url, graph)
    finally:
        await _drop_pg(url)


async def bench_remote_check(workdir: Path) -> None:
    """A cached check vs. one that asks a real home cluster on loopback."""
    from clusterfed.config import parse_config
    from clusterfed.outbound.permissions import RemotePermissions
    from clusterfed.outbound.remote import RemoteClient
    from clusterfed.server.testing import ClusterProcess, cluster_config, remote_entry, running
    from clusterfed.tokens import parse_token

    home = ClusterProcess(
        cluster_config("qr1hi", f"sqlite+aiosqlite:///{workdir / 'qr1hi.db'}"), workdir
    )
    with running(home) as qr1hi:
        user, raw = await qr1hi.new_user()
        async with qr1hi.session() as session:
            project = Group(
                uuid=new_uuid("qr1hi", GROUP_TYPE), owner_uuid=user, name="p", group_class="project"
            )
            session.add(project)
        config = parse_config(
            cluster_config(
                "c97qk",
                "sqlite+aiosqlite:///unused.db",
                remotes={"qr1hi": remote_entry(qr1hi.port)},
            )
        )
        remote = RemoteClient(config)
        token = parse_token(raw)
        try:
            cached = RemotePermissions(config, remote)
            uncached = RemotePermissions(
                config.with_changes(federation=replace(config.federation, permission_cache_ttl=0)),
                remote,
            )
            args = {
                "issuer_token": token,
                "user_uuid": user,
                "target_uuid": project.uuid,
                "permission": "can_write",
            }

            async def hit() -> None:
                assert (await cached.check(**args)).allowed

            async def miss() -> None:
                assert (await uncached.check(**args)).allowed

            miss_ms = await median_ms(miss, 200)
            hit_ms = await median_ms(hit, 2000)
        finally:
            await remote.aclose()
    print(f"remote check, uncached (loopback HTTP to qr1hi): {miss_ms * 1000:.0f} us")
    print(f"remote check, cache hit: {hit_ms * 1000:.2f} us ({miss_ms / hit_ms:,.0f}x cheaper)")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clusterfed-bench-") as tmp:
        asyncio.run(bench_databases(Path(tmp)))
        asyncio.run(bench_remote_check(Path(tmp)))


if __name__ == "__main__":
    main()
