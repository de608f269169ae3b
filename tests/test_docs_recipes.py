"""The README and the docs say what a newcomer runs; these tests run it, as written.

The README's mount recipe (its host, its two configs, its commands) and the tutorial's
steps are taken from the Markdown itself and run in bash in a scratch folder, with the
project's own ``clusterfed`` on PATH and the fixed loopback ports swapped for free ones.
Also the README's shape: short, the two commands near the top, honest about installing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clusterfed.server.testing import free_port

from tests.support import REPO_ROOT

pytestmark = pytest.mark.server  # the recipes start clusterfed serve, uvicorn and the CLI

README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def _blocks(path: Path) -> list[tuple[str, str]]:
    return BLOCK.findall(path.read_text())


def _run(script: str, cwd: Path, timeout: float = 240) -> str:
    """``script`` in bash, in its own process group, which is ended afterwards: whatever
    it left running in the background (the servers) goes with it."""
    ports = {"8001": str(free_port()), "8002": str(free_port())}
    script = re.sub(r"\b(8001|8002)\b", lambda m: ports[m.group(1)], script)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CLUSTERFED_CONFIG", None)
    log = cwd / "script.log"  # a file, not a pipe: the servers would hold a pipe open
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    output = log.read_text()
    assert proc.returncode == 0, output
    return output


def test_the_readme_is_a_short_page_with_the_two_commands_on_its_first_screen() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 300
    top = "\n".join(lines[:40])
    assert "make demo" in top and "make test" in top
    assert "not on a package index" in README.read_text()


def test_the_readme_mount_recipe_runs_as_written(tmp_path: Path) -> None:
    blocks = _blocks(README)
    (host,) = [code for lang, code in blocks if lang == "python" and "mount(" in code]
    (tmp_path / "host.py").write_text(host)
    steps = [code for lang, code in blocks if lang == "sh" and ("qr1hi.yml" in code)]
    assert len(steps) == 2  # the configs, then the commands
    output = _run("\n".join(steps), tmp_path)
    whoami = output.strip().splitlines()[-1]
    assert '"issuer":"qr1hi"' in whoami and '"active":true' in whoami, output


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    steps = [code for lang, code in _blocks(REPO_ROOT / "docs" / "tutorial.md") if lang == "sh"]
    # The install step is this checkout's .venv, already on PATH; the rest runs as written.
    assert "make venv" in steps[0]
    script = "\n".join(["mkdir -p var/tutorial && cd var/tutorial", *steps[1:]])
    output = _run(script, tmp_path)
    expected = [
        line.removeprefix("# ").split(" <")[0]  # "<cursor>": a value that changes
        for step in steps
        for line in step.splitlines()
        if re.match(r"# (\[|\d{3}$)", line)
    ]
    assert len(expected) >= 4
    for line in expected:
        assert line in output, (line, output)


@pytest.mark.parametrize("page", ["mounting.md"])
def test_the_mounting_guide_host_is_the_readme_host_with_more_fields(page: str) -> None:
    """The guide's host and the README's are one recipe: the guide's was run the same way
    when written; keep them from drifting apart."""
    (guide,) = [c for lang, c in _blocks(REPO_ROOT / "docs" / page) if "DeclarativeBase" in c]
    (readme,) = [c for lang, c in _blocks(README) if "DeclarativeBase" in c]
    model = re.compile(r"class User\(Base\):.*?\n\n\n", re.DOTALL)
    assert model.search(guide).group(0) == model.search(readme).group(0)
