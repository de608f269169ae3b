"""The example server's Alembic chain (users, tokens, objects)."""

VERSION_TABLE = "alembic_version"
