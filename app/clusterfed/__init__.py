"""clusterfed: federation middleware for cluster API servers (the Arvados protocol).

Mount it into a FastAPI or Starlette host in one call (docs/mounting.md):

    from clusterfed import ModelUserTable, load_config, mount

    federation = mount(app, load_config("cluster.yml"), users=ModelUserTable(User))

The host keeps its users table; clusterfed owns its own tables (token cache, purge
log), their models and their Alembic chain (``clusterfed db upgrade``). The caller's
identity for an accepted foreign token is :func:`get_identity` / the
:func:`foreign_identity` dependency. Nothing here imports the example server in
``clusterfed.server``.
"""

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ClusterConfig, ConfigError, load_config
    from .dependencies import foreign_identity
    from .errors import FederationError
    from .identity import Identity, RemoteUser, UserRecord, get_identity
    from .mount import mount
    from .outbound.permissions import PermissionAnswer, RemotePermissions, RemotePermissionsDep
    from .outbound.status import RemoteStatus
    from .routing.router import FederatedRouter
    from .service import Federation, LocalCredentials, LocalLogin
    from .storage.database import Database
    from .storage.migrate import upgrade_database
    from .storage.store import SqlFederationStore
    from .storage.users import ModelUserTable, UserTable
    from .trust.middleware import FederationMiddleware
    from .trust.mirroring import MirrorPolicy
    from .trust.store import CachedToken, FederationStore, PurgeEvent
    from .wire import ArvadosRequests

# Importing the package must stay cheap: `clusterfed --help` imports it, and the public
# names below pull in FastAPI and SQLAlchemy. Each is imported on first use.
_PUBLIC: dict[str, str] = {
    "ArvadosRequests": ".wire",
    "CachedToken": ".trust.store",
    "ClusterConfig": ".config",
    "ConfigError": ".config",
    "Database": ".storage.database",
    "FederatedRouter": ".routing.router",
    "Federation": ".service",
    "FederationError": ".errors",
    "FederationMiddleware": ".trust.middleware",
    "FederationStore": ".trust.store",
    "Identity": ".identity",
    "LocalCredentials": ".service",
    "LocalLogin": ".service",
    "MirrorPolicy": ".trust.mirroring",
    "ModelUserTable": ".storage.users",
    "PermissionAnswer": ".outbound.permissions",
    "PurgeEvent": ".trust.store",
    "RemotePermissions": ".outbound.permissions",
    "RemotePermissionsDep": ".outbound.permissions",
    "RemoteStatus": ".outbound.status",
    "RemoteUser": ".identity",
    "SqlFederationStore": ".storage.store",
    "UserRecord": ".identity",
    "UserTable": ".storage.users",
    "foreign_identity": ".dependencies",
    "get_identity": ".identity",
    "load_config": ".config",
    "mount": ".mount",
    "upgrade_database": ".storage.migrate",
}


__all__ = [
    "ArvadosRequests",
    "CachedToken",
    "ClusterConfig",
    "ConfigError",
    "Database",
    "FederatedRouter",
    "Federation",
    "FederationError",
    "FederationMiddleware",
    "FederationStore",
    "Identity",
    "LocalCredentials",
    "LocalLogin",
    "MirrorPolicy",
    "ModelUserTable",
    "PermissionAnswer",
    "PurgeEvent",
    "RemotePermissions",
    "RemotePermissionsDep",
    "RemoteStatus",
    "RemoteUser",
    "SqlFederationStore",
    "UserRecord",
    "UserTable",
    "foreign_identity",
    "get_identity",
    "load_config",
    "mount",
    "upgrade_database",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule clusterfed.mount makes the import system bind it here as
        # `mount`, over the function of that name: the function stays.
        if name in _PUBLIC and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
