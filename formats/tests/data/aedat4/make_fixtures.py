"""Writes the AEDAT4 test fixtures with dv-processing, iniVation's reference implementation.

Run with a Python that has dv-processing, numpy and pyarrow:
    python make_fixtures.py
Each NAME.aedat4 is checked against the events dv-processing itself reads back from it,
stored as an Arrow IPC file (t int64, x int16, y int16, p int8). The five compressions hold
the same events (events.expected.arrow). One packet is larger than an LZ4 64 KB block.
"""

import gc
import os
import struct

import dv_processing as dv
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

HERE = os.path.dirname(os.path.abspath(__file__))
C = dv.CompressionType
T0 = 1_700_000_000_000_000
SIZES = [1000, 1, 4200, 799]  # 4200 events * 16 bytes > one 64 KB LZ4 block


def make_events(n, w, h, t0, seed):
    r = np.random.default_rng(seed)
    t = t0 + np.cumsum(r.integers(0, 6, n))
    x, y, p = r.integers(0, w, n), r.integers(0, h, n), r.integers(0, 2, n)
    x[0], y[0], x[-1], y[-1], x[1], y[1] = 0, 0, w - 1, h - 1, w - 1, 0
    return t.astype(np.int64), x.astype(np.int16), y.astype(np.int16), p.astype(bool)


def packets(ev, sizes):
    t, x, y, p = ev
    out, i = [], 0
    for s in sizes:
        items = [dv.Event(int(t[k]), int(x[k]), int(y[k]), bool(p[k])) for k in range(i, i + s)]
        out.append(dv.EventPacket(dv.EventPacket.EventVector(items)))
        i += s
    return out


def read_back(path, stream):
    reader = dv.io.MonoCameraRecording(path)
    parts = []
    while (batch := reader.getNextEventBatch(stream)) is not None:
        parts.append(batch.numpy())
    return np.concatenate(parts)


def write_arrow(path, a):
    table = pa.table({
        "t": pa.array(a["timestamp"], pa.int64()), "x": pa.array(a["x"], pa.int16()),
        "y": pa.array(a["y"], pa.int16()), "p": pa.array(a["polarity"].astype(np.int8), pa.int8()),
    })
    with ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


def write(name, compression, streams, order):
    path = os.path.join(HERE, name)
    config = dv.io.MonoCameraWriter.Config("DAVIS346_00000001", compression)
    for kind, size, stream in streams:
        if kind == "events":
            config.addEventStream(size, stream)
        elif kind == "imu":
            config.addImuStream(stream)
    writer = dv.io.MonoCameraWriter(path, config)
    for stream, packet in order:
        if stream == "imu":
            writer.writeImuPacket(packet, stream)
        else:
            writer.writeEventPacket(packet, stream)
    del writer
    gc.collect()
    return path


events = packets(make_events(sum(SIZES), 346, 260, T0, 1), SIZES)
for name, compression in [("none", C.NONE), ("lz4", C.LZ4), ("lz4_high", C.LZ4_HIGH),
                          ("zstd", C.ZSTD), ("zstd_high", C.ZSTD_HIGH)]:
    path = write(f"events_{name}.aedat4", compression, [("events", (346, 260), "events")],
                 [("events", p) for p in events])
    assert len(read_back(path, "events")) == sum(SIZES)
write_arrow(os.path.join(HERE, "events.expected.arrow"), read_back(path, "events"))

# Two event streams, interleaved: evshm reads the first (stream 0).
a = packets(make_events(3000, 346, 260, T0, 2), [1000, 1000, 1000])
b = packets(make_events(2000, 640, 480, T0 + 3, 3), [1000, 1000])
path = write("two_streams_zstd.aedat4", C.ZSTD,
             [("events", (346, 260), "events"), ("events", (640, 480), "events_b")],
             [("events", a[0]), ("events_b", b[0]), ("events", a[1]), ("events_b", b[1]),
              ("events", a[2])])
write_arrow(os.path.join(HERE, "two_streams_zstd.expected.arrow"), read_back(path, "events"))

# An IMU stream whose packets come before and between the events.
imu = dv.IMUPacket()
imu.elements = dv.IMUPacket.ImuVector(
    [dv.IMU(T0 + 1000 * k, 30.5, 0.0, -1.0, 0.01 * k, 0.1, 0.2, 0.3, 0.0, 0.0, 0.0) for k in range(20)])
path = write("imu_events_lz4.aedat4", C.LZ4,
             [("imu", None, "imu"), ("events", (346, 260), "events")],
             [("imu", imu)] + [x for p in events for x in (("events", p), ("imu", imu))])
write_arrow(os.path.join(HERE, "imu_events_lz4.expected.arrow"), read_back(path, "events"))

# No file data table, and the last packet cut short: the complete packets still decode.
src = open(os.path.join(HERE, "events_lz4.aedat4"), "rb").read()
header_len = struct.unpack_from("<I", src, 14)[0]
header = src[18:18 + header_len]
root = struct.unpack_from("<I", header, 0)[0]  # the u32 at byte 14 was the size prefix
vtable = root - struct.unpack_from("<i", header, root)[0]
field = 18 + root + struct.unpack_from("<H", header, vtable + 4 + 2 * 1)[0]
table_at = struct.unpack_from("<q", src, field)[0]
body = bytearray(src[:table_at])
struct.pack_into("<q", body, field, -1)
open(os.path.join(HERE, "events_lz4_truncated.aedat4"), "wb").write(bytes(body[:-100]))
write_arrow(os.path.join(HERE, "events_lz4_truncated.expected.arrow"),
            read_back(os.path.join(HERE, "events_lz4_truncated.aedat4"), "events"))
