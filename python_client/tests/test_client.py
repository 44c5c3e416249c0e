"""Client behaviour against the in-process fake daemon of fakes.py."""

from __future__ import annotations

import gc
import os
import socket

import pytest

import evshm


def test_hello_is_the_first_request(fake):
    client = evshm.Client("/fake.sock")
    sock = fake.sockets[0]
    assert sock.requests == [{"op": "hello", "version": 3,
                              "client": f"evshm-python/{evshm.__version__}"}]
    assert client.server == "fake/1"
    assert client.roots == [str(fake.tmp_path)]
    client.close()


def test_requests_through_a_socket_returning_five_bytes(fake):
    with evshm.Client("/fake.sock") as client:
        assert client.list() == [evshm.RecordingInfo("a.raw", "evt3", 12, True)]
        assert client.stats() == {"leases": 0, "extents": 1}
        with pytest.raises(evshm.RecordingNotFound):
            client.open("missing.raw")
        assert client.stats()["leases"] == 0  # error replies leave the stream in sync


def test_open_maps_the_arena_and_reads_in_place(fake):
    with evshm.Client("/fake.sock") as client:
        rec = client.open("a.raw")
        assert (rec.path, rec.rows, rec.format, rec.width, rec.height) == (
            "a.raw", 1000, "evt3", 640, 480)
        [chunk] = rec.chunks
        assert chunk.extent == evshm.ExtentInfo(fake.arena_name, 0, fake.chunks[0].size)
        assert (chunk.index, chunk.rows, chunk.start, chunk.end) == (0, 1000, 0, 1000)
        assert rec.lease == 1 and rec.cached is False and rec.zero_copy
        [buffer] = rec.stream_buffers
        base, size = buffer.address, buffer.size
        for column in rec.table.columns:
            assert column.num_chunks == 1
            for buf in column.chunks[0].buffers():
                if buf is not None:
                    assert base <= buf.address and buf.address + buf.size <= base + size
        assert rec.table.column("t").to_pylist()[:3] == [0, 1, 2]
        rec.release()


def test_release_waits_for_the_last_arrow_buffer(fake):
    with evshm.Client("/fake.sock") as client:
        rec = client.open("a.raw")
        column = rec.table.column("x")
        rec.release()
        rec.release()  # idempotent
        assert rec.released
        with pytest.raises(evshm.EvshmError):
            rec.table  # noqa: B018 - the property raises
        assert fake.leases == 1
        assert "release" not in fake.sockets[0].ops()
        del column
        gc.collect()
        assert fake.leases == 0
        assert fake.sockets[0].ops()[-1] == "release"


def test_context_manager_releases_when_nothing_is_kept(fake):
    with evshm.Client("/fake.sock") as client:
        with client.open("a.raw") as rec:
            assert rec.table.num_rows == 1000
        assert fake.leases == 0


def test_finalizer_in_the_middle_of_a_request_is_deferred(fake):
    """A mapping collected while a request is in flight must not write to the socket
    then (that would interleave two requests); its release follows the request."""
    with evshm.Client("/fake.sock") as client:
        kept = [client.open("a.raw").table]
        sock = fake.sockets[0]

        def collect_mid_request():
            kept.clear()
            gc.collect()

        sock.on_recv = collect_mid_request
        stats = client.stats()  # FakeSocket asserts no request is sent mid-reply
        assert stats["leases"] == 1  # counted while the stats request was answered
        assert sock.ops() == ["hello", "open", "stats", "release"]
        assert fake.leases == 0


def test_queued_release_is_flushed_before_the_next_request(fake):
    client = evshm.Client("/fake.sock")
    conn = client._slot.conn
    assert conn is not None
    table = client.open("a.raw").table
    with conn.lock:  # as if another request were in flight
        del table
        gc.collect()
        assert list(conn.pending) == [1]
    assert fake.sockets[0].ops() == ["hello", "open"]
    client.list()
    assert fake.sockets[0].ops() == ["hello", "open", "release", "list"]
    client.close()


def test_close_keeps_the_connection_while_data_is_alive(fake):
    client = evshm.Client("/fake.sock")
    table = client.open("a.raw").table
    client.close()
    client.close()  # idempotent
    sock = fake.sockets[0]
    assert not sock.closed and fake.leases == 1
    with pytest.raises(evshm.EvshmError, match="closed"):
        client.stats()
    del table
    gc.collect()
    assert sock.closed


def test_dropping_the_client_closes_the_connection(fake):
    client = evshm.Client("/fake.sock")
    sock = fake.sockets[0]
    del client
    gc.collect()
    assert sock.closed


def test_a_connection_evshmd_dropped_is_made_again_once(fake):
    """evshmd stopped or restarted: the request is repeated on a new connection."""
    client = evshm.Client("/fake.sock")
    first = fake.sockets[0]
    first.recv_error = ConnectionResetError(104, "Connection reset by peer")
    assert client.stats()["extents"] == 1
    assert first.closed
    assert len(fake.sockets) == 2 and fake.sockets[1].ops() == ["hello", "stats"]
    fake.sockets[1].recv_error = BrokenPipeError(32, "Broken pipe")
    fake.overrides["hello"] = b""  # the daemon hangs up at once: nothing runs there
    with pytest.raises(evshm.ConnectionLost) as info:
        client.list()
    assert str(info.value).startswith("evshmd at /fake.sock stopped or restarted, closing "
                                      "this client's connection (lost the connection")
    assert "and reconnecting failed: evshmd at /fake.sock closed the connection" in \
        str(info.value)
    client.close()


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), socket.timeout("timed out")])
def test_exception_mid_request_closes_the_socket(fake, failure):
    client = evshm.Client("/fake.sock")
    first = fake.sockets[0]
    first.recv_error = failure
    expected = KeyboardInterrupt if isinstance(failure, KeyboardInterrupt) \
        else evshm.ConnectionLost
    with pytest.raises(expected) as info:
        client.stats()
    assert first.closed
    if expected is evshm.ConnectionLost:
        assert "/fake.sock" in str(info.value)
    assert client.stats()["extents"] == 1  # the next request reconnects
    assert len(fake.sockets) == 2 and fake.sockets[1].ops() == ["hello", "stats"]
    client.close()


def test_daemon_hanging_up_is_connection_lost(fake):
    client = evshm.Client("/fake.sock")
    fake.overrides["stats"] = b'{"ok": tr'  # half a reply, then EOF
    with pytest.raises(evshm.ConnectionLost, match="in the middle of a reply"):
        client.stats()
    assert fake.sockets[0].closed
    client.close()


@pytest.mark.parametrize("raw", [b"garbage\n", b'{"ok": true}\n{"ok": true}\n'])
def test_malformed_reply_closes_the_socket(fake, raw):
    client = evshm.Client("/fake.sock")
    fake.overrides["stats"] = raw
    with pytest.raises(evshm.ProtocolError) as info:
        client.stats()
    assert info.value.code == evshm.MALFORMED_REPLY
    assert fake.sockets[0].closed
    client.close()


def test_malformed_open_reply_closes_the_socket(fake):
    client = evshm.Client("/fake.sock")
    fake.overrides["open"] = b'{"ok": true, "lease": "seven"}\n'
    with pytest.raises(evshm.ProtocolError):
        client.open("a.raw")
    assert fake.sockets[0].closed
    client.close()


def test_an_arena_of_the_wrong_size_is_refused_and_released(fake):
    fake.arena_size += 1
    with evshm.Client("/fake.sock") as client:
        with pytest.raises(evshm.MappingError, match="refusing to map it"):
            client.open("a.raw")
        assert fake.leases == 0
        assert fake.sockets[0].ops()[-1] == "release"


def test_row_count_mismatch_is_refused_and_released(fake):
    fake.chunks[0].rows = 999
    with evshm.Client("/fake.sock") as client:
        with pytest.raises(evshm.MappingError, match="999"):
            client.open("a.raw")
        assert fake.leases == 0


def test_unencodable_path_is_refused_locally(fake):
    with evshm.Client("/fake.sock") as client:
        with pytest.raises(evshm.PathRefused):
            client.open(b"\xff.raw")
        assert fake.sockets[0].ops() == ["hello"]


def test_fork_detection_opens_a_new_connection(fake, monkeypatch):
    client = evshm.Client("/fake.sock")
    parent_sock = fake.sockets[0]
    table = client.open("a.raw").table
    monkeypatch.setattr(os, "getpid", lambda: -42)  # we are "the child" now
    assert client.stats()["extents"] == 1
    child_sock = fake.sockets[1]
    assert parent_sock.closed and not parent_sock.shutdown_called
    assert child_sock.ops() == ["hello", "stats"]
    del table  # the parent's lease: the child must not release it
    gc.collect()
    assert "release" not in parent_sock.ops() + child_sock.ops()
    client.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_real_fork_child_gets_its_own_connection(tmp_path):
    """A real fork with a real socket: the child talks over its own connection."""
    import threading

    path = str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    peers = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            peers.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn):
        f = conn.makefile("rb")
        for line in f:
            op = __import__("json").loads(line)["op"]
            reply = b'{"ok":true,"version":3}\n' if op == "hello" else \
                f'{{"ok":true,"pid_conn":{len(peers)}}}\n'.encode()
            conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    client = evshm.Client(path, timeout=5)
    assert client.stats() == {"pid_conn": 1}
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if client.stats() == {"pid_conn": 2} else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert client.stats() == {"pid_conn": 2}  # the parent's connection still works
    client.close()
    server.close()


def test_a_missing_socket_given_by_path_advises_starting_one_there(tmp_path, monkeypatch):
    """$EVSHM_SOCKET is no advice for a path given explicitly: it is ignored then."""
    monkeypatch.setenv("EVSHM_SOCKET", str(tmp_path / "elsewhere.sock"))
    path = str(tmp_path / "nothing.sock")
    with pytest.raises(evshm.ConnectionLost) as info:
        evshm.Client(path)
    assert str(info.value) == (
        f"cannot connect to evshmd at {path}: no such socket, no evshmd runs there; start one "
        f"there with evshm.start(ROOT, socket={path!r}) or `python -m evshm --socket {path} "
        "start ROOT`")


def test_a_missing_default_socket_advises_evshm_socket_too(tmp_path, monkeypatch):
    path = str(tmp_path / "nothing.sock")
    monkeypatch.setenv("EVSHM_SOCKET", path)
    with pytest.raises(evshm.ConnectionLost) as info:
        evshm.Client()
    assert str(info.value) == (
        f"cannot connect to evshmd at {path}: no such socket, no evshmd runs there; this is "
        "the default socket ($EVSHM_SOCKET, else $XDG_RUNTIME_DIR/evshm.sock, else "
        "/tmp/evshm-$UID/evshm.sock): start one with evshm.start(ROOT) or `python -m evshm "
        "start ROOT`, or set EVSHM_SOCKET to the socket of one that runs")


def test_a_stale_socket_file_is_called_so(tmp_path):
    path = str(tmp_path / "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # the file stays, nobody listens
    with pytest.raises(evshm.ConnectionLost) as info:
        evshm.Client(path)
    assert str(info.value).startswith(
        f"cannot connect to evshmd at {path}: a stale socket file, nothing accepts on it "
        "(the evshmd that made it is gone, and a new one replaces it); start one there")


@pytest.mark.parametrize("kind", ["regular file", "directory"])
def test_a_file_that_is_no_socket_is_not_called_a_stale_socket(tmp_path, kind):
    path = tmp_path / "evshm.sock"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text("not a socket\n")
    with pytest.raises(evshm.ConnectionLost) as info:
        evshm.Client(path)
    assert str(info.value) == (f"cannot connect to evshmd at {path}: {path} is not a socket "
                               f"but a {kind}: give the path of the socket evshmd listens on")


def test_default_socket_path_chain(monkeypatch):
    monkeypatch.setenv("EVSHM_SOCKET", "/run/x/evshm.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert evshm.default_socket_path() == "/run/x/evshm.sock"
    monkeypatch.delenv("EVSHM_SOCKET")
    assert evshm.default_socket_path() == "/run/user/1000/evshm.sock"
    monkeypatch.setenv("EVSHM_SOCKET", "")  # empty counts as unset
    assert evshm.default_socket_path() == "/run/user/1000/evshm.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert evshm.default_socket_path() == f"/tmp/evshm-{os.getuid()}/evshm.sock"


def test_client_uses_the_default_path(fake, monkeypatch):
    monkeypatch.setenv("EVSHM_SOCKET", "/somewhere/evshm.sock")
    with evshm.Client() as client:
        assert client.socket_path == "/somewhere/evshm.sock"


def test_cli_reports_errors_on_stderr(tmp_path, capsys):
    from evshm.__main__ import main

    path = str(tmp_path / "none.sock")
    assert main(["--socket", path, "stats"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("evshm: cannot connect to evshmd at " + path)


def test_cli_open_prints_the_description(fake, capsys):
    from evshm.__main__ import main

    assert main(["--socket", "/fake.sock", "open", "a.raw"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:10] for line in lines] == [
        "path      ", "format    ", "rows      ", "extents   ", "schema    ",
        "time      ", "request   ", "attach    "]
    assert lines[1] == "format    evt3 640x480"
    assert lines[2] == "rows      1000"
    assert lines[3] == (f"extents   1, one per chunk, in 1 arena ({fake.chunks[0].size} "
                        "bytes, decoded now)")
    assert lines[4] == "schema    t: int64, x: int16, y: int16, p: int8"
    assert lines[5] == "time      0 .. 999 us"
    assert lines[7].endswith(" ms (map + Arrow IPC open, no copy)")
    assert fake.leases == 0


def test_cli_open_a_window_of_several_chunks(fake, capsys):
    from evshm.__main__ import main

    fake.serve(fake.table, chunk_rows=300)
    assert main(["--socket", "/fake.sock", "open", "a.raw", "--window", "250", "700"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == [
        "rows      450",
        "window    [250, 700) us",
        f"extents   3, one per chunk, in 1 arena "
        f"({sum(chunk.size for chunk in fake.chunks[:3])} bytes, decoded now)"]
    assert lines[6] == "time      250 .. 699 us"
    assert fake.sockets[0].requests[1]["window"] == [250, 700]
    assert main(["--socket", "/fake.sock", "open", "a.raw", "--window", "5", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == ["rows      0", "window    [5, 5) us",
                          "extents   none (0 bytes, cached)"]
    with pytest.raises(SystemExit):
        main(["--socket", "/fake.sock", "open", "a.raw", "--window", "7", "5"])
    assert "ends before it starts" in capsys.readouterr().err
    assert fake.leases == 0


def test_cli_ls_and_stats(fake, capsys):
    from evshm.__main__ import main

    assert main(["--socket", "/fake.sock", "ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["PATH", "FORMAT", "SIZE", "DECODED"]
    assert out[1].split() == ["a.raw", "evt3", "12", "yes"]
    assert main(["--socket", "/fake.sock", "stats"]) == 0
    assert capsys.readouterr().out.split() == ["leases", "0", "extents", "1"]


def test_pickled_client_connects_on_first_use(fake):
    import pickle

    client = evshm.Client("/fake.sock", timeout=7.0)
    clone = pickle.loads(pickle.dumps(client))
    assert (clone.socket_path, clone.timeout) == ("/fake.sock", 7.0)
    assert len(fake.sockets) == 1  # unpickling does no I/O
    assert clone.stats()["extents"] == 1
    assert len(fake.sockets) == 2 and fake.sockets[1].ops() == ["hello", "stats"]
    clone.close()
    client.close()
