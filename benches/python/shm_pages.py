"""What it costs to give new shared memory its pages: the floor under every cold open
that evshmd's provisioned pages (``--provision``) do not cover.

A decoder that writes its columns into an extent of an arena whose pages are not yet
allocated first has to get them from the kernel: allocated (``fallocate``, as evshmd
does, so that a full /dev/shm is an error rather than a SIGBUS), then faulted into the
writer's mapping page by page. Provisioned pages are allocated and mapped ahead, so a
decode into them pays only the writes (the last line). This script times exactly that,
with no decoding at all, for an extent of the size 33.5 M events take (13 bytes each, as
in benchmark section 4), in /dev/shm and as a memfd (evshmd's sealed mode), and prints it
as the event rate it caps a single thread at.

Whether tmpfs hands out 2 MiB pages is a kernel setting, not evshm's:
/sys/kernel/mm/transparent_hugepage/shmem_enabled for memfds, the ``huge=`` mount option
for /dev/shm. The script prints both and measures under whatever they are; run it as
root under another setting to compare (docs/BENCHMARKS.md has both).

    python3 benches/python/shm_pages.py [ROUNDS]
"""

from __future__ import annotations

import mmap
import os
import statistics
import sys
import time

EVENTS = 33_554_432
BYTES_PER_EVENT = 13
SIZE = EVENTS * BYTES_PER_EVENT
PIECE = 1 << 20


def provision(fd: int) -> float:
    """Seconds to allocate and write every page of a new file of SIZE bytes."""
    started = time.perf_counter()
    os.ftruncate(fd, SIZE)
    os.posix_fallocate(fd, 0, SIZE)
    with mmap.mmap(fd, SIZE) as mapping:
        piece = b"\1" * PIECE
        for offset in range(0, SIZE - PIECE + 1, PIECE):
            mapping[offset:offset + PIECE] = piece
    return time.perf_counter() - started


def in_dev_shm() -> float:
    path = f"/dev/shm/evshm-pages-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return provision(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def in_memfd() -> float:
    fd = os.memfd_create("evshm-pages")
    try:
        return provision(fd)
    finally:
        os.close(fd)


def copy_only() -> float:
    """Seconds to write the same bytes into pages that are already there: the copy alone."""
    with mmap.mmap(-1, SIZE) as mapping:
        piece = b"\1" * PIECE
        for offset in range(0, SIZE - PIECE + 1, PIECE):
            mapping[offset:offset + PIECE] = piece
        started = time.perf_counter()
        for offset in range(0, SIZE - PIECE + 1, PIECE):
            mapping[offset:offset + PIECE] = piece
        return time.perf_counter() - started


def setting(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return f"unreadable ({e.strerror})"


def dev_shm_mount() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == "/dev/shm":
                return fields[3]
    return "not mounted"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"shmem_enabled: {setting('/sys/kernel/mm/transparent_hugepage/shmem_enabled')}")
    print(f"/dev/shm mount options: {dev_shm_mount()}")
    print(f"extent: {SIZE / 1e6:.0f} MB ({EVENTS:,} events of {BYTES_PER_EVENT} B); "
          f"medians of {rounds} rounds")
    for label, run in [("/dev/shm file: fallocate + write every page", in_dev_shm),
                       ("memfd: fallocate + write every page", in_memfd),
                       ("pages already mapped (provisioned): write only", copy_only)]:
        seconds = statistics.median(run() for _ in range(rounds))
        print(f"{label:50s} {seconds * 1e3:7.1f} ms  = {EVENTS / seconds / 1e6:6.0f} Mev/s")


if __name__ == "__main__":
    main()
