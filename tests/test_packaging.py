"""The wheel stands alone (docs/mounting.md): built from this tree it holds every package,
the migrations and templates as package data, and no top-level module named ``app``. And
what ships with a clone explains itself: it cites no document that a clone does not have."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server


def _setuptools() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _declared() -> tuple[set[str], dict[str, str]]:
    setuptools = _setuptools()
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
    # A folder of data only (no __init__.py) is declared with the files it ships.
    data_only = declared - found
    assert data_only <= set(_setuptools()["package-data"])
    assert found == declared - data_only
    assert all(_source_dir(p, package_dir).is_dir() for p in declared)


def test_every_folder_in_the_package_is_declared() -> None:
    """A folder setuptools could take for a namespace package but is not told about makes
    every build and install print a long warning, which looks like breakage."""
    declared, package_dir = _declared()
    folders = set()
    for root_package, folder in package_dir.items():
        for sub in (REPO_ROOT / folder).rglob("*"):
            if sub.is_dir() and sub.name != "__pycache__" and any(sub.iterdir()):
                relative = sub.relative_to(REPO_ROOT / folder)
                folders.add(".".join((root_package, *relative.parts)))
    assert folders - declared == set()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str]:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "-w",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = out.glob("clusterfed-*.whl")
    return zipfile.ZipFile(wheel).namelist(), build.stdout + build.stderr


@pytest.fixture(scope="module")
def wheel(built: tuple[list[str], str]) -> list[str]:
    return built[0]


def test_building_the_wheel_prints_no_packaging_warning(built: tuple[list[str], str]) -> None:
    output = built[1]
    assert "Created wheel for clusterfed" in output  # verbose: the backend's output is here
    assert "is absent from the `packages` configuration" not in output
    assert "Package would be ignored" not in output


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


# A clone has no contract document and no shared folder beside it: what ships says
# things in its own words, and points at docs/ for the rules.
OUTSIDE_REFERENCE = re.compile(r"\bSPEC\b|shared/")
SHIPPED = ("app", "examples", "bench", "docs", "tools")


def _shipped_text_files() -> list[Path]:
    files = [REPO_ROOT / "README.md", REPO_ROOT / "mkdocs.yml"]
    for folder in SHIPPED:
        files += [
            path
            for path in sorted((REPO_ROOT / folder).rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        ]
    return [path for path in files if path.exists()]


def test_nothing_shipped_cites_a_document_outside_the_repository() -> None:
    files = _shipped_text_files()
    assert any(path.suffix == ".py" for path in files)  # the walk found the sources
    cited = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1)
        if OUTSIDE_REFERENCE.search(line)
    ]
    assert cited == []


def test_the_command_line_help_cites_no_document_outside_the_repository() -> None:
    from clusterfed.cli.main import build_parser

    parser = build_parser()
    helps = [parser.format_help()]
    for action in parser._subparsers._group_actions:  # every command and subcommand
        for sub in action.choices.values():
            helps.append(sub.format_help())
            for inner in sub._subparsers._group_actions if sub._subparsers else ():
                helps += [leaf.format_help() for leaf in inner.choices.values()]
    assert len(helps) > 5
    assert not [h for h in helps if OUTSIDE_REFERENCE.search(h)]


DOCS_POINTER = re.compile(r"docs/([a-z0-9-]+\.md)(?:#([a-z0-9-]+))?")


def _anchors(page: Path) -> set[str]:
    """The ids mkdocs gives a page's headings (its toc extension's default slugs)."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    slugs = (re.sub(r"[^\w\s-]", "", h.strip().lower()) for h in headings)
    return {re.sub(r"[-\s]+", "-", s).strip("-") for s in slugs}


def test_every_docs_pointer_in_the_code_names_a_page_and_heading_that_exist() -> None:
    pointers = {
        (page, anchor)
        for path in (REPO_ROOT / "app").rglob("*.py")
        for page, anchor in DOCS_POINTER.findall(path.read_text())
    }
    assert len(pointers) > 10  # the code does point at the docs
    missing = [
        f"docs/{page}#{anchor}"
        for page, anchor in sorted(pointers)
        if not (REPO_ROOT / "docs" / page).is_file()
        or (anchor and anchor not in _anchors(REPO_ROOT / "docs" / page))
    ]
    assert missing == []
