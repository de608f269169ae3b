"""Alembic environment of clusterfed's own tables (shipped as ``clusterfed.migrations``)."""

from clusterfed.migrations import VERSION_TABLE
from clusterfed.storage import revocation_models  # noqa: F401  (registers its tables)
from clusterfed.storage.alembic_env import run_migrations
from clusterfed.storage.models import FederationBase

run_migrations(FederationBase.metadata, version_table=VERSION_TABLE)
