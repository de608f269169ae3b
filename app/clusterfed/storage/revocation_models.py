"""Tables of revocation: who validated each token here, and the notice outbox.

Neither holds a secret. A notice's proof (the token's secret salted for the receiver)
is computed from the token's own row when the notice is sent; a revoked token's row is
kept, expired, for that.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .db import utcnow
from .models import FederationBase


class FederationTokenValidator(FederationBase):
    """A cluster that validated one of our tokens (the ``remote=`` of the call we answered)."""

    __tablename__ = "federation_token_validators"

    token_uuid: Mapped[str] = mapped_column(String(27), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(5), primary_key=True)
    validated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FederationRevocationNotice(FederationBase):
    """One revocation notice for one remote: pending until ``outcome`` says how it ended
    (``delivered``, ``expired``: the token would have expired anyway, or ``abandoned``)."""

    __tablename__ = "federation_revocation_outbox"
    __table_args__ = (
        UniqueConstraint("token_uuid", "remote"),
        Index("ix_federation_revocation_outbox_due", "finished_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_uuid: Mapped[str] = mapped_column(String(27))
    remote: Mapped[str] = mapped_column(String(5), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the token would have expired anyway: no point in telling anyone after that.
    give_up_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    # Send it once more after delivery (the remote validated the token just before).
    echo: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str | None] = mapped_column(String(255))
    # A worker sending the notice holds it until then; another may take it over after.
    claimed_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
