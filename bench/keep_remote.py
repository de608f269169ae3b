"""A block of another cluster read through the home cluster: speed and memory.

    .venv/bin/python -m bench keep_remote

Two real clusters on loopback (``python -m clusterfed serve``, one worker each, plain
HTTP, a Directory volume each): c97qk holds a random 64 MiB block, qr1hi lists c97qk in
``RemoteClusters``. In one run:

1. MB/s of the block read directly from c97qk (``<md5>+<size>+A<sig>@<exp>``) and of the
   same block read through qr1hi (``...+Rc97qk-<sig>@<exp>``: qr1hi salts the token,
   fetches it from c97qk and streams it on, md5 checked), each the median of ``ROUNDS``
   reads taken in alternation, so a disturbance of the shared machine hits both. Target:
   through qr1hi / direct >= 0.7.
2. The growth of qr1hi's resident memory (peak during the reads minus before them) while
   it proxies one 64 MiB read, and eight at once. Targets: < 40 MiB and < 100 MiB.
   The peak is the kernel's high-water mark (``VmHWM``, reset before each measure
   through ``/proc/<pid>/clear_refs``) where it can be reset, else sampled every 2 ms.

The client is a plain socket that counts the bytes without keeping them
(``bench.keep.transfer_get``), so the numbers are the servers'.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clusterfed.server.testing import (
    ClusterProcess,
    cluster_config,
    free_port,
    remote_entry,
    running,
)
from clusterfed.tokens import parse_token, salt

from bench.keep import BLOCK_SIZE, rate, transfer_get, transfer_put

ROUNDS = 5
CONCURRENT = 8
MiB = 1024 * 1024
TARGET_RATIO = 0.7
TARGET_ONE_MIB = 40
TARGET_EIGHT_MIB = 100


def _config(cluster_id: str, workdir: Path, remotes: dict[str, Any]) -> dict[str, Any]:
    database = f"sqlite+aiosqlite:///{workdir / f'{cluster_id}.db'}"
    config = cluster_config(
        cluster_id,
        database,
        remotes=remotes,
        system_root_token=f"{cluster_id}-bench-keep-remote-root-token",
    )
    config["Clusters"][cluster_id]["Volumes"] = {
        f"{cluster_id}-nyw5e-000000000000000": {
            "Driver": "Directory",
            "DriverParameters": {"Root": str(workdir / f"{cluster_id}-keep")},
        }
    }
    return config


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib(pid, "VmHWM") <= _status_kib(pid, "VmRSS") + 64


def peak_growth_mib(pid: int, work: Any) -> float:
    """How far the resident memory of ``pid`` rose above its level before ``work()``."""
    time.sleep(0.3)  # let the previous work's memory settle
    before = _status_kib(pid, "VmRSS")
    exact = _reset_peak(pid)
    sampled = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            sampled.append(_status_kib(pid, "VmRSS"))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    peak = _status_kib(pid, "VmHWM") if exact else max(sampled)
    return max(0, peak - before) / 1024


async def bench_remote(workdir: Path) -> dict[str, float]:
    c97qk_port = free_port()
    data = os.urandom(BLOCK_SIZE)
    md5 = hashlib.md5(data).hexdigest()
    home_config = _config("qr1hi", workdir, {"c97qk": remote_entry(c97qk_port)})
    qr1hi_proc = ClusterProcess(home_config, workdir)
    remote_config = _config("c97qk", workdir, {"qr1hi": remote_entry(qr1hi_proc.port)})
    c97qk_proc = ClusterProcess(remote_config, workdir, port=c97qk_port)
    with running(qr1hi_proc) as qr1hi, running(c97qk_proc) as c97qk:
        _, token = await qr1hi.new_user()
        # What qr1hi sends c97qk for this user: c97qk signs for exactly that credential.
        salted = salt(parse_token(token), "c97qk").encode()
        _, signed = await asyncio.to_thread(transfer_put, c97qk.base_url, salted, data)
        assert signed.startswith(f"{md5}+{BLOCK_SIZE}+A"), signed
        through = signed.replace("+A", "+Rc97qk-")

        def direct() -> float:
            seconds, size = transfer_get(c97qk.base_url, salted, signed)
            assert size == BLOCK_SIZE
            return seconds

        def via_home() -> float:
            seconds, size = transfer_get(qr1hi.base_url, token, through)
            assert size == BLOCK_SIZE
            return seconds

        await asyncio.to_thread(via_home)  # warm: connections, c97qk's block server list
        directs, vias = [], []
        for _ in range(ROUNDS):
            directs.append(await asyncio.to_thread(direct))
            vias.append(await asyncio.to_thread(via_home))

        pid = qr1hi_proc.proc.pid if qr1hi_proc.proc else 0

        def eight() -> None:
            with ThreadPoolExecutor(CONCURRENT) as pool:
                for seconds in pool.map(lambda _: via_home(), range(CONCURRENT)):
                    assert seconds > 0

        one_mib = await asyncio.to_thread(peak_growth_mib, pid, via_home)
        eight_mib = await asyncio.to_thread(peak_growth_mib, pid, eight)
    return {
        "direct": rate(directs),
        "via": rate(vias),
        "one": one_mib,
        "eight": eight_mib,
    }


def report(result: dict[str, float]) -> None:
    ratio = result["via"] / result["direct"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "BELOW TARGET"

    print(f"  {'64 MiB block read directly from c97qk':<48} {result['direct']:8.1f} MB/s")
    print(f"  {'the same block read through qr1hi':<48} {result['via']:8.1f} MB/s")
    print(
        f"  {'through qr1hi / direct':<48} {ratio:8.2f}       "
        f"(target >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)})"
    )
    print(
        f"  {'qr1hi memory growth, one 64 MiB proxied read':<48} {result['one']:8.1f} MiB  "
        f"(target < {TARGET_ONE_MIB}: {verdict(result['one'] < TARGET_ONE_MIB)})"
    )
    print(
        f"  {'qr1hi memory growth, eight at once':<48} {result['eight']:8.1f} MiB  "
        f"(target < {TARGET_EIGHT_MIB}: {verdict(result['eight'] < TARGET_EIGHT_MIB)})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clusterfed-bench-keep-remote-") as tmp:
        report(asyncio.run(bench_remote(Path(tmp))))


if __name__ == "__main__":
    main()
