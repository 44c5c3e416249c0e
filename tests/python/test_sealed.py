"""Sealed mode from Python: the segment arrives as a sealed memfd descriptor."""

from __future__ import annotations

import os
from typing import List

import pytest

from harness import Daemon, generate


@pytest.fixture
def daemon_args() -> List[str]:
    return ["--sealed"]


def test_a_sealed_segment_is_passed_mapped_and_read_in_place(daemon: Daemon):
    generate(daemon.root / "a.raw", 20_000)
    with daemon.client() as client:
        with client.open("a.raw") as rec:
            assert rec.segment_path is None and rec.rows == 20_000
            base, size = rec.buffer.address, rec.buffer.size
            assert size == rec.segment_size
            for column in rec.table.columns:
                view = column.chunk(0).to_numpy(zero_copy_only=True)
                address = view.__array_interface__["data"][0]
                assert base <= address < base + size
            with open("/proc/self/maps") as maps:
                lines = [line for line in maps if f"memfd:{rec.segment_name}" in line]
            assert lines and all(line.split()[1] == "r--s" for line in lines)
            t = rec.table.column("t").to_numpy()
            assert len(t) == 20_000 and (t[1:] >= t[:-1]).all()
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(f"evshm-v1-{daemon.pid}-")]
    assert leftovers == [], "sealed segments are no files"
