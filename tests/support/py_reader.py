"""Reads one recording through the evshm Python client, for the Rust cross-process tests.

Usage: py_reader.py SOCKET PATH OUT.arrow
Writes the table it read to OUT.arrow (Arrow IPC file) and prints where its first chunk
lies, ``ARENA OFFSET SIZE`` (its extent: the arena's name, the offset and size of the
stream in it), so the Rust test can check that both readers read the same extent of the
same arena and saw the same values.
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
            extent = recording.chunks[0].extent
            print(extent.arena, extent.offset, extent.size)


if __name__ == "__main__":
    main()
