"""A cluster's blob signer: its key, TTL and policy, read once from the config.

``BlobSigner.from_config(config)`` is what the block server, the collection answers and
the federation's block copying all sign and check with, so they cannot disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from clusterfed.config import ClusterConfig
from clusterfed.keep.locators import Locator
from clusterfed.keep.manifests import sign_manifest, unsigned_locators
from clusterfed.keep.signing import sign_locator, signing_key, verify_locator


@dataclass(frozen=True, slots=True)
class BlobSigner:
    key: bytes
    ttl_seconds: int
    # Collections.BlobSigning: reads need a signature, and collections need signed blocks.
    enforced: bool

    @classmethod
    def from_config(cls, config: ClusterConfig) -> BlobSigner:
        key = signing_key(config.collections.blob_signing_key, config.system_root_token)
        ttl = int(config.collections.blob_signing_ttl)
        # Without a key (neither BlobSigningKey nor SystemRootToken) nothing can be signed,
        # so nothing can be asked to be: blocks are then served to any valid token.
        return cls(key, ttl, config.collections.blob_signing and bool(key))

    def expiry(self, *, now: float | None = None, not_after: float | None = None) -> int:
        """``min(now + TTL, not_after)`` in unix seconds."""
        expiry = (time.time() if now is None else now) + self.ttl_seconds
        if not_after is not None:
            expiry = min(expiry, not_after)
        return int(expiry)

    def sign(self, locator: str | Locator, credential: str, *, expiry: int | None = None) -> str:
        """The locator signed for ``credential`` (unchanged without a key or credential)."""
        expiry = self.expiry() if expiry is None else expiry
        return sign_locator(locator, credential, self.key, self.ttl_seconds, expiry)

    def verify(self, locator: str | Locator, credential: str) -> None:
        """Raises SignatureExpired / SignatureInvalid / SignatureMissing (signing.py)."""
        verify_locator(locator, credential, self.key, self.ttl_seconds)

    def sign_manifest(
        self, manifest_text: str, credential: str, *, expiry: int | None = None
    ) -> str:
        if not self.key or not credential:
            return manifest_text
        expiry = self.expiry() if expiry is None else expiry
        return sign_manifest(manifest_text, credential, self.key, self.ttl_seconds, expiry)

    def unsigned_locators(self, manifest_text: str, credential: str) -> list[str]:
        return unsigned_locators(manifest_text, credential, self.key, self.ttl_seconds)
