"""What training needs of the datasets, against a real evshmd serving recordings of two
sensor sizes in class folders: targets (FolderClass, Boxes) and their collation, mixed
sizes refused when the dataset is built or resized, tonic's transforms in a dataset, and
random augmentations reproducible in DataLoader workers under fork and spawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch is not installed, so evshm.torch is not tested here "
                    "(pip install 'evshm[torch]')")

import torch
from torch.utils.data import DataLoader

import evshm
import workers
from evshm.targets import Boxes, FolderClass, bbox_dtype
from evshm.torch import (
    EventWindowDataset,
    EventWindowIterableDataset,
    collate_detection,
    collate_events,
)
from evshm.transforms import (
    Compose,
    DropEvents,
    EventHistogram,
    RandomCrop,
    RandomFlipLR,
    resize,
)
from harness import MIXED, Daemon

DURATION = 5_000  # µs: 10 windows of each recording
LOADER_TIMEOUT = 120  # s: DataLoader raises instead of hanging on a stuck worker
PATHS = list(MIXED)


def window_events(daemon: Daemon, dataset: Any, index: int) -> evshm.Events:
    """Window ``index`` of ``dataset`` read directly, as writable copies."""
    path, t0, t1 = dataset.window(index)
    with daemon.client() as client, client.open(path) as rec:
        events = rec.time_window(t0, t1).events()
        return evshm.Events(events.t.copy(), events.x.copy(), events.y.copy(),
                            events.p.copy(), events.width, events.height, t0, t1)


def test_recordings_of_two_sizes_are_refused_when_built(mixed: Daemon):
    named = (r"the recordings are of 2 sensor sizes: 320x240 \(background/a.raw, "
             r"cars/c.raw\); 640x480 \(background/b.raw, cars/d.raw\)\. .* give "
             r"size=\(width, height\)")
    with pytest.raises(ValueError, match=named):
        EventWindowDataset(PATHS, duration=DURATION, transform=EventHistogram(),
                           socket_path=mixed.socket)
    given = [(path, 0, DURATION) for path in PATHS]
    with pytest.raises(ValueError, match=named):
        EventWindowIterableDataset(windows=given, transform=EventHistogram(),
                                   socket_path=mixed.socket)
    with mixed.client() as observer:
        assert observer.stats()["decodes"] == 4  # the cut windows'; none for given ones
    # Raw events need no common size, and one size is one size.
    EventWindowDataset(PATHS, duration=DURATION, socket_path=mixed.socket).close()
    EventWindowDataset(PATHS[::2], duration=DURATION, transform=EventHistogram(),
                       socket_path=mixed.socket).close()
    with pytest.raises(ValueError, match=r"structured=True .* needs a transform"):
        EventWindowDataset(PATHS, duration=DURATION, structured=True,
                           socket_path=mixed.socket)


def test_size_resizes_every_window(mixed: Daemon):
    frames = EventWindowDataset(PATHS, duration=DURATION, size=(320, 240),
                                transform=EventHistogram(np.int32), socket_path=mixed.socket)
    raw = EventWindowDataset(PATHS, duration=DURATION, size=(320, 240),
                             socket_path=mixed.socket)
    assert len(frames) == len(raw) == 40
    for i in range(len(frames)):
        events = window_events(mixed, frames, i)
        moved = resize(events, 320, 240)
        assert np.array_equal(frames[i].numpy(), EventHistogram(np.int32)(moved))
        item = raw[i]
        for name in "txyp":
            assert np.array_equal(item[name].numpy(), getattr(moved, name))
    frames.close()
    raw.close()


def test_items_with_a_target(mixed: Daemon):
    target = FolderClass()
    dataset = EventWindowDataset(PATHS, duration=DURATION, size=(320, 240),
                                 transform=EventHistogram(), target=target,
                                 socket_path=mixed.socket)
    assert target.classes == ["background", "cars"]  # learnt when the dataset was built
    assert dataset.target is target
    for i in range(len(dataset)):
        histogram, label = dataset[i]
        assert histogram.shape == (2, 240, 320)
        assert label == (0 if dataset.window(i)[0].startswith("background/") else 1)
    # A count window's target gets the span of its events; a given one its own bounds.
    counted = EventWindowDataset(["cars/c.raw"], events=300_000, target=workers.WindowName(),
                                 socket_path=mixed.socket)
    with mixed.client() as client, client.open("cars/c.raw") as rec:
        t = rec.numpy()["t"].copy()
    for i in range(len(counted)):
        _, lo, hi = counted.window(i)
        assert counted[i][1] == f"cars/c.raw@{t[lo]}-{t[lo:hi].max() + 1}"
    given = EventWindowDataset(windows=[("cars/c.raw", 10, 2_000)],
                               target=workers.WindowName(), socket_path=mixed.socket)
    assert given[0][1] == "cars/c.raw@10-2000"
    for each in (dataset, counted, given):
        each.close()


def test_raw_events_and_classes_batched_in_workers(mixed: Daemon):
    dataset = EventWindowDataset(PATHS, duration=DURATION, target=FolderClass(),
                                 socket_path=mixed.socket)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_events,
                        multiprocessing_context="fork", timeout=LOADER_TIMEOUT)
    labels = []
    for events, classes in loader:
        assert classes.dtype == torch.int64 and len(events["lengths"]) == len(classes)
        assert int(events["lengths"].sum()) == len(events["t"]) == len(events["x"])
        labels += classes.tolist()
    assert labels == [0] * 20 + [1] * 20  # background first, in dataset order
    dataset.close()


def write_boxes(folder: Path, name: str) -> None:
    """A box every 2 ms of the recording ``name``, at ``folder/NAME_bbox.npy``."""
    boxes = np.zeros(26, dtype=bbox_dtype())
    boxes["t"] = np.arange(26) * 2_000
    boxes["x"], boxes["w"], boxes["h"] = 10.0, 30.0, 20.0
    boxes["class_id"] = np.arange(26) % 2
    path = folder / (name.removesuffix(".raw") + "_bbox.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, boxes)


def test_boxes_batched_by_the_detection_collate(mixed: Daemon, tmp_path: Path):
    labels = tmp_path / "labels"
    for name in PATHS:
        write_boxes(labels, name)
    dataset = EventWindowDataset(PATHS, duration=DURATION, size=(320, 240),
                                 transform=EventHistogram(), target=Boxes(labels),
                                 socket_path=mixed.socket)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_detection,
                        multiprocessing_context="fork", timeout=LOADER_TIMEOUT)
    got = []
    for histograms, boxes in loader:
        assert histograms.shape[1:] == (2, 240, 320) and len(boxes) == len(histograms)
        got += boxes
    reader = Boxes(labels)
    for i, boxes in enumerate(got):
        expected = reader(*dataset.window(i))
        assert boxes.dtype == bbox_dtype() and np.array_equal(boxes, expected)
        assert len(boxes) in (2, 3)  # 5 ms windows, a box every 2 ms
    # Raw events: concatenated, as collate_events does; the boxes stay a list.
    raw = EventWindowDataset(PATHS[:1], duration=DURATION, target=Boxes(labels),
                             socket_path=mixed.socket)
    events, boxes = collate_detection([raw[0], raw[1]])
    assert events["lengths"].tolist() == [len(raw[0][0]["t"]), len(raw[1][0]["t"])]
    assert [len(b) for b in boxes] == [3, 2]
    dataset.close()
    raw.close()


def test_tonic_transforms_in_a_dataset(mixed: Daemon):
    pytest.importorskip("tonic", reason="tonic is not installed (Python >= 3.10: "
                                        "pip install -r scripts/requirements-test.txt)")
    import tonic.transforms

    sensor = (320, 240, 2)
    pipeline = tonic.transforms.Compose([tonic.transforms.Denoise(filter_time=1_000),
                                         tonic.transforms.ToFrame(sensor, n_time_bins=2)])
    # Windows of 1 ms: tonic's Denoise loops over the events in Python.
    given = [(path, t0, t0 + 1_000) for path in PATHS for t0 in (0, 20_000)]
    dataset = EventWindowDataset(windows=given, size=(320, 240), transform=pipeline,
                                 structured=True, socket_path=mixed.socket)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, timeout=LOADER_TIMEOUT,
                        multiprocessing_context="spawn")
    frames = torch.cat(list(loader))
    assert frames.shape == (8, 2, 2, 240, 320) and frames.dtype == torch.int16
    for i in range(8):
        moved = resize(window_events(mixed, dataset, i), 320, 240)
        assert np.array_equal(frames[i].numpy(), pipeline(moved.as_structured()))
    dataset.close()


def by_window(loader: DataLoader) -> dict[str, torch.Tensor]:
    """One epoch of (histogram, window name) batches, by window."""
    return {name: histogram for histograms, names in loader
            for histogram, name in zip(histograms, names)}


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_random_augmentations_are_reproducible_in_workers(mixed: Daemon, method: str):
    augment = Compose([RandomFlipLR(seed=0), RandomCrop((160, 120), seed=1),
                       DropEvents(0.25, seed=2), EventHistogram(np.int32)])
    dataset = EventWindowDataset(PATHS, duration=DURATION, size=(320, 240),
                                 transform=augment, target=workers.WindowName(),
                                 socket_path=mixed.socket)
    # Workers started anew each epoch (torch reseeds them) under fork; persistent ones
    # (their streams carry on) under spawn, where each start costs a torch import.
    persistent = method == "spawn"

    def epochs(count: int) -> list[dict[str, torch.Tensor]]:
        loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2,
                            multiprocessing_context=method, persistent_workers=persistent,
                            generator=torch.Generator().manual_seed(7),
                            timeout=LOADER_TIMEOUT)
        return [by_window(loader) for _ in range(count)]

    first, again = epochs(2), epochs(1)
    assert first[0].keys() == again[0].keys() and len(first[0]) == 40
    assert all(torch.equal(first[0][k], again[0][k]) for k in first[0])  # reproduced
    assert any(not torch.equal(first[0][k], first[1][k]) for k in first[0])  # epochs differ
    dataset.close()
    if method == "fork":
        # Each worker draws a stream of its own, and a forked one does not go on with a
        # copy of the parent's (which has drawn already).
        first_draws = workers.FirstDraws(3)
        first_draws.random.generator().random()
        draws = EventWindowDataset(PATHS, duration=DURATION, transform=first_draws,
                                   size=(320, 240), socket_path=mixed.socket)
        firsts: dict[int, float] = {}
        for batch in DataLoader(draws, batch_size=1, num_workers=2, timeout=LOADER_TIMEOUT,
                                multiprocessing_context=method):
            firsts.setdefault(int(batch["pid"]), float(batch["draw"]))
        assert len(firsts) == 2 and len(set(firsts.values())) == 2
        draws.close()
