"""Reproducible random streams: one independent generator per (seed, purpose, index), so a draw
never depends on how many draws came before it elsewhere, and a run resumed from a checkpoint
draws exactly what an uninterrupted one would."""
from __future__ import annotations

import hashlib

import torch


def stream(seed: int, purpose: str, index: int) -> torch.Generator:
    """The generator of (seed, purpose, index), e.g. (0, "beneficiary", epoch)."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def draw_seed(gen: torch.Generator) -> int:
    """A seed for another generator (e.g. a BatchIterator's), drawn from `gen`."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))
