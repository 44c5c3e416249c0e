"""Training across ranks: ``torchrun --nnodes 1 --nproc-per-node 2`` (gloo), each rank
reading through the node's evshmd. EventWindowIterableDataset gives the ranks (and their
two DataLoader workers each) disjoint windows that cover the epoch, every epoch;
EventWindowDataset works under DistributedSampler."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Daemon

pytest.importorskip("torch")

RANKS = Path(__file__).with_name("dist_ranks.py")


@pytest.fixture
def real_in_root() -> bool:
    return False


def test_ranks_read_disjoint_windows_covering_the_epoch(synthetic: Daemon,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "ranks.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nnodes", "1", "--nproc-per-node", "2", str(RANKS),
                           synthetic.socket, str(out)],
                          capture_output=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-5000:]
    ranks = json.loads(out.read_text())
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world"] == 2
    every = [tuple(w) for w in ranks[0]["every"]]
    assert len(every) > 20 and len(set(every)) == len(every)
    for epoch in (0, 1):
        shares = [[tuple(w) for w in r["epochs"][epoch]] for r in ranks]
        read = [w for share in shares for w in share]
        assert sorted(read) == sorted(every), f"epoch {epoch}: each window exactly once"
        assert all(abs(len(s) - len(every) / 2) <= 1 for s in shares)
    first = [tuple(w) for w in ranks[0]["epochs"][0]]
    assert first != [tuple(w) for w in ranks[0]["epochs"][1]], "a new order each epoch"
    # DistributedSampler: equal shares, padded with repeats to a multiple of the ranks.
    sampled = [[tuple(w) for w in r["sampled"]] for r in ranks]
    assert all(len(s) == math.ceil(len(every) / 2) for s in sampled)
    assert set(sampled[0]) | set(sampled[1]) == set(every)
    overlap = set(sampled[0]) & set(sampled[1])
    assert len(overlap) <= len(every) % 2
