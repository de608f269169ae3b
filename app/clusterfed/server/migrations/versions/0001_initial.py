"""users and tokens

(The federation token cache and purge log, created here by clusterfed 0.1, belong to
clusterfed's own chain now; its first revision adopts them where they exist.)

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
