"""evshm.transforms against tonic's transforms, side by side, on the same 50 ms windows
of the real recordings.

Each real recording with a sensor size (``$EVSHM_REAL_DATA``, else ``../shared/data/real``
beside the repository) is served by a fresh evshmd; its first 50 ms window is what both
libraries get, each in its native form: evshm's transform the window's ``Events``
(read-only views of the extent, no copy), tonic's the same events as tonic's structured
array, made once before the clock starts (its cost, ``as_structured()``, is reported
apart). Both are called with the same parameters (random ones forced to act: flips and
reversal with ``p=1``). The two are timed alternately, call after call, so that both
see the same load; each side's figure is the median of its calls (at least 5, more for
fast transforms, up to about a second per side). Before timing, the outputs are
compared where the two compute the same thing (every transform but the random draws of
jitter, drop and crop, and tonic's differently normalised voxel grid). tonic's
``ToVoxelGrid`` writes into its input (the polarities): they are put back before each
of its calls, off the clock.

Usage: python transforms.py [PLAN]
    With the driver's PLAN (benches/run.py): its evshmd, work directory and results
    directory. Alone (``ALONE``, from the repository, with the test virtualenv, which
    has tonic): target/release/evshmd (else target/debug/evshmd), a temporary
    directory, and target/bench-results/json/; it also prints the report's section.
    ``EVSHM_BENCH_ONLY=VoxelGrid,TimeSurface`` times only the transforms whose names
    start so (to look at a few; the report's section then has fewer rows).
Writes ``transforms.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import evshm
from common import Evshmd, load_plan, write_result
from evshm import transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
#: The command that runs this bench alone.
ALONE = ("source scripts/venv.sh && PYTHONPATH=python_client/src "
         "\"$PY\" benches/python/transforms.py")
WINDOW_US = 50_000
MIN_CALLS = 5
MAX_CALLS = 200
SECONDS_PER_SIDE = 1.0

Pair = Tuple[str, str, Callable[[evshm.Events], Any], Callable[[np.ndarray], Any], bool]


def pairs(events: evshm.Events) -> List[Pair]:
    """(evshm's, tonic's, evshm's transform, tonic's, outputs comparable) for a window."""
    import tonic.transforms as tt

    w, h = events.width, events.height
    sensor = (w, h, 2)
    half = (w // 2, h // 2)
    return [
        ("RandomFlipLR(p=1)", "RandomFlipLR(p=1)", T.RandomFlipLR(p=1.0),
         tt.RandomFlipLR(sensor, p=1.0), True),
        ("RandomFlipUD(p=1)", "RandomFlipUD(p=1)", T.RandomFlipUD(p=1.0),
         tt.RandomFlipUD(sensor, p=1.0), True),
        ("RandomCrop(W/2, H/2)", "RandomCrop", T.RandomCrop(half, seed=0),
         tt.RandomCrop(sensor, half), False),
        ("CenterCrop(W/2, H/2)", "CenterCrop", T.CenterCrop(half), tt.CenterCrop(sensor, half),
         True),
        ("Resize(W/2, H/2)", "Downsample(target_size=)", T.Resize(half),
         tt.Downsample(sensor_size=sensor, target_size=half), True),
        ("Downsample(0.25)", "Downsample(spatial_factor=0.25)", T.Downsample(0.25),
         tt.Downsample(spatial_factor=0.25), True),
        ("TimeJitter(100)", "TimeJitter(std=100)", T.TimeJitter(100.0, seed=0),
         tt.TimeJitter(std=100.0), False),
        ("DropEvents(0.3)", "DropEvent(p=0.3)", T.DropEvents(0.3, seed=0),
         tt.DropEvent(p=0.3), False),
        ("TimeReversal(p=1)", "RandomTimeReversal(p=1)", T.TimeReversal(p=1.0),
         tt.RandomTimeReversal(p=1.0), True),
        ("Denoise(10 ms)", "Denoise(filter_time=10 ms)", T.Denoise(10_000),
         tt.Denoise(filter_time=10_000), True),
        ("Refractory(1 ms)", "RefractoryPeriod(delta=1 ms)", T.Refractory(1_000),
         tt.RefractoryPeriod(delta=1_000), True),
        ("HotPixels(1000 Hz)", "DropPixel(hot_pixel_frequency=1000)", T.HotPixels(1_000),
         tt.DropPixel(hot_pixel_frequency=1_000), True),
        ("EventFrame('polarity')", "ToFrame (one slice)", T.EventFrame("polarity", dtype=np.int16),
         tt.ToFrame(sensor, event_count=len(events)), True),
        ("EventHistogram()", "ToFrame (one slice)", T.EventHistogram(np.int16),
         tt.ToFrame(sensor, event_count=len(events)), True),
        ("VoxelGrid(5)", "ToVoxelGrid(n_time_bins=5)", T.VoxelGrid(5),
         tt.ToVoxelGrid(sensor, n_time_bins=5), False),
        ("TimeSurface(tau=5 ms)", "ToTimesurface(dt=50 ms, tau=5 ms)",
         T.TimeSurface(5_000.0, time_range="window"),
         tt.ToTimesurface(sensor, dt=WINDOW_US, tau=5_000.0), False),
    ]


def agree(name: str, ours: Any, theirs: Any, events: evshm.Events) -> bool:
    """Whether evshm's output is tonic's (events, or the arrays of one slice)."""
    if isinstance(ours, evshm.Events):
        got = evshm.Events.from_structured(theirs, 1, 1)
        if name.startswith("TimeReversal"):  # tonic's times start at 0
            got = evshm.Events(got.t + int(events.t.min()), got.x, got.y, got.p, 1, 1)
        return all(np.array_equal(getattr(ours, k), getattr(got, k)) for k in "txyp")
    return bool(np.array_equal(ours, theirs[0]))


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(ours: Callable[[], Any], theirs: Callable[[], Any],
            prepare: Callable[[], None]) -> Dict[str, Any]:
    """Alternate calls of both until each side had its share of the time; medians.
    ``prepare`` runs before each of tonic's calls, off the clock."""
    mine: List[float] = []
    tonic: List[float] = []
    spent = 0.0
    while len(mine) < MIN_CALLS or (spent < SECONDS_PER_SIDE and len(mine) < MAX_CALLS):
        if len(mine) % 2:  # who goes first alternates too
            prepare()
            tonic.append(timed(theirs))
            mine.append(timed(ours))
        else:
            mine.append(timed(ours))
            prepare()
            tonic.append(timed(theirs))
        spent = max(sum(mine), sum(tonic))
    return {"evshm_us": statistics.median(mine) * 1e6,
            "tonic_us": statistics.median(tonic) * 1e6, "calls": len(mine)}


def bench_window(events: evshm.Events) -> List[Dict[str, Any]]:
    structured = events.as_structured()
    # ToVoxelGrid's polarity is an integer (tonic maps 0 to -1 in place, which a bool
    # field cannot hold), put back before each call.
    polarity = events.p.copy()
    integer_p = events.as_structured([("x", "<i2"), ("y", "<i2"), ("t", "<i8"),
                                      ("p", "<i1")])
    out = []
    only = os.environ.get("EVSHM_BENCH_ONLY")
    for name, tonic_name, ours, theirs, comparable in pairs(events):
        if only and not name.startswith(tuple(only.split(","))):
            continue
        prepare: Callable[[], None] = lambda: None
        if name.startswith("VoxelGrid"):
            given = integer_p
            prepare = lambda: np.copyto(integer_p["p"], polarity)  # noqa: E731
        elif name.startswith("TimeSurface"):
            # tonic slices with searchsorted on t: it needs the events in time order.
            given = structured[np.argsort(structured["t"], kind="stable")]
        else:
            given = structured
        call_theirs: Callable[[], Any] = lambda f=theirs, s=given: f(s)  # noqa: E731
        mine = events
        if name.startswith("HotPixels"):
            # tonic's rate is over the last event's time less the first's; evshm's over
            # the window, when the events have one: give it tonic's.
            mine = dataclasses.replace(events, t0=int(events.t[0]), t1=int(events.t[-1]))
        elif name.startswith("TimeReversal"):
            # tonic mirrors times within the events' span; evshm within the window when
            # the events have one: give it none.
            mine = dataclasses.replace(events, t0=None, t1=None)
        if name.startswith("Denoise") and events.t.min() < 10_000:
            comparable = False  # tonic keeps events before filter_time (Denoise's doc)
        if name.startswith("Refractory") and events.t.min() <= 0:
            comparable = False  # tonic drops a first event at t <= 0 (Refractory's doc)
        same: Optional[bool] = None
        if comparable:
            same = agree(name, ours(mine), call_theirs(), events)
            if not same:
                raise SystemExit(f"transforms.py: {name} differs from tonic's {tonic_name}")
        result = measure(lambda f=ours, e=mine: f(e), call_theirs, prepare)
        result.update(transform=name, tonic=tonic_name, agrees=same)
        print(f"  {name:<24} evshm {result['evshm_us'] / 1e3:9.3f} ms  tonic "
              f"{result['tonic_us'] / 1e3:9.3f} ms  {result['tonic_us'] / result['evshm_us']:7.1f}x"
              f"  ({result['calls']} calls)", flush=True)
        out.append(result)
    return out


def real_data() -> str:
    return os.environ.get("EVSHM_REAL_DATA") or os.path.join(os.path.dirname(REPO), "shared",
                                                             "data", "real")


def run(evshmd: str, work: str) -> Dict[str, Any]:
    import tonic

    folder = real_data()
    with open(os.path.join(folder, "MANIFEST.json")) as f:
        manifest = json.load(f)
    root = os.path.join(work, "transforms-root")
    os.makedirs(root, exist_ok=True)
    windows = []
    with Evshmd(evshmd, root, os.path.join(work, "transforms.sock")) as daemon:
        for entry in manifest:
            shutil.copyfile(os.path.join(folder, entry["file"]), os.path.join(root, entry["file"]))
        with evshm.Client(daemon.socket) as client:
            for entry in manifest:
                rec = client.open(entry["file"])
                bounds = rec.time_bounds
                assert bounds is not None
                window = rec.time_window(bounds[0], bounds[0] + WINDOW_US)
                events = window.events()
                as_structured = statistics.median(timed(events.as_structured)
                                                  for _ in range(20)) * 1e6
                print(f"{entry['file']}: {len(events):,} events in 50 ms, "
                      f"{events.width}x{events.height}", flush=True)
                windows.append({"file": entry["file"], "events": len(events),
                                "width": events.width, "height": events.height,
                                "stated_size": entry["width"] is not None,
                                "as_structured_us": as_structured,
                                "results": bench_window(events)})
                del events, window
                rec.release()
    return {"window_us": WINDOW_US, "windows": windows,
            "versions": {"tonic": tonic.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "cpu": platform.processor() or platform.machine()}


def section(result: Dict[str, Any], produced_by: str) -> str:
    """The report's section (Markdown) for ``result``: shared with report.py."""
    windows = result["windows"]
    names = [r["transform"] for r in windows[0]["results"]]
    lines = [
        "## 7. Transforms against tonic", "",
        "Each transform of `evshm.transforms` that tonic also has, and tonic's (tonic "
        f"{result['versions']['tonic']}, numpy {result['versions']['numpy']}), on the same "
        "first 50 ms window of each real recording (the files of `shared/data/real`, "
        "served by evshmd): evshm's transform gets the window's `Events` (read-only views "
        "of the extent), tonic's the same events as its structured array, made before the "
        "clock starts (`as_structured()`, its cost, is in the table's head). Same "
        "parameters; random ones forced to act (`p=1`). The calls alternate between the "
        "two, and each figure is the median of at least 5 calls (up to 200, or about 1 s "
        "a side). Outputs were compared first and are equal wherever both compute the same "
        "thing (all but jitter, drop and crop, which draw random numbers, tonic's voxel "
        "grid, normalised over `B` bins instead of `B - 1`, and the time surface, whose "
        "reference time differs; the tests hold each to a reference). *×* = tonic's time / "
        "evshm's: how many times faster evshm is.", "",
    ]
    header = ["evshm", "tonic's"]
    for w in windows:
        size = f"{w['width']}×{w['height']}" + ("" if w["stated_size"] else " (assumed)")
        header.append(f"{w['file']}<br>{w['events']:,} events, {size}<br>"
                      f"as_structured {us(w['as_structured_us'])}")
    rows = []
    for i, name in enumerate(names):
        tonic_name = windows[0]["results"][i]["tonic"]
        cells = [f"`{name}`", f"`{tonic_name}`"]
        for w in windows:
            r = w["results"][i]
            cells.append(f"{us(r['evshm_us'])} vs {us(r['tonic_us'])} "
                         f"(**{r['tonic_us'] / r['evshm_us']:,.1f}×**)")
        rows.append(cells)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| --- | --- | " + " | ".join("---:" for _ in windows) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    ratio, name, file = slowest(result)
    verdict = ("evshm's is the faster everywhere" if ratio >= 1
               else "**there evshm's is the slower**")
    lines += ["", f"The smallest ratio is {ratio:.2f}× (`{name}` on {file}): {verdict}. "
              "Small windows (the last two) are mostly fixed costs of a few dozen numpy "
              "calls each. On the large sensor, new memory weighs: on this virtual machine "
              "a first touch of a page costs several times a second one, and both sides "
              "share one process's allocator, so that each one's allocations decide "
              "whether the other's memory is reused or new. evshm's voxel grid keeps its "
              "scratch arrays between calls (per thread) and, on a dense window, writes "
              "each value of its float32 output (18 MB at 1280×720) once; tonic's float64 "
              "output (37 MB) is a new mapping on every call, faulted in afresh. "
              + produced_by, ""]
    return "\n".join(lines)


def slowest(result: Dict[str, Any]) -> Tuple[float, str, str]:
    """The smallest ratio tonic / evshm, its transform and its recording."""
    return min((r["tonic_us"] / r["evshm_us"], r["transform"], w["file"])
               for w in result["windows"] for r in w["results"])


def us(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} ms" if value < 1e5 else f"{value / 1e3:.0f} ms"
    return f"{value:.0f} µs" if value >= 10 else f"{value:.1f} µs"


def target_row(result: Dict[str, Any]) -> List[str]:
    """The report's row of its targets table."""
    ratio, name, file = slowest(result)
    return ["each transform that tonic also has at least as fast as tonic's, on the same "
            "50 ms windows of real recordings",
            f"smallest ratio tonic / evshm {ratio:.2f}× (`{name}`, {file}); see section 7",
            "**met**" if ratio >= 1 else "**missed**"]


def main() -> None:
    started = time.time()
    if len(sys.argv) > 1:
        plan = load_plan(sys.argv[1])
        result = run(plan["evshmd"], plan["work"])
        write_result(plan, "transforms.json", result)
        return
    release = os.path.join(REPO, "target", "release", "evshmd")
    evshmd = release if os.path.exists(release) else os.path.join(REPO, "target", "debug",
                                                                  "evshmd")
    out_dir = os.path.join(REPO, "target", "bench-results", "json")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="evshm-transforms-")
    try:
        result = run(evshmd, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(out_dir, "transforms.json"), "w") as f:
        json.dump(result, f, indent=2)
    took = time.time() - started
    print()
    print(section(result, f"Produced by `{ALONE}` ({took:.0f} s)."))
    print("| " + " | ".join(target_row(result)) + " |")


if __name__ == "__main__":
    main()
