"""Straightforward reference implementations of evshm.transforms: one event at a time,
in Python, from the written definitions, to hold the vectorised code to.

Each takes and returns plain lists or numpy arrays; ``Ev`` is a list of ``(t, x, y, p)``
tuples in stream order. Slow by design: use them on windows of up to a few 10,000 events.
"""

from __future__ import annotations

import math

import numpy as np

import evshm

Ev = list[tuple[int, int, int, int]]


def rows(events: evshm.Events) -> Ev:
    return [(int(t), int(x), int(y), int(p)) for t, x, y, p in
            zip(events.t.tolist(), events.x.tolist(), events.y.tolist(), events.p.tolist())]


def on_sensor(ev: Ev, width: int, height: int) -> Ev:
    return [e for e in ev if 0 <= e[1] < width and 0 <= e[2] < height]


def flip_lr(ev: Ev, width: int) -> Ev:
    return [(t, width - 1 - x, y, p) for t, x, y, p in ev]


def flip_ud(ev: Ev, height: int) -> Ev:
    return [(t, x, height - 1 - y, p) for t, x, y, p in ev]


def crop(ev: Ev, left: int, top: int, width: int, height: int) -> Ev:
    return [(t, x - left, y - top, p) for t, x, y, p in ev
            if left <= x < left + width and top <= y < top + height]


def resize(ev: Ev, width: int, height: int, new_width: int, new_height: int) -> Ev:
    return [(t, x * new_width // width, y * new_height // height, p) for t, x, y, p in ev]


def downsample(ev: Ev, fx: float, fy: float) -> Ev:
    return [(t, math.floor(x * fx), math.floor(y * fy), p) for t, x, y, p in ev]


def time_reversal(ev: Ev, pivot: int, flip: bool = True) -> Ev:
    return [(pivot - t, x, y, 1 - p if flip else p) for t, x, y, p in reversed(ev)]


def denoise(ev: Ev, width: int, height: int, filter_time: float) -> Ev:
    last: dict[tuple[int, int], int] = {}  # each pixel's last event time so far
    out = []
    for t, x, y, p in on_sensor(ev, width, height):
        neighbours = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)]
        if any(q in last and t - last[q] < filter_time for q in neighbours):
            out.append((t, x, y, p))
        last[(x, y)] = t
    return out


def refractory(ev: Ev, width: int, height: int, period: float) -> Ev:
    last: dict[tuple[int, int], int] = {}
    out = []
    for t, x, y, p in on_sensor(ev, width, height):
        if (x, y) not in last or t - last[(x, y)] > period:
            out.append((t, x, y, p))
        last[(x, y)] = t
    return out


def hot_pixels(ev: Ev, width: int, height: int, rate: float, duration: int) -> Ev:
    ev = on_sensor(ev, width, height)
    counts: dict[tuple[int, int], int] = {}
    for _, x, y, _ in ev:
        counts[(x, y)] = counts.get((x, y), 0) + 1
    return [e for e in ev if counts[(e[1], e[2])] <= rate * duration * 1e-6]


def event_frame(ev: Ev, width: int, height: int, mode: str) -> np.ndarray:
    out = np.zeros((2 if mode == "polarity" else 1, height, width))
    for _, x, y, p in ev:
        if 0 <= x < width and 0 <= y < height and p in (0, 1):
            if mode == "binary":
                out[0, y, x] = 1
            else:
                out[p if mode == "polarity" else 0, y, x] += 1
    return out


def voxel_grid(ev: Ev, width: int, height: int, bins: int, a: int, z: int) -> np.ndarray:
    out = np.zeros((bins, height, width))
    for t, x, y, p in ev:
        if not (0 <= x < width and 0 <= y < height and p in (0, 1)):
            continue
        tau = (bins - 1) * (t - a) / (z - a) if z > a else 0.0
        tau = min(max(tau, 0.0), bins - 1)
        for b in range(bins):
            out[b, y, x] += (1 if p == 1 else -1) * max(0.0, 1 - abs(b - tau))
    return out


def time_surface(ev: Ev, width: int, height: int, tau: float, t_ref: int) -> np.ndarray:
    latest: dict[tuple[int, int, int], int] = {}
    for t, x, y, p in ev:
        if 0 <= x < width and 0 <= y < height and p in (0, 1):
            latest[(p, y, x)] = max(latest.get((p, y, x), t), t)
    out = np.zeros((2, height, width))
    for (p, y, x), t in latest.items():
        out[p, y, x] = math.exp(-max(0, t_ref - t) / tau)
    return out
