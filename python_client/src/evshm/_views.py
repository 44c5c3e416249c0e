"""numpy, polars and torch views of a table read from the arenas.

A recording's table has, per column, one Arrow chunk for each chunk its rows come from
(see ``_arena``). Views are zero-copy as long as that is possible:

- numpy arrays and torch tensors are contiguous, so a column whose rows lie in one chunk
  is viewed in place (its data pointer lies inside the arena's mapping), and a column
  whose rows span several chunks is concatenated into new memory first: one copy of
  those rows, the only way to make one contiguous array of them;
- a polars frame holds chunked columns itself, so it is always built in place
  (``rechunk=False``), with one polars chunk per Arrow chunk.

A view in place keeps, through Arrow's buffer ownership, a reference to the open's
``Hold`` object, so the daemon's lease (see ``_client``) and the mappings live exactly as
long as some view does; a concatenated column owns its memory and holds neither.

torch: ``torch.from_numpy`` on a read-only array warns that "PyTorch does not support
non-writable tensors". The tensors are made through DLPack instead (pyarrow arrays export
it since pyarrow 15), which neither copies nor warns. The pages are still mapped
read-only: an in-place write to such a tensor kills the process with SIGSEGV, so
``.clone()`` a tensor before modifying it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._optional import require

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch

__all__ = ["column_array", "numpy_columns", "polars_frame", "torch_columns"]


def column_array(table: pa.Table, name: str) -> pa.Array[Any]:
    """Column ``name`` as one Arrow array: its only non-empty chunk (no copy), an empty
    array, or the concatenation of its chunks (a copy) when its rows span several."""
    column = table.column(name)
    chunks = [chunk for chunk in column.chunks if len(chunk)]
    if len(chunks) == 1:
        return chunks[0]
    if not chunks:
        empty: pa.Array[Any] = pa.array([], type=column.type)  # stubs: Any for this type
        return empty
    return pa.concat_arrays(chunks)


def numpy_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """One read-only numpy array per column (see the module docstring for when the
    arrays are views of the arenas and when copies)."""
    require("numpy", "numpy", "Recording.numpy()")
    arrays: dict[str, Any] = {}
    for name in table.column_names:
        array = column_array(table, name).to_numpy(zero_copy_only=True)
        # Read-only from Arrow already; a concatenated copy is made read-only too, so
        # that code never comes to depend on how many chunks a window spans.
        array.flags.writeable = False
        arrays[name] = array
    return arrays


def polars_frame(table: pa.Table) -> pl.DataFrame:
    """A polars DataFrame over the table's buffers (``rechunk=False``: no copy)."""
    polars = require("polars", "polars", "Recording.polars()")
    frame: pl.DataFrame = polars.from_arrow(table, rechunk=False)
    return frame


def torch_columns(table: pa.Table) -> dict[str, torch.Tensor]:
    """One CPU tensor per column, made through DLPack (views of the arenas or copies,
    like :func:`numpy_columns`)."""
    torch_module = require("torch", "torch", "Recording.torch()")
    tensors: dict[str, Any] = {}
    for name in table.column_names:
        array = column_array(table, name)
        if not hasattr(array, "__dlpack__"):
            raise ImportError("Recording.torch() needs pyarrow >= 15 (DLPack export): "
                              "pip install 'evshm[torch]'")
        tensors[name] = torch_module.from_dlpack(array)
    return tensors
