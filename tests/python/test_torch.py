"""evshm.torch against a real evshmd: zero-copy items, DataLoader workers under fork and
spawn that connect on their own, see the right data and share one copy of it."""

from __future__ import annotations

import gc
import os
import pickle
import warnings
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch is not installed, so evshm.torch is not tested here "
                    "(pip install 'evshm[torch]'); the numpy and polars paths are")

import torch
from torch.utils.data import DataLoader

import evshm
import workers
from evshm.torch import (
    EventWindowDataset,
    EventWindowIterableDataset,
    collate_events,
)
from evshm.transforms import EventHistogram
from harness import Daemon, arena_file, extent_ranges, time_bounds, wait_for

DURATION = 2_000  # µs
LOADER_TIMEOUT = 120  # s: DataLoader raises instead of hanging on a stuck worker


def reference_windows(daemon: Daemon, dataset: Any) -> list[tuple[str, Any]]:
    """Each window of ``dataset`` read directly (not through the dataset), as numpy."""
    out = []
    with daemon.client() as client:
        for i in range(len(dataset)):
            path, start, stop = dataset.window(i)
            with client.open(path) as rec:
                view = rec.time_window(start, stop) if dataset.windows.by_time \
                    else rec.slice(start, stop)
                out.append((path, {k: v.copy() for k, v in view.numpy().items()}))
    return out


def test_items_are_zero_copy_tensors_of_the_windows(synthetic: Daemon):
    dataset = EventWindowDataset(["small.raw"], duration=DURATION,
                                 socket_path=synthetic.socket)
    expected = reference_windows(synthetic, dataset)
    rec = dataset.recording("small.raw")
    first, last = time_bounds(rec)
    assert len(dataset) == len(range(first, last + 1, DURATION))
    [buffer] = rec.stream_buffers  # one chunk by default
    base = buffer.address
    assert extent_ranges(rec) == [(base, base + buffer.size)]  # in the arena's mapping
    total = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable tensor" warning
        for i in range(len(dataset)):
            item = dataset[i]
            assert set(item) == {"t", "x", "y", "p"}
            for name, tensor in item.items():
                assert np.array_equal(tensor.numpy(), expected[i][1][name])
                if tensor.numel():
                    assert base <= tensor.data_ptr() < base + buffer.size
            total += len(item["t"])
    assert total == rec.rows
    assert dataset[-1]["t"][0] >= last - DURATION  # negative indices count from the end
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    dataset.close()


def test_fixed_count_windows(synthetic: Daemon):
    dataset = EventWindowDataset(["small.raw"], events=64_000, socket_path=synthetic.socket)
    assert [dataset.window(i)[1:] for i in range(len(dataset))] == [
        (0, 64_000), (64_000, 128_000), (128_000, 192_000), (192_000, 256_000)]
    assert [len(dataset[i]["t"]) for i in range(len(dataset))] == [64_000] * 3 + [8_000]
    kept = EventWindowDataset(["small.raw"], events=64_000, drop_last=True,
                              socket_path=synthetic.socket, transform=EventHistogram())
    assert len(kept) == 3
    histogram = kept[0]
    assert isinstance(histogram, torch.Tensor) and histogram.shape == (2, 120, 160)
    assert histogram.sum() == 64_000
    kept.close()
    dataset.close()


def test_dataset_pickles_without_connection_or_data(synthetic: Daemon):
    dataset = EventWindowDataset(["big.raw"], duration=DURATION, transform=EventHistogram(),
                                 socket_path=synthetic.socket)
    first = dataset[3]
    data = pickle.dumps(dataset)
    assert len(data) < 8192  # window list, socket path, transform: no events
    clone = pickle.loads(data)
    assert torch.equal(clone[3], first)
    assert clone.recording("big.raw").lease != dataset.recording("big.raw").lease
    clone.close()
    dataset.close()


class TinyModel(torch.nn.Module):
    """Enough of a network to make the loop train: conv, pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3))).squeeze(1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_training_loop_with_two_workers(synthetic: Daemon, method: str):
    paths = ["big.raw", "small.raw"]
    dataset = EventWindowDataset(paths, duration=DURATION, transform=workers.WindowProbe(),
                                 socket_path=synthetic.socket)
    # What each window must hold, read here through a connection of the test's own.
    by_t0: dict[int, dict[str, Any]] = {}
    for i, (_path, cols) in enumerate(reference_windows(synthetic, dataset)):
        t0 = dataset.window(i)[1]
        events = evshm.Events(**cols, width=160, height=120, t0=t0, t1=t0 + DURATION)
        by_t0[t0] = {"rows": len(events), "t_sum": int(cols["t"].sum()),
                     "x_sum": int(cols["x"].sum(dtype=np.int64)),
                     "histogram": EventHistogram()(events)}
    assert len(by_t0) == len(dataset)  # small.raw starts at 10 s: no t0 is shared
    with synthetic.client() as client:
        with client.open("big.raw") as rec, client.open("small.raw") as other:
            [chunk] = rec.chunks
            [small] = other.chunks
        assert chunk.extent.arena == small.extent.arena  # both in one arena (1 GiB)
        arena = arena_file(chunk.extent)
        gc.collect()
        # The test process maps the arena once, however many recordings it read from
        # it, while the connection that named it lives.
        assert workers.mappings_of(arena) == 1
    read = sum(-(-c.extent.size // 4096) * 4096 for c in (chunk, small))  # whole pages

    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2,
                        multiprocessing_context=method, persistent_workers=True,
                        worker_init_fn=workers.touch_everything, timeout=LOADER_TIMEOUT,
                        generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = TinyModel()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    seen: list[int] = []
    pids = set()
    losses = []
    for batch in loader:
        for k, t0 in enumerate(batch["t0"].tolist()):
            want = by_t0[t0]
            assert batch["rows"][k] == want["rows"]
            assert batch["t_sum"][k] == want["t_sum"] and batch["x_sum"][k] == want["x_sum"]
            assert np.array_equal(batch["histogram"][k].numpy(), want["histogram"])
            seen.append(t0)
        pids.update(batch["pid"].tolist())
        target = batch["rows"].float() / 1_000
        loss = torch.nn.functional.mse_loss(model(batch["histogram"]), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sorted(seen) == sorted(by_t0)  # every window exactly once
    assert np.isfinite(losses).all()
    assert len(pids) == 2 and os.getpid() not in pids

    try:
        # The persistent workers are idle now, each still attached to both recordings
        # (touch_everything read every event of them when the worker started).
        readers = {pid: workers.mapping_memory(pid, arena) for pid in pids}
        others = {pid: workers.mapping_memory(pid, arena)
                  for pid in (os.getpid(), synthetic.pid)}
        resident = os.stat(arena).st_blocks * 512  # the arena file's pages
        # Each worker maps the arena once (a forked one keeps the mapping it inherited).
        assert {workers.mappings_of(arena, str(pid)) for pid in pids} == {1}
        rollups = {pid: workers.rollup(pid) for pid in pids}
        with synthetic.client() as observer:  # itself, and one per worker
            wait_for(lambda: observer.stats()["connections"] == 1 + 2,
                     "one connection per worker")
            stats = observer.stats()
    finally:
        del loader  # shuts the workers down
        gc.collect()
    assert stats["decodes"] == 2  # once per recording, for every process
    assert stats["leases"] == 2 * 2  # each worker attached both recordings
    # Batches of 4 histograms (600 KB) may still sit in torch's shared memory.
    assert resident == stats["bytes_resident"]  # --provision 0: no free page kept
    workers.assert_one_copy(read, resident, readers, others, rollups, slack=8 << 20)
    with synthetic.client() as observer:
        wait_for(lambda: observer.stats()["connections"] == 1, "the workers to disconnect")
        assert observer.stats()["leases"] == 0


def test_iterable_dataset_with_raw_events_and_shuffling(synthetic: Daemon):
    dataset = EventWindowIterableDataset(["small.raw", "big.raw"], events=250_000,
                                         shuffle=True, seed=3,
                                         socket_path=synthetic.socket)
    expected = sorted(
        (len(cols["t"]), int(cols["t"][0]), int(cols["t"].sum()), int(cols["x"].sum()))
        for _, cols in reference_windows(synthetic, dataset))
    orders = {}
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        orders[epoch] = dataset.order().tolist()
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(len(dataset)))
    dataset.set_epoch(0)
    assert dataset.order().tolist() == orders[0]  # the same seed and epoch, the same order

    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_events,
                        multiprocessing_context="fork", timeout=LOADER_TIMEOUT)
    got = []
    for batch in loader:
        assert batch["lengths"].sum() == len(batch["t"]) == len(batch["p"])
        offset = 0
        for length in batch["lengths"].tolist():
            t = batch["t"][offset:offset + length]
            x = batch["x"][offset:offset + length]
            got.append((length, int(t[0]), int(t.sum()), int(x.sum())))
            offset += length
    assert sorted(got) == expected
    dataset.close()
