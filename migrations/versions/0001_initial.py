"""users, tokens and the federation token cache

Revision ID: 0001
Revises: (none)


"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "federation_purges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=27), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_purges")),
    )
    with op.batch_alter_table("federation_purges", schema=None) as batch_op:
        batch_op.create_index("ix_federation_purges_created_at", ["created_at"], unique=False)

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
    with op.batch_alter_table("federation_token_cache", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federation_token_cache_cluster_id"), ["cluster_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_federation_token_cache_user_uuid"), ["user_uuid"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("first_name", sa.String(length=255), nullable=True),
        sa.Column("last_name", sa.String(length=255), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_invited", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
        sa.UniqueConstraint("uuid", name=op.f("uq_users_uuid")),
    )
    op.create_table(
        "api_client_authorizations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("api_token", sa.String(length=512), nullable=False),
        sa.Column("user_uuid", sa.String(length=27), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_uuid"],
            ["users.uuid"],
            name=op.f("fk_api_client_authorizations_user_uuid_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_client_authorizations")),
        sa.UniqueConstraint("api_token", name=op.f("uq_api_client_authorizations_api_token")),
        sa.UniqueConstraint("uuid", name=op.f("uq_api_client_authorizations_uuid")),
    )
    with op.batch_alter_table("api_client_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_client_authorizations_user_uuid"), ["user_uuid"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("api_client_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_client_authorizations_user_uuid"))

    op.drop_table("api_client_authorizations")
    op.drop_table("users")
    with op.batch_alter_table("federation_token_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_token_cache_user_uuid"))
        batch_op.drop_index(batch_op.f("ix_federation_token_cache_cluster_id"))

    op.drop_table("federation_token_cache")
    with op.batch_alter_table("federation_purges", schema=None) as batch_op:
        batch_op.drop_index("ix_federation_purges_created_at")

    op.drop_table("federation_purges")
