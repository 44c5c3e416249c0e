"""Python client of evshm: decoded event-camera recordings from shared memory.

The ``evshmd`` daemon decodes each recording once, in chunks, into Arrow IPC streams in
POSIX shared-memory segments. This client asks for a recording (or a time window of it)
over a Unix socket, maps the segments read-only and reads the columns in place: no copy,
no second decode.

Two processes::

    $ evshmd --root /data/events          # the daemon, once per machine

    >>> import evshm
    >>> with evshm.Client() as client:
    ...     with client.open("day1/cam0.raw") as rec:
    ...         cols = rec.numpy()                    # read-only numpy views, no copy
    ...         window = rec.time_window(0, 50_000)   # a zero-copy slice [t0, t1)

The core needs only the standard library and pyarrow; ``Recording.numpy()``,
``.polars()`` and ``.torch()`` need the ``numpy``, ``polars`` and ``torch`` extras.
``evshm.transforms`` holds event representations (histogram, voxel grid) and
``evshm.torch`` PyTorch datasets over served recordings. See ``docs/PROTOCOL.md`` for
the wire protocol and ``docs/PYTHON.md`` for a guide.
"""

from ._client import Client, default_socket_path
from ._dataset import EventWindows
from ._errors import (
    MALFORMED_REPLY,
    AccessDenied,
    ConnectionLost,
    CorruptRecording,
    DaemonError,
    EvshmError,
    OverBudget,
    PathRefused,
    ProtocolError,
    RecordingNotFound,
    SegmentError,
    ShmFull,
    TooManyConnections,
    TooManyLeases,
    UnknownLease,
    UnsupportedFormat,
    UntrustedDaemon,
)
from ._events import Events
from ._protocol import PROTOCOL_VERSION, ChunkInfo, RecordingInfo, SegmentInfo
from ._recording import Recording

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "Client",
    "Recording",
    "RecordingInfo",
    "ChunkInfo",
    "SegmentInfo",
    "Events",
    "EventWindows",
    "default_socket_path",
    "EvshmError",
    "ConnectionLost",
    "UntrustedDaemon",
    "SegmentError",
    "DaemonError",
    "ProtocolError",
    "PathRefused",
    "RecordingNotFound",
    "UnsupportedFormat",
    "CorruptRecording",
    "ShmFull",
    "OverBudget",
    "AccessDenied",
    "TooManyLeases",
    "TooManyConnections",
    "UnknownLease",
    "MALFORMED_REPLY",
]
