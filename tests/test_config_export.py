"""SPEC 2 and 3.6: Arvados's "*" remote entry, ``/arvados/v1/config`` and ``remoteHosts``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
from clusterfed.config import load_config
from clusterfed.server.app import create_app

SECRETS = ("mgmt-secret-token", "root-secret-token", "blob-signing-secret")
CONFIG = f"""\
Clusters:
  qr1hi:
    Database: {{URL: "sqlite+aiosqlite:///unused.db"}}
    ManagementToken: {SECRETS[0]}
    SystemRootToken: {SECRETS[1]}
    RemoteClusters:
      "*": {{Host: "", Proxy: false, Scheme: https, Insecure: false, ActivateUsers: false}}
      qr1hi: {{Host: "qr1hi.example:443", Proxy: true}}
      c97qk: {{Host: "c97qk.example:8443", Proxy: true, ActivateUsers: true}}
    Login:
      LoginCluster: c97qk
    Collections: {{BlobSigningKey: {SECRETS[2]}}}
"""


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


def test_the_wildcard_remote_is_accepted_and_never_a_remote(tmp_path: Path) -> None:
    # Arvados's own config.default.yml has RemoteClusters: {"*": {...}}.
    config = load_config(config_file(tmp_path))
    assert set(config.remote_clusters) == {"c97qk"}


async def test_config_export_and_remote_hosts(tmp_path: Path) -> None:
    app = create_app(
        load_config(config_file(tmp_path)).with_changes(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'qr1hi.db'}"
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # No credentials needed; a foreign token that nobody could validate is not looked at.
        unvalidated = {"Authorization": "Bearer v2/zzzzz-gj3su-000000000000000/abc"}
        exported = await client.get("/arvados/v1/config", headers=unvalidated)
        document = await client.get("/discovery/v1/apis/arvados/v1/rest")
    assert exported.status_code == 200, exported.text
    assert exported.json() == {
        "ClusterID": "qr1hi",
        "RemoteClusters": {
            "c97qk": {
                "Host": "c97qk.example:8443",
                "Proxy": True,
                "Scheme": "https",
                "Insecure": False,
                "ActivateUsers": True,
            }
        },
        "Login": {"LoginCluster": "c97qk"},
        "Collections": {"DefaultReplication": 1},
    }
    assert not any(secret in exported.text for secret in SECRETS)
    assert document.json()["remoteHosts"] == {"c97qk": "c97qk.example:8443"}
