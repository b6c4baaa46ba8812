"""Losses: the full model's original loss (L_ori) and the compatible losses of the sub-models."""

from sfsc_deploy.losses.compat import asym_s, bct_s, evidential, lce_s
from sfsc_deploy.losses.ori import batch_hard_triplet, circle_softmax, original_loss

__all__ = ["asym_s", "batch_hard_triplet", "bct_s", "circle_softmax", "evidential", "lce_s", "original_loss"]
