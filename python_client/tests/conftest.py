"""The ``fake`` fixture: the in-process fake evshmd of fakes.py in place of the socket."""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import FakeDaemon  # first: it puts src/ on the path

# isort: split
from evshm import _client

#: The optional dependencies whose tests skip without them, except in CI (``$CI`` set, not
#: ``false`` or ``0``), where scripts/venv.sh installs them: there a missing or broken one
#: stops the run here, instead of passing with its tests skipped.
REQUIRED_IN_CI = ("numpy", "polars", "torch")


def _require_in_ci() -> None:
    if os.environ.get("CI", "").lower() in ("", "0", "false"):
        return
    for module in REQUIRED_IN_CI:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"CI is set, and {module} cannot be imported ({exc}): its tests "
                              "would be skipped. CI installs it with scripts/venv.sh "
                              "(scripts/requirements-test.txt).") from exc


_require_in_ci()


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(tmp_path)
    monkeypatch.setattr(_client, "_connect", daemon.connect)
    yield daemon
    gc.collect()
    daemon.close_memfds()
