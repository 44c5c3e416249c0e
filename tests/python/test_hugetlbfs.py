"""Segments on hugetlbfs: files are whole huge pages, and every mapping is undone."""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Daemon, generate

PAGES = Path("/proc/sys/vm/nr_hugepages")


@pytest.fixture
def hugetlbfs(tmp_path: Path) -> Iterator[Path]:
    """A hugetlbfs mount with 16 huge pages reserved; skipped where that is not possible."""
    mount = tmp_path / "huge"
    mount.mkdir()
    try:
        previous = PAGES.read_text().strip()
        PAGES.write_text(str(max(int(previous), 16)))
    except OSError:
        pytest.skip("cannot reserve huge pages here (needs root)")
    try:
        done = subprocess.run(["mount", "-t", "hugetlbfs", "none", str(mount)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot mount a hugetlbfs here")
        yield mount
        subprocess.run(["umount", str(mount)], check=True)
    finally:
        PAGES.write_text(previous)


@pytest.fixture
def daemon_args(hugetlbfs: Path) -> list[str]:
    return ["--shm-dir", str(hugetlbfs)]


def test_a_segment_on_hugetlbfs_is_read_and_fully_unmapped(daemon: Daemon, hugetlbfs: Path):
    generate(daemon.root / "a.raw", 20_000)
    with daemon.client() as client:
        rec = client.open("a.raw")
        [segment] = [chunk.segment for chunk in rec.chunks]
        assert segment.path is not None and segment.path.startswith(str(hugetlbfs))
        assert os.stat(segment.path).st_size % (2 << 20) == 0
        [buffer] = rec.segment_buffers
        assert buffer.size == segment.size < os.stat(segment.path).st_size
        assert rec.table.num_rows == 20_000
        rec.release()
        del rec, buffer
        gc.collect()
        client.stats()  # flushes the release
    with open("/proc/self/maps") as maps:
        assert not [line for line in maps if str(hugetlbfs) in line], "a mapping leaked"
