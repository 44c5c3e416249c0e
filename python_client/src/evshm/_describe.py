"""What ``python -m evshm open`` prints of an opened recording: lines for people, or an
object for ``--json``."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from ._recording import Recording

__all__ = ["describe", "open_json"]


def _line(label: str, value: str) -> None:
    print(f"{label:<10}{value}")


def _time_range(rec: Recording) -> tuple[int, int] | None:
    table = rec.table
    if "t" not in table.column_names or not table.num_rows:
        return None
    bounds = pc.min_max(table.column("t"))
    return bounds["min"].as_py(), bounds["max"].as_py()


def describe(rec: Recording, request_s: float, attach_s: float) -> None:
    """Print what was opened, where it lies and how long it took."""
    geometry = f" {rec.width}x{rec.height}" if rec.width is not None else ""
    _line("path", rec.path)
    _line("format", f"{rec.format}{geometry}")
    _line("rows", str(rec.rows))
    if rec.window is not None:
        _line("window", f"[{rec.window[0]}, {rec.window[1]}) us")
    _line("extents", _extents(rec))
    _line("schema", ", ".join(f"{field.name}: {field.type}" for field in rec.table.schema))
    times = _time_range(rec)
    _line("time", "(no events)" if times is None else f"{times[0]} .. {times[1]} us")
    _line("request", f"{request_s * 1e3:.3f} ms (round trip, includes the decode "
                     "when not cached)")
    _line("attach", f"{attach_s * 1e3:.3f} ms (map + Arrow IPC open, no copy)")


def _extents(rec: Recording) -> str:
    """Where the chunks' extents are, their total size, and whether they were cached."""
    extents = [chunk.extent for chunk in rec.chunks]
    arenas = sorted({extent.arena for extent in extents})
    where = "none" if not extents else (
        f"{len(extents)}, one per chunk, in {len(arenas)} arena{'s' * (len(arenas) != 1)}")
    state = "cached" if rec.cached else "decoded now"
    return f"{where} ({sum(e.size for e in extents)} bytes, {state})"


def open_json(rec: Recording, request_s: float, attach_s: float) -> dict[str, Any]:
    """The same as :func:`describe`, as one JSON object."""
    times = _time_range(rec)
    return {
        "path": rec.path,
        "table": rec.table_name,
        "format": rec.format,
        "width": rec.width,
        "height": rec.height,
        "rows": rec.rows,
        "window": None if rec.window is None else list(rec.window),
        "chunks": [{"index": chunk.index, "extent": {"arena": chunk.extent.arena,
                                                     "offset": chunk.extent.offset,
                                                     "size": chunk.extent.size},
                    "rows": chunk.rows, "start": chunk.start, "end": chunk.end}
                   for chunk in rec.chunks],
        "schema": [{"name": field.name, "type": str(field.type)}
                   for field in rec.table.schema],
        "time": None if times is None else list(times),
        "cached": rec.cached,
        "dropped": rec.dropped,
        "skipped": rec.skipped,
        "request_ms": request_s * 1e3,
        "attach_ms": attach_s * 1e3,
    }
