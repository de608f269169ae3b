"""The Arvados discovery document, which Arvados SDKs build their client from.

``arvados.api()`` fetches ``GET /discovery/v1/apis/arvados/v1/rest`` and hands it to
googleapiclient, which turns every ``resources.<name>.methods.<m>`` entry into a Python
method. A method described here but not served would be a promise the server breaks,
so the document is filtered against the app's own routes: a resource row below shows
up only once a router serving it is registered.

Parameters that ``FederatedRouter`` handles never reach a FastAPI route, so the
OpenAPI schema cannot vouch for them. They are described from ``ROUTER_PARAMETERS`` for
the resources the router serves, and only when the app mounts it (``routed_resources``).

The route needs no credential: Arvados serves this document publicly, and clients fetch
it before they use their token for anything.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from clusterfed.config import ClusterConfig
from clusterfed.exported import default_replication, remote_hosts
from clusterfed.list_params import CLUSTER_ID, LIST_PARAMETERS, ROUTING_PARAMETERS, SELECT
from clusterfed.routing.router import ROUTED_RESOURCES, FederatedRouter
from clusterfed.server.deps import ConfigDep

DISCOVERY_PATH = "/discovery/v1/apis/arvados/v1/rest"
SERVICE_PATH = "arvados/v1/"
REVISION = "20250101"

_PATH_PARAM = re.compile(r"\{[^}]*\}")

router = APIRouter(tags=["discovery"])


@dataclass(frozen=True, slots=True)
class Resource:
    """One Arvados resource: its collection name (``collections``), schema name, the
    attributes it has beyond the common ones, and the methods it may offer."""

    name: str
    schema: str
    kind: str
    fields: tuple[tuple[str, str], ...]
    methods: tuple[str, ...] = ("get", "list", "create", "update", "delete")

    @property
    def singular(self) -> str:
        # The key a create/update body wraps its object in: {"collection": {...}}.
        return self.name.removesuffix("s")


_COMMON = (
    ("uuid", "string"),
    ("owner_uuid", "string"),
    ("created_at", "datetime"),
    ("modified_at", "datetime"),
)
_USER_FIELDS = (
    ("email", "string"),
    ("username", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("full_name", "string"),
    ("is_admin", "boolean"),
    ("is_active", "boolean"),
    ("is_invited", "boolean"),
    ("prefs", "Hash"),
)

RESOURCES = (
    Resource(
        "users",
        "User",
        "arvados#user",
        _USER_FIELDS,
        ("current", "get", "list", "activate", "setup", "unsetup"),
    ),
    Resource(
        "api_client_authorizations",
        "ApiClientAuthorization",
        "arvados#apiClientAuthorization",
        (("expires_at", "datetime"), ("scopes", "array"), ("api_token", "string")),
        ("current", "create", "list", "delete"),
    ),
    Resource(
        "groups",
        "Group",
        "arvados#group",
        (
            ("name", "string"),
            ("group_class", "string"),
            ("description", "text"),
            ("properties", "Hash"),
        ),
    ),
    Resource(
        "collections",
        "Collection",
        "arvados#collection",
        (
            ("name", "string"),
            ("description", "text"),
            ("manifest_text", "text"),
            ("portable_data_hash", "string"),
            ("properties", "Hash"),
        ),
    ),
    Resource(
        "keep_services",
        "KeepService",
        "arvados#keepService",
        (
            ("service_host", "string"),
            ("service_port", "integer"),
            ("service_ssl_flag", "boolean"),
            ("service_type", "string"),
            ("read_only", "boolean"),
        ),
        ("accessible",),
    ),
    Resource(
        "links",
        "Link",
        "arvados#link",
        (
            ("link_class", "string"),
            ("name", "string"),
            ("tail_uuid", "string"),
            ("head_uuid", "string"),
            ("properties", "Hash"),
        ),
    ),
)

_UUID = {"type": "string", "required": True, "location": "path", "description": "object UUID"}
# googleapiclient JSON-encodes "array" and "object" parameters (the SDK patches _cast),
# which is the form the list endpoints parse.
_SELECT = SELECT.discovery()
_LIST_PARAMETERS = {parameter.name: parameter.discovery() for parameter in LIST_PARAMETERS}
_CREATE_PARAMETERS = {
    "ensure_unique_name": {
        "type": "boolean",
        "location": "query",
        "default": "false",
        "description": 'if the name is taken in the owner, append " (<UTC timestamp>)" to it',
    },
}
_CLUSTER_ID = CLUSTER_ID.discovery()
# What FederatedRouter reads from the query of a list and of a create, per method name.
ROUTER_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "list": {parameter.name: parameter.discovery() for parameter in ROUTING_PARAMETERS},
    "create": {"cluster_id": _CLUSTER_ID},
}


_CONFIG_GET = {
    "id": "arvados.configs.get",
    "path": "config",
    "httpMethod": "GET",
    "parameters": {},
    "parameterOrder": [],
    "response": {},
}


def _method(resource: Resource, name: str) -> tuple[str, str, dict[str, Any]]:
    """(HTTP method, path under servicePath, the rest of the method description)."""
    obj = {"$ref": resource.schema}
    body = {"required": True, "properties": {resource.singular: obj}}
    table: dict[str, tuple[str, str, dict[str, Any]]] = {
        "current": ("GET", f"{resource.name}/current", {"response": obj}),
        # The block servers a client may use (keep_services only).
        "accessible": (
            "GET",
            f"{resource.name}/accessible",
            {"response": {"$ref": f"{resource.schema}List"}},
        ),
        "get": (
            "GET",
            f"{resource.name}/{{uuid}}",
            {"parameters": {"uuid": _UUID, "select": _SELECT}, "response": obj},
        ),
        "list": (
            "GET",
            resource.name,
            {"parameters": _LIST_PARAMETERS, "response": {"$ref": f"{resource.schema}List"}},
        ),
        "create": (
            "POST",
            resource.name,
            {"parameters": _CREATE_PARAMETERS, "request": body, "response": obj},
        ),
        "update": (
            "PUT",
            f"{resource.name}/{{uuid}}",
            {"parameters": {"uuid": _UUID}, "request": body, "response": obj},
        ),
        "delete": (
            "DELETE",
            f"{resource.name}/{{uuid}}",
            {"parameters": {"uuid": _UUID}, "response": obj},
        ),
        # The users admin actions (a satellite forwards them to its login cluster).
        "activate": (
            "POST",
            f"{resource.name}/{{uuid}}/activate",
            {"parameters": {"uuid": _UUID}, "response": obj},
        ),
        "unsetup": (
            "POST",
            f"{resource.name}/{{uuid}}/unsetup",
            {"parameters": {"uuid": _UUID}, "response": obj},
        ),
        "setup": (
            "POST",
            f"{resource.name}/setup",
            {
                "parameters": {"uuid": {"type": "string", "location": "query"}},
                "request": {"required": False, "properties": {resource.singular: obj}},
                "response": obj,
            },
        ),
    }
    return table[name]


def _served_routes(openapi: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(HTTP method, path with parameter names blanked) -> the query parameters it reads.

    Read from the app's OpenAPI schema, FastAPI's public account of its routes and of
    every parameter their dependencies read.
    """
    served: dict[tuple[str, str], set[str]] = {}
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            reads = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
            served[(method.upper(), _PATH_PARAM.sub("{}", path))] = reads
    return served


def routed_resources(app: FastAPI) -> frozenset[str]:
    """The resources whose requests a ``FederatedRouter`` mounted on ``app`` handles."""
    routed: set[str] = set()
    for middleware in app.user_middleware:
        if isinstance(middleware.cls, type) and issubclass(middleware.cls, FederatedRouter):
            routed |= set(middleware.kwargs.get("resources", ROUTED_RESOURCES))
    return frozenset(routed)


UUID_PREFIXES = {
    "users": "tpzed",
    "api_client_authorizations": "gj3su",
    "groups": "j7d0g",
    "collections": "4zz18",
    "links": "o0j2j",
    "keep_services": "bi6l4",
}


def _property(type_: str) -> dict[str, Any]:
    # googleapiclient renders every schema into method docstrings while building the
    # client, and raises KeyError on an "array" without "items". Our arrays hold strings.
    if type_ == "array":
        return {"type": "array", "items": {"type": "string"}}
    return {"type": type_}


def _schemas(resource: Resource, *, routed: bool) -> dict[str, Any]:
    properties = {"kind": {"type": "string", "default": resource.kind}} | {
        name: _property(type_) for name, type_ in (*_COMMON, *resource.fields)
    }
    list_kind = f"{resource.kind}List"
    schema: dict[str, Any] = {"id": resource.schema, "type": "object", "properties": properties}
    if resource.name in UUID_PREFIXES:
        # arv-copy tells what a UUID names by this (arv_copy.uuid_type), as in Arvados's.
        schema["uuidPrefix"] = UUID_PREFIXES[resource.name]
    return {
        resource.schema: schema,
        f"{resource.schema}List": {
            "id": f"{resource.schema}List",
            "type": "object",
            "properties": {
                "kind": {"type": "string", "default": list_kind},
                "items": {"type": "array", "items": {"$ref": resource.schema}},
                "items_available": {"type": "integer"},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
                # A merged list's cursor; null on its last page.
                **({"next_page": {"type": "string"}} if routed else {}),
            },
        },
    }


def discovery_document(
    *,
    cluster_id: str,
    root_url: str,
    remote_hosts: dict[str, str] | None = None,
    openapi: dict[str, Any],
    routed: Collection[str] = frozenset(),
    config: ClusterConfig | None = None,
) -> dict[str, Any]:
    """``routed``: the resources a mounted ``FederatedRouter`` serves (``routed_resources``)."""
    served = _served_routes(openapi)
    resources: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for resource in RESOURCES:
        methods = {}
        for name in resource.methods:
            http_method, path, rest = _method(resource, name)
            reads = served.get((http_method, _PATH_PARAM.sub("{}", f"/{SERVICE_PATH}{path}")))
            if reads is None:
                continue
            # Only the query parameters the route reads: googleapiclient refuses any other
            # keyword client-side, which beats the server silently ignoring it.
            parameters = {
                key: spec
                for key, spec in rest.pop("parameters", {}).items()
                if spec["location"] == "path" or key in reads
            }
            if resource.name in routed:
                parameters |= ROUTER_PARAMETERS.get(name, {})
            methods[name] = {
                "id": f"arvados.{resource.name}.{name}",
                "path": path,
                "httpMethod": http_method,
                "parameters": parameters,
                **rest,
            }
            if "{uuid}" in path:
                methods[name]["parameterOrder"] = ["uuid"]
        if methods:
            resources[resource.name] = {"methods": methods}
            schemas |= _schemas(resource, routed=resource.name in routed)
    if ("GET", f"/{SERVICE_PATH}config") in served:
        # The exported config, as the SDK reads it (arvados.util.get_config_once, which
        # arv-copy calls): without this entry the SDK takes the config to be empty.
        resources["configs"] = {"methods": {"get": _CONFIG_GET}}
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "arvados:v1",
        "name": "arvados",
        "version": "v1",
        "revision": REVISION,
        "title": "Arvados API (clusterfed)",
        "protocol": "rest",
        # The scheme and host the client used, so a client behind TLS or a proxy (uvicorn
        # honours X-Forwarded-Proto from trusted proxies) is sent back the same way.
        "rootUrl": root_url,
        "servicePath": SERVICE_PATH,
        "basePath": f"/{SERVICE_PATH}",
        # No batchPath: this server has no batch endpoint, and googleapiclient only
        # needs the key for new_batch_http_request().
        "uuidPrefix": cluster_id,
        # Where each remote cluster is, as Arvados's document says.
        "remoteHosts": remote_hosts or {},
        # Copies arv-put and Collection.save_new ask for: one a volume, never more than
        # this cluster can make.
        "defaultCollectionReplication": default_replication(config) if config else 1,
        "blobSignatureTtl": int(config.collections.blob_signing_ttl) if config else 1_209_600,
        "parameters": {},
        "resources": resources,
        "schemas": schemas,
    }


@router.get(DISCOVERY_PATH)
async def discovery(request: Request, config: ConfigDep) -> dict[str, Any]:
    return discovery_document(
        cluster_id=config.cluster_id,
        root_url=str(request.base_url),
        remote_hosts=remote_hosts(config),
        openapi=request.app.openapi(),
        routed=routed_resources(request.app),
        config=config,
    )
