"""Arvados list parameters: ``filters``, ``order``, ``limit``, ``offset``; one implementation.

``filters`` is a JSON array of ``[attribute, operator, operand]``; ``order`` is
``"attr [asc|desc]"``, comma-separated or a JSON list (a ``table.`` prefix, as the SDK
sends, is accepted). Anything malformed is a :class:`BadListParameter` (422), never a
database error: attributes are checked against the resource's own list, operands
against the column's type, before any SQL is built.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from clusterfed.errors import Unprocessable
from clusterfed.jsonbody import loads_client_json
from clusterfed.list_params import DEFAULT_LIMIT, MAX_LIMIT

# SQLite binds Python ints as 64-bit and overflows beyond; no list is anywhere near this.
MAX_OFFSET = 2**31 - 1
DEFAULT_ORDER = "modified_at desc"
COMPARISONS = {"<", "<=", ">", ">="}
OPERATORS = COMPARISONS | {"=", "!=", "like", "ilike", "in", "not in", "is_a"}
# Arvados kinds for is_a, by UUID type.
KIND_TYPES = {
    "arvados#user": "tpzed",
    "arvados#group": "j7d0g",
    "arvados#collection": "4zz18",
    "arvados#link": "o0j2j",
    "arvados#apiClientAuthorization": "gj3su",
}


class BadListParameter(Unprocessable):
    pass


@dataclass(frozen=True, slots=True)
class ListParams:
    filters: list[Any]
    order: list[str]
    limit: int
    offset: int


def parse_params(
    *, filters: str | None, order: str | None, limit: str | None, offset: str | None
) -> ListParams:
    return ListParams(
        filters=_json_list(filters, "filters") if filters else [],
        order=_order_terms(order),
        limit=_int(limit, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT),
        offset=_int(offset, "offset", 0, 0, MAX_OFFSET),
    )


def parse_select(text: str | None, known: Collection[str]) -> list[str] | None:
    """``select``: the attributes to return (None: all), a JSON array or comma-separated."""
    if not text:
        return None
    names = _json_list(text, "select") if text.lstrip().startswith("[") else text.split(",")
    names = [name.strip() if isinstance(name, str) else name for name in names]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadListParameter(f"cannot select {unknown[0]!r}; selectable: {', '.join(known)}")
    return names


def selected(item: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    """``item`` cut to the attributes ``select`` named (:func:`parse_select`), and its kind."""
    if names is None:
        return item
    return {"kind": item["kind"], **{name: item.get(name) for name in names}}


def wants_count(count: str | None) -> bool:
    """``count``: ``exact`` (or empty, the default) counts; ``none`` leaves it out."""
    if count in (None, "", "exact"):
        return True
    if count == "none":
        return False
    raise BadListParameter("count must be exact or none")


def _json_list(text: str, name: str) -> list[Any]:
    try:
        value = loads_client_json(text)
    except ValueError as exc:
        raise BadListParameter(f"{name}: {exc}") from None
    if not isinstance(value, list):
        raise BadListParameter(f"{name} must be a JSON array")
    return value


def _order_terms(order: str | None) -> list[str]:
    if not order:
        return [DEFAULT_ORDER]
    if order.lstrip().startswith("["):
        terms = _json_list(order, "order")
        if not all(isinstance(term, str) for term in terms):
            raise BadListParameter("order must be a list of strings")
        return terms
    return [term for term in order.split(",") if term.strip()]


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadListParameter(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadListParameter(f"{name} must be between {low} and {high}")
    return value


Attributes = Mapping[str, InstrumentedAttribute[Any]]


def where_clauses(filters: list[Any], attributes: Attributes) -> list[ColumnElement[bool]]:
    return [_clause(item, attributes) for item in filters]


def _clause(item: Any, attributes: Attributes) -> ColumnElement[bool]:
    if not (isinstance(item, list) and len(item) == 3):
        raise BadListParameter("each filter must be [attribute, operator, operand]")
    name, operator, operand = item
    if not isinstance(name, str) or name.split(".")[-1] not in attributes:
        raise BadListParameter(f"cannot filter on {name!r}; filterable: {', '.join(attributes)}")
    if not isinstance(operator, str) or operator.lower() not in OPERATORS:
        raise BadListParameter(f"unknown filter operator {operator!r}")
    column = attributes[name.split(".")[-1]]
    operator = operator.lower()
    if operator == "is_a":
        kinds = operand if isinstance(operand, list) else [operand]
        if not kinds or not all(kind in KIND_TYPES for kind in kinds):
            raise BadListParameter(f"is_a needs one or more of {', '.join(KIND_TYPES)}")
        return or_(*(column.like(f"_____-{KIND_TYPES[kind]}-%") for kind in kinds))
    if operator in ("in", "not in"):
        if not isinstance(operand, list):
            raise BadListParameter(f"{operator!r} needs a list operand")
        values = [_operand(column, value, name) for value in operand]
        if not values:
            # IN () is not valid SQL everywhere: nothing is in an empty list.
            return false() if operator == "in" else not_(false())
        return column.in_(values) if operator == "in" else column.not_in(values)
    if operand is None and operator in ("=", "!="):
        return column.is_(None) if operator == "=" else column.is_not(None)
    value = _operand(column, operand, name)
    if operator in ("like", "ilike"):
        if not isinstance(value, str):
            raise BadListParameter(f"{operator!r} needs a string operand")
        return column.like(value) if operator == "like" else column.ilike(value)
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[operator](value)


def _operand(column: InstrumentedAttribute[Any], value: Any, name: str) -> Any:
    # UTCDateTime is a TypeDecorator: the Python type is its implementation's.
    python_type = getattr(column.type, "impl", column.type).python_type
    if python_type is datetime:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if parsed.tzinfo is not None:
                    return _utc(parsed, name)
        raise BadListParameter(f"{name} needs an ISO 8601 timestamp with a time zone")
    if python_type is str and isinstance(value, str):
        return value  # loads_client_json checked every string of the filters
    if python_type is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadListParameter(f"{name} cannot be compared with {type(value).__name__}")


def _utc(moment: datetime, name: str) -> datetime:
    # 9999-12-31T23:00-14:00 is a valid ISO 8601 string but past datetime.max in UTC; the
    # column would fail converting it. Converted here, it is the client's 422.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadListParameter(f"{name}: timestamp is out of range") from None


def order_by(
    terms: list[str], attributes: Attributes, tiebreak: InstrumentedAttribute[Any]
) -> list[ColumnElement[Any]]:
    clauses = []
    for term in terms:
        parts = term.split()
        if not 1 <= len(parts) <= 2:
            raise BadListParameter(f"cannot order by {term!r}")
        name = parts[0].split(".")[-1]
        direction = parts[1].lower() if len(parts) == 2 else "asc"
        if name not in attributes or direction not in ("asc", "desc"):
            raise BadListParameter(f"cannot order by {term!r}")
        column = attributes[name]
        clauses.append(column.desc() if direction == "desc" else column.asc())
    # A unique tiebreak keeps pages consistent when the ordered values repeat.
    clauses.append(tiebreak.asc())
    return clauses


async def run_list(
    session: AsyncSession,
    query: Select[Any],
    params: ListParams,
    attributes: Attributes,
    tiebreak: InstrumentedAttribute[Any],
) -> tuple[list[Any], int]:
    """The page of rows and ``items_available`` for ``query`` under ``params``."""
    query = query.where(*where_clauses(params.filters, attributes))
    ordering = order_by(params.order, attributes, tiebreak)
    available = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(*ordering).limit(params.limit).offset(params.offset)
    )
    return list(rows), int(available or 0)
