"""clusterfed's own tables: the L2 token cache and the purge log

Revision ID: cf0001
Revises: (none)

clusterfed 0.1 created these two tables in the example server's chain. A database
that already has them (from that chain) keeps them and their rows: this revision
creates only what is missing, so an upgrade from 0.1 loses no cached token.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cf0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _exists(table: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if not _exists("federation_purges"):
        op.create_table(
            "federation_purges",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("value", sa.String(length=27), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_purges")),
        )
        op.create_index("ix_federation_purges_created_at", "federation_purges", ["created_at"])
    if not _exists("federation_token_cache"):
        op.create_table(
            "federation_token_cache",
            sa.Column("token_uuid", sa.String(length=27), nullable=False),
            sa.Column("user_uuid", sa.String(length=27), nullable=False),
            sa.Column("cluster_id", sa.String(length=5), nullable=False),
            sa.Column("secret_digest", sa.String(length=64), nullable=False),
            sa.Column("scopes", sa.JSON(), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("refreshes_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("validated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("token_uuid", name=op.f("pk_federation_token_cache")),
        )
        op.create_index(
            op.f("ix_federation_token_cache_cluster_id"),
            "federation_token_cache",
            ["cluster_id"],
        )
        op.create_index(
            op.f("ix_federation_token_cache_user_uuid"), "federation_token_cache", ["user_uuid"]
        )


def downgrade() -> None:
    op.drop_table("federation_token_cache")
    op.drop_table("federation_purges")
