"""Reads one recording through the evshm Python client, for the Rust cross-process tests.

Usage: py_reader.py SOCKET PATH OUT.arrow
Writes the table it read to OUT.arrow (Arrow IPC file) and prints the name of its (first)
segment, so the Rust test can check that both readers attached the same segment and saw the
same values.
"""

import sys

import pyarrow as pa

import evshm


def main() -> None:
    socket_path, path, out = sys.argv[1:4]
    with evshm.Client(socket_path) as client:
        with client.open(path) as recording:
            table = recording.table
            with pa.OSFile(out, "wb") as sink:
                with pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
            print(recording.chunks[0].extent.arena, recording.chunks[0].extent.offset)


if __name__ == "__main__":
    main()
