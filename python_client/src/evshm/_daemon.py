"""evshmd on demand: :func:`start` returns a client of an evshmd serving given roots on the
user's default socket, starting one when none answers there; :func:`stop` ends it.

Lifecycle
---------
- ``start`` reuses the daemon that answers on the socket when it serves exactly the roots
  asked for (canonical paths, in order), whatever options it was started with. One that
  serves other roots is left alone and ``start`` raises :class:`~evshm.RootMismatch`:
  stopping it would cut off whoever reads from it, and serving a root it does not know
  would make ``open`` find other files than the caller means.
- Otherwise it starts ``evshmd --root ROOT... --socket SOCKET`` with the options given,
  detached (a session of its own, so that the caller's terminal and its signals do not
  reach it), its output appended to ``<socket>.log``, and says so in one line on stderr.
  It returns once the daemon answers. Of two callers that start one at once, one daemon
  wins the socket (the other exits with status 3) and both get it.
- The daemon outlives the process that started it: DataLoader workers, other jobs and
  notebooks find it through the same default socket. It runs until :func:`stop`,
  ``python -m evshm stop`` or a SIGTERM, which remove its segments, socket and lock file
  (mappings made before stay readable); until then the chunks it decoded stay in shared
  memory (RAM), within its memory budget, evicted least recently used when the budget
  needs the room or all at once by ``Client.evict()``.

The binaries are ``$EVSHMD`` and ``$EVSHM_CLI`` if set (a development build), else those
installed with this package (the scripts directory of this Python's installation, or of
the user's), else the first on ``PATH``.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from typing import Union

from ._client import Client, _Connection
from ._connect import default_socket_path, socket_accepts
from ._errors import ConnectionLost, EvshmError, RootMismatch, StartFailed, UntrustedDaemon
from ._protocol import parse_stats_reply, stats_request
from ._trust import fallback_socket_dir, peer_credentials, private_dir_problem

__all__ = ["start", "stop", "binary", "daemon_args", "canonical_roots", "launch"]

StrPath = Union[str, "os.PathLike[str]"]

#: Exit status of evshmd when another evshmd serves the socket (daemon/src/main.rs).
_ALREADY_RUNNING = 3
#: Seconds between looks at a daemon that is starting.
_POLL = 0.02
#: The variables naming the binaries, when set.
_OVERRIDES = {"evshmd": "EVSHMD", "evshm": "EVSHM_CLI"}

#: The daemons this process started, by socket: :func:`stop` reaps them once they exit.
_started: dict[str, subprocess.Popen[bytes]] = {}


def binary(name: str) -> str:
    """The path of ``evshmd`` or ``evshm``: see the module's doc for where it is looked
    for. Raises :class:`FileNotFoundError` when it is nowhere."""
    variable = _OVERRIDES[name]
    override = os.environ.get(variable)
    if override:
        return override
    for scheme in (None, f"{os.name}_user"):
        scripts = sysconfig.get_path("scripts") if scheme is None else \
            sysconfig.get_path("scripts", scheme)
        candidate = os.path.join(scripts, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: it comes with the evshm wheel "
                                f"(pip install evshm), or set {variable} to its path")
    return found


def daemon_args(options: Mapping[str, object]) -> list[str]:
    """evshmd's command-line options for keyword arguments: ``memory_budget="8G"`` gives
    ``--memory-budget 8G``, ``sealed=True`` gives ``--sealed``, a list repeats the option
    (``allow_uid=[1001, 1002]``), and ``False`` or ``None`` give nothing."""
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def start(root: StrPath | Sequence[StrPath], *, socket: StrPath | None = None,
          timeout: float = 30.0, **options: object) -> Client:
    """A client of the evshmd serving ``root`` (a directory, or a list of them) on
    ``socket`` (default: :func:`~evshm.default_socket_path`), started unless it runs.

    ``options`` are evshmd's options (see :func:`daemon_args`; e.g.
    ``memory_budget="8G"``, ``chunk_events=1_000_000``), used when it starts one. See the
    module's doc for what is reused and how long the daemon lives.

    Raises :class:`~evshm.RootMismatch` when the daemon on the socket serves other roots,
    :class:`~evshm.StartFailed` when evshmd cannot start (the message ends with its log),
    :class:`NotADirectoryError` for a root that is not a directory.
    """
    path = default_socket_path() if socket is None else os.fspath(socket)
    explicit = socket is not None
    return launch(canonical_roots(root), path, daemon_args(options), timeout, explicit)[0]


def canonical_roots(root: StrPath | Sequence[StrPath]) -> list[str]:
    """The canonical paths of the roots asked for, as evshmd names them."""
    given = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    if not given:
        raise ValueError("evshm.start needs a root to serve")
    canonical = []
    for directory in given:
        resolved = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(resolved):
            raise NotADirectoryError(f"evshm.start: root {os.fspath(directory)} is not a "
                                     "directory")
        canonical.append(resolved)
    return canonical


def launch(roots: list[str], socket_path: str, args: list[str], timeout: float,
           explicit: bool) -> tuple[Client, int | None]:
    """:func:`start` for canonical ``roots`` and evshmd arguments ``args``, ``explicit``
    saying whether the caller named the socket: the client, and the pid of the daemon if
    this call started it."""
    deadline = time.monotonic() + timeout
    for path, started in list(_started.items()):
        if started.poll() is not None:  # stopped by another process: reaped just now
            del _started[path]
    client = _serving(roots, socket_path, timeout, explicit)
    if client is not None:
        return client, None
    log = _open_log(socket_path)
    command = [binary("evshmd"), *(arg for root in roots for arg in ("--root", root)),
               "--socket", socket_path, *args]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(log, f"--- {stamp} evshm.start (pid {os.getpid()}): {shlex.join(command)}\n"
             .encode())
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                cwd="/", start_new_session=True)
    finally:
        os.close(log)
    while True:
        status = proc.poll()
        try:
            client = _serving(roots, socket_path, timeout, explicit)
        except RootMismatch:
            _let_go(proc, deadline)
            raise
        if client is not None:
            if peer_credentials(client._connection().sock)[0] == proc.pid:
                _started[socket_path] = proc
                print(f"evshm: started evshmd (pid {proc.pid}) serving {', '.join(roots)} "
                      f"on {socket_path}; log: {socket_path}.log; stop it with evshm.stop() "
                      "or python -m evshm stop", file=sys.stderr)
                return client, proc.pid
            _let_go(proc, deadline)
            return client, None
        if status is not None and status != _ALREADY_RUNNING:
            raise StartFailed(f"evshmd could not start on {socket_path} (exit status "
                              f"{status}): {_log_tail(socket_path)} [log: "
                              f"{socket_path}.log]")
        if time.monotonic() > deadline:
            if status is None:
                proc.terminate()
                proc.wait()
            raise StartFailed(f"evshmd did not answer on {socket_path} within {timeout} s "
                              f"[log: {socket_path}.log]")
        time.sleep(_POLL)


def _let_go(proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Reap ``proc``, an evshmd started for a socket where another daemon answers: it
    exits (status 3) once it finds the socket's lock taken; stopped if it has not by
    ``deadline``."""
    try:
        proc.wait(max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()


def _serving(roots: list[str], socket_path: str, timeout: float,
             explicit: bool) -> Client | None:
    """A client of the daemon that answers on ``socket_path`` if it serves ``roots``;
    ``None`` if none answers; :class:`~evshm.RootMismatch` if it serves others."""
    try:
        # Given the path only if the caller named it: a client of the default socket
        # advises $EVSHM_SOCKET, should it lose its daemon.
        client = Client(socket_path if explicit else None, timeout=timeout)
    except ConnectionLost:
        return None
    served = client.roots
    if served == roots:
        return client
    client.close()
    serves = ", ".join(served) if served else "roots it does not name (an older evshmd)"
    raise RootMismatch(
        f"evshmd at {socket_path} serves {serves}, not {', '.join(roots)}; stop it first "
        "(evshm.stop() or python -m evshm stop), or start another on a socket of its own "
        "(evshm.start(root, socket=PATH))")


def _open_log(socket_path: str) -> int:
    """The log file beside the socket, opened for appending (and the fallback socket's
    private directory, made if missing: evshmd would make it, but the log goes first)."""
    directory = os.path.dirname(socket_path) or "."
    if directory == fallback_socket_dir():
        os.makedirs(directory, mode=0o700, exist_ok=True)
        problem = private_dir_problem(directory)
        if problem is not None:
            raise UntrustedDaemon(f"refusing to start evshmd at {socket_path}: {problem}: "
                                  "another user may have made it")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(f"{socket_path}.log", flags, 0o600)
    except OSError as exc:
        raise StartFailed(f"cannot start evshmd at {socket_path}: cannot write its log "
                          f"{socket_path}.log: {exc.strerror}") from None


def _log_tail(socket_path: str, lines: int = 5) -> str:
    try:
        with open(f"{socket_path}.log", errors="replace") as log:
            tail = log.read().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in tail if not line.startswith("--- "))


def stop(socket: StrPath | None = None, *, timeout: float = 30.0) -> bool:
    """Stop the evshmd on ``socket`` (default: :func:`~evshm.default_socket_path`) and
    wait until it has exited, having removed its segments, socket and lock file: ``True``;
    ``False`` when no daemon runs there.

    The daemon is signalled (SIGTERM) through a pidfd taken while it answered on this
    connection, so no other process can be hit, whatever pid reuse. Raises
    :class:`~evshm.EvshmError` when it runs as another user or in another pid namespace
    (a container), or does not exit within ``timeout`` seconds.
    """
    path = default_socket_path() if socket is None else os.fspath(socket)
    try:
        conn = _Connection(path, timeout)
    except ConnectionLost:
        if not socket_accepts(path):
            return False
        raise
    try:
        pid, uid, _ = peer_credentials(conn.sock)
        if pid == 0:
            raise EvshmError(f"cannot stop evshmd at {path}: it runs in another pid "
                             "namespace (a container?); stop it there")
        pidfd = os.pidfd_open(pid)
        try:
            # Answered after the pidfd was taken: the pid was still the daemon's then.
            conn.request(stats_request(), parse_stats_reply)
        except BaseException:
            os.close(pidfd)
            raise
    finally:
        conn.close_when_idle()
    try:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        except PermissionError:
            raise EvshmError(f"cannot stop evshmd at {path} (pid {pid}): it runs as uid "
                             f"{uid}; stop it as that user") from None
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has exited
        if not poller.poll(timeout * 1000):
            raise EvshmError(f"evshmd at {path} (pid {pid}) did not exit within {timeout} s "
                             "of SIGTERM")
    finally:
        os.close(pidfd)
    started = _started.pop(path, None)
    if started is not None:
        started.wait()  # reap it: this process is its parent
    return True
