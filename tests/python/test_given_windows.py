"""Datasets over given windows (``windows=[(path, t_start, t_end), ...]``) against a real
evshmd whose memory budget holds a few chunks: items are the documented windows of the
whole decode, and a recording eight times the budget is read end to end through
``EventWindows`` (in this process and in forked or spawned readers) and through the torch
datasets in DataLoader workers, within the budget, every event once."""

from __future__ import annotations

import gc
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

import evshm
import workers
from harness import Daemon, decode_whole, real_manifest, wait_for

#: Events per chunk: big.raw (3 M events, 39 MB decoded) comes in about 60 chunks of
#: 0.66 MB (the first ~1 MB), the real recordings in a few each.
CHUNK_EVENTS = 50_000
#: Bytes: about 7 chunks, an eighth of big.raw. Enough for two readers that each hold a
#: window (at most two chunks here) while the next chunk of each is decoded ahead.
BUDGET = 5_000_000
#: Microseconds around each label: 100 k events of big.raw, always more than one chunk's
#: worth, so that windows straddle chunk boundaries.
HALF = 2_000
LOADER_TIMEOUT = 120  # s: DataLoader raises instead of hanging on a stuck worker


@pytest.fixture
def daemon_args() -> list[str]:
    return ["--chunk-events", str(CHUNK_EVENTS), "--memory-budget", str(BUDGET),
            "--budget-wait", "10"]


@pytest.fixture(scope="module")
def big(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """big.raw decoded whole, without the daemon (which could not hold it)."""
    return decode_whole(synthetic_dir / "big.raw",
                        tmp_path_factory.mktemp("reference") / "big.arrow")


def real_table(real: Path, name: str) -> pa.Table:
    entry = next(e for e in real_manifest() if e["file"] == name)
    with pa.ipc.open_file(real / entry["expected"]) as reader:
        return reader.read_all()


def rule(table: pa.Table, t0: int, t1: int) -> pa.Table:
    """The documented window: rows from the first whose running maximum of ``t`` reaches
    ``t0`` up to the first whose running maximum reaches ``t1``."""
    running = np.maximum.accumulate(table.column("t").to_numpy())
    lo, hi = np.searchsorted(running, [t0, t1], side="left")
    return table.slice(int(lo), int(hi - lo))


def assert_rows(rec: evshm.Recording, expected: pa.Table) -> None:
    assert rec.rows == expected.num_rows
    for name in ("t", "x", "y", "p"):
        assert rec.table.column(name).equals(expected.column(name)), name


def labelled(table: pa.Table, path: str, count: int, seed: int,
             half: int = HALF) -> list[tuple[str, int, int]]:
    """``count`` windows ``[label - half, label + half)`` around distinct labels drawn
    over the recording's time span (and a little beyond both ends)."""
    t = table.column("t").to_numpy()
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.arange(int(t[0]) - half, int(t.max()) + half), count,
                        replace=False)
    return [(path, int(label) - half, int(label) + half) for label in labels]


def back_to_back(table: pa.Table, path: str, step: int) -> list[tuple[str, int, int]]:
    t = table.column("t").to_numpy()
    edges = [*range(int(t[0]), int(t.max()) + 1, step), int(t.max()) + 1]
    return [(path, a, b) for a, b in zip(edges, edges[1:])]


def checksum(table: pa.Table) -> tuple[int, ...]:
    """What workers.checksum gives for a recording of these rows."""
    return (table.num_rows,
            *(int(table.column(c).to_numpy().sum(dtype=np.int64)) for c in "txyp"))


@pytest.mark.parametrize("name", ["evt3_sample.raw", "evt2_sample.raw"])
def test_items_are_the_documented_windows_of_the_whole_decode(daemon: Daemon, real: Path,
                                                              name: str):
    expected = real_table(real, name)
    t = expected.column("t").to_numpy()
    running = np.maximum.accumulate(t)
    given = labelled(expected, name, 40, seed=4)
    # Where time steps back (EVT3), empty, and before and after the recording.
    back = np.flatnonzero(np.diff(t) < 0)[:5] + 1
    given += [(name, int(running[row]) - 3, int(running[row]) + 3) for row in back]
    given += [(name, int(t[0]) - 100, int(t[0])), (name, int(t[0]), int(t[0])),
              (name, int(running[-1]), int(running[-1]) + 1),
              (name, int(running[-1]) + 1, int(running[-1]) + 100)]
    windows = evshm.EventWindows(windows=given, socket_path=daemon.socket)
    chunks = set()
    for i, (_, t0, t1) in enumerate(given):
        rec = windows[i]
        assert rec.window == (t0, t1)
        assert_rows(rec, rule(expected, t0, t1))
        chunks.add(sum(chunk.end > chunk.start for chunk in rec.chunks))
        del rec
    assert {0, 1, 2} <= chunks  # empty, inside a chunk, straddling chunks
    windows.close()
    with daemon.client() as observer:
        assert observer.stats()["leases"] == 0


def test_a_recording_eight_times_the_budget_read_through_given_windows(synthetic: Daemon,
                                                                       big: pa.Table):
    with synthetic.client() as observer:
        with pytest.raises(evshm.OverBudget) as refused:
            observer.open("big.raw")  # the whole does not fit
        assert refused.value.code == "over_budget"
        given = back_to_back(big, "big.raw", 2 * HALF)
        windows = evshm.EventWindows(windows=given, socket_path=synthetic.socket)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in "txyp"}
        straddling = 0
        for i in range(len(windows)):
            rec = windows[i]
            straddling += not rec.zero_copy
            copies = {name: column.copy() for name, column in rec.numpy().items()}
            for name, column in copies.items():
                parts[name].append(column)
            stats = observer.stats()
            assert stats["leases"] == 1  # this item's, held by `rec`
            assert stats["bytes_resident"] <= stats["memory_budget"] == BUDGET, stats
            del rec
            assert observer.stats()["leases"] == 0  # released with the item
        for name in "txyp":  # every event once, in order
            assert np.array_equal(np.concatenate(parts[name]), big.column(name).to_numpy())
        assert straddling > 0
        assert observer.stats()["evictions"] > 0

        windows.close()

        # A zero-copy view of an item (a short window inside a chunk) keeps the item's
        # lease, and only that.
        short = evshm.EventWindows(windows=[("big.raw", t0, t0 + 100) for _, t0, _ in given],
                                   socket_path=synthetic.socket)
        index = next(i for i in range(len(short)) if short[i].zero_copy)
        kept = short[index].numpy()["x"]
        assert observer.stats()["leases"] == 1
        assert np.array_equal(kept, rule(big, *short.window(index)[1:]).column("x").to_numpy())
        del kept
        gc.collect()
        assert observer.stats()["leases"] == 0
        short.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_processes_over_given_windows_stay_within_the_budget(synthetic: Daemon,
                                                                    big: pa.Table,
                                                                    method: str):
    given = back_to_back(big, "big.raw", HALF) + labelled(big, "big.raw", 20, seed=5)
    windows = evshm.EventWindows(windows=given, socket_path=synthetic.socket)
    expected = {i: checksum(rule(big, t0, t1)) for i, (_, t0, t1) in enumerate(given)}
    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    # typeshed: get_context(str) is a BaseContext, whose subclasses alone have Process.
    procs = [ctx.Process(target=workers.read_given_windows,  # type: ignore[attr-defined]
                         args=(windows, n, 2, results))
             for n in range(2)]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert [proc.exitcode for proc in procs] == [0, 0]
    seen: dict[int, tuple[int, ...]] = {}
    for _pid, sums, resident, budget in reports:
        assert 0 < resident <= budget == BUDGET
        seen.update(sums)
    assert seen == expected  # every window once, right
    assert sum(expected[i][0] for i in range(len(given) - 20)) == big.num_rows


def test_torch_items_of_given_windows(synthetic: Daemon, big: pa.Table):
    torch = pytest.importorskip("torch", reason="torch is not installed: evshm.torch is "
                                "not tested here (pip install 'evshm[torch]')")
    from evshm.torch import EventWindowDataset

    # Short windows (most inside one chunk) and long ones (across chunks).
    given = (labelled(big, "big.raw", 20, seed=6, half=50)
             + labelled(big, "big.raw", 10, seed=7))
    dataset = EventWindowDataset(windows=given, socket_path=synthetic.socket)
    assert len(dataset) == 30 and dataset.window(3) == given[3]
    in_place_seen = set()
    with synthetic.client() as observer:
        for i, (path, t0, t1) in enumerate(given):
            expected = rule(big, t0, t1)
            with observer.open(path, window=(t0, t1)) as probe:
                in_place = probe.zero_copy and probe.rows > 0
            item = dataset[i]
            for name in "txyp":
                assert np.array_equal(item[name].numpy(), expected.column(name).to_numpy())
            # Zero-copy tensors hold the item's lease; copied ones (across chunks) do not.
            assert observer.stats()["leases"] == int(in_place)
            in_place_seen.add(in_place)
            del item
            assert observer.stats()["leases"] == 0
    assert in_place_seen == {False, True}
    with pytest.raises(ValueError, match="cannot be combined with paths="):
        EventWindowDataset(["big.raw"], windows=given, socket_path=synthetic.socket)
    assert torch.is_tensor(dataset[0]["t"])
    dataset.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers_over_given_windows_stay_within_the_budget(synthetic: Daemon,
                                                                      big: pa.Table,
                                                                      method: str):
    torch = pytest.importorskip("torch", reason="torch is not installed: evshm.torch is "
                                "not tested here (pip install 'evshm[torch]')")
    from torch.utils.data import DataLoader

    from evshm.torch import EventWindowDataset
    from evshm.transforms import EventHistogram

    given = labelled(big, "big.raw", 40, seed=8)  # distinct labels: distinct starts
    dataset = EventWindowDataset(windows=given, transform=workers.WindowProbe(),
                                 socket_path=synthetic.socket)
    by_t0: dict[int, dict[str, Any]] = {}
    for _, t0, t1 in given:
        rows = rule(big, t0, t1)
        cols = {name: rows.column(name).to_numpy() for name in "txyp"}
        events = evshm.Events(**cols, width=160, height=120, t0=t0, t1=t1)
        by_t0[t0] = {"rows": rows.num_rows, "t_sum": int(cols["t"].sum()),
                     "x_sum": int(cols["x"].sum(dtype=np.int64)),
                     "histogram": EventHistogram()(events)}
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2,
                        multiprocessing_context=method, timeout=LOADER_TIMEOUT,
                        generator=torch.Generator().manual_seed(0))
    seen: list[int] = []
    pids = set()
    with synthetic.client() as observer:
        for batch in loader:
            for k, t0 in enumerate(batch["t0"].tolist()):
                want = by_t0[t0]
                assert batch["rows"][k] == want["rows"]
                assert (batch["t_sum"][k], batch["x_sum"][k]) == (want["t_sum"],
                                                                  want["x_sum"])
                assert np.array_equal(batch["histogram"][k].numpy(), want["histogram"])
                seen.append(t0)
            pids.update(batch["pid"].tolist())
            stats = observer.stats()
            assert stats["bytes_resident"] <= stats["memory_budget"] == BUDGET, stats
        del loader  # the workers exit, and their connections close
        assert sorted(seen) == sorted(by_t0)  # every window once
        assert len(pids) == 2
        wait_for(lambda: observer.stats()["connections"] == 1, "the workers to disconnect")
        assert observer.stats()["leases"] == 0


def test_iterable_dataset_of_raw_given_windows_yields_every_event_once(synthetic: Daemon,
                                                                       big: pa.Table):
    pytest.importorskip("torch", reason="torch is not installed: evshm.torch is not "
                        "tested here (pip install 'evshm[torch]')")
    from torch.utils.data import DataLoader

    from evshm.torch import EventWindowIterableDataset, collate_events

    given = back_to_back(big, "big.raw", 2 * HALF)
    expected = sorted(checksum(rule(big, t0, t1))[:3] for _, t0, t1 in given)
    stream = EventWindowIterableDataset(windows=given, shuffle=True, seed=1,
                                        socket_path=synthetic.socket)
    loader = DataLoader(stream, batch_size=3, num_workers=2, collate_fn=collate_events,
                        multiprocessing_context="fork", timeout=LOADER_TIMEOUT)
    got = []
    with synthetic.client() as observer:
        for batch in loader:
            offset = 0
            for length in batch["lengths"].tolist():
                t, x = batch["t"][offset:offset + length], batch["x"][offset:offset + length]
                got.append((length, int(t.sum()), int(x.sum())))
                offset += length
            stats = observer.stats()
            assert stats["bytes_resident"] <= stats["memory_budget"] == BUDGET, stats
    assert sorted(got) == expected
    assert sum(length for length, *_ in got) == big.num_rows
