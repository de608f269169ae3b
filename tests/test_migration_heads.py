"""Upgrading a database already at head runs no Alembic: the heads are read off the
revision files, and the database's version table is compared with them. Anything the
reading cannot vouch for goes to Alembic, as every upgrade did before."""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from clusterfed.server.migrate import SERVER_CHAIN
from clusterfed.storage.migrate import (
    FEDERATION_CHAIN,
    _recorded_revisions,
    alembic_config,
    at_head,
    chain_heads,
    upgrade_database,
)

from tests.support.databases import DatabaseFactory, run_blocking, run_coroutine

CHAINS = (FEDERATION_CHAIN, SERVER_CHAIN)


@pytest.mark.parametrize("package", CHAINS)
def test_the_heads_read_off_the_files_are_alembics(package: str) -> None:
    with as_file(files(package)) as location:
        expected = ScriptDirectory.from_config(alembic_config("sqlite://", location)).get_heads()
    assert chain_heads(files(package).joinpath("versions")) == frozenset(expected)


def copy_of_the_chain(tmp_path: Path) -> Path:
    with as_file(files(FEDERATION_CHAIN).joinpath("versions")) as versions:
        return Path(shutil.copytree(versions, tmp_path / "versions"))


def test_a_merge_has_one_head(tmp_path: Path) -> None:
    versions = copy_of_the_chain(tmp_path)
    (versions / "cf0005_side.py").write_text('revision = "side"\ndown_revision = "cf0003"\n')
    assert chain_heads(versions) == {"cf0004", "side"}
    (versions / "cf0006_merge.py").write_text(
        'revision: str = "merge"\ndown_revision: tuple[str, ...] = ("cf0004", "side")\n'
    )
    assert chain_heads(versions) == {"merge"}


@pytest.mark.parametrize(
    "script",
    [
        'revision = make_revision_id()\ndown_revision = "cf0004"\n',  # not a literal
        'down_revision = "cf0004"\n',  # no revision line
        'revision = "cf0005"\n',  # no down_revision line
        'revision = "cf0005"\ndown_revision = "nosuch"\n',  # below a revision not here
    ],
    ids=["computed", "no-revision", "no-down-revision", "unknown-parent"],
)
def test_a_file_not_read_as_the_template_writes_it_goes_to_alembic(
    tmp_path: Path, script: str
) -> None:
    versions = copy_of_the_chain(tmp_path)
    (versions / "cf0005_odd.py").write_text(script)
    assert chain_heads(versions) is None


def test_a_database_behind_head_is_upgraded(databases: DatabaseFactory) -> None:
    url = databases.new_url("behind")  # migrated: both chains at head
    assert run_blocking(at_head, url, FEDERATION_CHAIN)
    with as_file(files(FEDERATION_CHAIN)) as location:
        run_blocking(command.downgrade, alembic_config(url, location), "cf0003")
    assert not run_blocking(at_head, url, FEDERATION_CHAIN)
    run_blocking(upgrade_database, url)
    assert run_coroutine(_recorded_revisions(url, "clusterfed_alembic_version")) == {"cf0004"}


def test_a_database_with_no_version_table_is_not_at_head(databases: DatabaseFactory) -> None:
    url = databases.new_empty_url("empty")
    assert run_coroutine(_recorded_revisions(url, "clusterfed_alembic_version")) is None
    assert not run_blocking(at_head, url, FEDERATION_CHAIN)
    run_blocking(upgrade_database, url)
    assert run_blocking(at_head, url, FEDERATION_CHAIN)


def test_a_chain_that_does_not_name_its_version_table_goes_to_alembic(
    databases: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "unnamed_chain"  # clusterfed's revisions, no VERSION_TABLE
    package.mkdir()
    (package / "__init__.py").write_text("")
    copy_of_the_chain(package)
    monkeypatch.syspath_prepend(str(tmp_path))
    url = databases.new_url("unnamed")  # at head for clusterfed's own chain
    assert run_blocking(at_head, url, FEDERATION_CHAIN)
    assert not run_blocking(at_head, url, "unnamed_chain")
