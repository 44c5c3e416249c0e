"""Mapping evshmd's arenas read-only, once per process, and reading the Arrow IPC streams
of chunks in place.

Contract (see the product brief, "Zero-copy reading, Python", and docs/PROTOCOL.md):

- evshmd's shared memory is a few *arenas*: shared-memory files of fixed size. A chunk's
  table is an *extent* of one: ``size`` bytes at ``offset``, one complete Arrow IPC
  stream. The first time a reply names an arena, this process maps it whole, read-only
  (``PROT_READ``, ``MAP_SHARED``), and keeps the mapping in a table under the arena's
  name (unique for the machine's boot): a warm open maps nothing. A mapping the daemon
  says is ``gone`` leaves the table and is unmapped once no buffer of it is left.
- The arena file is opened ``O_RDONLY | O_CLOEXEC`` and the descriptor closed once
  mapped. ``multiprocessing.shared_memory`` is never used: its resource tracker unlinks
  the daemon's file when the client exits (CPython gh-82300) and it maps read-write.
- In sealed mode the daemon passes the arena as a memfd descriptor, the first time a
  connection hears of it; it is mapped only if sealed against growing, shrinking and
  writing (``F_SEAL_FUTURE_WRITE``: only evshmd's own mapping writes), which the kernel
  then enforces for every process.
- The file must be exactly as long as the reply says: arenas are never resized, so
  another size is another file (reading past the end of a file turns into SIGBUS).
- The mapping is made with libc's ``mmap`` (through :mod:`ctypes`) and held by a
  :class:`Mapping`, which keeps no descriptor (CPython's :mod:`mmap` before 3.13 keeps a
  dup of the descriptor for as long as the mapping lives).
- Every buffer of one open is a ``pa.foreign_buffer`` whose base is that open's
  :class:`Hold`, which keeps the arenas' mappings alive; every Arrow buffer sliced from it
  (and every numpy view of those) keeps the hold alive, and the hold's finalizer ends the
  lease (``_client``). evshmd may reuse an extent's bytes once its lease has ended, so
  nothing is read from an arena but through a hold.
- :class:`StreamReader` decodes the schema once per reply and each chunk's record batch
  with ``pa.ipc.read_message`` and ``pa.ipc.read_record_batch`` over the stream's buffer:
  the batch's buffers point into the mapping, no copy. It slices the rows asked for out of
  each chunk's batch, and :func:`join_chunks` puts the slices of all chunks in one table:
  both only make new views of the same buffers (``RecordBatch.slice``,
  ``Table.from_batches``), so the table still points into the mappings.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import stat
import threading
import weakref
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as MappingType

import pyarrow as pa
import pyarrow.ipc

from ._errors import MappingError
from ._protocol import ArenaInfo, ChunkInfo, ExtentInfo

__all__ = ["Mapping", "Hold", "arena_mapping", "forget", "mapped_arenas", "stream_buffer",
           "StreamReader", "join_chunks"]

# F_SEAL_FUTURE_WRITE (Linux 5.1) is not in every Python's fcntl.
_F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)
_REQUIRED_SEALS = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_LIBC.munmap.restype = ctypes.c_int
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class Mapping:
    """A read-only shared mapping of a whole arena, which holds no descriptor and is
    unmapped once garbage (see the module's contract)."""

    __slots__ = ("__weakref__", "address", "length", "name")

    def __init__(self, fd: int, length: int, name: str) -> None:
        """Map ``length`` bytes of ``fd`` read-only and shared; ``fd`` may be closed after."""
        # No reservation (hugetlbfs would reserve every huge page of the arena): only
        # extents whose pages evshmd allocated are read.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_NORESERVE", 0x4000)
        address = _LIBC.mmap(None, length, mmap.PROT_READ, flags, fd, 0)
        if address is None or address == _MAP_FAILED:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.address: int = address
        self.length = length
        self.name = name
        # Not a method of self: a finalizer must not keep the object alive.
        weakref.finalize(self, _LIBC.munmap, address, length)


class Hold:
    """What the buffers of one open are based on: it keeps the mappings they point into
    alive, and its finalizer (set by the client) ends the open's lease."""

    __slots__ = ("__weakref__", "mappings")

    def __init__(self, mappings: Iterable[Mapping]) -> None:
        self.mappings = tuple(mappings)


# The process's mappings, by arena name. A forked child inherits the mappings, and this
# table with them; its lock is made anew in the child.
_MAPPED: dict[str, Mapping] = {}
_LOCK = threading.Lock()


def _new_lock_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def arena_mapping(arena: ArenaInfo, fd: int | None) -> Mapping:
    """The mapping of ``arena``: from the process's table, or made now from its path, or
    from ``fd`` when the reply passed it (sealed mode; this takes the descriptor over and
    checks its seals). Raises :class:`~evshm.MappingError` when it cannot be mapped."""
    found = _MAPPED.get(arena.name)
    if found is not None:
        if fd is not None:
            os.close(fd)
        return found
    if fd is not None:
        mapping = _map_sealed(fd, arena)
    elif arena.path is not None:
        mapping = _map_path(arena)
    else:
        raise MappingError(f"evshmd named arena {arena.name} without a path and passed no "
                           "descriptor of it")
    with _LOCK:
        # Another thread may have mapped it meanwhile: keep one.
        return _MAPPED.setdefault(arena.name, mapping)


def forget(names: Iterable[str]) -> None:
    """Drop the arenas evshmd says are gone from the table: each is unmapped once no
    buffer of it is left."""
    with _LOCK:
        for name in names:
            _MAPPED.pop(name, None)


def mapped_arenas() -> int:
    """How many arenas this process has mapped."""
    return len(_MAPPED)


def stream_buffer(hold: Hold, mapping: Mapping, extent: ExtentInfo) -> pa.Buffer:
    """The stream of ``extent`` in ``mapping`` as a zero-copy Arrow buffer based on
    ``hold`` (which must hold ``mapping``)."""
    if not (0 <= extent.offset and extent.offset + extent.size <= mapping.length):
        raise MappingError(f"extent {extent.offset}..+{extent.size} lies outside arena "
                           f"{mapping.name} of {mapping.length} bytes")
    return pa.foreign_buffer(mapping.address + extent.offset, extent.size, base=hold)


def _map_path(arena: ArenaInfo) -> Mapping:
    assert arena.path is not None
    try:
        fd = os.open(arena.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise MappingError(f"arena {arena.path} is gone: evshmd removes its arenas when it "
                           "stops", vanished=True) from exc
    except OSError as exc:
        raise MappingError(f"cannot open arena {arena.path}: {exc.strerror}") from exc
    return _map_fd(fd, arena.path, arena)


def _map_sealed(fd: int, arena: ArenaInfo) -> Mapping:
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0
    if seals & _REQUIRED_SEALS != _REQUIRED_SEALS or \
            not seals & (fcntl.F_SEAL_WRITE | _F_SEAL_FUTURE_WRITE):
        os.close(fd)
        raise MappingError(f"arena {arena.name} was passed without the seals against "
                           "growing, shrinking and writing; refusing to map it")
    return _map_fd(fd, arena.name, arena)


def _map_fd(fd: int, shown: str, arena: ArenaInfo) -> Mapping:
    """Map all of ``fd`` (closed on return) read-only, checking its size."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MappingError(f"arena {shown} is not a regular file")
        if info.st_size != arena.size or arena.size <= 0:
            # Arenas are never resized: another size is another file, and a shorter one
            # would make reads past its end crash with SIGBUS.
            raise MappingError(f"arena {shown} is {info.st_size} bytes, not the "
                               f"{arena.size} evshmd announced; refusing to map it")
        try:
            return Mapping(fd, info.st_size, arena.name)
        except OSError as exc:
            raise MappingError(f"cannot map arena {shown}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _message_end(stream: pa.Buffer, at: int) -> int:
    """Where the encapsulated message's flatbuffer at byte ``at`` of ``stream`` ends."""
    prefix = bytes(memoryview(stream)[at:at + 8])
    if len(prefix) < 8 or prefix[:4] != b"\xff\xff\xff\xff":
        raise MappingError(f"extent has no Arrow IPC message at byte {at}")
    return at + 8 + int.from_bytes(prefix[4:], "little")


class StreamReader:
    """Reads the record batch of each chunk's stream in place, decoding the schema once
    per reply: every chunk's stream is a schema message, one record batch message and the
    end marker, and the chunks of one reply share their schema (each one's schema message
    is compared with the first's byte for byte). That is what
    ``pa.ipc.open_stream(stream).read_all()`` does, less a schema decode per chunk."""

    def __init__(self, first: pa.Buffer) -> None:
        self._schema_end = _message_end(first, 0)
        self._schema_message = first.slice(0, self._schema_end)
        try:
            self.schema = pa.ipc.read_schema(self._schema_message)
        except pa.ArrowException as exc:
            raise MappingError(f"extent holds no readable Arrow schema: {exc}") from None

    def rows(self, stream: pa.Buffer, chunk: ChunkInfo) -> pa.RecordBatch:
        """The rows ``chunk.start`` to ``chunk.end`` of the chunk's ``stream``, without
        copying.

        Raises :class:`~evshm.MappingError` unless the stream begins with this reader's
        schema message and holds a batch of the ``chunk.rows`` rows the daemon announced.
        """
        end = self._schema_end
        if not stream.slice(0, end).equals(self._schema_message):
            raise MappingError(f"chunk {chunk.index} holds another schema than the first")
        try:
            batch = pa.ipc.read_record_batch(stream.slice(end), self.schema)
        except (pa.ArrowException, OSError) as exc:
            raise MappingError(f"chunk {chunk.index} is not a readable Arrow IPC stream: "
                               f"{exc}") from None
        if batch.num_rows != chunk.rows:
            raise MappingError(f"chunk {chunk.index} holds {batch.num_rows} rows but evshmd "
                               f"announced {chunk.rows}")
        if chunk.start == 0 and chunk.end == chunk.rows:
            return batch  # the whole chunk: no slice to make
        return batch.slice(chunk.start, chunk.end - chunk.start)


def join_chunks(batches: Sequence[pa.RecordBatch], schema: pa.Schema | None,
                fields: Sequence[tuple[str, str]], metadata: MappingType[str, str]) -> pa.Table:
    """One table of ``batches`` (the rows of the chunks, from :meth:`StreamReader.rows`),
    in order, without copying: a column has one Arrow chunk per batch that holds rows.

    ``fields`` (``(name, type)`` pairs) and ``metadata`` are the schema the daemon
    announced: the chunks' ``schema`` must have those columns, and with no chunk at all
    (``schema`` is ``None``) they make the schema of the empty table. Raises
    :class:`~evshm.MappingError` otherwise.
    """
    if schema is not None:
        columns = tuple((field.name, str(field.type)) for field in schema)
        if columns != tuple(fields):
            raise MappingError(f"the chunks hold columns {columns} but evshmd announced "
                               f"{tuple(fields)}")
        return pa.Table.from_batches([batch for batch in batches if batch.num_rows],
                                     schema=schema)
    schema_metadata: dict[bytes | str, bytes | str] = {k: v for k, v in metadata.items()}
    try:
        # The daemon declares its columns non-nullable; so does the empty table, so that
        # its schema equals the schema of any non-empty one. (pyarrow-stubs type
        # type_for_alias for literal aliases only; it takes any str, raising ValueError.)
        empty = pa.schema([pa.field(name, pa.type_for_alias(kind),  # type: ignore[call-overload]
                                    nullable=False)
                           for name, kind in fields], metadata=schema_metadata)
    except ValueError as exc:
        raise MappingError(f"cannot build an empty table of columns {tuple(fields)}: "
                           f"{exc}") from None
    return empty.empty_table()
