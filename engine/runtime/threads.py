"""PyTorch's intra-op thread count, set for a block in the calling thread."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """PyTorch's thread count in the calling thread set to ``count`` (None: unchanged) for the block, then
    restored."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count is not None:
            torch.set_num_threads(before)
