"""Writes small HDF5 recordings in the layouts of DSEC, MVSEC and Metavision, with what
h5py (with hdf5plugin's filters) reads from each, for formats/tests/hdf5.rs.

Run from the repository root with a Python that has h5py==3.16.0, hdf5plugin==7.1.0,
numpy and pyarrow:
    python formats/tests/data/hdf5/make_fixtures.py

- dsec.h5: events/{x,y,p,t} (u16, u16, u8, u32) in chunks of 4096, compressed with Blosc
  as hdf5plugin writes it (x LZ4 with byte shuffle, y zstd with bit shuffle, p zstd, t
  zstd with byte shuffle), t_offset and ms_to_idx as DSEC has them. Expected: t + t_offset.
- mvsec.h5: davis/left/events, N x 4 float64 (x, y, t in seconds, p -1/1), gzip.
- metavision.h5: CD/events records (x u16, y u16, p i16, t i64), chunks of 16384,
  uncompressed; metavision_ecf.h5: the same events with each chunk compressed by ECF
  (evshm's encoder, `cargo run --example ecf_buffers chunks`, written raw with
  write_direct_chunk: no ECF writer is installable; its decoder is checked against evlib's
  in formats/tests/ecf.rs), the last chunk padded as HDF5 pads it.
- other.h5: a dataset of no event layout.
"""

import os
import subprocess
import tempfile

import h5py
import hdf5plugin
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

HERE = os.path.dirname(os.path.abspath(__file__))
B = hdf5plugin.Blosc


def write_arrow(name, t, x, y, p):
    table = pa.table({"t": pa.array(np.asarray(t, np.int64)), "x": pa.array(np.asarray(x, np.int16)),
                      "y": pa.array(np.asarray(y, np.int16)), "p": pa.array(np.asarray(p, np.int8))})
    with ipc.new_file(os.path.join(HERE, name), table.schema) as writer:
        writer.write_table(table)


def events(n, w, h, seed):
    r = np.random.default_rng(seed)
    t = np.cumsum(r.integers(0, 4, n))
    return t, r.integers(0, w, n), r.integers(0, h, n), r.integers(0, 2, n)


def dsec():
    t, x, y, p = events(10_000, 640, 480, 1)
    with h5py.File(os.path.join(HERE, "dsec.h5"), "w") as f:
        for name, data, blosc in [
            ("x", x.astype(np.uint16), B(cname="lz4", shuffle=B.SHUFFLE)),
            ("y", y.astype(np.uint16), B(cname="zstd", shuffle=B.BITSHUFFLE)),
            ("p", p.astype(np.uint8), B(cname="zstd", shuffle=B.NOSHUFFLE)),
            ("t", t.astype(np.uint32), B(cname="zstd", shuffle=B.SHUFFLE)),
        ]:
            f.create_dataset(f"events/{name}", data=data, chunks=(4096,), maxshape=(None,), **blosc)
        f.create_dataset("t_offset", data=np.int64(1_600_000_000_000_000))
        f.create_dataset("ms_to_idx", data=np.searchsorted(t, np.arange(t[-1] // 1000 + 1) * 1000).astype(np.uint64))
    with h5py.File(os.path.join(HERE, "dsec.h5"), "r") as f:
        e = f["events"]
        write_arrow("dsec.expected.arrow", e["t"][:].astype(np.int64) + f["t_offset"][()],
                    e["x"][:], e["y"][:], e["p"][:])


def mvsec():
    t, x, y, p = events(5_000, 346, 260, 2)
    seconds = 1_504_645_177.0 + t / 1e6
    rows = np.stack([x, y, seconds, 2.0 * p - 1], axis=1).astype(np.float64)
    with h5py.File(os.path.join(HERE, "mvsec.h5"), "w") as f:
        f.create_dataset("davis/left/events", data=rows, chunks=(2048, 4), compression="gzip")
    with h5py.File(os.path.join(HERE, "mvsec.h5"), "r") as f:
        r = f["davis/left/events"][:]
        write_arrow("mvsec.expected.arrow", np.round(r[:, 2] * 1e6), r[:, 0], r[:, 1], r[:, 3] > 0)


CD = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
               "offsets": [0, 2, 4, 8], "itemsize": 16})
ROWS = 16384


def metavision():
    t, x, y, p = events(20_000, 1280, 720, 3)
    cd = np.zeros(len(t), CD)
    cd["x"], cd["y"], cd["p"], cd["t"] = x, y, p, t + 5_000_000
    with h5py.File(os.path.join(HERE, "metavision.h5"), "w") as f:
        f.create_dataset("CD/events", data=cd, chunks=(ROWS,), maxshape=(None,))
    with h5py.File(os.path.join(HERE, "metavision.h5"), "r") as f:
        r = f["CD/events"][:]
        write_arrow("metavision.expected.arrow", r["t"], r["x"], r["y"], r["p"])
    with tempfile.TemporaryDirectory() as tmp:
        records = np.zeros(len(cd), np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")]))
        for k in ["t", "x", "y", "p"]:
            records[k] = cd[k]
        records.tofile(os.path.join(tmp, "events.bin"))
        subprocess.run(["cargo", "run", "-q", "-p", "evshm-formats", "--example", "ecf_buffers", "--",
                        "chunks", os.path.join(tmp, "events.bin"), tmp, str(ROWS)], check=True)
        with h5py.File(os.path.join(HERE, "metavision_ecf.h5"), "w") as f:
            d = f.create_dataset("CD/events", shape=(len(cd),), dtype=CD, chunks=(ROWS,),
                                 maxshape=(None,), compression=0x8ECF, allow_unknown_filter=True)
            for i in range(-(-len(cd) // ROWS)):
                with open(os.path.join(tmp, f"{i}.ecf"), "rb") as chunk:
                    d.id.write_direct_chunk((i * ROWS,), chunk.read())


def other():
    with h5py.File(os.path.join(HERE, "other.h5"), "w") as f:
        f.create_dataset("data", data=np.arange(10))


if __name__ == "__main__":
    other()
    dsec()
    mvsec()
    metavision()
