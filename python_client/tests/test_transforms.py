"""Histogram and voxel grid against their written definitions, evaluated event by event;
what the other transforms do that needs no reference: pickling, seeding, refusals; and
the conversions of Events to and from structured arrays."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from evshm import Events
from evshm import _events as evshm_events
from evshm import transforms as T
from evshm.transforms import EventHistogram, VoxelGrid, event_histogram, voxel_grid
from evshm.transforms import _representations as representations

W, H = 7, 5


def random_events(seed: int, n: int = 400) -> Events:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1_000, 2_000, n)).astype(np.int64)
    t[::17] -= 3  # a few backward steps, as in real EVT3 data
    arrays: dict[str, np.ndarray] = dict(t=t, x=rng.integers(0, W, n).astype(np.int16),
                  y=rng.integers(0, H, n).astype(np.int16),
                  p=rng.integers(0, 2, n).astype(np.int8))
    for array in arrays.values():
        array.flags.writeable = False  # like the views into the segment
    return Events(**arrays, width=W, height=H, t0=990, t1=2_010)


def histogram_by_definition(ev: Events) -> np.ndarray:
    out = np.zeros((2, ev.height, ev.width))
    for x, y, p in zip(ev.x, ev.y, ev.p):
        if 0 <= x < ev.width and 0 <= y < ev.height and p in (0, 1):
            out[p, y, x] += 1
    return out


def voxels_by_definition(ev: Events, bins: int, a: int, z: int) -> np.ndarray:
    out = np.zeros((bins, ev.height, ev.width))
    for t, x, y, p in zip(ev.t, ev.x, ev.y, ev.p):
        if not (0 <= x < ev.width and 0 <= y < ev.height and p in (0, 1)):
            continue
        tau = (bins - 1) * (int(t) - a) / (z - a) if z > a else 0.0
        tau = min(max(tau, 0.0), bins - 1)
        for b in range(bins):
            out[b, y, x] += (1 if p == 1 else -1) * max(0.0, 1 - abs(b - tau))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_histogram_counts_events_per_pixel_and_polarity(seed: int):
    ev = random_events(seed)
    out = EventHistogram()(ev)
    assert out.shape == (2, H, W) and out.dtype == np.float32
    assert np.array_equal(out, histogram_by_definition(ev))
    assert out.sum() == len(ev)
    exact = event_histogram(ev.x, ev.y, ev.p, W, H, dtype=np.int32)
    assert exact.dtype == np.int32 and np.array_equal(exact, out)


@pytest.mark.parametrize("bins", [1, 2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_voxel_grid_matches_the_definition(bins: int, seed: int):
    ev = random_events(seed)
    out = VoxelGrid(bins)(ev)
    assert out.shape == (bins, H, W) and out.dtype == np.float32
    expected = voxels_by_definition(ev, bins, int(ev.t.min()), int(ev.t.max()))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Bilinear weights sum to one per event: the total is the signed event count.
    signed = int(np.where(ev.p == 1, 1, -1).sum())
    assert out.sum(dtype=np.float64) == pytest.approx(signed, abs=1e-3)


def test_voxel_grid_normalised_by_the_window():
    ev = random_events(3)
    out = VoxelGrid(4, time_range="window")(ev)
    np.testing.assert_allclose(out, voxels_by_definition(ev, 4, 990, 2_010), atol=1e-5)
    assert not np.allclose(out, VoxelGrid(4)(ev), atol=1e-3)


def sorted_events(seed: int, n: int = 400) -> Events:
    """random_events in time order: what the voxel grid sums bin after bin."""
    ev = random_events(seed, n)
    order = np.argsort(ev.t, kind="stable")
    return Events(ev.t[order], ev.x[order], ev.y[order], ev.p[order], W, H, ev.t0, ev.t1)


@pytest.mark.parametrize("path", ["by_bin", "by_pixel"])
@pytest.mark.parametrize("block", [16, representations._BLOCK])
@pytest.mark.parametrize("bins", [1, 2, 5, 9])
@pytest.mark.parametrize("ordered", [True, False])
def test_voxel_grid_is_the_definition_to_the_bit(monkeypatch: pytest.MonkeyPatch, path: str,
                                                 block: int, bins: int, ordered: bool):
    # Either way of summing (forced here: bin after bin over whole planes, or over the
    # touched pixels), in blocks or not, events in time order or stepping back: the
    # definition's float64 sums, added in the events' order, cast once to float32.
    monkeypatch.setattr(representations, "_DENSE", 1 << 40 if path == "by_bin" else 0)
    monkeypatch.setattr(representations, "_BLOCK", block)
    for seed in range(3):
        ev = sorted_events(seed) if ordered else random_events(seed)
        for t_range, (a, z) in ((None, (int(ev.t.min()), int(ev.t.max()))),
                                ((1_200, 1_800), (1_200, 1_800))):
            expected = voxels_by_definition(ev, bins, a, z)
            exact = voxel_grid(ev.t, ev.x, ev.y, ev.p, W, H, bins, t_range=t_range,
                               dtype=np.float64)
            assert np.array_equal(exact, expected)
            out = voxel_grid(ev.t, ev.x, ev.y, ev.p, W, H, bins, t_range=t_range)
            assert out.dtype == np.float32 and np.array_equal(out, expected.astype(np.float32))


def test_voxel_grid_by_bin_needs_the_bins_in_order():
    ordered = sorted_events(0)
    times = representations._Times(int(ordered.t.min()), int(ordered.t.max()), 5, clip=False)
    assert representations._voxels_by_bin(ordered.t, ordered.x, ordered.y, ordered.p, W, H,
                                          times, np.float64) is not None
    args = (W, H, representations._Times(1_000, 2_000, 5, clip=False), np.float64)
    # Time stepping back within a bin is in order for the bins; across a bin's start not.
    t = np.array([1_000, 1_100, 1_050, 1_300, 1_240, 2_000], dtype=np.int64)
    xy = np.zeros(6, dtype=np.int16)
    p = np.ones(6, dtype=np.int8)
    assert representations._voxels_by_bin(t[:3], xy[:3], xy[:3], p[:3], *args) is not None
    assert representations._voxels_by_bin(t, xy, xy, p, *args) is None
    assert np.array_equal(voxel_grid(t, xy, xy, p, W, H, 5, dtype=np.float64),
                          voxels_by_definition(Events(t, xy, xy, p, W, H), 5, 1_000, 2_000))


def test_voxel_grid_scratch_is_per_thread_and_never_returned():
    # Scratch arrays are kept between calls (per thread): a call on another sensor, a
    # smaller window or in another thread, and a second call, leave earlier outputs as
    # they were and compute the same.
    small, large = random_events(1, 50), sorted_events(2, 3_000)
    first = VoxelGrid(3)(large)
    kept = first.copy()
    other = voxel_grid(small.t, small.x, small.y, small.p, 9, 6, 4)  # another sensor
    assert np.array_equal(VoxelGrid(3)(large), kept) and np.array_equal(first, kept)
    assert np.array_equal(other, voxels_by_definition(
        Events(small.t, small.x, small.y, small.p, 9, 6), 4, int(small.t.min()),
        int(small.t.max())).astype(np.float32))
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: VoxelGrid(3)(large if i % 2 else small), range(16)))
    for i, out in enumerate(outs):
        assert np.array_equal(out, kept if i % 2 else VoxelGrid(3)(small))


def test_voxel_grid_keeps_no_large_scratch(monkeypatch: pytest.MonkeyPatch):
    kept: dict[str, np.ndarray] = {}
    monkeypatch.setattr(representations._scratch(), "arrays", kept)
    monkeypatch.setattr(representations, "_KEEP", 20_000)
    ev = sorted_events(4, 3_000)  # 24,000 bytes an array of 8 bytes an event
    expected = voxels_by_definition(ev, 3, int(ev.t.min()), int(ev.t.max()))
    for _ in range(2):
        assert np.array_equal(VoxelGrid(3)(ev), expected.astype(np.float32))
        assert "pixel" not in kept and all(array.nbytes <= 20_000 for array in kept.values())


def test_window_normalisation_needs_a_time_window():
    ev = random_events(0)
    counted = Events(ev.t, ev.x, ev.y, ev.p, W, H)  # no t0/t1: an event-count window
    with pytest.raises(ValueError, match="time window"):
        VoxelGrid(3, time_range="window")(counted)


def test_voxel_grid_with_a_single_timestamp_uses_bin_zero():
    t = np.full(3, 42, dtype=np.int64)
    x = np.array([0, 1, 1], dtype=np.int16)
    y = np.zeros(3, dtype=np.int16)
    p = np.array([1, 0, 1], dtype=np.int8)
    out = voxel_grid(t, x, y, p, W, H, 3)
    assert out[0, 0, 0] == 1 and out[0, 0, 1] == 0 and out[1:].sum() == 0


def test_events_off_the_sensor_or_with_odd_polarity_are_ignored():
    t = np.arange(5, dtype=np.int64)
    x = np.array([0, W, -1, 2, 3], dtype=np.int16)
    y = np.array([0, 0, 0, H, 1], dtype=np.int16)
    p = np.array([1, 1, 1, 1, 2], dtype=np.int8)
    assert event_histogram(x, y, p, W, H).sum() == 1
    assert voxel_grid(t, x, y, p, W, H, 2).sum() == pytest.approx(1.0)


def test_no_events_give_zeros():
    empty = np.empty(0, dtype=np.int16)
    assert not event_histogram(empty, empty, empty, W, H).any()
    assert voxel_grid(empty.astype(np.int64), empty, empty, empty, W, H, 3).shape == (3, H, W)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="bins"):
        VoxelGrid(0)
    with pytest.raises(ValueError, match="time_range"):
        VoxelGrid(2, time_range="recording")
    with pytest.raises(ValueError, match="geometry"):
        event_histogram(np.zeros(1), np.zeros(1), np.zeros(1), 0, 3)


def test_transforms_pickle_for_spawned_workers():
    ev = random_events(5)
    for transform in (EventHistogram(np.int32), VoxelGrid(3, time_range="window")):
        clone = pickle.loads(pickle.dumps(transform))
        assert repr(clone) == repr(transform)
        assert np.array_equal(clone(ev), transform(ev))


# ----------------------------------------------------------------------- the other transforms
# (each is held to tonic and to an event-by-event reference on real windows in
# tests/python/test_transforms_real.py; here: what needs no reference)

def every_transform() -> list[Any]:
    return [T.Compose([T.RandomFlipLR(seed=1), T.VoxelGrid(2)]), T.RandomFlipLR(0.3, seed=1),
            T.RandomFlipUD(seed=2), T.RandomCrop((3, 2), seed=3), T.CenterCrop(4),
            T.Resize((3, 3)), T.Downsample((0.5, 0.25)), T.TimeJitter(20.0, sort=True, seed=4),
            T.DropEvents((0.2, 0.4), seed=5), T.TimeReversal(seed=6), T.Denoise(100),
            T.Refractory(10), T.HotPixels(1e4), T.EventFrame("binary"),
            T.TimeSurface(300.0, time_range="window"), EventHistogram(), VoxelGrid(3)]


def same_output(a: Any, b: Any) -> bool:
    if isinstance(a, Events):
        return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in "txyp") and \
            (a.width, a.height, a.t0, a.t1) == (b.width, b.height, b.t0, b.t1)
    return bool(np.array_equal(a, b))


def test_every_transform_pickles_and_replays_its_seeded_draws():
    ev = random_events(7)
    for transform in every_transform():
        clone = pickle.loads(pickle.dumps(transform))
        assert repr(clone) == repr(transform)
        for _ in range(3):  # the clone starts the same stream afresh, in step
            assert same_output(clone(ev), transform(ev)), transform


def test_random_transforms_draw_reproducible_streams():
    ev = random_events(8)
    again = [T.DropEvents(0.5, seed=11)(ev).t for _ in range(2)]
    assert np.array_equal(again[0], again[1])  # a new object, the same first draw
    drop = T.DropEvents(0.5, seed=11)
    first, second = drop(ev), drop(ev)
    assert not np.array_equal(first.t, second.t)  # the stream goes on
    assert not np.array_equal(T.DropEvents(0.5, seed=12)(ev).t, first.t)
    unseeded = [T.DropEvents(0.5)(ev).t for _ in range(2)]
    assert not np.array_equal(unseeded[0], unseeded[1])  # fresh entropy each
    # Two classes with one seed draw different streams: flips are not in lockstep.
    lr, ud = T.RandomFlipLR(seed=0), T.RandomFlipUD(seed=0)
    assert [lr.generator().random() for _ in range(8)] != \
        [ud.generator().random() for _ in range(8)]


def test_a_forked_child_makes_a_generator_of_its_own():
    flip = T.RandomFlipLR(seed=3)
    parent = flip.generator()
    parent.random()  # the parent's stream has moved on
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        child_first = pool.apply(_first_draw, (flip,))
    assert child_first == T.RandomFlipLR(seed=3).generator().random()  # the stream afresh
    assert flip.generator() is parent  # the parent's is kept


def _first_draw(transform: T.RandomTransform) -> float:
    return float(transform.generator().random())


@pytest.mark.parametrize("make, message", [
    (lambda: T.RandomFlipLR(1.5), "probability"),
    (lambda: T.RandomFlipUD(seed=-1), "seed"),
    (lambda: T.RandomFlipUD(seed=True), "seed"),
    (lambda: T.RandomCrop((0, 3)), "positive"),
    (lambda: T.Resize((3, -1)), "positive"),
    (lambda: T.Downsample(0), "positive"),
    (lambda: T.TimeJitter(-1.0), "std"),
    (lambda: T.DropEvents((0.5, 0.2)), "empty"),
    (lambda: T.DropEvents(2.0), "probability"),
    (lambda: T.Denoise(0), "filter_time"),
    (lambda: T.Refractory(-5), "period"),
    (lambda: T.HotPixels(-1), "rate"),
    (lambda: T.EventFrame("signed"), "mode"),
    (lambda: T.TimeSurface(0.0), "tau"),
    (lambda: T.TimeSurface(5.0, time_range="all"), "time_range"),
])
def test_bad_transform_arguments_are_refused(make: Any, message: str):
    with pytest.raises(ValueError, match=message):
        make()


def test_time_surface_by_window_needs_a_time_window():
    ev = random_events(0)
    with pytest.raises(ValueError, match=r"TimeSurface.*time window"):
        T.TimeSurface(5.0, time_range="window")(Events(ev.t, ev.x, ev.y, ev.p, W, H))


def test_compose_applies_in_order_and_keeps_going_on_no_events():
    ev = random_events(1)
    chain = T.Compose([T.CenterCrop((1, 1)), T.DropEvents(1.0), T.EventFrame()])
    out = chain(ev)
    assert out.shape == (1, 1, 1) and out.sum() == 0  # tonic's Compose would stop early
    assert repr(chain).startswith("Compose([CenterCrop(size=(1, 1)), DropEvents(")
    assert T.Compose([])(ev) is ev


# ----------------------------------------------------------------------- Events conversions

def test_events_as_tonic_structured_array_and_back():
    ev = random_events(2)
    s = ev.as_structured()
    assert s.dtype == np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    assert s.dtype == evshm_events.structured_dtype()
    assert np.array_equal(s["t"], ev.t) and np.array_equal(s["p"], ev.p == 1)
    back = Events.from_structured(s, W, H, t0=ev.t0, t1=ev.t1)
    assert same_output(back, ev) and back.p.dtype == np.int8 and back.x.dtype == np.int16
    ints = ev.as_structured([("t", int), ("x", int), ("y", int), ("p", int)])  # N-MNIST's
    assert ints.dtype.names == ("t", "x", "y", "p") and np.array_equal(ints["p"], ev.p)
    with pytest.raises(ValueError, match="has no p"):
        ev.as_structured([("t", int), ("x", int), ("y", int)])
    with pytest.raises(ValueError, match="has no x, y"):
        Events.from_structured(np.zeros(2, [("t", int), ("p", int)]), W, H)


def test_events_select_keeps_geometry_and_window():
    ev = random_events(3)
    mask = ev.x > 2
    picked = ev.select(mask)
    assert np.array_equal(picked.t, ev.t[mask]) and np.array_equal(picked.p, ev.p[mask])
    assert (picked.width, picked.height, picked.t0, picked.t1) == (W, H, 990, 2_010)
    assert np.array_equal(ev.select(np.array([4, 1])).x, ev.x[[4, 1]])
