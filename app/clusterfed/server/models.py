"""Tables of the example cluster: users, tokens, and the objects (groups, collections,
links) that permissions are about. The federation's own tables are clusterfed's
(``clusterfed.storage.models``), as they are for any host.

Local token secrets are kept in the clear because verifying a salted token needs them
(``HMAC(secret, remote)``), as in Arvados. The federation cache never holds a secret:
only an HMAC-SHA256 digest of the secret as presented.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from clusterfed.storage.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=False)
    is_invited: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiClientAuthorization(Base):
    __tablename__ = "api_client_authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    api_token: Mapped[str] = mapped_column(String(512), unique=True)
    user_uuid: Mapped[str] = mapped_column(
        String(27), ForeignKey("users.uuid", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime | None]
    scopes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["all"])
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Group(Base):
    """A project (a folder of objects) or a role (a set of users that permissions name).

    A project's name is unique in its owner, as in Arvados; a role's need not be.
    """

    __tablename__ = "groups"
    __table_args__ = (
        Index(
            "uq_groups_owner_uuid_name",
            "owner_uuid",
            "name",
            unique=True,
            sqlite_where=text("group_class = 'project'"),
            postgresql_where=text("group_class = 'project'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    owner_uuid: Mapped[str] = mapped_column(String(27), index=True)
    name: Mapped[str] = mapped_column(String(255))
    group_class: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class Collection(Base):
    """A manifest of blocks; its name, when it has one, is unique in its owner."""

    __tablename__ = "collections"
    __table_args__ = (Index("uq_collections_owner_uuid_name", "owner_uuid", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    owner_uuid: Mapped[str] = mapped_column(String(27), index=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    manifest_text: Mapped[str] = mapped_column(Text, default="")
    portable_data_hash: Mapped[str] = mapped_column(String(64), index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class Link(Base):
    """A typed edge between two objects; ``link_class == "permission"`` grants access.

    The composite indexes serve the permission walk in both directions: from a user or
    role to what it may reach (tail), and from an object to who may reach it (head).
    """

    __tablename__ = "links"
    __table_args__ = (
        Index("ix_links_tail_uuid_link_class", "tail_uuid", "link_class"),
        Index("ix_links_head_uuid_link_class", "head_uuid", "link_class"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    owner_uuid: Mapped[str] = mapped_column(String(27), index=True)
    link_class: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    tail_uuid: Mapped[str | None] = mapped_column(String(27))
    head_uuid: Mapped[str | None] = mapped_column(String(27))
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
