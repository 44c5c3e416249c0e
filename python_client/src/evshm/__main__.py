"""Command line: ``python -m evshm [--socket PATH] ls | open PATH | stats``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pyarrow.compute as pc

from ._client import Client
from ._errors import EvshmError
from ._recording import Recording


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evshm",
        description="Talk to the evshmd daemon: list, open (map zero-copy) and count.",
    )
    parser.add_argument("--socket", metavar="PATH", default=None,
                        help="daemon socket (default: $EVSHM_SOCKET, "
                             "$XDG_RUNTIME_DIR/evshm.sock, /tmp/evshm-$UID/evshm.sock)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=30.0,
                        help="seconds to wait for the daemon (default: 30)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("ls", help="list the recordings the daemon serves")
    open_cmd = commands.add_parser("open", help="open a recording and describe it")
    open_cmd.add_argument("path", metavar="PATH", help="path relative to a served root")
    open_cmd.add_argument("--triggers", action="store_true",
                          help="open the table of external triggers instead of the events")
    open_cmd.add_argument("--window", nargs=2, type=int, metavar=("T0", "T1"),
                          help="only the rows of the time window [T0, T1) (microseconds)")
    commands.add_parser("stats", help="print the daemon's counters")
    return parser


def _print_table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(w) if r else cell.ljust(w)
                 for cell, w, r in zip(row, widths, right)]
        print("  ".join(cells).rstrip())


def _ls(client: Client) -> None:
    rows: list[list[str]] = [["PATH", "FORMAT", "SIZE", "DECODED"]]
    for info in client.list():
        rows.append([info.path, info.format, str(info.size), "yes" if info.decoded else "no"])
    _print_table(rows, right=[False, False, True, False])


def _line(label: str, value: str) -> None:
    print(f"{label:<10}{value}")


def _describe(rec: Recording, request_s: float, attach_s: float) -> None:
    table = rec.table
    geometry = f" {rec.width}x{rec.height}" if rec.width is not None else ""
    _line("path", rec.path)
    _line("format", f"{rec.format}{geometry}")
    _line("rows", str(rec.rows))
    if rec.window is not None:
        _line("window", f"[{rec.window[0]}, {rec.window[1]}) us")
    _line("segments", _segments(rec))
    _line("schema", ", ".join(f"{field.name}: {field.type}" for field in table.schema))
    if "t" in table.column_names and table.num_rows:
        bounds = pc.min_max(table.column("t"))
        _line("time", f"{bounds['min'].as_py()} .. {bounds['max'].as_py()} us")
    else:
        _line("time", "(no events)")
    _line("request", f"{request_s * 1e3:.3f} ms (round trip, includes the decode "
                     "when not cached)")
    _line("attach", f"{attach_s * 1e3:.3f} ms (map + Arrow IPC open, no copy)")


def _segments(rec: Recording) -> str:
    """Where the chunks' segments are, their total size, and whether they were cached."""
    segments = [chunk.segment for chunk in rec.chunks]
    if not segments:
        where = "none"
    elif len(segments) == 1:
        where = segments[0].path or f"{segments[0].name} (sealed memfd)"
    else:
        folders = sorted({os.path.dirname(s.path) for s in segments if s.path is not None})
        where = (f"{len(segments)}, one per chunk, "
                 + (f"in {', '.join(folders)}" if folders else "sealed memfds"))
    state = "cached" if rec.cached else "decoded now"
    return f"{where} ({sum(s.size for s in segments)} bytes, {state})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    window = None
    if args.command == "open" and args.window is not None:
        window = (args.window[0], args.window[1])
        if window[1] < window[0]:
            parser.error(f"--window {window[0]} {window[1]} ends before it starts")
    try:
        with Client(args.socket, timeout=args.timeout) as client:
            if args.command == "ls":
                _ls(client)
            elif args.command == "open":
                table = "triggers" if args.triggers else "events"
                rec, request_s, attach_s = client._open_timed(args.path, table,
                                                              window=window)
                with rec:
                    _describe(rec, request_s, attach_s)
            else:
                stats = client.stats()
                width = max((len(key) for key in stats), default=0)
                for key, value in stats.items():
                    print(f"{key:<{width}} {value}")
    except EvshmError as exc:
        print(f"evshm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
