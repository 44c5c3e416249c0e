"""Whom the client takes for evshmd (``protocol/src/socket.rs`` states the same rules).

Before it sends a request or maps anything, the socket file and the process listening on
it (``SO_PEERCRED``, which the kernel vouches for) must belong to this user, root or
``$EVSHM_DAEMON_UID``; and the fallback socket's directory, ``/tmp/evshm-$UID``, must be
this user's and closed to others. Otherwise another user, listening first where this
client looks, could answer in evshmd's place and hand out files that it truncates under
the reader (SIGBUS).
"""

from __future__ import annotations

import os
import socket
import stat
import struct

from ._errors import UntrustedDaemon

#: The variable naming the uid of a daemon run by another user (a service account).
DAEMON_UID_VARIABLE = "EVSHM_DAEMON_UID"

_UCRED = struct.Struct("iII")  # pid, uid, gid


def fallback_socket_dir() -> str:
    """The directory of the last resort socket, made by evshmd with mode 0700."""
    return f"/tmp/evshm-{os.getuid()}"


def trusted_daemon_uids(socket_path: str) -> list[int]:
    """This user, root, and ``$EVSHM_DAEMON_UID`` if set."""
    uids = [os.geteuid(), 0]
    value = os.environ.get(DAEMON_UID_VARIABLE)
    if value:
        try:
            uids.append(int(value.strip()))
        except ValueError:
            raise UntrustedDaemon(
                f"refusing evshmd at {socket_path}: {DAEMON_UID_VARIABLE}={value!r} "
                "is not a numeric user id") from None
    return uids


def private_dir_problem(path: str) -> str | None:
    """What keeps ``path`` from being this user's private directory, if anything."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to uid {os.geteuid()}"
    if mode & 0o077:
        return f"{path} is open to other users (mode {mode:o}, not 700)"
    return None


def _whom(trusted: list[int]) -> str:
    return (f"not one this client trusts ({', '.join(map(str, trusted))}); for a daemon "
            f"of another user, set {DAEMON_UID_VARIABLE} to its uid")


def check_socket(socket_path: str) -> None:
    """Check where the socket is and who owns it, before connecting."""
    if os.path.dirname(socket_path) == fallback_socket_dir():
        problem = private_dir_problem(fallback_socket_dir())
        if problem is not None:
            raise UntrustedDaemon(
                f"refusing evshmd at {socket_path}: {problem}: another user may have "
                "made it to catch this user's connections")
    trusted = trusted_daemon_uids(socket_path)
    try:
        owner = os.lstat(socket_path).st_uid
    except OSError:
        return  # a missing socket is for connect() to report
    if owner not in trusted:
        raise UntrustedDaemon(f"refusing evshmd at {socket_path}: the socket file belongs "
                              f"to uid {owner}, {_whom(trusted)}")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """The pid, uid and gid of the process at the other end of ``sock``, as the kernel
    vouches for them (``SO_PEERCRED``; the pid is 0 outside this pid namespace)."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid


def check_peer(socket_path: str, sock: socket.socket) -> None:
    """Check the process at the other end of ``sock``."""
    trusted = trusted_daemon_uids(socket_path)
    _, uid, _ = peer_credentials(sock)
    if uid not in trusted:
        raise UntrustedDaemon(f"refusing evshmd at {socket_path}: it runs as uid {uid}, "
                              f"{_whom(trusted)}")
