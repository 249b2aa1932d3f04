"""Helpers for tests that run a function in two CPU processes joined by a gloo process group."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist


def free_port() -> int:
    """Return a TCP port on localhost that is free now (the group's rendezvous port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gloo_group(rank: int, world: int, port: int) -> Iterator[None]:
    """Join this process to a gloo group of ``world`` processes for the ``with`` block."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()
