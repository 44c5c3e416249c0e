"""Writes ECF buffers (Prophesee's codec of Metavision HDF5 chunks) with evshm's encoder,
one per layout of x, y and p, and what evlib's decoder reads from each, for
formats/tests/ecf.rs. No ECF writer is installable (Prophesee's is a C++ HDF5 plugin), so
the peer's reader checks evshm's writer, and evshm's reader is checked against the peer.

Run from the repository root with a Python that has evlib==0.13.2, numpy and pyarrow:
    python formats/tests/data/ecf/make_fixtures.py
"""

import os
import subprocess

import evlib
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    subprocess.run(["cargo", "run", "-q", "-p", "evshm-formats", "--example", "ecf_buffers",
                    "--", HERE], check=True)
    for name in ["packed", "yruns", "masked"]:
        with open(os.path.join(HERE, f"{name}.ecf"), "rb") as f:
            events = evlib.formats.test_prophesee_ecf_decode(f.read(), False)
        x, y, p, t = (np.array(column) for column in zip(*events))
        table = pa.table({"t": pa.array(t.astype(np.int64)), "x": pa.array(x.astype(np.int16)),
                          "y": pa.array(y.astype(np.int16)), "p": pa.array(p.astype(np.int8))})
        with ipc.new_file(os.path.join(HERE, f"{name}.expected.arrow"), table.schema) as w:
            w.write_table(table)


if __name__ == "__main__":
    main()
