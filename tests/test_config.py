"""SPEC section 2: the YAML config loader, its defaults, its errors and its warnings."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from clusterfed.config import (
    ClusterConfig,
    ConfigError,
    FederationSettings,
    RemoteCluster,
    load_config,
    parse_duration,
)

FULL_CONFIG = """\
Clusters:
  qr1hi:
    Database: {URL: "postgresql+asyncpg://postgres@127.0.0.1:5432/qr1hi"}
    ManagementToken: "mgmt-token"
    SystemRootToken: "root-token"
    RemoteClusters:
      qr1hi: {Host: "ignored.example", Proxy: true}
      c97qk: {Host: "127.0.0.1:8002", Scheme: http, Insecure: false, Proxy: true,
              ActivateUsers: false}
      zbbbb: {Host: "zbbbb.example:443", Insecure: true, ActivateUsers: true}
    Login:
      LoginCluster: zbbbb
      RemoteTokenRefresh: 5m
    Users:
      AutoSetupNewUsers: true
      NewUsersAreActive: true
    Federation:
      RemoteTimeout: 3s
      NegativeCacheTTL: 1m
      StaleIfError: 1h30m
      PermissionCacheTTL: 45
"""


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def minimal(body: str = "", cluster_id: str = "qr1hi") -> str:
    """A one-cluster config whose cluster body is ``body`` (YAML, 4-space indented)."""
    return f"Clusters:\n  {cluster_id}:\n    ManagementToken: x\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


def test_full_spec_shaped_config_loads_every_value(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_CONFIG)
    config = load_config(path)
    assert config == ClusterConfig(
        cluster_id="qr1hi",
        database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/qr1hi",
        management_token="mgmt-token",
        system_root_token="root-token",
        remote_clusters={
            "c97qk": RemoteCluster(
                host="127.0.0.1:8002",
                scheme="http",
                insecure=False,
                proxy=True,
                activate_users=False,
            ),
            "zbbbb": RemoteCluster(
                host="zbbbb.example:443",
                scheme="https",
                insecure=True,
                proxy=False,
                activate_users=True,
            ),
        },
        login_cluster="zbbbb",
        remote_token_refresh=300.0,
        auto_setup_new_users=True,
        new_users_are_active=True,
        federation=FederationSettings(
            remote_timeout=3.0,
            negative_cache_ttl=60.0,
            stale_if_error=5400.0,
            permission_cache_ttl=45.0,
        ),
        source=str(path),
    )
    assert config.remote_clusters["c97qk"].base_url == "http://127.0.0.1:8002"
    assert config.remote_clusters["zbbbb"].base_url == "https://zbbbb.example:443"


def test_the_local_cluster_listed_in_remote_clusters_is_never_a_remote(tmp_path: Path) -> None:
    assert "qr1hi" not in load_config(write(tmp_path, FULL_CONFIG)).remote_clusters


def test_omitted_values_take_spec_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "Clusters:\n  qr1hi: {}\n"))
    assert config.database_url == "sqlite+aiosqlite:///var/qr1hi.db"
    assert config.remote_clusters == {}
    assert config.login_cluster == ""
    assert config.remote_token_refresh == 300.0
    assert (config.auto_setup_new_users, config.new_users_are_active) == (False, False)
    assert config.federation == FederationSettings(
        remote_timeout=10.0, negative_cache_ttl=10.0, stale_if_error=0.0, permission_cache_ttl=30.0
    )


def test_remote_scheme_defaults_to_https(tmp_path: Path) -> None:
    path = write(tmp_path, minimal("RemoteClusters:\n  c97qk: {Host: c97qk.example}\n"))
    assert load_config(path).remote_clusters["c97qk"].scheme == "https"


def test_builtin_default_is_one_sqlite_cluster_under_var() -> None:
    config = load_config(None)
    assert config.cluster_id == "zzzzz"
    assert config.database_url == "sqlite+aiosqlite:///var/zzzzz.db"
    assert config.remote_clusters == {}
    assert config.source == "<built-in default>"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300s", 300.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2h45m30s", 9930.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("300", 300.0),
        (300, 300.0),
        (0, 0.0),
    ],
)
def test_go_durations_and_integer_seconds(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [("5", 5.0), ("1h30m", 5400.0), ("'90'", 90.0)])
def test_durations_from_yaml_reach_the_config(tmp_path: Path, value: str, seconds: float) -> None:
    path = write(tmp_path, minimal(f"Login: {{RemoteTokenRefresh: {value}}}\n"))
    assert load_config(path).remote_token_refresh == seconds


@pytest.mark.parametrize(
    "value",
    ["", "5 minutes", "-5s", "1d", "5m-", "s", True, None, -1, float("inf"), float("nan"), "٣s"],
)
def test_unparseable_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


BAD_VALUES = [
    (minimal(cluster_id="QR1HI"), "Clusters.QR1HI"),
    (minimal(cluster_id="qr1hi9"), "Clusters.qr1hi9"),
    (minimal("RemoteClusters:\n  c97q: {Host: x}\n"), "Clusters.qr1hi.RemoteClusters.c97q"),
    (minimal("Login: {LoginCluster: NOPE}\n"), "Clusters.qr1hi.Login.LoginCluster"),
    (minimal("Login: {RemoteTokenRefresh: soon}\n"), "Clusters.qr1hi.Login.RemoteTokenRefresh"),
    (minimal("Federation: {RemoteTimeout: 10 s}\n"), "Clusters.qr1hi.Federation.RemoteTimeout"),
    (minimal("Federation: {RemoteTimeout: 0s}\n"), "Clusters.qr1hi.Federation.RemoteTimeout"),
    (minimal("Federation: {StaleIfError: .inf}\n"), "Clusters.qr1hi.Federation.StaleIfError"),
    (
        minimal("RemoteClusters:\n  c97qk: {Host: x, Scheme: ftp}\n"),
        "Clusters.qr1hi.RemoteClusters.c97qk.Scheme",
    ),
    (
        minimal("RemoteClusters:\n  c97qk: {Host: x, Scheme: HTTPS}\n"),
        "Clusters.qr1hi.RemoteClusters.c97qk.Scheme",
    ),
    (
        minimal("RemoteClusters:\n  c97qk: {Scheme: http}\n"),
        "Clusters.qr1hi.RemoteClusters.c97qk.Host",
    ),
    (
        minimal("RemoteClusters:\n  c97qk: {Host: x, Insecure: maybe}\n"),
        "Clusters.qr1hi.RemoteClusters.c97qk.Insecure",
    ),
    (
        minimal("RemoteClusters:\n  c97qk: {Host: x, Proxy: 1}\n"),
        "Clusters.qr1hi.RemoteClusters.c97qk.Proxy",
    ),
    (minimal('Users: {AutoSetupNewUsers: "true"}\n'), "Clusters.qr1hi.Users.AutoSetupNewUsers"),
    (minimal("Users: [NewUsersAreActive]\n"), "Clusters.qr1hi.Users"),
    (minimal("Database: {URL: 'mysql://x/y'}\n"), "Clusters.qr1hi.Database.URL"),
    (minimal("ManagementToken: [a, b]\n"), "Clusters.qr1hi.ManagementToken"),
    (
        "Clusters:\n  qr1hi: {}\n  c97qk: {}\n",
        "Clusters",
    ),
    ("Clusters: {}\n", "Clusters"),
    ("- just\n- a list\n", "<top level>"),
]


@pytest.mark.parametrize(("text", "key"), BAD_VALUES, ids=[key for _, key in BAD_VALUES])
def test_bad_values_raise_config_error_naming_file_and_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert f"{key}:" in message or f"{key} " in message


def test_two_clusters_error_says_exactly_one(tmp_path: Path) -> None:
    path = write(tmp_path, "Clusters:\n  qr1hi: {}\n  c97qk: {}\n")
    with pytest.raises(ConfigError, match="exactly one cluster"):
        load_config(path)


def test_file_that_is_not_yaml_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Clusters:\n  qr1hi: {Database: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_file_that_is_not_utf8_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("Clusters:\n  qr1hi: {ManagementToken: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_missing_file_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_unknown_keys_warn_once_each_and_are_otherwise_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        """\
        Clusters:
          qr1hi:
            ManagementToken: x
            Services: {Controller: {}, Workbench1: {}}
            RemoteClusters:
              c97qk: {Host: "c97qk.example", Colour: blue}
            Login: {RemoteTokenRefresh: 1m, Shibboleth: true}
            Federation: {RemoteTimeout: 2s, Bogus: 1}
        SystemLogs: {}
        """,
    )
    with caplog.at_level(logging.WARNING, logger="clusterfed.config"):
        config = load_config(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    unknown = [
        "SystemLogs",
        "Clusters.qr1hi.Services.Workbench1",
        "Clusters.qr1hi.RemoteClusters.c97qk.Colour",
        "Clusters.qr1hi.Login.Shibboleth",
        "Clusters.qr1hi.Federation.Bogus",
    ]
    assert len(warnings) == len(unknown)
    for key in unknown:
        assert sum(message.endswith(f" {key}") for message in warnings) == 1, key
        assert all(str(path) in message for message in warnings)
    assert config.remote_clusters["c97qk"] == RemoteCluster(host="c97qk.example")
    assert config.remote_token_refresh == 60.0
    assert config.federation.remote_timeout == 2.0


def test_known_keys_produce_no_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clusterfed.config"):
        load_config(write(tmp_path, FULL_CONFIG))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


KEEP_CONFIG = """\
Clusters:
  qr1hi:
    SystemRootToken: "root-token"
    Services:
      Controller: {ExternalURL: "https://qr1hi.example:8000/"}
      Keepstore: {ExternalURL: "https://keep.qr1hi.example", InternalURLs: {}}
    Collections:
      BlobSigning: false
      BlobSigningKey: "the-signing-key"
      BlobSigningTTL: 2h
      DefaultReplication: 1
    Volumes:
      qr1hi-nyw5e-000000000000000: {Driver: Directory, DriverParameters: {Root: /srv/keep0}}
      qr1hi-nyw5e-000000000000001:
        Driver: Directory
        DriverParameters: {Root: keep1}
        Replication: 2
        ReadOnly: true
"""


def test_keep_settings_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from clusterfed.config import CollectionsSettings, Volume

    with caplog.at_level(logging.WARNING, logger="clusterfed.config"):
        config = load_config(write(tmp_path, KEEP_CONFIG))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert config.collections == CollectionsSettings(
        blob_signing=False, blob_signing_key="the-signing-key", blob_signing_ttl=7200.0
    )
    assert config.keep_volumes == {
        "qr1hi-nyw5e-000000000000000": Volume("Directory", "/srv/keep0"),
        "qr1hi-nyw5e-000000000000001": Volume("Directory", "keep1", 2, True),
    }
    assert config.controller_url == "https://qr1hi.example:8000"
    assert config.keepstore_url == "https://keep.qr1hi.example"


def test_keep_defaults(tmp_path: Path) -> None:
    from clusterfed.config import Volume

    config = load_config(write(tmp_path, minimal()))
    assert config.collections.blob_signing is True
    assert config.collections.blob_signing_key == ""
    assert config.collections.blob_signing_ttl == 336 * 3600
    assert config.keep_volumes == {
        "qr1hi-nyw5e-000000000000000": Volume("Directory", "var/qr1hi-keep")
    }
    assert config.controller_url == config.keepstore_url == ""


KEEP_BAD_VALUES = [
    (minimal("Collections: {BlobSigning: 1}\n"), "Clusters.qr1hi.Collections.BlobSigning"),
    (minimal("Collections: {BlobSigningTTL: soon}\n"), "Clusters.qr1hi.Collections.BlobSigningTTL"),
    (minimal("Collections: {BlobSigningTTL: 0s}\n"), "Clusters.qr1hi.Collections.BlobSigningTTL"),
    (minimal("Volumes: {x: {}}\n"), "Clusters.qr1hi.Volumes.x"),
    (
        minimal("Volumes: {qr1hi-nyw5e-000000000000000: {Driver: S3}}\n"),
        "Clusters.qr1hi.Volumes.qr1hi-nyw5e-000000000000000.Driver",
    ),
    (
        minimal("Volumes: {qr1hi-nyw5e-000000000000000: {Driver: Directory}}\n"),
        "Clusters.qr1hi.Volumes.qr1hi-nyw5e-000000000000000.DriverParameters.Root",
    ),
    (
        minimal("Services: {Keepstore: {ExternalURL: 'ftp://x'}}\n"),
        "Clusters.qr1hi.Services.Keepstore.ExternalURL",
    ),
]


@pytest.mark.parametrize(("text", "key"), KEEP_BAD_VALUES, ids=[k for _, k in KEEP_BAD_VALUES])
def test_bad_keep_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert f"{key}:" in str(excinfo.value)


def test_the_signing_key_is_never_in_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, minimal("Collections: {BlobSigningKey: [secret-key-value]}\n"))
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "secret-key-value" not in str(excinfo.value)
