"""Histogram and voxel grid against their written definitions, evaluated event by event."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from evshm import Events
from evshm.transforms import EventHistogram, VoxelGrid, event_histogram, voxel_grid

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
