"""Where the daemon's socket is, and connecting to it: the default socket chain, the trust
checks of ``_trust`` before anything is sent, and errors that say what to do when no
daemon answers (start one, or, for the default socket, point ``$EVSHM_SOCKET`` at one).
"""

from __future__ import annotations

import os
import socket
import stat

from ._errors import ConnectionLost
from ._trust import check_peer, check_socket, fallback_socket_dir

__all__ = ["default_socket_path", "socket_accepts", "daemon_status", "connect"]


def default_socket_path() -> str:
    """The socket path used when none is given; first match wins:

    1. ``$EVSHM_SOCKET``
    2. ``$XDG_RUNTIME_DIR/evshm.sock``
    3. ``/tmp/evshm-$UID/evshm.sock`` (a directory that must be this user's, mode 0700)

    An empty variable counts as unset.
    """
    explicit = os.environ.get("EVSHM_SOCKET")
    if explicit:
        return explicit
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return os.path.join(runtime_dir, "evshm.sock")
    return os.path.join(fallback_socket_dir(), "evshm.sock")


def socket_accepts(socket_path: str) -> bool:
    """Whether something accepts connections on ``socket_path`` now."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(socket_path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def daemon_status(socket_path: str) -> str:
    """Say whether something still accepts connections on ``socket_path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(socket_path)
    except FileNotFoundError:
        return "evshmd is not running (the socket file is gone)"
    except ConnectionRefusedError:
        return "evshmd is not running (nothing accepts on the socket)"
    except OSError as exc:
        return f"cannot tell whether evshmd is running ({exc.strerror or exc})"
    else:
        return "evshmd is still running and accepts new connections (see its log)"
    finally:
        probe.close()


def _not_running(socket_path: str, explicit: bool) -> str:
    """What to do when no evshmd runs at ``socket_path``: start one there, or, for the
    default socket, point ``$EVSHM_SOCKET`` at one that runs (a path given explicitly
    ignores the variable, so it is no advice then)."""
    if explicit:
        return (f"start one there with evshm.start(ROOT, socket={socket_path!r}) or "
                f"`python -m evshm --socket {socket_path} start ROOT`")
    return ("this is the default socket ($EVSHM_SOCKET, else $XDG_RUNTIME_DIR/evshm.sock, "
            "else /tmp/evshm-$UID/evshm.sock): start one with evshm.start(ROOT) or "
            "`python -m evshm start ROOT`, or set EVSHM_SOCKET to the socket of one that runs")


def _refused(socket_path: str, explicit: bool) -> str:
    """Why a connection to an existing file was refused: a socket nobody listens on any
    more, or a file that is no socket at all."""
    try:
        mode = os.stat(socket_path).st_mode
    except OSError:
        mode = stat.S_IFSOCK
    if not stat.S_ISSOCK(mode):
        return (f"{socket_path} is not a socket but a "
                f"{'directory' if stat.S_ISDIR(mode) else 'regular file'}: give the path "
                "of the socket evshmd listens on")
    return ("a stale socket file, nothing accepts on it (the evshmd that made it is gone, "
            f"and a new one replaces it); {_not_running(socket_path, explicit)}")


def connect(socket_path: str, timeout: float | None, explicit: bool = True) -> socket.socket:
    """A connected socket to the daemon at ``socket_path``, checked (see ``_trust``);
    ``explicit`` says whether the caller gave the path (the advice differs)."""
    check_socket(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # CLOEXEC by default
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        check_peer(socket_path, sock)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, FileNotFoundError):
            why = f"no such socket, no evshmd runs there; {_not_running(socket_path, explicit)}"
        elif isinstance(exc, ConnectionRefusedError):
            why = _refused(socket_path, explicit)
        elif isinstance(exc, PermissionError):
            why = "permission denied (evshmd may be running as another user)"
        elif isinstance(exc, socket.timeout):
            why = f"evshmd did not accept within {timeout} s (it is running but stuck?)"
        elif isinstance(exc, OSError):
            why = exc.strerror or str(exc)
        else:
            raise
        raise ConnectionLost(f"cannot connect to evshmd at {socket_path}: {why}") from exc
    return sock
