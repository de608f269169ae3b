"""The admin page's login, session and CSRF, in process on both backends.

The session cookie never holds the credential, expires, is Secure over https and stands
for an admin that is checked again on every request; CSRF tokens are bound to the session
(a pair an attacker plants is refused); logins are throttled per client address without
locking the right credential out for long.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from clusterfed.admin.session import SESSION_SECONDS, new_session
from clusterfed.config import parse_config
from clusterfed.server.app import create_app
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.server.testing import MANAGEMENT_TOKEN, Cluster, cluster_config
from clusterfed.tokens import parse_token
from sqlalchemy import delete

from tests.conftest import asgi_client
from tests.support.clock import stop_rate_limit_clock
from tests.support.databases import DatabaseFactory

PAGE = "/federation/admin"
SESSION = "clusterfed_admin"
NONCE = "clusterfed_csrf"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Site:
    app: Any
    client: httpx.AsyncClient
    cluster: Cluster


@pytest.fixture
async def site(databases: DatabaseFactory) -> AsyncIterator[Site]:
    url = databases.new_url("admin")
    config = parse_config(cluster_config("qr1hi", url, system_root_token="s" * 50))
    app = create_app(config)
    async with asgi_client(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            yield Site(app, client, Cluster("qr1hi", 0, url))


def csrf_of(response: httpx.Response) -> str:
    match = CSRF_FIELD.search(response.text)
    assert match, response.text[:500]
    return match.group(1)


async def login(client: httpx.AsyncClient, credential: str) -> httpx.Response:
    form = await client.get(PAGE)
    return await client.post(
        f"{PAGE}/login", data={"credential": credential, "csrf": csrf_of(form)}
    )


def cookie_header(response: httpx.Response, name: str) -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


async def test_the_session_cookie_is_not_the_credential_and_ends_with_it(site: Site) -> None:
    user_uuid, admin = await site.cluster.new_user(is_admin=True)
    for credential in (admin, MANAGEMENT_TOKEN):
        site.client.cookies.clear()
        response = await login(site.client, credential)
        assert response.status_code == 303, response.text
        header = cookie_header(response, SESSION)
        value = site.client.cookies[SESSION]
        secret = credential.rsplit("/", 1)[-1]
        assert secret not in header and secret not in value and credential not in value
        assert "Secure" in header and "HttpOnly" in header and "SameSite=strict" in header
        assert f"Max-Age={SESSION_SECONDS}" in header
        page = await site.client.get(PAGE)
        assert page.status_code == 200 and "Log out" in page.text
    # Revoking the token ends its session at once.
    site.client.cookies.clear()
    assert (await login(site.client, admin)).status_code == 303
    async with site.cluster.session() as session:
        await session.execute(
            delete(ApiClientAuthorization).where(
                ApiClientAuthorization.uuid == parse_token(admin).uuid
            )
        )
    assert (await site.client.get(PAGE)).status_code == 401
    assert SESSION not in site.client.cookies  # and the dead cookie is dropped
    assert user_uuid


async def test_a_forged_altered_or_expired_session_is_refused(site: Site) -> None:
    config = site.app.state.config
    user_uuid, admin = await site.cluster.new_user(is_admin=True)
    assert (await login(site.client, admin)).status_code == 303
    good = site.client.cookies[SESSION]
    payload, mac = good.split(".")
    _, expired = new_session(
        config,
        kind="token",
        user_uuid=user_uuid,
        token_uuid=parse_token(admin).uuid,
        now=0.0,
    )
    other_key = parse_config(cluster_config("qr1hi", "sqlite+aiosqlite:///x.db"))
    _, foreign = new_session(other_key, kind="management", user_uuid=None, token_uuid=None)
    for cookie in (f"{payload}.{mac[:-2]}xx", f"{payload}x.{mac}", expired, foreign, admin, "é"):
        site.client.cookies.clear()
        response = await site.client.get(PAGE, headers={"Cookie": f"{SESSION}={cookie}".encode()})
        assert response.status_code == 401, cookie


async def test_csrf_tokens_are_bound_to_the_session(site: Site) -> None:
    _, admin = await site.cluster.new_user(is_admin=True)
    # Login: a planted nonce with a value of the attacker's choosing in the form.
    planted = "x" * 43
    site.client.cookies.set(NONCE, planted, path=PAGE)
    refused = await site.client.post(f"{PAGE}/login", data={"credential": admin, "csrf": planted})
    assert refused.status_code == 403 and SESSION not in site.client.cookies
    assert (await login(site.client, admin)).status_code == 303
    # Purge: the old double submit (same value in a cookie and in the form) is refused.
    site.client.cookies.set(NONCE, planted, path=PAGE)
    forged = await site.client.post(f"{PAGE}/purge", data={"kind": "all", "csrf": planted})
    assert forged.status_code == 403, forged.text
    # Another session's token is refused too; this session's own is accepted.
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app), base_url="https://t")
    async with other:
        assert (await login(other, admin)).status_code == 303
        theirs = csrf_of(await other.get(PAGE))
    mine = csrf_of(await site.client.get(PAGE))
    assert theirs != mine
    stolen = await site.client.post(f"{PAGE}/purge", data={"kind": "all", "csrf": theirs})
    assert stolen.status_code == 403
    done = await site.client.post(f"{PAGE}/purge", data={"kind": "all", "csrf": mine})
    assert done.status_code == 303, done.text


async def test_logins_are_throttled_without_locking_out_the_right_credential(site: Site) -> None:
    clock = stop_rate_limit_clock(site.app)  # the burst is ten, however slow the machine
    _, admin = await site.cluster.new_user(is_admin=True)
    form = await site.client.get(PAGE)
    csrf = csrf_of(form)
    statuses = []
    for attempt in range(14):
        response = await site.client.post(
            f"{PAGE}/login", data={"credential": f"wrong-{attempt}", "csrf": csrf}
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}, statuses
    assert response.headers["Retry-After"] == "1"
    assert "too many login attempts" in response.text
    # The right credential is refused while the bucket is empty, then let in a second on.
    assert (await login(site.client, admin)).status_code == 429
    clock.advance(1.0)
    assert (await login(site.client, admin)).status_code == 303


async def test_the_page_opens_on_its_login_form_without_an_error(site: Site) -> None:
    first = await site.client.get(PAGE)
    assert first.status_code == 401  # not signed in, but nothing went wrong
    assert 'name="credential"' in first.text
    assert 'role="alert"' not in first.text
    assert f'href="{PAGE}"' not in first.text  # the login page does not link to itself
    # A failed login is an error, and says so.
    refused = await login(site.client, "v2/qr1hi-gj3su-000000000000000/" + "x" * 40)
    assert refused.status_code == 401 and 'role="alert"' in refused.text
    assert f'href="{PAGE}"' not in refused.text
    # A signed-in admin whose form went stale gets the error and the way back.
    assert (await login(site.client, MANAGEMENT_TOKEN)).status_code == 303
    stale = await site.client.post(f"{PAGE}/purge", data={"kind": "all", "csrf": "stale"})
    assert stale.status_code == 403 and 'role="alert"' in stale.text
    assert f'href="{PAGE}"' in stale.text
