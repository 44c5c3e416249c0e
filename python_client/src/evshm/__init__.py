"""Python client of evshm: decoded event-camera recordings from shared memory.

The ``evshmd`` daemon decodes each recording once into an Arrow IPC stream in a POSIX
shared-memory segment. This client asks for it over a Unix socket, maps the segment
read-only and reads the columns in place: no copy, no second decode.

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
    AccessDenied,
    TooManyLeases,
    UnknownLease,
    UnsupportedFormat,
)
from ._dataset import EventWindows
from ._events import Events
from ._protocol import PROTOCOL_VERSION, RecordingInfo
from ._recording import Recording

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "Client",
    "Recording",
    "RecordingInfo",
    "Events",
    "EventWindows",
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
    "AccessDenied",
    "TooManyLeases",
    "UnknownLease",
    "MALFORMED_REPLY",
]
