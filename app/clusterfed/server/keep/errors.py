"""Every error the block server answers, with its status, in one table (as keepstore's).

Statuses follow Arvados's keepstore: a client that knows keepstore reads them the same.
"""

from __future__ import annotations

from clusterfed.errors import FederationError


class KeepError(FederationError):
    status_code = 500


def _error(name: str, status: int, message: str) -> type[KeepError]:
    def __init__(self: KeepError, detail: str = message) -> None:
        KeepError.__init__(self, detail)

    return type(name, (KeepError,), {"status_code": status, "__init__": __init__})


NoCredential = _error(
    "NoCredential", 401, "this request needs a token (Authorization: Bearer <token>)"
)
ExpiredSignature = _error("ExpiredSignature", 401, "the locator's signature has expired")
InvalidSignature = _error(
    "InvalidSignature", 400, "the locator's signature is not valid for this token"
)
InvalidLocator = _error("InvalidLocator", 400, "not a block locator")
LengthRequired = _error("LengthRequired", 411, "a block upload needs a Content-Length")
SizeMismatch = _error("SizeMismatch", 400, "the body's length is not its Content-Length")
TooLarge = _error("TooLarge", 413, "a block is at most 67108864 bytes")
ChecksumMismatch = _error("ChecksumMismatch", 422, "the body's md5 is not the one in the URL")
BlockNotFound = _error("BlockNotFound", 404, "no such block")
NoWritableVolume = _error("NoWritableVolume", 503, "no volume of this cluster accepts writes")
CorruptBlock = _error("CorruptBlock", 502, "the stored block fails its md5 check")
