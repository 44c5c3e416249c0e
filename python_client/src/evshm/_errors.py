"""Exceptions raised by the evshm client.

Every exception derives from :class:`EvshmError`. Error replies from the daemon become a
:class:`DaemonError` subclass chosen from the reply's stable ``code`` (see the table in
``docs/PROTOCOL.md``), never from its human-readable message. A code this client does not
know yet becomes a plain :class:`DaemonError`, so newer daemons stay usable.
"""

from __future__ import annotations

__all__ = [
    "EvshmError",
    "ConnectionLost",
    "RootMismatch",
    "StartFailed",
    "MappingError",
    "DaemonError",
    "ProtocolError",
    "PathRefused",
    "RecordingNotFound",
    "UnsupportedFormat",
    "CorruptRecording",
    "ShmFull",
    "OverBudget",
    "UnknownLease",
    "AccessDenied",
    "TooManyLeases",
    "MALFORMED_REPLY",
    "error_for_code",
]

#: Code carried by a :class:`ProtocolError` that this client raises itself when the
#: daemon's reply is not valid protocol (not JSON, not an object, a field missing...).
#: It is not a daemon error code.
MALFORMED_REPLY = "malformed_reply"


class EvshmError(Exception):
    """Root of every exception raised by this package."""


class ConnectionLost(EvshmError):
    """The daemon cannot be reached, closed the connection, or did not answer in time.

    The message names the socket path and says whether evshmd looks alive.
    """


class UntrustedDaemon(EvshmError):
    """The socket, or the process listening on it, belongs to a user this client does not
    take for evshmd (not this user, root or ``$EVSHM_DAEMON_UID``), or the fallback
    socket's directory is not this user's private one. Nothing was sent or mapped.
    """


class RootMismatch(EvshmError):
    """:func:`evshm.start` found an evshmd on the socket that serves other roots than it
    was asked for, and left it alone (see :mod:`evshm._daemon` for why)."""


class StartFailed(EvshmError):
    """:func:`evshm.start` could not start evshmd; the message ends with its log."""


class MappingError(EvshmError):
    """Shared memory named by the daemon (an arena) cannot be mapped safely, or what
    it holds is not what the reply announced.

    For instance the arena vanished, or its size differs from the size in the reply
    (mapping past the end of a file would crash the process with SIGBUS, so it is
    refused).
    """

    def __init__(self, message: str, *, vanished: bool = False) -> None:
        super().__init__(message)
        #: Whether the arena's file was gone: evshmd removes its arenas when it stops.
        self.vanished = vanished


class DaemonError(EvshmError):
    """The daemon answered a request with an error reply.

    Attributes:
        code: the stable error code (program against this).
        message: the daemon's explanation, for humans.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ProtocolError(DaemonError):
    """The two ends disagree on the protocol.

    Raised for the daemon codes ``bad_request``, ``frame_too_large``, ``hello_required``,
    ``unsupported_version`` and ``unknown_op``, and by the client itself (with the same
    codes, or :data:`MALFORMED_REPLY`) when a request cannot be encoded or a reply
    cannot be understood.
    """


class PathRefused(DaemonError):
    """The path is malformed (``bad_path``) or lies outside every root (``outside_roots``)."""


class RecordingNotFound(DaemonError):
    """No served root holds a file at that path (``not_found``)."""


class UnsupportedFormat(DaemonError):
    """The file is not an event recording the daemon can read (``unsupported_format``)."""


class CorruptRecording(DaemonError):
    """The recording could not be decoded (``corrupt_recording``)."""


class ShmFull(DaemonError):
    """The shared-memory filesystem has no room for the decoded chunk (``shm_full``):
    other files fill it, or it is small (Docker's 64 MB ``/dev/shm``: ``--shm-size``)."""


class OverBudget(ShmFull):
    """The daemon's memory budget (``evshmd --memory-budget``) has no room for what the
    open needs, even after evicting what no client holds and waiting for releases
    (``over_budget``). The message says how much the open needs and what to do: read a
    whole recording by time windows; for a window, raise the budget.

    It derives from :class:`ShmFull` only because ``over_budget`` raised ``ShmFull``
    before this class existed: ``except ShmFull`` still catches it, but catching it that
    way is deprecated.
    """


class UnknownLease(DaemonError):
    """``release`` named a lease this connection does not hold (``unknown_lease``)."""


class AccessDenied(DaemonError):
    """This user may not use the daemon: not on its ``--allow-uid`` / ``--allow-gid``
    lists (``access_denied``)."""


class TooManyLeases(DaemonError):
    """The connection holds as many leases as the daemon allows one connection
    (``too_many_leases``): release some first."""


class TooManyConnections(DaemonError):
    """The daemon serves as many connections as it may (``too_many_connections``,
    ``evshmd --max-connections``); it closed this one. Close idle clients, or raise the
    limit."""


_ERRORS_BY_CODE: dict[str, type[DaemonError]] = {
    "bad_request": ProtocolError,
    "frame_too_large": ProtocolError,
    "hello_required": ProtocolError,
    "unsupported_version": ProtocolError,
    "unknown_op": ProtocolError,
    MALFORMED_REPLY: ProtocolError,
    "bad_path": PathRefused,
    "outside_roots": PathRefused,
    "not_found": RecordingNotFound,
    "unsupported_format": UnsupportedFormat,
    "corrupt_recording": CorruptRecording,
    "shm_full": ShmFull,
    "over_budget": OverBudget,
    "unknown_lease": UnknownLease,
    "access_denied": AccessDenied,
    "too_many_leases": TooManyLeases,
    "too_many_connections": TooManyConnections,
}


def error_for_code(code: str, message: str) -> DaemonError:
    """Build the exception for an error reply: the subclass registered for ``code``,
    or a plain :class:`DaemonError` for ``internal`` and codes unknown to this client."""
    return _ERRORS_BY_CODE.get(code, DaemonError)(code, message)
