"""Command line: ``python -m evshm [--socket PATH] COMMAND``, the Python twin of the
``evshm`` CLI, plus the daemon's lifecycle (``start``, ``stop``, ``serve``).

``ls``, ``open``, ``stats`` and ``evict`` talk to the daemon (``--json`` for a machine);
``start``/``stop`` run it in the background (see :mod:`evshm._daemon`), ``serve`` in the
foreground; ``generate`` and ``convert`` run the ``evshm`` binary installed with the
package, which does them in Rust.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from . import __version__
from ._client import Client
from ._connect import default_socket_path
from ._daemon import binary, canonical_roots, launch, stop
from ._describe import describe, open_json
from ._errors import EvshmError
from ._protocol import stats_request

#: Commands that pass what follows them to a binary: evshmd's options after the roots of
#: ``start`` and ``serve``, all of ``generate`` and ``convert``.
_PASSING = ("start", "serve", "generate", "convert")
#: Exit status after stdout was closed early (``| head``), as for a process that SIGPIPE
#: killed.
_BROKEN_PIPE = 128 + 13


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evshm",
        description="Talk to the evshmd daemon (list, open zero-copy, count, evict), run it "
                    "(start, stop, serve), and make or convert recordings.",
    )
    parser.add_argument("--version", action="version", version=f"evshm {__version__}")
    parser.add_argument("--socket", metavar="PATH", default=None,
                        help="daemon socket (default: $EVSHM_SOCKET, "
                             "$XDG_RUNTIME_DIR/evshm.sock, /tmp/evshm-$UID/evshm.sock)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=30.0,
                        help="seconds to wait for the daemon (default: 30)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = commands.add_parser("ls", help="list the recordings the daemon serves")
    open_cmd = commands.add_parser("open", help="open a recording and describe it")
    open_cmd.add_argument("path", metavar="PATH", help="path relative to a served root")
    open_cmd.add_argument("--triggers", action="store_true",
                          help="open the table of external triggers instead of the events")
    open_cmd.add_argument("--window", nargs=2, type=int, metavar=("T0", "T1"),
                          help="only the rows of the time window [T0, T1) (microseconds)")
    stats = commands.add_parser("stats", help="print the daemon's counters")
    evict = commands.add_parser("evict", help="drop every decoded chunk no client holds "
                                              "from shared memory, now")
    for command in (ls, open_cmd, stats, evict):
        command.add_argument("--json", action="store_true", help="print JSON")
    start = commands.add_parser(
        "start", help="start evshmd in the background on the socket unless it runs there",
        description="Start evshmd serving ROOT in the background, unless one already serves "
                    "it on the socket; options after the roots go to evshmd (see evshmd "
                    "--help). It runs until `python -m evshm stop`.")
    start.add_argument("roots", nargs="+", metavar="ROOT", help="directory of recordings")
    commands.add_parser("stop", help="stop the evshmd on the socket and wait until it exits")
    serve = commands.add_parser(
        "serve", help="run evshmd in the foreground",
        description="Run evshmd serving ROOT in the foreground (as a service manager "
                    "would); options after the roots go to evshmd.")
    serve.add_argument("roots", nargs="+", metavar="ROOT", help="directory of recordings")
    for name, what in (("generate", "write a synthetic recording"),
                       ("convert", "convert a recording to another format or Arrow")):
        passing = commands.add_parser(name, help=f"{what} (evshm {name} --help)",
                                      add_help=False)
        passing.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _print_table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(w) if r else cell.ljust(w)
                 for cell, w, r in zip(row, widths, right)]
        print("  ".join(cells).rstrip())


def _ls(client: Client, as_json: bool) -> None:
    recordings = client.list()
    if as_json:
        print(json.dumps([dataclasses.asdict(info) for info in recordings], indent=2))
        return
    rows: list[list[str]] = [["PATH", "FORMAT", "SIZE", "DECODED"]]
    for info in recordings:
        rows.append([info.path, info.format, str(info.size), "yes" if info.decoded else "no"])
    _print_table(rows, right=[False, False, True, False])


def _open(client: Client, args: argparse.Namespace, window: tuple[int, int] | None) -> None:
    table = "triggers" if args.triggers else "events"
    rec, request_s, attach_s = client._open_timed(args.path, table, window=window)
    with rec:
        if args.json:
            print(json.dumps(open_json(rec, request_s, attach_s), indent=2))
        else:
            describe(rec, request_s, attach_s)


def _stats(client: Client, as_json: bool) -> None:
    if as_json:
        # Every field, the clients' list included (Client.stats keeps the counters).
        reply = client._connection().request(stats_request(), dict)
        reply.pop("ok", None)
        print(json.dumps(reply, indent=2))
        return
    stats = client.stats()
    width = max((len(key) for key in stats), default=0)
    for key, value in stats.items():
        print(f"{key:<{width}} {value}")


def _evict(client: Client, as_json: bool) -> None:
    evicted = client.evict()
    if as_json:
        print(json.dumps(evicted, indent=2))
    else:
        print(f"evicted {evicted['evicted']} unleased chunks "
              f"({evicted['bytes_evicted']} bytes)")


def _start(args: argparse.Namespace, evshmd_args: list[str]) -> None:
    socket_path = args.socket or default_socket_path()
    roots = canonical_roots(args.roots)
    client, started = launch(roots, socket_path, evshmd_args, args.timeout,
                             explicit=args.socket is not None)
    client.close()
    if started is None:
        print(f"evshmd already serves {', '.join(roots)} on {socket_path}")


def _stop(args: argparse.Namespace) -> None:
    socket_path = args.socket or default_socket_path()
    if stop(socket_path, timeout=args.timeout):
        print(f"stopped evshmd on {socket_path}")
    else:
        print(f"no evshmd runs on {socket_path}")


def _serve(args: argparse.Namespace, evshmd_args: list[str]) -> None:
    daemon = binary("evshmd")
    argv = [daemon, *(arg for root in args.roots for arg in ("--root", root))]
    if args.socket is not None:
        argv += ["--socket", args.socket]
    os.execv(daemon, argv + evshmd_args)


def _run(args: argparse.Namespace, extra: list[str],
         window: tuple[int, int] | None) -> int:
    if args.command in ("generate", "convert"):
        return subprocess.run([binary("evshm"), args.command, *extra, *args.args]).returncode
    if args.command == "start":
        _start(args, extra)
    elif args.command == "stop":
        _stop(args)
    elif args.command == "serve":
        _serve(args, extra)
    else:
        with Client(args.socket, timeout=args.timeout) as client:
            if args.command == "ls":
                _ls(client, args.json)
            elif args.command == "open":
                _open(client, args, window)
            elif args.command == "stats":
                _stats(client, args.json)
            else:
                _evict(client, args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in _PASSING:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    window = None
    if args.command == "open" and args.window is not None:
        window = (args.window[0], args.window[1])
        if window[1] < window[0]:
            parser.error(f"--window {window[0]} {window[1]} ends before it starts")
    try:
        status = _run(args, extra, window)
        sys.stdout.flush()
    except (EvshmError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _stdout_gone()
        print(f"evshm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


def _stdout_gone() -> int:
    """The reader of stdout went away (``| head``): say nothing more, as a command that
    SIGPIPE ended would, and keep Python from reporting the failed flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return _BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
