"""numpy, polars and torch views of a table read from a segment, without copying.

Every function here returns objects whose data pointers lie inside the segment mapping.
Each view keeps, through Arrow's buffer ownership, a reference to the ``mmap`` object, so
the mapping (and the daemon's lease, see ``_client``) lives exactly as long as some view
does. A column must therefore be a single Arrow chunk (the daemon writes one record
batch per segment); anything else would need a copy and is refused.

torch: ``torch.from_numpy`` on a read-only array warns that "PyTorch does not support
non-writable tensors". The tensors are made through DLPack instead (pyarrow arrays export
it since pyarrow 15), which neither copies nor warns. The pages are still mapped
read-only: an in-place write to such a tensor kills the process with SIGSEGV, so
``.clone()`` a tensor before modifying it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

import pyarrow as pa

from ._errors import SegmentError
from ._optional import require

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch

__all__ = ["single_chunk", "numpy_columns", "polars_frame", "torch_columns"]


def single_chunk(table: pa.Table, name: str) -> pa.Array:
    """The one chunk of column ``name`` (an empty array for a column with no chunk)."""
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0)
    if column.num_chunks == 0:
        return pa.array([], type=column.type)
    raise SegmentError(
        f"column {name!r} has {column.num_chunks} chunks; a zero-copy view needs one "
        "(evshmd writes one record batch per segment)"
    )


def numpy_columns(table: pa.Table) -> "Dict[str, np.ndarray]":
    """One read-only numpy array per column, over the table's own buffers."""
    require("numpy", "numpy", "Recording.numpy()")
    arrays: Dict[str, Any] = {}
    for name in table.column_names:
        array = single_chunk(table, name).to_numpy(zero_copy_only=True)
        array.flags.writeable = False  # already so from Arrow; never let it be otherwise
        arrays[name] = array
    return arrays


def polars_frame(table: pa.Table) -> "pl.DataFrame":
    """A polars DataFrame over the table's buffers (``rechunk=False``: no copy)."""
    polars = require("polars", "polars", "Recording.polars()")
    for name in table.column_names:
        single_chunk(table, name)  # refuse what polars could only import by copying
    frame: "pl.DataFrame" = polars.from_arrow(table, rechunk=False)
    return frame


def torch_columns(table: pa.Table) -> "Dict[str, torch.Tensor]":
    """One CPU tensor per column over the table's buffers, made through DLPack."""
    torch_module = require("torch", "torch", "Recording.torch()")
    tensors: Dict[str, Any] = {}
    for name in table.column_names:
        chunk = single_chunk(table, name)
        if not hasattr(chunk, "__dlpack__"):
            raise ImportError("Recording.torch() needs pyarrow >= 15 (DLPack export): "
                              "pip install 'evshm[torch]'")
        tensors[name] = torch_module.from_dlpack(chunk)
    return tensors
