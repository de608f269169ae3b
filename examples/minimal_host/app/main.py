"""The host: its own users table and one route; clusterfed mounted with one call.

Run it:  CLUSTERFED_CONFIG=cluster.yml uvicorn app.main:create_app --factory
after `clusterfed db upgrade --federation-only --config cluster.yml`.
"""

import os
from contextlib import asynccontextmanager

from clusterfed import Identity, ModelUserTable, foreign_identity, load_config, mount
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    """The host's own users; clusterfed mirrors users of other clusters into it."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    login: Mapped[str | None] = mapped_column(String(255), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=False)
    is_invited: Mapped[bool] = mapped_column(default=False)


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The host's own schema; a real host runs its own migrations here instead.
        async with app.state.federation.database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield

    app = FastAPI(lifespan=lifespan)
    config = load_config(os.environ.get("CLUSTERFED_CONFIG"))
    mount(app, config, users=ModelUserTable(User, username="login"))

    @app.get("/whoami")
    async def whoami(identity: Identity | None = Depends(foreign_identity)) -> dict:
        if identity is None:
            raise HTTPException(401, "send a token of a federated cluster")
        return {
            "uuid": identity.user.uuid,
            "username": identity.user.username,
            "issuer": identity.issuer,
        }

    return app
