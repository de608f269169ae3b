"""`clusterfed cache ...`: inspect and purge the federation token cache (issue 5)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_cache_commands(
    commands: Any, add_config: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Registers the `cache` subcommands (filled in by the token-cache admin work)."""
