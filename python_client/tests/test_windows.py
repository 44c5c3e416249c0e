"""Window semantics (running maximum, binary search) against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from evshm._windows import TimeIndex, event_window_starts, time_window_starts


def reference_rows(t: np.ndarray, t0: int, t1: int) -> tuple[int, int]:
    """The documented definition, materialised: first rows whose running max reaches
    t0 and t1."""
    running = np.maximum.accumulate(t)
    return (int(np.searchsorted(running, t0, side="left")),
            int(np.searchsorted(running, t1, side="left")))


def jittery_times(rng: np.random.Generator, n: int, back: int = 5) -> np.ndarray:
    """Mostly increasing timestamps that step back by up to ``back`` µs now and then."""
    steps = rng.integers(0, 4, n)
    t = np.cumsum(steps) + 1_000_000
    jitter = np.where(rng.random(n) < 0.1, -rng.integers(0, back + 1, n), 0)
    return (t + jitter).astype(np.int64)


@pytest.mark.parametrize("block", [1, 3, 64, 4096])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_match_the_reference_on_backward_steps(block: int, seed: int):
    rng = np.random.default_rng(seed)
    t = jittery_times(rng, 5000)
    assert (np.diff(t) < 0).any(), "the data must exercise backward steps"
    t.flags.writeable = False  # like a view into the segment: never written
    index = TimeIndex(t, block=block)
    lo_t, hi_t = int(t.min()) - 10, int(t.max()) + 10
    for _ in range(300):
        t0 = int(rng.integers(lo_t, hi_t))
        t1 = t0 + int(rng.integers(0, 2000))
        assert index.rows(t0, t1) == reference_rows(t, t0, t1), (t0, t1)


def test_back_to_back_windows_partition_the_rows():
    rng = np.random.default_rng(7)
    t = jittery_times(rng, 20_000, back=50)
    index = TimeIndex(t, block=128)
    assert index.bounds is not None
    first, last = index.bounds
    edges = [*range(first, last + 1, 333), last + 1]
    ranges = [index.rows(a, b) for a, b in zip(edges, edges[1:])]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(t)
    for (_, hi), (lo, _) in zip(ranges, ranges[1:]):
        assert hi == lo  # no gap, no overlap
    for (lo, hi), t1 in zip(ranges, edges[1:]):
        assert (t[lo:hi] < t1).all()  # never at or past the end of its window


def test_non_decreasing_times_are_plain_searchsorted():
    t = np.array([5, 5, 6, 9, 9, 9, 12, 20], dtype=np.int64)
    index = TimeIndex(t, block=3)
    for t0 in range(0, 25):
        for t1 in range(t0, 25):
            assert index.rows(t0, t1) == tuple(np.searchsorted(t, [t0, t1])), (t0, t1)


def test_a_late_event_that_stepped_back_stays_in_stream_order():
    t = np.array([100, 110, 120, 118, 130, 125, 140], dtype=np.int64)
    index = TimeIndex(t)
    assert index.rows(100, 120) == (0, 2)
    # 118 comes after 120 in the stream: it stays in the window where 120 is.
    assert index.rows(120, 130) == (2, 4)
    assert index.rows(130, 141) == (4, 7)  # 125 follows 130
    assert index.bounds == (100, 140)


def test_bounds_and_empty_index():
    assert TimeIndex(np.array([7, 3, 9, 8], dtype=np.int64)).bounds == (7, 9)
    empty = TimeIndex(np.empty(0, dtype=np.int64))
    assert empty.bounds is None
    assert empty.rows(0, 10) == (0, 0)


def test_rows_refuse_a_window_that_ends_before_it_starts():
    with pytest.raises(ValueError, match="ends before"):
        TimeIndex(np.arange(10)).rows(5, 4)
    assert TimeIndex(np.arange(10)).rows(5, 5) == (5, 5)


def test_time_window_starts():
    assert time_window_starts((100, 350), 100).tolist() == [100, 200, 300]
    assert time_window_starts((100, 350), 100, drop_last=True).tolist() == [100, 200]
    assert time_window_starts((100, 399), 100, drop_last=True).tolist() == [100, 200, 300]
    assert time_window_starts((100, 350), 100, stride=50).tolist() == [
        100, 150, 200, 250, 300, 350]
    assert time_window_starts((100, 100), 10).tolist() == [100]
    assert time_window_starts((100, 100), 10, drop_last=True).tolist() == []
    assert time_window_starts(None, 10).tolist() == []
    with pytest.raises(ValueError, match="duration"):
        time_window_starts((0, 1), 0)
    with pytest.raises(ValueError, match="stride"):
        time_window_starts((0, 1), 5, stride=-1)


def test_event_window_starts():
    assert event_window_starts(10, 4).tolist() == [0, 4, 8]
    assert event_window_starts(10, 4, drop_last=True).tolist() == [0, 4]
    assert event_window_starts(10, 4, stride=3).tolist() == [0, 3, 6, 9]
    assert event_window_starts(10, 4, stride=3, drop_last=True).tolist() == [0, 3, 6]
    assert event_window_starts(0, 4).tolist() == []
    assert event_window_starts(3, 4, drop_last=True).tolist() == []
    with pytest.raises(ValueError, match="events"):
        event_window_starts(10, 0)


@pytest.mark.parametrize("block", [1, 5, 64, 4096])
@pytest.mark.parametrize("seed", [3, 4])
def test_an_index_over_several_parts_matches_the_reference(block: int, seed: int):
    """A column in chunks: rows count across the parts, blocks never straddle two, and
    empty parts (an empty Arrow chunk) are skipped."""
    rng = np.random.default_rng(seed)
    t = jittery_times(rng, 6000, back=20)
    cuts = np.sort(rng.choice(np.arange(1, len(t)), 6, replace=False))
    parts = np.split(t, cuts)
    parts.insert(2, t[:0])  # an empty part in the middle
    index = TimeIndex(*parts, block=block)
    assert len(index) == len(t)
    assert index.bounds == (int(t[0]), int(t.max()))
    lo_t, hi_t = int(t.min()) - 10, int(t.max()) + 10
    for t0 in [lo_t, *(int(t[c]) for c in cuts), hi_t]:  # on every part boundary, too
        for t1 in (t0, t0 + 1, t0 + 97):
            assert index.rows(t0, t1) == reference_rows(t, t0, t1), (t0, t1)
    for _ in range(300):
        t0 = int(rng.integers(lo_t, hi_t))
        t1 = t0 + int(rng.integers(0, 3000))
        assert index.rows(t0, t1) == reference_rows(t, t0, t1), (t0, t1)


def test_an_index_of_no_part_or_only_empty_ones():
    for index in (TimeIndex(), TimeIndex(np.empty(0, np.int64), np.empty(0, np.int64))):
        assert len(index) == 0 and index.bounds is None
        assert index.rows(-5, 5) == (0, 0)
