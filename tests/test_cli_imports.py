"""The command line starts fast: `clusterfed --help` and the commands that need no database
import neither the web stack nor the database layer, and the package's public names are
imported on first use (each check runs in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

HEAVY = ("fastapi", "starlette", "sqlalchemy", "httpx", "alembic", "uvicorn", "h11")
# What a command that only reads and writes the database has no use for.
WEB_STACK = ("fastapi", "starlette", "anyio", "httpx", "aiohttp", "alembic", "uvicorn", "h11")
VECTOR_TOKEN = "v2/qr1hi-gj3su-000000000000001/3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"


def loaded_after(
    code: str, heavy: tuple[str, ...] = HEAVY, env: dict[str, str] | None = None
) -> list[str]:
    """The ``heavy`` top-level packages a fresh interpreter holds after running ``code``."""
    probe = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def sqlite_cluster_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a command run against a new SQLite cluster under ``tmp_path``."""
    config = tmp_path / "cluster.yml"
    config.write_text(
        f"Clusters:\n  zzzzz:\n    Database:\n      URL: sqlite+aiosqlite:///{tmp_path}/z.db\n"
    )
    return {"CLUSTERFED_CONFIG": str(config), "PATH": ""}


def run_main(*argv: str) -> str:
    return (
        "from clusterfed.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({list(argv)!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
    )


def test_importing_the_package_and_the_cli_modules_stays_light() -> None:
    code = "import clusterfed\nimport clusterfed.cli.main, clusterfed.cli.cache"
    code += "\nimport clusterfed.cli.serve, clusterfed.cli.users, clusterfed.config"
    assert loaded_after(code) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("cache", "--help"),
        ("users", "create", "--help"),
        ("tokens", "salt", VECTOR_TOKEN, "--remote", "aaaaa"),
        ("--version",),
    ],
)
def test_commands_without_a_database_stay_light(argv: tuple[str, ...]) -> None:
    assert loaded_after(run_main(*argv)) == []


def test_database_commands_load_the_database_layer_but_not_the_web_stack(
    tmp_path: Path,
) -> None:
    env = sqlite_cluster_env(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "clusterfed", "db", "upgrade"], env=env, check=True, timeout=60
    )
    # At head: the version tables say so, no Alembic or migration script is loaded.
    assert loaded_after(run_main("db", "upgrade"), ("alembic",), env) == []
    users = ("users", "create", "--email", "someone@example.com")
    assert loaded_after(run_main(*users), (*WEB_STACK, "sqlalchemy"), env) == ["sqlalchemy"]
    tokens = ("tokens", "create", "--user", "zzzzz-tpzed-nosuchuser00000")
    for argv in [users, tokens, ("cache", "list")]:
        assert loaded_after(run_main(*argv), WEB_STACK, env) == [], argv
    # Revoking queues notices for the running servers to send: no HTTP client here.
    revoke = ("tokens", "revoke", "zzzzz-gj3su-000000000000000")
    assert loaded_after(run_main(*revoke), ("aiohttp", "httpx", "fastapi", "alembic"), env) == []


def test_a_short_command_leaves_without_the_teardown_and_loses_no_output(
    tmp_path: Path,
) -> None:
    env = sqlite_cluster_env(tmp_path)

    def program(*argv: str) -> subprocess.CompletedProcess[str]:
        # An exit handler stands for the interpreter's teardown: it runs only on the
        # ordinary way out.
        code = (
            "import atexit, sys\n"
            "atexit.register(print, 'teardown')\n"
            "from clusterfed.cli.main import run_program\n"
            f"sys.argv = ['clusterfed', *{list(argv)!r}]\n"
            "run_program()\n"
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )

    upgraded = program("db", "upgrade")
    assert upgraded.returncode == 0 and "teardown" not in upgraded.stdout, upgraded
    created = program("users", "create", "--email", "someone@example.com")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("zzzzz-tpzed-") and "teardown" not in created.stdout
    failed = program("tokens", "create", "--user", "zzzzz-tpzed-nosuchuser00000")
    assert failed.returncode == 1 and "no user" in failed.stderr
    assert failed.stdout == "teardown\n"  # errors leave the ordinary way


def test_the_probe_sees_a_heavy_import() -> None:
    # The check above is only worth something if importing the public API shows up.
    assert "fastapi" in loaded_after("from clusterfed import mount")


def test_public_names_resolve_on_first_use() -> None:
    import clusterfed
    import clusterfed.mount as mount_module  # binds the submodule's name on the package

    for name in clusterfed.__all__:
        assert getattr(clusterfed, name) is not None, name
    # The function named like its submodule stays the function.
    assert callable(mount_module) and clusterfed.mount.__name__ == "mount"
    from clusterfed.service import Federation

    assert clusterfed.Federation is Federation
    assert set(clusterfed.__all__) <= set(dir(clusterfed))
    with pytest.raises(AttributeError):
        clusterfed.NoSuchName  # noqa: B018


def test_version_names_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from clusterfed.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"clusterfed {version('clusterfed')}"
