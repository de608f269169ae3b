"""Mutation testing of the trust core with mutmut: ``make mutation`` (not in CI: slow).

    python tools/mutation.py                  # every module in MODULES
    python tools/mutation.py tokens cache     # only these (matched against MODULES)
    python tools/mutation.py --keep tokens    # reuse the last run's mutants and results

MODULES and TESTS below are the one place that says what is mutated and which fast
tests judge it; re-point them when the code moves. The run happens in a scratch copy
(``var/mutation/``: the source, tests, migrations and pyproject.toml, with a generated
``[tool.mutmut]`` table), so the worktree never sees a ``mutants/`` folder. Each run starts
afresh unless ``--keep``: mutmut's cache does not notice new tests. It prints the score
per module and every survivor's diff.
Only in-process tests belong in TESTS: mutmut switches mutants in the test process, and
tests that start server processes would be slow and would not see the mutant.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKDIR = ROOT / "var" / "mutation"

# What to mutate: the token rules and the trust core.
MODULES = [
    "app/federation/tokens.py",
    "app/federation/mirroring.py",
    "app/federation/cache.py",
    "app/federation/validator.py",
    "app/federation/permissions.py",
]
# The fast tests that cover them (in-process; a scripted issuer on loopback at most).
TESTS = [
    "tests/test_tokens.py",
    "tests/test_token_rules.py",
    "tests/test_mirroring.py",
    "tests/test_trust_guards.py",
    "tests/test_token_cache.py",
    "tests/test_status_table.py",
    "tests/test_purge_log.py",
    "tests/test_malformed_credentials.py",
    "tests/test_permission_checks_home.py",
    "tests/test_remote_permission_calls.py",
]
# Copied into the scratch tree; mutmut copies tests/ and pyproject.toml itself.
COPIED = ["app", "tests", "migrations", "alembic.ini", "pyproject.toml"]
# SQLite only: the PostgreSQL half doubles the time and exercises the same core code.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x", "-k", "not postgresql"]


def selected(names: list[str]) -> list[str]:
    if not names:
        return MODULES
    chosen = [m for m in MODULES if any(Path(m).stem == n or m == n for n in names)]
    unknown = set(names) - {Path(m).stem for m in chosen} - set(chosen)
    if unknown:
        sys.exit(f"not in MODULES: {', '.join(sorted(unknown))}")
    return chosen


def toml_list(values: list[str]) -> str:
    return json.dumps(values)


def prepare(*, keep: bool) -> None:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    if not keep:
        shutil.rmtree(WORKDIR / "mutants", ignore_errors=True)
    for name in COPIED:
        source, target = ROOT / name, WORKDIR / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, target, ignore=ignore)  # copy2: mtimes kept, cache valid
        else:
            shutil.copy2(source, target)
    pyproject = WORKDIR / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + "\n[tool.mutmut]\n"
        + 'source_paths = ["app"]\n'
        + f"only_mutate = {toml_list(MODULES)}\n"
        + 'also_copy = ["migrations", "alembic.ini"]\n'
        + f"pytest_add_cli_args_test_selection = {toml_list(TESTS)}\n"
        + f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
        + "use_git_change_detection = false\n"
    )


def mutmut(*args: str, capture: bool = False) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    env = {**os.environ, "PYTHONPATH": ""}  # the scratch copy, never the worktree
    done = subprocess.run(
        command, cwd=WORKDIR, env=env, text=True, capture_output=capture, check=False
    )
    if done.returncode not in (0, 1) or (capture and not done.stdout and done.stderr):
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout if capture else ""


RESULT_RE = re.compile(r"^\s*(app\.[\w.]+?)\.x\w*__mutmut_\d+: (\w[\w ]*)$")


def report(modules: list[str]) -> int:
    wanted = {m.removesuffix(".py").replace("/", ".") for m in modules}
    results: dict[str, Counter[str]] = {m: Counter() for m in sorted(wanted)}
    survivors: list[str] = []
    for line in mutmut("results", "--all=true", capture=True).splitlines():
        match = RESULT_RE.match(line)
        if not match or match.group(1) not in wanted:
            continue
        status = match.group(2).strip()
        results[match.group(1)][status] += 1
        if status == "survived":
            survivors.append(line.split(":")[0].strip())
    print("\nmutation score (killed / all mutants; timeouts count as killed)")
    total: Counter[str] = Counter()
    for module, counts in results.items():
        total.update(counts)
        print(f"  {module:32} {score(counts)}")
    print(f"  {'all':32} {score(total)}")
    for name in survivors:
        print(f"\n--- survived: {name}")
        print(mutmut("show", name, capture=True).rstrip())
    return 0


def score(counts: Counter[str]) -> str:
    killed = counts["killed"] + counts["timeout"]
    all_ = sum(counts.values())
    rest = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in ("killed",))
    percent = f"{100 * killed / all_:5.1f}%" if all_ else "  n/a"
    return f"{percent}  {killed}/{all_}" + (f"  ({rest})" if rest else "")


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    modules = selected([arg for arg in argv if arg != "--keep"])
    prepare(keep=keep)
    names = [m.removesuffix(".py").replace("/", ".") + ".*" for m in modules]
    mutmut("run", *names)
    return report(modules)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
