"""Collections and Keep: what a manifest must carry to be saved, and how it is answered.

- A create or update whose manifest names a block without a valid signature for the
  caller's credential is refused (403, naming the first such locator); admins are exempt,
  as in Arvados. With ``BlobSigning`` off a missing signature is accepted, but one that
  is present must still verify (Arvados's rule too). The empty block needs none.
- The stored manifest has no ``+A``; its portable data hash is taken of the manifest with
  every locator cut to ``<md5>+<size>``.
- Every answer that carries a ``manifest_text`` signs each locator for the caller's
  credential, with expiry ``min(now + BlobSigningTTL, trash_at)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request

from clusterfed.errors import Forbidden
from clusterfed.keep.locators import EMPTY_BLOCK_MD5
from clusterfed.keep.manifests import iter_locators, strip_signatures
from clusterfed.keep.signing import SignatureError

from .blocks import KeepService, presented_credential


def _keep(request: Request) -> KeepService | None:
    return getattr(request.app.state, "keep", None)


def check_signatures(request: Request, manifest_text: str, *, is_admin: bool) -> None:
    """Raises Forbidden naming the first locator the caller has not shown they may use."""
    keep = _keep(request)
    if is_admin or keep is None or not manifest_text:
        return
    signer = keep.signer
    if not signer.key:
        return  # nothing was ever signed here: there is nothing to check against
    credential = presented_credential(request) or ""
    for locator in iter_locators(manifest_text):
        if not locator.signature_hints:
            if not signer.enforced or (locator.md5 == EMPTY_BLOCK_MD5 and locator.size == 0):
                continue
        else:
            try:
                signer.verify(locator, credential)
                continue
            except SignatureError:
                pass
        raise Forbidden(f"block {locator} is not signed for this token (upload it here first)")


def stored_manifest(manifest_text: str) -> str:
    return strip_signatures(manifest_text)


def signed_manifest(
    request: Request, manifest_text: str, *, trash_at: datetime | None = None
) -> str:
    """``manifest_text`` signed for the caller's credential (unchanged without a key)."""
    keep = _keep(request)
    credential = presented_credential(request)
    if keep is None or not credential or not keep.signer.key or not manifest_text:
        return manifest_text
    not_after = trash_at.timestamp() if trash_at is not None else None
    expiry = keep.signer.expiry(not_after=not_after)
    return keep.signer.sign_manifest(manifest_text, credential, expiry=expiry)


def sign_answer(request: Request, item: dict[str, Any], *, unsigned: bool = False) -> None:
    """Signs ``item["manifest_text"]`` in place; ``unsigned`` also sets
    ``unsigned_manifest_text`` to the stored form."""
    stored = item.get("manifest_text")
    if not isinstance(stored, str):
        return
    if unsigned:
        item["unsigned_manifest_text"] = stored
    item["manifest_text"] = signed_manifest(request, stored, trash_at=item.get("trash_at"))
