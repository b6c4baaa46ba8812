"""Training: SFSC and its baselines on one switchable network (or several, for the baselines)."""

from sfsc_deploy.io.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "METHODS": "sfsc_deploy.train.config",
        "TrainConfig": "sfsc_deploy.train.config",
        "TrainResult": "sfsc_deploy.train.run",
        "train": "sfsc_deploy.train.run",
    },
)
