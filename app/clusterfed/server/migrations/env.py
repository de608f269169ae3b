"""Alembic environment of the example server's tables (users, tokens, objects)."""

from clusterfed.server.migrations import VERSION_TABLE
from clusterfed.server.models import Base
from clusterfed.storage.alembic_env import run_migrations

run_migrations(Base.metadata, version_table=VERSION_TABLE)
