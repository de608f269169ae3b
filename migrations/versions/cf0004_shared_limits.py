"""shared limits: token buckets and workers in the database; purges announced on PostgreSQL

Revision ID: cf0004
Revises: cf0003

The rate limits are the cluster's, not a worker's: every worker of every host spends
from one row per bucket (``federation_rate_buckets``), where the workers sharing them
also say they are alive (for the share one falls back to when it cannot reach them).
On PostgreSQL a purge logged in ``federation_purges`` is announced on the channel
``clusterfed_purges`` when its transaction commits, whoever wrote it (the admin API, the
CLI, a revocation, a host's own code): every worker listens, so none waits for its poll.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cf0004"
down_revision: str | Sequence[str] | None = "cf0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION clusterfed_purge_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('clusterfed_purges', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER clusterfed_purge_notify AFTER INSERT ON federation_purges
FOR EACH ROW EXECUTE FUNCTION clusterfed_purge_notify()
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    # A bucket is worth nothing after a crash (a full bucket is the same as none): on
    # PostgreSQL the table is UNLOGGED, so spending a token writes no WAL and waits for
    # no disk (measured: a quarter of the time of a logged row, half its CPU). No index
    # but the key's: each spend changes ``full_at``, and an index on it would be written
    # on every spend (on PostgreSQL it also rules out HOT updates); the prune scans a
    # table that holds only the last few seconds' buckets.
    op.create_table(
        "federation_rate_buckets",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("level", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.Column("full_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_federation_rate_buckets")),
        prefixes=["UNLOGGED"] if postgresql else [],
    )
    if postgresql:
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS clusterfed_purge_notify ON federation_purges")
        op.execute("DROP FUNCTION IF EXISTS clusterfed_purge_notify()")
    op.drop_table("federation_rate_buckets")
