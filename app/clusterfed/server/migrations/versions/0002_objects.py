"""groups, collections and links: the objects permissions are about

Revision ID: 0002
Revises: 0001

Indexes serve the permission walk: owner_uuid (ownership edges, both directions via
uuid/owner_uuid), links by (tail_uuid, link_class) and (head_uuid, link_class).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("owner_uuid", sa.String(length=27), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("manifest_text", sa.Text(), nullable=False),
        sa.Column("portable_data_hash", sa.String(length=64), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collections")),
        sa.UniqueConstraint("uuid", name=op.f("uq_collections_uuid")),
    )
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_collections_modified_at"), ["modified_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_collections_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_collections_owner_uuid"), ["owner_uuid"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_collections_portable_data_hash"), ["portable_data_hash"], unique=False
        )

    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("owner_uuid", sa.String(length=27), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("group_class", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("uuid", name=op.f("uq_groups_uuid")),
    )
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_groups_modified_at"), ["modified_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_groups_owner_uuid"), ["owner_uuid"], unique=False)

    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("owner_uuid", sa.String(length=27), nullable=False),
        sa.Column("link_class", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("tail_uuid", sa.String(length=27), nullable=True),
        sa.Column("head_uuid", sa.String(length=27), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint("uuid", name=op.f("uq_links_uuid")),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_links_head_uuid_link_class", ["head_uuid", "link_class"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_links_modified_at"), ["modified_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_links_owner_uuid"), ["owner_uuid"], unique=False)
        batch_op.create_index(
            "ix_links_tail_uuid_link_class", ["tail_uuid", "link_class"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_tail_uuid_link_class")
        batch_op.drop_index(batch_op.f("ix_links_owner_uuid"))
        batch_op.drop_index(batch_op.f("ix_links_modified_at"))
        batch_op.drop_index("ix_links_head_uuid_link_class")

    op.drop_table("links")
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_groups_owner_uuid"))
        batch_op.drop_index(batch_op.f("ix_groups_modified_at"))

    op.drop_table("groups")
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_collections_portable_data_hash"))
        batch_op.drop_index(batch_op.f("ix_collections_owner_uuid"))
        batch_op.drop_index(batch_op.f("ix_collections_name"))
        batch_op.drop_index(batch_op.f("ix_collections_modified_at"))

    op.drop_table("collections")
