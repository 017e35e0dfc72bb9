"""The small data contracts passed between sampler, algorithms and trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Task:
    """One N-way K-shot Q-query episode, images already normalised floats.

    Shapes (S = n_way * n_shot, Q = n_way * n_query):
        support_x: [S, C, H, W] float32     support_y: [S] int64 in 0..n_way-1
        query_x:   [Q, C, H, W] float32     query_y:   [Q] int64 in 0..n_way-1
        class_ids: [n_way] int64, the episode's classes as indices into the
                   dataset's class list (episode label i is class_ids[i]).
        support_index, query_index: [S], [Q] int64 image indices in the store
                   (for galleries and inspectors; empty when not from a store).
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    class_ids: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    support_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    query_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    @property
    def n_way(self) -> int:
        return int(self.support_y.max().item()) + 1 if self.support_y.numel() else 0

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Task":
        """Move the image and label tensors to ``device``."""
        return Task(
            self.support_x.to(device, non_blocking=non_blocking),
            self.support_y.to(device, non_blocking=non_blocking),
            self.query_x.to(device, non_blocking=non_blocking),
            self.query_y.to(device, non_blocking=non_blocking),
            self.class_ids, self.support_index, self.query_index,
        )


@dataclass
class ClassBatch:
    """A plain supervised batch over all training classes (for pre-training baselines).

    x: [B, C, H, W] float32; y: [B] int64 in 0..n_train_classes-1.
    """

    x: Tensor
    y: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ClassBatch":
        return ClassBatch(self.x.to(device, non_blocking=non_blocking), self.y.to(device, non_blocking=non_blocking))
