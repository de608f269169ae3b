"""JSON and text a client sent: the one place that decides what is acceptable.

``json.loads`` raises more than ``ValueError``: ~1,000 levels of ``[`` exhaust the
interpreter's recursion limit (``RecursionError``), and bytes that are not UTF-8 raise
``UnicodeDecodeError``. Both are the client's fault, so both become :class:`BadClientJson`,
a ``ValueError`` that call sites already catch. Nesting is capped well below the recursion
limit, because a document parsed in a shallow stack would otherwise fail later, in a
deeper one (``json.dumps`` in a cursor digest, the JSON column's serializer, a response).

Strings that Python holds but no store can: a lone surrogate (``"\\ud800"`` in JSON) cannot
be encoded as UTF-8, and PostgreSQL refuses NUL in text. Either would fail at the database
as a 500; :func:`check_text` and :func:`check_document` refuse them at the edge instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deeper than any Arvados document (properties are flat in practice), shallow enough that
# no later json.dumps or recursive walk of the document comes near the recursion limit.
MAX_DEPTH = 100
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class BadClientJson(ValueError):
    pass


def check_text(value: str) -> str:
    """``value`` unless it holds NUL or a lone surrogate (``ValueError``)."""
    if _UNSTORABLE.search(value):
        raise BadClientJson("text must not contain NUL characters or lone UTF-16 surrogates")
    return value


def check_document(document: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """``document`` unless it nests deeper than ``max_depth`` or holds unstorable text.

    Every string is checked, object keys included. Iterative, so depth alone cannot make
    the check itself recurse.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            check_text(value)
            continue
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, list | tuple):
            children = list(value)
        else:
            continue
        if depth > max_depth:
            raise BadClientJson(f"JSON must not nest deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
    return document


def loads_client_json(data: str | bytes) -> Any:
    """The JSON document in ``data``; :class:`BadClientJson` for anything a store refuses."""
    try:
        document = json.loads(data)
    except RecursionError:
        raise BadClientJson(f"JSON must not nest deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise BadClientJson("JSON must be UTF-8") from None
    except ValueError as exc:
        raise BadClientJson(f"not valid JSON: {exc}") from None
    return check_document(document)
