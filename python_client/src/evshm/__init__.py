"""Python client of evshm: decoded event-camera recordings from shared memory.

The ``evshmd`` daemon decodes each recording once, in chunks, into Arrow IPC streams in
POSIX shared memory (a few large *arenas*). This client asks for a recording (or a time
window of it) over a Unix socket, maps each arena read-only once per process and reads the
columns in place: no copy, no second decode.

One process: the wheel brings ``evshmd``, and :func:`start` runs it when none serves the
root yet (:func:`stop` ends it; other processes find it through the default socket)::

    >>> import evshm
    >>> client = evshm.start("recordings")             # evshmd serving ./recordings
    >>> with client.open("day1/cam0.raw", window=(0, 50_000)) as rec:
    ...     cols = rec.numpy()                          # read-only numpy views, no copy
    >>> evshm.stop()

Or a daemon run as a service (``evshmd --root /data/events``) and ``evshm.Client()``.

The core needs only the standard library and pyarrow; ``Recording.numpy()``,
``.polars()`` and ``.torch()`` need the ``numpy``, ``polars`` and ``torch`` extras.
``evshm.transforms`` holds augmentations, filters and representations of events,
``evshm.targets`` targets of windows (class folders, Prophesee's boxes) and
``evshm.torch`` PyTorch datasets over served recordings. See ``docs/PROTOCOL.md`` for
the wire protocol and ``docs/PYTHON.md`` for a guide.
"""

from ._client import Client
from ._connect import default_socket_path
from ._daemon import start, stop
from ._dataset import EventWindows
from ._errors import (
    MALFORMED_REPLY,
    AccessDenied,
    ConnectionLost,
    CorruptRecording,
    DaemonError,
    EvshmError,
    MappingError,
    OverBudget,
    PathRefused,
    ProtocolError,
    RecordingNotFound,
    RootMismatch,
    ShmFull,
    StartFailed,
    TooManyConnections,
    TooManyLeases,
    UnknownLease,
    UnsupportedFormat,
    UntrustedDaemon,
)
from ._events import Events
from ._protocol import PROTOCOL_VERSION, ArenaInfo, ChunkInfo, ExtentInfo, RecordingInfo
from ._recording import Recording
from ._remote import RemoteClient

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "Client",
    "RemoteClient",
    "start",
    "stop",
    "Recording",
    "RecordingInfo",
    "ChunkInfo",
    "ArenaInfo",
    "ExtentInfo",
    "Events",
    "EventWindows",
    "default_socket_path",
    "EvshmError",
    "ConnectionLost",
    "UntrustedDaemon",
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
    "AccessDenied",
    "TooManyLeases",
    "TooManyConnections",
    "UnknownLease",
    "MALFORMED_REPLY",
]
