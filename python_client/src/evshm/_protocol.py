"""The evshmd control protocol, version 3, as pure functions on bytes (no I/O).

This mirrors ``client/src/protocol.rs``; ``docs/PROTOCOL.md`` is the contract. Nothing
here touches a socket (the h11 way): requests are encoded to one line of bytes, received
bytes are fed to a :class:`LineBuffer` in chunks of any size, and each complete reply line
is turned into a dict (or the typed exception for its error code) by :func:`parse_reply`.
The ``parse_*_reply`` helpers then check the fields of each kind of reply, so that a
malformed reply is a :class:`~evshm.ProtocolError` here rather than a ``KeyError`` or a
``TypeError`` further on.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from ._errors import MALFORMED_REPLY, ProtocolError, error_for_code

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_REQUEST_LINE",
    "MAX_REPLY_LINE",
    "encode_request",
    "LineBuffer",
    "parse_reply",
    "RecordingInfo",
    "ArenaInfo",
    "ExtentInfo",
    "ChunkInfo",
    "OpenReply",
    "Hello",
    "hello_request",
    "open_request",
    "check_window",
    "release_request",
    "list_request",
    "stats_request",
    "evict_request",
    "parse_hello_reply",
    "parse_open_reply",
    "parse_list_reply",
    "parse_stats_reply",
    "parse_evict_reply",
]

#: The protocol version this client speaks (sent in ``hello``).
PROTOCOL_VERSION = 3
#: Longest request line the daemon accepts, newline included (PROTOCOL.md, Framing).
MAX_REQUEST_LINE = 65_536
#: Longest reply line this client accepts, newline included. A ``list`` of many thousand
#: recordings fits easily; anything longer means the stream is not what we think it is.
MAX_REPLY_LINE = 16 * 1024 * 1024


def _malformed(what: str) -> ProtocolError:
    return ProtocolError(MALFORMED_REPLY, f"malformed reply from evshmd: {what}")


# --------------------------------------------------------------------------- requests


def encode_request(request: Mapping[str, Any]) -> bytes:
    """Encode one request as a JSON line (UTF-8, ending in ``\\n``).

    Raises :class:`~evshm.ProtocolError` (code ``bad_request``) when the request has no
    string ``op`` or cannot be encoded (for instance a string that is not valid Unicode),
    and (code ``frame_too_large``) when the line would exceed :data:`MAX_REQUEST_LINE`:
    the daemon would close the connection, so the line is never sent.
    """
    if not isinstance(request.get("op"), str):
        raise ProtocolError("bad_request", "a request needs a string field 'op'")
    try:
        text = json.dumps(dict(request), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))
        line = text.encode("utf-8") + b"\n"
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise ProtocolError("bad_request",
                            f"cannot encode {request['op']!r} request: {exc}") from None
    if len(line) > MAX_REQUEST_LINE:
        raise ProtocolError(
            "frame_too_large",
            f"{request['op']!r} request is {len(line)} bytes; "
            f"the protocol allows at most {MAX_REQUEST_LINE}",
        )
    return line


def hello_request(client: str) -> dict[str, Any]:
    """The ``hello`` request for :data:`PROTOCOL_VERSION`; ``client`` is free text."""
    return {"op": "hello", "version": PROTOCOL_VERSION, "client": client}


TABLES = ("events", "triggers")

#: Range of a time on the wire: the daemon reads window bounds as signed 64-bit integers.
_I64 = (-(1 << 63), (1 << 63) - 1)


def check_window(window: tuple[Any, Any]) -> tuple[int, int]:
    """Check a time window ``(t0, t1)`` and return it as two Python ints.

    Both must be integers (Python or numpy; not floats, which would silently lose
    microseconds) within the signed 64-bit range, with ``t0 <= t1``. Raises
    :class:`TypeError` or :class:`ValueError` otherwise.
    """
    t0, t1 = window
    bounds = []
    for value in (t0, t1):
        if isinstance(value, bool):
            raise TypeError(f"window bounds must be integers (microseconds), not {value!r}")
        try:
            number = operator.index(value)
        except TypeError:
            raise TypeError(f"window bounds must be integers (microseconds), "
                            f"not {value!r}") from None
        if not _I64[0] <= number <= _I64[1]:
            raise ValueError(f"window bound {number} does not fit in 64 bits")
        bounds.append(number)
    if bounds[1] < bounds[0]:
        raise ValueError(f"window [{bounds[0]}, {bounds[1]}) ends before it starts")
    return bounds[0], bounds[1]


def open_request(path: str, table: str = "events",
                 geometry: tuple[int, int] | None = None,
                 window: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ``open`` request for a path relative to a served root (or absolute inside one).

    ``table`` is ``"events"`` (CD events) or ``"triggers"`` (external triggers);
    ``geometry`` is a ``(width, height)`` for a file that states no sensor size;
    ``window`` is a time window ``(t0, t1)`` in microseconds (see :func:`check_window`)
    whose rows alone the daemon serves.
    """
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, not {table!r}")
    request: dict[str, Any] = {"op": "open", "path": path, "table": table}
    if geometry is not None:
        width, height = (int(v) for v in geometry)
        request.update(width=width, height=height)
    if window is not None:
        request["window"] = list(check_window(window))
    return request


def release_request(lease: int) -> dict[str, Any]:
    """The ``release`` request that ends ``lease``."""
    return {"op": "release", "lease": lease}


def list_request() -> dict[str, Any]:
    """The ``list`` request."""
    return {"op": "list"}


def stats_request() -> dict[str, Any]:
    """The ``stats`` request."""
    return {"op": "stats"}


def evict_request() -> dict[str, Any]:
    """The ``evict`` request: drop every resident chunk no client holds, now."""
    return {"op": "evict"}


# --------------------------------------------------------------------------- framing


class LineBuffer:
    """Accumulates received bytes and splits them into complete lines.

    Feed it chunks of any size (one byte, five bytes, a whole reply...); :meth:`feed`
    returns the lines completed by that chunk, without their ``\\n``. A line longer than
    ``max_line`` bytes (newline included) raises :class:`~evshm.ProtocolError` as soon
    as that is certain, so a runaway peer cannot make the buffer grow without bound.
    """

    def __init__(self, max_line: int = MAX_REPLY_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return the lines it completed (possibly none)."""
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buf.find(b"\n", max(start, self._scanned))
            if end < 0:
                break
            if end + 1 - start > self.max_line:
                self._too_long(end + 1 - start)
            lines.append(bytes(self._buf[start:end]))
            start = end + 1
        if start:
            del self._buf[:start]
        self._scanned = len(self._buf)
        if self._scanned >= self.max_line:  # no newline within max_line bytes
            self._too_long(self._scanned)
        return lines

    @property
    def pending(self) -> int:
        """Number of buffered bytes that do not form a complete line yet."""
        return len(self._buf)

    def _too_long(self, size: int) -> None:
        self._buf.clear()
        self._scanned = 0
        raise _malformed(f"reply line of {size}+ bytes exceeds the {self.max_line}-byte limit")


# --------------------------------------------------------------------------- replies


def parse_reply(line: bytes) -> dict[str, Any]:
    """Decode one reply line (without its newline).

    Returns the reply object when ``ok`` is true. Raises the :class:`~evshm.DaemonError`
    subclass matching the error code when ``ok`` is false, and
    :class:`~evshm.ProtocolError` (code :data:`~evshm.MALFORMED_REPLY`) when the line is
    not a JSON object with a boolean ``ok`` and, on failure, a well-formed ``error``.
    """
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _malformed(f"not a JSON line ({exc}): {_excerpt(line)}") from None
    if not isinstance(reply, dict):
        raise _malformed(f"not a JSON object: {_excerpt(line)}")
    ok = reply.get("ok")
    if ok is True:
        return reply
    if ok is not False:
        raise _malformed(f"no boolean 'ok' field: {_excerpt(line)}")
    error = reply.get("error")
    if not isinstance(error, dict):
        raise _malformed(f"error reply without an 'error' object: {_excerpt(line)}")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        raise _malformed(f"error without string 'code' and 'message': {_excerpt(line)}")
    raise error_for_code(code, message)


def _excerpt(line: bytes, limit: int = 200) -> str:
    text = repr(line[:limit])
    return text + ("..." if len(line) > limit else "")


_T = TypeVar("_T")


def _field(reply: Mapping[str, Any], name: str, kind: type[_T], what: str = "reply") -> _T:
    value = reply.get(name)
    # bool is a subclass of int: do not let true/false pass for a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _malformed(f"{what} field {name!r} should be {kind.__name__}, got {value!r}")
    return value


def _optional_str(reply: Mapping[str, Any], name: str) -> str | None:
    value = reply.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _malformed(f"field {name!r} should be a string, got {value!r}")


def _optional_int(reply: Mapping[str, Any], name: str) -> int | None:
    if reply.get(name) is None:
        return None
    return _field(reply, name, int, "open reply")


@dataclass(frozen=True)
class RecordingInfo:
    """One entry of ``Client.list()``: a recording the daemon can serve.

    Attributes:
        path: the path to pass to ``Client.open``.
        format: the recording format (``evt3``, ``dat``, ``es``...: docs/FORMATS.md).
        size: size of the recording file in bytes.
        decoded: whether a decoded chunk of it is resident.
    """

    path: str
    format: str
    size: int
    decoded: bool


@dataclass(frozen=True)
class ArenaInfo:
    """An arena: a shared-memory file of fixed size that a client maps whole, once per
    process, and in which chunks' tables lie as extents.

    Attributes:
        name: the arena's name (its file name in the shared-memory directory, or the
            memfd's name when the daemon runs sealed), unique for the machine's boot.
        path: the file to map read-only; ``None`` when the daemon runs sealed and passes
            the arena as a descriptor instead, the first time a connection hears of it.
        size: its size in bytes, which never changes.
        passed: whether its descriptor came with this reply.
    """

    name: str
    path: str | None
    size: int
    passed: bool = False


class ExtentInfo(NamedTuple):
    """Where a chunk's table lies: ``size`` bytes at ``offset`` of the arena named
    ``arena``, holding one complete Arrow IPC stream (one record batch). (On the wire the
    arena is given by its position in the reply's ``arenas``.)"""

    arena: str
    offset: int
    size: int


class ChunkInfo(NamedTuple):
    """One chunk of a recording (a run of consecutive events decoded on its own), and
    which rows of it are used. (A named tuple, not a dataclass: a reply lists up to
    thousands, and a frozen dataclass takes three times as long to make.)

    Attributes:
        index: position of the chunk in the recording, from 0.
        extent: where the chunk's table lies.
        rows: rows of the extent's record batch.
        start, end: the rows ``start`` to ``end`` (excluded) of that batch that belong to
            the recording or window at hand.
    """

    # The protocol's name for it, though it hides tuple.index.
    index: int  # type: ignore[assignment]
    extent: ExtentInfo
    rows: int
    start: int
    end: int


@dataclass(frozen=True)
class OpenReply:
    """The fields of a successful ``open`` reply, checked.

    ``chunks`` are in recording order and their rows ``start..end``, in that order, are
    the ``rows`` rows asked for (the whole recording, or the rows of ``window``).
    ``schema`` lists ``(name, type)`` of each column and ``metadata`` the schema's
    metadata, from which a client builds the table when no chunk holds a row.
    """

    lease: int
    path: str
    table: str
    window: tuple[int, int] | None
    arenas: tuple[ArenaInfo, ...]
    chunks: tuple[ChunkInfo, ...]
    rows: int
    format: str
    width: int | None
    height: int | None
    schema: tuple[tuple[str, str], ...]
    metadata: dict[str, str]
    cached: bool
    dropped: int = 0
    skipped: int = 0
    gone: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hello:
    """What the daemon says of itself in its ``hello`` reply."""

    #: Its name and version (may be empty).
    server: str
    #: The directories it serves, canonical, in the order it searches them (empty when
    #: the daemon does not say).
    roots: tuple[str, ...]


def parse_hello_reply(reply: Mapping[str, Any]) -> Hello:
    """Check a ``hello`` reply and return what the daemon says of itself."""
    version = _field(reply, "version", int, "hello reply")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_version",
            f"evshmd answered hello with protocol version {version}; "
            f"this client speaks version {PROTOCOL_VERSION}",
        )
    server = reply.get("server", "")
    roots = reply.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise _malformed(f"hello reply field 'roots' should be a list of paths, got {roots!r}")
    return Hello(server if isinstance(server, str) else "", tuple(roots))


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{what} should be an object, got {value!r}")
    return value


def _parse_arenas(reply: Mapping[str, Any]) -> tuple[ArenaInfo, ...]:
    entries = reply.get("arenas", [])
    if not isinstance(entries, list):
        raise _malformed(f"open reply field 'arenas' should be a list, got {entries!r}")
    arenas: list[ArenaInfo] = []
    for number, entry in enumerate(entries):
        what = f"arena {number}"
        arena = _object(entry, what)
        info = ArenaInfo(
            name=_field(arena, "name", str, what),
            path=_optional_str(arena, "path"),
            size=_field(arena, "size", int, what),
            passed=arena.get("passed", False) is True,
        )
        if info.size <= 0:
            raise _malformed(f"{what} ({info.name}) has size {info.size}")
        if any(other.name == info.name for other in arenas):
            raise _malformed(f"open reply lists arena {info.name} twice")
        arenas.append(info)
    return tuple(arenas)


def _parse_chunk(entry: Any, number: int, arenas: tuple[ArenaInfo, ...]) -> ChunkInfo:
    """Chunk ``number`` of an open reply, checked. Written for speed (a reply may list
    thousands): messages are only formatted for a malformed chunk."""
    try:
        extent = entry["extent"]
        index, rows, start, end = entry["index"], entry["rows"], entry["start"], entry["end"]
        position, offset, size = extent["arena"], extent["offset"], extent["size"]
    except (TypeError, KeyError) as exc:
        raise _malformed(f"chunk {number} lacks field {exc} or is not an object: "
                         f"{entry!r}") from None
    int_ = int
    if not (type(index) is int_ and type(rows) is int_ and type(start) is int_
            and type(end) is int_ and type(position) is int_ and type(offset) is int_
            and type(size) is int_):
        raise _malformed(f"chunk {number} has a field that is not an integer: {entry!r}")
    if not 0 <= position < len(arenas):
        raise _malformed(f"chunk {number} lies in arena {position} of a reply that lists "
                         f"{len(arenas)}")
    arena = arenas[position]
    if size <= 0 or index < 0 or offset < 0:
        raise _malformed(f"chunk {number} has index {index} and an extent of {size} bytes "
                         f"at {offset}")
    if offset + size > arena.size:
        raise _malformed(f"chunk {number} lies at bytes {offset}..+{size} of arena "
                         f"{arena.name}, which holds {arena.size} bytes")
    if not 0 <= start <= end <= rows:
        raise _malformed(f"chunk {number} asks for rows {start}..{end} of a batch of {rows}")
    return ChunkInfo(index, ExtentInfo(arena.name, offset, size), rows, start, end)


def _parse_chunks(reply: Mapping[str, Any], whole: bool,
                  arenas: tuple[ArenaInfo, ...]) -> tuple[ChunkInfo, ...]:
    """The ``chunks`` of an open reply, checked to be one run of rows in recording order
    (every row of every chunk when ``whole``, i.e. no window was asked for), each in one of
    ``arenas``."""
    entries = reply.get("chunks")
    if not isinstance(entries, list):
        raise _malformed(f"open reply field 'chunks' should be a list, got {entries!r}")
    chunks = tuple(_parse_chunk(entry, number, arenas) for number, entry in enumerate(entries))
    for before, after in zip(chunks, chunks[1:]):
        if after.index <= before.index:
            raise _malformed(f"open reply lists chunk {after.index} after chunk {before.index}")
    last = len(chunks) - 1
    for number, chunk in enumerate(chunks):
        # The rows asked for are one contiguous run: only the first chunk may begin
        # after its first row and only the last one end before its last.
        if (chunk.start != 0 and (whole or number > 0)) or \
                (chunk.end != chunk.rows and (whole or number < last)):
            raise _malformed(f"open reply asks for rows {chunk.start}..{chunk.end} of "
                             f"chunk {chunk.index} ({chunk.rows} rows), position {number} "
                             f"of {len(chunks)}: not one run of rows")
    return chunks


def _parse_window(reply: Mapping[str, Any]) -> tuple[int, int] | None:
    window = reply.get("window")
    if window is None:
        return None
    if (not isinstance(window, list) or len(window) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in window)
            or window[0] > window[1]):
        raise _malformed(f"open reply field 'window' should be [t_start, t_end], "
                         f"got {window!r}")
    return window[0], window[1]


def _parse_schema(reply: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    fields = reply.get("schema")
    if not isinstance(fields, list) or not fields:
        raise _malformed(f"open reply field 'schema' should be a list of fields, "
                         f"got {fields!r}")
    return tuple((_field(_object(field, "schema field"), "name", str, "schema field"),
                  _field(field, "type", str, "schema field")) for field in fields)


def _parse_metadata(reply: Mapping[str, Any]) -> dict[str, str]:
    metadata = reply.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise _malformed(f"open reply field 'metadata' should map strings to strings, "
                         f"got {metadata!r}")
    return dict(metadata)


def parse_open_reply(reply: Mapping[str, Any]) -> OpenReply:
    """Check an ``open`` reply and return its fields."""
    window = _parse_window(reply)
    arenas = _parse_arenas(reply)
    gone = reply.get("gone", [])
    if not isinstance(gone, list) or not all(isinstance(name, str) for name in gone):
        raise _malformed(f"open reply field 'gone' should be a list of names, got {gone!r}")
    result = OpenReply(
        lease=_field(reply, "lease", int, "open reply"),
        path=_field(reply, "path", str, "open reply"),
        table=reply.get("table", "events"),
        window=window,
        arenas=arenas,
        chunks=_parse_chunks(reply, whole=window is None, arenas=arenas),
        rows=_field(reply, "rows", int, "open reply"),
        format=_field(reply, "format", str, "open reply"),
        width=_optional_int(reply, "width"),
        height=_optional_int(reply, "height"),
        schema=_parse_schema(reply),
        metadata=_parse_metadata(reply),
        cached=_field(reply, "cached", bool, "open reply"),
        dropped=_optional_int(reply, "dropped") or 0,
        skipped=_optional_int(reply, "skipped") or 0,
        gone=tuple(gone),
    )
    if result.table not in TABLES:
        raise _malformed(f"open reply names an unknown table {result.table!r}")
    asked = sum(chunk.end - chunk.start for chunk in result.chunks)
    if result.rows != asked:
        raise _malformed(f"open reply announces {result.rows} rows but its chunks hold "
                         f"{asked}")
    return result


def parse_list_reply(reply: Mapping[str, Any]) -> list[RecordingInfo]:
    """Check a ``list`` reply and return its recordings, in the daemon's order."""
    entries = reply.get("recordings")
    if not isinstance(entries, list):
        raise _malformed(f"list reply field 'recordings' should be a list, got {entries!r}")
    infos: list[RecordingInfo] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _malformed(f"list entry should be an object, got {entry!r}")
        infos.append(RecordingInfo(
            path=_field(entry, "path", str, "list entry"),
            format=_field(entry, "format", str, "list entry"),
            size=_field(entry, "size", int, "list entry"),
            decoded=_field(entry, "decoded", bool, "list entry"),
        ))
    return infos


def parse_stats_reply(reply: Mapping[str, Any]) -> dict[str, int]:
    """Return the integer counters of a ``stats`` reply, in the daemon's order.

    Fields that are not integers (``ok``, or anything a newer daemon adds) are left out.
    """
    return {
        key: value for key, value in reply.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def parse_evict_reply(reply: Mapping[str, Any]) -> dict[str, int]:
    """Check an ``evict`` reply: the chunks evicted (``evicted``) and their bytes
    (``bytes_evicted``)."""
    return {key: _field(reply, key, int, "evict reply") for key in ("evicted", "bytes_evicted")}
