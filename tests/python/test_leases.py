"""Leases follow the Arrow buffers; forked children get their own connection."""

from __future__ import annotations

import gc
import os
import time

import pytest

import evshm
from harness import Daemon, segment_file


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
        assert client.stats()["leases"] == 1  # the table still points into the segment
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


def test_mapping_outlives_the_daemon_and_its_segment(daemon: Daemon, real):
    """Mappings stay valid after the lease ends, even after the daemon unlinks."""
    client = daemon.client()
    table = client.open("evt3_test_pedestrians.raw").table
    xs_before = table.column("x").to_pylist()
    daemon.proc.terminate()
    assert daemon.proc.wait(timeout=20) == 0
    assert not daemon.segments()
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
            dropped = [segment_file(chunk.segment) for chunk in rec.chunks]
        gc.collect()
        kept = [segment_file(chunk.segment) for chunk in held.chunks]
        evicted = client.evict()
        assert evicted["evicted"] == len(dropped)
        assert evicted["bytes_evicted"] >= sum(chunk.segment.size for chunk in rec.chunks)
        assert not any(os.path.exists(path) for path in dropped)
        assert all(os.path.exists(path) for path in kept)
        assert held.table.num_rows == 200_000
        stats = client.stats()
        assert (stats["evictions"], stats["bytes_evicted"]) == (evicted["evicted"],
                                                                evicted["bytes_evicted"])
        assert client.evict() == {"evicted": 0, "bytes_evicted": 0}
        held.release()
