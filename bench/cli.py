"""Command-line start time: each ``clusterfed`` command against a SQLite database.

    .venv/bin/python -m bench cli

Each command runs ``ROUNDS`` times in a fresh interpreter (the installed ``clusterfed``
script, as a user types it); the figure is the median wall time. Beside them, in the
same run, the floors no command can go under on this machine: the interpreter alone,
and the interpreter loading the database library (SQLAlchemy's async ORM and aiosqlite)
that a command that touches the database needs, and Alembic too (which ``db upgrade``
loads only when a chain is not at head already). A command's own cost is its time over
its floor: that is what this project controls.

Target: every command under 0.5 s. A database command can meet it only where the machine
loads SQLAlchemy well under that (on the 2-core machines of docs/benchmarks.md it took
0.25-0.49 s, depending on the machine and the day), so each command's time over its
floor is printed too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 9
SCRIPT = Path(sys.executable).with_name("clusterfed")
TARGET_SECONDS = 0.5
# Each floor leaves as the program does, without the interpreter's teardown.
INTERPRETER_FLOOR = "import os; os._exit(0)"
DATABASE_FLOOR = (
    "import os, asyncio, sqlalchemy.ext.asyncio, sqlalchemy.orm, aiosqlite; os._exit(0)"
)
ALEMBIC_FLOOR = DATABASE_FLOOR.replace(";", ", alembic.command, alembic.runtime.environment;")
SALTABLE = "v2/zzzzz-gj3su-000000000000001/3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"


def timed(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, float]:
    """Median wall time of each command over ``ROUNDS`` runs (each must succeed). The runs
    take turns, so a machine that slows down midway slows every command alike."""
    for argv in commands.values():
        subprocess.run(argv, env=env, check=True, capture_output=True)  # writes the bytecode
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(ROUNDS):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(runs) for name, runs in times.items()}


def cli(*args: str) -> list[str]:
    return [str(SCRIPT), *args]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "cluster.yml")
        config.write_text(
            f"Clusters:\n  zzzzz:\n    Database:\n      URL: sqlite+aiosqlite:///{tmp}/z.db\n"
        )
        env = {**os.environ, "CLUSTERFED_CONFIG": str(config)}
        # As on a user's machine, compiled modules are cached (some sandboxes turn that
        # off, and every run then compiles the package's source again).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(cli("db", "upgrade"), env=env, check=True, capture_output=True)
        user = subprocess.run(
            cli("users", "create", "--email", "bench@example.com"),
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        floors = {
            "the interpreter": [sys.executable, "-c", INTERPRETER_FLOOR],
            "+ the database library": [sys.executable, "-c", DATABASE_FLOOR],
            "+ Alembic": [sys.executable, "-c", ALEMBIC_FLOOR],
        }
        commands = {
            "clusterfed --help": cli("--help"),
            "clusterfed --version": cli("--version"),
            "tokens salt": cli("tokens", "salt", SALTABLE, "--remote", "qr1hi"),
            "users create": cli("users", "create", "--email", "b@example.com"),
            "tokens create": cli("tokens", "create", "--user", user),
            "cache list": cli("cache", "list"),
            "db upgrade (at head)": cli("db", "upgrade"),
        }
        floor_of = dict.fromkeys(commands, "the interpreter")
        floor_of.update(
            dict.fromkeys(["users create", "tokens create", "cache list"], "+ the database library")
        )
        # At head, the version tables say so without Alembic (storage/migrate.py).
        floor_of["db upgrade (at head)"] = "+ the database library"
        seconds = timed({**floors, **commands}, env)
        print(f"median of {ROUNDS} runs each, SQLite, load {os.getloadavg()[0]:.1f}")
        for name in floors:
            print(f"{'floor: ' + name:30} {seconds[name]:6.3f} s")
        for name in commands:
            over = seconds[name] - seconds[floor_of[name]]
            fast = seconds[name] < TARGET_SECONDS
            print(
                f"{name:30} {seconds[name]:6.3f} s  {over:+.3f} s over its floor  "
                f"{'ok' if fast else 'over 0.5 s'}"
            )


if __name__ == "__main__":
    main()
