"""Text exports through the Python client: header-less files in any column order, and
malformed lines reported as ``skipped``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Daemon

#: Events as ``(t, x, y, p)``: times that rise with repeats, coordinates scattered.
EVENTS = [(1_000 + i // 3, i * 7919 % 1280, i * 104729 % 720, i % 2) for i in range(5_000)]


def csv_lines(order: str) -> list[str]:
    """``EVENTS`` as lines of a header-less export, columns in ``order`` (of ``txyp``)."""
    return [",".join(str(event["txyp".index(c)]) for c in order) for event in EVENTS]


def write(root: Path, name: str, lines: list[str]) -> str:
    (root / name).write_text("".join(line + "\n" for line in lines))
    return name


def columns(table_dict: dict[str, list[int]]) -> list[tuple[int, int, int, int]]:
    return list(zip(table_dict["t"], table_dict["x"], table_dict["y"], table_dict["p"]))


@pytest.mark.parametrize("order", ["txyp", "xytp", "ptxy", "xypt"])
def test_a_headerless_export_decodes_every_line_in_any_order(daemon: Daemon, order: str):
    name = write(daemon.root, f"{order}.csv", csv_lines(order))
    with daemon.client() as client:
        rec = client.open(name)
        assert (rec.format, rec.rows, rec.skipped, rec.dropped) == ("text", len(EVENTS), 0, 0)
        assert columns(rec.table.to_pydict()) == EVENTS


def test_malformed_lines_are_reported_as_skipped(daemon: Daemon):
    bad = ["nope", "1,2,3", "1,2,3,1,5", "1,2,3,7", "1,-2,3,1", "1,2.5,3,1", "9" * 300]
    lines = ["# a comment, not an event", ""]
    for i, line in enumerate(csv_lines("txyp")):
        lines.append(line)
        # Past the lines detection looks at.
        if i >= 100 and i % 500 == 0 and i // 500 <= len(bad):
            lines.append(bad[i // 500 - 1])
    name = write(daemon.root, "bad.csv", lines)
    with daemon.client() as client:
        rec = client.open(name)
        assert (rec.rows, rec.skipped, rec.dropped) == (len(EVENTS), len(bad), 0)
        assert columns(rec.table.to_pydict()) == EVENTS
        window = client.open(name, window=(EVENTS[1_000][0], EVENTS[2_000][0]))
        assert window.rows > 0
        assert window.skipped == len(bad), "a text file is one chunk: a window reports it all"
