"""Python client of evshm: decoded event-camera recordings from shared memory.

The ``evshmd`` daemon decodes each recording once into an Arrow IPC stream in a POSIX
shared-memory segment. This client asks for it over a Unix socket, maps the segment
read-only and reads the columns in place: no copy, no second decode.

Two processes::

    $ evshmd --root /data/events          # the daemon, once per machine

    >>> import evshm
    >>> with evshm.Client() as client:
    ...     with client.open("day1/cam0.raw") as rec:
    ...         t = rec.table.column("t").chunk(0).to_numpy()  # zero-copy numpy view

Only the standard library and pyarrow are needed. See ``docs/PROTOCOL.md`` for the wire
protocol.
"""

from ._client import Client, Recording, default_socket_path
from ._errors import (
    MALFORMED_REPLY,
    ConnectionLost,
    CorruptRecording,
    DaemonError,
    EvshmError,
    PathRefused,
    ProtocolError,
    RecordingNotFound,
    SegmentError,
    ShmFull,
    UnknownLease,
    UnsupportedFormat,
)
from ._protocol import PROTOCOL_VERSION, RecordingInfo

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "Client",
    "Recording",
    "RecordingInfo",
    "default_socket_path",
    "EvshmError",
    "ConnectionLost",
    "SegmentError",
    "DaemonError",
    "ProtocolError",
    "PathRefused",
    "RecordingNotFound",
    "UnsupportedFormat",
    "CorruptRecording",
    "ShmFull",
    "UnknownLease",
    "MALFORMED_REPLY",
]
