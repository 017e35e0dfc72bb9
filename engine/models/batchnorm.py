"""BatchNorm whose batch statistics can be taken per episode, in one forward pass.

Episodic training normalises each episode with its own statistics: the
prediction for one task never depends on the other tasks of the meta-batch.
That is the standard semantics (one forward per episode), and it makes a
meta-batch split across processes (torch.distributed) compute exactly what one
process computes. With :class:`EpisodeBatchNorm2d` it can also be ONE forward
for the whole meta-batch: the batch ``[G * N, C, H, W]`` is read as ``G``
consecutive groups of ``N`` samples and each group is normalised with its own
mean and variance (through ``instance_norm`` on a ``[G, C, N, H, W]`` view, so the
fused kernels do the work).

The same layer also has an explicit ("functional") form of plain batch
statistics, written with ``var_mean`` and ``addcmul``. MAML's batched inner loop
(``torch.func.vmap`` over tasks with ``torch.func.grad`` inside) needs it:
measured with PyTorch 2.14, the second-order meta-gradient through the native
``batch_norm`` kernel under ``vmap`` is wrong (it gives conv biases in front of
a BatchNorm a non-zero gradient), while the explicit form matches the
task-by-task loop to float64 round-off.

State-dict keys are those of ``nn.BatchNorm2d``: checkpoints and weight files
are interchangeable.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EpisodeBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` plus per-group batch statistics.

    Attributes (set through :func:`batch_statistics`, never saved):
        episode_groups: with batch statistics, the input [G * N, C, H, W] is
            normalised per group of N consecutive samples (1 = the whole batch).
        explicit: compute batch statistics with plain tensor ops even for one
            group (needed inside ``torch.func`` transforms, see the module doc).

    Running statistics (when tracked, in training mode) move once per forward
    towards the MEAN over groups of the per-group statistics (variance unbiased
    within a group), so averaging the buffers of processes that each saw an equal
    share of the groups gives exactly the single-process buffers. Episodes forwarded
    one at a time inside :func:`episode_statistics` make the same single update.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)
        self.episode_groups = 1
        self.explicit = False
        self.pending: list[tuple[Tensor, Tensor]] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        batch_stats = self.training or self.running_mean is None
        if not batch_stats:
            return super().forward(x)
        if self.pending is not None and self._tracks() and self.episode_groups == 1 and not self.explicit:
            return self._deferred_forward(x)
        if self.episode_groups == 1 and not self.explicit:
            return super().forward(x)
        if self.explicit:
            return self._explicit_forward(x)
        return self._instance_forward(x)

    def _instance_forward(self, x: Tensor) -> Tensor:
        """Per-group statistics with the fused kernels: [G*N, C, H, W] seen as G instances of
        [C, N, H, W], whose instance norm takes statistics per (group, channel) over (N, H, W)
        and updates the running statistics with their mean over groups."""
        groups = self._check_groups(x)
        grouped = x.unflatten(0, (groups, x.shape[0] // groups)).transpose(1, 2)   # [G, C, N, H, W]
        track = self.training and self.track_running_stats and self.running_mean is not None
        momentum = 0.0
        if track:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        out = F.instance_norm(grouped, self.running_mean if track else None, self.running_var if track else None,
                              self.weight, self.bias, use_input_stats=True, momentum=momentum, eps=self.eps)
        return out.transpose(1, 2).flatten(0, 1)

    def _tracks(self) -> bool:
        return self.training and self.track_running_stats and self.running_mean is not None

    def _deferred_forward(self, x: Tensor) -> Tensor:
        """Batch statistics now; the running-statistics update waits for :func:`episode_statistics`'s end.

        The fused kernel writes this batch's mean and unbiased variance into fresh buffers
        (momentum 1 replaces their content), so collecting them costs no extra pass.
        """
        mean, var = torch.zeros_like(self.running_mean), torch.ones_like(self.running_var)
        out = F.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0, self.eps)
        self.pending.append((mean, var))
        return out

    @torch.no_grad()
    def flush_pending(self) -> None:
        """One running-statistics update with the mean of the statistics collected since the start."""
        collected, self.pending = self.pending, None
        if not collected:
            return
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        means, variances = zip(*collected)
        self.running_mean.lerp_(torch.stack(means).mean(0).to(self.running_mean.dtype), factor)
        self.running_var.lerp_(torch.stack(variances).mean(0).to(self.running_var.dtype), factor)

    def _check_groups(self, x: Tensor) -> int:
        if x.shape[0] % self.episode_groups:
            raise ValueError(f"a batch of {x.shape[0]} samples cannot be split into {self.episode_groups} "
                             "equal episodes")
        return self.episode_groups

    def _explicit_forward(self, x: Tensor) -> Tensor:
        """Per-group statistics written with var_mean and addcmul (correct under torch.func.vmap)."""
        groups = self._check_groups(x)
        grouped = x.unflatten(0, (groups, x.shape[0] // groups))          # [G, N, C, H, W]
        exact = grouped.float() if grouped.dtype in (torch.float16, torch.bfloat16) else grouped
        var, mean = torch.var_mean(exact, dim=(1, 3, 4), keepdim=True, correction=0)  # [G, 1, C, 1, 1]
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            weight = self.weight.view(1, 1, -1, 1, 1)
            scale, shift = scale * weight, shift * weight + self.bias.view(1, 1, -1, 1, 1)
        if self.training and self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean, var, grouped.shape[1] * grouped.shape[3] * grouped.shape[4])
        out = torch.addcmul(shift.to(x.dtype), grouped, scale.to(x.dtype))
        return out.flatten(0, 1)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        """Fold the mean over groups of [G, 1, C, 1, 1] statistics (n values each) into the buffers."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * (n / max(n - 1, 1))
        self.running_mean.lerp_(mean.mean(0).flatten().to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.mean(0).flatten().to(self.running_var.dtype), factor)


def episode_norm_layers(module: nn.Module) -> list[EpisodeBatchNorm2d]:
    return [layer for layer in module.modules() if isinstance(layer, EpisodeBatchNorm2d)]


def supports_episode_groups(module: nn.Module) -> bool:
    """True when every BatchNorm layer of ``module`` can take per-episode statistics."""
    norms = [layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
    return all(isinstance(layer, EpisodeBatchNorm2d) for layer in norms)


@contextlib.contextmanager
def episode_statistics(module: nn.Module) -> Iterator[None]:
    """Episodes forwarded one by one inside the block update the running statistics ONCE, at the end,
    with the mean of their statistics: the same result as one grouped forward of all of them."""
    layers = episode_norm_layers(module)
    for layer in layers:
        layer.pending = []
    try:
        yield
    finally:
        for layer in layers:
            layer.flush_pending()


@contextlib.contextmanager
def batch_statistics(module: nn.Module, *, groups: int = 1, explicit: bool = False) -> Iterator[None]:
    """Within the block, BatchNorm layers of ``module`` normalise ``groups`` equal groups separately.

    ``explicit``: use the plain-ops form (for ``torch.func`` transforms). Restores
    the previous settings on exit.
    """
    layers = episode_norm_layers(module)
    saved = [(layer.episode_groups, layer.explicit) for layer in layers]
    for layer in layers:
        layer.episode_groups, layer.explicit = int(groups), bool(explicit)
    try:
        yield
    finally:
        for layer, (old_groups, old_explicit) in zip(layers, saved):
            layer.episode_groups, layer.explicit = old_groups, old_explicit
