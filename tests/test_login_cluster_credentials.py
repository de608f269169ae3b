"""The malformed-credential suite on a satellite of a login cluster (SPEC 3.8, 3.2 step 1).

A satellite sends credentials it does not know to its login cluster; one that cannot be
a credential at all (quotes, spaces, non-ASCII, over 4 kB, a UUID, ``-``...) must still
be 401 and never leave the satellite. The satellite runs in process; the login cluster
qr1hi is a real process, and the satellite's outgoing calls go through a transport that
records them on their way there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from clusterfed.credentials import bearer_credential
from clusterfed.server.app import create_app
from clusterfed.server.testing import (
    ClusterProcess,
    cluster_config,
    local_config,
    remote_entry,
    running,
)
from clusterfed.tokens import is_opaque_credential, parse_token
from hypothesis import given, settings

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory
from tests.test_malformed_credentials import (
    MALFORMED_HEADERS,
    _header,
    _schemes,
    _tokens,
    assert_spec_401,
    near_misses,
)

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

USERS_CURRENT = "/arvados/v1/users/current"
LOGIN = {"LoginCluster": "qr1hi"}


@dataclass
class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network, with a note of every request sent (the Authorization it held)."""

    sent: list[str] = field(default_factory=list)
    inner: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.headers.get("authorization", ""))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Satellite:
    get: Callable[[bytes | str], httpx.Response]
    sent: list[str]
    login_token: str


@pytest.fixture(scope="module")
def satellite(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Satellite]:
    workdir: Path = tmp_path_factory.mktemp("login-credentials")
    login = cluster_config("qr1hi", session_databases.new_url("qr1hi"), login=LOGIN)
    with running(ClusterProcess(login, workdir)) as qr1hi:
        _, login_token = asyncio.run(qr1hi.new_user())
        config = local_config(
            "c97qk",
            session_databases.new_url("c97qk"),
            remotes={"qr1hi": remote_entry(qr1hi.port)},
            login=LOGIN,
            system_root_token="c97qk-root-token-for-the-credential-suite",
        )
        transport = RecordingTransport()
        context = asgi_client(create_app(config, transport=transport))
        with asyncio.Runner() as runner:
            client = runner.run(context.__aenter__())
            try:

                def get(authorization: bytes | str) -> httpx.Response:
                    headers = {"Authorization": authorization}
                    return runner.run(client.get(USERS_CURRENT, headers=headers))

                yield Satellite(get=get, sent=transport.sent, login_token=login_token)
            finally:
                runner.run(context.__aexit__(None, None, None))


def could_be_sent(authorization: bytes | str) -> bool:
    """Whether the satellite may ask the login cluster about this header's credential."""
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    credential = bearer_credential(text)
    if credential is None:
        return False
    if credential.startswith("v2/"):
        try:
            return parse_token(credential).issuer == "qr1hi"
        except ValueError:
            return False
    return is_opaque_credential(credential)


def test_the_login_clusters_credentials_work_here(satellite: Satellite) -> None:
    """The control: the login cluster answers, for v2 tokens and bare secrets alike."""
    assert satellite.get(f"Bearer {satellite.login_token}").status_code == 200
    secret = parse_token(satellite.login_token).secret
    assert satellite.get(f"OAuth2 {secret}").status_code == 200


@pytest.mark.parametrize("authorization", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS)
def test_malformed_credentials_are_refused_without_asking_the_login_cluster(
    satellite: Satellite, authorization: bytes | str
) -> None:
    before = len(satellite.sent)
    assert_spec_401(satellite.get(authorization), authorization)
    assert len(satellite.sent) == before


def test_near_misses_of_a_login_cluster_token_are_refused(satellite: Satellite) -> None:
    for name, variant in near_misses(satellite.login_token).items():
        before = len(satellite.sent)
        response = satellite.get(f"Bearer {variant}")
        assert_spec_401(response, variant)
        if not could_be_sent(f"Bearer {variant}"):
            assert len(satellite.sent) == before, name


@settings(max_examples=150, deadline=None)
@given(token=_tokens, scheme=_schemes)
def test_random_credentials_are_refused_and_only_possible_ones_leave(
    satellite: Satellite, token: str, scheme: str
) -> None:
    header = _header(scheme, token)
    before = len(satellite.sent)
    response = satellite.get(header)
    assert_spec_401(response, token)
    if not could_be_sent(header):
        assert len(satellite.sent) == before, header
    for sent in satellite.sent[before:]:
        # What left went as presented (a bare credential) or salted (a v2 token).
        assert sent.startswith("Bearer ")
