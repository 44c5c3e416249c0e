"""Writes the test fixtures of ATIS .bin, Event Stream, AEDAT 2.0 and AEDAT 3.1, each with
the events a reference reader reads from it (formats/tests/peers.rs checks evshm against
them).

Run with a Python that has tonic==1.7.0, faery==0.7.1, numpy and pyarrow:
    python make_fixtures.py

No real recording of these formats could be shipped (the datasets' licences do not allow
it, or no small file exists), so the files are made here: by the peer's own writer where it
has one (faery writes Event Stream DVS files), else byte by byte from the format's
documented layout (N-MNIST's Read_Ndataset.m, jAER's extractors, libcaer's packet header,
the Event Stream specification), never by evshm. Each NAME.expected.arrow (t int64,
x int16, y int16, p int8) is what the peer reads from NAME:

- n_mnist.bin: tonic.io.read_mnist_file (one time-overflow record in the middle).
- dvs_faery.es: written and read back by faery; atis.es: read by faery (change
  detections, exposure measurements, resets and overflows).
- dvs128.aedat: tonic.io.read_dvs_128's bit fields, whose x, y and polarity differ from
  jAER's (peers.rs maps them); davis346.aedat: tonic.io.read_davis_346. davis346_aps_imu.aedat
  holds the same DVS events with APS samples, IMU words and external-input events among
  them, which tonic cannot skip: its expected events are davis346's.
- davis240_v2e.aedat: AEDAT 2.0 as v2e's AEDat2Output writes it for a DAVIS240 (no
  AEChip line; x and y mirrored, polarity in bit 11); its expected events are the ones
  given to the writer, in v2e's orientation (y from the top).
- gesture.aedat (AEDAT 3.1, the layout of DVS128 Gesture): tonic.io.read_dvs_ibm's bit
  fields.

tonic 1.7.0's read_dvs_128 and read_dvs_ibm fail on any file ("too many values to
unpack": read_aedat_header_from_file now returns three values, they take two), so
tonic_raw() below calls the two functions they call, as they call them, and the bit
fields are theirs.
  gesture_mixed.aedat holds the same events with a special-event packet, a frame packet,
  an invalid event and packets whose number of events is below their capacity, which
  tonic cannot read: its expected events are gesture's.
"""

import os
import struct

import faery
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import tonic.io

HERE = os.path.dirname(os.path.abspath(__file__))
STRUCT = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])


def path(name):
    return os.path.join(HERE, name)


def write_arrow(name, t, x, y, p):
    table = pa.table({
        "t": pa.array(np.asarray(t, np.int64)), "x": pa.array(np.asarray(x, np.int16)),
        "y": pa.array(np.asarray(y, np.int16)), "p": pa.array(np.asarray(p, np.int8)),
    })
    with ipc.new_file(path(name), table.schema) as writer:
        writer.write_table(table)


def events(n, w, h, t0, seed, max_step=6):
    r = np.random.default_rng(seed)
    t = t0 + np.cumsum(r.integers(0, max_step, n))
    x, y, p = r.integers(0, w, n), r.integers(0, h, n), r.integers(0, 2, n)
    x[0], y[0], x[-1], y[-1] = 0, 0, w - 1, h - 1
    return t, x, y, p


def n_mnist():
    t, x, y, p = events(1500, 34, 34, 1000, 1, max_step=200)
    rec = np.zeros((len(t), 5), np.uint8)
    rec[:, 0], rec[:, 1] = x, y
    rec[:, 2] = (p << 7) | (t >> 16 & 0x7F)
    rec[:, 3], rec[:, 4] = t >> 8 & 0xFF, t & 0xFF
    overflow = np.array([[0, 240, 0, 0, 0]], np.uint8)
    data = np.concatenate([rec[:700], overflow, rec[700:]])
    with open(path("n_mnist.bin"), "wb") as f:
        f.write(data.tobytes())
    got = tonic.io.read_mnist_file(path("n_mnist.bin"), dtype=STRUCT)
    write_arrow("n_mnist.expected.arrow", got["t"], got["x"], got["y"], got["p"])


def faery_read(name):
    a = faery.events_stream_from_file(path(name)).to_array()
    write_arrow(name.rsplit(".", 1)[0] + ".expected.arrow", a["t"], a["x"], a["y"], a["on"])


def es_dvs():
    t, x, y, p = events(3000, 640, 480, 0, 2, max_step=300)
    a = np.zeros(len(t), faery.EVENTS_DTYPE)
    a["t"], a["x"], a["y"], a["on"] = t, x, y, p.astype(bool)
    faery.events_stream_from_array(a, dimensions=(640, 480)).to_file(path("dvs_faery.es"))
    faery_read("dvs_faery.es")


def es_atis():
    w, h = 304, 240
    r = np.random.default_rng(3)
    out = bytearray(b"Event Stream" + bytes([2, 0, 0, 2]) + struct.pack("<HH", w, h))
    out += bytes([0xFC] * 3)  # resets
    for _ in range(2000):
        step = int(r.integers(0, 400))
        while step >= 63:
            k = min(step // 63, 3)
            out.append(0xFC | k)
            step -= 63 * k
        kind = int(r.integers(0, 4))  # bit 0: exposure measurement, bit 1: polarity
        out.append(step << 2 | kind)
        out += struct.pack("<HH", int(r.integers(0, w)), int(r.integers(0, h)))
    with open(path("atis.es"), "wb") as f:
        f.write(out)
    faery_read("atis.es")


def tonic_raw(name):
    """tonic's address and timestamp records of an AEDAT 2.0 or 3.1 file."""
    version, start, _ = tonic.io.read_aedat_header_from_file(path(name))
    return tonic.io.get_aer_events_from_file(path(name), version, start)


def aedat2(name, chip, records):
    head = (
        "#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
        "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
        "# Timestamps tick is 1 us\r\n"
        f"# created Mon Dec 07 10:00:00 CET 2026\r\n# AEChip: {chip}\r\n"
    )
    with open(path(name), "wb") as f:
        f.write(head.encode())
        f.write(np.asarray(records, np.dtype([("a", ">u4"), ("t", ">u4")])).tobytes())


def dvs128():
    t, x, y, p = events(2000, 128, 128, 5000, 4)
    # Raw address bits as the DVS128 sends them: bit 0 set for OFF.
    records = [(int(y[i]) << 8 | int(x[i]) << 1 | (1 - int(p[i])), int(t[i])) for i in range(len(t))]
    aedat2("dvs128.aedat", "ch.unizh.ini.jaer.chip.retina.DVS128", records)
    raw = tonic_raw("dvs128.aedat")
    a = raw["address"]  # read_dvs_128's fields:
    x, y, p = (a >> 8) & 0x007F, (a >> 1) & 0x007F, a & 0x1
    write_arrow("dvs128.expected.arrow", raw["timeStamp"], x, y, p)


def davis346():
    t, x, y, p = events(2000, 346, 260, 7000, 5)
    y[0] = 7  # the first address byte must not read as `#`
    dvs = [(int(y[i]) << 22 | int(x[i]) << 12 | int(p[i]) << 11, int(t[i])) for i in range(len(t))]
    chip = "eu.seebetter.ini.chips.davis.DAVIS346B"
    aedat2("davis346.aedat", chip, dvs)
    _, _, got = tonic.io.read_davis_346(path("davis346.aedat"))
    write_arrow("davis346.expected.arrow", got["t"], got["x"], got["y"], got["p"])
    mixed, r = [], np.random.default_rng(6)
    for i, record in enumerate(dvs):
        mixed.append(record)
        if i % 50 == 1:  # an APS reset and signal read of one pixel (bit 31 set)
            mixed += [(0x8000_0000 | 3 << 22 | 5 << 12 | 0x3FF, record[1]), (0x8000_0000 | 3 << 22 | 5 << 12 | 1 << 10 | 0x155, record[1])]
        if i % 70 == 2:  # an IMU sample: seven words with bits 31, 11 and 10 set
            mixed += [(0x8000_0C00 | k << 28 & 0x7000_0000 | int(r.integers(0, 1 << 10)), record[1]) for k in range(7)]
        if i % 300 == 3:  # an external input event (bit 10)
            mixed.append((1 << 10, record[1]))
    aedat2("davis346_aps_imu.aedat", chip, mixed)


def davis240_v2e():
    t, x, y, p = events(1500, 240, 180, 100, 8)
    y[0] = 3  # v2e drops a first event whose address would start with `#`
    head = (
        "#!AER-DAT2.0\r\n# This is a raw AE data file created by AEDat2Output in v2e\r\n"
        "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
        "# Timestamps tick is 1 us\r\n# Creation time: 10:00AM December 07 2026\r\n"
    )
    a = (239 - x) << 12 | (179 - y) << 22 | p << 11
    out = np.empty(2 * len(t), np.int32)
    out[0::2], out[1::2] = a, t
    with open(path("davis240_v2e.aedat"), "wb") as f:
        f.write(head.encode())
        f.write(out.byteswap().tobytes())
    write_arrow("davis240_v2e.expected.arrow", t, x, y, p)


def aedat3(name, packets):
    head = (
        "#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
        "#Start-Time: 2017-06-05 14:21:13 (TZ+0200)\r\n#!END-HEADER\r\n"
    )
    with open(path(name), "wb") as f:
        f.write(head.encode())
        for kind, size, overflow, capacity, number, valid, payload in packets:
            f.write(struct.pack("<hhiiiiii", kind, 1, size, 4, overflow, capacity, number, valid))
            f.write(payload)


def polarity_payload(t, x, y, p, valid=None):
    valid = np.ones(len(t), np.uint32) if valid is None else valid
    data = valid | p.astype(np.uint32) << 1 | y.astype(np.uint32) << 2 | x.astype(np.uint32) << 17
    rec = np.zeros(len(t), np.dtype([("a", "<u4"), ("t", "<i4")]))
    rec["a"], rec["t"] = data, t
    return rec.tobytes()


def gesture():
    t, x, y, p = events(3000, 128, 128, 1_000_000, 7)
    cuts = [0, 1000, 1001, 2500, 3000]
    packets = []
    for a, b in zip(cuts, cuts[1:]):
        n = b - a
        packets.append((1, 8, 0, n, n, n, polarity_payload(t[a:b], x[a:b], y[a:b], p[a:b])))
    aedat3("gesture.aedat", packets)
    raw = tonic_raw("gesture.aedat")
    a = raw["address"]  # read_dvs_ibm's fields:
    x, y, p = (a >> 17) & 0x00001FFF, (a >> 2) & 0x00001FFF, (a >> 1) & 0x00000001
    write_arrow("gesture.expected.arrow", raw["timeStamp"], x, y, p)
    special = np.zeros(2, np.dtype([("a", "<u4"), ("t", "<i4")])).tobytes()
    frame = bytes(range(256)) * 4
    mixed = [(0, 8, 0, 2, 2, 2, special), packets[0], (2, len(frame), 0, 1, 1, 1, frame)]
    # The second packet with room for two more events: one invalid, one never written.
    a, b = cuts[1], cuts[2]
    extra = polarity_payload(np.array([5, 0]), np.array([1, 0]), np.array([1, 0]), np.array([1, 0]), valid=np.array([0, 0], np.uint32))
    payload = polarity_payload(t[a:b], x[a:b], y[a:b], p[a:b]) + extra
    mixed.append((1, 8, 0, b - a + 2, b - a + 1, b - a, payload))
    mixed += packets[2:]
    aedat3("gesture_mixed.aedat", mixed)


if __name__ == "__main__":
    n_mnist()
    es_dvs()
    es_atis()
    dvs128()
    davis346()
    davis240_v2e()
    gesture()
