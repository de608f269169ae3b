"""What the cluster's shared rate limits cost a cold validation, and a cached one.

Every cold validation spends a token of two shared buckets (the client's, the issuer's):
a statement each on the database every worker shares (``storage.rate_buckets``). Here two
c97qk processes on one database, one real qr1hi issuer, all on loopback as in
``bench.blackbox``: ``shared`` is ``clusterfed serve`` as shipped; ``memory`` is the same
app with the buckets in its own process (as before the limits were shared). Both have
limits far above what the load reaches, so every request pays for its buckets and none is
refused. ``wrk`` sends a never-seen (valid) token per request (``cold``), then one cached
token (``cached``); variants alternate within each round and the ratio is taken within the
round; the median over the rounds is printed. The cold path must keep at least 90% of its
rate; the cached path never reaches a bucket. Beside the rates, c97qk's CPU time per
request (its process's, from ``/proc``, until it is idle again): on a machine shared with
other work the rates swing with the neighbours' load, the CPU a request costs much less.

    python -m bench shared_limits        # BENCH_SECONDS, BENCH_ROUNDS, BENCH_BACKENDS
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import blackbox
from bench.blackbox import LUA, Served, WrkResult, config, cpu_seconds, settle, write_lines, wrk

TARGET = 0.9
# Far above what the load reaches: every request spends from both buckets, none refused.
UNREACHED = {"ColdValidationRate": 1_000_000, "IssuerValidationRate": 1_000_000}
# Both variants run as ``serve`` runs one worker (serving.py), but for the one line.
RUNNER = """
import sys, uvicorn
from clusterfed.config import load_config
from clusterfed.server.app import create_app
from clusterfed.server.serving import freeze_startup_objects, uvicorn_options
app = create_app(load_config(sys.argv[1]))
if {in_process}:
    app.state.federation.validator.throttle.budget = None  # the buckets in this process
freeze_startup_objects()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), **uvicorn_options())
"""


Runs = dict[str, list[tuple[WrkResult, float]]]  # variant -> (wrk's figures, CPU s/request)


def run_backend(backend: str, workdir: Path) -> Runs:
    rounds = blackbox.ROUNDS
    script = write_lines(workdir / "rotate.lua", [LUA])
    # Two never-seen pools per round (one per variant); few "many" tokens: unused here.
    blackbox.ROUNDS, blackbox.MANY_TOKENS = 2 * rounds, 10
    try:
        with blackbox.databases(backend, workdir) as (qr1hi_url, c97qk_url):
            tokens = asyncio.run(blackbox.populate(qr1hi_url, c97qk_url))
            return _measure(workdir, script, tokens, qr1hi_url, c97qk_url, rounds)
    finally:
        blackbox.ROUNDS, blackbox.MANY_TOKENS = rounds, 12_000


def _measure(
    workdir: Path, script: Path, tokens: Any, qr1hi_url: str, c97qk_url: str, rounds: int
) -> Runs:
    cached = write_lines(workdir / "cached.txt", [tokens.cached])
    pools = [write_lines(workdir / f"cold{n}.txt", pool) for n, pool in enumerate(tokens.cold)]
    issuer = Served(
        "qr1hi", config("qr1hi", qr1hi_url, **blackbox.ISSUER_LISTS_C97QK), workdir, remote=True
    )
    servers = [issuer.start()]
    try:
        sections: dict[str, Any] = {
            "RemoteClusters": {"qr1hi": {"Host": f"127.0.0.1:{issuer.port}", "Scheme": "http"}},
            "Login": {"RemoteTokenRefresh": "1h"},
            "Federation": UNREACHED,
        }
        variants = {
            name: Served(
                f"c97qk-{name}",
                config("c97qk", c97qk_url, **sections),
                workdir,
                runner=RUNNER.format(in_process=name == "memory"),
            )
            for name in ("shared", "memory")
        }
        for server in variants.values():
            servers.append(server.start())
            wrk(server.url, script, tokens=cached, seconds=1)  # warm-up
        settle(servers)
        results: Runs = {f"{kind} {name}": [] for kind in ("cold", "cached") for name in variants}
        pool = iter(pools)
        for round_number in range(rounds):
            order = list(variants) if round_number % 2 == 0 else list(variants)[::-1]
            for kind in ("cold", "cached"):
                for name in order:
                    tokens_file = next(pool) if kind == "cold" else cached
                    cpu = cpu_seconds(variants[name])
                    result = wrk(variants[name].url, script, tokens=tokens_file)
                    if kind == "cold" and result.requests > blackbox.COLD_POOL:
                        raise RuntimeError("cold pool too small: tokens were reused")
                    settle(servers)
                    cpu = (cpu_seconds(variants[name]) - cpu) / max(1, result.requests)
                    results[f"{kind} {name}"].append((result, cpu))
        return results
    finally:
        for server in reversed(servers):
            server.stop()


def report(backend: str, results: Runs) -> None:
    seconds, rounds = blackbox.DURATION, blackbox.ROUNDS
    connections = blackbox.CONNECTIONS
    print(f"-- {backend} (one worker each; wrk -t1 -c{connections}, {seconds:g}s x {rounds})")
    for kind in ("cold", "cached"):
        shared, memory = results[f"{kind} shared"], results[f"{kind} memory"]
        pairs = list(zip(shared, memory, strict=True))
        ratio = statistics.median(s.rps / m.rps for (s, _), (m, _) in pairs)
        cpu_ratio = statistics.median(m_cpu / s_cpu for (_, s_cpu), (_, m_cpu) in pairs)
        target = f" (target >= {TARGET:g})" if kind == "cold" else ""
        failures = ", ".join(str(sum(r.failures for r, _ in runs)) for runs in (shared, memory))
        print(
            f"{kind:<7} shared buckets {statistics.median(r.rps for r, _ in shared):7.0f} req/s"
            f" {statistics.median(c for _, c in shared) * 1e6:6.0f} us CPU/request,"
            f" in-process buckets {statistics.median(r.rps for r, _ in memory):7.0f} req/s"
            f" {statistics.median(c for _, c in memory) * 1e6:6.0f} us CPU/request:"
            f" rate ratio {ratio:.3f}, CPU ratio (in-process/shared) {cpu_ratio:.3f}{target};"
            f" failures (shared, in-process) {failures}"
        )


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench.shared_limits needs wrk: apt-get install -y wrk")
    backends = ["sqlite"] + (["postgresql"] if blackbox.postgres_available() else [])
    if only := os.environ.get("BENCH_BACKENDS"):
        backends = [b for b in backends if b in only.split(",")]
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-limits-{backend}-") as tmp:
            report(backend, run_backend(backend, Path(tmp)))


if __name__ == "__main__":
    main()
