"""Request parameters as Arvados software sends them: the one place that reads them.

Arvados clients put parameters in three places, and every endpoint and the router must
read them the same way:

- the query string, each value JSON-encoded where it is not a plain string
  (``filters=[...]``, ``select=[...]``, ``limit=100``, ``cluster_id=``);
- an ``application/x-www-form-urlencoded`` body with the same encoding: an Arvados
  controller sends every create and update this way (``sdk/go/arvados/client.go``
  ``RequestAndDecodeContext``: ``cluster_id=&collection={"name":...}``);
- a JSON body, the object's attributes under the resource's singular name, possibly
  beside other parameters at the top level (``{"collection": {...}, "cluster_id": ""}``).

A ``POST`` with ``X-Http-Method-Override: GET`` (or ``_method=GET``) is a GET whose
parameters are in the body: controllers send GETs with 1000 bytes of parameters this
way, googleapiclient (under the Python SDK) any GET whose URL passes 2048 characters.

:func:`canonical_request` turns all of these into one shape, the one the endpoints and
the router read: parameters in the query string, attributes as a JSON body. It is pure;
``wire.ArvadosRequests`` applies it to each request. The other helpers answer the
questions the router asks of any request: its query, and whether it must be served here
(``Via: ... arvados-controller``, ``forwarded_for``, ``bypass_federation``).

A request's parameters are parsed once, by ``wire.ArvadosRequests``, with the caps below
checked while they are read; the parse is left in the scope (:class:`RequestParams`
under :data:`PARAMS_KEY`) and :func:`query_items` hands it to every later reader, so a
hostile query or body is never parsed twice, and never parsed at all past the caps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import Scope

from .errors import FederationError
from .jsonbody import loads_client_json

API_PREFIX = "/arvados/v1/"
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
OVERRIDE_HEADER = b"x-http-method-override"
OVERRIDE_PARAM = "_method"
OVERRIDABLE = frozenset({"GET", "HEAD"})
# An Arvados client sends the parameters of any method but GET/HEAD as a form body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What Arvados controllers send with every request they forward (lib/controller/
# federation/conn.go), and what clusterfed used to send alone: either means "a peer
# forwarded this; serve it here or nowhere".
VIA_HEADER = b"via"
CONTROLLER_VIA = "arvados-controller"
LEGACY_HOP_HEADER = b"x-clusterfed-via"
# Parameters whose empty value means "not given": Arvados's ListOptions and CreateOptions
# always carry cluster_id, and count is "" unless set.
EMPTY_MEANS_ABSENT = frozenset({"cluster_id", "count"})
TRUE_WORDS = frozenset({"true", "1", "yes", "t"})
# What one request may make this server parse before anything knows who sent it: the
# query's and the body's fields together, and the bytes of a form or JSON body. An
# Arvados client sends a handful of fields (filters, order, select, limit...), and a
# GET sent as a POST carries about 1000 bytes of them.
MAX_FIELDS = 1000
MAX_BODY_BYTES = 1024 * 1024
# Where the one parse of a request's parameters lives in its ASGI scope.
PARAMS_KEY = "clusterfed.params"

QueryItems = list[tuple[str, str]]
# A body's JSON document that nobody parsed; one that did not parse as JSON.
UNREAD: Any = type("Unread", (), {"__repr__": lambda self: "UNREAD"})()
NOT_JSON: Any = type("NotJson", (), {"__repr__": lambda self: "NOT_JSON"})()


class BadRequest(FederationError):
    status_code = 400


class TooLarge(FederationError):
    """413: more fields or bytes than a request may make this server parse."""

    status_code = 413


@dataclass(frozen=True, slots=True)
class RequestParams:
    """A request's parameters as parsed once, with the caps checked while reading them.

    ``query`` is every parameter (the query's, a form body's, a JSON body's top-level
    ones) in canonical shape; ``query_string`` is the scope's query string it is the parse
    of (a scope whose query string was changed since is parsed anew); ``body`` is the
    body as the app now sees it, or None when it was left unread.
    """

    query: QueryItems
    query_string: bytes
    body: bytes | None = None
    document: Any = UNREAD  # ``body`` parsed as JSON, when it was (NOT_JSON: it is not)


def field_count(data: bytes) -> int:
    """An upper bound on the fields of a query string or form body, found without parsing."""
    return data.count(b"&") + 1 if data else 0


def too_many_fields(limit: int) -> TooLarge:
    return TooLarge(f"a request may carry at most {limit} parameters")


def body_too_large(limit: int) -> TooLarge:
    return TooLarge(f"request body is larger than {limit} bytes")


def parse_query(raw: bytes, *, max_fields: int = MAX_FIELDS) -> QueryItems:
    """The fields of a query string; :class:`TooLarge` past ``max_fields``, before parsing."""
    if field_count(raw) > max_fields:
        raise too_many_fields(max_fields)
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True)


@dataclass(frozen=True, slots=True)
class Canonical:
    """A request in the one shape the endpoints read."""

    method: str
    query: QueryItems
    body: bytes  # JSON (or empty), unless the request's body was left as it came
    content_type: str | None  # None: the body and its headers are the original ones
    document: Any = field(default=UNREAD, compare=False)  # ``body`` parsed, when it was


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def query_items(scope: Scope) -> QueryItems:
    """The request's parameters: the one parse ``wire.ArvadosRequests`` left in the scope,
    else (a scope it never saw, or one whose query string was replaced) the query string's,
    under the same cap."""
    raw = scope["query_string"]
    parsed = scope.get(PARAMS_KEY)
    if parsed is not None and (parsed.query_string is raw or parsed.query_string == raw):
        return parsed.query
    return parse_query(raw)


def with_params(
    scope: Scope, query: QueryItems, query_string: bytes, body: bytes | None, document: Any
) -> Scope:
    """``scope`` carrying ``query_string`` and its parse (``query``), and the body."""
    return {
        **scope,
        "query_string": query_string,
        PARAMS_KEY: RequestParams(query, query_string, body, document),
    }


def body_document(scope: Scope, body: bytes) -> Any:
    """``body`` (the request's) parsed as JSON: the one parse when there was one, else
    now; NOT_JSON when it is not JSON. The document is shared: copy it to change it."""
    parsed = scope.get(PARAMS_KEY)
    if parsed is not None and parsed.body is body and parsed.document is not UNREAD:
        return parsed.document
    return load_document(body)


def is_true(value: str | None) -> bool:
    """An Arvados boolean parameter: ``true`` (or JSON ``true``) and the like; else false."""
    return value is not None and value.strip().lower() in TRUE_WORDS


def forwarded_by_peer(scope: Scope) -> bool:
    via = header(scope, VIA_HEADER)
    return (via is not None and CONTROLLER_VIA in via) or (
        header(scope, LEGACY_HOP_HEADER) is not None
    )


def serve_locally(scope: Scope, query: QueryItems | None = None) -> bool:
    """Must this request be answered by this cluster alone, never forwarded or fanned out?

    Yes when a peer forwarded it (``Via``), or when it says ``forwarded_for`` (Arvados's
    mark on the calls a fan-out makes) or ``bypass_federation``.
    """
    if forwarded_by_peer(scope):
        return True
    params = dict(query if query is not None else query_items(scope))
    return bool(params.get("forwarded_for")) or is_true(params.get("bypass_federation"))


def resource_key(path: str) -> str | None:
    """The key Arvados wraps a resource's attributes in: ``collection`` for collections."""
    if not path.startswith(API_PREFIX):
        return None
    plural = path[len(API_PREFIX) :].split("/", 1)[0]
    return plural.removesuffix("s") or None


def decode_form(body: bytes) -> QueryItems:
    """The fields of a form body; :class:`BadRequest` for one that is not a form."""
    try:
        text = body.decode("ascii")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "it is not ASCII" if isinstance(exc, UnicodeDecodeError) else exc
        raise BadRequest(f"malformed form body: {reason}") from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _param_text(value: Any) -> str | None:
    """A JSON body's top-level parameter in the query's encoding (None: leave it out)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _attributes(key: str, text: str) -> Any:
    try:
        value = loads_client_json(text)
    except ValueError as exc:
        raise BadRequest(f"{key}: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be a JSON object")
    return value


def _clean(query: QueryItems) -> QueryItems:
    return [
        (key, value)
        for key, value in query
        if key != OVERRIDE_PARAM and not (key in EMPTY_MEANS_ABSENT and value == "")
    ]


def override_of(method: str, override: str | None, query: QueryItems) -> str | None:
    """The method a POST asks to be treated as, if any (GET or HEAD only: else 400)."""
    if method != "POST":
        return None
    asked = override or dict(query).get(OVERRIDE_PARAM)
    if not asked:
        return None
    if asked.strip().upper() not in OVERRIDABLE:
        raise BadRequest(
            f"method override {asked[:20]!r} is not allowed: only GET and HEAD may be sent "
            "as POST with X-Http-Method-Override"
        )
    return asked.strip().upper()


def needs_body(scope: Scope) -> bool:
    """Whether :func:`canonical_request` must see this request's body."""
    return scope["method"] in BODY_METHODS and scope["path"].startswith(API_PREFIX)


def canonical_request(
    *,
    method: str,
    path: str,
    query: QueryItems,
    content_type: str | None,
    override: str | None,
    body: bytes,
    document: Any = UNREAD,
) -> Canonical | None:
    """The request in canonical shape, or None when it already is in it.

    ``document``: ``body`` already parsed as JSON (``load_document``), if it was.

    Raises :class:`BadRequest` for a form body that is not one, an override to anything
    but GET/HEAD, or a JSON-encoded attribute object that does not parse.
    """
    media = _media_type(content_type)
    form = decode_form(body) if media == FORM_TYPE and body else []
    target = override_of(method, override, query + form)
    if target is not None:
        # A GET in a POST: its parameters are the query's and the form's, and it has no body.
        return Canonical(target, _clean(query + form), b"", JSON_TYPE)
    cleaned = _clean(query)
    key = resource_key(path)
    if media == FORM_TYPE:
        # The attributes are one JSON-encoded field named after the resource.
        wrapped = [value for name, value in form if name == key]
        others = [(name, value) for name, value in form if name != key]
        if not wrapped:
            return Canonical(method, cleaned + _clean(others), b"", JSON_TYPE)
        inner = {key: _attributes(key, wrapped[-1])}
        return Canonical(
            method, cleaned + _clean(others), json.dumps(inner).encode(), JSON_TYPE, inner
        )
    if key is not None and body and media in ("", JSON_TYPE):
        if document is UNREAD:
            document = load_document(body)
        moved = _top_level_params(document, key)
        if moved is not None:
            inner, params = moved
            attributes = json.dumps(inner).encode()
            return Canonical(method, cleaned + _clean(params), attributes, JSON_TYPE, inner)
    if cleaned != query:
        return Canonical(method, cleaned, body, None, document)
    return None


def load_document(body: bytes) -> Any:
    """``body`` parsed as a client's JSON, or NOT_JSON."""
    try:
        return loads_client_json(body)
    except ValueError:
        return NOT_JSON


def _top_level_params(document: Any, key: str) -> tuple[dict[str, Any], QueryItems] | None:
    """A JSON body's parameters beside the wrapped attributes, moved out of the body.

    None when there are none (the body is then left exactly as it came): a bare body,
    one holding only ``{key: {...}}``, or one that is not JSON, which the endpoint refuses
    in its own words.
    """
    if not isinstance(document, dict) or not isinstance(document.get(key), dict):
        return None
    if len(document) == 1:
        return None
    params = [
        (name, text)
        for name, value in document.items()
        if name != key and (text := _param_text(value)) is not None
    ]
    return {key: document[key]}, params


def encode_query(query: QueryItems) -> bytes:
    return urlencode(query).encode("latin-1")
