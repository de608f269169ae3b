"""The wheel stands alone (SPEC 7): built from this tree it holds every package, the
migrations and templates as package data, and no top-level module named ``app``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server


def _declared() -> tuple[set[str], dict[str, str]]:
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(setuptools["packages"]), setuptools["package-dir"]


def _source_dir(package: str, package_dir: dict[str, str]) -> Path:
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in package_dir:
            return REPO_ROOT / package_dir[prefix] / Path(*parts[n:])
    raise AssertionError(f"{package} has no source folder")


def test_pyproject_names_every_package_in_the_tree() -> None:
    declared, package_dir = _declared()
    found = set()
    for root_package, folder in package_dir.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder)
            found.add(".".join((root_package, *relative.parts)))
    assert found == declared
    assert all(_source_dir(p, package_dir).is_dir() for p in declared)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("clusterfed-*.whl")
    return zipfile.ZipFile(built).namelist()


def test_the_wheel_installs_only_clusterfed(wheel: list[str]) -> None:
    tops = {name.split("/")[0] for name in wheel}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"clusterfed"}


def test_the_wheel_carries_migrations_and_templates(wheel: list[str]) -> None:
    names = set(wheel)
    for migration in (REPO_ROOT / "migrations" / "versions").glob("*.py"):
        assert f"clusterfed/migrations/versions/{migration.name}" in names
    assert "clusterfed/migrations/env.py" in names
    assert "clusterfed/migrations/script.py.mako" in names
    assert "clusterfed/server/migrations/script.py.mako" in names
    templates = (REPO_ROOT / "app" / "clusterfed" / "admin" / "templates").glob("*.html")
    for template in templates:
        assert f"clusterfed/admin/templates/{template.name}" in names
