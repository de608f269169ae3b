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

from .config import ClusterConfig, ConfigError, load_config
from .errors import FederationError
from .identity import Identity, RemoteUser, UserRecord, foreign_identity, get_identity
from .mount import mount
from .outbound.permissions import PermissionAnswer, RemotePermissions, RemotePermissionsDep
from .routing.router import FederatedRouter
from .service import Federation, LocalCredentials, LocalLogin, RemoteStatus
from .storage.database import Database
from .storage.migrate import upgrade_database
from .storage.store import SqlFederationStore
from .storage.users import ModelUserTable, UserTable
from .trust.middleware import FederationMiddleware
from .trust.mirroring import MirrorPolicy
from .trust.store import CachedToken, FederationStore, PurgeEvent
from .wire import ArvadosRequests

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
