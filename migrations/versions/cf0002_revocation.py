"""revocation: who validated each token, the notice outbox, digests of salted secrets

Revision ID: cf0002
Revises: cf0001

SPEC 3.7. ``federation_token_validators`` lists the clusters that validated each token
issued here; ``federation_revocation_outbox`` holds the notices to send them when a token
is revoked. The L2 digest is now taken of the secret salted for this cluster, so rows
cached before cannot match a notice's proof: they are dropped and revalidate on next use.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "cf0002"
down_revision: str | Sequence[str] | None = "cf0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_token_validators",
        sa.Column("token_uuid", sa.String(length=27), nullable=False),
        sa.Column("cluster_id", sa.String(length=5), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "token_uuid", "cluster_id", name=op.f("pk_federation_token_validators")
        ),
    )
    op.create_table(
        "federation_revocation_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_uuid", sa.String(length=27), nullable=False),
        sa.Column("remote", sa.String(length=5), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("echo", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_revocation_outbox")),
        sa.UniqueConstraint(
            "token_uuid", "remote", name=op.f("uq_federation_revocation_outbox_token_uuid")
        ),
    )
    with op.batch_alter_table("federation_revocation_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_federation_revocation_outbox_due", ["finished_at", "next_attempt_at"]
        )
        batch_op.create_index(batch_op.f("ix_federation_revocation_outbox_remote"), ["remote"])
    op.execute("DELETE FROM federation_token_cache")


def downgrade() -> None:
    op.drop_table("federation_revocation_outbox")
    op.drop_table("federation_token_validators")
    op.execute("DELETE FROM federation_token_cache")
