"""How clients find Keep: ``keep_services/accessible``, the discovery document's keep
entries and ``defaultCollectionReplication``, and the exported ``DefaultReplication``."""

from __future__ import annotations

from clusterfed.config import parse_config
from clusterfed.server.app import create_app
from clusterfed.server.testing import cluster_config

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory


def volumes(count: int) -> dict[str, dict[str, object]]:
    return {
        f"qr1hi-nyw5e-00000000000000{n}": {
            "Driver": "Directory",
            "DriverParameters": {"Root": f"v{n}"},
        }
        for n in range(count)
    }


CASES = [
    ({}, ("testserver", 80, False)),
    (
        {"Controller": {"ExternalURL": "https://qr1hi.example:8443/"}},
        ("qr1hi.example", 8443, True),
    ),
    (
        {
            "Controller": {"ExternalURL": "https://qr1hi.example:8443"},
            "Keepstore": {"ExternalURL": "https://keep.qr1hi.example"},
        },
        ("keep.qr1hi.example", 443, True),
    ),
]


async def test_the_block_server_is_listed(databases: DatabaseFactory) -> None:
    database_url = databases.new_url("qr1hi")
    for services, expected in CASES:
        await check_listing(database_url, services, expected)


async def check_listing(database_url: str, services: dict, expected: tuple[str, int, bool]) -> None:
    document = cluster_config("qr1hi", database_url)
    document["Clusters"]["qr1hi"]["Services"] = services
    document["Clusters"]["qr1hi"]["Volumes"] = volumes(2)
    app = create_app(parse_config(document))
    async with asgi_client(app) as client:
        listed = await client.get("/arvados/v1/keep_services/accessible")
        discovery = await client.get("/discovery/v1/apis/arvados/v1/rest")
        exported = await client.get("/arvados/v1/config")
        bad = await client.get(
            "/arvados/v1/keep_services/accessible",
            headers={"Authorization": "Bearer v2/qr1hi-gj3su-000000000000000/nope"},
        )
    assert listed.status_code == 200, listed.text
    (service,) = listed.json()["items"]
    assert listed.json()["kind"] == "arvados#keepServiceList"
    assert service["uuid"] == "qr1hi-bi6l4-000000000000000"
    assert (
        service["service_host"],
        service["service_port"],
        service["service_ssl_flag"],
    ) == expected
    assert (service["service_type"], service["read_only"]) == ("disk", False)
    body = discovery.json()
    assert body["resources"]["keep_services"]["methods"]["accessible"]["path"] == (
        "keep_services/accessible"
    )
    assert body["defaultCollectionReplication"] == 2
    assert body["blobSignatureTtl"] == 336 * 3600
    assert exported.json()["Collections"] == {"DefaultReplication": 2}
    assert bad.status_code == 401
