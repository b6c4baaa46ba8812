"""Training: SFSC and its baselines on one switchable network (or several, for the baselines)."""

from .config import METHODS, TrainConfig
from .run import TrainResult, train

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train"]
