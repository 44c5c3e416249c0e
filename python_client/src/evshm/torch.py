"""PyTorch datasets over recordings served by evshmd: windows of events, zero-copy.

:class:`EventWindowDataset` (map-style) and :class:`EventWindowIterableDataset` cut the
recordings into time windows (``duration=`` microseconds) or windows of a fixed number of
events (``events=``); item ``i`` is window ``i`` in recording order. Cutting happens once,
when the dataset is built: that first open of each recording is also where evshmd decodes
it (once, for every process). Or they take the windows themselves, ``windows=[(path,
t_start, t_end), ...]`` (say 50 ms around each label): then nothing is opened whole, each
item is the daemon's window (only the chunks it touches are decoded and mapped), and a
pass over recordings larger than evshmd's memory budget stays within it.

In ``DataLoader`` workers, under ``fork`` or ``spawn``, each worker process connects to
the daemon on its own (on first use) and maps the same arenas: the events are in
RAM once however many workers read them. Nothing large is pickled: a spawned worker gets
the socket path and the list of windows, never a connection or a mapping. A forked
worker notices the new pid and drops what it inherited without touching the parent's
connection or leases. A cut window's recording stays attached in the worker; a given
window is released as soon as nothing of the item points into it.

What an item is:

- without ``transform``: a dict of CPU tensors ``t, x, y, p`` over the shared memory
  (zero-copy, read-only pages: ``.clone()`` before writing in place; a window that spans
  two of the daemon's chunks is the exception, copied into new memory, see
  :attr:`evshm.Recording.zero_copy`). Windows differ in length, so batch them with
  :func:`collate_events` (or ``batch_size=None``);
- with ``transform``: whatever ``transform(events)`` returns, where ``events`` is an
  :class:`~evshm.Events` of read-only numpy views (e.g. a
  :class:`~evshm.transforms.Compose` ending in :class:`~evshm.transforms.VoxelGrid`), or
  with ``structured=True`` the same events as tonic's structured array, for tonic's
  transforms; a writable numpy array result becomes a tensor without a copy;
- with ``target``: the pair ``(input, target(path, t_start, t_end))`` (see
  :mod:`evshm.targets`).

A representation has the shape of the sensor, so windows of recordings of different
sensor sizes cannot be batched together: with a ``transform``, the datasets refuse such
recordings when they are built, naming the sizes, unless ``size=(width, height)`` is given,
which resizes every window's events to that size first (:func:`evshm.transforms.resize`).

What crosses from a worker to the training process is the item (or the collated batch),
which DataLoader copies into its own shared memory: compute the representation in the
worker (``transform``) so that only it crosses, not the raw events.

Needs torch, numpy and pyarrow >= 15 (``pip install 'evshm[torch]'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable

from ._optional import require

require("torch", "torch", "evshm.torch")
require("numpy", "numpy", "evshm.torch")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import (  # noqa: E402
    Dataset,
    IterableDataset,
    default_collate,
    get_worker_info,
)

from ._client import PathArg  # noqa: E402
from ._dataset import EventWindows, WindowArg  # noqa: E402
from ._recording import Recording  # noqa: E402
from .transforms import resize  # noqa: E402
from .transforms._base import check_size  # noqa: E402

__all__ = ["EventWindowDataset", "EventWindowIterableDataset", "collate_events",
           "collate_detection"]

#: Called on each window's :class:`~evshm.Events` (or, with ``structured=True``, on its
#: structured array).
Transform = Callable[[Any], Any]
#: Called as ``target(path, t_start, t_end)`` for each window.
Target = Callable[[str, int, int], Any]


class _WindowItems:
    """What both datasets share: the windows, the transform, and how an item is made."""

    def __init__(self, paths: Sequence[PathArg] | None, *, duration: int | None,
                 events: int | None, stride: int | None, drop_last: bool,
                 windows: Iterable[WindowArg] | None,
                 transform: Transform | None, target: Target | None,
                 size: tuple[int, int] | None, structured: bool,
                 socket_path: str | os.PathLike[str] | None,
                 timeout: float | None) -> None:
        if structured and transform is None:
            raise ValueError("structured=True gives the transform a structured array: "
                             "it needs a transform")
        #: The windows (a torch-free :class:`~evshm.EventWindows`).
        self.windows = EventWindows(paths, duration=duration, events=events,
                                    stride=stride, drop_last=drop_last, windows=windows,
                                    socket_path=socket_path, timeout=timeout)
        #: Applied to each window's :class:`~evshm.Events`, in the worker.
        self.transform = transform
        #: Whether :attr:`transform` gets tonic's structured array instead.
        self.structured = structured
        #: Called as ``target(path, t_start, t_end)`` for each item, in the worker.
        self.target = target
        #: The sensor size every window is resized to, or ``None``.
        self.size = None if size is None else check_size(size, "size")
        fit = getattr(target, "fit", None)
        if callable(fit):
            fit(self.paths)
        if transform is not None and self.size is None:
            _check_one_size(self.windows.sensor_sizes())

    @property
    def paths(self) -> list[str]:
        """The recordings, in the order their windows are numbered."""
        return self.windows.paths

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> tuple[str, int, int]:
        """``(path, start, stop)`` of item ``index``: microseconds ``[start, stop)`` for
        time windows, rows ``start:stop`` for event-count windows (``stop`` may pass the
        recording's last row: its final window is then shorter)."""
        return self.windows.window(index)

    def recording(self, path: str) -> Recording:
        """The whole recording ``path`` as this process attached it (on first use; kept
        until :meth:`close`)."""
        return self.windows.recording(path)

    def close(self) -> None:
        """Release this process's recordings and close its connection. Idempotent;
        items can still be read afterwards (they attach again)."""
        self.windows.close()

    def _item(self, index: int) -> Any:
        # Nothing of a given window is kept here: its lease ends with `view`, or with
        # the item when the item is the window's zero-copy tensors.
        view = self.windows[index]
        data = self._input(view)
        if self.target is None:
            return data
        path, start, stop = self.windows.window(index)
        if not self.windows.by_time:  # a count window: the time its events span
            bounds = view.time_bounds
            assert bounds is not None, "a count window holds at least one event"
            start, stop = bounds[0], bounds[1] + 1
        return data, self.target(path, start, stop)

    def _input(self, view: Recording) -> Any:
        resized = self.size is not None and (view.width, view.height) != self.size
        if self.transform is None:
            tensors = view.torch()
            if resized:
                assert self.size is not None
                moved = resize(view.events(), *self.size)
                tensors["x"], tensors["y"] = torch.from_numpy(moved.x), torch.from_numpy(moved.y)
            return tensors
        events = view.events()
        if resized:
            assert self.size is not None
            events = resize(events, *self.size)
        out = self.transform(events.as_structured() if self.structured else events)
        if isinstance(out, np.ndarray) and out.flags.writeable:
            return torch.from_numpy(out)  # a fresh array: no copy, no warning
        return out


def _check_one_size(sizes: dict[str, tuple[int, int] | None]) -> None:
    """Refuse recordings of several sensor sizes (or none stated), naming them: a
    representation's shape follows the sensor, and default_collate would fail to stack
    them, in a worker, mid-epoch."""
    by_size: dict[tuple[int, int] | None, list[str]] = {}
    for path, size in sizes.items():
        by_size.setdefault(size, []).append(path)
    if len(by_size) <= 1 and None not in by_size:
        return

    def named(size: tuple[int, int] | None, paths: list[str]) -> str:
        what = "no stated size" if size is None else f"{size[0]}x{size[1]}"
        more = f" and {len(paths) - 2} more" if len(paths) > 2 else ""
        return f"{what} ({', '.join(paths[:2])}{more})"

    found = "; ".join(named(size, paths) for size, paths in by_size.items())
    raise ValueError(f"the recordings are of {len(by_size)} sensor sizes: {found}. A "
                     "transform's output would differ in shape between them: give "
                     "size=(width, height) to resize every window to one size")


class EventWindowDataset(_WindowItems, Dataset[Any]):
    """A map-style dataset of event windows over recordings served by evshmd:
    item ``i`` is window ``i`` (see :class:`~evshm.EventWindows`).

    Args:
        paths: recordings to use, as :meth:`evshm.Client.open` takes them; default every
            recording the daemon lists.
        duration: window length in microseconds (time windows ``[s, s + duration)``,
            see :meth:`evshm.Recording.time_window` for exactly which events that is).
        events: window length in events (fixed-count windows). Give exactly one.
        stride: distance between window starts (microseconds or events); default the
            window length (back-to-back windows).
        drop_last: drop each recording's shorter final window.
        windows: instead of ``paths``, ``duration``/``events``, ``stride`` and
            ``drop_last``: the windows themselves, ``(path, t_start, t_end)`` in integer
            microseconds, item ``i`` being window ``i`` (checked here: integers,
            ``t_start <= t_end``).
        transform: applied to each window's :class:`~evshm.Events` in the worker (see
            :mod:`evshm.transforms`), any callable; must be picklable for ``spawn``
            workers. Without it, an item is a dict of tensors ``t, x, y, p``, zero-copy
            unless the window spans two of the daemon's chunks. With it, recordings of
            different sensor sizes are refused here unless ``size`` is given.
        structured: give the transform the events as tonic's structured array
            (:meth:`evshm.Events.as_structured`) instead of an :class:`~evshm.Events`,
            so that ``tonic.transforms.Compose([...])`` works unchanged.
        target: called as ``target(path, t_start, t_end)`` in the worker; items are
            then ``(input, target)`` (see :mod:`evshm.targets`; ``[t_start, t_end)`` is
            the time window, or for a count window the span of its events, last
            timestamp + 1). If it has a ``fit`` method, that is called here with
            :attr:`paths` (:class:`~evshm.targets.FolderClass` learns its classes).
        size: ``(width, height)``: resize every window's events to this sensor size
            (:func:`evshm.transforms.resize`) before the transform (without one, the
            tensors ``x`` and ``y`` are resized copies); how recordings of different
            sensors are mixed.
        socket_path, timeout: where the daemon is, and the socket timeout (seconds).

    Building the dataset with ``duration=`` or ``events=`` opens each recording once in
    this process (the daemon decodes what it has not decoded yet) to list its windows,
    then releases it; items are sliced from the whole recording, attached by each
    process on first use and kept. With ``windows=`` nothing is opened whole: each item
    is ``client.open(path, window=(t_start, t_end))``, whose lease ends with the item's
    last zero-copy view, so a recording larger than evshmd's memory budget can be read.
    Either way items are read over each process's own connection, opened on first use.

    Across ranks (``torchrun``, DDP), give the ``DataLoader`` a
    ``torch.utils.data.DistributedSampler(dataset)``: each rank reads its share of the
    items, through the evshmd of its own node (one daemon per node over the shared
    dataset directory; see the README).
    """

    def __init__(self, paths: Sequence[PathArg] | None = None, *,
                 duration: int | None = None, events: int | None = None,
                 stride: int | None = None, drop_last: bool = False,
                 windows: Iterable[WindowArg] | None = None,
                 transform: Transform | None = None, target: Target | None = None,
                 size: tuple[int, int] | None = None, structured: bool = False,
                 socket_path: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        _WindowItems.__init__(self, paths, duration=duration, events=events,
                              stride=stride, drop_last=drop_last, windows=windows,
                              transform=transform, target=target, size=size,
                              structured=structured, socket_path=socket_path,
                              timeout=timeout)

    def __getitem__(self, index: int) -> Any:
        return self._item(index)


class EventWindowIterableDataset(_WindowItems, IterableDataset[Any]):
    """An iterable dataset of the same windows as :class:`EventWindowDataset`.

    Takes the same arguments (``windows=``, ``target=``, ``size=`` included), plus
    ``shuffle`` (yield the
    windows in a random order drawn from ``seed + epoch``), ``seed``, and ``rank`` /
    ``world_size`` for training across processes or nodes. The windows are split
    among all ``world_size * num_workers`` readers: worker ``w`` of rank ``r`` yields
    the windows whose position in the order is congruent to ``r * num_workers + w``
    modulo that number, so every window is yielded exactly once per epoch across all
    ranks and workers (every rank draws the same order from ``seed + epoch``; shares
    differ by at most one window). ``rank`` and ``world_size`` default to those of
    ``torch.distributed`` when it is initialised where the dataset is made or iterated,
    else to the ``RANK`` and ``WORLD_SIZE`` variables ``torchrun`` sets, else to 0 and 1.
    Call :meth:`set_epoch` before each epoch to get a new order (workers use the epoch
    the dataset had when they started, so not with ``persistent_workers``).
    """

    def __init__(self, paths: Sequence[PathArg] | None = None, *,
                 duration: int | None = None, events: int | None = None,
                 stride: int | None = None, drop_last: bool = False,
                 windows: Iterable[WindowArg] | None = None,
                 transform: Transform | None = None, target: Target | None = None,
                 size: tuple[int, int] | None = None, structured: bool = False,
                 shuffle: bool = False, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None,
                 socket_path: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        _WindowItems.__init__(self, paths, duration=duration, events=events,
                              stride=stride, drop_last=drop_last, windows=windows,
                              transform=transform, target=target, size=size,
                              structured=structured, socket_path=socket_path,
                              timeout=timeout)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        if (rank is None) != (world_size is None):
            raise ValueError("rank and world_size go together")
        #: This process's rank and the number of ranks, or ``None`` for "as
        #: ``torch.distributed`` (or ``torchrun``'s variables) say where iterated".
        self.rank, self.world_size = rank, world_size
        if rank is None:
            found = _distributed_rank(from_env=False)
            if found is not None:
                self.rank, self.world_size = found
        if self.rank is not None and self.world_size is not None:
            _check_rank(self.rank, self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with ``seed``, draws the shuffled order."""
        self.epoch = epoch

    def order(self) -> np.ndarray:
        """The window indices this process yields, in order: its share of the epoch
        among all ranks and, in a worker, all workers of its rank."""
        indices = np.arange(len(self.windows))
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(indices)
        rank, world_size = (self.rank, self.world_size)
        if rank is None or world_size is None:
            rank, world_size = _distributed_rank(from_env=True) or (0, 1)
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return indices[rank * workers + worker::world_size * workers]

    def __iter__(self) -> Iterator[Any]:
        for index in self.order().tolist():
            yield self._item(index)


def _distributed_rank(*, from_env: bool) -> tuple[int, int] | None:
    """``(rank, world_size)`` of ``torch.distributed`` when initialised here, else (if
    ``from_env``) of ``torchrun``'s ``RANK`` and ``WORLD_SIZE``, else ``None``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if from_env and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        _check_rank(rank, world_size)
        return rank, world_size
    return None


def _check_rank(rank: int, world_size: int) -> None:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


def collate_events(batch: Sequence[Any]) -> Any:
    """Batch windows of raw events, of different lengths (items without ``transform``).

    Returns the columns ``t, x, y, p`` of all windows concatenated, and ``lengths``
    (int64, one per window); ``torch.repeat_interleave(torch.arange(len(lengths)),
    lengths)`` gives each event's window. Items ``(events, target)`` (datasets with
    ``target=``) give ``(events, targets)``, the targets batched by torch's
    ``default_collate`` (class indices become one int64 tensor); for targets of varying
    size, such as boxes, use :func:`collate_detection`. Concatenating copies the events
    once; in a DataLoader worker the result is allocated in shared memory (as
    ``default_collate`` does), so that sending it to the training process copies nothing
    more.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    if isinstance(batch[0], tuple):
        return (_concatenate([item[0] for item in batch]),
                default_collate([item[1] for item in batch]))
    return _concatenate(batch)


def collate_detection(batch: Sequence[Any]) -> Any:
    """Batch items whose targets differ in size from item to item, such as the boxes of
    :class:`evshm.targets.Boxes`: items ``(input, target)`` give ``(inputs, targets)``,
    where ``targets`` is the list of the items' targets, as they are, and ``inputs`` the
    inputs batched: windows of raw events (dicts of tensors) concatenated as
    :func:`collate_events` does, anything else (representations) stacked by
    ``default_collate``. Items without a target give the batched inputs alone.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    if not isinstance(batch[0], tuple):
        return _collate_inputs(list(batch))
    return _collate_inputs([item[0] for item in batch]), [item[1] for item in batch]


def _collate_inputs(inputs: list[Any]) -> Any:
    if isinstance(inputs[0], dict):
        return _concatenate(inputs)
    return default_collate(inputs)


def _concatenate(batch: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The windows' columns concatenated, and ``lengths``."""
    in_worker = get_worker_info() is not None
    out: dict[str, torch.Tensor] = {}
    for name in batch[0]:
        parts = [item[name] for item in batch]
        total = torch.empty(sum(len(part) for part in parts), dtype=parts[0].dtype)
        if in_worker:
            total.share_memory_()  # type: ignore[no-untyped-call]  # torch lacks hints
        out[name] = torch.cat(parts, out=total)
    out["lengths"] = torch.tensor([len(item["t"]) for item in batch], dtype=torch.int64)
    return out
