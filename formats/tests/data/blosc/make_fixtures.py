"""Writes Blosc 1 chunks as HDF5's Blosc filter stores them (hdf5plugin 7.1.0, the
filter DSEC's files are compressed with), for formats/tests/blosc.rs.

Run with a Python that has h5py==3.16.0, hdf5plugin==7.1.0 and numpy:
    python make_fixtures.py
Each NAME.blosc is the first chunk of a dataset written by h5py through hdf5plugin.Blosc
(compression level 1, whose blocks are small: several per chunk, the last shorter), read
back raw (read_direct_chunk); chunks HDF5 stored unfiltered (compression did not pay) are
left out. Its elements are value(i) = 3 i + (i * i mod 11), as
little-endian integers of the type's size, so the test computes what it decompresses to.
"""

import os

import h5py
import hdf5plugin
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
N = 50_000  # 400 KB of 8-byte elements: several blocks, the last one shorter


def main():
    i = np.arange(N, dtype=np.uint64)
    values = 3 * i + (i * i % 11)
    shuffles = {"noshuffle": hdf5plugin.Blosc.NOSHUFFLE, "shuffle": hdf5plugin.Blosc.SHUFFLE,
                "bitshuffle": hdf5plugin.Blosc.BITSHUFFLE}
    path = os.path.join(HERE, "scratch.h5")
    for cname in ["lz4", "zstd"]:
        for sname, shuffle in shuffles.items():
            for dtype in [np.uint8, np.uint16, np.uint32, np.uint64]:
                if sname == "noshuffle" and dtype != np.uint8:
                    continue  # compresses little: large files that test nothing more
                data = values.astype(dtype)
                with h5py.File(path, "w") as f:
                    d = f.create_dataset("d", data=data, chunks=(N,),
                                         **hdf5plugin.Blosc(cname=cname, clevel=1, shuffle=shuffle))
                    mask, chunk = d.id.read_direct_chunk((0,))
                if mask != 0:
                    continue
                name = f"{cname}_{sname}_{np.dtype(dtype).itemsize}.blosc"
                with open(os.path.join(HERE, name), "wb") as out:
                    out.write(chunk)
    os.remove(path)


if __name__ == "__main__":
    main()
