"""L_ori, the full model's own loss: softmax (label smoothing), softmax + triplet, or circle."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sfsc_deploy.losses.names import ORI_LOSSES

CIRCLE_SCALE = 64.0


def class_logits(kind: str, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """How every loss reads the shared classifier: dot products, or scaled cosines under circle.

    The circle loss trains the classifier on cosines, so the sub-models' compatible losses must
    read it the same way; dot products would score them against a geometry the classifier was
    never trained for.
    """
    if kind == "circle":
        return CIRCLE_SCALE * F.linear(F.normalize(features), F.normalize(weight))
    return F.linear(features, weight)


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.) on Euclidean distances of the pre-neck features."""
    dist = torch.cdist(features, features).clamp_min(1e-12)
    same = labels[:, None] == labels[None, :]
    hardest_pos = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
    valid = torch.isfinite(hardest_neg) & torch.isfinite(hardest_pos)
    if not valid.any():
        return features.sum() * 0.0
    return F.relu(hardest_pos[valid] - hardest_neg[valid] + margin).mean()


def circle_softmax(
    features: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    scale: float = CIRCLE_SCALE,
    margin: float = 0.35,
) -> torch.Tensor:
    """Circle loss in its classification form (Sun et al. 2020) over the classifier's class weights.

    The self-paced weights α are detached, as in the reference implementation: they re-weight
    each similarity, they are not optimised themselves.
    """
    cos = F.linear(F.normalize(features), F.normalize(weight))
    alpha_p = F.relu(1 + margin - cos.detach())
    alpha_n = F.relu(cos.detach() + margin)
    target = F.one_hot(labels, cos.shape[1]).bool()
    logits = torch.where(target, alpha_p * (cos - (1 - margin)), alpha_n * (cos - margin))
    return F.cross_entropy(scale * logits, labels)


def original_loss(
    kind: str,
    features: torch.Tensor,
    pre_neck: torch.Tensor,
    logits: torch.Tensor,
    classifier_weight: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.1,
    triplet_margin: float = 0.3,
) -> torch.Tensor:
    if kind == "softmax":
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if kind == "softmax+triplet":
        ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        return ce + batch_hard_triplet(pre_neck, labels, triplet_margin)
    if kind == "circle":
        return circle_softmax(features, classifier_weight, labels)
    raise ValueError(f"unknown original loss {kind!r}; choose one of {', '.join(ORI_LOSSES)}")
