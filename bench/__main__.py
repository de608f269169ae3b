"""``make bench``: run every benchmark module (or the ones named on the command line)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "bench.middleware",
    "bench.permissions",
    "bench.http_clients",
    "bench.blackbox",
    "bench.shared_limits",
    "bench.keep",
    "bench.keep_remote",
    "bench.cli",
]


def main(argv: list[str]) -> int:
    for name in argv or BENCHMARKS:
        module = importlib.import_module(name if name.startswith("bench.") else f"bench.{name}")
        print(f"== {module.__name__}", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
