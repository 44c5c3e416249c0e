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
- The mapping is made with libc's ``mmap`` (through :mod:`ctypes`) and held by a
  :class:`Mapping`, which keeps no descriptor: CPython's :mod:`mmap` before 3.13 keeps a
  dup of the descriptor for as long as the mapping lives, so a process holding thousands
  of segments (a dataset of many small recordings) ran out of descriptors. The mapping is
  unmapped when the :class:`Mapping` is garbage: when no Arrow buffer of it is left.
- ``pa.ipc.open_stream(mapping.buffer(size)).read_all()`` builds the table with buffers
  that point into the mapping: no copy. :meth:`Mapping.buffer` is a
  ``pa.foreign_buffer`` whose base is the :class:`Mapping`, and every Arrow buffer sliced
  from it (and every numpy view of those) keeps it alive.
- A recording comes as chunks, one segment each. :func:`chunk_rows` slices the rows asked
  for out of a chunk's stream and :func:`join_chunks` puts the slices of all chunks in one
  table: both only make new views of the same buffers (``Table.slice``,
  ``Table.from_batches``), so the table still points into the mappings.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import stat
import weakref
from collections.abc import Mapping as MappingType
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.ipc

from ._errors import SegmentError
from ._protocol import ChunkInfo

__all__ = ["Mapping", "map_segment", "map_sealed_segment", "read_table", "chunk_rows",
           "join_chunks"]

_REQUIRED_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_LIBC.munmap.restype = ctypes.c_int
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class Mapping:
    """A read-only shared mapping of a whole segment, which holds no descriptor and is
    unmapped once garbage (see the module's contract)."""

    __slots__ = ("__weakref__", "address", "length")

    def __init__(self, fd: int, length: int) -> None:
        """Map ``length`` bytes of ``fd`` read-only and shared; ``fd`` may be closed after."""
        address = _LIBC.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address is None or address == _MAP_FAILED:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.address: int = address
        self.length = length
        # Not a method of self: a finalizer must not keep the object alive.
        weakref.finalize(self, _LIBC.munmap, address, length)

    def buffer(self, size: int) -> pa.Buffer:
        """The first ``size`` bytes as a zero-copy Arrow buffer that keeps this alive."""
        if not 0 <= size <= self.length:
            raise ValueError(f"{size} bytes of a mapping of {self.length}")
        return pa.foreign_buffer(self.address, size, base=self)


def map_segment(path: str, size: int) -> Mapping:
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


def map_sealed_segment(fd: int, name: str, size: int) -> Mapping:
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


def _map_fd(fd: int, path: str, size: int) -> Mapping:
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
            return Mapping(fd, info.st_size)
        except OSError as exc:
            raise SegmentError(f"cannot map segment {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def read_table(mapping: Mapping, size: int) -> pa.Table:
    """Read the Arrow IPC stream held by the first ``size`` bytes of ``mapping`` into a
    table, without copying.

    The table's buffers point into the mapping and keep it alive. Raises
    :class:`~evshm.SegmentError` when the bytes are not an Arrow IPC stream.
    """
    try:
        return pa.ipc.open_stream(mapping.buffer(size)).read_all()
    except pa.ArrowException as exc:
        raise SegmentError(f"segment is not a readable Arrow IPC stream: {exc}") from None


def chunk_rows(mapping: Mapping, chunk: ChunkInfo) -> pa.Table:
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
                fields: Sequence[tuple[str, str]], metadata: MappingType[str, str]) -> pa.Table:
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
