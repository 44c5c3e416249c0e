"""The ``fake`` fixture: the in-process fake evshmd of fakes.py in place of the socket."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import FakeDaemon  # first: it puts src/ on the path

# isort: split
from evshm import _client


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(tmp_path)
    monkeypatch.setattr(_client, "_connect", daemon.connect)
    yield daemon
    gc.collect()
    daemon.close_memfd()
