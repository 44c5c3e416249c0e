"""Arenas on hugetlbfs: files and extents are whole huge pages, read in place, and the
one mapping of an arena is undone once evshmd says it is gone and nothing reads it."""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Daemon, arena_file, extent_ranges, generate

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


def test_an_arena_on_hugetlbfs_is_read_in_place_and_fully_unmapped(daemon: Daemon,
                                                                   hugetlbfs: Path):
    huge = 2 << 20
    generate(daemon.root / "a.raw", 20_000)
    generate(daemon.root / "b.raw", 20_000, seed=2)
    with daemon.client() as client:
        rec = client.open("a.raw")
        [extent] = [chunk.extent for chunk in rec.chunks]
        path = arena_file(extent, hugetlbfs)
        arenas = [n for n in os.listdir(hugetlbfs) if n.startswith(daemon.arena_prefix)]
        assert daemon.arenas() == [] and arenas == [extent.arena]
        size = os.stat(path).st_size
        assert size % huge == 0
        # Extents are whole huge pages: hugetlbfs allocates nothing smaller.
        assert extent.offset % huge == 0
        [buffer] = rec.stream_buffers
        assert buffer.size == extent.size < size
        [(start, _)] = extent_ranges(rec)
        assert start % huge == 0  # the mapping of a hugetlbfs file is huge-page aligned
        assert rec.table.num_rows == 20_000
        other = client.open("b.raw")
        [second] = [chunk.extent for chunk in other.chunks]
        assert second.arena == extent.arena and second.offset % huge == 0
        assert second.offset >= extent.offset + huge or extent.offset >= second.offset + huge
        rec.release()
        other.release()
        del rec, other, buffer
        gc.collect()
        client.stats()  # flushes the releases
        assert client.evict()["evicted"] == 2

        # The process keeps the arena mapped (a warm open maps nothing) while the
        # connection that named it lives, and after evshmd unlinked it: a mapping
        # outlives the file.
        def mapped() -> list[str]:
            with open("/proc/self/maps") as maps:
                return [line for line in maps if str(hugetlbfs) in line]

        assert len(mapped()) == 1
        daemon.proc.terminate()
        assert daemon.proc.wait(timeout=20) == 0
        assert [n for n in os.listdir(hugetlbfs) if n.startswith(daemon.arena_prefix)] == [], \
            "the arena is unlinked"
        assert len(mapped()) == 1
    # The connection closed (evshmd may be gone, and its arenas with it), the process
    # forgets the arenas it named: the mapping is undone as soon as nothing reads it
    # (nothing does), which frees the mount's huge pages.
    gc.collect()
    assert mapped() == [], "a mapping leaked"
