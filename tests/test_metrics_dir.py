"""The directory every worker of ``serve --workers N`` counts its metrics into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clusterfed.metrics import MULTIPROC_ENV, multiprocess_dir, prepare_multiprocess_dir


def test_the_operators_directory_is_emptied_of_an_earlier_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "counter_4242.db"
    stale.write_bytes(b"old totals")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert prepare_multiprocess_dir() == str(tmp_path)
    assert not stale.exists() and keep.exists()


def test_without_one_a_fresh_directory_is_made_for_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set, then removed: monkeypatch then unsets what prepare_multiprocess_dir sets (a
    # delenv alone of an unset variable records nothing to restore, and the directory
    # leaked into every server the rest of the session started).
    monkeypatch.setenv(MULTIPROC_ENV, "")
    monkeypatch.delenv(MULTIPROC_ENV)
    path = prepare_multiprocess_dir()
    assert os.environ[MULTIPROC_ENV] == path and Path(path).is_dir()
    assert list(Path(path).iterdir()) == []


def test_a_process_that_imported_the_client_without_it_counts_in_memory() -> None:
    # The client picks its value class when it is imported: this test process counts in
    # memory whatever the environment says now, and /metrics renders its own registry.
    assert multiprocess_dir() is None
