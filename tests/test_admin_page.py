"""The admin page in headless Chromium: log in, see the cached entry, purge it, see it
gone, and the next request is validated at the issuer again.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright. Without it a local
run skips; under CI (``CI=true``) a missing browser fails, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterfed.server.testing import MANAGEMENT_TOKEN
from clusterfed.tokens import parse_token

from tests.support import REPO_ROOT
from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import Pair, cached_digest, call, federation_pair

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO_ROOT / "test-artifacts" / "admin-page.png"

pytestmark = [pytest.mark.browser, pytest.mark.server]


def _require_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    _require_chromium()
    workdir: Path = tmp_path_factory.mktemp("admin-page")
    with federation_pair(session_databases, workdir) as pair:
        yield pair


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    _require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            yield await context.new_page()
        finally:
            await browser.close()


async def test_log_in_see_the_entry_purge_it_and_it_is_validated_again(
    pair: Pair, browser_page: Any
) -> None:
    page = browser_page
    c97qk = pair.c97qk
    user_uuid, token = await pair.qr1hi.new_user()
    token_uuid = parse_token(token).uuid
    assert call(c97qk, token).status_code == 200
    calls = pair.wait_issuer_token_calls(pair.issuer_token_calls())
    _, admin_token = await c97qk.new_user(is_admin=True)
    _, plain_token = await c97qk.new_user()

    response = await page.goto(f"{c97qk.base_url}/federation/admin")
    assert response.status == 401
    # It opens on its login form, with no error and no link to itself.
    await page.locator("input[name=credential]").wait_for()
    assert await page.locator("[role=alert]").count() == 0
    assert await page.locator("a[href='/federation/admin']").count() == 0
    await page.fill("input[name=credential]", plain_token)
    await page.click("button[type=submit]")
    assert "needs an admin" in await page.inner_text("[role=alert]")
    assert await page.locator("#entries").count() == 0

    await page.fill("input[name=credential]", admin_token)
    await page.click("button[type=submit]")
    row = page.locator(f"tr[data-token='{token_uuid}']")
    await row.wait_for()
    assert user_uuid in await row.inner_text()
    assert await row.locator("td.state-fresh").inner_text() == "fresh"
    remotes = await page.inner_text("#remotes")
    assert "qr1hi" in remotes and pair.qr1hi.host in remotes and "closed" in remotes

    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "clusterfed_admin"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/federation/admin"
    digest = await cached_digest(c97qk, token_uuid)
    assert digest
    html = await page.content()
    for secret in (parse_token(admin_token).secret, parse_token(token).secret, digest):
        assert secret not in html and secret not in page.url
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A cross-site style POST (the cookie rides along, no CSRF token) is refused.
    forged = await page.context.request.post(
        f"{c97qk.base_url}/federation/admin/purge", form={"kind": "all"}
    )
    assert forged.status == 403
    assert await row.count() == 1

    await page.click(f"button[aria-label='Purge {token_uuid}']")
    await page.locator("[role=status]").wait_for()
    assert await page.inner_text("[role=status]") == "Purged 1 cached token."
    assert await page.locator(f"tr[data-token='{token_uuid}']").count() == 0
    assert token_uuid not in await page.content()

    assert call(c97qk, token).status_code == 200
    assert pair.wait_issuer_token_calls(calls + 1) == calls + 1, "validated at qr1hi again"
    await page.reload()
    assert await page.locator(f"tr[data-token='{token_uuid}']").count() == 1

    await page.click("text=Log out")
    await page.locator("input[name=credential]").wait_for()
    assert not [c for c in await page.context.cookies() if c["name"] == "clusterfed_admin"]


async def test_management_token_logs_in_and_filters_work(pair: Pair, browser_page: Any) -> None:
    page = browser_page
    _, token = await pair.qr1hi.new_user()
    token_uuid = parse_token(token).uuid
    assert call(pair.c97qk, token).status_code == 200
    await page.goto(f"{pair.c97qk.base_url}/federation/admin")
    await page.fill("input[name=credential]", MANAGEMENT_TOKEN)
    await page.click("button[type=submit]")
    await page.locator(f"tr[data-token='{token_uuid}']").wait_for()
    assert "ManagementToken" in await page.content()
    assert MANAGEMENT_TOKEN not in await page.content()

    await page.select_option("select[name=state]", "expired")
    await page.click("#filters button[type=submit]")
    await page.wait_for_url("**state=expired")
    assert (await page.inner_text("#available")).startswith("0 cached tokens")
    assert await page.locator("[role=alert]").count() == 0, "empty filter fields mean any"
    assert await page.locator(f"tr[data-token='{token_uuid}']").count() == 0

    response = await page.goto(f"{pair.c97qk.base_url}/federation/admin?cluster_id=NOPE!")
    assert response.status == 422
    assert "cluster_id" in await page.inner_text("[role=alert]")
