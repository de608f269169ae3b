"""Configuration (docs/configuration.md): one Arvados-shaped YAML file, one cluster.

``load_config(path)`` returns a frozen :class:`ClusterConfig`. A bad value raises
:class:`ConfigError` naming the file and the key; an unknown key is ignored with one
warning each. The built-in default (no file at all) is a single SQLite cluster under
``./var/``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .tokens import is_cluster_id

log = logging.getLogger("clusterfed.config")

CONFIG_ENV = "CLUSTERFED_CONFIG"
DEFAULT_CLUSTER_ID = "zzzzz"
DEFAULT_SOURCE = "<built-in default>"
DEFAULT_MANAGEMENT_TOKEN_FILE = Path("var/management-token")

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


WILDCARD_REMOTE = "*"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and key."""


@dataclass(frozen=True, slots=True)
class RemoteCluster:
    host: str
    scheme: str = "https"
    insecure: bool = False
    proxy: bool = False
    activate_users: bool = False

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


@dataclass(frozen=True, slots=True)
class FederationSettings:
    remote_timeout: float = 10.0
    negative_cache_ttl: float = 10.0
    stale_if_error: float = 0.0
    permission_cache_ttl: float = 30.0
    token_cache_size: int = 10_000
    # How long a host may answer one of its own tokens from LocalTokenCache (0: never);
    # revocations and purges reach it through the purge log whatever this is.
    local_token_cache_ttl: float = 60.0
    max_response_bytes: int = 1_048_576
    # How often each worker looks for purges made by other workers (2 s bound).
    purge_poll_interval: float = 0.5
    # Cold validations a second: per client address (burst twice that) and per
    # issuer, all clients together. 0 turns a limit off.
    cold_validation_rate: float = 20.0
    issuer_validation_rate: float = 200.0
    # Requests a second per client address that reach several clusters (a federated or
    # split list, a lookup by hash asked of every Proxy remote); burst twice that.
    fanout_rate: float = 10.0
    # CIDRs of proxies whose X-Forwarded-For names the client address.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CollectionsSettings:
    """Keep's permission signatures. ``blob_signing_key`` is a secret: never exported."""

    blob_signing: bool = True
    blob_signing_key: str = ""  # empty: derived from SystemRootToken
    blob_signing_ttl: float = 336 * 3600.0


@dataclass(frozen=True, slots=True)
class Volume:
    """One block store (Arvados's ``Volumes`` entry). Only the Directory driver exists."""

    driver: str
    root: str
    replication: int = 1
    read_only: bool = False


VOLUME_DRIVERS = frozenset({"Directory"})
VOLUME_UUID_RE = re.compile(r"[a-z0-9]{5}-nyw5e-[a-z0-9]{15}")


def default_volumes(cluster_id: str) -> dict[str, Volume]:
    return {f"{cluster_id}-nyw5e-000000000000000": Volume("Directory", f"var/{cluster_id}-keep")}


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    cluster_id: str
    database_url: str
    management_token: str = ""
    system_root_token: str = ""
    remote_clusters: Mapping[str, RemoteCluster] = field(default_factory=dict)
    login_cluster: str = ""
    remote_token_refresh: float = 300.0
    auto_setup_new_users: bool = False
    new_users_are_active: bool = False
    federation: FederationSettings = field(default_factory=FederationSettings)
    # Serve HTTPS with these PEM files. Arvados clients only speak https to
    # ARVADOS_API_HOST, so a cluster they use directly needs TLS (or a proxy doing it).
    tls_certificate: str = ""
    tls_key: str = ""
    collections: CollectionsSettings = field(default_factory=CollectionsSettings)
    # Empty: one Directory volume under ./var/ (``keep_volumes``).
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    # Services.Controller.ExternalURL and Services.Keepstore.ExternalURL: how clients
    # reach this server and its block server (empty: the address they used).
    controller_url: str = ""
    keepstore_url: str = ""
    source: str = DEFAULT_SOURCE

    @property
    def keep_volumes(self) -> Mapping[str, Volume]:
        return self.volumes or default_volumes(self.cluster_id)

    def with_changes(self, **changes: Any) -> ClusterConfig:
        return replace(self, **changes)

    def accepts_salted_for(self, cluster: str) -> bool:
        """Whether one of this cluster's tokens, salted for ``cluster``, counts here.

        Only for a cluster listed by ID in ``RemoteClusters``: a salted copy exists to be
        used at that cluster, and a cluster this one does not federate with (handed a copy
        by a fan-out elsewhere, say) must gain nothing from it: not the user's record, not
        their groups, not the power to revoke their token. The one rule for the validation
        endpoints, the permission checks, the groups listing and revocation alike.
        """
        return cluster != self.cluster_id and cluster in self.remote_clusters


def parse_duration(value: object) -> float:
    """Go-style duration (``300s``, ``5m``, ``1h30m``, ``250ms``) or integer seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a finite, non-negative duration")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a duration (use e.g. 300s, 5m, 1h)")
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 300s, 5m, 1h)")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


def default_config() -> ClusterConfig:
    """One SQLite cluster under ``./var/``; its ManagementToken is the one in
    ``var/management-token`` when that file exists (``clusterfed serve`` writes it on
    its first run without a config file)."""
    try:
        management_token = DEFAULT_MANAGEMENT_TOKEN_FILE.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        management_token = ""
    return ClusterConfig(
        cluster_id=DEFAULT_CLUSTER_ID,
        database_url=f"sqlite+aiosqlite:///var/{DEFAULT_CLUSTER_ID}.db",
        management_token=management_token,
    )


def resolve_config_path(cli_path: str | None) -> str | None:
    return cli_path or os.environ.get(CONFIG_ENV) or None


def load_config(path: str | os.PathLike[str] | None) -> ClusterConfig:
    if path is None:
        return default_config()
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    return parse_config(document, source=source)


def parse_config(document: object, *, source: str = "<config>") -> ClusterConfig:
    reader = _Reader(source)
    top = reader.mapping(document, "")
    reader.warn_unknown(top, "", {"Clusters"})
    clusters = reader.mapping(top.get("Clusters"), "Clusters")
    if len(clusters) != 1:
        raise ConfigError(
            f"{source}: Clusters must hold exactly one cluster, found {len(clusters)}"
        )
    ((cluster_id, body),) = clusters.items()
    cluster_id = str(cluster_id)
    if not is_cluster_id(cluster_id):
        raise ConfigError(
            f"{source}: Clusters.{cluster_id}: cluster ID must be 5 characters of [a-z0-9]"
        )
    at = f"Clusters.{cluster_id}"
    body = reader.mapping(body, at)
    reader.warn_unknown(
        body,
        at,
        {
            "Database",
            "ManagementToken",
            "SystemRootToken",
            "RemoteClusters",
            "Login",
            "Users",
            "Federation",
            "TLS",
            "Collections",
            "Volumes",
            "Services",
        },
    )
    database = reader.mapping(body.get("Database", {}), f"{at}.Database")
    reader.warn_unknown(database, f"{at}.Database", {"URL"})
    default = default_config()
    database_url = reader.string(
        database.get("URL", f"sqlite+aiosqlite:///var/{cluster_id}.db"), f"{at}.Database.URL"
    )
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            f"{source}: {at}.Database.URL: must start with sqlite+aiosqlite:// or "
            "postgresql+asyncpg://"
        )

    login = reader.mapping(body.get("Login", {}), f"{at}.Login")
    reader.warn_unknown(login, f"{at}.Login", {"LoginCluster", "RemoteTokenRefresh"})
    login_cluster = reader.string(login.get("LoginCluster", ""), f"{at}.Login.LoginCluster")
    if login_cluster and not is_cluster_id(login_cluster):
        raise ConfigError(
            f"{source}: {at}.Login.LoginCluster: {login_cluster!r} is not a cluster ID"
        )

    users = reader.mapping(body.get("Users", {}), f"{at}.Users")
    reader.warn_unknown(users, f"{at}.Users", {"AutoSetupNewUsers", "NewUsersAreActive"})

    return ClusterConfig(
        cluster_id=cluster_id,
        database_url=database_url,
        management_token=reader.string(body.get("ManagementToken", ""), f"{at}.ManagementToken"),
        system_root_token=reader.string(body.get("SystemRootToken", ""), f"{at}.SystemRootToken"),
        remote_clusters=_remote_clusters(reader, body.get("RemoteClusters", {}), at, cluster_id),
        login_cluster=login_cluster,
        remote_token_refresh=reader.duration(
            login.get("RemoteTokenRefresh", default.remote_token_refresh),
            f"{at}.Login.RemoteTokenRefresh",
        ),
        auto_setup_new_users=reader.boolean(
            users.get("AutoSetupNewUsers", False), f"{at}.Users.AutoSetupNewUsers"
        ),
        new_users_are_active=reader.boolean(
            users.get("NewUsersAreActive", False), f"{at}.Users.NewUsersAreActive"
        ),
        federation=_federation(reader, body.get("Federation", {}), f"{at}.Federation"),
        **_tls(reader, body.get("TLS", {}), f"{at}.TLS"),
        collections=_collections(reader, body.get("Collections", {}), f"{at}.Collections"),
        volumes=_volumes(reader, body.get("Volumes", {}), f"{at}.Volumes", cluster_id),
        **_services(reader, body.get("Services", {}), f"{at}.Services"),
        source=source,
    )


def _collections(reader: _Reader, value: object, at: str) -> CollectionsSettings:
    spec = reader.mapping(value, at)
    # DefaultReplication is exported (arv-copy reads it) but follows from the volumes.
    known = {"BlobSigning", "BlobSigningKey", "BlobSigningTTL", "DefaultReplication"}
    reader.warn_unknown(spec, at, known)
    default = CollectionsSettings()
    ttl = reader.duration(
        spec.get("BlobSigningTTL", default.blob_signing_ttl), f"{at}.BlobSigningTTL"
    )
    if ttl < 1:
        raise ConfigError(f"{reader.source}: {at}.BlobSigningTTL: must be at least 1s")
    return CollectionsSettings(
        blob_signing=reader.boolean(spec.get("BlobSigning", True), f"{at}.BlobSigning"),
        blob_signing_key=reader.string(spec.get("BlobSigningKey", ""), f"{at}.BlobSigningKey"),
        blob_signing_ttl=float(int(ttl)),
    )


def _volumes(reader: _Reader, value: object, at: str, cluster_id: str) -> dict[str, Volume]:
    volumes: dict[str, Volume] = {}
    for uuid, spec in reader.mapping(value, at).items():
        key = f"{at}.{uuid}"
        uuid = str(uuid)
        if VOLUME_UUID_RE.fullmatch(uuid) is None:
            raise ConfigError(
                f"{reader.source}: {key}: a volume ID is <cluster>-nyw5e-<15 of [a-z0-9]>"
            )
        spec = reader.mapping(spec, key)
        reader.warn_unknown(spec, key, {"Driver", "DriverParameters", "Replication", "ReadOnly"})
        driver = reader.string(spec.get("Driver", ""), f"{key}.Driver")
        if driver not in VOLUME_DRIVERS:
            raise ConfigError(
                f"{reader.source}: {key}.Driver: {driver!r} is not one of {sorted(VOLUME_DRIVERS)}"
            )
        parameters = reader.mapping(spec.get("DriverParameters", {}), f"{key}.DriverParameters")
        reader.warn_unknown(parameters, f"{key}.DriverParameters", {"Root"})
        root = reader.string(parameters.get("Root", ""), f"{key}.DriverParameters.Root")
        if not root:
            raise ConfigError(f"{reader.source}: {key}.DriverParameters.Root: required")
        volumes[uuid] = Volume(
            driver=driver,
            root=root,
            replication=reader.positive_int(spec.get("Replication", 1), f"{key}.Replication"),
            read_only=reader.boolean(spec.get("ReadOnly", False), f"{key}.ReadOnly"),
        )
    if volumes and all(volume.read_only for volume in volumes.values()):
        log.warning("%s: %s: every volume is read-only; no block can be written", reader.source, at)
    return volumes


def _services(reader: _Reader, value: object, at: str) -> dict[str, str]:
    spec = reader.mapping(value, at)
    services = {"Controller": "controller_url", "Keepstore": "keepstore_url"}
    reader.warn_unknown(spec, at, set(services))
    urls: dict[str, str] = {}
    for name, attr in services.items():
        service = reader.mapping(spec.get(name, {}), f"{at}.{name}")
        reader.warn_unknown(service, f"{at}.{name}", {"ExternalURL", "InternalURLs"})
        url = reader.string(service.get("ExternalURL", ""), f"{at}.{name}.ExternalURL")
        if url and _EXTERNAL_URL_RE.fullmatch(url) is None:
            raise ConfigError(
                f"{reader.source}: {at}.{name}.ExternalURL: expected http(s)://host[:port][/]"
            )
        urls[attr] = url.rstrip("/")
    return urls


_EXTERNAL_URL_RE = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?/?|https?://\[[0-9a-fA-F:.]+\](:[0-9]{1,5})?/?"
)


def _tls(reader: _Reader, value: object, at: str) -> dict[str, str]:
    spec = reader.mapping(value, at)
    reader.warn_unknown(spec, at, {"Certificate", "Key"})
    paths = {}
    for key, attr in (("Certificate", "tls_certificate"), ("Key", "tls_key")):
        # Arvados writes these as file:// URLs; a bare path is accepted too.
        path = reader.string(spec.get(key, ""), f"{at}.{key}").removeprefix("file://")
        if path and not Path(path).is_file():
            raise ConfigError(f"{reader.source}: {at}.{key}: no such file: {path}")
        paths[attr] = path
    if bool(paths["tls_certificate"]) != bool(paths["tls_key"]):
        raise ConfigError(f"{reader.source}: {at}: Certificate and Key must be set together")
    return paths


def _remote_clusters(
    reader: _Reader, value: object, at: str, local_id: str
) -> dict[str, RemoteCluster]:
    remotes: dict[str, RemoteCluster] = {}
    for remote_id, spec in reader.mapping(value, f"{at}.RemoteClusters").items():
        key = f"{at}.RemoteClusters.{remote_id}"
        remote_id = str(remote_id)
        if remote_id == WILDCARD_REMOTE:
            # Arvados's own config files carry "*" (defaults for clusters found by DNS).
            # Only clusters listed by ID are ever contacted: accepted, and ignored.
            reader.mapping(spec, key)
            continue
        if not is_cluster_id(remote_id):
            raise ConfigError(
                f"{reader.source}: {key}: cluster ID must be 5 characters of [a-z0-9]"
            )
        spec = reader.mapping(spec, key)
        reader.warn_unknown(spec, key, {"Host", "Scheme", "Insecure", "Proxy", "ActivateUsers"})
        if remote_id == local_id:
            # Arvados lists the local cluster in RemoteClusters too; it is never contacted.
            continue
        host = reader.string(spec.get("Host", ""), f"{key}.Host")
        if not host:
            raise ConfigError(f"{reader.source}: {key}.Host: required")
        scheme = reader.string(spec.get("Scheme", "https"), f"{key}.Scheme")
        if scheme not in ("http", "https"):
            raise ConfigError(f"{reader.source}: {key}.Scheme: must be http or https")
        remotes[remote_id] = RemoteCluster(
            host=host,
            scheme=scheme,
            insecure=reader.boolean(spec.get("Insecure", False), f"{key}.Insecure"),
            proxy=reader.boolean(spec.get("Proxy", False), f"{key}.Proxy"),
            activate_users=reader.boolean(spec.get("ActivateUsers", False), f"{key}.ActivateUsers"),
        )
    return remotes


def _federation(reader: _Reader, value: object, at: str) -> FederationSettings:
    spec = reader.mapping(value, at)
    default = FederationSettings()
    durations = {
        "RemoteTimeout": "remote_timeout",
        "NegativeCacheTTL": "negative_cache_ttl",
        "StaleIfError": "stale_if_error",
        "PermissionCacheTTL": "permission_cache_ttl",
        "PurgePollInterval": "purge_poll_interval",
        "LocalTokenCacheTTL": "local_token_cache_ttl",
    }
    integers = {"TokenCacheSize": "token_cache_size", "MaxResponseBytes": "max_response_bytes"}
    rates = {
        "ColdValidationRate": "cold_validation_rate",
        "IssuerValidationRate": "issuer_validation_rate",
        "FanoutRate": "fanout_rate",
    }
    reader.warn_unknown(spec, at, set(durations) | set(integers) | set(rates) | {"TrustedProxies"})
    values: dict[str, Any] = {}
    for key, attr in rates.items():
        if key in spec:
            values[attr] = reader.rate(spec[key], f"{at}.{key}")
    if "TrustedProxies" in spec:
        values["trusted_proxies"] = reader.networks(spec["TrustedProxies"], f"{at}.TrustedProxies")
    for key, attr in durations.items():
        if key in spec:
            values[attr] = reader.duration(spec[key], f"{at}.{key}")
    for key, attr in integers.items():
        if key in spec:
            values[attr] = reader.positive_int(spec[key], f"{at}.{key}")
    if values.get("remote_timeout", default.remote_timeout) <= 0:
        raise ConfigError(f"{reader.source}: {at}.RemoteTimeout: must be greater than zero")
    return replace(default, **values)


class _Reader:
    """Typed access to the YAML tree; every error names the source file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key or '<top level>'}: {message}")

    def mapping(self, value: object, key: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def string(self, value: object, key: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise self._fail(key, f"expected a string, got {type(value).__name__}")
        return str(value)

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self._fail(key, f"expected true or false, got {value!r}")
        return value

    def duration(self, value: object, key: str) -> float:
        return self._convert(parse_duration, value, key)

    def positive_int(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self._fail(key, f"expected a positive integer, got {value!r}")
        return value

    def rate(self, value: object, key: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise self._fail(key, f"expected a non-negative number per second, got {value!r}")
        return float(value)

    def networks(self, value: object, key: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "expected a list of CIDRs, e.g. [10.0.0.0/8]")
        from .trust.throttle import parse_networks  # here: it imports Starlette

        try:
            return tuple(str(net) for net in parse_networks(value))
        except ValueError as exc:
            raise self._fail(key, str(exc)) from exc

    def _convert(self, convert: Callable[[object], Any], value: object, key: str) -> Any:
        try:
            return convert(value)
        except ValueError as exc:
            raise self._fail(key, str(exc)) from exc

    def warn_unknown(self, spec: Mapping[Any, Any], key: str, known: set[str]) -> None:
        for name in spec:
            if name not in known:
                where = f"{key}.{name}" if key else str(name)
                log.warning("%s: ignoring unknown config key %s", self.source, where)
