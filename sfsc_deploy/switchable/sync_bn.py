"""Synchronised BatchNorm (``--sync-bn``): a width's BatchNorm normalises with the statistics of the
whole global batch, over every training process, instead of its own rank's shard.

``torch.nn.SyncBatchNorm`` refuses CPU tensors, so the one implementation here serves gloo (CPU) and
NCCL (CUDA) alike. It is a switch on every :class:`~sfsc_deploy.switchable.layers.SwitchableBatchNorm`
(:func:`set_sync_bn`), never a global; the plain BatchNorm each width holds is untouched, so a sliced
or exported model contains nothing of it. Only training mode with a process group of more than one
rank takes this path: eval mode and one process run ``F.batch_norm`` exactly as before.

One training forward of a width's BatchNorm on rank r, its shard x_r of n_r values per channel:

- per channel, in float32 at least (mixed precision may autocast the input), the shard's mean μ_r and
  sum of squared deviations M2_r (``torch.var_mean``, numerically stable);
- one ``all_reduce`` (sum) of a W×(2C+1) matrix in which rank r filled row r with (n_r, μ_r, M2_r):
  every rank then holds every rank's row (an all_gather made of the plainest collective);
- Chan's combination: N = Σ n_r, μ = Σ n_r μ_r / N, M2 = Σ M2_r + Σ n_r (μ_r − μ)² (no cancellation,
  unlike E[x²] − E[x]²); the biased variance M2 / N normalises, the unbiased M2 / (N − 1) updates the
  running variance with BatchNorm's momentum (or cumulative average), as ``F.batch_norm`` would with
  the global count; ``num_batches_tracked`` counts one batch.

Backward (BatchNorm's own formula, as torch's SyncBatchNorm): each rank sums Σ g and Σ g (x − μ) over
its shard, one ``all_reduce`` makes them global, and dx = (g − mean g − (x − μ) σ⁻² mean g(x − μ))·γ/σ;
γ's and β's gradients are the shard's own sums. This is what autograd gives through an ``all_reduce``
whose backward all-reduces the gradient (``torch.distributed.nn.functional.all_reduce``'s rule): with
L = Σ_r L_r every rank's loss depends on the global statistics, so the gradient reaching a statistic
is the sum over the ranks of ∂L_r/∂statistic, and each rank's parameter gradient is that of Σ_r L_r
through its own shard. The ranks' gradients summed are ∇Σ_r L_r; the trainer *averages* the ranks' G,
i.e. ∇(mean_r L_r): for per-sample mean losses over equal shards, the gradient of the global batch's
mean loss, as one process on the whole batch computes it (tests/train/test_sync_bn.py; in float64 the
two agree to 1e-17). Written as one autograd Function: the formula of ``F.batch_norm``'s own backward,
which saves only x and the per-channel statistics.

Every rank must run the same forward and backward passes (the collectives pair up in order): the
trainer runs a task's backward on every rank even when its loss is not finite.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    """Ranks of the initialised default process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _layout(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """The dimensions reduced over (all but the channels) and the per-channel broadcast shape."""
    return [d for d in range(x.dim()) if d != 1], [1, x.shape[1]] + [1] * (x.dim() - 2)


class _SyncBatchNorm(torch.autograd.Function):
    """Forward: the global batch's mean and variance (one ``all_reduce``), normalise, scale, shift;
    also returns the mean and the unbiased variance for the running statistics (no gradient).
    Backward: BatchNorm's own formula with the global sums Σ g and Σ g (x − μ) (one ``all_reduce``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):  # type: ignore[override]
        dims, shape = _layout(x)
        channels = x.shape[1]
        x32 = x if x.dtype == torch.float64 else x.float()  # at least float32
        var, mean = torch.var_mean(x32, dim=dims, correction=0)
        rows = torch.zeros(dist.get_world_size(), 2 * channels + 1, dtype=x32.dtype, device=x.device)
        row = rows[dist.get_rank()]
        row[0] = x32.numel() // channels
        row[1 : channels + 1] = mean
        row[channels + 1 :] = var * row[0]
        dist.all_reduce(rows)  # every rank's (n_r, μ_r, M2_r)
        counts, means, m2s = rows[:, :1], rows[:, 1 : channels + 1], rows[:, channels + 1 :]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        m2 = m2s.sum(0) + (counts * (means - mean) ** 2).sum(0)  # Chan et al.: no cancellation
        invstd = torch.rsqrt(m2 / total + eps)
        scale = invstd if weight is None else invstd * weight
        y = (x32 - mean.view(shape)) * scale.view(shape)
        if bias is not None:
            y = y + bias.view(shape)
        ctx.save_for_backward(x, weight, mean, invstd, total)
        unbiased = m2 / (total - 1)
        ctx.mark_non_differentiable(mean, unbiased)
        return y.to(x.dtype), mean, unbiased

    @staticmethod
    def backward(ctx, grad, _mean, _var):  # type: ignore[override]
        x, weight, mean, invstd, total = ctx.saved_tensors
        dims, shape = _layout(x)
        channels = x.shape[1]
        x32 = x if x.dtype == torch.float64 else x.float()
        g = grad.to(x32.dtype)
        xmu = x32 - mean.view(shape)
        sums = torch.cat([g.sum(dims), (g * xmu).sum(dims)])  # this shard's Σ g, Σ g (x − μ)
        grad_weight = sums[channels:] * invstd if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sums[:channels].clone() if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:  # the same on every rank (the same graph): the collectives pair up
            dist.all_reduce(sums)  # Σ over the global batch: the rule of an all_reduce's gradient
            mean_g, mean_gxmu = sums[:channels] / total, sums[channels:] / total
            scale = invstd if weight is None else invstd * weight
            grad_x = (g - mean_g.view(shape) - xmu * (invstd**2 * mean_gxmu).view(shape)) * scale.view(shape)
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_weight, grad_bias, None


def synced_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` in training mode with the statistics of every rank's ``x`` (module docstring).

    Needs an initialised process group; with one rank it equals ``bn(x)`` up to float rounding.
    Works for BatchNorm1d ([N, C] or [N, C, L]) and BatchNorm2d, with or without affine parameters
    or running statistics.
    """
    y, mean, unbiased = _SyncBatchNorm.apply(x, bn.weight, bn.bias, bn.eps)
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - factor).add_(mean * factor)
            bn.running_var.mul_(1 - factor).add_(unbiased * factor)
    return y


def set_sync_bn(module: nn.Module, on: bool) -> int:
    """Switch synchronised statistics on (or off) for every switchable BatchNorm in ``module``;
    returns how many there are. One process: nothing changes (they run ``F.batch_norm``)."""
    from sfsc_deploy.switchable.layers import SwitchableBatchNorm

    bns = [m for m in module.modules() if isinstance(m, SwitchableBatchNorm)]
    for m in bns:
        m.sync = on
    return len(bns)
