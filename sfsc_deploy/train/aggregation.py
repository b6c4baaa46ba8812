"""Aggregating the per-task gradients into one update (SFSC §3.3, Algorithm 1).

Every projected gradient is a linear combination ``Σ_i c_ai g_i`` of the original ones, so
the projection loop runs on the k×k Gram matrix of the flattened gradients and the update
needs a single k×P product: no Python loop over parameters, no k autograd graphs kept alive.
Everything here is at least float32 (the projection float64), also in a mixed-precision run:
autocast is switched off inside, and the k×k projection runs on the CPU wherever G lives.
Method: docs/method.md §4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sfsc_deploy.train.config import AGGREGATIONS


def project_coefficients(gram: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """C (k×k) with ``projected g_a = Σ_i C[a, i] g_i``.

    For every ``g_a``, visit the *original* gradients ``g_b`` (b ≠ a) in a freshly shuffled
    order; when the current ``g_a · g_b < 0`` remove its component along ``g_b``. With
    ``g_a = C[a] @ G`` the dot product is ``C[a] @ gram[:, b]``.
    """
    gram = gram.detach().double().cpu()  # k×k: a loop of scalar tests, never worth a GPU
    k = gram.shape[0]
    coeffs = torch.eye(k, dtype=torch.float64)
    for a in range(k):
        for b in torch.randperm(k, generator=generator).tolist():
            if b == a or gram[b, b] <= 0:
                continue
            dot = coeffs[a] @ gram[:, b]
            if dot < 0:
                coeffs[a, b] -= dot / gram[b, b]
    return coeffs


@dataclass
class Aggregate:
    direction: torch.Tensor  # [P] the update direction
    grad_norms: list[float]  # ‖g_i‖ per task
    conflicts: int  # pairs (a < b) with g_a · g_b < 0


def aggregate(grads: torch.Tensor, method: str, generator: torch.Generator | None = None) -> Aggregate:
    """``grads`` is the k×P matrix of flattened per-task gradients; the direction keeps its device and
    its dtype (float32 or float64; half-precision gradients are computed with in float32)."""
    if grads.dtype not in (torch.float32, torch.float64):
        grads = grads.float()
    with torch.autocast(grads.device.type, enabled=False):  # no bf16/fp16 Gram matrix or update
        gram = (grads @ grads.T).cpu()
        k = gram.shape[0]
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)
        conflicts = int((gram[upper] < 0).sum())
        norms = gram.diagonal().clamp_min(0).sqrt().tolist()
        if method == "sum":
            weights = torch.ones(k, dtype=grads.dtype)
        elif method == "project":
            weights = project_coefficients(gram, generator).sum(dim=0).to(grads.dtype)
        else:
            raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")
        return Aggregate(weights.to(grads.device) @ grads, norms, conflicts)
