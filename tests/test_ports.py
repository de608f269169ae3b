"""Ports for test servers: a block per pytest-xdist worker, handed out in turn."""

from __future__ import annotations

import socket

import pytest
from clusterfed.server.testing import PortAllocator, free_port, worker_port_block

EPHEMERAL_START = 32768  # Linux's default ip_local_port_range starts here


def test_workers_get_disjoint_blocks_below_the_ephemeral_range() -> None:
    for workers in (1, 2, 3, 4, 8):
        blocks = [worker_port_block(f"gw{n}", workers) for n in range(workers)]
        ports = [port for block in blocks for port in block]
        assert len(ports) == len(set(ports)), workers
        assert min(ports) >= 1024 and max(ports) < EPHEMERAL_START
    # Not under xdist: the first block.
    assert worker_port_block(None, 1) == worker_port_block("gw0", 1)


def test_ports_are_handed_out_in_turn_and_wrap() -> None:
    allocator = PortAllocator(range(20000, 20003), first=20001, can_bind=lambda _: True)
    assert [allocator.take() for _ in range(4)] == [20001, 20002, 20000, 20001]


def test_ports_that_cannot_be_bound_are_skipped() -> None:
    allocator = PortAllocator(range(20000, 20004), can_bind=lambda port: port % 2 == 1)
    assert [allocator.take() for _ in range(3)] == [20001, 20003, 20001]


def test_a_port_a_server_listens_on_is_never_handed_out() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"no free loopback port in {port}-{port}"):
            PortAllocator(range(port, port + 1)).take()


def test_free_port_hands_out_a_new_port_each_time() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
