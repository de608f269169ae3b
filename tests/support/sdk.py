"""The real Arvados SDK in tests: a client per call, isolated from the developer's setup."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import arvados
import pytest
from clusterfed.server.testing import Cluster

T = TypeVar("T")


def isolate_sdk_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads ~/.config/arvados/settings.conf and ARVADOS_* variables, and caches
    discovery documents under ~/.cache: none of the developer's may leak in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for name in ("ARVADOS_API_HOST", "ARVADOS_API_TOKEN", "ARVADOS_API_HOST_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(arvados.config, "_settings", None)


def sdk(cluster: Cluster, token: str) -> Any:
    # cache=False: discovery documents are cached by URL, and ports are reused.
    # num_retries=0: a failure should fail the test now, not after minutes of backoff.
    return arvados.api(
        "v1", host=cluster.host, token=token, insecure=True, cache=False, num_retries=0
    )


async def in_thread(call: Callable[[], T]) -> T:
    """SDK calls block: run them off the event loop the servers' tests share."""
    return await asyncio.to_thread(call)
