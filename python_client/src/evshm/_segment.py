"""Mapping daemon segments read-only and reading their Arrow IPC streams in place.

Contract (see the product brief, "Zero-copy reading, Python"):

- The segment file is opened ``O_RDONLY | O_CLOEXEC`` and mapped ``PROT_READ`` with
  :mod:`mmap`, then the descriptor is closed (the mapping keeps the pages).
  ``multiprocessing.shared_memory`` is never used: its resource tracker unlinks the
  daemon's segment when the client exits (CPython gh-82300) and it maps read-write.
- In sealed mode the daemon passes the segment as a memfd descriptor instead of a path;
  it is mapped only if sealed against writing, growing and shrinking, which the kernel
  then enforces for every process.
- The file must be at least as long as the size in the daemon's reply: a shorter one is
  an error, since reading past the end of a file turns into SIGBUS. It may be longer
  (hugetlbfs rounds files up to whole huge pages). The whole file, ``st_size`` bytes, is
  mapped, because a hugetlbfs mapping can only be unmapped in whole huge pages (mapping
  just the reply's size would leak the rest of the last page); only the first ``size``
  bytes, the Arrow IPC stream, are read.
- ``pa.ipc.open_stream(pa.py_buffer(memoryview(mapping)[:size])).read_all()`` builds the
  table with buffers that point into the mapping: no copy. Every Arrow buffer keeps the
  ``mmap`` object alive through the memoryview, so the mapping lives exactly as long as
  its data is reachable. (Before Python 3.13 the ``mmap`` object also holds a
  close-on-exec dup of the descriptor while it lives; from 3.13 on it is mapped with
  ``trackfd=False`` and holds none.) ``mmap.close()`` is never called (it raises
  ``BufferError`` while buffers point into it); reference counting unmaps.
- A recording comes as chunks, one segment each. :func:`chunk_rows` slices the rows asked
  for out of a chunk's stream and :func:`join_chunks` puts the slices of all chunks in one
  table: both only make new views of the same buffers (``Table.slice``,
  ``Table.from_batches``), so the table still points into the mappings.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from ._errors import SegmentError
from ._protocol import ChunkInfo

__all__ = ["map_segment", "map_sealed_segment", "read_table", "chunk_rows", "join_chunks"]

_REQUIRED_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK

# CPython's mmap keeps a dup() of the descriptor (close-on-exec) for size()/resize(), so on
# Python < 3.13 every live mapping also holds one descriptor. 3.13 can opt out.
_NO_TRACKFD: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def map_segment(path: str, size: int) -> mmap.mmap:
    """Map the segment file at ``path`` read-only: the whole file, which holds the
    ``size`` bytes of its stream first (see the module's contract).

    Raises :class:`~evshm.SegmentError` when the file cannot be opened, is not a
    regular file, or is shorter than ``size``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise SegmentError(f"segment {path} is gone: evshmd removes its segments when it "
                           "stops, and none is removed while a lease holds it otherwise",
                           vanished=True) from exc
    except OSError as exc:
        raise SegmentError(f"cannot open segment {path}: {exc.strerror}") from exc
    return _map_fd(fd, path, size)


def map_sealed_segment(fd: int, name: str, size: int) -> mmap.mmap:
    """Map a segment passed as descriptor ``fd`` (sealed mode), which this takes over,
    read-only and whole, like :func:`map_segment`.

    Raises :class:`~evshm.SegmentError` unless it is sealed against writing, growing and
    shrinking and at least ``size`` bytes.
    """
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0
    if seals & _REQUIRED_SEALS != _REQUIRED_SEALS:
        os.close(fd)
        raise SegmentError(f"segment {name} was passed without the seals against writing, "
                           "growing and shrinking; refusing to map it")
    return _map_fd(fd, name, size)


def _map_fd(fd: int, path: str, size: int) -> mmap.mmap:
    """Map all of ``fd`` (closed on return) read-only, checking that it holds at least
    ``size`` bytes."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SegmentError(f"segment {path} is not a regular file")
        if info.st_size < size:
            # Longer is fine (hugetlbfs sizes files in whole huge pages; only the stream's
            # bytes are read); shorter would make reads past the end crash with SIGBUS.
            raise SegmentError(
                f"segment {path} is {info.st_size} bytes, shorter than the {size} evshmd "
                "announced; refusing to map it (reading past the end of the file would "
                "crash with SIGBUS)"
            )
        if size <= 0:
            raise SegmentError(f"segment {path} is empty")
        try:
            # The whole file: a hugetlbfs mapping can only be unmapped in whole huge pages,
            # so mapping just the stream's bytes would leak it. Readers slice `size` bytes.
            return mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ,
                             **_NO_TRACKFD)
        except OSError as exc:
            raise SegmentError(f"cannot map segment {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def read_table(mapping: mmap.mmap, size: int) -> pa.Table:
    """Read the Arrow IPC stream held by the first ``size`` bytes of ``mapping`` into a
    table, without copying.

    The table's buffers point into the mapping and keep it alive. Raises
    :class:`~evshm.SegmentError` when the bytes are not an Arrow IPC stream.
    """
    try:
        # What open_stream does with any buffer-like source (as_buffer), said explicitly.
        return pa.ipc.open_stream(pa.py_buffer(memoryview(mapping)[:size])).read_all()
    except pa.ArrowException as exc:
        raise SegmentError(f"segment is not a readable Arrow IPC stream: {exc}") from None


def chunk_rows(mapping: mmap.mmap, chunk: ChunkInfo) -> pa.Table:
    """The rows ``chunk.start`` to ``chunk.end`` of the stream in ``mapping``, without
    copying.

    Raises :class:`~evshm.SegmentError` unless the stream holds the ``chunk.rows`` rows
    the daemon announced.
    """
    table = read_table(mapping, chunk.segment.size)
    if table.num_rows != chunk.rows:
        raise SegmentError(f"segment {chunk.segment.name} holds {table.num_rows} rows but "
                           f"evshmd announced {chunk.rows}")
    return table.slice(chunk.start, chunk.end - chunk.start)


def join_chunks(parts: Sequence[tuple[ChunkInfo, pa.Table]],
                fields: Sequence[tuple[str, str]], metadata: Mapping[str, str]) -> pa.Table:
    """One table of the rows of ``parts`` (``(chunk, rows)`` from :func:`chunk_rows`), in
    order, without copying: a column has one Arrow chunk per part that holds rows.

    ``fields`` (``(name, type)`` pairs) and ``metadata`` are the schema the daemon
    announced: every part must have those columns, and with no part at all they make
    the schema of the empty table. Raises :class:`~evshm.SegmentError` otherwise.
    """
    for chunk, table in parts:
        columns = tuple((field.name, str(field.type)) for field in table.schema)
        if columns != tuple(fields):
            raise SegmentError(f"segment {chunk.segment.name} holds columns {columns} but "
                               f"evshmd announced {tuple(fields)}")
    if not parts:
        schema_metadata: dict[bytes | str, bytes | str] = {k: v for k, v in metadata.items()}
        try:
            # The daemon declares its columns non-nullable; so does the empty table, so
            # that its schema equals the schema of any non-empty one. (pyarrow-stubs type
            # type_for_alias for literal aliases only; it takes any str, raising ValueError.)
            schema = pa.schema([pa.field(name, pa.type_for_alias(kind),  # type: ignore[call-overload]
                                         nullable=False)
                                for name, kind in fields], metadata=schema_metadata)
        except ValueError as exc:
            raise SegmentError(f"cannot build an empty table of columns {tuple(fields)}: "
                               f"{exc}") from None
        return schema.empty_table()
    batches = [batch for _, table in parts for batch in table.to_batches() if batch.num_rows]
    try:
        return pa.Table.from_batches(batches, schema=parts[0][1].schema)
    except pa.ArrowInvalid as exc:
        raise SegmentError(f"the segments of one recording disagree on its schema: "
                           f"{exc}") from None
