"""clusterfed's Alembic chain (its own tables), shipped as ``clusterfed.migrations``."""

VERSION_TABLE = "clusterfed_alembic_version"
