"""Training: SFSC and its baselines on one switchable network (or several, for the baselines)."""

from sfsc_deploy.train.config import METHODS, TrainConfig
from sfsc_deploy.train.run import TrainResult, train

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train"]
