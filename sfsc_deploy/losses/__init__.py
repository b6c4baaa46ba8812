"""Losses: the full model's original loss (L_ori) and the compatible losses of the sub-models."""

from sfsc_deploy.io.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "asym_s": "sfsc_deploy.losses.compat",
        "bct_s": "sfsc_deploy.losses.compat",
        "evidential": "sfsc_deploy.losses.compat",
        "lce_s": "sfsc_deploy.losses.compat",
        "batch_hard_triplet": "sfsc_deploy.losses.ori",
        "circle_softmax": "sfsc_deploy.losses.ori",
        "original_loss": "sfsc_deploy.losses.ori",
    },
)
