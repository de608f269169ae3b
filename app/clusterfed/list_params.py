"""The parameters of an Arvados list, declared once.

Every list endpoint reads :data:`LIST_PARAMETERS`; the federated router reads
:data:`ROUTING_PARAMETERS` (and never sends them on as they came), and rewrites
:data:`MERGED` for each cluster a merged list asks. The discovery document describes
them from here, so what a client may send, what the router reads and what an endpoint
parses cannot drift apart. Values arrive as Arvados clients send them: JSON-encoded
where they are not plain strings (``filters=[...]``, ``select=[...]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ListParameter:
    name: str
    type: str  # as the discovery document says it: array, integer, string, boolean
    default: str | None = None
    description: str = ""

    def discovery(self) -> dict[str, Any]:
        """The parameter as the discovery document describes it."""
        described: dict[str, Any] = {"type": self.type, "location": "query"}
        if self.default is not None:
            described["default"] = self.default
        if self.description:
            described["description"] = self.description
        return described


FILTERS = ListParameter("filters", "array")
ORDER = ListParameter("order", "array")
SELECT = ListParameter("select", "array", description="attributes to return")
LIMIT = ListParameter("limit", "integer", default="100")
OFFSET = ListParameter("offset", "integer", default="0")
COUNT = ListParameter("count", "string", description="exact (the default) or none")
CLUSTER_ID = ListParameter("cluster_id", "string", description="the cluster to send the request to")
FEDERATED = ListParameter(
    "federated",
    "boolean",
    default="false",
    description="merge this cluster's list with every Proxy remote's",
)
NEXT_PAGE = ListParameter(
    "next_page", "string", description="the cursor a merged list answered with: its next page"
)

# What every list endpoint reads.
LIST_PARAMETERS = (FILTERS, ORDER, SELECT, LIMIT, OFFSET, COUNT)
# What the federated router reads from a list; never sent on as it came.
ROUTING_PARAMETERS = (CLUSTER_ID, FEDERATED, NEXT_PAGE)
ROUTING_NAMES = frozenset(parameter.name for parameter in ROUTING_PARAMETERS)
# What a merged list rewrites for each cluster it asks (the rest is sent on as it came).
MERGED = frozenset(parameter.name for parameter in (FILTERS, ORDER, LIMIT, OFFSET))
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
