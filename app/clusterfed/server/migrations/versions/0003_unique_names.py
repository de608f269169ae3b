"""unique (owner_uuid, name) for collections and projects, as Arvados enforces

Revision ID: 0003
Revises: 0002

Arvados refuses a second collection or project with the same name in the same owner
(``ensure_unique_name=true`` renames the new one instead). Rows that already break the
rule keep the oldest name as it is; every later one becomes ``<name> (<its uuid>)``,
which no other row can hold, cut so the whole still fits the 255-character column.
Roles are not projects: their names stay free, as in Arvados's permission model they
are named by UUID. A NULL collection name never conflicts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_LENGTH = 255
PROJECTS = sa.text("group_class = 'project'")


def _rename_duplicates(table: str, where: str = "") -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            f"SELECT id, uuid, owner_uuid, name FROM {table} WHERE name IS NOT NULL {where} "
            "ORDER BY owner_uuid, name, created_at, id"
        )
    ).all()
    previous = None
    for row in rows:
        key = (row.owner_uuid, row.name)
        if key == previous:
            suffix = f" ({row.uuid})"
            name = row.name[: NAME_LENGTH - len(suffix)] + suffix
            bind.execute(
                sa.text(f"UPDATE {table} SET name = :name WHERE id = :id"),
                {"name": name, "id": row.id},
            )
        previous = key


def upgrade() -> None:
    """Upgrade schema."""
    _rename_duplicates("collections")
    _rename_duplicates("groups", f"AND {PROJECTS.text}")
    op.create_index(
        "uq_collections_owner_uuid_name", "collections", ["owner_uuid", "name"], unique=True
    )
    op.create_index(
        "uq_groups_owner_uuid_name",
        "groups",
        ["owner_uuid", "name"],
        unique=True,
        sqlite_where=PROJECTS,
        postgresql_where=PROJECTS,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("uq_groups_owner_uuid_name", table_name="groups")
    op.drop_index("uq_collections_owner_uuid_name", table_name="collections")
