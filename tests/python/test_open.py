"""Opening real recordings through a real evshmd: content, zero copy, OS state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc
import pytest

from harness import Daemon, generate, python_env, real_manifest, segment_file

MANIFEST = real_manifest()
FILES = [entry["file"] for entry in MANIFEST] or ["(no real data)"]


def manifest_entry(name: str):
    for entry in MANIFEST:
        if entry["file"] == name:
            return entry
    pytest.skip("real recordings not found")


def expected_table(real: Path, entry) -> pa.Table:
    with pa.ipc.open_file(real / entry["expected"]) as reader:
        return reader.read_all().select(["t", "x", "y", "p"])


@pytest.mark.parametrize("name", FILES)
def test_open_matches_the_expected_decode(daemon: Daemon, real: Path, name: str):
    entry = manifest_entry(name)
    expected = expected_table(real, entry)
    with daemon.client() as client:
        with client.open(name) as rec:
            assert rec.path == name
            assert rec.rows == entry["events"] == expected.num_rows
            assert rec.format == entry["format"]
            if entry["width"] is not None:
                assert (rec.width, rec.height) == (entry["width"], entry["height"])
            assert rec.cached is False
            table = rec.table
            assert table.num_rows == rec.rows
            assert table.schema.names == ["t", "x", "y", "p"]
            assert [str(f.type) for f in table.schema] == ["int64", "int16", "int16", "int8"]
            # Column by column: the daemon declares its fields non-nullable, the expected
            # files do not, and Table.equals would compare that flag too.
            for column in ("t", "x", "y", "p"):
                assert table.column(column).null_count == 0
                assert table.column(column).equals(expected.column(column)), column
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            assert meta.get("evshm.format") == rec.format
            assert meta.get("evshm.source") == name
            assert meta.get("evshm.width") == str(rec.width)
            assert meta.get("evshm.height") == str(rec.height)
            assert meta.get("evshm.geometry") in ("header", "system_id", "default")
            del table


def _maps_line(path: str) -> str:
    with open("/proc/self/maps") as maps:
        lines = [line for line in maps if line.rstrip("\n").endswith(path)]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name", FILES)
def test_columns_point_into_the_read_only_mapping(daemon: Daemon, real: Path, name: str):
    manifest_entry(name)
    with daemon.client() as client:
        with client.open(name) as rec:
            [chunk] = rec.chunks  # a small recording: one chunk
            segment = segment_file(chunk.segment)
            [buffer] = rec.segment_buffers
            base, size = buffer.address, buffer.size
            assert size == chunk.segment.size == os.stat(segment).st_size
            for column in rec.table.columns:
                assert column.num_chunks == 1  # one record batch per segment
                array = column.chunks[0]
                for buf in array.buffers():
                    if buf is not None:
                        assert base <= buf.address and buf.address + buf.size <= base + size
                view = array.to_numpy(zero_copy_only=True)
                address = view.__array_interface__["data"][0]
                assert base <= address < base + size
                assert not view.flags.writeable
            # The kernel agrees: a shared, read-only mapping of the segment file...
            start, end = _maps_line(segment).split()[0].split("-")
            perms = _maps_line(segment).split()[1]
            assert perms == "r--s"
            assert int(start, 16) == base and int(end, 16) >= base + size
            # ...and no descriptor left open on it (CPython's mmap before 3.13 kept one
            # while the mapping lived; the client maps through libc and keeps none).
            assert descriptors_on(segment) == []
            del buffer, column, chunk, view


def descriptors_on(path: str) -> list:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                found.append(int(fd))
        except OSError:
            pass
    return found


def test_second_open_is_cached_and_shares_the_segment(daemon: Daemon, real: Path):
    with daemon.client() as client:
        first = client.open("evt3_sample.raw")
        second = client.open("evt3_sample.raw")
        assert first.cached is False and second.cached is True
        [segment] = [chunk.segment for chunk in first.chunks]
        assert [chunk.segment for chunk in second.chunks] == [segment]
        assert first.lease != second.lease
        assert segment.name == os.path.basename(segment_file(segment))
        assert segment.name.startswith(daemon.segment_prefix)
        stats = client.stats()
        assert stats["decodes"] == 1 and stats["cache_hits"] == 1 and stats["opens"] == 2
        # One decode makes two segments: the event table and the trigger table.
        assert stats["segments"] == 2 and stats["leases"] == 2
        assert stats["bytes_resident"] > segment.size
        first.release()
        second.release()


def test_hello_names_the_served_root(daemon: Daemon):
    with daemon.client() as client:
        assert client.server.startswith("evshmd/")
        assert client.roots == [str(daemon.root.resolve())]


def test_list_shows_recordings_only(daemon: Daemon, real: Path):
    with daemon.client() as client:
        infos = {info.path: info for info in client.list()}
        expected = {entry["file"] for entry in real_manifest()} | {"sub/dir/pedestrians.raw"}
        assert set(infos) == expected  # notes.txt is left out
        for entry in real_manifest():
            info = infos[entry["file"]]
            assert info.format == entry["format"]
            assert info.size == (real / entry["file"]).stat().st_size
            assert info.decoded is False
        client.open("NCARS_obj_004397_td.dat").release()
        infos = {info.path: info for info in client.list()}
        assert infos["NCARS_obj_004397_td.dat"].decoded is True


def test_nested_and_absolute_paths_inside_the_root(daemon: Daemon, real: Path):
    with daemon.client() as client:
        with client.open("sub/dir/pedestrians.raw") as rec:
            assert rec.rows == 5000
        with client.open(daemon.root / "sub" / "dir" / "pedestrians.raw") as rec:
            assert rec.rows == 5000
            assert rec.cached is True


READER = """
import sys, evshm
with evshm.Client(sys.argv[1]) as client:
    with client.open(sys.argv[2]) as rec:
        t = rec.table.column("t").chunk(0).to_numpy(zero_copy_only=True)
        print(rec.chunks[0].segment.path, rec.cached, rec.rows, int(t[0]), int(t[-1]))
"""


def test_several_processes_share_one_decode(daemon: Daemon, real: Path):
    with daemon.client() as client:
        keep = client.open("evt2_sample.raw")
        procs = [subprocess.run([sys.executable, "-c", READER, daemon.socket,
                                 "evt2_sample.raw"], env=python_env(), capture_output=True,
                                text=True, timeout=120) for _ in range(3)]
        for proc in procs:
            assert proc.returncode == 0, proc.stderr
            path, cached, rows, _, _ = proc.stdout.split()
            assert (path, cached, int(rows)) == (keep.chunks[0].segment.path, "True", 539481)
        stats = client.stats()
        assert stats["decodes"] == 1 and stats["cache_hits"] == 3
        keep.release()


def test_thousands_of_recordings_held_at_once_hold_no_descriptor(daemon: Daemon,
                                                                  tmp_path: Path):
    """Regression (issue 13): CPython's mmap before 3.13 kept a descriptor per mapping, so
    a process holding the segments of 2,000 small recordings (a DataLoader over an
    N-CARS-like dataset) ran out of descriptors under the usual limit of 1,024."""
    import resource

    source = generate(tmp_path / "one.raw", 100)
    names = []
    for i in range(2000):
        name = f"many/{i:04}.raw"
        (daemon.root / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(source, daemon.root / name)
        names.append(name)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        before = len(os.listdir("/proc/self/fd"))
        with daemon.client() as client:
            held = [client.open(name) for name in names]
            assert all(rec.rows == 100 for rec in held)
            segments = sum(len(rec.chunks) for rec in held)
            assert segments == 2000
            opened = len(os.listdir("/proc/self/fd")) - before
            assert opened <= 2, f"{opened} descriptors for {segments} mapped segments"
            for rec in held:
                rec.release()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
