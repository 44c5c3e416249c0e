"""One rank of the torchrun test (test_distributed.py): reads the windows of big.raw and
small.raw through this node's evshmd, with EventWindowIterableDataset (two epochs, two
DataLoader workers) and with EventWindowDataset under a DistributedSampler, and gathers
which windows each rank read to rank 0, which writes them to a JSON file."""

from __future__ import annotations

import json
import sys
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from evshm.torch import EventWindowDataset, EventWindowIterableDataset

PATHS = ["big.raw", "small.raw"]
DURATION = 5_000  # microseconds: tens of windows


def window_of(path: str, t0: int, t1: int) -> list[Any]:
    """The target: which window an item is."""
    return [path, t0, t1]


def main() -> None:
    socket, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    iterable = EventWindowIterableDataset(PATHS, duration=DURATION, socket_path=socket,
                                          target=window_of, shuffle=True, seed=3)
    epochs = []
    for epoch in (0, 1):
        iterable.set_epoch(epoch)
        loader = DataLoader(iterable, batch_size=None, num_workers=2)
        epochs.append([target for _, target in loader])
    mapped = EventWindowDataset(PATHS, duration=DURATION, socket_path=socket,
                                target=window_of)
    sampler: DistributedSampler[Any] = DistributedSampler(mapped, shuffle=True, seed=5)
    loader = DataLoader(mapped, batch_size=None, sampler=sampler, num_workers=1)
    sampled = [target for _, target in loader]
    every = [list(mapped.window(i)) for i in range(len(mapped))]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, {"rank": rank, "world": world, "epochs": epochs,
                                      "sampled": sampled, "every": every})
    if rank == 0:
        with open(out, "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
