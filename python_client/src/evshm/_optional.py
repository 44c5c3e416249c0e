"""Importing the optional dependencies (numpy, polars, torch) with a useful error.

The core client needs only pyarrow. Each view or helper that needs more imports it on
first use through :func:`require`, which names the extra to install when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` naming ``what`` needs it and
    the ``pip install 'evshm[extra]'`` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {module}, which is not installed: "
            f"pip install 'evshm[{extra}]' (or pip install {module})"
        ) from exc
