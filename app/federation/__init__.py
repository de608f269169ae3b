"""clusterfed's federation core: mount it into any Starlette or FastAPI server.

    from app.federation import FederatedRouter, Federation, FederationMiddleware, load_config

    federation = Federation(load_config(path), MyStore())
    app.add_middleware(FederatedRouter, federation=federation)  # optional: SPEC 3.6
    app.add_middleware(FederationMiddleware, federation=federation)
    app.add_middleware(ArvadosRequests)  # requests as Arvados software sends them

The host supplies storage (:class:`FederationStore`) and reads the caller's identity
with :func:`get_identity` / the :func:`foreign_identity` dependency. Nothing here
imports the example server in ``app.cluster``.
"""

from .config import ClusterConfig, ConfigError, load_config
from .errors import FederationError
from .identity import Identity, RemoteUser, UserRecord, foreign_identity, get_identity
from .middleware import FederationMiddleware
from .mirroring import MirrorPolicy
from .permissions import PermissionAnswer, RemotePermissions, RemotePermissionsDep
from .routing import FederatedRouter
from .service import Federation, RemoteStatus
from .store import CachedToken, FederationStore, PurgeEvent
from .wire import ArvadosRequests

__all__ = [
    "ArvadosRequests",
    "CachedToken",
    "ClusterConfig",
    "ConfigError",
    "FederatedRouter",
    "Federation",
    "FederationError",
    "FederationMiddleware",
    "FederationStore",
    "Identity",
    "MirrorPolicy",
    "PermissionAnswer",
    "PurgeEvent",
    "RemotePermissions",
    "RemotePermissionsDep",
    "RemoteStatus",
    "RemoteUser",
    "UserRecord",
    "foreign_identity",
    "get_identity",
    "load_config",
]
