"""Mutation testing of the trust core with mutmut: ``make mutation`` (not in CI: slow).

    python tools/mutation.py                  # every module in MODULES
    python tools/mutation.py tokens cache     # only these (matched against MODULES)
    python tools/mutation.py --survivors      # after adding tests, or an interrupted run:
                                              # judge last run's survivors and unjudged again

MODULES below is the one place that says what is mutated and which fast tests judge each
module; re-point it when the code moves. Each module runs in its own scratch copy
(``var/mutation/<module>/``: the source, tests, migrations and pyproject.toml with a
generated ``[tool.mutmut]`` table), so the worktree never sees a ``mutants/`` folder and a
module's run is judged only by its own tests. Runs start afresh, except ``--survivors``,
which keeps the last results and runs only the survivors and the mutants an interrupted
run never reached (mutmut notices tests added to the files in MODULES; adding a file to a
module's list makes mutmut start that module over). It prints the score per module and
every survivor's diff; mutmut's own output is in ``var/mutation/<module>/run.log``.

Only in-process tests belong here: mutmut switches mutants inside the test process, so
tests that start server processes would not see the mutant (and are slow).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "var" / "mutation"

# What to mutate (the token rules and the trust core) -> the fast tests that judge it.
MODULES = {
    "app/clusterfed/tokens.py": ["tests/test_tokens.py", "tests/test_token_rules.py"],
    "app/clusterfed/credentials.py": ["tests/test_credentials.py", "tests/test_token_rules.py"],
    "app/clusterfed/trust/mirroring.py": ["tests/test_mirroring.py"],
    "app/clusterfed/trust/cache.py": [
        "tests/test_token_cache_l1.py",
        "tests/test_trust_guards.py",
        "tests/test_token_cache.py",
        "tests/test_purge_log.py",
    ],
    "app/clusterfed/trust/validator.py": [
        "tests/test_validator_rules.py",
        "tests/test_trust_guards.py",
        "tests/test_status_table.py",
        "tests/test_token_cache.py",
        "tests/test_mirroring.py",  # the mirror policy, over HTTP
    ],
    "app/clusterfed/trust/throttle.py": ["tests/test_throttle.py", "tests/test_throttle_rules.py"],
    "app/clusterfed/trust/revocation.py": [
        "tests/test_revocation_outbox.py",
        "tests/test_revocation_rules.py",
    ],
    "app/clusterfed/outbound/statuses.py": ["tests/test_statuses.py"],
    "app/clusterfed/outbound/permissions.py": [
        "tests/test_remote_permission_calls.py",
        "tests/test_remote_robustness.py",
    ],
}
# Copied into each scratch tree; mutmut copies tests/ and pyproject.toml into mutants/.
# The source folder app/ is copied as src/: mutmut names a module by its path below
# ./, src/ or source/, and must name it as the tests import it (clusterfed.tokens).
COPIED = {"app": "src", "tests": "tests", "migrations": "migrations"}
COPIED |= {"alembic.ini": "alembic.ini", "pyproject.toml": "pyproject.toml"}
# SQLite only: the PostgreSQL half doubles the time and exercises the same core code.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x", "-k", "not postgresql"]
RESULT_RE = re.compile(r"^\s*((clusterfed\.[\w.]+?)\.x\S*__mutmut_\d+): (\w[\w ]*)$")


def dotted(module: str) -> str:
    """``app/clusterfed/tokens.py`` -> ``clusterfed.tokens``: the name tests import."""
    return module.removeprefix("app/").removesuffix(".py").replace("/", ".")


def in_scratch(module: str) -> str:
    return "src/" + module.removeprefix("app/")


def selected(names: list[str]) -> list[str]:
    if not names:
        return list(MODULES)
    chosen = [m for m in MODULES if any(Path(m).stem == n or m == n for n in names)]
    unknown = set(names) - {Path(m).stem for m in chosen} - set(chosen)
    if unknown:
        sys.exit(f"not in MODULES: {', '.join(sorted(unknown))}")
    return chosen


def workdir(module: str) -> Path:
    return SCRATCH / Path(module).stem


def prepare(module: str, *, keep: bool) -> None:
    where = workdir(module)
    where.mkdir(parents=True, exist_ok=True)
    if not keep:
        shutil.rmtree(where / "mutants", ignore_errors=True)
    for name, copy in COPIED.items():
        source, target = ROOT / name, where / copy
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, target, ignore=ignore)  # copy2: mtimes kept
        else:
            shutil.copy2(source, target)
    pyproject = where / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + "\n[tool.mutmut]\n"
        + 'source_paths = ["src"]\n'
        + f"only_mutate = {json.dumps([in_scratch(module)])}\n"
        + 'also_copy = ["migrations", "alembic.ini"]\n'
        + f"pytest_add_cli_args_test_selection = {json.dumps(MODULES[module])}\n"
        + f"pytest_add_cli_args = {json.dumps(PYTEST_ARGS)}\n"
        + "use_git_change_detection = false\n"
    )
    # The tests import clusterfed from the mutated tree, not from the installed worktree.
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace('testpaths = ["tests"]', 'testpaths = ["tests"]\npythonpath = ["src"]', 1)
    )


def mutmut(module: str, *args: str, log: Path | None = None) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    env = {**os.environ, "PYTHONPATH": ""}  # the scratch copy, never the worktree
    with open(log, "w") if log else open(os.devnull, "w") as sink:
        done = subprocess.run(
            command,
            cwd=workdir(module),
            env=env,
            text=True,
            stdout=sink if log else subprocess.PIPE,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            check=False,
        )
    if done.returncode != 0:
        where = log or "its output"
        sys.exit(
            f"{' '.join(command)} failed ({done.returncode}); see {where}\n{done.stderr or ''}"
        )
    return done.stdout or ""


def results(module: str) -> list[tuple[str, str]]:
    """(mutant, status) of the last run of ``module``."""
    found = []
    for line in mutmut(module, "results", "--all=true").splitlines():
        match = RESULT_RE.match(line)
        if match and match.group(2) == dotted(module):
            found.append((match.group(1), match.group(3).strip()))
    return found


def score(counts: Counter[str]) -> str:
    killed = counts["killed"] + counts["timeout"]
    all_ = sum(counts.values())
    rest = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "killed")
    percent = f"{100 * killed / all_:5.1f}%" if all_ else "  n/a"
    return f"{percent}  {killed}/{all_}" + (f"  ({rest})" if rest else "")


def run(module: str, *, again: bool) -> tuple[Counter[str], list[str]]:
    if again and not (workdir(module) / "mutants").is_dir():
        sys.exit(f"--survivors needs an earlier run of {module}")
    prepare(module, keep=again)
    if again:
        again_statuses = ("survived", "not checked")
        names = [mutant for mutant, status in results(module) if status in again_statuses]
    else:
        names = [dotted(module) + ".*"]
    started = time.monotonic()
    print(f"{module}: mutating, judged by {' '.join(MODULES[module])}", flush=True)
    if names:
        mutmut(module, "run", *names, log=workdir(module) / "run.log")
    counts: Counter[str] = Counter()
    survivors = []
    for mutant, status in results(module):
        counts[status] += 1
        if status == "survived":
            survivors.append(mutant)
    print(f"{module}: {score(counts)} in {time.monotonic() - started:.0f}s", flush=True)
    return counts, survivors


def main(argv: list[str]) -> int:
    again = "--survivors" in argv
    modules = selected([arg for arg in argv if arg != "--survivors"])
    outcome = {module: run(module, again=again) for module in modules}
    print("\nmutation score (killed / all mutants; timeouts count as killed)")
    total: Counter[str] = Counter()
    for module, (counts, _) in outcome.items():
        total.update(counts)
        print(f"  {module:32} {score(counts)}")
    print(f"  {'all':32} {score(total)}")
    for module, (_, survivors) in outcome.items():
        for name in survivors:
            print(f"\n{mutmut(module, 'show', name).rstrip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
