"""evshm.transforms on real windows served by evshmd (read-only views of the extents),
against tonic's transforms where tonic has the same one, and against the event-by-event
references of references.py; plus the edge cases real windows may not hold (borders,
padding, events off the sensor, time stepping back), on small synthetic events."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest

import evshm
import references as ref
from evshm import transforms as T
from harness import Daemon, time_bounds

#: Real windows: (recording, start after its first event, duration), µs. evt2_sample.raw
#: holds 540 k events in 50 ms: its first 10 ms keep tonic's loops and the references
#: to seconds. N-CARS starts at t = 0, where tonic's Denoise differs on purpose (see
#: Denoise's doc): its window starts later.
WINDOWS = [("evt2_sample.raw", 0, 10_000), ("evt3_sample.raw", 0, 50_000),
           ("evt3_test_pedestrians.raw", 0, 50_000), ("NCARS_obj_004397_td.dat", 20_000, 50_000)]
#: The references loop in Python: they get the windows' first events.
REFERENCE_EVENTS = 40_000


@pytest.fixture
def windows(daemon: Daemon, real: Path) -> dict[str, evshm.Events]:
    """Each real window as evshm gives it: read-only views into the extents."""
    out = {}
    with daemon.client() as client:
        for name, offset, duration in WINDOWS:
            rec = client.open(name)
            first = time_bounds(rec)[0] + offset
            events = rec.time_window(first, first + duration).events()
            assert len(events) > 1000 and not events.x.flags.writeable
            out[name] = events
    return out


@pytest.fixture
def tonic() -> ModuleType:
    """tonic.transforms (scripts/test.sh fails in CI when tonic is missing)."""
    pytest.importorskip("tonic", reason="tonic is not installed (Python >= 3.10: "
                                        "pip install -r scripts/requirements-test.txt)")
    import tonic.transforms

    return tonic.transforms


def head(events: evshm.Events, n: int = REFERENCE_EVENTS) -> evshm.Events:
    """The first ``n`` events, window kept (a slice: still read-only views)."""
    return dataclasses.replace(events, t=events.t[:n], x=events.x[:n], y=events.y[:n],
                               p=events.p[:n])


def sensor(events: evshm.Events) -> tuple[int, int, int]:
    """tonic's ``sensor_size``."""
    return events.width, events.height, 2


def assert_same(got: evshm.Events, expected: list[tuple[int, int, int, int]] | np.ndarray,
                width: int | None = None, height: int | None = None) -> None:
    """``got`` holds exactly ``expected`` (reference rows, or a tonic structured array)."""
    if isinstance(expected, np.ndarray):
        expected = ref.rows(evshm.Events.from_structured(expected, 1, 1))
    assert ref.rows(got) == expected
    if width is not None:
        assert (got.width, got.height) == (width, height)


def assert_unchanged(events: evshm.Events, copy: dict[str, np.ndarray]) -> None:
    for name, before in copy.items():
        assert np.array_equal(getattr(events, name), before), f"input {name} was written"


# ----------------------------------------------------------------------- against tonic

def test_flips_match_tonic(windows, tonic):
    for events in windows.values():
        s = events.as_structured()
        assert_same(T.RandomFlipLR(p=1.0)(events), tonic.RandomFlipLR(sensor(events), p=1.0)(s))
        assert_same(T.RandomFlipUD(p=1.0)(events), tonic.RandomFlipUD(sensor(events), p=1.0)(s))
        assert T.RandomFlipLR(p=0.0)(events) is events


@pytest.mark.parametrize("size", [(200, 100), (1500, 900), (77, 800)])
def test_center_crop_matches_tonic(windows, tonic, size):
    for events in windows.values():
        out = T.CenterCrop(size)(events)
        assert_same(out, tonic.CenterCrop(sensor(events), size)(events.as_structured()),
                    *size)


def test_resize_and_downsample_match_tonic(windows, tonic):
    for events in windows.values():
        s = events.as_structured()
        for size in ((320, 240), (213, 117), (events.width * 2, events.height)):
            expected = tonic.Downsample(sensor_size=sensor(events), target_size=size)(s)
            assert_same(T.Resize(size)(events), expected, *size)
        for factor in (0.25, 1 / 3, (0.5, 0.2)):
            fx, fy = factor if isinstance(factor, tuple) else (factor, factor)
            out = T.Downsample(factor)(events)
            assert_same(out, tonic.Downsample(spatial_factor=factor)(s))
            assert out.x.max() < out.width == int((events.width - 1) * fx) + 1
            assert out.y.max() < out.height == int((events.height - 1) * fy) + 1


def test_time_reversal_matches_tonic_shifted(windows, tonic):
    for events in windows.values():
        loose = dataclasses.replace(events, t0=None, t1=None)  # mirrored within its span
        out = T.TimeReversal(p=1.0)(loose)
        expected = tonic.RandomTimeReversal(p=1.0)(events.as_structured())
        expected["t"] += int(events.t.min())  # tonic's start at 0
        assert_same(out, expected)


@pytest.mark.parametrize("filter_time", [500, 5_000])
def test_denoise_matches_tonic(windows, tonic, filter_time):
    dropped = 0
    for events in windows.values():
        assert events.t.min() >= filter_time  # tonic's start-of-time exception
        out = T.Denoise(filter_time)(events)
        assert_same(out, tonic.Denoise(filter_time=filter_time)(events.as_structured()))
        dropped += len(events) - len(out)
    assert dropped > 0


@pytest.mark.parametrize("period", [100, 2_000])
def test_refractory_matches_tonic(windows, tonic, period):
    dropped = 0
    for events in windows.values():
        out = T.Refractory(period)(events)
        assert_same(out, tonic.RefractoryPeriod(delta=period)(events.as_structured()))
        dropped += len(events) - len(out)
    assert dropped > 0


@pytest.mark.parametrize("rate", [1_000, 4_000])  # tonic takes a pass per hot pixel
def test_hot_pixels_match_tonic(windows, tonic, rate):
    dropped = 0
    for events in windows.values():
        # tonic's duration is the last event's time less the first's.
        spanned = dataclasses.replace(events, t0=int(events.t[0]), t1=int(events.t[-1]))
        out = T.HotPixels(rate)(spanned)
        expected = tonic.DropPixel(hot_pixel_frequency=rate)(events.as_structured())
        assert_same(out, expected)
        dropped += len(events) - len(out)
    assert dropped > 0


def test_frames_match_tonic(windows, tonic):
    for events in windows.values():
        s = events.as_structured()
        frame = tonic.ToFrame(sensor(events), event_count=len(s))(s)  # one slice
        assert frame.shape == (1, 2, events.height, events.width)
        assert np.array_equal(T.EventFrame("polarity", dtype=np.int16)(events), frame[0])
        assert np.array_equal(T.EventHistogram(np.int16)(events), frame[0])


def test_time_surface_matches_tonic(windows, tonic):
    for events in windows.values():
        # tonic slices with searchsorted, which needs time order; one slice of `dt`.
        s = events.as_structured()
        s = s[np.argsort(s["t"], kind="stable")]
        dt = int(s["t"][-1] - s["t"][0]) + 7
        expected = tonic.ToTimesurface(sensor(events), dt=dt, tau=3_000.0)(s)
        ordered = evshm.Events.from_structured(s, events.width, events.height)
        got = evshm.transforms.time_surface(
            ordered.t, ordered.x, ordered.y, ordered.p, events.width, events.height,
            3_000.0, t_ref=int(s["t"][0]) + dt, dtype=np.float64)
        np.testing.assert_allclose(got, expected[0], rtol=1e-12, atol=0)


def test_a_tonic_pipeline_runs_on_an_evshm_window(windows, tonic):
    events = windows["evt3_sample.raw"]
    frame = tonic.ToFrame(sensor(events), n_time_bins=3)
    pipeline = tonic.Compose([tonic.Denoise(filter_time=5_000),
                              tonic.RandomFlipLR(sensor(events), p=1.0), frame])
    frames = pipeline(events.as_structured())
    assert frames.shape == (3, 2, events.height, events.width) and frames.sum() > 0
    # evshm's transforms in tonic's place, then the same tonic representation.
    ours = T.Compose([T.Denoise(5_000), T.RandomFlipLR(p=1.0),
                      lambda ev: frame(ev.as_structured())])
    assert np.array_equal(ours(events), frames)


# ----------------------------------------------------------------------- against references

def test_geometric_transforms_match_the_references(windows):
    for events in windows.values():
        small = head(events)
        rows = ref.rows(small)
        w, h = events.width, events.height
        assert_same(T.RandomFlipLR(p=1.0)(small), ref.flip_lr(rows, w))
        assert_same(T.RandomFlipUD(p=1.0)(small), ref.flip_ud(rows, h))
        assert_same(T.Resize((100, 70))(small), ref.resize(rows, w, h, 100, 70), 100, 70)
        assert_same(T.Downsample(0.3)(small), ref.downsample(rows, 0.3, 0.3))
        crop = T.RandomCrop((w // 2, h // 3), seed=4)
        # RandomCrop draws two uniforms for its corner: replay its stream.
        replay = pickle.loads(pickle.dumps(crop)).generator()
        for _ in range(3):
            u, v = replay.random(2)
            left, top = int(u * (w - w // 2 + 1)), int(v * (h - h // 3 + 1))
            assert_same(crop(small), ref.crop(rows, left, top, w // 2, h // 3), w // 2, h // 3)


def test_filters_match_the_references(windows):
    for events in windows.values():
        small = head(events)
        rows = ref.rows(small)
        w, h = events.width, events.height
        assert_same(T.Denoise(2_000)(small), ref.denoise(rows, w, h, 2_000))
        assert_same(T.Refractory(500)(small), ref.refractory(rows, w, h, 500))
        assert small.t0 is not None and small.t1 is not None
        assert_same(T.HotPixels(200)(small), ref.hot_pixels(rows, w, h, 200, small.t1 - small.t0))


def test_representations_match_the_references(windows):
    for events in windows.values():
        small = head(events, 10_000)
        rows = ref.rows(small)
        w, h = events.width, events.height
        assert small.t0 is not None and small.t1 is not None
        for mode in ("count", "polarity", "binary"):
            assert np.array_equal(T.EventFrame(mode)(small), ref.event_frame(rows, w, h, mode))
        a, z = int(small.t.min()), int(small.t.max())
        np.testing.assert_allclose(T.VoxelGrid(3)(small), ref.voxel_grid(rows, w, h, 3, a, z),
                                   atol=1e-4)
        np.testing.assert_allclose(T.VoxelGrid(4, time_range="window")(small),
                                   ref.voxel_grid(rows, w, h, 4, small.t0, small.t1), atol=1e-4)
        np.testing.assert_allclose(T.TimeSurface(2_000.0)(small),
                                   ref.time_surface(rows, w, h, 2_000.0, z), rtol=1e-6)
        np.testing.assert_allclose(T.TimeSurface(2_000.0, time_range="window")(small),
                                   ref.time_surface(rows, w, h, 2_000.0, small.t1), rtol=1e-6)


def test_time_reversal_within_the_window_matches_the_reference(windows):
    for events in windows.values():
        assert events.t0 is not None and events.t1 is not None
        out = T.TimeReversal(p=1.0)(events)
        assert_same(out, ref.time_reversal(ref.rows(events), events.t0 + events.t1 - 1))
        assert events.t0 <= out.t.min() and out.t.max() < events.t1  # the same window
        kept = T.TimeReversal(p=1.0, flip_polarities=False)(events)
        assert np.array_equal(kept.p, events.p[::-1])


def test_time_jitter_adds_rounded_normal_draws(windows):
    for events in windows.values():
        jitter = T.TimeJitter(300.0, seed=9)
        draws = np.rint(pickle.loads(pickle.dumps(jitter)).generator().normal(
            0.0, 300.0, len(events))).astype(np.int64)
        out = jitter(events)
        assert np.array_equal(out.t, events.t + draws)  # no time is negative here
        for name in ("x", "y", "p"):
            assert np.array_equal(getattr(out, name), getattr(events, name))
        margin = 5 * 300.0 / np.sqrt(len(events))  # five standard errors
        assert abs(draws.std() - 300.0) < margin and abs(draws.mean()) < margin
        ordered = T.TimeJitter(300.0, sort=True, seed=9)(events)
        assert np.array_equal(ordered.t, np.sort(out.t))
        order = np.argsort(out.t, kind="stable")
        assert np.array_equal(ordered.x, events.x[order])


def test_drop_events_keeps_a_subsequence_of_the_right_length(windows):
    for events in windows.values():
        # Times replaced by row numbers: what is kept names the rows it came from.
        numbered = dataclasses.replace(events, t=np.arange(len(events)))
        out = T.DropEvents(0.3, seed=2)(numbered)
        assert len(out) == len(events) - int(0.3 * len(events) + 0.5)
        assert (np.diff(out.t) > 0).all()  # in order, none twice
        for name in ("x", "y", "p"):
            assert np.array_equal(getattr(out, name), getattr(events, name)[out.t])
        ranged = T.DropEvents((0.1, 0.9), seed=2)
        sizes = {len(ranged(events)) for _ in range(5)}
        assert len(sizes) > 1 and all(0.1 * len(events) - 1 <= n <= 0.9 * len(events) + 1
                                      for n in sizes)


def test_transforms_never_write_their_input(windows):
    pipeline: list[Callable[[evshm.Events], Any]] = [
        T.RandomFlipLR(p=1.0), T.RandomFlipUD(p=1.0), T.RandomCrop(50, seed=0),
        T.CenterCrop(60), T.Resize((30, 20)), T.Downsample(0.5),
        T.TimeJitter(100.0, sort=True, seed=0), T.DropEvents(0.5, seed=0),
        T.TimeReversal(p=1.0), T.Denoise(1_000), T.Refractory(100), T.HotPixels(10),
        T.EventHistogram(), T.EventFrame("binary"), T.VoxelGrid(3), T.TimeSurface(1e3)]
    for events in windows.values():
        writable = evshm.Events(**{k: getattr(events, k).copy() for k in "txyp"},
                                width=events.width, height=events.height,
                                t0=events.t0, t1=events.t1)
        copy = {k: getattr(writable, k).copy() for k in "txyp"}
        for transform in pipeline:
            transform(events)  # read-only views: a write would raise
            transform(writable)
            assert_unchanged(writable, copy)


# ----------------------------------------------------------------------- edge cases

def synthetic(seed: int, n: int = 3000, width: int = 9, height: int = 6) -> evshm.Events:
    """Dense events on a tiny sensor, a few off it, time stepping back now and then."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1_000, 40_000, n)).astype(np.int64)
    t[::13] -= 50
    x = rng.integers(-1, width + 1, n).astype(np.int16)
    y = rng.integers(-1, height + 1, n).astype(np.int16)
    p = rng.integers(0, 2, n).astype(np.int8)
    return evshm.Events(t, x, y, p, width, height, t0=900, t1=40_000)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filters_at_borders_with_time_stepping_back(seed):
    events = synthetic(seed)
    rows = ref.rows(events)
    w, h = events.width, events.height
    for filter_time in (30, 300, 3_000):
        assert_same(T.Denoise(filter_time)(events), ref.denoise(rows, w, h, filter_time))
    for period in (0, 40, 400):
        assert_same(T.Refractory(period)(events), ref.refractory(rows, w, h, period))
    for rate in (1_000, 2_000, 4_000):
        assert_same(T.HotPixels(rate)(events), ref.hot_pixels(rows, w, h, rate, 39_100))


@pytest.mark.parametrize("seed", [0, 1])
def test_crops_with_padding_and_events_off_the_sensor(seed):
    events = synthetic(seed)
    rows = ref.rows(events)
    for size in ((4, 3), (9, 6), (12, 10), (1, 1)):
        left, top = (9 - size[0]) // 2, (6 - size[1]) // 2
        assert_same(T.CenterCrop(size)(events), ref.crop(rows, left, top, *size), *size)
    for left, top in ((-3, -2), (0, 0), (8, 5), (10, 7)):
        assert_same(T.crop(events, left, top, 3, 4), ref.crop(rows, left, top, 3, 4), 3, 4)
    with pytest.raises(ValueError, match="cannot crop 10x6 out of a 9x6 sensor"):
        T.RandomCrop((10, 6))(events)


def test_representations_ignore_events_off_the_sensor():
    events = synthetic(3)
    rows = ref.rows(events)
    for mode in ("count", "polarity", "binary"):
        assert np.array_equal(T.EventFrame(mode)(events), ref.event_frame(rows, 9, 6, mode))
    np.testing.assert_allclose(T.TimeSurface(500.0)(events),
                               ref.time_surface(rows, 9, 6, 500.0, int(events.t.max())),
                               rtol=1e-6)


def test_no_events():
    empty = evshm.Events(np.empty(0, np.int64), np.empty(0, np.int16), np.empty(0, np.int16),
                         np.empty(0, np.int8), 8, 4, t0=0, t1=10)
    for transform in (T.Denoise(10), T.Refractory(10), T.HotPixels(1), T.DropEvents(0.5),
                      T.TimeJitter(5.0), T.TimeReversal(p=1.0), T.RandomCrop(2),
                      T.CenterCrop(2), T.Resize((4, 2)), T.RandomFlipLR(p=1.0)):
        assert len(transform(empty)) == 0
    assert not T.TimeSurface(5.0)(empty).any() and T.EventFrame()(empty).shape == (1, 4, 8)
