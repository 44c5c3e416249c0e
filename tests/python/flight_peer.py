"""A Flight client for the tests, run in another network namespace: opens a recording (or
a window) through ``evshm.RemoteClient``, writes the table to ``--out`` (Arrow IPC) and
prints one JSON line: ``{"ok": true, "rows": N, "chunks": N}``, or ``{"ok": false,
"error": "<exception class>", "message": "..."}``."""

from __future__ import annotations

import argparse
import json
import sys

import pyarrow as pa
import pyarrow.ipc

import evshm


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("path")
    parser.add_argument("--window", type=int, nargs=2)
    parser.add_argument("--token")
    parser.add_argument("--certs")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--out")
    args = parser.parse_args()
    try:
        client = evshm.RemoteClient(args.address, token=args.token, tls_root_certs=args.certs,
                                    parallel=args.parallel, timeout=120)
        window = tuple(args.window) if args.window else None
        rec = client.open(args.path, window=window)
        if args.out:
            with pa.ipc.new_file(args.out, rec.table.schema) as writer:
                writer.write_table(rec.table)
        print(json.dumps({"ok": True, "rows": rec.rows, "chunks": len(rec.chunks)}))
    except Exception as exc:  # the test reads which
        print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
