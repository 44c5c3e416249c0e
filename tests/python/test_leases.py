"""Leases follow the Arrow buffers; forked children get their own connection."""

from __future__ import annotations

import gc
import os
import time

import pytest

import evshm
import workers
from evshm import _arena
from harness import Daemon, arena_file, arena_mapping, generate


def wait_for(predicate, what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_lease_is_held_while_the_table_lives(daemon: Daemon, real):
    with daemon.client() as client:
        rec = client.open("evt3_sample.raw")
        assert client.stats()["leases"] == 1
        table = rec.table
        rec.release()
        rec.release()  # idempotent
        assert client.stats()["leases"] == 1  # the table still points into the extent
        del table
        gc.collect()
        assert client.stats()["leases"] == 0


def test_a_numpy_view_holds_the_lease_too(daemon: Daemon, real):
    with daemon.client() as client:
        with client.open("evt3_sample.raw") as rec:
            x = rec.table.column("x").chunk(0).to_numpy(zero_copy_only=True)
        assert client.stats()["leases"] == 1
        first = int(x[0])
        del x
        gc.collect()
        assert client.stats()["leases"] == 0
        assert first >= 0


def test_context_manager_releases_at_once(daemon: Daemon, real):
    with daemon.client() as client:
        with client.open("evt3_test_pedestrians.raw") as rec:
            assert rec.table.num_rows == 5000
        assert client.stats()["leases"] == 0


def test_dropping_the_recording_releases(daemon: Daemon, real):
    with daemon.client() as client:
        client.open("evt3_test_pedestrians.raw")  # result dropped immediately
        assert client.stats()["leases"] == 0


def test_closing_the_connection_ends_its_leases(daemon: Daemon, real):
    with daemon.client() as observer:
        client = daemon.client()
        table = client.open("evt3_test_pedestrians.raw").table
        client.close()  # data still alive: the connection (and lease) stays
        assert observer.stats()["leases"] == 1
        assert observer.stats()["connections"] == 2
        del table
        gc.collect()
        wait_for(lambda: observer.stats()["connections"] == 1, "the connection to close")
        assert observer.stats()["leases"] == 0


def test_mapping_outlives_the_daemon_and_its_arena(daemon: Daemon, real):
    """Mappings stay valid after the lease ends, even after the daemon unlinks."""
    client = daemon.client()
    rec = client.open("evt3_test_pedestrians.raw")
    table = rec.table
    [arena] = {chunk.extent.arena for chunk in rec.chunks}
    assert daemon.arenas() == [arena_file(rec.chunks[0].extent)]
    del rec
    xs_before = table.column("x").to_pylist()
    daemon.proc.terminate()
    assert daemon.proc.wait(timeout=20) == 0
    assert not daemon.arenas()
    arena_mapping(arena)  # still mapped here, the file unlinked
    assert table.column("x").to_pylist() == xs_before
    del table
    gc.collect()
    with pytest.raises(evshm.ConnectionLost) as info:
        client.stats()
    assert daemon.socket in str(info.value) and "no evshmd runs there" in str(info.value)
    client.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_forked_child_uses_its_own_connection(daemon: Daemon, real):
    client = daemon.client()
    rec = client.open("evt3_test_pedestrians.raw")
    parent_table = rec.table
    rec.release()
    assert client.stats()["connections"] == 1
    pid = os.fork()
    if pid == 0:  # child: must not touch the parent's socket or leases
        code = 1
        try:
            child_rec = client.open("evt3_test_pedestrians.raw")
            stats = client.stats()
            # pyarrow-stubs type Table.equals as returning a Table; it returns a bool.
            ok: bool = (child_rec.cached  # type: ignore[assignment]
                        and stats["connections"] == 2 and stats["leases"] == 2
                        and child_rec.table.equals(parent_table))
            del parent_table  # the parent's lease: no release from here
            child_rec.release()
            gc.collect()
            ok = ok and client.stats()["leases"] == 1
            client.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    wait_for(lambda: client.stats()["connections"] == 1, "the child's connection to close")
    assert client.stats()["leases"] == 1  # the parent's lease survived the child
    del parent_table
    gc.collect()
    assert client.stats()["leases"] == 0
    client.close()


def test_threads_sharing_one_client(daemon: Daemon, real):
    """Finalizers fire in any thread, often while another thread's request is in flight:
    their releases are queued and sent later, never interleaved with a request."""
    import threading

    errors = []
    names = ["evt3_test_pedestrians.raw", "NCARS_obj_004397_td.dat", "evt3_sample.raw"]
    with daemon.client() as client:

        def work(index: int) -> None:
            try:
                for i in range(25):
                    rec = client.open(names[(index + i) % len(names)])
                    column = rec.table.column("t")
                    rec.release()
                    assert column.length() == rec.rows
                    if i % 5 == 0:
                        client.stats()
                    del rec, column
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        gc.collect()
        stats = client.stats()  # flushes anything still queued first
        assert stats["leases"] == 0
        assert stats["opens"] == 100 and stats["decodes"] == 3


UNPICKLE = """
import pickle, sys
client = pickle.loads(sys.stdin.buffer.read())
with client.open("evt3_test_pedestrians.raw") as rec:
    print(rec.rows, rec.cached, client.stats()["connections"])
client.close()
"""


def test_pickled_client_in_another_process(daemon: Daemon, real):
    """What a spawned DataLoader worker does: unpickle the client, connect on first use."""
    import pickle
    import subprocess
    import sys

    from harness import python_env

    with daemon.client() as client:
        client.open("evt3_test_pedestrians.raw").release()
        proc = subprocess.run([sys.executable, "-c", UNPICKLE], input=pickle.dumps(client),
                              env=python_env(), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout.decode().split() == ["5000", "True", "2"]


def test_evict_drops_what_no_one_holds_and_keeps_what_someone_does(synthetic: Daemon):
    with synthetic.client() as client:
        held = client.open("small.raw")
        with client.open("big.raw") as rec:
            dropped = [chunk.extent for chunk in rec.chunks]
        gc.collect()
        kept = [chunk.extent for chunk in held.chunks]
        before = client.stats()
        # Two decodes of one chunk each: two extents (each with the chunk's event and
        # trigger tables).
        assert before["extents"] == len(dropped) + len(kept) == 2
        [arena] = {extent.arena for extent in dropped + kept}
        assert os.stat(arena_file(dropped[0])).st_blocks * 512 == before["bytes_resident"]
        evicted = client.evict()
        assert evicted["evicted"] == len(dropped)
        assert evicted["bytes_evicted"] >= sum(extent.size for extent in dropped)
        after = client.stats()
        # big.raw's extents are free again, and with --provision 0 their pages went back
        # to the system at once: the arena file keeps the pages of small.raw's only.
        assert after["extents"] == before["extents"] - len(dropped)
        assert after["bytes_resident"] == before["bytes_resident"] - evicted["bytes_evicted"]
        assert after["bytes_provisioned"] == 0
        assert after["bytes_free"] == after["bytes_arenas"] - after["bytes_resident"]
        assert os.stat(arena_file(kept[0])).st_blocks * 512 == after["bytes_resident"]
        # The arena itself stays (small.raw lies in it), and so does this process's
        # one mapping of it.
        assert synthetic.arenas() == [arena_file(kept[0])]
        arena_mapping(arena)
        assert held.table.num_rows == 200_000
        assert (after["evictions"], after["bytes_evicted"]) == (evicted["evicted"],
                                                                evicted["bytes_evicted"])
        assert client.evict() == {"evicted": 0, "bytes_evicted": 0}
        held.release()


def test_an_extent_is_reused_only_once_no_buffer_of_it_is_alive(daemon: Daemon):
    """An evicted chunk's bytes go to the next decode that fits, but never while any
    buffer of a recording that lies there is alive: its lease keeps the chunk resident
    (evict passes it over) and its extent taken."""
    for name, seed in (("a.raw", 1), ("b.raw", 2), ("c.raw", 3)):
        generate(daemon.root / name, 20_000, width=160, height=120, seed=seed)
    expected = {}
    with daemon.client() as client:
        for name in ("a.raw", "b.raw", "c.raw"):
            with client.open(name) as rec:
                expected[name] = rec.table.to_pydict()
        client.evict()
        assert client.stats()["extents"] == 0
        rec = client.open("a.raw")
        [first] = [chunk.extent for chunk in rec.chunks]
        address = rec.stream_buffers[0].address
        x = rec.numpy()["x"]  # a view: it keeps the lease
        rec.release()
        del rec
        gc.collect()
        assert client.stats()["leases"] == 1
        assert client.evict()["evicted"] == 0, "a leased chunk is not evicted"

        def overlaps(a: evshm.ExtentInfo, b: evshm.ExtentInfo) -> bool:
            return (a.arena == b.arena and a.offset < b.offset + b.size
                    and b.offset < a.offset + a.size)

        with client.open("b.raw") as other:
            [second] = [chunk.extent for chunk in other.chunks]
            assert not overlaps(first, second), (first, second)
            assert other.table.to_pydict() == expected["b.raw"]
        assert x.tolist() == expected["a.raw"]["x"], "a.raw's bytes are untouched"
        assert client.evict()["evicted"] == 1, "b.raw, released, goes; a.raw stays"
        del x
        gc.collect()
        assert client.stats()["leases"] == 0  # the stats request sent the release first
        assert client.evict()["evicted"] == 1, "a.raw goes once nothing of it is alive"
        # Its bytes are free now, and the next decode that fits takes them: c.raw's
        # table lies where a.raw's lay, at the same address of this process's mapping.
        with client.open("c.raw") as third:
            [extent] = [chunk.extent for chunk in third.chunks]
            assert overlaps(first, extent), (first, extent)
            assert third.stream_buffers[0].address - extent.offset == address - first.offset
            assert third.table.to_pydict() == expected["c.raw"]
        assert client.stats()["leases"] == 0


@pytest.mark.parametrize("daemon_args", [["--provision", "4M", "--idle-release", "1"]])
def test_freed_pages_stay_provisioned_up_to_the_provision_and_the_rest_go_back(
        synthetic: Daemon):
    """--provision: free pages the daemon keeps allocated for the next cold opens. They
    are made in the background at start; an evicted chunk's pages beyond them go back to
    the system (at evict, or after --idle-release seconds idle); the next decode takes
    provisioned pages first."""
    provision = 4 << 20
    with synthetic.client() as client:
        wait_for(lambda: client.stats()["bytes_provisioned"] >= provision,
                 "the pages of --provision to be made", 30.0)
        stats = client.stats()
        assert stats["bytes_provisioned"] == provision and stats["extents"] == 0
        [arena] = synthetic.arenas()
        assert os.stat(arena).st_blocks * 512 == provision, "allocated in the arena file"
        with client.open("big.raw") as rec:  # 39 MB: more than the provision
            size = sum(chunk.extent.size for chunk in rec.chunks)
            assert size > provision
            assert rec.table.num_rows == 3_000_000
        evicted = client.evict()
        assert evicted["evicted"] == 1
        # The evicted pages beyond --provision go back, now or once idle.
        wait_for(lambda: os.stat(arena).st_blocks * 512 <= provision,
                 "the pages beyond --provision to go back", 30.0)
        stats = client.stats()
        assert stats["extents"] == 0 and stats["bytes_resident"] == 0
        assert stats["bytes_provisioned"] == provision
        assert os.stat(arena).st_blocks * 512 == provision
        # A small recording's decode lies in provisioned pages, and the daemon makes the
        # provision again in the background: the file holds both, nothing more.
        with client.open("small.raw") as rec:
            assert rec.rows == 200_000
            resident = client.stats()["bytes_resident"]
            assert 0 < resident <= provision
            wait_for(lambda: client.stats()["bytes_provisioned"] == provision,
                     "the provision to be made again", 30.0)
            assert os.stat(arena).st_blocks * 512 == provision + resident


@pytest.mark.parametrize("daemon_args", [["--arena-size", "4M"]])
def test_an_arena_evshmd_drops_is_unmapped_once_the_client_hears_of_it(synthetic: Daemon):
    """Arenas of 4 MiB: small.raw (2.6 MB) lies in the first, big.raw (39 MB) in one of
    its own size. Evicted, the second arena holds nothing, and evshmd drops it (it keeps
    the first): the next reply on the connection says it is gone, and the client unmaps
    it (nothing reads it), so that neither the file nor this process's mapping is left."""
    with synthetic.client() as client:
        with client.open("small.raw") as small, client.open("big.raw") as big:
            [first] = {chunk.extent.arena for chunk in small.chunks}
            [second] = {chunk.extent.arena for chunk in big.chunks}
            assert first != second
            assert os.stat(arena_file(big.chunks[0].extent)).st_size >= big.stream_buffers[0].size
            arena_mapping(first)
            arena_mapping(second)
        assert _arena.mapped_arenas() >= 2
        assert sorted(synthetic.arenas()) == sorted(f"/dev/shm/{n}" for n in (first, second))
        assert client.evict()["evicted"] == 2
        stats = client.stats()
        assert stats["arenas"] == 1 and stats["extents"] == 0
        assert synthetic.arenas() == [f"/dev/shm/{first}"], "the empty arena is dropped"
        arena_mapping(second)  # this process has not heard of it yet
        with client.open("small.raw") as rec:  # whose reply says that the arena is gone
            assert [chunk.extent.arena for chunk in rec.chunks] == [first]
            gc.collect()
            assert workers.mappings_of(f"/dev/shm/{second}") == 0, "unmapped"
            arena_mapping(first)
        assert second not in _arena._MAPPED
