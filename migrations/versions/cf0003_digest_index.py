"""an index on the L2 digest

Revision ID: cf0003
Revises: cf0002

A satellite of a login cluster looks a bare credential (a v1 secret, an OIDC access
token) up in L2 by its digest, since it has no token UUID to look by (SPEC 3.8).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "cf0003"
down_revision: str | Sequence[str] | None = "cf0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_federation_token_cache_secret_digest"),
        "federation_token_cache",
        ["secret_digest"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_federation_token_cache_secret_digest"), "federation_token_cache")
