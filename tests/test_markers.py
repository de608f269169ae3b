"""Every test file that starts other processes (``clusterfed serve`` through the test
helpers, the CLI, pip) or a browser carries the ``server`` mark, so that ``make
test-fast`` (``-m "not server"``) stays the in-process tests only."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
STARTS_PROCESSES = re.compile(
    r"\b(ClusterProcess|federation_pair|issuer_and_acceptor|revocation_trio|subprocess|"
    r"Popen|chromium|playwright)\b"
)
MARKED = re.compile(r"^pytestmark = .*pytest\.mark\.server", re.MULTILINE)


def unmarked(paths: list[Path]) -> list[str]:
    return [
        path.name
        for path in paths
        if STARTS_PROCESSES.search(path.read_text(encoding="utf-8"))
        and not MARKED.search(path.read_text(encoding="utf-8"))
    ]


def test_files_that_start_processes_are_marked_server() -> None:
    files = sorted(p for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)
    assert unmarked(files) == []


def test_the_check_sees_an_unmarked_file(tmp_path: Path) -> None:
    bare = tmp_path / "test_bare.py"
    bare.write_text("from clusterfed.server.testing import ClusterProcess\n")
    marked = tmp_path / "test_marked.py"
    marked.write_text(f"{bare.read_text()}pytestmark = pytest.mark.server\n")
    assert unmarked([bare, marked]) == ["test_bare.py"]
