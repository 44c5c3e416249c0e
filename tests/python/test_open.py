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

from evshm import _arena
from harness import Daemon, arena_file, arena_mapping, generate, python_env, real_manifest

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


@pytest.mark.parametrize("name", FILES)
def test_columns_point_into_the_read_only_mapping(daemon: Daemon, real: Path, name: str):
    manifest_entry(name)
    with daemon.client() as client:
        with client.open(name) as rec:
            [chunk] = rec.chunks  # a small recording: one chunk
            extent = chunk.extent
            arena = arena_file(extent)
            [buffer] = rec.stream_buffers
            base, size = buffer.address, buffer.size
            # The extent: a run of whole 64-byte steps of the arena file, holding exactly
            # one Arrow IPC stream.
            assert size == extent.size > 0 and extent.offset % 64 == 0
            assert extent.offset + extent.size <= os.stat(arena).st_size
            for column in rec.table.columns:
                assert column.num_chunks == 1  # one record batch per extent
                array = column.chunks[0]
                for buf in array.buffers():
                    if buf is not None:
                        assert base <= buf.address and buf.address + buf.size <= base + size
                view = array.to_numpy(zero_copy_only=True)
                address = view.__array_interface__["data"][0]
                assert base <= address < base + size
                assert not view.flags.writeable
            # The kernel agrees: one shared, read-only mapping of the whole arena file,
            # the stream at the extent's offset in it...
            start, end = arena_mapping(extent.arena)
            assert end - start >= os.stat(arena).st_size
            assert base == start + extent.offset
            # ...the client's table of mappings names the same one...
            mapping = _arena._MAPPED[extent.arena]
            assert (mapping.address, mapping.length) == (start, os.stat(arena).st_size)
            # ...and no descriptor left open on it (CPython's mmap before 3.13 kept one
            # while the mapping lived; the client maps through libc and keeps none).
            assert descriptors_on(arena) == []
            # What the bytes are: the stream read with plain file I/O from the arena file
            # at the extent's offset is the same stream.
            with open(arena, "rb") as f:
                f.seek(extent.offset)
                copy = f.read(extent.size)
            assert copy == buffer.to_pybytes()
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


def test_second_open_is_cached_and_shares_the_extent(daemon: Daemon, real: Path):
    with daemon.client() as client:
        first = client.open("evt3_sample.raw")
        second = client.open("evt3_sample.raw")
        assert first.cached is False and second.cached is True
        [extent] = [chunk.extent for chunk in first.chunks]
        assert [chunk.extent for chunk in second.chunks] == [extent]
        # The same bytes of the one mapping of the arena: no second mapping.
        assert first.stream_buffers[0].address == second.stream_buffers[0].address
        arena_mapping(extent.arena)
        assert first.lease != second.lease
        assert os.path.basename(arena_file(extent)) == extent.arena
        assert extent.arena.startswith(daemon.arena_prefix)
        assert os.path.exists(arena_file(extent))
        assert daemon.arenas() == [arena_file(extent)]
        stats = client.stats()
        assert stats["decodes"] == 1 and stats["cache_hits"] == 1 and stats["opens"] == 2
        # One decode makes one extent, in the one arena: the chunk's event table and its
        # trigger table are two streams of it.
        assert stats["extents"] == 1 and stats["leases"] == 2
        assert stats["arenas"] == 1
        with client.open("evt3_sample.raw", table="triggers") as triggers:
            [other] = [chunk.extent for chunk in triggers.chunks]
            assert other.arena == extent.arena
            assert extent.offset + extent.size <= other.offset
            assert other.offset + other.size <= extent.offset + stats["bytes_resident"]
        assert stats["bytes_arenas"] == os.stat(arena_file(extent)).st_size
        assert stats["bytes_resident"] > extent.size
        # The arena file's pages are the two extents' (whole pages: --provision 0 keeps
        # no free page allocated).
        assert os.stat(arena_file(extent)).st_blocks * 512 == stats["bytes_resident"]
        assert stats["bytes_free"] == stats["bytes_arenas"] - stats["bytes_resident"]
        assert stats["bytes_provisioned"] == 0
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
        extent = rec.chunks[0].extent
        print(extent.arena, extent.offset, rec.cached, rec.rows, int(t[0]), int(t[-1]))
"""


def test_several_processes_share_one_decode(daemon: Daemon, real: Path):
    with daemon.client() as client:
        keep = client.open("evt2_sample.raw")
        procs = [subprocess.run([sys.executable, "-c", READER, daemon.socket,
                                 "evt2_sample.raw"], env=python_env(), capture_output=True,
                                text=True, timeout=120) for _ in range(3)]
        for proc in procs:
            assert proc.returncode == 0, proc.stderr
            arena, offset, cached, rows, _, _ = proc.stdout.split()
            extent = keep.chunks[0].extent
            assert (arena, int(offset), cached, int(rows)) == (extent.arena, extent.offset,
                                                               "True", 539481)
        stats = client.stats()
        assert stats["decodes"] == 1 and stats["cache_hits"] == 3
        keep.release()


def test_thousands_of_recordings_held_at_once_hold_no_descriptor(daemon: Daemon,
                                                                  tmp_path: Path):
    """Regression (issue 13): CPython's mmap before 3.13 kept a descriptor per mapping, so
    a process holding the segments of 2,000 small recordings (a DataLoader over an
    N-CARS-like dataset) ran out of descriptors under the usual limit of 1,024. With
    arenas, 2,000 recordings are 2,000 extents of one arena, mapped once."""
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
            extents = {(c.extent.arena, c.extent.offset) for rec in held for c in rec.chunks}
            assert len(extents) == 2000
            arenas = {arena for arena, _ in extents}
            for arena in arenas:
                arena_mapping(arena)  # each mapped once, however many extents
            assert len(arenas) == 1 == client.stats()["arenas"]
            opened = len(os.listdir("/proc/self/fd")) - before
            assert opened <= 2, f"{opened} descriptors for {len(arenas)} mapped arenas"
            for rec in held:
                rec.release()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
