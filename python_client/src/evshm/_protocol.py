"""The evshmd control protocol, version 1, as pure functions on bytes (no I/O).

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
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._errors import MALFORMED_REPLY, ProtocolError, error_for_code

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_REQUEST_LINE",
    "MAX_REPLY_LINE",
    "encode_request",
    "LineBuffer",
    "parse_reply",
    "RecordingInfo",
    "OpenReply",
    "hello_request",
    "open_request",
    "release_request",
    "list_request",
    "stats_request",
    "parse_hello_reply",
    "parse_open_reply",
    "parse_list_reply",
    "parse_stats_reply",
]

#: The protocol version this client speaks (sent in ``hello``).
PROTOCOL_VERSION = 1
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


def hello_request(client: str) -> Dict[str, Any]:
    """The ``hello`` request for :data:`PROTOCOL_VERSION`; ``client`` is free text."""
    return {"op": "hello", "version": PROTOCOL_VERSION, "client": client}


TABLES = ("events", "triggers")


def open_request(path: str, table: str = "events",
                 geometry: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """The ``open`` request for a path relative to a served root (or absolute inside one).

    ``table`` is ``"events"`` (CD events) or ``"triggers"`` (external triggers);
    ``geometry`` is a ``(width, height)`` for a file that states no sensor size.
    """
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, not {table!r}")
    request: Dict[str, Any] = {"op": "open", "path": path, "table": table}
    if geometry is not None:
        width, height = (int(v) for v in geometry)
        request.update(width=width, height=height)
    return request


def release_request(lease: int) -> Dict[str, Any]:
    """The ``release`` request that ends ``lease``."""
    return {"op": "release", "lease": lease}


def list_request() -> Dict[str, Any]:
    """The ``list`` request."""
    return {"op": "list"}


def stats_request() -> Dict[str, Any]:
    """The ``stats`` request."""
    return {"op": "stats"}


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

    def feed(self, data: bytes) -> List[bytes]:
        """Add ``data`` and return the lines it completed (possibly none)."""
        self._buf += data
        lines: List[bytes] = []
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


def parse_reply(line: bytes) -> Dict[str, Any]:
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


def _field(reply: Mapping[str, Any], name: str, kind: type, what: str = "reply") -> Any:
    value = reply.get(name)
    # bool is a subclass of int: do not let true/false pass for a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _malformed(f"{what} field {name!r} should be {kind.__name__}, got {value!r}")
    return value


def _optional_str(reply: Mapping[str, Any], name: str) -> Optional[str]:
    value = reply.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _malformed(f"field {name!r} should be a string, got {value!r}")


def _optional_int(reply: Mapping[str, Any], name: str) -> Optional[int]:
    if reply.get(name) is None:
        return None
    value: int = _field(reply, name, int, "open reply")
    return value


@dataclass(frozen=True)
class RecordingInfo:
    """One entry of ``Client.list()``: a recording the daemon can serve.

    Attributes:
        path: the path to pass to ``Client.open``.
        format: the recording format (``evt2``, ``evt3``, ``dat``...).
        size: size of the recording file in bytes.
        decoded: whether a decoded segment is resident (opening it costs no decode).
    """

    path: str
    format: str
    size: int
    decoded: bool


@dataclass(frozen=True)
class OpenReply:
    """The fields of a successful ``open`` reply, checked."""

    lease: int
    path: str
    segment_name: str
    segment_path: Optional[str]
    segment_size: int
    rows: int
    format: str
    width: Optional[int]
    height: Optional[int]
    cached: bool
    table: str = "events"
    dropped: int = 0


def parse_hello_reply(reply: Mapping[str, Any]) -> str:
    """Check a ``hello`` reply and return the daemon's ``server`` string (may be empty)."""
    version = _field(reply, "version", int, "hello reply")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_version",
            f"evshmd answered hello with protocol version {version}; "
            f"this client speaks version {PROTOCOL_VERSION}",
        )
    server = reply.get("server", "")
    return server if isinstance(server, str) else ""


def parse_open_reply(reply: Mapping[str, Any]) -> OpenReply:
    """Check an ``open`` reply and return its fields."""
    segment = reply.get("segment")
    if not isinstance(segment, dict):
        raise _malformed(f"open reply field 'segment' should be an object, got {segment!r}")
    result = OpenReply(
        lease=_field(reply, "lease", int, "open reply"),
        path=_field(reply, "path", str, "open reply"),
        segment_name=_field(segment, "name", str, "segment"),
        segment_path=_optional_str(segment, "path"),
        segment_size=_field(segment, "size", int, "segment"),
        rows=_field(reply, "rows", int, "open reply"),
        format=_field(reply, "format", str, "open reply"),
        width=_optional_int(reply, "width"),
        height=_optional_int(reply, "height"),
        cached=_field(reply, "cached", bool, "open reply"),
        table=reply.get("table", "events"),
        dropped=_optional_int(reply, "dropped") or 0,
    )
    if result.table not in TABLES:
        raise _malformed(f"open reply names an unknown table {result.table!r}")
    if result.segment_size <= 0 or result.rows < 0:
        raise _malformed(f"open reply has segment size {result.segment_size} "
                         f"and {result.rows} rows")
    return result


def parse_list_reply(reply: Mapping[str, Any]) -> List[RecordingInfo]:
    """Check a ``list`` reply and return its recordings, in the daemon's order."""
    entries = reply.get("recordings")
    if not isinstance(entries, list):
        raise _malformed(f"list reply field 'recordings' should be a list, got {entries!r}")
    infos: List[RecordingInfo] = []
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


def parse_stats_reply(reply: Mapping[str, Any]) -> Dict[str, int]:
    """Return the integer counters of a ``stats`` reply, in the daemon's order.

    Fields that are not integers (``ok``, or anything a newer daemon adds) are left out.
    """
    return {
        key: value for key, value in reply.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
