"""Compatible losses of the sub-models φ_j (docs/method.md §3).

All of them tie a sub-model to the full model's feature space: through the shared classifier
(sfsc, bct-s, lce-s) or through the full model's features of the batch (asym-s, lce-s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sfsc_deploy.losses.names import KL_VARIANTS


@dataclass
class Evidential:
    loss: torch.Tensor  # batch mean of L_ev + λ·KL
    evidence_loss: torch.Tensor  # batch mean of L_ev
    kl: torch.Tensor  # batch mean of KL(Dir(α) ‖ Dir(1))
    uncertainty: torch.Tensor  # batch mean of u = C / S


def dirichlet_kl_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(α) ‖ Dir(1)) per row: lnΓ(S) − lnΓ(C) − Σ lnΓ(α_c) + Σ (α_c − 1)(ψ(α_c) − ψ(S))."""
    num_classes = alpha.shape[1]
    s = alpha.sum(dim=1, keepdim=True)
    return (
        torch.lgamma(s).squeeze(1)
        - torch.lgamma(alpha.new_tensor(float(num_classes)))
        - torch.lgamma(alpha).sum(dim=1)
        + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(s))).sum(dim=1)
    )


def evidential(
    logits: torch.Tensor,
    labels: torch.Tensor,
    kl_weight: float = 0.2,
    clamp: float = 10.0,
    variant: str = "paper",
) -> Evidential:
    """SFSC's uncertainty-aware compatible loss (§3.4, eq. 3–5).

    Evidence ``e = exp(clamp(z))``, ``α = e + 1``; ``logits`` already hold the classifier's
    evidence offset. ``paper`` applies the KL to α itself, as the SFSC paper writes it; ``sensoy``
    applies it to ``α̃ = y + (1 − y)·α`` (Sensoy et al. 2018), which only penalises evidence for
    the wrong classes. The caller anneals ``kl_weight``, alike for both. Computed in float64: at
    high evidence the KL is a difference of lgamma terms of order 1e5 that float32 cannot resolve
    (errors of ~0.03 in the loss); the [B, C] cost is negligible next to the network.
    """
    if variant not in KL_VARIANTS:
        raise ValueError(f"unknown KL variant {variant!r}; choose one of {', '.join(KL_VARIANTS)}")
    z = logits.double().clamp(-clamp, clamp)
    alpha = z.exp() + 1
    s = alpha.sum(dim=1)
    y = F.one_hot(labels, alpha.shape[1]).to(alpha.dtype)
    ev = torch.digamma(s) - torch.digamma(alpha.gather(1, labels[:, None]).squeeze(1))
    alpha_kl = alpha if variant == "paper" else y + (1 - y) * alpha
    kl = dirichlet_kl_uniform(alpha_kl)
    dtype = logits.dtype
    return Evidential(
        loss=(ev + kl_weight * kl).mean().to(dtype),
        evidence_loss=ev.mean().detach().to(dtype),
        kl=kl.mean().detach().to(dtype),
        uncertainty=(alpha.shape[1] / s).mean().detach().to(dtype),
    )


def bct_s(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCT-S: the sub-model's features classified by the shared (full model's) classifier."""
    return F.cross_entropy(logits, labels)


def asym_s(
    features: torch.Tensor,
    reference: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.7,
    mode: str = "contrastive",
) -> torch.Tensor:
    """Asymmetric-S: sub-model features against the full model's (detached) batch features.

    ``contrastive``: same-identity pairs pulled together (d²), different-identity pairs pushed
    beyond ``margin`` (relu(margin − d)²) on L2-normalised features, ½ each as in the asymmetric
    metric learning code. Each anchor *sums* its pairs and the anchors are averaged: a mean over
    all N² pairs would weigh an anchor's positives by 1/N, and on shuffled batches (the same image
    is the only positive) the alignment term then vanishes. ``regression``: ‖φ_j − φ‖².
    """
    reference = reference.detach()
    if mode == "regression":
        return (features - reference).pow(2).sum(dim=1).mean()
    if mode != "contrastive":
        raise ValueError(f"unknown asym-s mode {mode!r}; choose contrastive or regression")
    dist = torch.cdist(F.normalize(features), F.normalize(reference)).clamp_min(0)
    same = (labels[:, None] == labels[None, :]).float()
    loss = 0.5 * (same * dist.pow(2) + (1 - same) * F.relu(margin - dist).pow(2))
    return loss.sum(dim=1).mean()


def lce_s(
    features: torch.Tensor,
    reference: torch.Tensor,
    logits: torch.Tensor,
    classifier_weight: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """LCE-S ("direct" mode): stay inside the full model's class boundary, plus classification.

    Class centres are the rows of the L2-normalised shared classifier; the boundary term is
    ``mean(relu(cos(φ(x), w_y) − cos(φ_j(x), w_y)))`` with the full model's side detached.
    """
    centres = F.normalize(classifier_weight.detach(), dim=1)[labels]
    cos_full = (F.normalize(reference.detach()) * centres).sum(dim=1)
    cos_sub = (F.normalize(features) * centres).sum(dim=1)
    return F.relu(cos_full - cos_sub).mean() + F.cross_entropy(logits, labels)
